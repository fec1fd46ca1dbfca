"""What the CLI and the web share: contacts, sign-up, preferences, GDPR, reports, demo, validate."""

"""Pure scoring: rules and filters, decay and bands, fit, qualification, reply intents."""

"""Consent decisions, send gates, send windows, address hygiene, signed link tokens."""

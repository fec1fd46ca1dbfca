"""nurture: an Email/SMS lead-nurturing engine."""

__version__ = "0.1.0"

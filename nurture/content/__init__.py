"""Sandboxed templates: the catalog, what templates see, SMS segments and checks."""

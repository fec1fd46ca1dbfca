"""Journeys as data: typed steps, the condition language, the loader and its schema."""

"""Providers: one file each, same shape; the registry picks one per channel from config."""

"""The database: tables, the one codec, the queries (the only SQL)."""

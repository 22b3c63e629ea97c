"""Storage: one SQLite file, schema migrations, one writer."""

"""Where every table lives: a DuckDB file or PostgreSQL through DuckDB, its schema, its SQL helpers,
and moving it (copy to PostgreSQL, upgrade from the previous release)."""

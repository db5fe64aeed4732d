"""PostgreSQL's migrations (`gateway.migrations.postgres` once installed)."""

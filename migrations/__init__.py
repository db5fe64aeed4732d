"""SQL migrations, numbered and applied in order: SQLite's here, PostgreSQL's in `postgres/`.

At the top of the repository, as the project's layout names them, and installed as the package
`gateway.migrations` (pyproject's package-dir), so an installed gateway finds them anywhere."""

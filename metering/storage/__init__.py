"""Storage adapter: SQLAlchemy tables, engine set-up, Alembic migrations, unit of work."""

"""Storage: SQLAlchemy tables, the async engine, and migrations."""

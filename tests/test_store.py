"""The migrations create exactly the tables the code uses, on every backend."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection

from app.store import migrate
from app.store.db import Database
from app.store.tables import metadata


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": False})
    return list(compare_metadata(context, metadata))


async def test_migrations_match_the_table_definitions(db_url: str) -> None:
    db = Database.from_url(db_url)
    try:
        await migrate.upgrade(db.engine)
        async with db.read() as conn:
            differences = await conn.run_sync(_diff)
        assert differences == []
    finally:
        await db.dispose()


async def test_a_named_statement_is_built_once_per_database(db_url: str) -> None:
    """Stores keep dialect-dependent statements (upserts) through ``Database.statement``."""
    db = Database.from_url(db_url)
    built: list[str] = []

    def build(database: Database) -> str:
        built.append(database.dialect)
        return f"statement for {database.dialect}"

    try:
        first = db.statement("example", build)
        assert db.statement("example", build) is first
        assert built == [db.dialect]
        assert Database.from_url(db_url).statement("example", build) == first
        assert built == [db.dialect, db.dialect]  # another database builds its own
    finally:
        await db.dispose()

"""The async engine: SQLite (WAL) by default, PostgreSQL through asyncpg.

SQLite is the zero-setup default for one process. WAL lets the webhook view append deliveries
while workers read; ``synchronous=NORMAL`` in WAL mode still survives a process crash (only an OS
crash can lose the last commits), which is the failure the queue's leases are built for. The
pragmas, and why checkpoints run in the background, are in ``app.intake.sqlite_writer``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine.url import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from app.intake.sqlite_writer import configure_sqlite_connection
from app.store import sqlite_driver


def create_engine(database_url: str) -> AsyncEngine:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        # Each statement one trip to aiosqlite's thread (app.store.sqlite_driver).
        driver = {"module": sqlite_driver.dbapi()} if url.get_driver_name() == "aiosqlite" else {}
        engine = create_async_engine(
            url,
            connect_args={"timeout": 30},
            **driver,
            # One file, one writer: a small pool avoids lock contention between connections.
            pool_size=4,
            max_overflow=0,
        )
        _configure_sqlite(engine)
        return engine
    if url.get_backend_name() == "postgresql":
        return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)
    return create_async_engine(url, poolclass=NullPool)


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        configure_sqlite_connection(dbapi_connection)

"""PostgreSQL ``LISTEN``/``NOTIFY`` between replicas: new work, and new pull request heads.

One connection per process, outside the pool: it listens on two channels and sends what the
process publishes, coalesced (one work notice per flush, however many deliveries were stored).
Notices are hints, never the record: a lost one costs a poll interval (work) or a review that
runs to its pre-publish head check and is dropped there (heads). So a broken connection only
logs and reconnects with a backoff; nothing waits on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any, Final

import asyncpg
from sqlalchemy.engine.url import make_url

log = logging.getLogger(__name__)

WORK_CHANNEL: Final = "aigateway_work"
HEADS_CHANNEL: Final = "aigateway_heads"
#: PostgreSQL refuses a NOTIFY payload of 8000 bytes or more; a PR key and a SHA are far less.
MAX_PAYLOAD: Final = 7900


def listen_dsn(database_url: str) -> str:
    """The plain ``postgresql://`` DSN asyncpg takes, from a SQLAlchemy URL."""
    url = make_url(database_url)
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class ClusterBus:
    """Publish and hear work and head notices; ``start`` once, ``stop`` at shutdown."""

    def __init__(
        self,
        dsn: str,
        *,
        on_work: Callable[[int], None],
        on_head: Callable[[str, str], None],
        retry_seconds: float = 1.0,
        max_retry_seconds: float = 30.0,
    ) -> None:
        self._dsn = dsn
        self._on_work = on_work
        self._on_head = on_head
        self._retry = retry_seconds
        self._max_retry = max_retry_seconds
        self._work = 0
        self._heads: dict[str, str] = {}
        self._pending = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self.heard = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="cluster-bus")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def publish_work(self, count: int = 1) -> None:
        """Deliveries were stored: wake idle workers everywhere."""
        self._work += count
        self._pending.set()

    def publish_head(self, pr_key: str, head_sha: str) -> None:
        """A delivery for a new head was accepted: reviews of older heads stop everywhere."""
        self._heads[pr_key] = head_sha
        self._pending.set()

    # ------------------------------------------------------------------ the connection

    async def _run(self) -> None:
        delay = self._retry
        while True:
            conn: Any = None
            try:
                conn = await asyncpg.connect(self._dsn)
                await conn.add_listener(WORK_CHANNEL, self._heard)
                await conn.add_listener(HEADS_CHANNEL, self._heard)
                self.connected.set()
                delay = self._retry
                while True:
                    await self._pending.wait()
                    self._pending.clear()
                    await self._flush(conn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.connected.clear()
                log.warning(
                    "the replicas' notice channel failed (%s); reconnecting in %.0f s",
                    type(exc).__name__,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(self._max_retry, delay * 2)
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(conn.close(timeout=2))

    async def _flush(self, conn: Any) -> None:
        notices: list[tuple[str, str]] = []
        if self._work:
            notices.append((WORK_CHANNEL, str(self._work)))
            self._work = 0
        heads, self._heads = self._heads, {}
        for pr_key, head in heads.items():
            payload = json.dumps({"pr": pr_key, "head": head}, separators=(",", ":"))
            if len(payload) <= MAX_PAYLOAD:
                notices.append((HEADS_CHANNEL, payload))
        if notices:
            await conn.executemany("SELECT pg_notify($1, $2)", notices)

    def _heard(self, _conn: Any, _pid: int, channel: str, payload: str) -> None:
        self.heard += 1
        try:
            if channel == WORK_CHANNEL:
                self._on_work(max(1, min(int(payload or "1"), 1000)))
            elif channel == HEADS_CHANNEL:
                notice = json.loads(payload)
                self._on_head(str(notice["pr"]), str(notice["head"]))
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed notice on %s", channel)

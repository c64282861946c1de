"""Webhook intake on SQLite, in a process of its own: requests in, their answers out.

The server's event loop only reads each webhook request and forwards it down a pipe; this
process verifies the signature, decodes the payload, decides whether a handler wants it, stores
it, and sends back the answer the request is to get. Two reasons:

- Verifying and decoding cost the loop far more than they cost here. Between two requests the
  loop runs aiohttp, the kernel's network stack and everything else, so the HMAC code and its
  8 KB of input meet cold caches every time: about 30 µs for what takes 6 µs in a hot loop,
  and as much again for the JSON. Here a batch of requests is verified back to back. (A 25 MB
  payload no longer stalls every other request for the time its HMAC takes, either.)
- SQLite runs a statement without the GIL, but a thread that ran it needs the GIL back to
  report, and a busy event loop lets go of it only every few milliseconds: a writer thread
  spent most of its time waiting for the loop. This process has an interpreter of its own.

Whatever has queued up in the pipe when the process is ready becomes one batch, stored in one
statement (group commit without a timer); one answer frame per batch, in order.

The pipe speaks length-prefixed ``marshal`` frames; both ends are this program on the same
Python. The first frame is the configuration (the webhook secret, which thus never appears in
an environment or a command line, and the route table); then one frame per request,
``(headers, content type, charset, body)``. An answer frame is a list of ``Verdict`` tuples,
one per request of the batch. The process starts with an empty environment, ignores SIGINT and
SIGTERM (the server stops it by closing the pipe, after the last answer) and ends when the
pipe closes, which includes the server being killed.

Run by the server as ``python -m app.intake.process PATH [--uri]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import marshal
import os
import select
import signal
import sqlite3
import struct
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from app.intake.routes import Routes, RouteTable
from app.intake.rows import store_deliveries
from app.intake.sqlite_writer import configure_sqlite_connection
from app.intake.verify import Answer, ToStore, examine

_LENGTH = struct.Struct("<I")
READ_SIZE = 1 << 20
# Requests per statement. What has queued up is stored in statements of this many, each
# answered as soon as it is stored: the event loop gets the first answers back (and the next
# requests from their senders) while the rest are stored. One statement for everything queued
# left the loop idle meanwhile: measured, 16 takes about 15% more deliveries per second than 200.
MAX_BATCH = 16
READY = "ready"
# The process copies the WAL back into the database itself, between batches (after their
# answers are sent), every megabyte of payloads or once the pipe is quiet for a moment. Right
# after its own commit the checkpoint can finish, so the next write starts the WAL over: it
# stays a few megabytes, written over and over while hot in the page cache. A checkpoint on
# another connection, racing a writer that never pauses, never catches up: the WAL then grows
# by the whole burst, every write lands in fresh file space, and the kernel's time per
# delivery doubled (measured: 30 µs against 10).
CHECKPOINT_BYTES = 1 << 20
CHECKPOINT_IDLE_SECONDS = 0.2
NOT_STORED = "the delivery could not be stored; GitHub will let you redeliver it"
# Where ``app`` is imported from, for the process to import the same code.
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])

# What a request gets: (HTTP status, response body, event, PR key, PR head, queued for a
# worker, error for the log). Event and PR key are set for deliveries that were stored.
Verdict = tuple[int, dict[str, Any], str | None, str | None, str | None, bool, str | None]
# A request as the server forwards it: (headers, content type, charset, body).
Request = tuple[dict[str, str], str, str | None, bytes]


def encode_frame(value: Any) -> bytes:
    data = marshal.dumps(value)
    return _LENGTH.pack(len(data)) + data


class FrameReader:
    """Whole frames out of a byte stream that arrives in arbitrary pieces.

    Frames are decoded straight out of what was read; only a frame cut off at the end of a
    read is kept (copied) until the rest arrives.
    """

    def __init__(self) -> None:
        self._partial = b""

    def feed(self, data: bytes) -> list[Any]:
        if self._partial:
            data = self._partial + data
        frames: list[Any] = []
        pos, end = 0, len(data)
        with memoryview(data) as view:
            while end - pos >= 4:
                (size,) = _LENGTH.unpack_from(view, pos)
                if end - pos - 4 < size:
                    break
                # Written by the other end of a private pipe, which is this same program.
                frames.append(marshal.loads(view[pos + 4 : pos + 4 + size]))  # noqa: S302
                pos += 4 + size
        self._partial = data[pos:]
        return frames


# ---------------------------------------------------------------------------- the process


def answered(answer: Answer) -> Verdict:
    """A request answered without storing anything."""
    return (answer.status, answer.body, None, None, None, False, answer.reason)


def stored(examined: ToStore, *, is_new: bool) -> Verdict:
    """A delivery stored now (202), or found stored before (200: a redelivery)."""
    d = examined.delivery
    if is_new:
        body = {"ok": True, "delivery": d.id}
        return (202, body, d.event, d.pr_key, examined.head, d.needs_handling, None)
    again = {"ok": True, "duplicate": True, "delivery": d.id}
    return (200, again, d.event, d.pr_key, None, False, None)


def not_stored(event: str | None, error: str) -> Verdict:
    """A delivery the database did not take; GitHub lets the user redeliver it."""
    return (503, {"error": NOT_STORED}, event, None, None, False, error)


def judge(
    connection: sqlite3.Connection, requests: list[Request], *, secret: str, routes: RouteTable
) -> list[Verdict]:
    """Examine a batch of requests, store the deliveries among them in one statement, and
    say what each request is to get."""
    verdicts: list[Verdict | None] = [None] * len(requests)
    to_store: list[tuple[int, ToStore]] = []
    for i, (headers, content_type, charset, body) in enumerate(requests):
        try:
            examined = examine(
                headers,
                body,
                secret=secret,
                content_type=content_type,
                charset=charset,
                routes=routes,
            )
        except Exception:  # a bug, not a bad request: say so, and keep serving
            traceback.print_exc()
            verdicts[i] = (500, {"error": "internal error"}, None, None, None, False, None)
            continue
        if isinstance(examined, Answer):
            verdicts[i] = answered(examined)
        else:
            to_store.append((i, examined))
    if to_store:
        try:
            new = set(store_deliveries(connection, [e.delivery.row() for _, e in to_store]))
        except Exception as exc:  # the whole statement failed: none of these is stored
            error = f"{type(exc).__name__}: {exc}"
            for i, e in to_store:
                verdicts[i] = not_stored(e.delivery.event, error)
        else:
            claimed: set[str] = set()
            for i, e in to_store:
                delivery_id = e.delivery.id
                verdicts[i] = stored(e, is_new=delivery_id in new and delivery_id not in claimed)
                claimed.add(delivery_id)
    return cast(list[Verdict], verdicts)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _enlarge_pipe(fd: int) -> None:
    """Room for a burst of deliveries in the pipe itself (Linux; elsewhere the default)."""
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)
    if set_size is not None:
        with contextlib.suppress(OSError):  # not a pipe, or above the system's maximum
            fcntl.fcntl(fd, set_size, READ_SIZE)


def serve(path: str, *, uri: bool, requests_in: int = 0, answers_out: int = 1) -> int:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    _enlarge_pipe(requests_in)
    _enlarge_pipe(answers_out)
    reader = FrameReader()
    frames: list[Any] = []
    while not frames:  # the configuration comes first
        data = os.read(requests_in, READ_SIZE)
        if not data:
            return 0
        frames = reader.feed(data)
    secret, routes = frames.pop(0)
    table = RouteTable(routes)
    connection = sqlite3.connect(path, timeout=30, isolation_level=None, uri=uri)
    configure_sqlite_connection(connection)
    _write_all(answers_out, encode_frame(READY))
    written = 0  # payload bytes stored since the last checkpoint
    try:
        while True:
            for start in range(0, len(frames), MAX_BATCH):
                batch = frames[start : start + MAX_BATCH]
                verdicts = judge(connection, batch, secret=secret, routes=table)
                _write_all(answers_out, encode_frame(verdicts))
                written += sum(len(request[3]) for request in batch)
                if written >= CHECKPOINT_BYTES:
                    _checkpoint(connection)
                    written = 0
            if written and not select.select([requests_in], [], [], CHECKPOINT_IDLE_SECONDS)[0]:
                _checkpoint(connection)
                written = 0
            data = os.read(requests_in, READ_SIZE)
            if not data:
                if written:
                    _checkpoint(connection)
                return 0
            frames = reader.feed(data)
    finally:
        connection.close()


def _checkpoint(connection: sqlite3.Connection) -> None:
    try:
        connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    except sqlite3.Error:  # tried again after the next megabyte; the WAL keeps what it has
        traceback.print_exc()


# ---------------------------------------------------------------------------- the server's end


class IntakeProcessError(RuntimeError):
    """The intake process did not start, or is gone."""


class _Pipes(asyncio.SubprocessProtocol):
    def __init__(self, owner: IntakeProcess) -> None:
        self._owner = owner
        self._reader = FrameReader()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd == 1:
            for frame in self._reader.feed(data):
                self._owner._answer(frame)

    def connection_lost(self, exc: Exception | None) -> None:
        # After the process ended *and* its pipes were read to the end: no answer is lost.
        self._owner._exited()


class IntakeProcess:
    """The server's handle on the intake process: ``send`` requests, verdicts come back.

    ``on_verdicts(verdicts)`` is called on the event loop once per batch, in the order the
    requests were sent; ``on_exit(error)`` once the process has ended and every answer it sent
    has been delivered: requests it had not answered by then never will be.
    """

    def __init__(
        self,
        path: str,
        *,
        uri: bool,
        secret: str,
        routes: Routes,
        on_verdicts: Callable[[list[Verdict]], None],
        on_exit: Callable[[BaseException], None],
    ) -> None:
        self._path = path
        self._uri = uri
        self._config = (secret, routes)
        self._on_verdicts = on_verdicts
        self._on_exit = on_exit
        self._transport: asyncio.SubprocessTransport | None = None
        self._stdin: asyncio.WriteTransport | None = None
        self._ready: asyncio.Future[None] | None = None
        self._exited_event = asyncio.Event()
        self._outgoing: list[bytes] = []

    @property
    def running(self) -> bool:
        return self._stdin is not None and not self._exited_event.is_set()

    @property
    def pid(self) -> int | None:
        transport = self._transport
        return transport.get_pid() if transport is not None else None

    async def start(self) -> None:
        """Start the process and wait until it has the database open.

        When the start fails or is cancelled (a server stopped right after it started), the
        process is killed and its end awaited here: its pipes are closed now, not by the
        garbage collector, and its exit is not left as an error that no one reads.
        """
        loop = asyncio.get_running_loop()
        self._exited_event = asyncio.Event()
        self._ready = loop.create_future()
        args = [sys.executable, "-m", "app.intake.process", self._path]
        if self._uri:
            args.append("--uri")
        try:
            transport, _ = await loop.subprocess_exec(
                lambda: _Pipes(self),
                *args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=None,  # its tracebacks, if any, go where the server's go
                env={"PYTHONPATH": _PACKAGE_ROOT, "PATH": os.environ.get("PATH", "")},
            )
            self._transport = transport
            # uvloop's pipe transports are not ``asyncio.WriteTransport`` subclasses, only alike.
            stdin = cast(asyncio.WriteTransport, transport.get_pipe_transport(0))
            stdin.write(encode_frame(self._config))
            await asyncio.wait_for(asyncio.shield(self._ready), timeout=30)
        except BaseException:
            await self._abandon()
            raise
        self._stdin = stdin

    async def _abandon(self) -> None:
        """Kill a process that did not start, and wait for its end (or for asyncio's own
        clean-up of a spawn that was cancelled, which kills it too)."""
        if self._transport is not None:
            self._transport.kill()
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(self._exited_event.wait(), 10)

    def send(self, request: Request) -> None:
        """Queue a request; those sent during one turn of the event loop go in one write, so
        the process sees them together and stores them as one batch."""
        if self._stdin is None:
            raise IntakeProcessError("the intake process is not running")
        if not self._outgoing:
            asyncio.get_running_loop().call_soon(self._flush)
        data = marshal.dumps(request)
        self._outgoing += (_LENGTH.pack(len(data)), data)

    def _flush(self) -> None:
        buffers, self._outgoing = self._outgoing, []
        if self._stdin is not None:
            self._stdin.writelines(buffers)

    def _answer(self, frame: Any) -> None:
        if frame == READY:
            if self._ready is not None and not self._ready.done():
                self._ready.set_result(None)
            return
        self._on_verdicts(frame)

    def _exited(self) -> None:
        transport, self._transport = self._transport, None
        code = None
        if transport is not None:
            code = transport.get_returncode()
            transport.close()
        self._stdin = None
        self._outgoing.clear()
        self._exited_event.set()
        error = IntakeProcessError(f"the intake process exited (code {code})")
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(error)
            # ``start`` is its only reader, and reports a failed start itself; when ``start``
            # was cancelled first (``_abandon``) no one awaits it: it is not an unread error.
            self._ready.exception()
        self._on_exit(error)

    async def close(self, grace_seconds: float = 30.0) -> None:
        """Close the pipe (the process answers what it has, and ends) and wait for it."""
        if self._transport is None:
            return
        if self._stdin is not None:
            self._flush()
            self._stdin.close()
        transport = self._transport
        try:
            await asyncio.wait_for(self._exited_event.wait(), grace_seconds)
        except TimeoutError:
            transport.kill()
            await self._exited_event.wait()


def main(argv: list[str]) -> int:
    if not argv or len(argv) > 2 or (len(argv) == 2 and argv[1] != "--uri"):
        print("usage: python -m app.intake.process PATH [--uri]", file=sys.stderr)
        return 2
    return serve(argv[0], uri=len(argv) == 2)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

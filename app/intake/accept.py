"""From a webhook request to its answer: verified, decided, durably stored (or rejected).

Two intakes with one interface, ``accept``:

- ``ProcessIntake`` on a SQLite file: each request goes to the intake process
  (``app.intake.process``), which verifies, decodes and stores batches of them and sends back
  each request's answer. While requests are in flight it holds the SQLite write lock, so the
  workers' writes wait for the gap after a burst. Deliveries are durable once stored, so the
  workers lose nothing by waiting, and intake never waits behind a worker's transaction.
- ``InProcessIntake`` elsewhere (PostgreSQL): the same checks (``verify.examine``) in this
  process, and group commit through SQLAlchemy (``queue.IntakeWriter``).

Either way a request is answered only after its delivery is committed, and a redelivery (the
same ``X-GitHub-Delivery``) is recognised by the insert itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from app.intake.process import (
    NOT_STORED,
    IntakeProcess,
    Request,
    Verdict,
    answered,
    not_stored,
    stored,
)
from app.intake.routes import RouteTable
from app.intake.verify import DELIVERY_HEADERS, Answer, examine
from app.queue import DeliveryQueue, IntakeWriter

log = logging.getLogger(__name__)

# A request's verdict to come, and when the request was accepted.
_Answer = tuple["asyncio.Future[Verdict]", float]


@dataclass(frozen=True, slots=True)
class IntakeResult:
    """What a request gets, and what the server notes about it."""

    status: int  # 202 stored, 200 redelivery or ping, 4xx rejected, 503 not stored
    body: dict[str, Any]
    event: str | None = None  # set for deliveries, stored or redelivered
    pr_key: str | None = None
    head: str | None = None  # the pull request head a new delivery announces
    error: str | None = None  # why it was rejected or not stored, for the log

    @classmethod
    def from_verdict(cls, verdict: Verdict) -> IntakeResult:
        status, body, event, pr_key, head, _queued, error = verdict
        return cls(status, body, event, pr_key, head, error)


# (HTTP status, event, seconds from request to answer): what ``on_answered`` is told about each
# request, a batch at a time.
Answered = tuple[int, str | None, float]


class Intake(Protocol):
    def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def accept(
        self, headers: Mapping[str, str], body: bytes, *, content_type: str, charset: str | None
    ) -> IntakeResult: ...


def delivery_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers a delivery is judged by, with lower-case names."""
    return {name: headers[name] for name in DELIVERY_HEADERS if name in headers}


class _IntakeBase:
    """What both intakes are given: the queue, the secret, the routes, and whom to tell."""

    def __init__(
        self,
        queue: DeliveryQueue,
        *,
        secret: Callable[[], str],
        routes: RouteTable,
        on_commit: Callable[[int], None],
        on_answered: Callable[[list[Answered]], None] = lambda answered: None,
    ) -> None:
        self._queue = queue
        self._secret = secret
        self._routes = routes
        self._on_commit = on_commit
        self._on_answered = on_answered
        self._set_up()

    def _set_up(self) -> None:
        """The intake's own state."""


class InProcessIntake(_IntakeBase):
    """Examine in this process; store through ``IntakeWriter``."""

    def _set_up(self) -> None:
        self._writer = IntakeWriter(self._queue, on_commit=self._on_commit)

    def start(self) -> None:
        self._writer.start()

    async def stop(self) -> None:
        await self._writer.stop()

    async def accept(
        self, headers: Mapping[str, str], body: bytes, *, content_type: str, charset: str | None
    ) -> IntakeResult:
        started = time.perf_counter()
        result = await self._accept(headers, body, content_type=content_type, charset=charset)
        self._on_answered([(result.status, result.event, time.perf_counter() - started)])
        return result

    async def _accept(
        self, headers: Mapping[str, str], body: bytes, *, content_type: str, charset: str | None
    ) -> IntakeResult:
        examined = examine(
            delivery_headers(headers),
            body,
            secret=self._secret(),
            content_type=content_type,
            charset=charset,
            routes=self._routes,
        )
        if isinstance(examined, Answer):
            return IntakeResult.from_verdict(answered(examined))
        delivery = examined.delivery
        try:
            is_new = await self._writer.submit(delivery)
        except Exception as exc:
            log.exception("could not store delivery %s", delivery.id)
            return IntakeResult.from_verdict(not_stored(delivery.event, repr(exc)))
        return IntakeResult.from_verdict(stored(examined, is_new=is_new))


class ProcessIntake(_IntakeBase):
    """Requests to the intake process and back; see the module's docstring."""

    # After a burst's last answer, how long the write lock is kept for the senders' next
    # requests (see ``_more_within``).
    LINGER_SECONDS = 0.002

    def _set_up(self) -> None:
        if self._queue.db.sqlite_path is None:
            raise ValueError("the intake process needs a SQLite database file")
        # Each request's answer to come, and when it was accepted.
        self._pending: deque[tuple[Request, _Answer]] = deque()
        self._in_flight: deque[_Answer] = deque()  # in the order sent
        self._arrived = asyncio.Event()
        self._settled = asyncio.Event()  # nothing in flight
        self._sent = asyncio.Event()
        self._sending = False  # the write lock is held: requests go straight to the process
        self._closing = False
        self._process: IntakeProcess | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._closing = False
        self._task = asyncio.create_task(self._run(), name="intake")

    async def stop(self) -> None:
        """Take no more requests; the ones in flight still get their real answers."""
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._process is not None:
            await self._process.close()
            self._process = None
        self._fail([answer for _, answer in self._pending], RuntimeError("server is shutting down"))
        self._pending.clear()

    async def accept(
        self, headers: Mapping[str, str], body: bytes, *, content_type: str, charset: str | None
    ) -> IntakeResult:
        if self._closing or self._task is None or self._task.done():
            self._on_answered([(503, None, 0.0)])
            return IntakeResult(503, {"error": NOT_STORED}, error="intake is not running")
        request: Request = (delivery_headers(headers), content_type, charset, body)
        future: asyncio.Future[Verdict] = asyncio.get_running_loop().create_future()
        answer = (future, time.perf_counter())
        if self._sending:
            self._send(request, answer)
        else:
            self._pending.append((request, answer))
            self._arrived.set()
        try:
            verdict = await future
        except Exception as exc:
            return IntakeResult(503, {"error": NOT_STORED}, error=str(exc))
        return IntakeResult.from_verdict(verdict)

    @property
    def process_id(self) -> int | None:
        """The intake process's pid while it runs."""
        process = self._process
        return process.pid if process is not None and process.running else None

    async def _run(self) -> None:
        try:  # ready before the first request, rather than started by it
            await self._start_process()
        except Exception:
            log.exception("the intake process did not start; trying again at the next request")
        while True:
            await self._arrived.wait()
            self._arrived.clear()
            if self._pending:
                await self._send_while_busy()

    async def _send_while_busy(self) -> None:
        """Hold the write lock, sending requests straight to the process, until none is in
        flight any more."""
        async with self._queue.db.urgent_writes():
            try:
                await self._start_process()
            except Exception as exc:
                log.exception("the intake process did not start")
                self._fail([answer for _, answer in self._pending], exc)
                self._pending.clear()
                return
            self._sending = True
            try:
                while self._pending:
                    self._send(*self._pending.popleft())
                while True:
                    while self._in_flight:
                        self._settled.clear()
                        await self._until_settled()
                    if self._closing or not self._sending:  # stopping, or the process died
                        break
                    if not await self._more_within(self.LINGER_SECONDS):
                        break
            finally:
                self._sending = False

    async def _more_within(self, seconds: float) -> bool:
        """Whether another request is sent within ``seconds``.

        A burst's senders send their next requests a moment after their answers; keeping the
        lock for that moment spares each of them a wait behind a worker's transaction.
        """
        self._sent.clear()
        try:
            await asyncio.wait_for(self._sent.wait(), seconds)
        except TimeoutError:
            return False
        return True

    async def _start_process(self) -> None:
        if self._process is not None and self._process.running:
            return
        db = self._queue.db
        assert db.sqlite_path is not None
        process = IntakeProcess(
            db.sqlite_path,
            uri=db.sqlite_uri,
            secret=self._secret(),
            routes=self._routes.routes,
            on_verdicts=self._answered,
            on_exit=self._exited,
        )
        # Known before it has started, so that ``stop`` during the start waits for its end.
        self._process = process
        try:
            await process.start()
        except BaseException:
            self._process = None
            raise

    async def _until_settled(self) -> None:
        try:
            await self._settled.wait()
        except asyncio.CancelledError:
            # Stopping: what was sent is being stored; wait for its answers (or the process's
            # end), so that those requests get their real outcome.
            with contextlib.suppress(asyncio.CancelledError):
                await self._settled.wait()
            raise

    def _send(self, request: Request, answer: _Answer) -> None:
        assert self._process is not None
        try:
            self._process.send(request)
        except Exception as exc:  # the process is gone: this request fails, GitHub retries
            self._fail([answer], exc)
            return
        self._in_flight.append(answer)
        self._sent.set()

    def _answered(self, verdicts: list[Verdict]) -> None:
        """A batch's verdicts, in the order its requests were sent."""
        in_flight = self._in_flight
        queued = 0
        now = time.perf_counter()
        answered: list[Answered] = []
        for verdict in verdicts:
            if not in_flight:
                log.error("the intake process answered a request that was not sent")
                break
            future, started = in_flight.popleft()
            if not future.done():
                future.set_result(verdict)
            answered.append((verdict[0], verdict[2], now - started))
            queued += verdict[5]
        self._on_answered(answered)
        if queued:
            self._on_commit(queued)
        if not in_flight:
            self._settled.set()

    def _exited(self, error: BaseException) -> None:
        """The process ended: what it had not answered fails (GitHub will redeliver it, and a
        row that was stored after all is recognised as a redelivery then)."""
        if self._in_flight:
            log.error("the intake process ended with %d requests unanswered", len(self._in_flight))
        self._fail(self._in_flight, error)
        self._in_flight.clear()
        self._sending = False  # later requests wait for a new process
        self._settled.set()

    def _fail(self, answers: Iterable[_Answer], error: BaseException) -> None:
        """Requests that get no verdict: each of them will answer 503."""
        now = time.perf_counter()
        failed: list[Answered] = []
        for future, started in answers:
            if not future.done():
                future.set_exception(error)
                failed.append((503, None, now - started))
        if failed:
            self._on_answered(failed)


def create_intake(
    queue: DeliveryQueue,
    *,
    secret: Callable[[], str],
    routes: RouteTable,
    on_commit: Callable[[int], None],
    on_answered: Callable[[list[Answered]], None],
) -> Intake:
    """The intake process for a SQLite file; this process's own intake otherwise.

    ``on_answered`` hears of every request's outcome, a batch at a time (for the metrics and
    the health window: per batch, that bookkeeping costs the event loop far less).
    """
    kind = ProcessIntake if queue.db.sqlite_path is not None else InProcessIntake
    return kind(queue, secret=secret, routes=routes, on_commit=on_commit, on_answered=on_answered)

"""The aiohttp application: ``POST /webhook``, ``GET /healthz``, ``GET /metrics``.

``/metrics`` and the health detail (``/healthz/detail``) are for operators only: behind
``OPERATOR_TOKEN`` on this port, or on ``OPERATOR_PORT`` (``app.operator.endpoints``). The
service API (``/v1/ai/...``, ``app.api``) is added when ``API_TOKEN`` or an OIDC issuer is set.

``create_app`` is shared by the CLI and the tests. Every resource is opened and closed by a
``cleanup_ctx`` entry, in order: the HTTP session, the database (migrated on start), GitHub auth,
the intake writer and the workers. The webhook view only verifies, stores and answers; all work
happens in the workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client import Counter as PromCounter
from sqlalchemy.ext.asyncio import AsyncConnection

from app import __version__
from app.cluster import ClusterBus, listen_dsn
from app.config_loader import ConfigLoader
from app.feedback.registry import FeedbackStore
from app.gateway import GatewayConfigError, build_reviewers
from app.github.auth import AppAuth
from app.handlers import Dispatcher, build_router
from app.health import HealthMonitor, register_health_metrics
from app.intake.accept import Answered, Intake, create_intake
from app.intake.limit import RETRY_AFTER_SECONDS, PendingLimit
from app.intake.routes import RecordingRouter
from app.intake.verify import (
    MAX_BODY_BYTES,
)
from app.ledger import task as ledger_task
from app.logs import RedactingFilter
from app.metrics import Metrics
from app.operator import endpoints as operator_endpoints
from app.policy.actions import record_decision_in
from app.policy.decisions import DecisionStore
from app.policy.outbox import Outbox
from app.policy.timers import recheck_idle_intents, send_due_actions
from app.queue import DONE, FAILED, Delivery, DeliveryQueue, WorkerPool
from app.quota import QuotaLedger
from app.review.pipeline import ReviewOutcome, ReviewPipeline
from app.review.store import ReviewStore
from app.services import Services
from app.settings import Settings
from app.store import migrate
from app.store.db import Database
from app.sweep.sweepers import Sweepers, build_sweepers

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", Metrics)
SERVICES = web.AppKey("services", Services)
INTAKE = web.AppKey("intake", Intake)
WORKERS = web.AppKey("workers", WorkerPool)
STARTED = web.AppKey("started", float)
REDACTOR = web.AppKey("redactor", RedactingFilter)
ROUTER = web.AppKey("router", RecordingRouter)
SWEEPERS = web.AppKey("sweepers", Sweepers)
PENDING = web.AppKey("intake_pending", PendingLimit)
CLUSTER = web.AppKey("cluster", ClusterBus)
#: What this process serves: webhooks (``web``), the queue's work (``workers``), or both.
ROLE = web.AppKey("role", str)

HTTP_TIMEOUT = aiohttp.ClientTimeout(total=60, connect=10, sock_read=50)


def create_app(
    settings: Settings,
    *,
    run_workers: bool = True,
    redactor: RedactingFilter | None = None,
) -> web.Application:
    settings.check_for_server()
    role = settings.serve_role if run_workers else "web"
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[SETTINGS] = settings
    app[ROLE] = role
    app[METRICS] = Metrics()
    app[STARTED] = time.monotonic()
    app[ROUTER] = build_router()
    pending = app[PENDING] = PendingLimit(
        max_requests=settings.intake_max_pending, max_bytes=settings.intake_max_pending_bytes
    )
    app[METRICS].intake_pending_requests.set_function(lambda: pending.requests)
    app[METRICS].intake_pending_bytes.set_function(lambda: pending.bytes)
    if redactor is not None:
        app[REDACTOR] = redactor
    if settings.operator_token is not None:
        app[operator_endpoints.TOKEN] = settings.operator_token
    if role != "workers":
        app.router.add_post("/webhook", webhook_view)
    app.router.add_get("/healthz", healthz_view)
    app.router.add_get("/healthz/detail", operator_endpoints.operator_only(health_detail_view))
    app.router.add_get("/metrics", operator_endpoints.operator_only(metrics_view))
    app.cleanup_ctx.append(_services_ctx)
    if settings.api_enabled:
        # Imported only when served: the API's modules are not part of the App's own path.
        from app.api.mount import mount

        mount(app, services=SERVICES)
    if settings.dashboard_enabled:
        from app.dashboard.mount import mount as mount_dashboard

        mount_dashboard(app, services=SERVICES, settings=settings)
    if settings.operator_port is not None:
        app.cleanup_ctx.append(
            operator_endpoints.listener(
                [
                    ("/healthz", health_detail_view),
                    ("/healthz/detail", health_detail_view),
                    ("/metrics", metrics_view),
                ],
                host=settings.host,
                port=settings.operator_port,
                shared=[SERVICES, METRICS, STARTED],
            )
        )
    if role != "web":
        app.cleanup_ctx.append(_workers_ctx)
        app.cleanup_ctx.append(_action_timers_ctx)
        app.cleanup_ctx.append(_sweepers_ctx)
        app.cleanup_ctx.append(_ledger_ctx)
    return app


async def _services_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    session = aiohttp.ClientSession(timeout=HTTP_TIMEOUT)
    db = Database.from_url(settings.database_url)
    try:
        await migrate.upgrade(db.engine)
        queue = DeliveryQueue(db, lease_seconds=settings.lease_seconds)
        redactor = app.get(REDACTOR)
        auth = AppAuth(
            session,
            app_id=str(settings.github_app_id),
            private_key=settings.private_key_pem(),
            api_url=settings.github_api_url,
            on_new_token=redactor.add if redactor is not None else None,
        )
        services = Services(
            settings=settings,
            db=db,
            queue=queue,
            session=session,
            auth=auth,
            metrics=app[METRICS],
            health=HealthMonitor(
                window_s=settings.health_window_seconds,
                components=("webhook", "github", "gateway:anthropic", "gateway:openai"),
            ),
        )
        register_health_metrics(services.health, app[METRICS].registry)
        _build_review_stack(services)
        app[SERVICES] = services
        bus: ClusterBus | None = None
        if not settings.is_sqlite:
            # Other replicas may share the database: hear their work and heads, tell ours.
            bus = ClusterBus(
                listen_dsn(settings.database_url),
                on_work=lambda n: _notify_workers(app, n),
                on_head=services.coordinator.note_head,
            )
            bus.start()
            app[CLUSTER] = bus
        intake: Intake | None = None
        if app[ROLE] != "workers":
            intake = create_intake(
                queue,
                secret=settings.webhook_secret,
                routes=app[ROUTER].table(),
                on_commit=lambda n: _stored(app, n),
                on_answered=lambda answered: _count_answered(app, answered),
            )
            intake.start()
            app[INTAKE] = intake
        warming = asyncio.create_task(_warm(services), name="warm-up")
        try:
            yield
        finally:
            warming.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await warming
            if intake is not None:
                await intake.stop()
            if bus is not None:
                await bus.stop()
            if services.gateway is not None:
                await services.gateway.aclose()
    finally:
        await session.close()
        await db.dispose()


async def _warm(services: Services) -> None:
    """In the background at start: what the first review would otherwise pay for, the parsed
    App key and the tokens of the installations heard from lately (their connection to GitHub
    opened on the way)."""
    try:
        installations = await services.queue.recent_installations(limit=20)
        await services.auth.warm(installations)
    except Exception:
        log.exception("warming up failed; the first deliveries will do it")


def _build_review_stack(services: Services) -> None:
    """Gateway clients and the pipeline; without a usable gateway the server still serves."""
    settings = services.settings
    try:
        services.gateway = build_reviewers(settings)
    except GatewayConfigError as exc:
        services.gateway_error = str(exc)
        log.warning("reviews are unavailable until the gateway is configured: %s", exc)
        return
    loader = ConfigLoader()
    services.config_loader = loader
    services.pipeline = ReviewPipeline(
        settings=settings,
        store=ReviewStore(services.db),
        reviewers=services.gateway.reviewers,
        coordinator=services.coordinator,
        load_config=loader.load,
        quota=QuotaLedger(services.db),
        health=services.health,
        recorder=functools.partial(_record_decision, services),
        feedback=FeedbackStore(services.db),
    )


async def _record_decision(
    services: Services, conn: AsyncConnection, outcome: ReviewOutcome, installation_id: int | None
) -> int | None:
    """The pipeline's recorder: the decision and its queued action, in the review's transaction."""
    return await record_decision_in(
        conn,
        outcome,
        store=DecisionStore(services.db),
        outbox=Outbox(services.db),
        installation_id=installation_id,
    )


def _stored(app: web.Application, count: int) -> None:
    """Intake committed ``count`` deliveries that need handling: wake workers here and on the
    other replicas."""
    _notify_workers(app, count)
    bus = app.get(CLUSTER)
    if bus is not None:
        bus.publish_work(count)


def _notify_workers(app: web.Application, count: int) -> None:
    workers = app.get(WORKERS)
    if workers is not None:
        workers.notify(count)


async def _workers_ctx(app: web.Application) -> AsyncIterator[None]:
    services = app[SERVICES]
    settings = services.settings
    if settings.is_sqlite:
        # One process owns a SQLite file, so anything still "running" was cut off by a crash.
        released = await services.queue.release_all_leases()
        if released:
            log.warning("re-queued %d deliveries interrupted by the last shutdown", released)
        actions = await Outbox(services.db).release_all()
        intents = await DecisionStore(services.db).release_claims()
        if actions or intents:
            log.warning(
                "resuming %d actions and %d merges interrupted by the last shutdown",
                actions,
                intents,
            )
    metrics = app[METRICS]

    def on_outcome(delivery: Delivery, outcome: str, elapsed: float) -> None:
        metrics.handler_seconds.labels(event=delivery.event).observe(elapsed)
        if outcome == DONE:
            metrics.processed.labels(event=delivery.event).inc()
        elif outcome == FAILED:
            metrics.failed.labels(event=delivery.event).inc()
        else:
            metrics.retried.labels(event=delivery.event).inc()

    pool = WorkerPool(
        services.queue,
        Dispatcher(app[ROUTER], services),
        count=settings.max_concurrent_reviews if settings.workers else 0,
        claimers=settings.workers,
        max_attempts=settings.max_attempts,
        retry_base_seconds=settings.retry_base_seconds,
        retry_max_seconds=settings.retry_max_seconds,
        poll_interval=settings.poll_interval_seconds,
        on_outcome=on_outcome,
    )
    app[WORKERS] = pool
    pool.start()
    yield
    await pool.stop(grace_seconds=settings.shutdown_grace_seconds)


async def _action_timers_ctx(app: web.Application) -> AsyncIterator[None]:
    """The acting stage's timers (``policy/timers``): queued actions and idle merge intents."""
    services = app[SERVICES]
    settings = services.settings

    async def loop() -> None:
        last_intents = time.monotonic()
        while True:
            await asyncio.sleep(settings.actions_interval_seconds)
            try:
                await send_due_actions(services)
                if time.monotonic() - last_intents >= settings.intent_recheck_seconds:
                    last_intents = time.monotonic()
                    await recheck_idle_intents(
                        services, idle=timedelta(seconds=settings.intent_recheck_seconds)
                    )
            except Exception:
                log.exception("the action timers failed; trying again at the next tick")

    task = asyncio.create_task(loop(), name="action-timers")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _sweepers_ctx(app: web.Application) -> AsyncIterator[None]:
    """The sweepers (``app.sweep``): stale budget reservations, old finished deliveries."""
    services = app[SERVICES]
    sweepers = build_sweepers(services.settings, services.db, services.queue)
    app[SWEEPERS] = sweepers
    sweepers.start()
    try:
        yield
    finally:
        await sweepers.stop()


async def _ledger_ctx(app: web.Application) -> AsyncIterator[None]:
    """The ledger's reconciliation with the gateway's logs (``app.ledger``), with CF_API_TOKEN."""
    services = app[SERVICES]
    async with ledger_task.running(services.settings, services.db, services.metrics):
        yield


async def webhook_view(request: web.Request) -> web.Response:
    """Read the request, have intake judge and store it, answer. The metrics and the health
    window hear of it from intake (``_count_answered``), a batch at a time.

    What intake holds is bounded (``intake.limit``): a request is counted in by its
    ``Content-Length`` before its body is read, and answered 503 at once when there is no room.
    """
    app = request.app
    pending = app[PENDING]
    held = min(request.content_length or 0, MAX_BODY_BYTES)
    if not pending.admit(held):
        return _intake_full(app)
    try:
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            _count_answered(app, [(413, None, 0.0)])
            return _error(413, "payload larger than 25 MB")
        if len(body) > held:
            if not pending.grow(len(body) - held):
                return _intake_full(app)
            held = len(body)
        result = await app[INTAKE].accept(
            request.headers, body, content_type=request.content_type, charset=request.charset
        )
    finally:
        pending.release(held)
    status = result.status
    if status == 202:
        if result.head is not None and result.pr_key is not None:
            app[SERVICES].coordinator.note_head(result.pr_key, result.head)
            bus = app.get(CLUSTER)
            if bus is not None:
                bus.publish_head(result.pr_key, result.head)
    elif status == 503:
        log.error("could not store a delivery: %s", result.error)
    elif status >= 400:
        log.info("webhook rejected with %d: %s", status, result.error)
    return _json(result.body, status)


def _intake_full(app: web.Application) -> web.Response:
    """503 with ``Retry-After``: intake holds its maximum. Counted as shed, not in the webhook's
    health window: a burst that fills intake must not take a replica out of a load balancer,
    which would only send the burst to the others."""
    app[METRICS].shed.inc()
    response = _error(503, "intake is full; deliver again later")
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def _count_answered(app: web.Application, answered: list[Answered]) -> None:
    """Webhook requests answered: the delivery counters and the webhook's health window."""
    metrics = app[METRICS]
    counts: Counter[tuple[PromCounter, str]] = Counter()
    for status, event, _ in answered:
        if status == 202:
            counts[metrics.received, event or ""] += 1
        elif status == 200 and event is not None:
            counts[metrics.duplicates, event] += 1
        elif status >= 400:
            counts[metrics.rejected, str(status)] += 1
    for (metric, label), n in counts.items():
        metrics.inc(metric, label, n)
    services = app.get(SERVICES)
    if services is not None:
        services.health.record_many(
            "webhook", [(seconds, status < 500) for status, _, seconds in answered]
        )


def _error(status: int, reason: str) -> web.Response:
    return _json({"error": reason}, status)


def _json(body: dict[str, Any], status: int) -> web.Response:
    # orjson: the answer to every delivery is built on the intake's hot path.
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


async def healthz_view(request: web.Request) -> web.Response:
    """The public health check: up (200) or down (503, when unhealthy), and nothing else."""
    down = (await _health(request.app))["status"] == "unhealthy"
    return web.json_response({"status": "down" if down else "up"}, status=503 if down else 200)


async def health_detail_view(request: web.Request) -> web.Response:
    """Overall state and each dependency's window; 503 only when unhealthy. Operators only."""
    body = await _health(request.app)
    return web.json_response(body, status=503 if body["status"] == "unhealthy" else 200)


async def _health(app: web.Application) -> dict[str, Any]:
    services = app[SERVICES]
    body: dict[str, Any] = services.health.snapshot()
    body["version"] = __version__
    body["uptime_s"] = round(time.monotonic() - app[STARTED], 3)
    try:
        body["queue_depth"] = await services.queue.depth()
    except Exception:
        log.exception("health check could not read the queue")
        body["status"] = "unhealthy"
        body["queue_depth"] = None
        body["components"]["database"] = {"state": "unhealthy"}
    try:
        ledger = await ledger_task.ledger_health(services.settings, services.db, services.metrics)
    except Exception:  # a database fault is the queue's check's to report
        log.exception("health check could not read the ledger's discrepancies")
    else:
        if ledger is not None:
            body["ledger"] = ledger
    return body


async def metrics_view(request: web.Request) -> web.Response:
    """Prometheus text. Operators only."""
    app = request.app
    metrics = app[METRICS]
    try:
        metrics.queue_depth.set(await app[SERVICES].queue.depth())
    except Exception:
        log.exception("metrics could not read the queue depth")
    payload = generate_latest(metrics.registry)
    response = web.Response(body=payload)
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    response.charset = "utf-8"
    return response

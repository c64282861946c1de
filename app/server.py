"""The aiohttp application: ``POST /webhook``, ``GET /healthz``, ``GET /metrics``.

``create_app`` is shared by the CLI and the tests. Every resource is opened and closed by a
``cleanup_ctx`` entry, in order: the HTTP session, the database (migrated on start), GitHub auth,
the intake writer and the workers. The webhook view only verifies, stores and answers; all work
happens in the workers.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client import Counter as PromCounter

from app import __version__
from app.config_loader import ConfigLoader
from app.gateway import GatewayConfigError, build_reviewers
from app.github.auth import AppAuth
from app.github.routes import RecordingRouter
from app.github.webhook import (
    MAX_BODY_BYTES,
)
from app.handlers import Dispatcher, build_router
from app.health import HealthMonitor, register_health_metrics
from app.intake import Answered, Intake, create_intake
from app.logs import RedactingFilter
from app.metrics import Metrics
from app.queue import DONE, FAILED, Delivery, DeliveryQueue, WorkerPool
from app.quota import QuotaLedger
from app.review.pipeline import ReviewPipeline
from app.review.store import ReviewStore
from app.services import Services
from app.settings import Settings
from app.store import migrate
from app.store.db import Database

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", Metrics)
SERVICES = web.AppKey("services", Services)
INTAKE = web.AppKey("intake", Intake)
WORKERS = web.AppKey("workers", WorkerPool)
STARTED = web.AppKey("started", float)
REDACTOR = web.AppKey("redactor", RedactingFilter)
ROUTER = web.AppKey("router", RecordingRouter)

HTTP_TIMEOUT = aiohttp.ClientTimeout(total=60, connect=10, sock_read=50)


def create_app(
    settings: Settings,
    *,
    run_workers: bool = True,
    redactor: RedactingFilter | None = None,
) -> web.Application:
    settings.check_for_server()
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    app[STARTED] = time.monotonic()
    app[ROUTER] = build_router()
    if redactor is not None:
        app[REDACTOR] = redactor
    app.router.add_post("/webhook", webhook_view)
    app.router.add_get("/healthz", healthz_view)
    app.router.add_get("/metrics", metrics_view)
    app.cleanup_ctx.append(_services_ctx)
    if run_workers:
        app.cleanup_ctx.append(_workers_ctx)
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
        intake = create_intake(
            queue,
            secret=settings.webhook_secret,
            routes=app[ROUTER].table(),
            on_commit=lambda n: _notify_workers(app, n),
            on_answered=lambda answered: _count_answered(app, answered),
        )
        intake.start()
        app[INTAKE] = intake
        try:
            yield
        finally:
            await intake.stop()
            if services.gateway is not None:
                await services.gateway.aclose()
    finally:
        await session.close()
        await db.dispose()


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
    )


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
        count=settings.workers,
        max_attempts=settings.max_attempts,
        retry_base_seconds=settings.retry_base_seconds,
        retry_max_seconds=settings.retry_max_seconds,
        poll_interval=settings.poll_interval_seconds,
        on_outcome=on_outcome,
    )
    app[WORKERS] = pool
    pool.start()
    yield
    await pool.stop()


async def webhook_view(request: web.Request) -> web.Response:
    """Read the request, have intake judge and store it, answer. The metrics and the health
    window hear of it from intake (``_count_answered``), a batch at a time."""
    app = request.app
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        _count_answered(app, [(413, None, 0.0)])
        return _error(413, "payload larger than 25 MB")
    result = await app[INTAKE].accept(
        request.headers, body, content_type=request.content_type, charset=request.charset
    )
    status = result.status
    if status == 202:
        if result.head is not None and result.pr_key is not None:
            app[SERVICES].coordinator.note_head(result.pr_key, result.head)
    elif status == 503:
        log.error("could not store a delivery: %s", result.error)
    elif status >= 400:
        log.info("webhook rejected with %d: %s", status, result.error)
    return _json(result.body, status)


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
    """Overall state and each dependency's window; 503 only when unhealthy."""
    app = request.app
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
    return web.json_response(body, status=503 if body["status"] == "unhealthy" else 200)


async def metrics_view(request: web.Request) -> web.Response:
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

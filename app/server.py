"""The aiohttp application: ``POST /webhook``, ``GET /healthz``, ``GET /metrics``.

``create_app`` is shared by the CLI and the tests. Every resource is opened and closed by a
``cleanup_ctx`` entry, in order: the HTTP session, the database (migrated on start), GitHub auth,
the intake writer and the workers. The webhook view only verifies, stores and answers; all work
happens in the workers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from gidgethub import routing
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app import __version__
from app.config_loader import ConfigLoader
from app.gateway import GatewayConfigError, build_reviewers
from app.github.auth import AppAuth
from app.github.webhook import (
    MAX_BODY_BYTES,
    WebhookRejection,
    is_utf8,
    parse_delivery,
    to_new_delivery,
)
from app.handlers import Dispatcher, build_router
from app.health import HealthMonitor, register_health_metrics
from app.logs import RedactingFilter
from app.metrics import Metrics
from app.queue import DONE, FAILED, Delivery, DeliveryQueue, IntakeWriter, WorkerPool
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
INTAKE = web.AppKey("intake", IntakeWriter)
WORKERS = web.AppKey("workers", WorkerPool)
STARTED = web.AppKey("started", float)
REDACTOR = web.AppKey("redactor", RedactingFilter)
ROUTER = web.AppKey("router", routing.Router)

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
        writer = IntakeWriter(queue, on_commit=lambda n: _notify_workers(app, n))
        writer.start()
        app[INTAKE] = writer
        try:
            yield
        finally:
            await writer.stop()
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
    started = time.perf_counter()
    response = await _webhook(request)
    services = request.app.get(SERVICES)
    if services is not None:
        services.health.record("webhook", time.perf_counter() - started, response.status < 500)
    return response


async def _webhook(request: web.Request) -> web.Response:
    app = request.app
    metrics = app[METRICS]
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        metrics.inc(metrics.rejected, "413")
        return _error(413, "payload larger than 25 MB")
    try:
        event = parse_delivery(
            request.headers,
            body,
            secret=app[SETTINGS].webhook_secret(),
            content_type=request.content_type,
            charset=request.charset,
        )
    except WebhookRejection as rejection:
        metrics.inc(metrics.rejected, str(rejection.status))
        log.info("webhook rejected with %d: %s", rejection.status, rejection.reason)
        return _error(rejection.status, rejection.reason)
    if event.event == "ping":
        return web.json_response({"ok": True, "zen": event.data.get("zen")}, status=200)
    # A UTF-8 JSON body is stored as received; anything else as re-encoded JSON.
    is_json = request.content_type == "application/json" and is_utf8(request.charset)
    delivery = to_new_delivery(
        event,
        raw_json=body if is_json else None,
        needs_handling=any(True for _ in app[ROUTER].fetch(event)),
    )
    try:
        is_new = await app[INTAKE].submit(delivery)
    except Exception:
        log.exception("could not store delivery %s", delivery.id)
        metrics.inc(metrics.rejected, "503")
        return _error(503, "the delivery could not be stored; GitHub will let you redeliver it")
    head = _pull_request_head(event.event, event.data)
    if is_new and head is not None and delivery.pr_key is not None:
        app[SERVICES].coordinator.note_head(delivery.pr_key, head)
    if not is_new:
        metrics.inc(metrics.duplicates, delivery.event)
        return _json({"ok": True, "duplicate": True, "delivery": delivery.id}, 200)
    metrics.inc(metrics.received, delivery.event)
    return _json({"ok": True, "delivery": delivery.id}, 202)


def _pull_request_head(event: str, data: dict[str, Any]) -> str | None:
    if event != "pull_request" or data.get("action") not in {"opened", "synchronize", "reopened"}:
        return None
    pr = data.get("pull_request")
    head = pr.get("head") if isinstance(pr, dict) else None
    sha = head.get("sha") if isinstance(head, dict) else None
    return sha if isinstance(sha, str) else None


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

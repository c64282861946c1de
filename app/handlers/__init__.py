"""All webhook handlers, one module per concern, composed into one router.

``dispatch`` runs every matching callback even when one raises (``Router.dispatch`` would stop at
the first exception), then raises one error naming every failure so the queue retries the
delivery. Handlers are idempotent, so a retry that re-runs the callbacks that succeeded is safe.
"""

from __future__ import annotations

import logging
from typing import Any

from gidgethub import routing, sansio
from gidgethub.abc import GitHubAPI

from app.commands import handler as commands
from app.feedback import handlers as feedback
from app.handlers import checks, installation, pull_request, push, reviews
from app.handlers.context import HandlerContext
from app.intake.routes import RecordingRouter
from app.logs import log_context
from app.queue import Delivery, RetryLater

log = logging.getLogger("app.handlers")

ROUTERS: list[routing.Router] = [
    installation.router,
    pull_request.router,
    checks.router,
    push.router,
    reviews.router,
    commands.router,
    feedback.router,
]


def build_router(*extra: routing.Router) -> RecordingRouter:
    """Every handler's routes in one router, which also knows them as a ``RouteTable``."""
    return RecordingRouter(*ROUTERS, *extra)


class HandlerErrors(Exception):
    """One or more callbacks for a delivery raised."""

    def __init__(self, errors: list[tuple[str, BaseException]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{name}: {type(e).__name__}: {e}" for name, e in errors))


async def dispatch(
    router: routing.Router, event: sansio.Event, gh: GitHubAPI | None, ctx: HandlerContext
) -> int:
    """Run every callback registered for the event; return how many ran."""
    callbacks = list(router.fetch(event))
    errors: list[tuple[str, BaseException]] = []
    retry: RetryLater | None = None
    for callback in callbacks:
        name = getattr(callback, "__qualname__", repr(callback))
        try:
            await callback(event, gh, ctx=ctx)
        except RetryLater as exc:
            retry = exc
        except Exception as exc:
            ctx.log.exception("handler %s failed", name)
            errors.append((name, exc))
    if errors:
        raise HandlerErrors(errors)
    if retry is not None:
        raise retry
    return len(callbacks)


def event_from_delivery(delivery: Delivery) -> sansio.Event:
    import json

    data: Any = json.loads(delivery.payload)
    return sansio.Event(data, event=delivery.event, delivery_id=delivery.id)


class Dispatcher:
    """The queue's handler: rebuild the event, give it a client and a context, dispatch."""

    def __init__(self, router: routing.Router, services: Any) -> None:
        self.router = router
        self.services = services

    async def __call__(self, delivery: Delivery) -> None:
        with log_context(
            delivery_id=delivery.id,
            event=delivery.event,
            installation_id=delivery.installation_id,
            repository=delivery.repository,
        ):
            event = event_from_delivery(delivery)
            gh = (
                self.services.github_for(delivery.installation_id)
                if delivery.installation_id is not None
                else None
            )
            ctx = HandlerContext(
                services=self.services,
                delivery_id=delivery.id,
                installation_id=delivery.installation_id,
                repository=delivery.repository,
                log=log,
            )
            count = await dispatch(self.router, event, gh, ctx)
            if count == 0:
                log.debug("no handler for %s.%s", delivery.event, delivery.action)

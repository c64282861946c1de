"""Adding the service API to the app: its routes, and a ``cleanup_ctx`` entry for its state.

``create_app`` calls :func:`mount` only when the API is enabled (``Settings.api_enabled``), after
the services entry, whose ``Services`` the API's state is built on. The entry fails the jobs a
crash cut off before serving, and at shutdown kills the running commands (their jobs end
``failed: interrupted``) and closes the audit file.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from app.api.audit import AuditEvent, AuditLog
from app.api.auth import Authenticator
from app.api.config import RepositoryAllowlist
from app.api.jobs import JobStore
from app.api.oidc import OidcVerifier
from app.api.openapi import OPENAPI_PATH, openapi_view
from app.api.ratelimit import SlidingWindowLimiter
from app.api.repos import Repositories
from app.api.routes import ENDPOINTS, handler_for
from app.api.runner import JobRunner, JobSpec
from app.api.state import API, ApiState
from app.services import Services

__all__ = ["mount"]

log = logging.getLogger(__name__)


def mount(app: web.Application, *, services: web.AppKey[Services]) -> None:
    """Add every API route and the API's ``cleanup_ctx`` entry to ``app``."""
    for endpoint in ENDPOINTS:
        app.router.add_route(endpoint.method, endpoint.path, handler_for(endpoint))
    app.router.add_get(OPENAPI_PATH, openapi_view)
    app.cleanup_ctx.append(functools.partial(_api_ctx, services=services))


def _job_event(audit: AuditLog, job_id: str, spec: JobSpec, status: str, error: str | None) -> None:
    audit.emit(
        AuditEvent(
            endpoint="job",
            method="-",
            request_id=job_id,
            event="api.job",
            caller=spec.caller,
            repository=spec.repository,
            outcome=status,
            detail=error,
            job_id=job_id,
        )
    )


async def _api_ctx(app: web.Application, *, services: web.AppKey[Services]) -> AsyncIterator[None]:
    shared = app[services]
    settings = shared.settings
    verifier = None
    if settings.api_oidc_issuer and settings.api_oidc_audience:
        if settings.api_oidc_issuer.startswith("http:"):
            log.warning(
                "the OIDC issuer is plain http (API_OIDC_ALLOW_HTTP): its keys, which decide who "
                "gets in, travel unprotected; for a local test issuer only"
            )
        verifier = OidcVerifier(
            shared.session,
            issuer=settings.api_oidc_issuer,
            audience=settings.api_oidc_audience,
            ttl_s=settings.api_oidc_jwks_ttl_seconds,
        )
    audit = AuditLog(settings.api_audit_log)
    jobs = JobStore(shared.db)
    runner = JobRunner(
        store=jobs,
        settings=settings,
        session=shared.session,
        auth=shared.auth,
        is_sqlite=shared.db.is_sqlite,
        on_finish=functools.partial(_job_event, audit),
    )
    try:
        await runner.start()
        app[API] = ApiState(
            services=shared,
            auth=Authenticator(token=settings.api_token, verifier=verifier),
            allowlist=RepositoryAllowlist(settings.api_allowed_repositories),
            limiter=SlidingWindowLimiter(
                limit=settings.api_rate_limit, window_s=settings.api_rate_window_seconds
            ),
            audit=audit,
            repositories=Repositories(shared),
            jobs=jobs,
            runner=runner,
        )
        yield
    finally:
        await runner.stop()
        audit.close()

"""What the API's views share, built once per app by ``app.api.mount`` and closed with it."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from app.api.audit import AuditLog
from app.api.auth import Authenticator
from app.api.config import RepositoryAllowlist
from app.api.jobs import JobStore
from app.api.ratelimit import SlidingWindowLimiter
from app.api.repos import Repositories
from app.api.runner import JobRunner
from app.services import Services

__all__ = ["API", "ApiState"]


@dataclass(frozen=True, slots=True)
class ApiState:
    services: Services
    auth: Authenticator
    allowlist: RepositoryAllowlist
    limiter: SlidingWindowLimiter
    audit: AuditLog
    repositories: Repositories
    jobs: JobStore
    runner: JobRunner


API = web.AppKey("api", ApiState)

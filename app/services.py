"""The long-lived objects a handler may use, built once by the app factory.

Handlers receive them through ``HandlerContext`` rather than importing globals, so a test builds
exactly the services it needs and two apps in one process never share state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import aiohttp

from app.config_loader import ConfigLoader
from app.gateway import GatewayClients
from app.github.auth import AppAuth
from app.github.client import InstallationGitHubAPI
from app.health import HealthMonitor
from app.metrics import Metrics
from app.queue import DeliveryQueue
from app.review.coordinator import ReviewCoordinator
from app.review.pipeline import ReviewPipeline
from app.settings import Settings
from app.store.db import Database


@dataclass
class Services:
    settings: Settings
    db: Database
    queue: DeliveryQueue
    session: aiohttp.ClientSession
    auth: AppAuth
    metrics: Metrics
    coordinator: ReviewCoordinator = field(default_factory=ReviewCoordinator)
    gateway: GatewayClients | None = None
    gateway_error: str | None = None
    pipeline: ReviewPipeline | None = None
    config_loader: ConfigLoader | None = None
    health: HealthMonitor = field(default_factory=HealthMonitor)
    extras: dict[str, Any] = field(default_factory=dict)

    def github_for(self, installation_id: int) -> InstallationGitHubAPI:
        return InstallationGitHubAPI(
            self.session,
            self.auth,
            installation_id,
            max_retries=self.settings.github_max_retries,
            max_wait_seconds=self.settings.github_max_wait_seconds,
            observer=self._observe_github,
        )

    def _observe_github(self, method: str, status: int, elapsed: float) -> None:
        self.metrics.github_requests.labels(method=method, status=str(status)).inc()
        # A 4xx is GitHub answering; no answer or a 5xx is GitHub failing.
        self.health.record("github", elapsed, 0 < status < 500)

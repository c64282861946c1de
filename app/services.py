"""The long-lived objects a handler may use, built once by the app factory.

Handlers receive them through ``HandlerContext`` rather than importing globals, so a test builds
exactly the services it needs and two apps in one process never share state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import aiohttp
from sqlalchemy.ext.asyncio import AsyncEngine

from app.github.auth import AppAuth
from app.github.client import InstallationGitHubAPI
from app.metrics import Metrics
from app.queue import DeliveryQueue
from app.settings import Settings


@dataclass
class Services:
    settings: Settings
    engine: AsyncEngine
    queue: DeliveryQueue
    session: aiohttp.ClientSession
    auth: AppAuth
    metrics: Metrics
    # Filled in by later stages of the factory (gateway clients, review coordinator, ...).
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

    def _observe_github(self, method: str, status: int, _elapsed: float) -> None:
        self.metrics.github_requests.labels(method=method, status=str(status)).inc()

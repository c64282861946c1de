"""What every handler receives besides the event and the GitHub client."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from app.services import Services
from app.settings import Settings


@dataclass(frozen=True, slots=True)
class HandlerContext:
    services: Services
    delivery_id: str
    installation_id: int | None
    repository: str | None
    log: logging.Logger

    @property
    def settings(self) -> Settings:
        return self.services.settings

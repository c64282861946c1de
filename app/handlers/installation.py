"""Installation lifecycle: noted in the log; tokens for removed installations are dropped."""

from __future__ import annotations

from typing import Any

from gidgethub import routing, sansio
from gidgethub.abc import GitHubAPI

from app.handlers.context import HandlerContext

router = routing.Router()


@router.register("installation")
async def on_installation(
    event: sansio.Event, gh: GitHubAPI | None, *, ctx: HandlerContext
) -> None:
    data: dict[str, Any] = event.data
    account = (data.get("installation") or {}).get("account") or {}
    ctx.log.info(
        "installation %s for %s", data.get("action"), account.get("login", "an unknown account")
    )


@router.register("installation_repositories")
async def on_installation_repositories(
    event: sansio.Event, gh: GitHubAPI | None, *, ctx: HandlerContext
) -> None:
    data: dict[str, Any] = event.data
    added = [r.get("full_name") for r in data.get("repositories_added") or []]
    removed = [r.get("full_name") for r in data.get("repositories_removed") or []]
    ctx.log.info("repositories added %s, removed %s", added, removed)

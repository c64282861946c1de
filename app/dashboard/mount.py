"""Adding the dashboard to the app: its routes, its static files and a ``cleanup_ctx`` entry.

``create_app`` calls :func:`mount` when ``Settings.dashboard_enabled`` (someone can log in),
after the services entry, whose HTTP session the OAuth client uses.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web
from pydantic import SecretStr

from app.services import Services
from app.settings import Settings, SettingsError

from .access import AccessCache
from .oauth import GitHubOAuth
from .session import SessionCodec, derive_key
from .views import DASHBOARD, DashboardState, routes

__all__ = ["STATIC", "check_dashboard_settings", "mount"]

STATIC = Path(__file__).with_name("static")


def check_dashboard_settings(settings: Settings) -> None:
    """Refuse half an OAuth configuration, or a session secret too short to be one."""
    if bool(settings.github_client_id) != bool(settings.github_client_secret):
        raise SettingsError(
            "GITHUB_CLIENT_ID and GITHUB_CLIENT_SECRET go together (the App's OAuth credentials)"
        )
    secret = settings.dashboard_session_secret
    if secret is not None and len(secret.get_secret_value()) < 32:
        raise SettingsError("DASHBOARD_SESSION_SECRET must be at least 32 characters long")


def session_secret(settings: Settings) -> SecretStr:
    """DASHBOARD_SESSION_SECRET, else one derived from the webhook secret (see settings)."""
    if settings.dashboard_session_secret is not None:
        return settings.dashboard_session_secret
    return SecretStr("webhook:" + settings.webhook_secret())


def mount(app: web.Application, *, services: web.AppKey[Services], settings: Settings) -> None:
    """Add every dashboard route, its static files and its ``cleanup_ctx`` entry to ``app``."""
    check_dashboard_settings(settings)
    for method, path, view in routes():
        app.router.add_route(method, path, view)
    app.router.add_static("/dashboard/static", STATIC, append_version=False)
    app.cleanup_ctx.append(functools.partial(_dashboard_ctx, services=services, settings=settings))


async def _dashboard_ctx(
    app: web.Application, *, services: web.AppKey[Services], settings: Settings
) -> AsyncIterator[None]:
    shared = app[services]
    oauth = None
    if settings.github_client_id and settings.github_client_secret:
        oauth = GitHubOAuth(
            shared.session,
            web_url=settings.github_web,
            api_url=settings.github_api_url,
            client_id=settings.github_client_id,
            client_secret=settings.github_client_secret.get_secret_value(),
        )
    app[DASHBOARD] = DashboardState(
        settings=settings,
        services=services,
        codec=SessionCodec(derive_key(session_secret(settings))),
        operator_token=settings.operator_token,
        oauth=oauth,
        access=AccessCache(oauth) if oauth is not None else None,
    )
    yield

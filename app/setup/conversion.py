"""Exchange the manifest flow's one-time code for the App's credentials.

``POST /app-manifests/{code}/conversions`` takes no authentication: the code is the credential.
GitHub answers 404 for a code it does not know, which is also what a used or expired code (an
hour) gets, so the three read the same to the user: start again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
import gidgethub
from gidgethub.aiohttp import GitHubAPI

from app.github.auth import USER_AGENT

# GitHub's codes are short hex strings; anything else never reaches the URL.
_CODE_RE: Final = re.compile(r"^[A-Za-z0-9_-]{1,200}$")


class ConversionError(Exception):
    """The code could not be exchanged; ``message`` is for the page, ``stale`` means retry."""

    def __init__(self, message: str, *, stale: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.stale = stale


@dataclass(frozen=True)
class AppCredentials:
    """What GitHub hands back for a new App; secrets stay out of ``repr``."""

    id: int
    slug: str
    name: str
    html_url: str
    pem: str = field(repr=False)
    webhook_secret: str = field(repr=False)
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)

    @property
    def install_url(self) -> str:
        return f"{self.html_url.rstrip('/')}/installations/new"


def valid_code(code: str) -> bool:
    return bool(_CODE_RE.match(code))


def parse_conversion(data: Any) -> AppCredentials:
    if not isinstance(data, dict):
        raise ConversionError("GitHub's answer to the code exchange is not a JSON object")
    missing = [k for k in ("id", "slug", "pem", "webhook_secret", "html_url") if not data.get(k)]
    if missing:
        raise ConversionError(
            "GitHub's answer to the code exchange lacks "
            + ", ".join(missing)
            + (
                " (an App created without a webhook secret: set one in the App's settings and "
                "configure it by hand)"
                if missing == ["webhook_secret"]
                else ""
            )
        )
    client_id, client_secret = data.get("client_id"), data.get("client_secret")
    return AppCredentials(
        id=int(data["id"]),
        slug=str(data["slug"]),
        name=str(data.get("name") or data["slug"]),
        html_url=str(data["html_url"]),
        pem=str(data["pem"]),
        webhook_secret=str(data["webhook_secret"]),
        client_id=str(client_id) if client_id else None,
        client_secret=str(client_secret) if client_secret else None,
    )


async def exchange_code(session: aiohttp.ClientSession, api_url: str, code: str) -> AppCredentials:
    """The App's credentials for ``code``; raises :class:`ConversionError` with what to do."""
    if not valid_code(code):
        raise ConversionError("the code in this address is malformed; start again", stale=True)
    client = GitHubAPI(session, USER_AGENT, base_url=api_url)
    try:
        data = await client.post(
            "/app-manifests/{code}/conversions", url_vars={"code": code}, data={}
        )
    except gidgethub.HTTPException as exc:
        status = int(exc.status_code)
        if status == 404:
            raise ConversionError(
                "GitHub does not know this code: it was already used, or it is more than an "
                "hour old. Start again from the setup page (an App created by the first attempt "
                "may already exist under your GitHub settings: delete it or reuse its name).",
                stale=True,
            ) from None
        if status == 422:
            raise ConversionError(
                "GitHub refused the code exchange (422: validation failed, or too many "
                "attempts); wait a minute and start again",
                stale=True,
            ) from None
        raise ConversionError(f"GitHub answered the code exchange with HTTP {status}") from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ConversionError(
            f"cannot reach GitHub's API at {api_url} ({type(exc).__name__}); check --github-url "
            "or GITHUB_API_URL and try the same address again"
        ) from None
    return parse_conversion(data)

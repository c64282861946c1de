"""The client's one configuration object, and where its token comes from.

A token is either given (:class:`StaticToken`, the server's ``API_TOKEN``) or fetched:
:class:`GitHubActionsOidc` asks the Actions runtime for an OIDC token with the server's audience
(the job needs ``permissions: id-token: write``), keeps it until a minute before it expires (they
live five minutes and cannot be extended) and fetches a new one when the server says 401.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Protocol
from urllib.parse import quote, urlsplit

import httpx2

from app import __version__
from app.client.errors import AuthenticationError

__all__ = ["ClientConfig", "GitHubActionsOidc", "StaticToken", "TokenSource"]

#: A cached OIDC token is replaced this long before it expires.
EXPIRY_MARGIN_SECONDS: Final = 60.0


class TokenSource(Protocol):
    """Where a bearer token comes from; ``refresh`` asks for a new one (the last was refused)."""

    def get_token(self, http: httpx2.Client, *, refresh: bool = False) -> str: ...

    async def aget_token(self, http: httpx2.AsyncClient, *, refresh: bool = False) -> str: ...


@dataclass(frozen=True, slots=True)
class StaticToken:
    token: str

    def get_token(self, http: httpx2.Client, *, refresh: bool = False) -> str:
        return self.token

    async def aget_token(self, http: httpx2.AsyncClient, *, refresh: bool = False) -> str:
        return self.token


def _expiry(token: str) -> float:
    """The ``exp`` of a JWT, read without verifying it (the server verifies; this only caches)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, ValueError, KeyError, TypeError):
        return 0.0


@dataclass
class GitHubActionsOidc:
    """An OIDC token from the GitHub Actions runtime, for ``audience``.

    ``request_url`` and ``request_token`` default to ``ACTIONS_ID_TOKEN_REQUEST_URL`` and
    ``ACTIONS_ID_TOKEN_REQUEST_TOKEN``, read when a token is first needed.
    """

    audience: str
    request_url: str | None = None
    request_token: str | None = None
    clock: Callable[[], float] = time.time
    _token: str | None = field(default=None, repr=False)
    _expires: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _request(self) -> tuple[str, dict[str, str]]:
        url = self.request_url or os.environ.get("ACTIONS_ID_TOKEN_REQUEST_URL")
        token = self.request_token or os.environ.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
        if not url or not token:
            raise AuthenticationError(
                "no GitHub Actions OIDC token can be requested: ACTIONS_ID_TOKEN_REQUEST_URL is "
                "unset (give the job `permissions: id-token: write`)"
            )
        separator = "&" if urlsplit(url).query else "?"
        return (
            f"{url}{separator}audience={quote(self.audience, safe='')}",
            {"Authorization": f"bearer {token}", "Accept": "application/json"},
        )

    def _cached(self, refresh: bool) -> str | None:
        if refresh or self._token is None:
            return None
        return self._token if self.clock() < self._expires - EXPIRY_MARGIN_SECONDS else None

    def _keep(self, response: httpx2.Response) -> str:
        if response.status_code != 200:
            raise AuthenticationError(
                f"the Actions runtime refused an OIDC token ({response.status_code})"
            )
        value = response.json().get("value")
        if not isinstance(value, str) or not value:
            raise AuthenticationError("the Actions runtime answered without a token")
        self._token, self._expires = value, _expiry(value)
        return value

    def get_token(self, http: httpx2.Client, *, refresh: bool = False) -> str:
        with self._lock:
            cached = self._cached(refresh)
            if cached is not None:
                return cached
            url, headers = self._request()
            return self._keep(http.get(url, headers=headers))

    async def aget_token(self, http: httpx2.AsyncClient, *, refresh: bool = False) -> str:
        cached = self._cached(refresh)
        if cached is not None:
            return cached
        url, headers = self._request()
        return self._keep(await http.get(url, headers=headers))


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """Everything a client needs: where the server is, how to authenticate, how long to wait.

    Give exactly one of ``token`` and ``token_source``. ``timeout`` is per request (a review
    of a large diff takes minutes). A 429 or 5xx is tried again up to ``max_retries`` times,
    after the server's ``Retry-After`` when it sends one (but never longer than
    ``max_retry_after``: a longer wait is the caller's decision, so it is raised), else after
    ``backoff_base`` seconds doubling up to ``backoff_max``.
    """

    base_url: str
    token: str | None = None
    token_source: TokenSource | None = None
    timeout: float = 600.0
    connect_timeout: float = 10.0
    max_retries: int = 3
    backoff_base: float = 1.0
    backoff_max: float = 30.0
    max_retry_after: float = 120.0
    user_agent: str = f"aigateway-client/{__version__}"

    def __post_init__(self) -> None:
        parts = urlsplit(self.base_url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError("base_url must be an absolute http(s) URL")
        if (self.token is None) == (self.token_source is None):
            raise ValueError("give exactly one of token and token_source")
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")

    @property
    def source(self) -> TokenSource:
        return self.token_source if self.token_source is not None else StaticToken(str(self.token))

    @classmethod
    def from_env(cls) -> ClientConfig:
        """``AIGATEWAY_URL``, then ``AIGATEWAY_TOKEN`` or ``AIGATEWAY_OIDC_AUDIENCE`` (Actions)."""
        url = os.environ.get("AIGATEWAY_URL", "")
        token = os.environ.get("AIGATEWAY_TOKEN") or None
        audience = os.environ.get("AIGATEWAY_OIDC_AUDIENCE")
        if token is None and audience:
            return cls(base_url=url, token_source=GitHubActionsOidc(audience))
        return cls(base_url=url, token=token)

    def backoff(self, retry: int) -> float:
        return float(min(self.backoff_max, self.backoff_base * 2**retry))

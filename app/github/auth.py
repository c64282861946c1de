"""GitHub App authentication: the App JWT and a cache of installation tokens.

gidgethub builds the JWT (``iat`` backdated 60 s, expiry within ten minutes, reused by its
client until shortly before) and exchanges it for an installation token; what it lacks is the
token cache. Tokens live an hour; one is reused until five minutes before it expires, and a
per-installation lock makes concurrent deliveries for the same installation share a single
refresh instead of each asking GitHub for a new token.

The PEM key is parsed once (parsing checks the RSA key and costs tens of milliseconds; signing
with the parsed key costs about one), and ``warm`` does that and fetches the tokens of the
installations the server expects to hear from, so the first review after a start pays for
neither.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import aiohttp
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from gidgethub import apps
from gidgethub.aiohttp import GitHubAPI

log = logging.getLogger(__name__)

USER_AGENT = "aigateway"
REFRESH_BEFORE_EXPIRY_S = 5 * 60


@dataclass(frozen=True, slots=True)
class InstallationToken:
    token: str
    expires_at: float  # epoch seconds

    def fresh(self, now: float) -> bool:
        return now < self.expires_at - REFRESH_BEFORE_EXPIRY_S


@dataclass(frozen=True, slots=True)
class AppIdentity:
    id: int
    slug: str

    @property
    def bot_login(self) -> str:
        return f"{self.slug}[bot]"


class AppAuth:
    """Holds the App's credentials; hands out JWT-authenticated clients and installation tokens."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        app_id: str,
        private_key: str,
        api_url: str,
        on_new_token: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._session = session
        self.app_id = app_id
        self._private_key = private_key
        self.api_url = api_url
        self._on_new_token = on_new_token
        self._clock = clock
        self._tokens: dict[int, InstallationToken] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        self._identity: AppIdentity | None = None
        self._identity_lock = asyncio.Lock()
        self._jwt_api: GitHubAPI | None = None
        self.token_requests = 0

    def jwt_client(self) -> GitHubAPI:
        """A client that authenticates as the App itself (for /app and token exchange).

        One client for the process: gidgethub keeps the App JWT it signed on the client and
        reuses it until shortly before it expires. It signs with the key parsed once.
        """
        if self._jwt_api is None:
            try:
                key: Any = load_pem_private_key(self._private_key.encode("utf-8"), password=None)
            except (ValueError, TypeError):
                key = self._private_key  # let the signer report what is wrong with it
            self._jwt_api = GitHubAPI(
                self._session,
                USER_AGENT,
                app_id=self.app_id,
                # PyJWT signs with a parsed key as readily as with PEM text.
                private_key=cast(str, key),
                base_url=self.api_url,
            )
        return self._jwt_api

    async def warm(self, installation_ids: Iterable[int] = ()) -> None:
        """Parse the key, sign a first JWT (its library loads on first use) and fetch tokens
        ahead of the first delivery; failures only log."""
        client = self.jwt_client()
        try:
            apps.get_jwt(app_id=self.app_id, private_key=cast(str, client.private_key))
        except Exception as exc:  # a bad key is reported where it is used
            log.info("could not sign an App JWT ahead of time: %s", type(exc).__name__)
        for installation_id in installation_ids:
            try:
                await self.installation_token(installation_id)
            except Exception as exc:  # the installation may be gone; a delivery will tell
                log.info(
                    "could not fetch a token for installation %s ahead of time: %s",
                    installation_id,
                    type(exc).__name__,
                )

    async def installation_token(self, installation_id: int) -> str:
        cached = self._tokens.get(installation_id)
        if cached is not None and cached.fresh(self._clock()):
            return cached.token
        stale = cached
        lock = self._locks.setdefault(installation_id, asyncio.Lock())
        async with lock:
            current = self._tokens.get(installation_id)
            now = self._clock()
            # A request that waited on the lock takes the token the holder just fetched, even
            # one GitHub issued with little time left, rather than fetching yet another.
            if current is not None and (
                current.fresh(now) or (current is not stale and now < current.expires_at - 60)
            ):
                return current.token
            response = await self.jwt_client().post(
                "/app/installations/{installation_id}/access_tokens",
                {"installation_id": str(installation_id)},
                data=b"",
            )
            self.token_requests += 1
            token = str(response["token"])
            if self._on_new_token is not None:
                self._on_new_token(token)
            expires = datetime.fromisoformat(str(response["expires_at"]).replace("Z", "+00:00"))
            self._tokens[installation_id] = InstallationToken(token, expires.timestamp())
            return token

    def invalidate(self, installation_id: int, token: str) -> None:
        """Forget a token GitHub rejected, unless another request already replaced it."""
        cached = self._tokens.get(installation_id)
        if cached is not None and cached.token == token:
            del self._tokens[installation_id]

    async def identity(self) -> AppIdentity:
        """The App's id and slug, read once from ``GET /app``; the bot's login is ``slug[bot]``."""
        if self._identity is not None:
            return self._identity
        async with self._identity_lock:
            if self._identity is None:
                data = await self.jwt_client().getitem("/app")
                self._identity = AppIdentity(id=int(data["id"]), slug=str(data["slug"]))
        return self._identity

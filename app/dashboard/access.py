"""Who is asking, and what they may see.

Two ways in:

- the operator token (``OPERATOR_TOKEN``): as ``Authorization: Bearer`` on the JSON API, or typed
  into the login form, which then sets a session; the operator sees every repository;
- GitHub OAuth: the session holds the user's token, and the repositories it can read are asked
  of GitHub again after :data:`ACCESS_TTL_S` (cached in memory per token meanwhile), so a removed
  collaborator stops seeing a repository within minutes, and a revoked token ends the session.

An operator session records a digest of the token it was opened with: changing the token ends it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

from pydantic import SecretStr

from .oauth import GitHubOAuth, UserAccess

__all__ = ["ACCESS_TTL_S", "AccessCache", "Viewer", "new_csrf", "operator_fingerprint"]

ACCESS_TTL_S: Final = 300.0
CACHE_SIZE: Final = 1000


@dataclass(frozen=True, slots=True)
class Viewer:
    kind: str  # "operator" | "github"
    login: str
    scope: frozenset[str] | None  # None: every repository
    csrf: str  # for the forms of this session ("" for a bearer request: no forms)


def new_csrf() -> str:
    return secrets.token_urlsafe(24)


def operator_fingerprint(token: SecretStr) -> str:
    """A digest naming the operator token a session was opened with (not the token)."""
    return hashlib.sha256(b"dashboard:" + token.get_secret_value().encode()).hexdigest()[:32]


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "surrogateescape"), b.encode("utf-8", "replace"))


class AccessCache:
    """The repositories each user token can read, asked of GitHub at most every few minutes."""

    def __init__(self, oauth: GitHubOAuth, *, ttl_s: float = ACCESS_TTL_S) -> None:
        self.oauth = oauth
        self._ttl = ttl_s
        self._entries: OrderedDict[str, tuple[float, UserAccess]] = OrderedDict()

    async def access(self, token: str) -> UserAccess:
        """The token's access (raises ``TokenRejected`` when GitHub refuses the token)."""
        key = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        cached = self._entries.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        access = await self.oauth.access(token)
        self.remember(token, access)
        return access

    def remember(self, token: str, access: UserAccess) -> None:
        key = hashlib.sha256(token.encode()).hexdigest()
        self._entries[key] = (time.monotonic() + self._ttl, access)
        self._entries.move_to_end(key)
        while len(self._entries) > CACHE_SIZE:
            self._entries.popitem(last=False)

    def forget_all(self) -> None:
        """Ask GitHub afresh for every session (as happens after the cache's few minutes)."""
        self._entries.clear()

"""GitHub Actions OIDC tokens, verified with pyjwt against the configured issuer's keys.

What a token must be to get in (``../shared/reference/APPS-LOGS-OIDC.md``, section 3):

1. signed with RS256 (the header's ``alg``; ``none``, HMAC and everything else are refused
   before any key is looked at) by a key of the issuer's JWKS, chosen by the header's ``kid``;
2. ``iss`` exactly ``API_OIDC_ISSUER``: the token never picks its issuer, and keys are only
   ever fetched from the configured issuer (its discovery document, then its ``jwks_uri``,
   which must be on the issuer's own scheme, host and port; redirects are not followed);
3. ``aud`` exactly ``API_OIDC_AUDIENCE``;
4. within ``exp`` and ``nbf`` (and ``iat`` not in the future), with a minute of clock skew;
5. carrying ``sub``, ``repository`` and ``repository_owner``, the repository under that owner.

Keys are cached for ``API_OIDC_JWKS_TTL_SECONDS``. A ``kid`` the cache does not know fetches
the keys again (the issuer rotated them), at most once every :data:`MIN_REFRESH_SECONDS`, so a
stream of made-up ``kid`` values cannot turn the server into a load generator against the
issuer. Tokens are never logged, not even in part; a rejection's reason is a short phrase.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp
import jwt
from jwt.algorithms import RSAAlgorithm

__all__ = ["IssuerUnavailable", "OidcClaims", "OidcVerifier", "TokenRejected"]

log = logging.getLogger(__name__)

ALGORITHM: Final = "RS256"
LEEWAY_SECONDS: Final = 60
MIN_REFRESH_SECONDS: Final = 60.0
MAX_DOCUMENT_BYTES: Final = 1 << 20
FETCH_TIMEOUT: Final = aiohttp.ClientTimeout(total=10, connect=5)


class TokenRejected(Exception):
    """The token does not verify; ``str()`` is a short reason safe to show and log."""


class IssuerUnavailable(Exception):
    """The issuer's keys could not be fetched: no token can be checked now (answered 503)."""


@dataclass(frozen=True, slots=True)
class OidcClaims:
    """The verified claims the API uses (names as in GitHub's tokens; ids are strings)."""

    subject: str
    repository: str
    repository_owner: str
    repository_owner_id: str | None
    repository_id: str | None
    workflow_ref: str | None
    ref: str | None
    run_id: str | None
    actor: str | None

    @classmethod
    def of(cls, claims: Mapping[str, Any]) -> OidcClaims:
        def text(name: str) -> str | None:
            value = claims.get(name)
            return str(value) if value is not None and str(value) else None

        repository, owner, subject = text("repository"), text("repository_owner"), text("sub")
        if repository is None or owner is None or subject is None:
            raise TokenRejected("the token has no sub, repository or repository_owner claim")
        if repository.partition("/")[0].lower() != owner.lower():
            raise TokenRejected("the token's repository is not under its repository_owner")
        return cls(
            subject=subject,
            repository=repository,
            repository_owner=owner,
            repository_owner_id=text("repository_owner_id"),
            repository_id=text("repository_id"),
            workflow_ref=text("workflow_ref"),
            ref=text("ref"),
            run_id=text("run_id"),
            actor=text("actor"),
        )


def _same_origin(url: str, base: str) -> bool:
    a, b = urlsplit(url), urlsplit(base)
    return (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port) and not a.username


class OidcVerifier:
    """Verifies tokens of one issuer for one audience (see the module docstring)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        issuer: str,
        audience: str,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self._session = session
        self._ttl = ttl_s
        self._clock = clock
        self._keys: dict[str, Any] = {}
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()

    async def verify(self, token: str) -> OidcClaims:
        """The token's claims, or :class:`TokenRejected` / :class:`IssuerUnavailable`."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenRejected("not a JWT") from None
        if header.get("alg") != ALGORITHM:
            raise TokenRejected(f"the token is not signed with {ALGORITHM}")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenRejected("the token names no key (kid)")
        key = await self._key(kid)
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenRejected("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenRejected("the token is not valid yet") from None
        except jwt.InvalidAudienceError:
            raise TokenRejected("the token is for another audience") from None
        except jwt.InvalidIssuerError:
            raise TokenRejected("the token is from another issuer") from None
        except jwt.InvalidSignatureError:
            raise TokenRejected("the token's signature does not verify") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenRejected(f"the token has no {exc.claim} claim") from None
        except jwt.PyJWTError:
            raise TokenRejected("the token is invalid") from None
        return OidcClaims.of(claims)

    async def _key(self, kid: str) -> Any:
        now = self._clock()
        fresh = self._fetched_at is not None and now - self._fetched_at < self._ttl
        if fresh and kid in self._keys:
            return self._keys[kid]
        async with self._lock:
            now = self._clock()
            age = None if self._fetched_at is None else now - self._fetched_at
            expired = age is None or age >= self._ttl
            unknown = kid not in self._keys and (age is None or age >= MIN_REFRESH_SECONDS)
            if expired or unknown:
                try:
                    await self._refresh()
                except IssuerUnavailable as exc:
                    if kid not in self._keys:
                        raise
                    # The issuer is down but this key was its own: keep it, ask again in a while.
                    log.warning("OIDC keys could not be refreshed; using the last ones: %s", exc)
                    self._fetched_at = now - self._ttl + MIN_REFRESH_SECONDS
        key = self._keys.get(kid)
        if key is None:
            raise TokenRejected("the token's key (kid) is not one of the issuer's keys")
        return key

    async def _refresh(self) -> None:
        discovery = await self._get_json(f"{self.issuer}/.well-known/openid-configuration")
        if discovery.get("issuer", "").rstrip("/") != self.issuer:
            raise IssuerUnavailable("the issuer's discovery document names another issuer")
        jwks_uri = discovery.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not _same_origin(jwks_uri, self.issuer):
            raise IssuerUnavailable("the issuer's jwks_uri is not on the issuer's own host")
        document = await self._get_json(jwks_uri)
        keys: dict[str, Any] = {}
        for jwk in document.get("keys") or []:
            if not isinstance(jwk, dict) or jwk.get("kty") != "RSA":
                continue
            if jwk.get("use", "sig") != "sig" or jwk.get("alg", ALGORITHM) != ALGORITHM:
                continue
            kid = jwk.get("kid")
            if isinstance(kid, str) and kid:
                try:
                    keys[kid] = RSAAlgorithm.from_jwk(jwk)
                except (jwt.PyJWTError, ValueError, KeyError):
                    log.warning(
                        "the issuer published a key that cannot be read", extra={"kid": kid}
                    )
        self._keys = keys
        self._fetched_at = self._clock()
        log.info("OIDC signing keys fetched", extra={"issuer": self.issuer, "keys": len(keys)})

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            async with self._session.get(
                url,
                allow_redirects=False,
                timeout=FETCH_TIMEOUT,
                headers={"Accept": "application/json"},
            ) as response:
                if response.status != 200:
                    raise IssuerUnavailable(f"{url} answered {response.status}")
                body = await response.content.read(MAX_DOCUMENT_BYTES + 1)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise IssuerUnavailable(f"{url} could not be fetched: {type(exc).__name__}") from exc
        if len(body) > MAX_DOCUMENT_BYTES:
            raise IssuerUnavailable(f"{url} is larger than {MAX_DOCUMENT_BYTES} bytes")
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise IssuerUnavailable(f"{url} is not JSON") from exc
        if not isinstance(data, dict):
            raise IssuerUnavailable(f"{url} is not a JSON object")
        return data

"""Who is calling the API, and which repositories they may name.

Authentication (``Authorization: Bearer <token>``), in this order:

1. ``API_TOKEN``, compared in constant time (``operator.endpoints.bearer_matches``): a caller
   the operator trusts with every allowlisted repository;
2. a GitHub Actions OIDC token (:mod:`app.api.oidc`), when an issuer is configured: the caller
   is the workflow run, identified by its ``sub`` and its repository.

No token, another scheme, or a token that verifies as neither: 401. The issuer's keys cannot be
fetched: 503 (nobody can be checked, which is not the caller's fault).

Authorisation (:meth:`Caller.authorize`), for every repository a request names: it must be in
``API_ALLOWED_REPOSITORIES``, and for an OIDC caller its owner must be the token's
``repository_owner``: a workflow of one organisation never spends another's budget or reads
its reports, whatever the allowlist holds. Either failing is 403.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import SecretStr

from app.api.config import RepositoryAllowlist
from app.api.oidc import IssuerUnavailable, OidcClaims, OidcVerifier, TokenRejected
from app.operator.endpoints import bearer_matches

__all__ = ["STATIC_SUBJECT", "ApiError", "Authenticator", "Caller"]

STATIC_SUBJECT = "static-token"


class ApiError(Exception):
    """An answer other than success: its status, a stable code and a sentence for the caller."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        retry_after: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.headers = dict(headers or {})


def unauthenticated(message: str, *, error: str = "invalid_request") -> ApiError:
    """401 with the ``WWW-Authenticate`` challenge of RFC 6750."""
    return ApiError(
        401,
        "unauthenticated",
        message,
        headers={"WWW-Authenticate": f'Bearer realm="aigateway", error="{error}"'},
    )


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated caller: the static token's holder, or one workflow run."""

    kind: Literal["token", "oidc"]
    subject: str
    claims: OidcClaims | None = None

    @property
    def repository(self) -> str | None:
        """The calling workflow's repository (OIDC), the default ``source_repository``."""
        return self.claims.repository if self.claims is not None else None

    @property
    def owner(self) -> str | None:
        return self.claims.repository_owner if self.claims is not None else None

    @property
    def rate_key(self) -> str:
        """Whose requests share a rate window: one workflow repository, or the static token."""
        if self.claims is None:
            return STATIC_SUBJECT
        return f"oidc:{self.claims.repository.lower()}"

    @property
    def label(self) -> str:
        """How the audit log names the caller (never a token)."""
        return STATIC_SUBJECT if self.claims is None else f"oidc:{self.subject}"

    def resolve(self, requested: str | None) -> str:
        """The repository a request is for: the one it names, else the OIDC token's own."""
        if requested:
            return requested
        if self.repository is not None:
            return self.repository
        raise ApiError(422, "invalid_request", "source_repository is required with API_TOKEN")

    def authorize(self, repository: str, allowlist: RepositoryAllowlist) -> None:
        """403 unless this caller may name ``repository`` (see the module docstring)."""
        if not allowlist.allows(repository):
            raise ApiError(
                403, "forbidden", f"{repository} is not among the repositories this API serves"
            )
        owner = self.owner
        if owner is not None and repository.partition("/")[0].lower() != owner.lower():
            raise ApiError(
                403,
                "forbidden",
                f"a token of {owner}'s workflows cannot act on {repository}: the owner differs",
            )


class Authenticator:
    def __init__(self, *, token: SecretStr | None, verifier: OidcVerifier | None) -> None:
        self._token = token
        self._verifier = verifier

    async def authenticate(self, header: str | None) -> Caller:
        scheme, _, credential = (header or "").partition(" ")
        credential = credential.strip()
        if not header:
            raise unauthenticated("this endpoint needs Authorization: Bearer <token>")
        if scheme.lower() != "bearer" or not credential:
            raise unauthenticated("the Authorization header must be Bearer <token>")
        if self._token is not None and bearer_matches(header, self._token):
            return Caller("token", STATIC_SUBJECT)
        if self._verifier is None or credential.count(".") != 2:
            raise unauthenticated("the token is not valid", error="invalid_token")
        try:
            claims = await self._verifier.verify(credential)
        except TokenRejected as exc:
            raise unauthenticated(f"the token is not valid: {exc}", error="invalid_token") from None
        except IssuerUnavailable as exc:
            raise ApiError(
                503,
                "oidc_unavailable",
                f"the OIDC issuer's keys cannot be fetched now ({exc}); try again later",
                retry_after=30,
            ) from None
        return Caller("oidc", claims.subject, claims)

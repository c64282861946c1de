"""The service API's settings, checked once at start: a server that would be unsafe does not start.

Every problem is a :class:`~app.settings.SettingsError` naming the variable to fix:

- ``API_TOKEN`` shorter than :data:`MIN_API_TOKEN_LENGTH`: a bearer token on a public port must
  not be guessable, whatever else is configured;
- ``API_OIDC_ISSUER`` without ``API_OIDC_AUDIENCE`` or the reverse: a token is only worth
  something when both its issuer and its audience are pinned (GitHub's default audience is the
  owner's URL, the same for every service a workflow calls);
- an issuer that is not ``https`` (unless ``API_OIDC_ALLOW_HTTP``, for a local test issuer), or
  that carries a user, a query or a fragment: its keys decide who gets in;
- an empty or malformed ``API_ALLOWED_REPOSITORIES``: every request would be refused, which is
  a configuration mistake rather than a policy;
- an agent command, sandbox list or environment that cannot work, or that would hand a server
  secret to the agent (``API_AGENT_ENV`` naming one of the server's secret variables, or a
  variable whose value is one of the server's secrets).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Final
from urllib.parse import urlsplit

from app.settings import Settings, SettingsError

__all__ = [
    "FORBIDDEN_AGENT_ENV",
    "MIN_API_TOKEN_LENGTH",
    "RepositoryAllowlist",
    "check_api_settings",
    "repository_name_ok",
]

#: A static token that is also the only credential of a public API: 32 characters at least.
MIN_API_TOKEN_LENGTH: Final = 32
#: The server's own secret variables: none of them may be passed to a coding agent.
FORBIDDEN_AGENT_ENV: Final = frozenset(
    {
        "GITHUB_PRIVATE_KEY",
        "GITHUB_PRIVATE_KEY_PATH",
        "GITHUB_WEBHOOK_SECRET",
        "CF_AIG_TOKEN",
        "CF_ISSUED_AIGATEWAY_TOKEN",
        "ANTHROPIC_API_KEY",
        "OPENAI_API_KEY",
        "OPERATOR_TOKEN",
        "API_TOKEN",
        "DATABASE_URL",
    }
)

_OWNER = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})"
_NAME = r"[A-Za-z0-9._-]{1,100}"
_REPOSITORY = re.compile(rf"^{_OWNER}/{_NAME}$")
_ENTRY = re.compile(rf"^{_OWNER}/(?:{_NAME}|\*)$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def repository_name_ok(name: str) -> bool:
    """Whether ``name`` is a well-formed ``owner/name`` (and not ``.`` or ``..``)."""
    return bool(_REPOSITORY.match(name)) and name.split("/", 1)[1] not in {".", ".."}


class RepositoryAllowlist:
    """The repositories callers may name: exact ``owner/name`` entries and ``owner/*`` ones.

    Compared case-insensitively, as GitHub compares owner and repository names.
    """

    def __init__(self, entries: Iterable[str]) -> None:
        self._exact: set[str] = set()
        self._owners: set[str] = set()
        for entry in entries:
            owner, _, name = entry.strip().lower().partition("/")
            if name == "*":
                self._owners.add(owner)
            else:
                self._exact.add(f"{owner}/{name}")

    def allows(self, repository: str) -> bool:
        if not repository_name_ok(repository):
            return False
        name = repository.lower()
        return name in self._exact or name.split("/", 1)[0] in self._owners

    def __bool__(self) -> bool:
        return bool(self._exact or self._owners)


def _check_issuer(settings: Settings) -> None:
    issuer, audience = settings.api_oidc_issuer, settings.api_oidc_audience
    if bool(issuer) != bool(audience):
        raise SettingsError(
            "API_OIDC_ISSUER and API_OIDC_AUDIENCE go together: set both to accept GitHub "
            "Actions OIDC tokens, or neither"
        )
    if not issuer:
        return
    parts = urlsplit(issuer)
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise SettingsError("API_OIDC_ISSUER must be an absolute https URL")
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        raise SettingsError("API_OIDC_ISSUER must not contain a user, a query or a fragment")
    if parts.scheme == "http" and not settings.api_oidc_allow_http:
        raise SettingsError(
            "API_OIDC_ISSUER uses plain http: its signing keys could be replaced on the way, and "
            "with them anyone could sign in; use https (API_OIDC_ALLOW_HTTP=true is for a local "
            "test issuer only)"
        )


def _check_agent(settings: Settings) -> None:
    if not settings.api_agent_command or not settings.api_agent_command[0].strip():
        raise SettingsError("API_AGENT_COMMAND must name a command (a JSON list of arguments)")
    if not settings.api_agent_sandboxes or not all(s.strip() for s in settings.api_agent_sandboxes):
        raise SettingsError("API_AGENT_SANDBOXES must list at least one sandbox a job may use")
    secrets = set(settings.secret_values())
    for name in settings.api_agent_env:
        if not _ENV_NAME.match(name):
            raise SettingsError(f"API_AGENT_ENV: {name!r} is not an environment variable name")
        if name.upper() in FORBIDDEN_AGENT_ENV:
            raise SettingsError(
                f"API_AGENT_ENV must not pass {name} to the agent: it is one of the server's "
                "secrets (give the agent a credential of its own)"
            )
        if os.environ.get(name) in secrets:
            raise SettingsError(
                f"API_AGENT_ENV: {name} holds one of the server's secrets; give the agent a "
                "credential of its own"
            )


def check_api_settings(settings: Settings) -> None:
    """Refuse to start with an API that is unsafe or cannot work (see the module docstring)."""
    token = settings.api_token
    if token is not None and len(token.get_secret_value()) < MIN_API_TOKEN_LENGTH:
        raise SettingsError(f"API_TOKEN must be at least {MIN_API_TOKEN_LENGTH} characters long")
    _check_issuer(settings)
    bad = [e for e in settings.api_allowed_repositories if not _ENTRY.match(e.strip())]
    if bad:
        raise SettingsError(
            f"API_ALLOWED_REPOSITORIES: {', '.join(map(repr, bad))} is not owner/name or owner/*"
        )
    if not settings.api_allowed_repositories:
        raise SettingsError(
            "API_ALLOWED_REPOSITORIES is empty: the API would refuse every request; list the "
            'repositories it serves, e.g. ["octo/demo", "octo/*"]'
        )
    _check_agent(settings)

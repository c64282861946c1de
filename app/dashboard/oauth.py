"""GitHub's OAuth web flow for the App, and what a signed-in user's token can read.

The flow (GitHub docs, "Generating a user access token for a GitHub App"): the browser is sent to
``{web}/login/oauth/authorize`` with the App's client id and a random ``state``; GitHub sends it
back with a ``code`` and the same ``state``; the code is exchanged for a user access token at
``{web}/login/oauth/access_token`` with the client secret. The secret and the code go only to
GitHub's web host, the token only to its API host.

A GitHub App's user token reaches exactly the repositories both the user and the App can
access: ``GET /user/installations`` and ``GET /user/installations/{id}/repositories`` list them,
which is what the dashboard shows (a repository the user cannot read never appears).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

import aiohttp
import gidgethub
from gidgethub.aiohttp import GitHubAPI

from app.github.auth import USER_AGENT

__all__ = ["GitHubOAuth", "OAuthError", "TokenRejected", "UserAccess"]


class OAuthError(Exception):
    """The flow failed (a bad or used code, GitHub unreachable): shown on the login page."""


class TokenRejected(OAuthError):
    """GitHub no longer accepts the user's token (expired or revoked): sign in again."""


@dataclass(frozen=True, slots=True)
class UserAccess:
    login: str
    repositories: frozenset[str]


class GitHubOAuth:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        web_url: str,
        api_url: str,
        client_id: str,
        client_secret: str,
    ) -> None:
        self._session = session
        self._web = web_url.rstrip("/")
        self._api = api_url.rstrip("/")
        self._client_id = client_id
        self._client_secret = client_secret

    def authorize_url(self, *, state: str, redirect_uri: str) -> str:
        query = urlencode(
            {"client_id": self._client_id, "redirect_uri": redirect_uri, "state": state}
        )
        return f"{self._web}/login/oauth/authorize?{query}"

    async def exchange(self, code: str, *, redirect_uri: str) -> str:
        """The user access token for ``code`` (each code works once, for ten minutes)."""
        form = {
            "client_id": self._client_id,
            "client_secret": self._client_secret,
            "code": code,
            "redirect_uri": redirect_uri,
        }
        try:
            async with self._session.post(
                f"{self._web}/login/oauth/access_token",
                data=form,
                headers={"Accept": "application/json", "User-Agent": USER_AGENT},
            ) as response:
                if response.status != 200:
                    raise OAuthError(f"GitHub answered {response.status} to the code exchange")
                body = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise OAuthError(f"GitHub could not be reached to finish signing in: {exc}") from exc
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            reason = body.get("error_description") if isinstance(body, dict) else None
            raise OAuthError(f"GitHub refused the sign-in code: {reason or 'no token returned'}")
        return token

    async def access(self, token: str) -> UserAccess:
        """Who the token belongs to and every repository it can read through the App."""
        gh = GitHubAPI(self._session, USER_AGENT, oauth_token=token, base_url=self._api)
        try:
            user = await gh.getitem("/user")
            repositories: set[str] = set()
            async for installation in gh.getiter(
                "/user/installations?per_page=100", iterable_key="installations"
            ):
                async for repo in gh.getiter(
                    "/user/installations/{id}/repositories?per_page=100",
                    {"id": installation["id"]},
                    iterable_key="repositories",
                ):
                    repositories.add(str(repo["full_name"]))
        except gidgethub.BadRequest as exc:
            if exc.status_code.value == 401:
                raise TokenRejected("GitHub no longer accepts this sign-in") from exc
            raise OAuthError(f"GitHub answered {exc.status_code.value}: {exc}") from exc
        except (gidgethub.GitHubException, aiohttp.ClientError, TimeoutError) as exc:
            raise OAuthError(f"GitHub could not be reached: {exc}") from exc
        return UserAccess(login=str(user["login"]), repositories=frozenset(repositories))

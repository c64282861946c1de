"""GitHub App auth and the installation client, against the fake GitHub over loopback.

The fake verifies every App JWT with the App's public key (``set_app_key``), issues installation
tokens with a chosen lifetime, and can answer with 401s, 5xx and rate limits on demand. The
client under test is the one handlers get: ``InstallationGitHubAPI`` over a shared ``AppAuth``,
with an injected ``sleep`` that records the waits instead of sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import gidgethub
import jwt
import pytest
from aiohttp.test_utils import TestServer

from app.github.auth import AppAuth
from app.github.client import InstallationGitHubAPI
from app.queue import RetryLater
from tests.fakes.github import FakeGitHub, Recorded

ServerFactory = Callable[..., Awaitable[TestServer]]

APP_ID = 4242
SLUG = "review-bot"
INSTALLATION = 42
OTHER_INSTALLATION = 7
REPO = "octo/demo"
OTHER_REPO = "acme/tools"
REPO_PATH = f"/repos/{REPO}"
TOKEN_PATH = r"/app/installations/\d+/access_tokens$"


@dataclass
class Sleeps:
    """An injectable ``sleep`` that records each wait and returns at once."""

    waits: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@dataclass
class Env:
    fake: FakeGitHub
    auth: AppAuth
    session: aiohttp.ClientSession
    sleeps: Sleeps

    def client(self, installation_id: int = INSTALLATION, **kwargs: Any) -> InstallationGitHubAPI:
        """A client as one delivery gets it (a new one per delivery, one shared ``AppAuth``)."""
        return InstallationGitHubAPI(
            self.session, self.auth, installation_id, sleep=self.sleeps, **kwargs
        )

    def repo_calls(self, path: str = REPO_PATH) -> list[Recorded]:
        return [r for r in self.fake.requests if r.method == "GET" and r.path == path]


def token_of(request: Recorded) -> str:
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    assert scheme.lower() == "token", request.headers
    return credential


async def start_fake(
    aiohttp_server: ServerFactory, public_pem: str, *, prefix: str = ""
) -> FakeGitHub:
    fake = FakeGitHub(prefix=prefix, app_slug=SLUG, app_id=APP_ID)
    fake.set_app_key(public_pem, APP_ID)
    fake.add_repo(REPO, installation_id=INSTALLATION)
    fake.add_repo(OTHER_REPO, installation_id=OTHER_INSTALLATION)
    fake.attach(await aiohttp_server(fake.app))
    return fake


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def make_env(
    aiohttp_server: ServerFactory,
    session: aiohttp.ClientSession,
    rsa_key: tuple[str, str],
    *,
    prefix: str = "",
) -> Env:
    fake = await start_fake(aiohttp_server, rsa_key[1], prefix=prefix)
    auth = AppAuth(session, app_id=str(APP_ID), private_key=rsa_key[0], api_url=fake.url)
    return Env(fake, auth, session, Sleeps())


@pytest.fixture
async def env(
    aiohttp_server: ServerFactory, session: aiohttp.ClientSession, rsa_key: tuple[str, str]
) -> Env:
    return await make_env(aiohttp_server, session, rsa_key)


# --------------------------------------------------------------------------------------------
# The token cache


@pytest.mark.parametrize("concurrent", [2, 10])
async def test_concurrent_requests_for_one_installation_share_one_token(
    env: Env, concurrent: int
) -> None:
    # A slow token exchange keeps every request waiting on the same refresh.
    env.fake.delay("POST", TOKEN_PATH, 0.2)
    results = await asyncio.gather(*(env.client().getitem(REPO_PATH) for _ in range(concurrent)))

    assert [r["full_name"] for r in results] == [REPO] * concurrent
    assert env.fake.token_requests[INSTALLATION] == 1
    assert env.auth.token_requests == 1
    calls = env.repo_calls()
    assert len(calls) == concurrent
    assert len({token_of(c) for c in calls}) == 1


async def test_another_installation_gets_its_own_token(env: Env) -> None:
    first, second = await asyncio.gather(
        env.client(INSTALLATION).getitem(REPO_PATH),
        env.client(OTHER_INSTALLATION).getitem(f"/repos/{OTHER_REPO}"),
    )
    assert (first["full_name"], second["full_name"]) == (REPO, OTHER_REPO)
    assert env.fake.token_requests == {INSTALLATION: 1, OTHER_INSTALLATION: 1}
    [mine] = env.repo_calls()
    [theirs] = env.repo_calls(f"/repos/{OTHER_REPO}")
    assert token_of(mine) != token_of(theirs)
    assert env.fake.tokens[token_of(theirs)].installation_id == OTHER_INSTALLATION


async def test_a_fresh_token_is_reused_across_deliveries(env: Env) -> None:
    for _ in range(3):
        await asyncio.gather(env.client().getitem(REPO_PATH), env.client().getitem(REPO_PATH))
    assert env.fake.token_requests[INSTALLATION] == 1
    assert len({token_of(c) for c in env.repo_calls()}) == 1


async def test_a_token_near_expiry_is_refreshed(env: Env) -> None:
    # 4 minutes left is inside the 5-minute early-refresh window: never reused.
    env.fake.set_token_ttl(240)
    for _ in range(3):
        await env.client().getitem(REPO_PATH)
    assert env.fake.token_requests[INSTALLATION] == 3
    assert len({token_of(c) for c in env.repo_calls()}) == 3
    assert [c.status for c in env.repo_calls()] == [200, 200, 200]


async def test_concurrent_requests_share_one_refresh_of_a_short_lived_token(env: Env) -> None:
    env.fake.set_token_ttl(240)
    for batch in range(1, 3):
        await asyncio.gather(*(env.client().getitem(REPO_PATH) for _ in range(5)))
        assert env.fake.token_requests[INSTALLATION] == batch


async def test_a_401_on_a_cached_token_drops_it_and_retries_once(env: Env) -> None:
    await env.client().getitem(REPO_PATH)
    env.fake.expire_tokens()  # GitHub no longer accepts the cached token

    data = await env.client().getitem(REPO_PATH)

    assert data["full_name"] == REPO
    assert env.fake.token_requests[INSTALLATION] == 2
    first, rejected, retried = env.repo_calls()
    assert [first.status, rejected.status, retried.status] == [200, 401, 200]
    assert token_of(first) == token_of(rejected) != token_of(retried)
    # The new token is cached: the next delivery needs no further exchange.
    await env.client().getitem(REPO_PATH)
    assert env.fake.token_requests[INSTALLATION] == 2


async def test_a_second_401_is_raised_not_retried_again(env: Env) -> None:
    await env.client().getitem(REPO_PATH)
    env.fake.fail_next("GET", f"^{REPO_PATH}$", 401, times=3)

    with pytest.raises(gidgethub.BadRequest) as raised:
        await env.client().getitem(REPO_PATH)

    assert int(raised.value.status_code) == 401
    assert [c.status for c in env.repo_calls()] == [200, 401, 401]  # one retry, no loop
    assert env.fake.token_requests[INSTALLATION] == 2
    assert env.sleeps.waits == []


# --------------------------------------------------------------------------------------------
# The App JWT and identity


def app_jwt_claims(request: Recorded, public_pem: str) -> dict[str, Any]:
    scheme, _, token = request.headers["authorization"].partition(" ")
    assert scheme.lower() == "bearer"
    claims: dict[str, Any] = jwt.decode(token, public_pem, algorithms=["RS256"])
    return claims


async def test_the_app_jwt_is_backdated_short_lived_and_issued_by_the_app(
    env: Env, rsa_key: tuple[str, str]
) -> None:
    before = time.time()
    await env.client().getitem(REPO_PATH)
    await env.auth.identity()
    after = time.time()

    jwt_requests = env.fake.calls("*", r"^/app(/|$)")
    assert [r.path for r in jwt_requests] == [
        f"/app/installations/{INSTALLATION}/access_tokens",
        "/app",
    ]
    for request in jwt_requests:
        assert request.status in (200, 201)  # the fake verified signature, iss and lifetime
        claims = app_jwt_claims(request, rsa_key[1])
        assert str(claims["iss"]) == str(APP_ID)
        assert before - 65 <= claims["iat"] <= after - 55  # backdated about a minute
        assert 0 < claims["exp"] - claims["iat"] <= 600
        assert claims["exp"] > after


async def test_identity_reads_get_app_once(env: Env) -> None:
    first, second = await asyncio.gather(env.auth.identity(), env.auth.identity())
    third = await env.auth.identity()

    assert first == second == third
    assert (first.id, first.slug, first.bot_login) == (APP_ID, SLUG, f"{SLUG}[bot]")
    assert len(env.fake.calls("GET", r"^/app$")) == 1


async def test_github_enterprise_server_base_with_a_path(
    aiohttp_server: ServerFactory, session: aiohttp.ClientSession, rsa_key: tuple[str, str]
) -> None:
    env = await make_env(aiohttp_server, session, rsa_key, prefix="/api/v3")
    assert env.fake.url.endswith("/api/v3")

    data = await env.client().getitem(REPO_PATH)
    identity = await env.auth.identity()

    assert data["full_name"] == REPO
    assert identity.bot_login == f"{SLUG}[bot]"
    assert env.fake.token_requests[INSTALLATION] == 1
    # Every request reached a route under the prefix (anything else is "unexpected" and 404).
    env.fake.assert_no_unexpected()
    assert {r.operation_id for r in env.fake.requests} == {
        "apps/create-installation-access-token",
        "repos/get",
        "apps/get-authenticated",
    }


# --------------------------------------------------------------------------------------------
# Retries: 5xx and rate limits


async def test_5xx_is_retried_with_growing_bounded_backoff(env: Env) -> None:
    env.fake.fail_next("GET", f"^{REPO_PATH}$", 502, times=2)

    data = await env.client(max_retries=3).getitem(REPO_PATH)

    assert data["full_name"] == REPO
    assert [c.status for c in env.repo_calls()] == [502, 502, 200]
    waits = env.sleeps.waits
    assert len(waits) == 2
    assert 0 < waits[0] <= waits[1] <= 30


async def test_5xx_that_persists_raises_after_bounded_attempts(env: Env) -> None:
    env.fake.fail_next("GET", f"^{REPO_PATH}$", 502, times=10)

    with pytest.raises(gidgethub.GitHubBroken):
        await env.client(max_retries=3).getitem(REPO_PATH)

    assert [c.status for c in env.repo_calls()] == [502] * 4  # max_retries + 1 attempts
    assert len(env.sleeps.waits) == 3
    assert all(0 < w <= 30 for w in env.sleeps.waits)


async def test_secondary_rate_limit_honours_retry_after(env: Env) -> None:
    env.fake.rate_limit_next("GET", f"^{REPO_PATH}$", secondary=True, retry_after=1)

    data = await env.client().getitem(REPO_PATH)

    assert data["full_name"] == REPO
    assert [c.status for c in env.repo_calls()] == [403, 200]
    assert env.sleeps.waits == [1.0]


async def test_primary_rate_limit_with_a_near_reset_is_waited_out(env: Env) -> None:
    env.fake.rate_limit_next("GET", f"^{REPO_PATH}$", reset_in_s=5)

    data = await env.client(max_wait_seconds=60).getitem(REPO_PATH)

    assert data["full_name"] == REPO
    assert [c.status for c in env.repo_calls()] == [403, 200]
    [wait] = env.sleeps.waits
    assert 0 < wait <= 7


async def test_primary_rate_limit_with_a_far_reset_reschedules_the_delivery(env: Env) -> None:
    before = time.time()
    env.fake.rate_limit_next("GET", f"^{REPO_PATH}$", reset_in_s=3600)

    with pytest.raises(RetryLater) as raised:
        await env.client(max_wait_seconds=60).getitem(REPO_PATH)
    after = time.time()

    reset = raised.value.at.timestamp()
    assert before + 3600 - 1 <= reset <= after + 3600 + 2  # the reset time, not a guess
    assert env.sleeps.waits == []  # the worker is not held for an hour
    assert [c.status for c in env.repo_calls()] == [403]


# --------------------------------------------------------------------------------------------
# Secrets never reach the log


async def test_no_token_or_key_in_the_log_of_a_request_flow(
    env: Env, rsa_key: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await env.auth.identity()
    env.fake.fail_next("GET", f"^{REPO_PATH}$", 502)
    await env.client().getitem(REPO_PATH)
    env.fake.expire_tokens()
    env.fake.rate_limit_next("GET", f"^{REPO_PATH}$", secondary=True, retry_after=1)
    await env.client().getitem(REPO_PATH)
    env.fake.fail_next("GET", f"^{REPO_PATH}$", 401, times=2)
    with pytest.raises(gidgethub.BadRequest) as raised:
        await env.client().getitem(REPO_PATH)

    assert any("retrying" in r.getMessage() for r in caplog.records), "the flow logged nothing"
    issued = list(env.fake.tokens)
    jwts = [
        r.headers["authorization"].partition(" ")[2]
        for r in env.fake.requests
        if r.headers.get("authorization", "").lower().startswith("bearer ")
    ]
    key_lines = [line for line in rsa_key[0].splitlines() if line and "-----" not in line]
    secrets = [*issued, *jwts, *key_lines]
    assert len(issued) >= 2
    assert jwts
    # The error a worker would log and store as the delivery's last_error.
    rendered = [str(raised.value), repr(raised.value)]
    for record in caplog.records:
        rendered += [record.getMessage(), repr(record.__dict__)]
    leaks = [s[:8] for s in secrets if any(s in text for text in rendered)]
    assert leaks == []

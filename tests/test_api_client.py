"""``app.client`` against the running server (blocking and asyncio), with a static token and with
a GitHub Actions OIDC token from a fake Actions runtime; then its retry rules on their own."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest
from aiohttp import web

from app.client import (
    AiGatewayClient,
    AsyncAiGatewayClient,
    AuthenticationError,
    ClientConfig,
    ConnectionFailed,
    GitHubActionsOidc,
    JobTimeoutError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
)
from tests.api_env import API_TOKEN, AUDIENCE, ApiEnv, start_api
from tests.conftest import SettingsFactory
from tests.fakes.gateway import Text
from tests.harness import ClientFactory, ServerFactory
from tests.test_api_e2e import DIFF

AGENT = (
    "import pathlib, sys\n"
    "pathlib.Path('CHANGELOG.md').write_text(sys.argv[3] + '\\n')\n"
    "print('wrote the changelog')\n"
)


@pytest.fixture
def db_url(sqlite_url: str) -> str:
    return sqlite_url


@pytest.fixture
def api_settings() -> dict[str, Any]:
    return {}


@pytest.fixture
async def api(
    aiohttp_client: ClientFactory,
    aiohttp_server: ServerFactory,
    make_settings: SettingsFactory,
    rsa_key: tuple[str, str],
    tmp_path: Path,
    api_settings: dict[str, Any],
) -> ApiEnv:
    script = tmp_path / "agent.py"
    script.write_text(AGENT)
    env = await start_api(
        aiohttp_client,
        aiohttp_server,
        make_settings,
        rsa_key,
        tmp_path,
        api_agent_command=(sys.executable, str(script)),
        **api_settings,
    )
    env.github.set_file("octo/demo", "README.md", "# demo\n")
    return env


class Sleeps:
    """A recorded sleep: the client's waits are asserted, never waited."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(0)


# ---------------------------------------------------------------------------------- the server


async def test_the_blocking_client_against_the_running_server(api: ApiEnv) -> None:
    config = ClientConfig(base_url=api.url, token=API_TOKEN)
    api.gateway.anthropic.push(Text("Looks fine."))

    def session() -> dict[str, Any]:
        with AiGatewayClient(config) as client:
            health = client.get_health()
            answer = client.analyze("Is this fine?", source_repository="octo/demo")
            review = client.review(diff=DIFF, source_repository="octo/demo")
            quota = client.get_quota("octo/demo")
            job = client.wait(
                client.execute("Add a changelog entry", source_repository="octo/demo"),
                timeout=60,
                poll_interval=0.02,
            )
            with pytest.raises(PermissionDeniedError) as denied:
                client.get_quota("octo/secret")
        with (
            AiGatewayClient(ClientConfig(base_url=api.url, token="x" * 40)) as stranger,
            pytest.raises(AuthenticationError) as refused,
        ):
            stranger.get_health()
        return {
            "health": health,
            "answer": answer,
            "review": review,
            "quota": quota,
            "job": job,
            "denied": denied.value,
            "refused": refused.value,
        }

    got = await asyncio.to_thread(session)
    assert got["health"].jobs_max == 10
    assert (got["answer"].answer, got["answer"].provider) == ("Looks fine.", "anthropic")
    assert got["review"].recommendation.action in {"auto_merge", "auto_pr", "escalate"}
    assert [r.reviewer for r in got["review"].reviews] == ["Claude", "GPT"]
    assert got["quota"].budgets[0].spent_usd > 0
    job = got["job"]
    assert (job.status, job.output) == ("succeeded", "wrote the changelog\n")
    assert "+Add a changelog entry" in (job.diff or "")
    assert (got["denied"].status, got["denied"].code) == (403, "forbidden")
    assert got["denied"].request_id
    assert (got["refused"].status, got["refused"].code) == (401, "unauthenticated")


async def test_the_async_client_with_a_github_actions_oidc_token(
    api: ApiEnv, aiohttp_server: ServerFactory
) -> None:
    asked: list[dict[str, str]] = []

    async def runtime(request: web.Request) -> web.Response:
        asked.append({"auth": request.headers["Authorization"], **request.query})
        if request.headers["Authorization"] != "bearer runtime-request-token":
            return web.json_response({"message": "no"}, status=401)
        # The first token is for another audience: the server says 401, the client asks again.
        audience = "wrong-audience" if len(asked) == 1 else request.query["audience"]
        return web.json_response({"value": api.issuer.mint(audience=audience)})

    app = web.Application()
    app.router.add_get("/token", runtime)
    server = await aiohttp_server(app)
    source = GitHubActionsOidc(
        AUDIENCE,
        request_url=f"http://{server.host}:{server.port}/token?api-version=2.0",
        request_token="runtime-request-token",
    )
    api.gateway.openai.push(Text("An answer."))
    async with AsyncAiGatewayClient(ClientConfig(base_url=api.url, token_source=source)) as client:
        health = await client.get_health()
        answer = await client.analyze("Explain.", provider="openai")  # the token's repository
        changes = await client.list_changes("octo/demo")
    assert health.status == "healthy"
    assert (answer.repository, answer.model) == ("octo/demo", "gpt-5-mini")
    assert changes.changes == []
    assert len(asked) == 2  # one refused, one kept for every later call
    assert all(a["audience"] == AUDIENCE and a["api-version"] == "2.0" for a in asked)


@pytest.mark.parametrize("api_settings", [{"api_rate_limit": 1, "api_rate_window_seconds": 3600}])
async def test_429_is_retried_after_retry_after_and_then_raised(api: ApiEnv) -> None:
    api.gateway.anthropic.push(Text("first"))
    sleeps = Sleeps()
    config = ClientConfig(base_url=api.url, token=API_TOKEN, max_retries=2, max_retry_after=7200)
    async with AsyncAiGatewayClient(config, sleep=sleeps.sleep) as client:
        await client.analyze("one", source_repository="octo/demo")
        with pytest.raises(RateLimitError) as limited:
            await client.analyze("two", source_repository="octo/demo")
    assert sleeps.waits == [3600.0, 3600.0]
    assert limited.value.code == "rate_limited"
    assert limited.value.retry_after == pytest.approx(3600, abs=5)
    # A wait longer than the caller allows is theirs to decide: raised at once.
    patient = Sleeps()
    async with AsyncAiGatewayClient(
        ClientConfig(base_url=api.url, token=API_TOKEN), sleep=patient.sleep
    ) as client:
        with pytest.raises(RateLimitError):
            await client.analyze("three", source_repository="octo/demo")
    assert patient.waits == []


# ---------------------------------------------------------------------------------- retry rules


def _client(handler: Any, sleeps: Sleeps, **config: Any) -> AiGatewayClient:
    values: dict[str, Any] = {"base_url": "http://aigateway.test", "token": API_TOKEN}
    values.update(config)
    return AiGatewayClient(
        ClientConfig(**values), transport=httpx2.MockTransport(handler), sleep=sleeps
    )


HEALTH = {
    "status": "healthy",
    "version": "0",
    "uptime_s": 1.0,
    "window_s": 300.0,
    "components": {},
    "jobs_running": 0,
    "jobs_max": 10,
}


def test_5xx_is_retried_with_backoff_or_after_its_http_date() -> None:
    answers = [
        httpx2.Response(503, json={"error": "unavailable", "message": "later"}),
        httpx2.Response(
            502,
            headers={"Retry-After": format_datetime(datetime.now(UTC) + timedelta(seconds=30))},
            json={"error": "github_error", "message": "GitHub answered 502"},
        ),
        httpx2.Response(200, json=HEALTH),
    ]
    sleeps = Sleeps()
    with _client(lambda request: answers.pop(0), sleeps) as client:
        assert client.get_health().status == "healthy"
    assert sleeps.waits[0] == 1.0
    assert 25 <= sleeps.waits[1] <= 30

    failing = Sleeps()
    broken = httpx2.Response(500, json={"error": "internal_error", "message": "boom"})
    with (
        _client(lambda request: broken, failing, max_retries=2) as client,
        pytest.raises(ServerError) as raised,
    ):
        client.get_health()
    assert (raised.value.status, raised.value.code) == (500, "internal_error")
    assert failing.waits == [1.0, 2.0]


def test_a_post_that_may_have_reached_the_server_is_not_sent_again() -> None:
    sent: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        sent.append(request.method)
        raise httpx2.ReadTimeout("no answer", request=request)

    sleeps = Sleeps()
    with _client(handler, sleeps) as client:
        with pytest.raises(ConnectionFailed):
            client.analyze("costly", source_repository="octo/demo")
        assert sent == ["POST"]
        with pytest.raises(ConnectionFailed):
            client.get_health()
    assert sent == ["POST"] + ["GET"] * 4 and sleeps.waits == [1.0, 2.0, 4.0]


async def test_the_async_client_retries_and_refuses_to_resend_as_the_blocking_one() -> None:
    sent: list[str] = []
    answers: list[httpx2.Response | type[httpx2.TransportError]] = [
        httpx2.ConnectError,  # never reached the server: sent again, even a POST
        httpx2.Response(503, json={"error": "unavailable", "message": "later"}),
        httpx2.Response(200, json=HEALTH),
        httpx2.ReadTimeout,  # a POST that may have reached the server: not sent again
    ]

    def handler(request: httpx2.Request) -> httpx2.Response:
        sent.append(request.method)
        answer = answers.pop(0)
        if isinstance(answer, httpx2.Response):
            return answer
        raise answer("no answer", request=request)

    sleeps = Sleeps()
    config = ClientConfig(base_url="http://aigateway.test", token=API_TOKEN)
    transport = httpx2.MockTransport(handler)
    async with AsyncAiGatewayClient(config, transport=transport, sleep=sleeps.sleep) as client:
        assert (await client.get_health()).status == "healthy"
        with pytest.raises(ConnectionFailed):
            await client.analyze("costly", source_repository="octo/demo")
    assert sent == ["GET", "GET", "GET", "POST"]
    assert sleeps.waits == [1.0, 2.0]


def test_wait_gives_up_at_its_timeout_and_leaves_the_job_running() -> None:
    job = {
        "id": "5f0c6b1e-0000-4000-8000-000000000000",
        "repository": "octo/demo",
        "ref": "main",
        "sandbox": "read-only",
        "status": "running",
        "created_at": "2026-11-24T12:00:00Z",
        "started_at": "2026-11-24T12:00:01Z",
        "finished_at": None,
        "exit_code": None,
        "output": None,
        "stderr": None,
        "diff": None,
        "error": None,
    }
    now = [0.0]
    sleeps = Sleeps()

    def sleep(seconds: float) -> None:
        sleeps(seconds)
        now[0] += seconds

    client = AiGatewayClient(
        ClientConfig(base_url="http://aigateway.test", token=API_TOKEN),
        transport=httpx2.MockTransport(lambda request: httpx2.Response(200, json=job)),
        sleep=sleep,
        clock=lambda: now[0],
    )
    with client, pytest.raises(JobTimeoutError, match="still running"):
        client.wait(str(job["id"]), timeout=10, poll_interval=4)
    assert sleeps.waits == [4, 4, 4]


def test_a_configuration_needs_one_credential_and_a_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACTIONS_ID_TOKEN_REQUEST_URL", raising=False)
    monkeypatch.delenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", raising=False)
    with pytest.raises(ValueError, match="exactly one"):
        ClientConfig(base_url="https://aigateway.test")
    with pytest.raises(ValueError, match="base_url"):
        ClientConfig(base_url="aigateway.test", token="t")
    with pytest.raises(AuthenticationError, match="id-token: write"):
        GitHubActionsOidc("aud", request_url=None, request_token=None)._request()

"""The per-caller sliding window on the endpoints that call models: the window itself with a
clock the test moves, then the server's 429 with ``Retry-After``."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.api.ratelimit import SlidingWindowLimiter, retry_after_header
from tests.api_env import ApiEnv, start_api
from tests.conftest import SettingsFactory
from tests.harness import ClientFactory, ServerFactory


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_window_slides_and_says_exactly_how_long_to_wait() -> None:
    clock = Clock()
    limiter = SlidingWindowLimiter(limit=3, window_s=60, clock=clock)
    for step in (0, 10, 20):
        clock.now = 1000 + step
        assert limiter.acquire("a") is None
    clock.now = 1030
    assert limiter.acquire("a") == pytest.approx(30)  # the first leaves the window at 1060
    assert limiter.acquire("b") is None  # callers are counted apart
    clock.now = 1060
    assert limiter.acquire("a") is None  # the first one left; refusals were not counted
    assert limiter.acquire("a") == pytest.approx(10)
    assert retry_after_header(0.2) == "1" and retry_after_header(29.1) == "30"


def test_callers_idle_for_a_window_are_forgotten() -> None:
    clock = Clock()
    limiter = SlidingWindowLimiter(limit=1, window_s=1, clock=clock)
    limiter.acquire("gone")
    clock.now += 5
    limiter._prune(clock.now)
    assert limiter.acquire("gone") is None


@pytest.fixture
def db_url(sqlite_url: str) -> str:
    return sqlite_url


async def test_the_server_answers_429_with_retry_after_per_caller(
    aiohttp_client: ClientFactory,
    aiohttp_server: ServerFactory,
    make_settings: SettingsFactory,
    rsa_key: tuple[str, str],
    tmp_path: Path,
) -> None:
    api: ApiEnv = await start_api(
        aiohttp_client,
        aiohttp_server,
        make_settings,
        rsa_key,
        tmp_path,
        api_rate_limit=2,
        api_rate_window_seconds=3600,
    )
    # Counted once authenticated, whatever the body: these two do not validate (422).
    for _ in range(2):
        response = await api.client.post("/v1/ai/review", json={}, headers=api.oidc())
        assert response.status == 422
    limited = await api.client.post("/v1/ai/review", json={}, headers=api.oidc())
    assert limited.status == 429
    assert limited.headers["Retry-After"] == "3600"
    body = await limited.json()
    assert body["error"] == "rate_limited" and body["retry_after"] == pytest.approx(3600, abs=5)
    # analyze shares the caller's window; other callers and other endpoints are not limited.
    analyze = await api.client.post("/v1/ai/analyze", json={}, headers=api.oidc())
    assert analyze.status == 429
    assert (await api.client.post("/v1/ai/review", json={}, headers=api.bearer())).status == 422
    other = api.oidc(repository="acme/ci")
    assert (await api.client.post("/v1/ai/review", json={}, headers=other)).status == 422
    health = await api.client.get("/v1/ai/health", headers=api.oidc())
    assert health.status == 200
    assert [e["outcome"] for e in api.audit() if e["status"] == 429] == ["rate_limited"] * 2

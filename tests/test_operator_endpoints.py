"""``/metrics`` and the health detail are for operators: a token on the public port, or a port of
their own; the public ``/healthz`` says up or down and nothing more."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pydantic import SecretStr

from app.operator.endpoints import LISTENER, bearer_matches
from app.server import SERVICES, create_app
from app.settings import SettingsError
from tests.conftest import OPERATOR_HEADERS, OPERATOR_TOKEN, WEBHOOK_SECRET, SettingsFactory
from tests.fakes.webhooks import pull_request_payload, signed_delivery

ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]

OPERATOR_PATHS = ("/metrics", "/healthz/detail")


async def deliver(client: TestClient[Any, Any]) -> None:
    """One delivery of a private repository's pull request, so that the figures name it."""
    payload = pull_request_payload("opened", repo="octo/private-thing")
    headers, body = signed_delivery("pull_request", payload, WEBHOOK_SECRET)
    assert (await client.post("/webhook", data=body, headers=headers)).status == 202


@pytest.fixture
async def client(
    aiohttp_client: ClientFactory, make_settings: SettingsFactory, db_url: str
) -> TestClient[Any, Any]:
    return await aiohttp_client(create_app(make_settings(database_url=db_url), run_workers=False))


async def test_public_healthz_says_up_and_nothing_else(client: TestClient[Any, Any]) -> None:
    await deliver(client)
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "up"}


async def test_public_healthz_says_down_with_503_when_unhealthy(
    client: TestClient[Any, Any],
) -> None:
    for _ in range(5):
        client.app[SERVICES].health.record("gateway:openai", 0.1, ok=False)
    response = await client.get("/healthz")
    assert response.status == 503
    assert await response.json() == {"status": "down"}


@pytest.mark.parametrize("path", OPERATOR_PATHS)
@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer not-the-operator-token",
        f"Bearer {OPERATOR_TOKEN}x",
        f"Basic {OPERATOR_TOKEN}",
        OPERATOR_TOKEN,
        "Bearer",
    ],
)
async def test_operator_endpoints_need_the_token(
    client: TestClient[Any, Any], path: str, authorization: str | None
) -> None:
    await deliver(client)
    headers = {"Authorization": authorization} if authorization is not None else {}
    response = await client.get(path, headers=headers)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "octo/private-thing" not in await response.text()


async def test_operator_endpoints_answer_with_the_token(client: TestClient[Any, Any]) -> None:
    await deliver(client)
    detail = await client.get("/healthz/detail", headers=OPERATOR_HEADERS)
    assert detail.status == 200
    body = await detail.json()
    assert (body["status"], body["queue_depth"]) == ("healthy", 1)
    assert "webhook" in body["components"]
    lowercase_scheme = {"Authorization": f"bearer {OPERATOR_TOKEN}"}
    metrics = await client.get("/metrics", headers=lowercase_scheme)
    assert metrics.status == 200
    assert 'aigateway_deliveries_received_total{event="pull_request"} 1.0' in await metrics.text()


async def test_without_a_token_the_operator_endpoints_do_not_exist(
    aiohttp_client: ClientFactory, make_settings: SettingsFactory
) -> None:
    app = create_app(make_settings(operator_token=None), run_workers=False)
    client = await aiohttp_client(app)
    unknown = await client.get("/no-such-path")
    for path in OPERATOR_PATHS:
        for headers in ({}, OPERATOR_HEADERS):
            response = await client.get(path, headers=headers)
            assert (response.status, await response.text()) == (404, await unknown.text())
    assert (await client.get("/healthz")).status == 200


async def test_the_operator_port_serves_the_detail_and_metrics_without_a_token(
    aiohttp_client: ClientFactory, make_settings: SettingsFactory
) -> None:
    settings = make_settings(host="127.0.0.1", operator_port=0, operator_token=None)
    app = create_app(settings, run_workers=False)
    client = await aiohttp_client(app)
    await deliver(client)
    host, port = app[LISTENER].addresses[0][:2]
    base = f"http://{host}:{port}"
    async with aiohttp.ClientSession() as session:
        for path in ("/healthz", "/healthz/detail"):
            async with session.get(base + path) as response:
                assert response.status == 200
                body = json.loads(await response.text())
                assert (body["status"], body["queue_depth"]) == ("healthy", 1)
        async with session.get(base + "/metrics") as response:
            assert response.status == 200
            assert "aigateway_deliveries_received_total" in await response.text()
        headers, body = signed_delivery("ping", {"zen": "hi"}, WEBHOOK_SECRET)
        async with session.post(base + "/webhook", data=body, headers=headers) as response:
            assert response.status == 404  # no webhook on the operator port
        # ... and the public port keeps its rules.
        assert (await client.get("/metrics")).status == 404

        await client.close()  # the listener stops with the app
        with pytest.raises(aiohttp.ClientConnectionError):
            async with session.get(base + "/healthz"):
                pass


def test_bearer_matches_only_the_token_itself() -> None:
    token = SecretStr("s3cret-operator-token")
    assert bearer_matches("Bearer s3cret-operator-token", token)
    assert bearer_matches("BEARER  s3cret-operator-token ", token)
    for header in (
        None,
        "",
        "s3cret-operator-token",
        "Bearer s3cret",
        "Token s3cret-operator-token",
    ):
        assert not bearer_matches(header, token)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"operator_token": "short"}, "OPERATOR_TOKEN must be at least 16"),
        ({"operator_port": 8080, "port": 8080}, "OPERATOR_PORT must differ from PORT"),
    ],
)
def test_operator_settings_that_cannot_work_stop_the_server(
    make_settings: SettingsFactory, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        make_settings(**overrides).check_for_server()


def test_an_empty_operator_token_is_no_token(make_settings: SettingsFactory) -> None:
    assert make_settings(operator_token="").operator_token is None

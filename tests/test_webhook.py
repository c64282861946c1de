"""``POST /webhook``: verification, status codes, durable queueing and redelivery."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from app.queue import QUEUED, Delivery
from app.server import SERVICES, create_app
from tests.conftest import OPERATOR_HEADERS, WEBHOOK_SECRET, SettingsFactory

ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]

PAYLOAD: dict[str, Any] = {
    "action": "opened",
    "number": 7,
    "pull_request": {"number": 7},
    "installation": {"id": 42},
    "repository": {"full_name": "octo/demo"},
}


def signed(
    body: bytes,
    *,
    event: str = "pull_request",
    delivery: str = "d-1",
    secret: str = WEBHOOK_SECRET,
    content_type: str = "application/json",
) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "content-type": content_type,
        "x-github-event": event,
        "x-github-delivery": delivery,
        "x-hub-signature-256": f"sha256={digest}",
    }


@pytest.fixture
async def client(
    aiohttp_client: ClientFactory, make_settings: SettingsFactory, db_url: str
) -> TestClient[Any, Any]:
    app = create_app(make_settings(database_url=db_url), run_workers=False)
    return await aiohttp_client(app)


async def queued(client: TestClient[Any, Any]) -> list[Delivery]:
    services = client.app[SERVICES]
    rows: list[Delivery] = await services.queue.recent(limit=100)
    return rows


def test_signature_test_vector_from_github_docs() -> None:
    digest = hmac.new(b"It's a Secret to Everybody", b"Hello, World!", hashlib.sha256).hexdigest()
    assert digest == "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert signed(b"Hello, World!")["x-hub-signature-256"].endswith(digest)


async def test_valid_delivery_is_stored_then_acknowledged(client: TestClient[Any, Any]) -> None:
    body = json.dumps(PAYLOAD).encode()
    response = await client.post("/webhook", data=body, headers=signed(body))
    assert response.status == 202
    [row] = await queued(client)
    assert (row.id, row.event, row.action, row.status) == ("d-1", "pull_request", "opened", QUEUED)
    assert row.installation_id == 42
    assert row.repository == "octo/demo"
    assert row.pr_key == "octo/demo#7"
    assert json.loads(row.payload) == PAYLOAD


async def test_redelivery_is_acknowledged_but_not_queued_twice(
    client: TestClient[Any, Any],
) -> None:
    body = json.dumps(PAYLOAD).encode()
    first = await client.post("/webhook", data=body, headers=signed(body))
    again = await client.post("/webhook", data=body, headers=signed(body))
    assert (first.status, again.status) == (202, 200)
    assert (await again.json())["duplicate"] is True
    assert len(await queued(client)) == 1


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda h: h.pop("x-hub-signature-256"), id="missing"),
        pytest.param(lambda h: h.update({"x-hub-signature-256": "sha256=" + "0" * 64}), id="wrong"),
        pytest.param(lambda h: h.update({"x-hub-signature-256": "garbage"}), id="malformed"),
    ],
)
async def test_bad_signature_is_401_and_nothing_is_queued(
    client: TestClient[Any, Any], mutate: Callable[[dict[str, str]], object]
) -> None:
    body = json.dumps(PAYLOAD).encode()
    headers = signed(body)
    mutate(headers)
    response = await client.post("/webhook", data=body, headers=headers)
    assert response.status == 401
    assert await queued(client) == []


async def test_signature_made_with_another_secret_is_401(client: TestClient[Any, Any]) -> None:
    body = json.dumps(PAYLOAD).encode()
    response = await client.post("/webhook", data=body, headers=signed(body, secret="other"))
    assert response.status == 401
    assert await queued(client) == []


async def test_body_changed_after_signing_is_401(client: TestClient[Any, Any]) -> None:
    body = json.dumps(PAYLOAD).encode()
    headers = signed(body)
    response = await client.post("/webhook", data=body.replace(b"7", b"8"), headers=headers)
    assert response.status == 401


@pytest.mark.parametrize("header", ["x-github-event", "x-github-delivery"])
async def test_missing_event_or_delivery_header_is_400(
    client: TestClient[Any, Any], header: str
) -> None:
    body = json.dumps(PAYLOAD).encode()
    headers = signed(body)
    del headers[header]
    response = await client.post("/webhook", data=body, headers=headers)
    assert response.status == 400
    assert header in (await response.json())["error"].lower()
    assert await queued(client) == []


async def test_body_that_is_not_json_is_400(client: TestClient[Any, Any]) -> None:
    body = b"{not json"
    response = await client.post("/webhook", data=body, headers=signed(body))
    assert response.status == 400
    assert await queued(client) == []


async def test_json_only_the_stdlib_accepts_is_still_accepted(
    client: TestClient[Any, Any],
) -> None:
    # orjson refuses NaN; gidgethub's decoder (the stdlib) has always taken it.
    body = b'{"action": "opened", "number": NaN, "repository": {"full_name": "octo/demo"}}'
    response = await client.post("/webhook", data=body, headers=signed(body))
    assert response.status == 202
    [row] = await queued(client)
    assert (row.action, row.repository) == ("opened", "octo/demo")


async def test_json_in_another_charset_is_decoded_with_it(client: TestClient[Any, Any]) -> None:
    text = json.dumps(
        {"action": "opened", "repository": {"full_name": "octo/démo"}}, ensure_ascii=False
    )
    body = text.encode("latin-1")
    headers = signed(body, content_type="application/json; charset=latin-1")
    response = await client.post("/webhook", data=body, headers=headers)
    assert response.status == 202
    [row] = await queued(client)
    assert row.repository == "octo/démo"
    assert json.loads(row.payload)["repository"]["full_name"] == "octo/démo"


async def test_body_that_is_not_utf8_is_400(client: TestClient[Any, Any]) -> None:
    body = b'{"action": "' + bytes([0xFF, 0xFE]) + b'"}'
    response = await client.post("/webhook", data=body, headers=signed(body))
    assert response.status == 400
    assert await queued(client) == []


async def test_signature_is_checked_before_the_body_is_decoded(
    client: TestClient[Any, Any],
) -> None:
    body = b"{not json"
    headers = signed(body, secret="another secret")
    response = await client.post("/webhook", data=body, headers=headers)
    assert response.status == 401


async def test_json_that_is_not_an_object_is_400(client: TestClient[Any, Any]) -> None:
    body = b"[1, 2, 3]"
    response = await client.post("/webhook", data=body, headers=signed(body))
    assert response.status == 400


async def test_unsupported_content_type_is_415(client: TestClient[Any, Any]) -> None:
    body = json.dumps(PAYLOAD).encode()
    response = await client.post(
        "/webhook", data=body, headers=signed(body, content_type="text/plain")
    )
    assert response.status == 415
    assert await queued(client) == []


async def test_form_encoded_payload_is_accepted(client: TestClient[Any, Any]) -> None:
    body = urllib.parse.urlencode({"payload": json.dumps(PAYLOAD)}).encode()
    headers = signed(body, content_type="application/x-www-form-urlencoded")
    response = await client.post("/webhook", data=body, headers=headers)
    assert response.status == 202
    [row] = await queued(client)
    assert json.loads(row.payload) == PAYLOAD


async def test_form_encoded_without_payload_field_is_400(client: TestClient[Any, Any]) -> None:
    body = b"other=1"
    headers = signed(body, content_type="application/x-www-form-urlencoded")
    response = await client.post("/webhook", data=body, headers=headers)
    assert response.status == 400


async def test_body_over_25_mb_is_413(client: TestClient[Any, Any]) -> None:
    body = b'{"x": "' + b"a" * (25 * 1024 * 1024) + b'"}'
    response = await client.post("/webhook", data=io.BytesIO(body), headers=signed(body))
    assert response.status == 413
    assert await queued(client) == []


async def test_ping_is_200_and_not_queued(client: TestClient[Any, Any]) -> None:
    body = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 1}).encode()
    response = await client.post("/webhook", data=body, headers=signed(body, event="ping"))
    assert response.status == 200
    assert await queued(client) == []


async def test_healthz_and_metrics(client: TestClient[Any, Any]) -> None:
    body = json.dumps(PAYLOAD).encode()
    await client.post("/webhook", data=body, headers=signed(body))
    health = await client.get("/healthz/detail", headers=OPERATOR_HEADERS)
    assert health.status == 200
    data = await health.json()
    assert data["status"] == "healthy"
    assert data["queue_depth"] == 1
    assert data["version"]
    assert data["uptime_s"] >= 0
    metrics = await (await client.get("/metrics", headers=OPERATOR_HEADERS)).text()
    assert 'aigateway_deliveries_received_total{event="pull_request"} 1.0' in metrics
    assert "aigateway_queue_depth 1.0" in metrics
    assert "aigateway_handler_seconds_bucket" in metrics or "aigateway_handler_seconds" in metrics


async def test_event_nobody_handles_is_stored_as_done_without_queueing(
    client: TestClient[Any, Any],
) -> None:
    body = json.dumps({"action": "completed", "workflow_run": {"id": 1}}).encode()
    response = await client.post(
        "/webhook", data=body, headers=signed(body, event="workflow_run", delivery="wr-1")
    )
    assert response.status == 202
    [row] = await queued(client)
    assert (row.id, row.status, row.attempts) == ("wr-1", "done", 0)
    assert row.finished_at is not None
    health = await (await client.get("/healthz/detail", headers=OPERATOR_HEADERS)).json()
    assert health["queue_depth"] == 0


async def test_every_answer_is_counted_and_lands_in_the_health_window(
    client: TestClient[Any, Any],
) -> None:
    body = json.dumps(PAYLOAD).encode()
    assert (await client.post("/webhook", data=body, headers=signed(body))).status == 202
    assert (await client.post("/webhook", data=body, headers=signed(body))).status == 200
    forged = signed(body, delivery="d-2", secret="not the secret")
    assert (await client.post("/webhook", data=body, headers=forged)).status == 401
    metrics = await (await client.get("/metrics", headers=OPERATOR_HEADERS)).text()
    assert 'aigateway_deliveries_received_total{event="pull_request"} 1.0' in metrics
    assert 'aigateway_deliveries_duplicate_total{event="pull_request"} 1.0' in metrics
    assert 'aigateway_deliveries_rejected_total{status="401"} 1.0' in metrics
    detail = await client.get("/healthz/detail", headers=OPERATOR_HEADERS)
    webhook = (await detail.json())["components"]["webhook"]
    assert (webhook["calls"], webhook["errors"]) == (3, 0)  # a 401 is the sender's fault

"""An end-to-end harness: the real app with its workers, a fake GitHub and a fake gateway.

Everything talks real HTTP over loopback. A test seeds the fake GitHub, scripts the fake models,
POSTs signed deliveries to ``/webhook`` and waits for the queue to finish them.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from app.queue import DONE, FAILED, Delivery
from app.server import SERVICES
from app.services import Services
from tests.conftest import WEBHOOK_SECRET
from tests.fakes.gateway import FakeGateway
from tests.fakes.github import FakeGitHub
from tests.fakes.webhooks import delivery_headers

GATEWAY_TOKEN = "cf-gateway-token-e2e-0123456789"
REPO = "octo/demo"

ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]
ServerFactory = Callable[[web.Application], Awaitable[TestServer]]


@dataclass
class E2E:
    client: TestClient[Any, Any]
    github: FakeGitHub
    gateway: FakeGateway

    @property
    def services(self) -> Services:
        services: Services = self.client.app[SERVICES]
        return services

    async def deliver(
        self, event: str, payload: dict[str, Any], *, delivery_id: str | None = None
    ) -> str:
        delivery_id = delivery_id or str(uuid.uuid4())
        body = json.dumps(payload).encode()
        headers = delivery_headers(event, body, WEBHOOK_SECRET, delivery_id=delivery_id)
        response = await self.client.post("/webhook", data=body, headers=headers)
        assert response.status == 202, await response.text()
        return delivery_id

    async def wait_done(self, delivery_id: str, *, timeout: float = 30.0) -> Delivery:
        queue = self.services.queue
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            row = await queue.get(delivery_id)
            if row is not None and row.status in (DONE, FAILED):
                return row
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"delivery {delivery_id} did not finish: {row}")
            await asyncio.sleep(0.02)

    async def handle(self, event: str, payload: dict[str, Any]) -> Delivery:
        row = await self.wait_done(await self.deliver(event, payload))
        assert row.status == DONE, row.last_error
        return row


async def start_e2e(
    aiohttp_client: ClientFactory,
    aiohttp_server: ServerFactory,
    make_settings: Callable[..., Any],
    **overrides: Any,
) -> E2E:
    github = FakeGitHub()
    github.attach(await aiohttp_server(github.app))
    gateway = FakeGateway()
    gateway.bind(await aiohttp_server(gateway.make_app()))
    settings = make_settings(
        github_api_url=github.url,
        aig_gateway_url=gateway.url,
        cf_aig_token=GATEWAY_TOKEN,
        model_max_retries=0,
        **overrides,
    )
    from app.server import create_app

    client = await aiohttp_client(create_app(settings))
    return E2E(client=client, github=github, gateway=gateway)

"""The end-to-end harness: the real app and its workers against a fake GitHub and a fake gateway.

Each test seeds a pull request on the fake GitHub, POSTs signed deliveries to ``/webhook`` and
waits until the queue has finished each, then looks at what GitHub and the gateway received.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app.queue import DONE, FAILED, Delivery
from app.server import SERVICES, create_app
from app.services import Services
from tests.conftest import WEBHOOK_SECRET, SettingsFactory
from tests.fakes.gateway import FakeGateway
from tests.fakes.github import FakeGitHub, Pull
from tests.fakes.webhooks import pull_request_payload, signed_delivery
from tests.harness import REPO, ClientFactory, ServerFactory

__all__ = ["ACT_CONFIG", "REPO", "Bot", "bot", "bot_settings"]

ACT_CONFIG = "version: 1\nautonomy:\n  mode: act\n"


@dataclass
class Bot:
    client: TestClient[Any, Any]
    github: FakeGitHub
    gateway: FakeGateway

    @property
    def services(self) -> Services:
        services: Services = self.client.app[SERVICES]
        return services

    async def deliver(self, event: str, payload: dict[str, Any]) -> None:
        """POST a signed delivery and wait until a worker has finished it, successfully."""
        row = await self.wait(await self.post(payload, event))
        assert row.status == DONE, row.last_error

    async def post(self, payload: dict[str, Any], event: str) -> str:
        """POST a signed delivery; return its id once it is stored (202)."""
        delivery_id = str(uuid.uuid4())
        headers, body = signed_delivery(event, payload, WEBHOOK_SECRET, delivery_id=delivery_id)
        response = await self.client.post("/webhook", data=body, headers=headers)
        assert response.status == 202, await response.text()
        return delivery_id

    async def wait(self, delivery_id: str) -> Delivery:
        """The delivery once it is ``done`` or ``failed`` for good (retries included)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while True:
            row = await self.services.queue.get(delivery_id)
            if row is not None and row.status in {DONE, FAILED}:
                return row
            assert loop.time() < deadline, f"delivery {delivery_id} did not finish: {row}"
            await asyncio.sleep(0.02)

    async def open_pull(self, pull: Pull) -> None:
        await self.deliver(
            "pull_request",
            pull_request_payload(
                "opened",
                number=pull.number,
                head_sha=pull.head_sha,
                head_ref=pull.head_ref,
                title=pull.title,
                body=pull.body,
                user=pull.user,
            ),
        )

    def merges(self) -> list[Any]:
        return self.github.calls("PUT", r"/pulls/\d+/merge$")

    def approve_both(self, confidence: float) -> None:
        for script in (self.gateway.anthropic, self.gateway.openai):
            script.set_review(verdict="approve", confidence=confidence, findings=[])


@pytest.fixture
def bot_settings() -> dict[str, Any]:
    """Settings the ``bot`` fixture's server gets on top of its own; a test module overrides it."""
    return {}


@pytest.fixture
async def bot(
    aiohttp_client: ClientFactory,
    aiohttp_server: ServerFactory,
    make_settings: SettingsFactory,
    db_url: str,
    rsa_key: tuple[str, str],
    bot_settings: dict[str, Any],
) -> AsyncIterator[Bot]:
    github = FakeGitHub()
    github.attach(await aiohttp_server(github.app))
    github.set_app_key(rsa_key[1], 1)
    github.add_repo(REPO)
    gateway = FakeGateway()
    gateway.bind(await aiohttp_server(gateway.make_app()))
    settings = make_settings(
        github_api_url=github.url,
        aig_gateway_url=gateway.url,
        cf_aig_token="cf-gateway-token-e2e-autonomy",
        model_max_retries=0,
        database_url=db_url,
        **bot_settings,
    )
    client = await aiohttp_client(create_app(settings))
    yield Bot(client, github, gateway)
    github.assert_no_violations()
    github.assert_no_unexpected()

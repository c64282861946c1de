"""Conformance: every webhook payload GitHub documents goes through the real app end to end.

Each example under ``../shared/fixtures/webhooks`` (JSON and form-encoded) is signed with the test
secret and POSTed to a real app (``create_app`` with its workers) over loopback. The app must
acknowledge it (``ping`` 200, everything else 202), queue it, and have a worker handle it to
``done``: no failed delivery, no error logged by the app. The app talks to a ``FakeGitHub`` seeded
with every repository and pull request the fixtures mention and to a ``FakeGateway``, so the
pull request deliveries that start a review run the whole pipeline, and the test checks that
they published exactly one review and one completed check run each.

Deliveries are handled with ``max_attempts=1``, so a handler that raises shows up at once as a
failed delivery instead of being retried out of sight.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from app.handlers.pull_request import REVIEW_ACTIONS
from app.queue import DONE, Delivery
from app.review.render import CHECK_NAME
from app.server import SERVICES, create_app
from tests.conftest import WEBHOOK_SECRET, SettingsFactory
from tests.fakes.gateway import FakeGateway
from tests.fakes.github import FakeGitHub
from tests.fakes.webhooks import FixturePayload, iter_fixture_payloads, missing_reason

ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]
ServerFactory = Callable[..., Awaitable[TestServer]]

FIXTURES: list[FixturePayload] = list(iter_fixture_payloads())
TIMEOUT_S = 60.0
APP_ID = 1

DIFF = """\
diff --git a/README.md b/README.md
--- a/README.md
+++ b/README.md
@@ -1,2 +1,3 @@
 # Hello World
-An old line
+A new line
+Another new line
"""


def _fixture_params() -> list[Any]:
    if not FIXTURES:
        return [
            pytest.param(None, id="no-fixtures", marks=pytest.mark.skip(reason=missing_reason()))
        ]
    return [pytest.param(f, id=f.name) for f in FIXTURES]


# --------------------------------------------------------------------------------------------
# What each payload should lead to


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def starts_review(fixture: FixturePayload) -> bool:
    """A pull_request delivery the review pipeline must run for (and publish)."""
    data = _dict(fixture.payload())
    pr = _dict(data.get("pull_request"))
    return (
        fixture.event == "pull_request"
        and fixture.action in REVIEW_ACTIONS
        and bool(_dict(data.get("installation")).get("id"))
        and pr.get("state") == "open"
        and not pr.get("draft")
    )


@dataclass(frozen=True)
class PullRef:
    repo: str
    number: int
    head_sha: str


def pull_ref(fixture: FixturePayload) -> PullRef:
    pr = _dict(_dict(fixture.payload()).get("pull_request"))
    base_repo = _dict(_dict(pr.get("base")).get("repo"))
    return PullRef(
        str(base_repo["full_name"]), int(pr["number"]), str(_dict(pr.get("head"))["sha"])
    )


# --------------------------------------------------------------------------------------------
# The world the app talks to


def seed(fake: FakeGitHub, fixtures: Iterable[FixturePayload]) -> None:
    """Every repository and pull request the payloads mention, open and reviewable."""
    for fixture in fixtures:
        data = _dict(fixture.payload())
        installation_id = _dict(data.get("installation")).get("id")
        repos = [_dict(data.get("repository"))]
        pr = _dict(data.get("pull_request"))
        base = _dict(pr.get("base"))
        head = _dict(pr.get("head"))
        repos.append(_dict(base.get("repo")))
        for repo in repos:
            name = repo.get("full_name")
            if isinstance(name, str) and name not in fake.repos:
                fake.add_repo(
                    name,
                    default_branch=str(repo.get("default_branch") or "main"),
                    installation_id=int(installation_id or 1),
                )
        if not pr:
            continue
        repo_name = str(_dict(base.get("repo")).get("full_name") or repos[0]["full_name"])
        number = int(pr["number"])
        if number in fake.repo(repo_name).pulls:
            continue
        head_repo = _dict(head.get("repo")).get("full_name")
        fake.add_pull(
            repo_name,
            number,
            head_sha=str(head["sha"]),
            base=str(base.get("ref") or "main"),
            base_sha=str(base.get("sha") or "") or None,
            head_ref=str(head.get("ref") or "feature"),
            head_repo=str(head_repo) if head_repo else None,
            user=str(_dict(pr.get("user")).get("login") or "octocat"),
            title=str(pr.get("title") or "A pull request"),
            diff=DIFF,
        )


@dataclass
class World:
    client: TestClient[Any, Any]
    github: FakeGitHub
    gateway: FakeGateway

    async def post(self, fixture: FixturePayload) -> tuple[int, str]:
        delivery_id = str(uuid.uuid4())
        response = await self.client.post(
            "/webhook",
            data=fixture.body,
            headers=fixture.headers(WEBHOOK_SECRET, delivery_id=delivery_id),
        )
        await response.read()
        return response.status, delivery_id

    async def deliveries(self) -> list[Delivery]:
        rows: list[Delivery] = await self.client.app[SERVICES].queue.recent(limit=10_000)
        return rows

    async def drained(self) -> list[Delivery]:
        """Wait until nothing is queued or running; return every delivery."""
        queue = self.client.app[SERVICES].queue
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TIMEOUT_S
        while await queue.depth() > 0:
            if loop.time() > deadline:
                pending = [d for d in await self.deliveries() if d.status != DONE]
                raise AssertionError(f"the queue did not drain in {TIMEOUT_S:.0f}s: {pending}")
            await asyncio.sleep(0.02)
        return await self.deliveries()


WorldFactory = Callable[..., Awaitable[World]]


@pytest.fixture
def make_world(
    aiohttp_client: ClientFactory,
    aiohttp_server: ServerFactory,
    make_settings: SettingsFactory,
    rsa_key: tuple[str, str],
    caplog: pytest.LogCaptureFixture,
) -> WorldFactory:
    """A real app with workers, a seeded FakeGitHub and a FakeGateway; settings overridable."""

    async def factory(**overrides: Any) -> World:
        caplog.set_level(logging.WARNING, logger="app")
        github = FakeGitHub(app_id=APP_ID)
        github.set_app_key(rsa_key[1], APP_ID)
        github.attach(await aiohttp_server(github.app))
        seed(github, FIXTURES)
        gateway = FakeGateway()
        gateway.bind(await aiohttp_server(gateway.make_app()))
        settings = make_settings(
            github_app_id=str(APP_ID),
            github_api_url=github.url,
            aig_gateway_url=gateway.url,
            max_attempts=1,
            **overrides,
        )
        client = await aiohttp_client(create_app(settings))
        return World(client, github, gateway)

    return factory


@pytest.fixture
async def world(make_world: WorldFactory) -> World:
    return await make_world()


# --------------------------------------------------------------------------------------------
# Assertions shared by both tests


def app_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Every ERROR the app logged, with the type of the exception it carried, if any."""
    found = []
    for record in caplog.records:
        if record.levelno < logging.ERROR or not record.name.startswith("app"):
            continue
        exc = record.exc_info[1] if record.exc_info else None
        kind = f" [{type(exc).__module__}.{type(exc).__name__}: {exc}]" if exc else ""
        found.append(f"{record.name}: {record.getMessage()}{kind}")
    return found


def undone(rows: Iterable[Delivery], names: dict[str, str]) -> list[str]:
    return [
        f"{names.get(d.id, d.id)}: {d.status} after {d.attempts} attempt(s): {d.last_error}"
        for d in rows
        if d.status != DONE
    ]


def reviews_on(github: FakeGitHub, ref: PullRef) -> list[dict[str, Any]]:
    return [r for r in github.pull(ref.repo, ref.number).reviews if r["_user"] == github.bot_login]


def our_check_runs(github: FakeGitHub, ref: PullRef) -> list[Any]:
    return [r for r in github.check_runs_for(ref.repo, ref.head_sha) if r.name == CHECK_NAME]


# --------------------------------------------------------------------------------------------
# The tests


@pytest.mark.parametrize("fixture", _fixture_params())
async def test_fixture_payload_is_acknowledged_queued_and_handled(
    world: World, fixture: FixturePayload, caplog: pytest.LogCaptureFixture
) -> None:
    status, delivery_id = await world.post(fixture)

    if fixture.event == "ping":
        assert status == 200
        assert await world.deliveries() == []
        return
    assert status == 202
    [row] = await world.drained()
    assert row.id == delivery_id
    assert (row.event, row.action) == (fixture.event, fixture.action)
    assert row.status == DONE, f"{row.status} after {row.attempts} attempt(s): {row.last_error}"
    assert app_errors(caplog) == []

    if starts_review(fixture):
        ref = pull_ref(fixture)
        [review] = reviews_on(world.github, ref)
        assert review["commit_id"] == ref.head_sha
        [run] = our_check_runs(world.github, ref)
        assert (run.status, run.conclusion) == ("completed", "success")
        assert world.gateway.requests_for("anthropic")
        assert world.gateway.requests_for("openai")
    elif fixture.event == "pull_request":
        # Any other pull_request action (or one without an installation) reviews nothing.
        assert [r for r in world.github.check_runs.values() if r.name == CHECK_NAME] == []
        assert world.gateway.requests == []
    world.github.assert_no_unexpected()
    world.github.assert_no_violations()


async def test_every_fixture_payload_at_once(
    make_world: WorldFactory, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """All payloads in one burst on one app: every one handled to done, each review published."""
    if not FIXTURES:
        pytest.skip(missing_reason())
    world = await make_world(database_url=db_url)
    results = await asyncio.gather(*(world.post(f) for f in FIXTURES))
    names = {delivery_id: f.name for f, (_, delivery_id) in zip(FIXTURES, results, strict=True)}
    assert len(names) == len(FIXTURES)  # every delivery id unique
    wrong = [
        f"{f.name}: {status}"
        for f, (status, _) in zip(FIXTURES, results, strict=True)
        if status != (200 if f.event == "ping" else 202)
    ]
    assert wrong == []

    rows = await world.drained()
    queued = {f.name for f in FIXTURES if f.event != "ping"}
    assert {names[d.id] for d in rows} == queued
    assert undone(rows, names) == []
    assert app_errors(caplog) == []

    reviewing = [f for f in FIXTURES if starts_review(f)]
    assert reviewing, "the fixtures hold pull_request deliveries that start a review"
    for ref in {pull_ref(f) for f in reviewing}:
        runs = our_check_runs(world.github, ref)
        assert runs
        assert all(r.status == "completed" for r in runs)
        # One published review per check run: no review left half-done, none posted twice.
        assert len(reviews_on(world.github, ref)) == len(runs)
    world.github.assert_no_unexpected()
    world.github.assert_no_violations()

"""Signed deliveries whose fields have unexpected types: never a 5xx, never a dead worker.

GitHub's payloads change shape over time, and a delivery that is signed with our secret is
still only data. Intake stores any signed JSON object (202) and answers 400 only when the body
cannot be a delivery at all; what a payload's fields hold is the handlers' business, and a
handler that cannot make sense of them fails its delivery with the error, like any other
handler error. These tests hold both ends to that with Hypothesis:

- random JSON values (biased towards the keys and values intake and the handlers read), and
- GitHub's own example payloads (``../shared/fixtures/webhooks``) with leaves and subtrees
  replaced by values of other types, keys dropped and values wrapped,

signed with the test secret and POSTed to a real app with one worker, against a fake GitHub
and a fake gateway. Every answer must be below 500, and every stored delivery must end ``done``
or ``failed`` with its error, handled by the one worker: a worker that died would leave the
delivery running, and the next example would find nobody to handle its own.

A few inputs that once broke intake are kept as plain examples beside the properties.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import math
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.queue import DONE, FAILED, Delivery
from app.server import SERVICES, create_app
from tests.conftest import WEBHOOK_SECRET, SettingsFactory
from tests.fakes.gateway import FakeGateway
from tests.fakes.github import FakeGitHub
from tests.fakes.webhooks import (
    FORM_CONTENT_TYPE,
    FixturePayload,
    delivery_headers,
    encode_form,
    encode_json,
    iter_fixture_payloads,
    missing_reason,
)
from tests.test_conformance import APP_ID, seed

ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]
ServerFactory = Callable[..., Awaitable[TestServer]]

FIXTURES: list[FixturePayload] = [f for f in iter_fixture_payloads() if f.event != "ping"]
# A worker that is alive finishes any one delivery well within this; one that died never does.
FINISH_TIMEOUT_S = 60.0

FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # one app serves every example, on purpose
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)

# --------------------------------------------------------------------------------------------
# Strategies

# The events some handler takes, and the fields intake and the handlers read.
EVENTS = (
    "pull_request",
    "pull_request_review",
    "pull_request_review_comment",
    "issue_comment",
    "check_run",
    "check_suite",
    "push",
    "status",
    "installation",
    "installation_repositories",
    "ping",
)
KEYS = st.sampled_from(
    [
        "action",
        "number",
        "repository",
        "installation",
        "pull_request",
        "pull_requests",
        "issue",
        "check_run",
        "check_suite",
        "comment",
        "sender",
        "zen",
        "full_name",
        "id",
        "head",
        "base",
        "sha",
        "head_sha",
        "ref",
        "repo",
        "body",
        "state",
        "draft",
        "user",
        "login",
        "after",
        "before",
        "commits",
        "default_branch",
        "requested_action",
        "identifier",
    ]
) | st.text(max_size=8)
STRINGS = st.sampled_from(
    [
        "opened",
        "synchronize",
        "reopened",
        "ready_for_review",
        "created",
        "completed",
        "rerequested",
        "requested_action",
        "closed",
        "octo/demo",
        "octo",
        "main",
        "refs/heads/main",
        "6dcb09b5b57875f334f61aebed695e2e4193db5e",
        "/aigateway review",
        "",
        "\x00",
        "nul\x00inside",
        "\ud800",  # a lone surrogate: JSON can carry it, UTF-8 cannot
        "²",  # a digit to str.isdigit, not to int()
        "9" * 40,
    ]
) | st.text(max_size=12)
LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**31), max_value=2**31)
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats()  # NaN and infinities too: the stdlib writes them, and intake reads them
    | STRINGS
)
VALUES = st.recursive(
    LEAVES,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=5),
    max_leaves=20,
)


def shaped(keys: list[str], values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with some of ``keys`` (and so the fields a reader looks for), of any value."""
    return st.fixed_dictionaries({}, optional=dict.fromkeys(keys, values))


# Objects shaped like a payload's parts (a pull request, a repository), or anything at all.
PARTS = shaped(
    ["id", "number", "full_name", "sha", "head", "base", "ref", "repo", "pull_request"], VALUES
) | shaped(["pull_requests", "head_sha", "login", "name", "owner", "state", "draft"], VALUES)
PAYLOADS = (
    shaped(
        [
            "action",
            "number",
            "repository",
            "installation",
            "pull_request",
            "issue",
            "check_run",
            "check_suite",
            "comment",
            "sender",
            "zen",
            "ref",
            "after",
            "repositories",
        ],
        PARTS | VALUES,
    )
    | st.dictionaries(KEYS, VALUES, min_size=1, max_size=8)
    | VALUES
)
# The fields intake itself reads, where a fixture has them: mutated more often than the rest.
READ_BY_INTAKE = {
    ("action",),
    ("number",),
    ("repository",),
    ("repository", "full_name"),
    ("installation",),
    ("installation", "id"),
    ("pull_request",),
    ("pull_request", "number"),
    ("pull_request", "head"),
    ("pull_request", "head", "sha"),
    ("issue",),
    ("issue", "number"),
    ("issue", "pull_request"),
    ("check_run",),
    ("check_run", "pull_requests"),
    ("zen",),
}
# Replacements of another type than most fields have, and a few extreme ones.
ODD_VALUES: st.SearchStrategy[Any] = st.sampled_from(
    [None, True, False, 0, -1, 2**63, 2**64 + 1, 1.5, math.nan, "", "x", [], {}, [{}], {"": []}]
)


def node_paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path (keys and indices) to every node below the root."""
    children: list[tuple[Any, Any]] = []
    if isinstance(value, dict):
        children = list(value.items())
    elif isinstance(value, list):
        children = list(enumerate(value))
    for key, child in children:
        path = (*prefix, key)
        yield path
        yield from node_paths(child, path)


def parent_of(root: Any, path: tuple[Any, ...]) -> Any:
    node = root
    for key in path[:-1]:
        node = node[key]
    return node


class Mutated:
    """A fixture's payload after some mutations; its repr names them, not the whole payload."""

    def __init__(self, fixture: FixturePayload, payload: Any, mutations: list[str]) -> None:
        self.fixture = fixture
        self.payload = payload
        self.mutations = mutations

    def __repr__(self) -> str:
        return f"Mutated({self.fixture.name}: {'; '.join(self.mutations)})"


@st.composite
def mutated_fixtures(draw: st.DrawFn) -> Mutated:
    """A fixture payload with one to four of its nodes replaced, dropped or wrapped."""
    fixture = draw(st.sampled_from(FIXTURES))
    payload = copy.deepcopy(fixture.payload())
    mutations: list[str] = []
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        paths = list(node_paths(payload))
        if not paths:
            break
        # A third of the time a field intake reads, a third a top-level one, a third any.
        read = [p for p in paths if p in READ_BY_INTAKE]
        top = [p for p in paths if len(p) == 1]
        pool = draw(st.sampled_from([read or paths, top or paths, paths]))
        path = draw(st.sampled_from(pool))
        parent, key = parent_of(payload, path), path[-1]
        old = parent[key]
        how = draw(st.sampled_from(["replace", "odd", "drop", "wrap"]))
        match how:
            case "replace":
                parent[key] = draw(VALUES)
            case "odd":
                parent[key] = draw(ODD_VALUES)
            case "drop":
                del parent[key]
            case _:
                parent[key] = draw(st.sampled_from([[old], {"value": old}]))
        new = "" if how == "drop" else f" = {parent[key]!r:.80}"
        mutations.append(f"{how} {'.'.join(map(str, path))}{new}")
    return Mutated(fixture, payload, mutations)


# --------------------------------------------------------------------------------------------
# The world


@dataclass
class World:
    client: TestClient[Any, Any]

    async def post(
        self, event: str, body: bytes, *, content_type: str = "application/json"
    ) -> tuple[int, str, str]:
        delivery_id = str(uuid.uuid4())
        headers = delivery_headers(
            event, body, WEBHOOK_SECRET, delivery_id=delivery_id, content_type=content_type
        )
        response = await self.client.post("/webhook", data=body, headers=headers)
        return response.status, await response.text(), delivery_id

    async def finished(self, delivery_id: str) -> Delivery | None:
        """The delivery once the worker has finished it; None when it was not stored."""
        queue = self.client.app[SERVICES].queue
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FINISH_TIMEOUT_S
        while True:
            row: Delivery | None = await queue.get(delivery_id)
            if row is None or row.status in {DONE, FAILED}:
                return row
            assert loop.time() < deadline, f"no worker finished {delivery_id}: {row}"
            await asyncio.sleep(0.01)

    async def check(self, event: str, body: bytes, *, content_type: str) -> None:
        """The properties: below 500, and a stored delivery ends done, or failed with its error."""
        status, text, delivery_id = await self.post(event, body, content_type=content_type)
        assert status < 500, f"{status} {text} for {event}: {body[:500]!r}"
        row = await self.finished(delivery_id)
        if status == 202:
            assert row is not None
            assert row.status == DONE or row.last_error, row
        else:
            assert row is None, f"answered {status} but stored: {row}"


@pytest.fixture
async def world(
    aiohttp_client: ClientFactory,
    aiohttp_server: ServerFactory,
    make_settings: SettingsFactory,
    rsa_key: tuple[str, str],
    db_url: str,
    caplog: pytest.LogCaptureFixture,
) -> World:
    caplog.set_level(logging.CRITICAL, logger="app")  # handler failures are expected here
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
        database_url=db_url,
        workers=1,  # one worker: if it dies, nothing after it is handled
        max_attempts=1,
        github_max_retries=0,
        model_max_retries=0,
    )
    return World(await aiohttp_client(create_app(settings)))


# --------------------------------------------------------------------------------------------
# The properties


@FUZZ
@given(
    # Mostly the events the handlers take, where the payload's fields are read.
    event=st.sampled_from(EVENTS)
    | st.sampled_from(EVENTS)
    | st.sampled_from(EVENTS)
    | st.from_regex(r"[a-z_]{1,24}", fullmatch=True),
    data=st.data(),
)
async def test_any_signed_json_is_answered_below_500_and_handled(
    world: World, event: str, data: st.DataObject
) -> None:
    payload = data.draw(PAYLOADS)
    if data.draw(st.booleans()):
        await world.check(event, encode_json(payload), content_type="application/json")
    else:
        await world.check(event, encode_form(payload), content_type=FORM_CONTENT_TYPE)


@pytest.mark.skipif(not FIXTURES, reason=missing_reason())
@FUZZ
@given(mutated=mutated_fixtures() if FIXTURES else st.nothing())
async def test_mutated_github_payloads_are_answered_below_500_and_handled(
    world: World, mutated: Mutated
) -> None:
    fixture = mutated.fixture
    form = fixture.content_type == FORM_CONTENT_TYPE
    body = encode_form(mutated.payload) if form else encode_json(mutated.payload)
    await world.check(fixture.event, body, content_type=fixture.content_type)


# --------------------------------------------------------------------------------------------
# Inputs that once broke intake, kept as plain examples

NESTED = 300  # deeper than orjson writes (255), shallower than it reads (1024)


# (name, event, body): fields of unexpected types, numbers out of range, unstorable text,
# nesting past each decoder's depth.
ONCE_BROKEN: list[tuple[str, str, bytes]] = [
    ("action-a-list", "pull_request", b'{"action": ["opened"]}'),
    ("action-an-object", "pull_request", b'{"action": {"opened": 1}}'),
    ("action-int", "pull_request", b'{"action": 7, "repository": "octo/demo"}'),
    ("inst-list", "issue_comment", b'{"action": "created", "installation": []}'),
    (
        "number-a-unicode-digit",
        "pull_request",
        b'{"action": "opened", "pull_request": {"number": "\xc2\xb2"}, '
        b'"repository": {"full_name": "octo/demo"}}',
    ),
    (
        "number-of-5000-digits",
        "pull_request",
        b'{"action": "opened", "pull_request": {"number": "' + b"9" * 5000 + b'"}, '
        b'"repository": {"full_name": "octo/demo"}}',
    ),
    (
        "installation-id-beyond-64-bits",
        "pull_request",
        b'{"action": "opened", "installation": {"id": 99999999999999999999}}',
    ),
    (
        "installation-id-negative",
        "pull_request",
        b'{"action": "opened", "installation": {"id": -5}}',
    ),
    (
        "nul-in-text",
        "pull_request",
        b'{"action": "op\\u0000ened", "repository": {"full_name": "octo/\\u0000demo"}}',
    ),
    (
        "lone-surrogates",
        "pull_request",
        b'{"action": "\\ud800", "repository": {"full_name": "octo/\\udfff"}, "number": 1}',
    ),
    ("ping-deep-zen", "ping", b'{"zen": ' + b"[" * NESTED + b"]" * NESTED + b"}"),
    ("ping-object-zen", "ping", b'{"zen": {"a": 1}}'),
    ("nested-past-any-parser", "push", b"[" * 100_000 + b"]" * 100_000),
    ("nested-past-orjson", "push", b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
]


async def test_inputs_that_once_broke_intake_are_never_a_5xx(world: World) -> None:
    failures: list[str] = []
    for name, event, body in ONCE_BROKEN:
        try:
            await world.check(event, body, content_type="application/json")
        except AssertionError as exc:
            failures.append(f"{name}: {exc}")
    assert failures == []


async def test_text_no_column_can_hold_is_stored_cleaned_and_the_payload_as_sent(
    world: World,
) -> None:
    payload = {
        "action": "opened\x00",
        "number": 1,
        "installation": {"id": 42},
        "repository": {"full_name": "octo/\x00\ud800", "owner": {"login": "octo"}},
        "pull_request": {"number": 1, "head": {"sha": "a" * 40}, "base": {"ref": "main"}},
    }
    status, _, delivery_id = await world.post("pull_request", json.dumps(payload).encode())
    assert status == 202
    row = await world.finished(delivery_id)
    assert row is not None and row.status in {DONE, FAILED}
    assert (row.action, row.repository, row.pr_key) == (
        "opened\ufffd",
        "octo/\ufffd\ufffd",
        "octo/\ufffd\ufffd#1",
    )
    assert json.loads(row.payload) == payload


async def test_a_header_that_is_not_utf8_is_400(world: World) -> None:
    """aiohttp reads such header bytes as lone surrogates, which no column can hold."""
    body = b'{"action": "opened"}'
    headers = delivery_headers("pull_request", body, WEBHOOK_SECRET, delivery_id="d-1")
    server = world.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items()).encode()
    head = head.replace(b"X-GitHub-Delivery: d-1", b"X-GitHub-Delivery: d-\xff")
    writer.write(
        b"POST /webhook HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        + head
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert b"X-GitHub-Delivery header is not printable text" in answer
    assert await world.client.app[SERVICES].queue.recent(limit=10) == []

"""The route table intake decides by agrees with gidgethub's own routing."""

from __future__ import annotations

from typing import Any

import pytest
from gidgethub import routing, sansio

from app.handlers import build_router
from app.intake.routes import RecordingRouter
from tests.fakes.webhooks import iter_fixture_payloads, missing_reason, webhooks_available


async def _callback(*_: Any, **__: Any) -> None:
    return None


def agrees(router: routing.Router, event: str, data: dict[str, Any]) -> bool:
    assert isinstance(router, RecordingRouter)
    expected = bool(router.fetch(sansio.Event(data, event=event, delivery_id="x")))
    return router.table().wants(event, data) == expected


def test_shallow_and_deep_routes_and_composition() -> None:
    inner = routing.Router()
    inner.add(_callback, "pull_request", action="opened")
    inner.add(_callback, "pull_request", action="synchronize")
    inner.add(_callback, "push")
    router = RecordingRouter(inner)
    router.add(_callback, "issue_comment", action="created")
    table = router.table()
    assert table.wants("push", {})
    assert table.wants("pull_request", {"action": "synchronize"})
    assert not table.wants("pull_request", {"action": "closed"})
    assert not table.wants("pull_request", {})
    assert table.wants("issue_comment", {"action": "created"})
    assert not table.wants("star", {"action": "created"})
    for event, data in [
        ("push", {}),
        ("pull_request", {"action": "opened"}),
        ("pull_request", {"action": "labeled"}),
        ("issue_comment", {"action": "deleted"}),
        ("check_run", {"action": "created"}),
    ]:
        assert agrees(router, event, data), (event, data)


def test_a_route_for_every_action_wins_over_specific_ones() -> None:
    router = RecordingRouter()
    router.add(_callback, "check_run", action="rerequested")
    router.add(_callback, "check_run")
    assert router.table().wants("check_run", {"action": "completed"})


def test_an_unhashable_value_matches_nothing() -> None:
    router = RecordingRouter()
    router.add(_callback, "pull_request", action="opened")
    assert not router.table().wants("pull_request", {"action": ["opened"]})


def test_the_table_survives_being_sent_as_plain_data() -> None:
    import marshal

    table = build_router().table()
    copy = type(table)(marshal.loads(marshal.dumps(table.routes)))  # noqa: S302
    assert copy.routes == table.routes


@pytest.mark.skipif(not webhooks_available(), reason=missing_reason())
def test_the_app_routes_agree_with_gidgethub_on_every_fixture() -> None:
    router = build_router()
    checked = 0
    for fixture in iter_fixture_payloads():
        payload = fixture.payload()
        assert agrees(router, fixture.event, payload), fixture.name
        checked += 1
    assert checked > 0

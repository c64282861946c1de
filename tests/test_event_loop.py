"""The server's event loop choice: uvloop where installed, asyncio on request or as fallback."""

from __future__ import annotations

import asyncio
import gc
import sys

import pytest

from app.event_loop import new_event_loop
from app.settings import Settings, SettingsError


def test_asyncio_is_used_when_asked_for() -> None:
    loop = new_event_loop("asyncio")
    try:
        assert isinstance(loop, asyncio.BaseEventLoop)
    finally:
        loop.close()


def test_auto_runs_on_uvloop_when_it_is_installed() -> None:
    uvloop = pytest.importorskip("uvloop")
    loop = new_event_loop("auto")
    try:
        assert isinstance(loop, uvloop.Loop)
        assert loop.run_until_complete(asyncio.sleep(0, result=7)) == 7
    finally:
        loop.close()


def test_without_uvloop_auto_falls_back_and_uvloop_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as if it were not installed
    loop = new_event_loop("auto")
    try:
        assert isinstance(loop, asyncio.BaseEventLoop)
    finally:
        loop.close()
    with pytest.raises(SettingsError, match="uvloop is not installed"):
        new_event_loop("uvloop")


def test_event_loop_setting_is_read_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENT_LOOP", "asyncio")
    assert Settings().event_loop == "asyncio"
    monkeypatch.setenv("EVENT_LOOP", "trio")
    with pytest.raises(ValueError, match="event_loop"):
        Settings()


async def test_the_started_server_keeps_the_collector_off_its_start_up_heap() -> None:
    """Objects the start-up made are frozen, so a full collection under load walks only what
    the reviews made, and the young generation is collected less often."""
    from aiohttp import web

    from app.__main__ import HEAP_THRESHOLDS, _settle_heap

    before = gc.get_threshold()
    gc.unfreeze()
    try:
        await _settle_heap(web.Application())
        assert gc.get_freeze_count() > 10_000
        assert gc.get_threshold() == HEAP_THRESHOLDS
        assert HEAP_THRESHOLDS[0] > before[0]
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)

"""The server's event loop: uvloop where it is installed, asyncio's own otherwise.

uvloop (libuv underneath) runs aiohttp's transports and callbacks in C; on the webhook path,
where every delivery is a few callbacks and a write, that is the difference between the loop and
the handler costing about the same and the handler costing most. ``EVENT_LOOP=asyncio`` keeps the
standard loop (for debugging with asyncio's tools); ``EVENT_LOOP=uvloop`` makes its absence an
error instead of a silent fallback.
"""

from __future__ import annotations

import asyncio
import importlib
import logging

from app.settings import SettingsError

log = logging.getLogger(__name__)


def new_event_loop(choice: str) -> asyncio.AbstractEventLoop:
    """A new loop of the kind ``choice`` (``auto``, ``uvloop`` or ``asyncio``) names."""
    if choice == "asyncio":
        return asyncio.new_event_loop()
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        if choice == "uvloop":
            raise SettingsError("EVENT_LOOP=uvloop, but uvloop is not installed") from None
        log.info("uvloop is not installed; using asyncio's event loop")
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop

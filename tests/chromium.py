"""Headless Chromium driven over the Chrome DevTools Protocol, with aiohttp only.

Enough of a browser driver for the setup page's end-to-end test: start Debian's ``chromium``
with ``--remote-debugging-port=0``, learn the port from its ``DevTools listening on`` line,
attach to its page target, then navigate, evaluate JavaScript and wait for a condition.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import aiohttp

BINARIES: Final = ("chromium", "chromium-browser", "google-chrome")
_LISTENING: Final = re.compile(rb"DevTools listening on (ws://\S+)")


def chromium_binary() -> str | None:
    for name in BINARIES:
        found = shutil.which(name)
        if found:
            return found
    return None


class CDPError(Exception):
    pass


class Page:
    """One tab: commands are sent in order and answered by id; events are ignored."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)

    async def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        msg_id = next(self._ids)
        await self._ws.send_json({"id": msg_id, "method": method, "params": params or {}})
        async for message in self._ws:
            data = json.loads(message.data)
            if data.get("id") != msg_id:
                continue
            if "error" in data:
                raise CDPError(f"{method}: {data['error']}")
            result: dict[str, Any] = data.get("result", {})
            return result
        raise CDPError("the browser closed the connection")

    async def navigate(self, url: str) -> None:
        await self.send("Page.navigate", {"url": url})

    async def evaluate(self, expression: str) -> Any:
        result = await self.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True}
        )
        if "exceptionDetails" in result:
            raise CDPError(str(result["exceptionDetails"].get("text")))
        return result.get("result", {}).get("value")

    async def wait_for(self, expression: str, *, timeout: float = 60.0) -> Any:
        """Evaluate until truthy; a page still loading (no context yet) is tried again."""
        async with asyncio.timeout(timeout):
            while True:
                with contextlib.suppress(CDPError):
                    value = await self.evaluate(expression)
                    if value:
                        return value
                await asyncio.sleep(0.1)

    async def text(self) -> str:
        return str(await self.evaluate("document.body ? document.body.innerText : ''"))


@contextlib.asynccontextmanager
async def launch(profile: Path) -> AsyncIterator[Page]:
    """A headless Chromium with one page, closed (and its profile left in ``profile``) after."""
    binary = chromium_binary()
    assert binary is not None, "no chromium binary"
    args = [
        binary,
        "--headless=new",
        "--remote-debugging-port=0",
        "--remote-debugging-address=127.0.0.1",
        f"--user-data-dir={profile}",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-extensions",
        "--disable-background-networking",
        # No test reaches beyond loopback, not even the browser's own lookups.
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        "about:blank",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stderr is not None
        endpoint = None
        async with asyncio.timeout(60):
            while endpoint is None:
                line = await proc.stderr.readline()
                if not line:
                    raise CDPError("chromium exited before it listened")
                found = _LISTENING.search(line)
                endpoint = found.group(1).decode() if found else None
        drain = asyncio.create_task(_drain(proc.stderr))
        port = re.search(r":(\d+)/", endpoint)
        assert port is not None
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{port.group(1)}/json/list") as response:
                    targets = await response.json()
                page_ws = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
                async with session.ws_connect(page_ws, max_msg_size=0) as ws:
                    page = Page(ws)
                    await page.send("Page.enable")
                    yield page
        finally:
            drain.cancel()
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                async with asyncio.timeout(20):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass

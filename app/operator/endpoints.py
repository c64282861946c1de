"""Operator endpoints: ``/metrics`` and the health detail, for operators only.

Both name repositories (private ones too) and what each has spent, so neither is public by
default. On the public port (the webhook's, which GitHub must reach):

- ``GET /healthz`` answers only ``{"status": "up"}`` (200) or ``{"status": "down"}`` (503), for
  load balancers and uptime checks;
- ``GET /healthz/detail`` and ``GET /metrics`` need ``Authorization: Bearer <OPERATOR_TOKEN>``:
  401 without it or with another token (compared in constant time), and 404, as for any path
  that does not exist, while no ``OPERATOR_TOKEN`` is set, so that nothing shows by default.

With ``OPERATOR_PORT`` set, a second listener on ``HOST`` serves ``/healthz`` (with the
detail), ``/healthz/detail`` and ``/metrics`` without a token, and no webhook: a port to keep
on a private network, for Prometheus. It starts and stops with the app (``listener``, a
``cleanup_ctx`` entry).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web
from pydantic import SecretStr

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: The token the public port asks for; absent when none is configured.
TOKEN = web.AppKey("operator_token", SecretStr)
#: The operator listener's runner, while it runs (its ``addresses`` say where it listens).
LISTENER = web.AppKey("operator_listener", web.AppRunner)


def bearer_matches(header: str | None, token: SecretStr) -> bool:
    """Whether an ``Authorization`` header carries ``token`` as a bearer token.

    Digests are compared, so that the time taken says nothing of the token, not even its length.
    """
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    expected = hashlib.sha256(token.get_secret_value().encode("utf-8")).digest()
    offered = hashlib.sha256(given.strip().encode("utf-8", "surrogateescape")).digest()
    return hmac.compare_digest(offered, expected)


def operator_only(view: Handler) -> Handler:
    """``view`` behind the operator token (see the module's docstring)."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        token = request.app.get(TOKEN)
        if token is None:
            raise web.HTTPNotFound()
        if not bearer_matches(request.headers.get("Authorization"), token):
            raise web.HTTPUnauthorized(
                headers={"WWW-Authenticate": 'Bearer realm="aigateway operator"'},
                text='{"error": "this endpoint needs Authorization: Bearer <OPERATOR_TOKEN>"}',
                content_type="application/json",
            )
        return await view(request)

    return guarded


def listener(
    routes: Sequence[tuple[str, Handler]],
    *,
    host: str,
    port: int,
    shared: Sequence[web.AppKey[Any]],
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A ``cleanup_ctx`` entry serving ``routes`` (GET) on ``host:port`` while the app runs.

    The views run in an app of their own, which is handed the main app's ``shared`` keys as
    they are when the entry starts: put it after the entries that set them.
    """

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        operator = web.Application()
        for key in shared:
            operator[key] = app[key]
        for path, view in routes:
            operator.router.add_get(path, view)
        runner = web.AppRunner(operator, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except BaseException:
            await runner.cleanup()
            raise
        app[LISTENER] = runner
        try:
            yield
        finally:
            await runner.cleanup()

    return ctx

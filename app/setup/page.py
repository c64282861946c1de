"""The local setup page and the ``setup`` command that serves it.

``GET /`` shows what will be registered and a button; the form posts the manifest to GitHub's
"new App" page with a fresh ``state``. GitHub sends the browser back to ``GET /callback`` with a
one-time ``code`` and that state; the state must be one this page issued and not yet redeemed
(each is good once, for an hour), else nothing is exchanged. Then the code becomes the App's
credentials, written by :mod:`app.setup.envfile`, and the page shows the install link. The
command ends once credentials are written.
"""

from __future__ import annotations

import asyncio
import html
import json
import os
import re
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TextIO

import aiohttp
from aiohttp import web

from app.setup.conversion import AppCredentials, ConversionError, exchange_code
from app.setup.envfile import EnvFileError, Written, conflicts, write_credentials
from app.setup.manifest import build_manifest, create_app_url

STATE_TTL_S: Final = 3600.0  # GitHub's codes last an hour; a page older than that is stale too
_ORG_RE: Final = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$")
_SECURITY_HEADERS: Final = {
    "Cache-Control": "no-store",
    # The callback's address holds the code: no page linked from here may learn it.
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


class SetupError(Exception):
    """A problem with the command's options, reported before any page is served."""


def valid_org(org: str) -> bool:
    return bool(_ORG_RE.match(org))


@dataclass
class StateBook:
    """The states this page issued; each is redeemed at most once, within ``ttl`` seconds."""

    ttl: float = STATE_TTL_S
    clock: Callable[[], float] = time.monotonic
    _issued: dict[str, float] = field(default_factory=dict)

    def issue(self) -> str:
        now = self.clock()
        for old in [s for s, at in self._issued.items() if now - at > self.ttl]:
            del self._issued[old]
        state = secrets.token_urlsafe(32)
        self._issued[state] = now
        return state

    def redeem(self, state: str) -> float | None:
        """When ``state`` was issued, if it is still good; it is good no more after this."""
        issued = self._issued.pop(state, None)
        return issued if issued is not None and self.clock() - issued <= self.ttl else None

    def restore(self, state: str, issued: float) -> None:
        """Make a redeemed state good again (its code could not be tried: GitHub was down)."""
        self._issued[state] = issued


@dataclass
class SetupOptions:
    github_url: str
    api_url: str
    public_url: str
    env_path: Path
    app_yml: dict[str, Any]
    org: str | None = None
    name: str | None = None
    force: bool = False


@dataclass
class SetupOutcome:
    creds: AppCredentials | None = None
    written: Written | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


OPTIONS: Final = web.AppKey("setup_options", SetupOptions)
STATES: Final = web.AppKey("setup_states", StateBook)
OUTCOME: Final = web.AppKey("setup_outcome", SetupOutcome)
SESSION: Final = web.AppKey("setup_session", aiohttp.ClientSession)


# --------------------------------------------------------------------------- pages

_STYLE: Final = (
    "body{font-family:system-ui,sans-serif;max-width:44rem;margin:3rem auto;padding:0 1rem;"
    "line-height:1.5}code{background:#f3f3f3;padding:0 .25rem}"
    "button{font-size:1.1rem;padding:.5rem 1.2rem;cursor:pointer}"
    ".bad{color:#a40000}.ok{color:#146c2e}"
)


def _page(
    title: str, body: str, *, status: int = 200, form_action: str | None = None
) -> web.Response:
    csp = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'"
    csp += f"; form-action 'self' {form_action}" if form_action else "; form-action 'none'"
    text = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)} · aigateway setup</title><style>{_STYLE}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    response = web.Response(text=text, content_type="text/html", status=status)
    response.headers.update(_SECURITY_HEADERS)
    response.headers["Content-Security-Policy"] = csp
    return response


def _again(detail: str) -> str:
    return (
        f"<p class='bad' id='problem'>{html.escape(detail)}</p><p><a href='/'>Start again</a></p>"
    )


async def index(request: web.Request) -> web.Response:
    options = request.app[OPTIONS]
    state = request.app[STATES].issue()
    redirect_url = f"{request.url.origin()}/callback"
    manifest = build_manifest(
        options.app_yml, public_url=options.public_url, redirect_url=redirect_url, name=options.name
    )
    action = create_app_url(options.github_url, state, options.org)
    owner = f"the organization <b>{html.escape(options.org)}</b>" if options.org else "your account"
    events = ", ".join(manifest.get("default_events", [])) or "none"
    permissions = ", ".join(f"{k}: {v}" for k, v in manifest.get("default_permissions", {}).items())
    body = (
        f"<p>This registers a private GitHub App named <b>{html.escape(manifest['name'])}</b> "
        f"for {owner} on <code>{html.escape(options.github_url)}</code> "
        "(GitHub lets you change the name before creating it).</p><ul>"
        f"<li>Webhook: <code>{html.escape(manifest['hook_attributes']['url'])}</code></li>"
        f"<li>Events: {html.escape(events)}</li>"
        f"<li>Permissions: {html.escape(permissions or 'none')}</li>"
        f"<li>Credentials are written to <code>{html.escape(str(options.env_path))}</code> "
        "and a key file beside it, readable by you only.</li></ul>"
        f"<form method='post' action='{html.escape(action)}'>"
        f"<input type='hidden' name='manifest' value='{html.escape(json.dumps(manifest))}'>"
        "<button type='submit' id='create'>Create the GitHub App</button></form>"
    )
    return _page("Register aigateway as a GitHub App", body, form_action=options.github_url)


async def callback(request: web.Request) -> web.Response:
    options, outcome = request.app[OPTIONS], request.app[OUTCOME]
    code, state = request.query.get("code", ""), request.query.get("state", "")
    issued = request.app[STATES].redeem(state) if state else None
    if issued is None:
        return _page(
            "This link is not valid here",
            _again(
                "The state in this address was not issued by this setup page, was already used, "
                "or is more than an hour old, so the code was not exchanged. Nothing was written."
            ),
            status=400,
        )
    if not code:
        return _page(
            "No code", _again("GitHub sent no code back; nothing was written."), status=400
        )
    if not options.force:
        found = conflicts(options.env_path, api_url=options.api_url)
        if found:
            return _page(
                "Settings already exist",
                _again(
                    "Refusing to overwrite " + ", ".join(found) + ". The code was not used: "
                    "start setup again with --force to replace them."
                ),
                status=409,
            )
    try:
        creds = await exchange_code(request.app[SESSION], options.api_url, code)
    except ConversionError as exc:
        if not exc.stale:  # the code is still good: reloading this page tries it again
            request.app[STATES].restore(state, issued)
        return _page(
            "The code cannot be used" if exc.stale else "GitHub did not answer",
            _again(exc.message),
            status=410 if exc.stale else 502,
        )
    try:
        written = write_credentials(
            options.env_path, creds, api_url=options.api_url, force=options.force
        )
    except EnvFileError as exc:
        # The App exists, and GitHub shows its key only once: say where to make a new one.
        return _page(
            "Could not write the settings",
            _again(
                f"{exc}. The App {creds.slug} (id {creds.id}) was created: generate a private "
                f"key and set a webhook secret in its settings ({creds.html_url}), then set "
                "GITHUB_APP_ID, GITHUB_PRIVATE_KEY_PATH and GITHUB_WEBHOOK_SECRET by hand, or "
                "delete the App and run setup again."
            ),
            status=500,
        )
    outcome.creds, outcome.written = creds, written
    outcome.done.set()
    install = html.escape(creds.install_url)
    body = (
        f"<p class='ok' id='created'>GitHub App <b>{html.escape(creds.name)}</b> "
        f"(id {creds.id}) is registered.</p>"
        f"<p>Wrote {html.escape(', '.join(written.names))} to "
        f"<code>{html.escape(str(written.env_path))}</code> and the private key to "
        f"<code>{html.escape(str(written.key_path))}</code> (mode 0600).</p>"
        f"<p><a id='install' href='{install}'>Install the App</a> on the repositories it should "
        "review.</p><p>Then check the setup and start the server:</p>"
        "<pre>python -m app doctor\npython -m app serve</pre>"
    )
    return _page("The App is registered", body)


async def _session_ctx(app: web.Application) -> Any:
    async with aiohttp.ClientSession() as session:
        app[SESSION] = session
        yield


def make_app(
    options: SetupOptions, outcome: SetupOutcome, states: StateBook | None = None
) -> web.Application:
    app = web.Application()
    app[OPTIONS] = options
    app[STATES] = states or StateBook()
    app[OUTCOME] = outcome
    app.cleanup_ctx.append(_session_ctx)
    app.router.add_get("/", index)
    app.router.add_get("/callback", callback)
    return app


# --------------------------------------------------------------------------- the command


def check_options(options: SetupOptions) -> None:
    """Every problem the page would meet later, reported now (the manifest is built once)."""
    if options.org is not None and not valid_org(options.org):
        raise SetupError(f"--org {options.org!r} is not a GitHub organization name")
    build_manifest(
        options.app_yml, public_url=options.public_url, redirect_url="http://x/", name=options.name
    )
    folder = options.env_path.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise SetupError(f"cannot write in {folder} (where the settings and key go)")
    if not options.force:
        found = conflicts(options.env_path, api_url=options.api_url)
        if found:
            raise SetupError(
                "App settings exist already (" + ", ".join(found) + "); "
                "pass --force to register a new App and replace them"
            )


def _report(outcome: SetupOutcome, out: TextIO) -> None:
    creds, written = outcome.creds, outcome.written
    assert creds is not None and written is not None
    print(f"Registered GitHub App {creds.slug} (id {creds.id}).", file=out)
    print(
        f"Wrote {', '.join(written.names)} to {written.env_path} and the private key to "
        f"{written.key_path} (mode 0600).",
        file=out,
    )
    if written.shadowed:
        print(
            "Note: " + ", ".join(written.shadowed) + " set in this environment override .env; "
            "unset them before starting the server.",
            file=out,
        )
    print(f"Install the App: {creds.install_url}", file=out)
    print("Next: python -m app doctor, then python -m app serve", file=out)


async def run_setup(
    options: SetupOptions, *, host: str, port: int, out: TextIO = sys.stdout
) -> int:
    """Serve the page until credentials are written; 0 then."""
    outcome = SetupOutcome()
    runner = web.AppRunner(make_app(options, outcome), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0]
        shown = "127.0.0.1" if host in {"0.0.0.0", ""} else host  # noqa: S104 - only shown
        url = f"http://{'[' + shown + ']' if ':' in shown else shown}:{bound[1]}/"
        print(
            f"Open {url} in a browser to register the GitHub App (Ctrl-C to stop).",
            file=out,
            flush=True,
        )
        await outcome.done.wait()
    finally:
        await runner.cleanup()
    _report(outcome, out)
    out.flush()
    return 0

"""The GitHub App manifest flow, as the fake GitHub serves it.

Two halves, like GitHub's:

- the web form target, ``POST /settings/apps/new`` and ``POST /organizations/{org}/settings/apps/new``
  (outside any API prefix, as on GitHub Enterprise Server): the form's ``manifest`` field is
  validated, and the browser is redirected to its ``redirect_url`` with a one-time ``code`` and
  the ``state`` from the query. (GitHub shows a confirmation page first; the fake confirms at
  once.) A manifest GitHub would refuse gets a 422 page naming the problems;
- the API, ``POST /app-manifests/{code}/conversions`` (no authentication): a code is good once
  and for ``code_ttl_s`` seconds; an unknown, used or expired code is 404, as on GitHub. The
  answer carries a fresh RSA key, and the fake then verifies App JWTs against it, so a
  ``GET /app`` made with the written settings succeeds.

``fake.manifest_flow.registered`` lists the accepted manifests; ``problems`` the refusals.
"""

from __future__ import annotations

import html
import json
import re
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from yarl import URL

if TYPE_CHECKING:
    from .github import Ctx, FakeGitHub

CODE_TTL_S: Final = 3600
NAME_MAX: Final = 34  # GitHub's limit on an App's name
MANIFEST_KEYS: Final = frozenset(
    {
        "name",
        "url",
        "hook_attributes",
        "redirect_url",
        "callback_urls",
        "setup_url",
        "description",
        "public",
        "default_events",
        "default_permissions",
        "request_oauth_on_install",
        "setup_on_update",
    }
)
_LEVELS: Final = frozenset({"read", "write", "admin"})


@dataclass
class Registered:
    owner: str  # a login, or "org:NAME"
    manifest: dict[str, Any]
    state: str | None
    code: str
    issued_at: float


def _http_url(value: Any) -> bool:
    return isinstance(value, str) and bool(re.match(r"^https?://[^/\s]+", value))


def manifest_problems(manifest: Any) -> list[str]:
    """Why GitHub would refuse this manifest (empty when it would not)."""
    if not isinstance(manifest, dict):
        return ["manifest must be a JSON object"]
    problems = [f"unknown key {k!r}" for k in sorted(set(manifest) - MANIFEST_KEYS)]
    if not _http_url(manifest.get("url")):
        problems.append("url is required and must be an http(s) URL")
    hook = manifest.get("hook_attributes")
    if not isinstance(hook, dict) or not _http_url(hook.get("url")):
        problems.append("hook_attributes.url is required and must be an http(s) URL")
    if not _http_url(manifest.get("redirect_url")):
        problems.append("redirect_url must be an http(s) URL (the fake needs one to send the code)")
    name = manifest.get("name")
    if name is not None and (not isinstance(name, str) or not 0 < len(name) <= NAME_MAX):
        problems.append(f"name must be a string of 1 to {NAME_MAX} characters")
    if "public" in manifest and not isinstance(manifest["public"], bool):
        problems.append("public must be a boolean")
    events = manifest.get("default_events", [])
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        problems.append("default_events must be a list of strings")
    permissions = manifest.get("default_permissions", {})
    if not isinstance(permissions, dict) or not all(v in _LEVELS for v in permissions.values()):
        problems.append("default_permissions values must be read, write or admin")
    return problems


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "app"


def _page(title: str, body: str, status: int) -> web.Response:
    text = f"<!DOCTYPE html><title>{html.escape(title)}</title><h1>{html.escape(title)}</h1>{body}"
    return web.Response(text=text, content_type="text/html", status=status)


class ManifestFlow:
    def __init__(self, fake: FakeGitHub) -> None:
        self.fake = fake
        self.code_ttl_s: float = CODE_TTL_S
        self.registered: list[Registered] = []
        self.problems: list[list[str]] = []
        self.conversions: list[str] = []  # every code presented, good or not
        self.issued: list[dict[str, Any]] = []  # the answers to good codes, secrets included
        self._codes: dict[str, Registered] = {}

    def add_web_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/settings/apps/new", self._new_app)
        router.add_post("/organizations/{org}/settings/apps/new", self._new_app)
        router.add_get("/apps/{slug}/installations/new", self._install_page)

    def issue_code(
        self, manifest: dict[str, Any], *, owner: str = "octo", state: str | None = None
    ) -> str:
        """A code as GitHub's redirect would carry (for tests that skip the browser)."""
        code = secrets.token_hex(10)
        entry = Registered(owner, manifest, state, code, self.fake.now())
        self.registered.append(entry)
        self._codes[code] = entry
        return code

    async def _new_app(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        raw = form.get("manifest")
        try:
            manifest = json.loads(raw) if isinstance(raw, str) else None
        except ValueError:
            manifest = None
        problems = (
            manifest_problems(manifest)
            if manifest is not None
            else ["the form has no manifest field holding JSON"]
        )
        if problems or not isinstance(manifest, dict):
            self.problems.append(problems)
            items = "".join(f"<li>{html.escape(p)}</li>" for p in problems)
            return _page("Invalid GitHub App manifest", f"<ul id='problems'>{items}</ul>", 422)
        org = request.match_info.get("org")
        state = request.query.get("state")
        code = self.issue_code(manifest, owner=f"org:{org}" if org else "octo", state=state)
        query = {"code": code, **({"state": state} if state is not None else {})}
        target = URL(manifest["redirect_url"]).update_query(query)
        raise web.HTTPFound(str(target))

    async def _install_page(self, request: web.Request) -> web.StreamResponse:
        slug = html.escape(request.match_info["slug"])
        return _page(f"Install {slug}", "<p id='install-page'>Choose repositories.</p>", 200)

    async def convert(self, ctx: Ctx) -> web.StreamResponse:
        from .github import GitHubError, not_found, user_json

        code = ctx.params["code"]
        self.conversions.append(code)
        entry = self._codes.pop(code, None)  # single use, whatever happens next
        if entry is None or self.fake.now() - entry.issued_at > self.code_ttl_s:
            raise not_found()
        if ctx.body not in (None, {}) and not isinstance(ctx.body, dict):
            raise GitHubError(400, "Problems parsing JSON")
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ).decode()
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        manifest = entry.manifest
        app_id = self.fake._next_id()
        name = str(manifest.get("name") or f"app-{app_id}")
        slug = _slug(name)
        self.fake.set_app_key(public, app_id)
        self.fake.app_slug, self.fake.app_name = slug, name
        self.fake.bot_login = f"{slug}[bot]"
        web_base = f"{ctx.request.scheme}://{ctx.request.host}"
        owner_login = entry.owner.removeprefix("org:")
        owner = user_json(owner_login, ctx.api_base)
        if entry.owner.startswith("org:"):
            owner["type"] = "Organization"
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.fake.now()))
        body = {
            "id": app_id,
            "slug": slug,
            "node_id": f"A_{app_id}",
            "owner": owner,
            "name": name,
            "description": manifest.get("description", ""),
            "external_url": manifest.get("url"),
            "html_url": f"{web_base}/apps/{slug}",
            "created_at": now,
            "updated_at": now,
            "permissions": {"metadata": "read", **manifest.get("default_permissions", {})},
            "events": list(manifest.get("default_events", [])),
            "client_id": f"Iv1.{secrets.token_hex(8)}",
            "client_secret": secrets.token_hex(20),
            "webhook_secret": secrets.token_hex(20),
            "pem": pem,
        }
        self.issued.append(body)
        return web.json_response(body, status=201)

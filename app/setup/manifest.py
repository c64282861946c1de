"""The App manifest, built from ``app.yml``, and the GitHub URLs the manifest flow uses.

Pure functions: what the manifest says is decided here from the file and the command's options,
so the page and the tests share one definition of it.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, urlencode, urlsplit

import yaml

GITHUB_COM: Final = "https://github.com"
GITHUB_COM_API: Final = "https://api.github.com"
WEBHOOK_PATH: Final = "/webhook"
# What the manifest may carry, as GitHub documents it; anything else in app.yml stays out.
MANIFEST_KEYS: Final = (
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
)


class ManifestError(ValueError):
    """``app.yml`` or an option cannot make a manifest GitHub would accept."""


def default_app_yml() -> Path:
    """``./app.yml`` when there is one (an operator's edited copy), else the project's own."""
    here = Path("app.yml")
    if here.is_file():
        return here
    return Path(__file__).resolve().parents[2] / "app.yml"


def load_app_yml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ManifestError(f"cannot read {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ManifestError(f"{path} does not hold a mapping (a Probot-style app.yml)")
    return data


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_base_url(name: str, url: str, *, allow_http_loopback: bool = True) -> str:
    """An absolute http(s) base without query; plain http only to this machine.

    The conversion answer carries the App's private key: it never travels unencrypted off
    loopback (a local fake GitHub in tests is the one plain-http case).
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ManifestError(f"{name} must be an absolute http(s) URL, got {url!r}")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ManifestError(f"{name} must not carry a query, a fragment or credentials")
    if parts.scheme == "http" and not (allow_http_loopback and _is_loopback(parts.hostname)):
        raise ManifestError(f"{name} must use https (plain http is accepted on loopback only)")
    return url.strip().rstrip("/")


def api_url_for(github_url: str, override: str | None = None) -> str:
    """The REST base for a GitHub web base: api.github.com, or ``{host}/api/v3`` (GHES)."""
    if override:
        return check_base_url("GITHUB_API_URL", override)
    base = check_base_url("--github-url", github_url)
    if urlsplit(base).hostname in {"github.com", "www.github.com"}:
        return GITHUB_COM_API
    return base + "/api/v3"


def public_webhook_url(public_url: str) -> str:
    """PUBLIC_URL + ``/webhook``; GitHub needs a reachable https address for deliveries."""
    return check_base_url("--url", public_url) + WEBHOOK_PATH


def build_manifest(
    app_yml: dict[str, Any],
    *,
    public_url: str,
    redirect_url: str,
    name: str | None = None,
) -> dict[str, Any]:
    """The manifest: ``app.yml`` with the webhook, the redirect and ``public: false`` set here."""
    manifest: dict[str, Any] = {k: app_yml[k] for k in MANIFEST_KEYS if k in app_yml}
    hook = dict(app_yml.get("hook_attributes") or {})
    hook["url"] = public_webhook_url(public_url)
    manifest["hook_attributes"] = hook
    manifest["redirect_url"] = redirect_url
    manifest["public"] = False
    if name:
        manifest["name"] = name
    if not isinstance(manifest.get("name"), str) or not manifest["name"].strip():
        raise ManifestError("app.yml has no name (or pass --name)")
    if not isinstance(manifest.get("url"), str) or not manifest["url"].strip():
        raise ManifestError("app.yml has no url (the App's homepage, required by GitHub)")
    events = manifest.get("default_events", [])
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        raise ManifestError("app.yml default_events must be a list of event names")
    permissions = manifest.get("default_permissions", {})
    if not isinstance(permissions, dict) or not all(
        isinstance(v, str) and v in {"read", "write", "admin"} for v in permissions.values()
    ):
        raise ManifestError("app.yml default_permissions must map names to read, write or admin")
    return manifest


def create_app_url(github_url: str, state: str, org: str | None = None) -> str:
    """Where the form posts: the user's or the organization's "new App" page, with the state."""
    base = check_base_url("--github-url", github_url)
    owner = f"/organizations/{quote(org, safe='')}" if org else ""
    return f"{base}{owner}/settings/apps/new?{urlencode({'state': state})}"

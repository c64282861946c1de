"""Where each provider's requests go, and which credentials each request may carry.

Endpoint resolution, per provider, first match wins:

1. ``ANTHROPIC_BASE_URL`` / ``OPENAI_BASE_URL``: a direct or proxy endpoint, used as the SDK's
   base URL as given. The provider key is optional (a proxy may hold it).
2. The gateway (``AIG_GATEWAY_URL``, or ``CF_ACCOUNT_ID`` + ``CF_AIG_GATEWAY_ID``): Anthropic
   ``{gateway}/anthropic`` (the SDK appends ``/v1/messages``), OpenAI ``{gateway}/openai`` (the SDK
   appends ``/chat/completions``). The key is optional (the gateway may store it: BYOK).
3. The provider's public API, which needs the provider key; without one this is a configuration
   error that names what to set.

Credentials are attached at the transport, not trusted to configuration: every request passes
through :class:`CredentialGuard` (an httpx request hook, so it runs for every redirect hop too),
which sends ``cf-aig-authorization`` only when :func:`should_send_gateway_token` says the request
URL lies under the gateway, strips it otherwise, strips the provider key headers from any request
that is not under the provider's configured endpoint, and strips any header carrying the BYOK
placeholder (see :data:`BYOK_PLACEHOLDER`). TLS verification is left at its default (on).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import SplitResult, urlsplit

import httpx2
from pydantic import SecretStr

from app.settings import Settings

logger = logging.getLogger(__name__)

Provider = Literal["anthropic", "openai"]
Route = Literal["gateway", "base_url", "direct"]

GATEWAY_TOKEN_HEADER: Final = "cf-aig-authorization"  # noqa: S105 - a header name
PROVIDER_KEY_HEADERS: Final = ("authorization", "x-api-key", "api-key")

BYOK_PLACEHOLDER: Final = "aigateway-no-provider-key-configured"
"""Given to an SDK as its API key when no key is configured (the gateway holds it: BYOK).

Both SDKs refuse to build a client without a credential, and the Anthropic SDK would otherwise go
looking for one in the environment and in profile files. The placeholder satisfies them; the
adapters omit the SDK's auth header on every call, and :class:`CredentialGuard` deletes any header
whose value still contains it, so it never leaves the process.
"""

ANTHROPIC_PUBLIC_BASE: Final = "https://api.anthropic.com"
OPENAI_PUBLIC_BASE: Final = "https://api.openai.com/v1"

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_FORBIDDEN_URL_CHARS: Final = frozenset("\\ \t\r\n\x00")


def display_url(url: str) -> str:
    """``url`` fit for a log line or an error message: no user, password, query or fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is not None:
        host = f"{host}:{port}"
    return SplitResult(parts.scheme, host, parts.path, "", "").geturl()


class GatewayConfigError(ValueError):
    """The gateway or provider settings cannot work; the message names what to set."""


@dataclass(frozen=True, slots=True)
class ProviderEndpoint:
    """Where one provider's SDK points, and with which key."""

    provider: Provider
    base_url: str
    route: Route
    api_key: SecretStr | None

    @property
    def via_gateway(self) -> bool:
        return self.route == "gateway"

    @property
    def request_url(self) -> str:
        """The URL the SDK posts to for a review call."""
        suffix = "/v1/messages" if self.provider == "anthropic" else "/chat/completions"
        return self.base_url.rstrip("/") + suffix


# --------------------------------------------------------------------------- the guard


def _effective_port(parts: SplitResult) -> int | None:
    try:
        port = parts.port
    except ValueError:
        return None
    return port if port is not None else _DEFAULT_PORTS.get(parts.scheme)


def _path_segments(path: str) -> list[str] | None:
    """Path segments for a prefix test, or None for a path that must never match.

    Dot segments are refused rather than resolved: a client or server that resolves them
    differently could otherwise walk out of the gateway's path.
    """
    segments = path.split("/")[1:] if path.startswith("/") else ([path] if path else [])
    if any(
        segment in {".", ".."} or segment.lower() in {"%2e", "%2e%2e", ".%2e", "%2e."}
        for segment in segments
    ):
        return None
    return segments


def url_is_under(request_url: str, base_url: str | None) -> bool:
    """True when ``request_url`` has the scheme, host and port of ``base_url`` and a path under it.

    Parsed, never a substring test: ``https://gateway.ai.cloudflare.com.evil.example/...``, a
    different port or scheme, ``/v1/acc/gw2`` against ``/v1/acc/gw``, any userinfo in the request
    URL, and dot segments all give False. Host comparison is case-insensitive and a default port
    given explicitly equals the implicit one.
    """
    if not base_url or not request_url:
        return False
    if any(char in _FORBIDDEN_URL_CHARS for char in request_url):
        return False
    try:
        request = urlsplit(request_url)
        base = urlsplit(base_url)
    except ValueError:
        return False
    if request.scheme not in _DEFAULT_PORTS or request.scheme != base.scheme:
        return False
    if request.username is not None or request.password is not None or "@" in request.netloc:
        return False
    if not request.hostname or request.hostname != base.hostname:
        return False
    request_port, base_port = _effective_port(request), _effective_port(base)
    if request_port is None or request_port != base_port:
        return False
    base_segments = _path_segments(base.path.rstrip("/"))
    request_segments = _path_segments(request.path)
    if base_segments is None or request_segments is None:
        return False
    return request_segments[: len(base_segments)] == base_segments


def should_send_gateway_token(request_url: str, gateway_url: str | None) -> bool:
    """May a request to ``request_url`` carry the gateway token for the gateway at ``gateway_url``?"""
    return url_is_under(request_url, gateway_url)


class CredentialGuard:
    """An httpx request hook that decides, per request and per redirect hop, which secrets go out.

    - ``cf-aig-authorization: Bearer <token>`` is set when the URL is under ``gateway_url`` and
      removed otherwise (whoever put it there).
    - Provider key headers (``Authorization``, ``x-api-key``, ``api-key``) are removed from any
      request that is not under ``endpoint_url``, the provider's configured base.
    - Any header whose value contains :data:`BYOK_PLACEHOLDER` is removed.
    """

    def __init__(
        self, *, gateway_url: str | None, gateway_token: SecretStr | None, endpoint_url: str
    ) -> None:
        self._gateway_url = gateway_url
        self._gateway_token = gateway_token
        self._endpoint_url = endpoint_url

    async def __call__(self, request: httpx2.Request) -> None:
        self.apply(request)

    def apply(self, request: httpx2.Request) -> None:
        headers = request.headers
        url = str(request.url)
        for name in [name for name, value in headers.items() if BYOK_PLACEHOLDER in value]:
            del headers[name]
        if GATEWAY_TOKEN_HEADER in headers:
            del headers[GATEWAY_TOKEN_HEADER]
        token = self._gateway_token.get_secret_value() if self._gateway_token else ""
        if token and should_send_gateway_token(url, self._gateway_url):
            headers[GATEWAY_TOKEN_HEADER] = f"Bearer {token}"
        if not url_is_under(url, self._endpoint_url):
            for name in PROVIDER_KEY_HEADERS:
                if name in headers:
                    del headers[name]


def make_http_client(
    *,
    gateway_url: str | None,
    gateway_token: SecretStr | None,
    endpoint_url: str,
    timeout: float,
    follow_redirects: bool = False,
    max_connections: int = 100,
    client_class: type[httpx2.AsyncClient] = httpx2.AsyncClient,
) -> httpx2.AsyncClient:
    """One provider's HTTP client, with :class:`CredentialGuard` on every request.

    Redirects are not followed by default (the provider APIs do not redirect, and a redirect is
    more likely a misconfiguration than a feature); the guard would strip credentials on a
    cross-origin hop anyway. TLS verification stays at httpx's default, which is on.
    ``client_class`` is an ``httpx2.AsyncClient`` or a subclass taking the same arguments, such
    as a provider SDK's ``DefaultAioHttpClient`` (httpx on an aiohttp transport).
    """
    guard = CredentialGuard(
        gateway_url=gateway_url, gateway_token=gateway_token, endpoint_url=endpoint_url
    )
    return client_class(
        timeout=httpx2.Timeout(timeout, connect=min(timeout, 10.0)),
        limits=httpx2.Limits(
            max_connections=max_connections,
            max_keepalive_connections=min(max_connections, 32),
        ),
        follow_redirects=follow_redirects,
        event_hooks={"request": [guard]},
    )


# --------------------------------------------------------------------------- endpoints


def _secret(value: SecretStr | None) -> SecretStr | None:
    return value if value is not None and value.get_secret_value().strip() else None


def _check_base(name: str, url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise GatewayConfigError(f"{name} must be an absolute http(s) URL")
    if parts.query or parts.fragment:
        raise GatewayConfigError(f"{name} must not contain a query or fragment")
    return url.rstrip("/")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_warned: set[str] = set()


def gateway_base(settings: Settings) -> str | None:
    """The validated gateway base URL, or None when no gateway is configured."""
    url = settings.gateway_url
    if not url:
        return None
    base = _check_base("AIG_GATEWAY_URL (or the gateway built from CF_ACCOUNT_ID)", url)
    parts = urlsplit(base)
    if parts.username is not None or parts.password is not None:
        raise GatewayConfigError("AIG_GATEWAY_URL must not contain a user or password")
    if parts.scheme == "http" and not _is_loopback(parts.hostname or ""):
        if not settings.aig_allow_insecure_gateway:
            raise GatewayConfigError(
                "the gateway URL uses plain http on a non-loopback host, so the gateway token and "
                "every diff would travel unencrypted; use https, or set "
                "AIG_ALLOW_INSECURE_GATEWAY=true if the network path is protected otherwise"
            )
        if base not in _warned:
            _warned.add(base)
            logger.warning(
                "the gateway URL uses plain http on a non-loopback host "
                "(AIG_ALLOW_INSECURE_GATEWAY): the gateway token travels unencrypted"
            )
    return base


def _endpoint(
    settings: Settings,
    provider: Provider,
    *,
    base_url: str | None,
    api_key: SecretStr | None,
    gateway_suffix: str,
    public_base: str,
    base_var: str,
    key_var: str,
) -> ProviderEndpoint:
    key = _secret(api_key)
    if base_url and base_url.strip():
        return ProviderEndpoint(provider, _check_base(base_var, base_url.strip()), "base_url", key)
    gateway = gateway_base(settings)
    if gateway is not None:
        return ProviderEndpoint(provider, gateway + gateway_suffix, "gateway", key)
    if key is not None:
        return ProviderEndpoint(provider, public_base, "direct", key)
    raise GatewayConfigError(
        f"{provider}: no endpoint configured. Set AIG_GATEWAY_URL (or CF_ACCOUNT_ID and "
        f"CF_AIG_GATEWAY_ID) to go through the gateway, {base_var} for a direct or proxy "
        f"endpoint, or {key_var} to call {public_base} directly"
    )


def anthropic_endpoint(settings: Settings) -> ProviderEndpoint:
    return _endpoint(
        settings,
        "anthropic",
        base_url=settings.anthropic_base_url,
        api_key=settings.anthropic_api_key,
        gateway_suffix="/anthropic",
        public_base=ANTHROPIC_PUBLIC_BASE,
        base_var="ANTHROPIC_BASE_URL",
        key_var="ANTHROPIC_API_KEY",
    )


def openai_endpoint(settings: Settings) -> ProviderEndpoint:
    return _endpoint(
        settings,
        "openai",
        base_url=settings.openai_base_url,
        api_key=settings.openai_api_key,
        gateway_suffix="/openai",
        public_base=OPENAI_PUBLIC_BASE,
        base_var="OPENAI_BASE_URL",
        key_var="OPENAI_API_KEY",
    )


def resolve_endpoints(settings: Settings) -> tuple[ProviderEndpoint, ProviderEndpoint]:
    """Both providers' endpoints; every problem is reported in one :class:`GatewayConfigError`."""
    results: list[ProviderEndpoint] = []
    problems: list[str] = []
    for resolve in (anthropic_endpoint, openai_endpoint):
        try:
            results.append(resolve(settings))
        except GatewayConfigError as exc:
            problems.append(str(exc))
    if problems:
        raise GatewayConfigError("; ".join(problems))
    return results[0], results[1]


def secret_values(settings: Settings) -> Sequence[str]:
    """The secrets this package could send, for redacting error details."""
    values = []
    for secret in (settings.gateway_token, settings.anthropic_api_key, settings.openai_api_key):
        if secret is not None and secret.get_secret_value():
            values.append(secret.get_secret_value())
    return values

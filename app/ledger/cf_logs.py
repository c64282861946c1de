"""The Cloudflare API's AI Gateway logs: list a time range of logs, and patch one with feedback.

``GET  {CF_API_BASE_URL}/accounts/{account}/ai-gateway/gateways/{gateway}/logs`` pages by
``page``/``per_page`` (filtered by ``start_date``/``end_date``, oldest first), and
``PATCH .../logs/{id}`` sets ``feedback``, ``score`` and ``metadata`` (AI Gateway Edit).

**The API token only reaches the API.** ``Authorization`` is set by a request hook, per request,
only when the URL has the scheme, host and port of ``CF_API_BASE_URL`` and a path under it
(:func:`app.gateway.urls.url_is_under`, the check the gateway token goes through), and removed
otherwise. Page URLs are built here from the base, never taken from an answer, and redirects
are not followed: a 3xx is an error.

**Retries, bounded.** A 429 is tried again after its ``retry-after`` (when that is longer than
``max_retry_after`` the run gives up: Cloudflare blocks for five minutes, and the next run comes
anyway), a 5xx or a connection failure after an exponential backoff; at most ``max_retries``
times per request.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final
from urllib.parse import quote, urlsplit

import httpx2
from pydantic import SecretStr

from app.gateway.clients import METADATA_APP, METADATA_APP_KEY
from app.gateway.urls import url_is_under
from app.settings import Settings

__all__ = [
    "ApiTokenGuard",
    "CloudflareApiError",
    "GatewayLog",
    "GatewayLogsClient",
    "LogsTarget",
    "NoPermission",
    "parse_log",
    "resolve_target",
]

logger = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
MetadataValue = str | int | float | bool

#: The host of Cloudflare gateway URLs, whose path is ``/v1/{account_id}/{gateway_id}``.
GATEWAY_HOST: Final = "gateway.ai.cloudflare.com"
DEFAULT_PER_PAGE: Final = 50
MAX_PAGES: Final = 2000


class CloudflareApiError(Exception):
    """The logs API failed (after retries); the message says how, without any secret."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class NoPermission(CloudflareApiError):
    """403: the token lacks the permission (AI Gateway Edit, for a patch)."""


@dataclass(frozen=True, slots=True)
class LogsTarget:
    account_id: str
    gateway_id: str


def insecure_base(base_url: str) -> str | None:
    """Why ``CF_API_BASE_URL`` must not get the token, or None: plain http is accepted on
    loopback only (a local fake), since the token would otherwise travel in clear."""
    parts = urlsplit(base_url)
    if parts.scheme == "https":
        return None
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if parts.scheme == "http" and loopback:
        return None
    return "CF_API_BASE_URL must be https (plain http only on loopback): the API token would travel in clear"


def resolve_target(settings: Settings) -> LogsTarget | str:
    """The account and gateway whose logs to read, or why reconciliation cannot know them.

    ``CF_ACCOUNT_ID`` and ``CF_AIG_GATEWAY_ID`` when both are set; else parsed from an
    ``AIG_GATEWAY_URL`` on ``gateway.ai.cloudflare.com`` (``/v1/{account}/{gateway}``).
    """
    if settings.cf_account_id and settings.cf_aig_gateway_id:
        return LogsTarget(settings.cf_account_id, settings.cf_aig_gateway_id)
    url = settings.aig_gateway_url
    if url:
        parts = urlsplit(url)
        segments = [s for s in parts.path.split("/") if s]
        on_host = (parts.hostname or "").lower() == GATEWAY_HOST
        if on_host and len(segments) >= 3 and segments[0] == "v1":
            return LogsTarget(segments[1], segments[2])
        return (
            f"AIG_GATEWAY_URL is not a {GATEWAY_HOST}/v1/ACCOUNT/GATEWAY URL; "
            "set CF_ACCOUNT_ID and CF_AIG_GATEWAY_ID to reconcile with its logs"
        )
    return "no gateway is configured (CF_ACCOUNT_ID and CF_AIG_GATEWAY_ID, or AIG_GATEWAY_URL)"


@dataclass(frozen=True, slots=True)
class GatewayLog:
    """One log entry, as far as reconciliation needs it."""

    id: str
    created_at: datetime
    provider: str
    model: str
    tokens_in: int | None
    tokens_out: int | None
    cost: float | None
    cached: bool
    success: bool
    metadata: Mapping[str, MetadataValue] = field(default_factory=dict)

    @property
    def is_ours(self) -> bool:
        """Whether the call carried the bot's metadata (``app: aigateway``)."""
        return self.metadata.get(METADATA_APP_KEY) == METADATA_APP


def parse_log(item: Any) -> GatewayLog:
    """A log entry from the API's JSON; :class:`CloudflareApiError` when it is not one."""
    if not isinstance(item, Mapping) or not isinstance(item.get("id"), str) or not item["id"]:
        raise CloudflareApiError("a log entry without an id")
    try:
        created = datetime.fromisoformat(str(item.get("created_at")).replace("Z", "+00:00"))
    except ValueError:
        raise CloudflareApiError(f"log {item['id']}: created_at is not a date") from None
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    cost = item.get("cost")
    return GatewayLog(
        id=item["id"],
        created_at=created.astimezone(UTC),
        provider=str(item.get("provider") or ""),
        model=str(item.get("model") or ""),
        tokens_in=_int(item.get("tokens_in")),
        tokens_out=_int(item.get("tokens_out")),
        cost=float(cost) if isinstance(cost, int | float) and not isinstance(cost, bool) else None,
        cached=item.get("cached") is True,
        success=item.get("success") is not False,
        metadata=_metadata(item.get("metadata")),
    )


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _metadata(value: Any) -> dict[str, MetadataValue]:
    """The log's ``metadata``: a JSON string in the API (an object tolerated); junk is empty."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    if not isinstance(value, Mapping):
        return {}
    return {str(k): v for k, v in value.items() if isinstance(v, str | int | float | bool)}


class ApiTokenGuard:
    """Sets ``Authorization`` on requests under the API base, and strips it from any other."""

    def __init__(self, base_url: str, token: SecretStr) -> None:
        self._base_url = base_url
        self._token = token

    async def __call__(self, request: httpx2.Request) -> None:
        self.apply(request)

    def apply(self, request: httpx2.Request) -> None:
        if "authorization" in request.headers:
            del request.headers["authorization"]
        if url_is_under(str(request.url), self._base_url):
            request.headers["authorization"] = f"Bearer {self._token.get_secret_value()}"


class GatewayLogsClient:
    """The logs of one gateway, through the Cloudflare API."""

    def __init__(
        self,
        *,
        base_url: str,
        token: SecretStr,
        target: LogsTarget,
        sleep: Sleep = asyncio.sleep,
        max_retries: int = 4,
        max_retry_after: float = 120.0,
        backoff_base: float = 1.0,
        timeout: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._logs_url = (
            f"{self.base_url}/accounts/{quote(target.account_id, safe='')}"
            f"/ai-gateway/gateways/{quote(target.gateway_id, safe='')}/logs"
        )
        self._sleep = sleep
        self._max_retries = max_retries
        self._max_retry_after = max_retry_after
        self._backoff_base = backoff_base
        self._http = httpx2.AsyncClient(
            timeout=httpx2.Timeout(timeout, connect=min(timeout, 10.0)),
            follow_redirects=False,
            event_hooks={"request": [ApiTokenGuard(self.base_url, token)]},
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def list_logs(
        self,
        *,
        since: datetime,
        until: datetime,
        per_page: int = DEFAULT_PER_PAGE,
        max_pages: int = MAX_PAGES,
    ) -> list[GatewayLog]:
        """Every log created in ``[since, until]``, oldest first, page after page."""
        logs: list[GatewayLog] = []
        for page in range(1, max_pages + 1):
            params = {
                "start_date": _iso(since),
                "end_date": _iso(until),
                "order_by": "created_at",
                "order_by_direction": "asc",
                "page": str(page),
                "per_page": str(per_page),
            }
            body = await self._request("GET", self._logs_url, params=params)
            result = body.get("result")
            if not isinstance(result, list):
                raise CloudflareApiError("the logs answer has no result list")
            logs += [parse_log(item) for item in result]
            # The API's own page size counts (its maximum is not documented: it may give fewer
            # than asked), and its total when it gives one.
            info = body.get("result_info")
            info = info if isinstance(info, Mapping) else {}
            size, total = info.get("per_page"), info.get("total_count")
            size = size if isinstance(size, int) and size > 0 else per_page
            if not result:
                return logs
            if isinstance(total, int) and not isinstance(total, bool):
                if page * size >= total:
                    return logs
            elif len(result) < size:
                return logs
        raise CloudflareApiError(f"more than {max_pages} pages of logs; narrow the time range")

    async def patch_log(
        self,
        log_id: str,
        *,
        feedback: int,
        score: float,
        metadata: Mapping[str, MetadataValue],
    ) -> bool:
        """Set a log's feedback, score and metadata; False when the log is unknown (404).

        :class:`NoPermission` on 403 (the token has no AI Gateway Edit).
        """
        url = f"{self._logs_url}/{quote(log_id, safe='')}"
        body = {"feedback": feedback, "score": score, "metadata": dict(metadata)}
        try:
            await self._request("PATCH", url, json_body=body)
        except CloudflareApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def _request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
    ) -> dict[str, Any]:
        retry = 0
        while True:
            try:
                response = await self._http.request(method, url, params=params, json=json_body)
            except httpx2.TransportError as exc:
                if retry >= self._max_retries:
                    raise CloudflareApiError(
                        f"the Cloudflare API could not be reached: {type(exc).__name__}"
                    ) from None
                await self._sleep(self._backoff(retry))
                retry += 1
                continue
            status = response.status_code
            if status == 429 or status >= 500:
                wait = self._wait(response, retry)
                if wait is not None:
                    logger.info(
                        "the Cloudflare API answered %d; trying again in %.1f s", status, wait
                    )
                    await self._sleep(wait)
                    retry += 1
                    continue
            if 200 <= status < 300:
                try:
                    body = response.json()
                except ValueError:
                    raise CloudflareApiError(
                        "the Cloudflare API answered with no JSON", status
                    ) from None
                return body if isinstance(body, dict) else {}
            message = f"the Cloudflare API answered {status}: {_errors(response)}"
            if status == 403:
                raise NoPermission(message, status)
            raise CloudflareApiError(message, status)

    def _backoff(self, retry: int) -> float:
        return float(min(30.0, self._backoff_base * (2**retry)))

    def _wait(self, response: httpx2.Response, retry: int) -> float | None:
        """How long to wait before trying again, or None to give up."""
        if retry >= self._max_retries:
            return None
        asked = _retry_after(response.headers.get("retry-after"), time.time())
        if asked is None:
            return self._backoff(retry)
        return asked if asked <= self._max_retry_after else None


def _retry_after(value: str | None, now: float) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError):
        return None


def _errors(response: httpx2.Response) -> str:
    """The envelope's error messages (``errors: [{code, message}]``), else the reason."""
    if 300 <= response.status_code < 400:
        return "a redirect, not followed"
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase or "no detail"
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, list) and errors:
        return "; ".join(
            str(e.get("message", e))[:200] if isinstance(e, dict) else str(e)[:200]
            for e in errors[:3]
        )
    return response.reason_phrase or "no detail"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

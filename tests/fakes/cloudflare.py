"""A fake Cloudflare API for AI Gateway logs: a real aiohttp server, reached through CF_API_BASE_URL.

Routes (under ``/client/v4``, as the real base ``https://api.cloudflare.com/client/v4``)::

    GET   /accounts/{account}/ai-gateway/gateways/{gateway}/logs        list logs
    PATCH /accounts/{account}/ai-gateway/gateways/{gateway}/logs/{id}   feedback, score, metadata

The list pages by ``page``/``per_page`` (default 20, at most 50), filters ``created_at`` by
``start_date``/``end_date`` (ISO 8601, inclusive), orders by ``order_by`` (``created_at``) and
``order_by_direction`` (``desc`` unless ``asc``), and answers the API's envelope
(``success``, ``errors``, ``messages``, ``result``, ``result_info`` with ``page``, ``per_page``,
``count``, ``total_count``). Log entries have the API's fields, ``metadata`` a JSON *string*.
Without ``Authorization: Bearer <token>`` the answer is 401; an unknown account or gateway 404;
a patch with ``writable`` False 403 (a token without AI Gateway Edit); an unknown log 404.

``push(Fault(...))`` queues answers used one per request before the normal one (429 with
``retry-after``, 5xx, a redirect elsewhere); ``patch_faults`` only answer patches. Every request
is recorded in ``requests``.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from aiohttp import web
from aiohttp.test_utils import BaseTestServer

from tests.fakes.gateway import FakeGateway, RecordedRequest

PREFIX: Final = "/client/v4"
DEFAULT_PER_PAGE: Final = 20
MAX_PER_PAGE: Final = 50


@dataclass(frozen=True)
class Fault:
    status: int
    retry_after: str | None = None
    location: str | None = None


@dataclass(frozen=True)
class CfRequest:
    method: str
    path: str
    query: dict[str, str]
    authorization: str | None
    body: Any


@dataclass
class FakeCloudflare:
    account_id: str = "fake-account"
    gateway_id: str = "fake-gateway"
    token: str = "cf-api-token-0123456789"
    writable: bool = True
    logs: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[CfRequest] = field(default_factory=list)
    patches: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    faults: deque[Fault] = field(default_factory=deque)
    patch_faults: deque[Fault] = field(default_factory=deque)  # used by PATCH requests first
    origin: str | None = None
    hold: asyncio.Event | None = None  # when set to an event, log listings wait for it

    # -- addresses

    @property
    def base_url(self) -> str:
        """What ``CF_API_BASE_URL`` takes."""
        assert self.origin is not None, "bind() the fake first"
        return self.origin + PREFIX

    def bind(self, server: BaseTestServer) -> FakeCloudflare:
        self.origin = str(server.make_url("")).rstrip("/")
        return self

    def make_app(self) -> web.Application:
        app = web.Application()
        base = f"{PREFIX}/accounts/{{account}}/ai-gateway/gateways/{{gateway}}/logs"
        app.router.add_get(base, self._list)
        app.router.add_patch(base + "/{log_id}", self._patch)
        app.router.add_route("*", "/{tail:.*}", self._unknown)
        return app

    # -- scripting

    def push(self, *faults: Fault) -> None:
        self.faults.extend(faults)

    def add_log(
        self,
        log_id: str,
        *,
        created_at: datetime,
        provider: str = "anthropic",
        model: str = "claude-sonnet-4-6",
        tokens_in: int | None = 100,
        tokens_out: int | None = 50,
        cost: float | None = 0.001,
        cached: bool = False,
        success: bool = True,
        metadata: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "id": log_id,
            "created_at": created_at.astimezone(UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "provider": provider,
            "model": model,
            "model_type": "text",
            "path": f"{provider}/v1/messages"
            if provider == "anthropic"
            else "openai/chat/completions",
            "request_type": "universal",
            "request_content_type": "application/json",
            "response_content_type": "application/json",
            "success": success,
            "cached": cached,
            "duration": 420,
            "status_code": 200 if success else 500,
            "step": 0,
            "tokens_in": tokens_in,
            "tokens_out": tokens_out,
            "custom_cost": False,
        }
        if cost is not None:
            entry["cost"] = cost
        if metadata is not None:
            entry["metadata"] = json.dumps(metadata)
        self.logs[log_id] = entry
        return entry

    def log_gateway_calls(
        self,
        gateway: FakeGateway,
        *,
        created_at: datetime,
        cost: Callable[[RecordedRequest], float | None] = lambda _: 0.001,
        skip: Callable[[str, RecordedRequest], bool] = lambda *_: False,
    ) -> list[str]:
        """Log every request the fake gateway answered, as Cloudflare would; returns the ids."""
        ids = []
        for log_id, request in gateway.logged:
            if log_id in self.logs or skip(log_id, request):
                continue
            provider = request.provider or "unknown"
            self.add_log(
                log_id,
                created_at=created_at,
                provider=provider,
                model=request.model or "",
                tokens_in=max(1, len(request.system + request.prompt) // 4),
                tokens_out=100,
                cost=cost(request),
                metadata=request.metadata,
            )
            ids.append(log_id)
        return ids

    # -- handlers

    async def _record(self, request: web.Request) -> CfRequest:
        body: Any = None
        if request.can_read_body:
            raw = await request.read()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw
        recorded = CfRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            authorization=request.headers.get("Authorization"),
            body=body,
        )
        self.requests.append(recorded)
        return recorded

    def _gate(self, request: web.Request, recorded: CfRequest) -> web.Response | None:
        queue = self.patch_faults if request.method == "PATCH" and self.patch_faults else None
        queue = queue or self.faults
        if queue:
            fault = queue.popleft()
            headers = {}
            if fault.retry_after is not None:
                headers["retry-after"] = fault.retry_after
            if fault.location is not None:
                headers["location"] = fault.location
            return _envelope_error(
                fault.status, 971, "Please wait and consider throttling", headers
            )
        if recorded.authorization != f"Bearer {self.token}":
            return _envelope_error(401, 10000, "Authentication error")
        info = request.match_info
        if info.get("account") != self.account_id or info.get("gateway") != self.gateway_id:
            return _envelope_error(404, 7003, "Could not route to the requested gateway")
        return None

    async def _list(self, request: web.Request) -> web.Response:
        recorded = await self._record(request)
        refused = self._gate(request, recorded)
        if refused is not None:
            return refused
        if self.hold is not None:
            await self.hold.wait()
        query = recorded.query
        try:
            page = int(query.get("page", "1"))
            per_page = min(MAX_PER_PAGE, int(query.get("per_page", str(DEFAULT_PER_PAGE))))
            start = _date(query.get("start_date"))
            end = _date(query.get("end_date"))
        except ValueError as exc:
            return _envelope_error(400, 7001, f"invalid query: {exc}")
        if page < 1 or per_page < 1:
            return _envelope_error(400, 7001, "page and per_page must be positive")
        if query.get("order_by", "created_at") != "created_at":
            return _envelope_error(400, 7001, "this fake orders by created_at only")
        chosen = [
            entry
            for entry in self.logs.values()
            if (start is None or _date(entry["created_at"]) >= start)  # type: ignore[operator]
            and (end is None or _date(entry["created_at"]) <= end)  # type: ignore[operator]
        ]
        chosen.sort(
            key=lambda e: (e["created_at"], e["id"]),
            reverse=query.get("order_by_direction", "desc") != "asc",
        )
        result = chosen[(page - 1) * per_page : page * per_page]
        return web.json_response(
            {
                "success": True,
                "errors": [],
                "messages": [],
                "result": result,
                "result_info": {
                    "page": page,
                    "per_page": per_page,
                    "count": len(result),
                    "total_count": len(chosen),
                },
            }
        )

    async def _patch(self, request: web.Request) -> web.Response:
        recorded = await self._record(request)
        refused = self._gate(request, recorded)
        if refused is not None:
            return refused
        if not self.writable:
            return _envelope_error(403, 10000, "Authentication error")
        log_id = request.match_info["log_id"]
        entry = self.logs.get(log_id)
        if entry is None:
            return _envelope_error(404, 7002, "Log not found")
        body = recorded.body
        problem = _patch_problem(body)
        if problem is not None:
            return _envelope_error(400, 7001, problem)
        for key in ("feedback", "score"):
            if key in body:
                entry[key] = body[key]
        if "metadata" in body:
            entry["metadata"] = json.dumps(body["metadata"])
        self.patches.append((log_id, body))
        return web.json_response({"success": True, "errors": [], "messages": [], "result": {}})

    async def _unknown(self, request: web.Request) -> web.Response:
        await self._record(request)
        return _envelope_error(404, 7000, "No route for that URI")


def _patch_problem(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    unknown = set(body) - {"feedback", "score", "metadata"}
    if unknown:
        return f"unknown fields: {sorted(unknown)}"
    feedback = body.get("feedback")
    if feedback is not None and feedback not in (-1, 0, 1):
        return "feedback must be -1, 0 or 1"
    score = body.get("score")
    if score is not None and not (isinstance(score, int | float) and 0 <= score <= 100):
        return "score must be a number from 0 to 100"
    metadata = body.get("metadata")
    if metadata is not None and not (
        isinstance(metadata, dict)
        and all(isinstance(v, str | int | float | bool) for v in metadata.values())
    ):
        return "metadata must be an object of strings, numbers and booleans"
    return None


def _date(value: str | None) -> datetime | None:
    if value is None:
        return None
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _envelope_error(
    status: int, code: int, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(
        {
            "success": False,
            "errors": [{"code": code, "message": message}],
            "messages": [],
            "result": None,
        },
        status=status,
        headers=headers,
    )

"""A fake LLM gateway: a real aiohttp server speaking Anthropic Messages and OpenAI Chat Completions.

Routes (``prefix`` defaults to ``/v1/fake-account/fake-gateway``, like a Cloudflare gateway path)::

    POST {prefix}/anthropic/v1/messages      Anthropic Messages wire format
    POST {prefix}/openai/chat/completions    OpenAI Chat Completions wire format

Anything else is recorded and answered 404. Every answer carries ``cf-aig-log-id`` (unique,
ULID-like) and every request is recorded as a :class:`RecordedRequest` (provider, path, headers,
parsed JSON body, arrival time) in ``gateway.requests``.

Use it with pytest-aiohttp::

    gateway = FakeGateway()
    gateway.bind(await aiohttp_server(gateway.make_app()))
    settings = make_settings(aig_gateway_url=gateway.url, ...)

or on its own (benchmarks, scripts)::

    async with FakeGateway() as gateway:     # 127.0.0.1, a free port
        ... gateway.url, gateway.anthropic_base_url, gateway.openai_base_url ...

Scripting, per provider (``gateway.anthropic`` / ``gateway.openai``, both :class:`ProviderScript`):

- by default every request gets a valid review (``script.set_review(...)`` changes it);
- ``script.push(outcome, ...)`` queues outcomes used one per request, before the default;
  an outcome is :class:`Reply` (a ModelReview or any dict, so schema-invalid answers too),
  :class:`Text` (prose or malformed JSON instead of structured output), :class:`Refusal`,
  :class:`HttpError` (429 with or without ``retry-after``, 500, 529, 400, 401, spend caps, ...),
  :class:`Delay` (sleep, then another outcome), :class:`Redirect` or :class:`Disconnect`;
  a queued item may also be a responder, called with the request;
- ``script.respond_with(fn)`` makes ``fn(request) -> outcome`` (sync or async) answer every
  request once the queue is empty, so the answer can depend on the prompt;
- ``script.latency`` adds a fixed delay to every answer; ``script.max_in_flight`` is the
  highest number of this provider's requests in progress at once.

Usage figures: ``FakeUsage`` fields left as None are estimated from the sizes (about four
characters per token), so token counts grow with the prompt. ``input_tokens`` always means the
*whole* prompt (cached part included); for Anthropic it is split into ``input_tokens``,
``cache_read_input_tokens`` and ``cache_creation_input_tokens`` the way the real API reports it.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Literal, TypeAlias

from aiohttp import web
from aiohttp.test_utils import BaseTestServer

from app.review.model import Finding, ModelReview, Verdict

Provider = Literal["anthropic", "openai"]

DEFAULT_PREFIX: Final = "/v1/fake-account/fake-gateway"
LOG_ID_HEADER: Final = "cf-aig-log-id"

ANTHROPIC_ERROR_TYPES: Final[Mapping[int, str]] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    409: "conflict_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
OPENAI_ERROR_TYPES: Final[Mapping[int, str]] = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "invalid_request_error",
    404: "invalid_request_error",
    429: "requests",
    500: "server_error",
    502: "server_error",
    503: "server_error",
}


def default_review() -> ModelReview:
    return ModelReview(
        summary="The change is small and reads correctly.",
        verdict=Verdict.APPROVE,
        confidence=0.9,
        findings=[],
    )


# --------------------------------------------------------------------------- outcomes


@dataclass(frozen=True)
class FakeUsage:
    """Token figures for an answer; None means estimated from the request or answer size."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_input_tokens: int = 0
    cache_write_input_tokens: int = 0


@dataclass(frozen=True)
class Reply:
    """A structured answer: a ModelReview, or any dict (to send schema-invalid output)."""

    review: ModelReview | Mapping[str, Any]
    usage: FakeUsage | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Text:
    """Plain assistant text instead of structured output (prose, malformed or truncated JSON).

    ``stop_reason`` overrides the provider's (Anthropic ``max_tokens``, OpenAI ``length``).
    """

    text: str
    stop_reason: str | None = None
    usage: FakeUsage | None = None


@dataclass(frozen=True)
class Refusal:
    """Anthropic ``stop_reason: "refusal"``; OpenAI ``message.refusal``."""

    message: str = "I can't help with that request."


@dataclass(frozen=True)
class HttpError:
    """An error in the provider's own error format.

    ``code`` is Anthropic's ``error.details.error_code`` (``enforced_spend_limit_reached``) or
    OpenAI's ``error.code`` (``insufficient_quota``, which also becomes the error type).
    ``body`` replaces the generated body entirely.
    """

    status: int
    retry_after: float | str | None = None
    error_type: str | None = None
    code: str | None = None
    message: str = "scripted error"
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None


@dataclass(frozen=True)
class Delay:
    """Sleep ``seconds`` (cancellable: the server's shutdown cancels it), then answer ``then``
    (or the default answer)."""

    seconds: float
    then: Outcome | None = None


@dataclass(frozen=True)
class Redirect:
    location: str
    status: int = 307


@dataclass(frozen=True)
class Disconnect:
    """Close the connection without answering (a connection error for the client)."""


Outcome: TypeAlias = Reply | Text | Refusal | HttpError | Delay | Redirect | Disconnect
Responder: TypeAlias = Callable[["RecordedRequest"], "Outcome | Awaitable[Outcome]"]

MALFORMED: Final = Text("The change looks fine to me. {verdict: approve")
"""Neither a tool call nor valid JSON."""


def invalid_review() -> dict[str, Any]:
    """Well-formed JSON that breaks the ModelReview schema (bad enum, confidence > 1)."""
    return {"summary": "fine", "verdict": "maybe", "confidence": 1.5, "findings": []}


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it. Header names are lower-cased."""

    provider: Provider | None
    method: str
    path: str
    headers: Mapping[str, str]
    body: Any
    raw_body: bytes
    received_at: float
    """``time.monotonic()`` on arrival."""
    origin: str

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def model(self) -> str | None:
        return self.body.get("model") if isinstance(self.body, dict) else None

    @property
    def messages(self) -> list[dict[str, Any]]:
        if isinstance(self.body, dict) and isinstance(self.body.get("messages"), list):
            return [m for m in self.body["messages"] if isinstance(m, dict)]
        return []

    @property
    def system(self) -> str:
        """The system prompt (Anthropic ``system``; OpenAI ``system``/``developer`` messages)."""
        if self.provider == "anthropic" and isinstance(self.body, dict):
            return _text_of(self.body.get("system"))
        return "\n".join(
            _text_of(m.get("content"))
            for m in self.messages
            if m.get("role") in {"system", "developer"}
        )

    @property
    def prompt(self) -> str:
        """All user text of the conversation (tool results included), joined by newlines."""
        return "\n".join(
            _text_of(m.get("content")) for m in self.messages if m.get("role") == "user"
        )

    @property
    def first_prompt(self) -> str:
        users = [m for m in self.messages if m.get("role") == "user"]
        return _text_of(users[0].get("content")) if users else ""

    @property
    def is_repair(self) -> bool:
        """True for a follow-up turn (the conversation already holds an assistant answer)."""
        return any(m.get("role") == "assistant" for m in self.messages)

    @property
    def metadata(self) -> Any:
        raw = self.header("cf-aig-metadata")
        return json.loads(raw) if raw is not None else None


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, dict):
                if isinstance(block.get("text"), str):
                    parts.append(block["text"])
                elif "content" in block:
                    parts.append(_text_of(block["content"]))
        return "\n".join(parts)
    return ""


# --------------------------------------------------------------------------- scripts


class ProviderScript:
    """What one provider answers, and how busy it was."""

    def __init__(self, provider: Provider) -> None:
        self.provider: Provider = provider
        self.queue: deque[Outcome | Responder] = deque()
        self.responder: Responder | None = None
        self.review: ModelReview = default_review()
        self.usage: FakeUsage = FakeUsage()
        self.latency: float = 0.0
        self.in_flight = 0
        self.max_in_flight = 0
        self.calls = 0

    def push(self, *outcomes: Outcome | Responder) -> None:
        self.queue.extend(outcomes)

    def respond_with(self, responder: Responder | None) -> None:
        self.responder = responder

    def set_review(
        self,
        review: ModelReview | None = None,
        *,
        summary: str | None = None,
        verdict: Verdict | str | None = None,
        confidence: float | None = None,
        findings: list[Finding] | None = None,
    ) -> None:
        """The default answer: ``review`` as given, or the current one with fields replaced."""
        base = review or self.review
        changes: dict[str, Any] = {}
        if summary is not None:
            changes["summary"] = summary
        if verdict is not None:
            changes["verdict"] = Verdict(verdict)
        if confidence is not None:
            changes["confidence"] = confidence
        if findings is not None:
            changes["findings"] = findings
        self.review = ModelReview.model_validate({**base.model_dump(), **changes})

    def reset(self) -> None:
        self.queue.clear()
        self.responder = None
        self.review = default_review()
        self.usage = FakeUsage()
        self.latency = 0.0
        self.in_flight = self.max_in_flight = self.calls = 0

    async def next_outcome(self, request: RecordedRequest) -> Outcome:
        item: Outcome | Responder
        if self.queue:
            item = self.queue.popleft()
        elif self.responder is not None:
            item = self.responder
        else:
            return Reply(self.review, self.usage)
        if callable(item):
            result = item(request)
            if inspect.isawaitable(result):
                result = await result
            return result
        return item


# --------------------------------------------------------------------------- the server


class FakeGateway:
    """The fake gateway; see the module docstring."""

    def __init__(
        self,
        *,
        prefix: str = DEFAULT_PREFIX,
        token: str | None = None,
        log_id_prefix: str = "01JFAKE",
    ) -> None:
        """``token``: when set, behave like an *authenticated* gateway and answer 401 to any
        request without ``cf-aig-authorization: Bearer <token>``."""
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.token = token
        self.anthropic = ProviderScript("anthropic")
        self.openai = ProviderScript("openai")
        self.requests: list[RecordedRequest] = []
        self.origin: str | None = None
        self._log_ids = itertools.count(1)
        # Every request with the ``cf-aig-log-id`` it was answered with, as a gateway logs it.
        self.logged: list[tuple[str, RecordedRequest]] = []
        self._log_id_prefix = log_id_prefix
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- addresses

    @property
    def url(self) -> str:
        """The gateway base, as ``AIG_GATEWAY_URL`` takes it."""
        if self.origin is None:
            raise RuntimeError("the fake gateway is not serving yet: start() or bind() it first")
        return self.origin + self.prefix

    @property
    def anthropic_base_url(self) -> str:
        """What ``ANTHROPIC_BASE_URL`` would be to use this server as a direct/proxy endpoint."""
        return self.url + "/anthropic"

    @property
    def openai_base_url(self) -> str:
        return self.url + "/openai"

    def script(self, provider: Provider) -> ProviderScript:
        return self.anthropic if provider == "anthropic" else self.openai

    def requests_for(self, provider: Provider) -> list[RecordedRequest]:
        return [r for r in self.requests if r.provider == provider]

    def max_in_flight(self, provider: Provider) -> int:
        return self.script(provider).max_in_flight

    # -- serving

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024**2)
        app.router.add_post(self.prefix + "/anthropic/v1/messages", self._anthropic)
        app.router.add_post(self.prefix + "/openai/chat/completions", self._openai)
        app.router.add_route("*", "/{tail:.*}", self._unknown)
        app.on_shutdown.append(self._cancel_pending)
        return app

    def bind(self, server: BaseTestServer) -> FakeGateway:
        """Use the address of a pytest-aiohttp ``aiohttp_server(gateway.make_app())``."""
        self.origin = str(server.make_url("")).rstrip("/")
        return self

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        runner = web.AppRunner(self.make_app())
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        bound_port = runner.addresses[0][1] if runner.addresses else port
        self.origin = f"http://{host}:{bound_port}"
        return self.url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeGateway:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _cancel_pending(self, _app: web.Application) -> None:
        for task in list(self._tasks):
            task.cancel()

    # -- handlers

    async def _record(self, request: web.Request, provider: Provider | None) -> RecordedRequest:
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        recorded = RecordedRequest(
            provider=provider,
            method=request.method,
            path=request.path,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            raw_body=raw,
            received_at=time.monotonic(),
            origin=self.origin or "",
        )
        self.requests.append(recorded)
        return recorded

    def _next_log_id(self) -> str:
        return f"{self._log_id_prefix}{next(self._log_ids):019d}"

    async def _unknown(self, request: web.Request) -> web.StreamResponse:
        await self._record(request, None)
        return web.json_response(
            {"error": {"message": f"no route for {request.method} {request.path}"}}, status=404
        )

    async def _anthropic(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, "anthropic")

    async def _openai(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, "openai")

    async def _handle(self, request: web.Request, provider: Provider) -> web.StreamResponse:
        recorded = await self._record(request, provider)
        script = self.script(provider)
        script.calls += 1
        script.in_flight += 1
        script.max_in_flight = max(script.max_in_flight, script.in_flight)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        log_id = self._next_log_id()
        self.logged.append((log_id, recorded))
        try:
            if self.token is not None and recorded.header("cf-aig-authorization") != (
                f"Bearer {self.token}"
            ):
                return _json(
                    401,
                    {
                        "success": False,
                        "result": [],
                        "messages": [],
                        "error": [{"code": 2009, "message": "Unauthorized"}],
                    },
                    log_id,
                )
            problem = _check_request(provider, recorded)
            if problem is not None:
                return _json(400, _error_body(provider, HttpError(400, message=problem)), log_id)
            if script.latency:
                await asyncio.sleep(script.latency)
            outcome = await script.next_outcome(recorded)
            while isinstance(outcome, Delay):
                await asyncio.sleep(outcome.seconds)
                outcome = outcome.then or Reply(script.review, script.usage)
            return self._render(provider, recorded, outcome, log_id, request)
        finally:
            script.in_flight -= 1
            if task is not None:
                self._tasks.discard(task)

    def _render(
        self,
        provider: Provider,
        request: RecordedRequest,
        outcome: Outcome,
        log_id: str,
        raw_request: web.Request,
    ) -> web.StreamResponse:
        if isinstance(outcome, Disconnect):
            if raw_request.transport is not None:
                raw_request.transport.close()
            return web.Response(status=200)
        if isinstance(outcome, Redirect):
            response = web.Response(status=outcome.status, headers={"location": outcome.location})
            response.headers[LOG_ID_HEADER] = log_id
            return response
        if isinstance(outcome, HttpError):
            headers = dict(outcome.headers)
            if outcome.retry_after is not None:
                headers["retry-after"] = str(outcome.retry_after)
            body = outcome.body if outcome.body is not None else _error_body(provider, outcome)
            return _json(outcome.status, body, log_id, headers)
        if isinstance(outcome, Delay):  # pragma: no cover - unwrapped by the caller
            raise AssertionError("Delay is handled before rendering")
        if provider == "anthropic":
            payload, headers = _anthropic_message(request, outcome, log_id)
        else:
            payload, headers = _openai_completion(request, outcome, log_id)
        return _json(200, payload, log_id, headers)


# --------------------------------------------------------------------------- wire formats


def _json(
    status: int, body: Any, log_id: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    response = web.json_response(body, status=status, headers=dict(headers or {}))
    response.headers[LOG_ID_HEADER] = log_id
    response.headers["cf-aig-request-id"] = log_id
    return response


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


def _usage(request: RecordedRequest, answer_text: str, usage: FakeUsage | None) -> FakeUsage:
    given = usage or FakeUsage()
    return FakeUsage(
        input_tokens=(
            given.input_tokens
            if given.input_tokens is not None
            else _tokens(request.raw_body.decode("utf-8", "replace"))
        ),
        output_tokens=given.output_tokens
        if given.output_tokens is not None
        else _tokens(answer_text),
        cached_input_tokens=given.cached_input_tokens,
        cache_write_input_tokens=given.cache_write_input_tokens,
    )


def _review_dict(review: ModelReview | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(review, ModelReview):
        return review.model_dump(mode="json", exclude_none=True)
    return dict(review)


def _check_request(provider: Provider, request: RecordedRequest) -> str | None:
    """The checks the real APIs make that a client bug would trip."""
    body = request.body
    if not isinstance(body, dict):
        return "request body must be a JSON object"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model: field required"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    if provider == "openai":
        return None
    if request.header("anthropic-version") is None:
        return "anthropic-version: header is required"
    if not isinstance(body.get("max_tokens"), int):
        return "max_tokens: field required"
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in {"user", "assistant"}:
            return f"messages.{index}.role: must be user or assistant"
        tool_ids = {
            block.get("id") for block in _blocks(message) if block.get("type") == "tool_use"
        }
        if not tool_ids:
            continue
        following = messages[index + 1] if index + 1 < len(messages) else None
        answered = {
            block.get("tool_use_id")
            for block in _blocks(following)
            if block.get("type") == "tool_result"
        }
        if not tool_ids <= answered:
            return (
                f"messages.{index + 1}: `tool_use` ids were found without `tool_result` blocks "
                "immediately after"
            )
    return None


def _blocks(message: Any) -> list[dict[str, Any]]:
    """The content blocks of a message (none when its content is a plain string)."""
    content = message.get("content") if isinstance(message, dict) else None
    return (
        [block for block in content if isinstance(block, dict)] if isinstance(content, list) else []
    )


def _anthropic_message(
    request: RecordedRequest, outcome: Reply | Text | Refusal, log_id: str
) -> tuple[dict[str, Any], dict[str, str]]:
    number = log_id[-12:]
    body = request.body if isinstance(request.body, dict) else {}
    content: list[dict[str, Any]]
    usage_given: FakeUsage | None = None
    extra_headers: dict[str, str] = {}
    if isinstance(outcome, Refusal):
        content = [{"type": "text", "text": outcome.message}]
        stop_reason = "refusal"
        answer = outcome.message
    elif isinstance(outcome, Text):
        content = [{"type": "text", "text": outcome.text}]
        stop_reason = outcome.stop_reason or "end_turn"
        answer = outcome.text
        usage_given = outcome.usage
    else:
        data = _review_dict(outcome.review)
        answer = json.dumps(data)
        usage_given = outcome.usage
        extra_headers.update(outcome.headers)
        tools = [tool for tool in body.get("tools") or [] if isinstance(tool, dict)]
        choice = body.get("tool_choice")
        forced = choice.get("name") if isinstance(choice, dict) else None
        tool_name = forced or (tools[0].get("name") if tools else None)
        if tool_name:
            content = [
                {"type": "tool_use", "id": f"toolu_fake{number}", "name": tool_name, "input": data}
            ]
            stop_reason = "tool_use"
        else:
            content = [{"type": "text", "text": answer}]
            stop_reason = "end_turn"
    usage = _usage(request, answer, usage_given)
    total = usage.input_tokens or 0
    cached = usage.cached_input_tokens
    written = usage.cache_write_input_tokens
    message = {
        "id": f"msg_fake{number}",
        "type": "message",
        "role": "assistant",
        "model": request.model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": max(0, total - cached - written),
            "output_tokens": usage.output_tokens,
            "cache_creation_input_tokens": written,
            "cache_read_input_tokens": cached,
            "cache_creation": {
                "ephemeral_5m_input_tokens": written,
                "ephemeral_1h_input_tokens": 0,
            },
            "service_tier": "standard",
        },
    }
    extra_headers.setdefault("request-id", f"req_fake{number}")
    return message, extra_headers


def _openai_completion(
    request: RecordedRequest, outcome: Reply | Text | Refusal, log_id: str
) -> tuple[dict[str, Any], dict[str, str]]:
    number = log_id[-12:]
    body = request.body if isinstance(request.body, dict) else {}
    message: dict[str, Any] = {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "annotations": [],
    }
    finish_reason = "stop"
    usage_given: FakeUsage | None = None
    extra_headers: dict[str, str] = {}
    if isinstance(outcome, Refusal):
        message["refusal"] = outcome.message
        answer = outcome.message
    elif isinstance(outcome, Text):
        message["content"] = outcome.text
        finish_reason = outcome.stop_reason or "stop"
        answer = outcome.text
        usage_given = outcome.usage
    else:
        answer = json.dumps(_review_dict(outcome.review))
        usage_given = outcome.usage
        extra_headers.update(outcome.headers)
        choice = body.get("tool_choice")
        forced = (
            choice.get("function", {}).get("name")
            if isinstance(choice, dict) and choice.get("type") == "function"
            else None
        )
        if forced and body.get("response_format") is None:
            message["tool_calls"] = [
                {
                    "id": f"call_fake{number}",
                    "type": "function",
                    "function": {"name": forced, "arguments": answer},
                }
            ]
            finish_reason = "tool_calls"
        else:
            message["content"] = answer
    usage = _usage(request, answer, usage_given)
    prompt_tokens = usage.input_tokens or 0
    completion_tokens = usage.output_tokens or 0
    completion = {
        "id": f"chatcmpl-fake{number}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.model,
        "choices": [
            {"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {
                "cached_tokens": usage.cached_input_tokens,
                "audio_tokens": 0,
            },
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
        "service_tier": "default",
        "system_fingerprint": "fp_fake",
    }
    extra_headers.setdefault("x-request-id", f"req_fake{number}")
    return completion, extra_headers


def _error_body(provider: Provider, error: HttpError) -> dict[str, Any]:
    if provider == "anthropic":
        inner: dict[str, Any] = {
            "type": error.error_type or ANTHROPIC_ERROR_TYPES.get(error.status, "api_error"),
            "message": error.message,
        }
        if error.code is not None:
            inner["details"] = {"error_code": error.code}
        return {"type": "error", "error": inner, "request_id": "req_fake_error"}
    error_type = (
        error.error_type
        or (error.code if error.code == "insufficient_quota" else None)
        or OPENAI_ERROR_TYPES.get(error.status, "server_error")
    )
    return {
        "error": {
            "message": error.message,
            "type": error_type,
            "param": None,
            "code": error.code,
        }
    }

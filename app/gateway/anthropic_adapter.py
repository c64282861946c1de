"""Claude through the Anthropic Messages API, with the review as a forced tool call.

The request offers one tool, ``submit_review``, whose ``input_schema`` is the ModelReview schema,
and forces it with ``tool_choice={"type": "tool", "name": "submit_review"}``; the answer is the
``tool_use`` block's ``input``. A repair round answers that ``tool_use`` with an ``is_error``
``tool_result`` listing the validation errors.

How the SDK is used:

- ``anthropic.AsyncAnthropic`` with the endpoint's ``base_url``, our own guarded ``http_client``
  (:func:`app.gateway.urls.make_http_client`), ``timeout`` and ``max_retries=0``. The client
  is the SDK's ``DefaultAioHttpClient`` (:func:`app.gateway.clients.aiohttp_client_class`).
- The key travels as ``x-api-key`` (Anthropic's documented header, and the one the Cloudflare
  gateway documents). The 2.x SDK would send ``api_key`` as ``Authorization: Bearer``, and with
  no explicit credential it would search the environment and profile files; so the SDK is given
  :data:`~app.gateway.urls.BYOK_PLACEHOLDER` as ``api_key``, every call omits ``Authorization``,
  and the guard strips any header still holding the placeholder. With no key configured (BYOK)
  no provider credential is sent at all.
- Calls go through the SDK's generic ``client.post("/v1/messages", ...)`` (same auth, headers,
  base URL and typed errors as ``messages.create``) because ``messages.create`` raises a
  ``DeprecationWarning`` on every call for deprecated models (``claude-sonnet-4-5`` among them),
  which a test run with warnings as errors cannot survive; the deprecation is logged here once
  instead. The response is read with small local models of the wire format.
- A free-text request (``answer()``, for the ``ask`` command) offers no tool; its answer is the
  text blocks of the reply, joined.
- ``temperature`` was removed from the 2.x SDK's signature and is rejected by models after the
  4.6 generation; it is sent in the body only to models that accept it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final

import anthropic
import anthropic.resources.messages.messages as _sdk_messages
import httpx2

from app.gateway.clients import (
    METADATA_HEADER,
    SUBMIT_TOOL,
    CallFailure,
    StructuredReviewer,
    Turn,
    TurnRequest,
    WireModel,
    classify_http_error,
    connection_detail,
)
from app.gateway.pricing import Usage
from app.gateway.urls import BYOK_PLACEHOLDER
from app.review.model import review_json_schema

logger = logging.getLogger(__name__)

TOOL_DESCRIPTION: Final = (
    "Submit your review of this part of the pull request. Call it exactly once, with every "
    "finding placed on a line of the new file that the diff shows."
)

_DEPRECATED_MODELS: Final[Mapping[str, str]] = getattr(_sdk_messages, "DEPRECATED_MODELS", {})
_warned_deprecated: set[str] = set()


def accepts_temperature(model: str) -> bool:
    """Whether ``model`` still takes ``temperature``: Claude generations up to 4.6 do.

    ``claude-sonnet-4-5-20250929`` → (4, 5) yes; ``claude-3-5-haiku`` → (3, 5) yes;
    ``claude-opus-4-7``, ``claude-sonnet-5`` → no. A name without a version → no (omitting it
    is harmless, sending it to a model that rejects it is a 400).
    """
    numbers = [int(part) for part in model.lower().split("-") if part.isdigit() and len(part) < 4]
    if not model.lower().startswith("claude") or not numbers:
        return False
    version = (numbers[0], numbers[1] if len(numbers) > 1 else 0)
    return version <= (4, 6)


class _Block(WireModel):
    type: str
    id: str | None = None
    name: str | None = None
    input: Any = None
    text: str | None = None


class _Usage(WireModel):
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class _Message(WireModel):
    type: str = "message"
    content: list[_Block] = []
    stop_reason: str | None = None
    usage: _Usage = _Usage()


def usage_of(usage: _Usage) -> Usage:
    """Anthropic reports uncached, cache-write and cache-read input separately: add them up."""
    cache_write = usage.cache_creation_input_tokens or 0
    cache_read = usage.cache_read_input_tokens or 0
    return Usage(
        input_tokens=usage.input_tokens + cache_write + cache_read,
        output_tokens=usage.output_tokens,
        cached_input_tokens=cache_read,
        cache_write_input_tokens=cache_write,
    )


class AnthropicReviewer(StructuredReviewer):
    provider = "anthropic"

    def __init__(self, **options: Any) -> None:
        """``options`` are :class:`StructuredReviewer`'s (endpoint, gateway, model, limits)."""
        super().__init__(**options)
        headers: dict[str, str] = {}
        if self.endpoint.api_key is not None:
            headers["x-api-key"] = self.endpoint.api_key.get_secret_value()
        self._client = anthropic.AsyncAnthropic(
            api_key=BYOK_PLACEHOLDER,
            base_url=self.endpoint.base_url,
            default_headers=headers,
            http_client=self._http,
            timeout=self._timeout,
            max_retries=0,
        )
        self._tool: dict[str, Any] = {
            "name": SUBMIT_TOOL,
            "description": TOOL_DESCRIPTION,
            "input_schema": review_json_schema(),
        }

    async def aclose(self) -> None:
        await self._client.close()
        await self._http.aclose()

    def _body(self, request: TurnRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens,
            "system": request.system,
            "messages": request.messages,
        }
        if not request.free_text:
            body["tools"] = [self._tool]
            body["tool_choice"] = {"type": "tool", "name": SUBMIT_TOOL}
        if self._temperature is not None and accepts_temperature(request.model):
            body["temperature"] = self._temperature
        return body

    async def _request(self, request: TurnRequest) -> Turn:
        model = request.model
        if model in _DEPRECATED_MODELS and model not in _warned_deprecated:
            _warned_deprecated.add(model)
            logger.warning(
                "Anthropic model %s is deprecated and reaches end-of-life on %s",
                model,
                _DEPRECATED_MODELS[model],
            )
        try:
            response = await self._client.post(
                "/v1/messages",
                cast_to=httpx2.Response,
                body=self._body(request),
                options={
                    "headers": {
                        "Authorization": anthropic.omit,
                        METADATA_HEADER: request.metadata.header_value(),
                    }
                },
            )
        except anthropic.APIStatusError as exc:
            raise classify_http_error(
                exc.status_code, exc.response.headers, exc.body, secrets=self._secrets
            ) from None
        except anthropic.APITimeoutError:
            raise CallFailure("timeout", True) from None
        except anthropic.APIConnectionError as exc:
            raise CallFailure(
                "connection error", True, detail=connection_detail(exc, self._secrets)
            ) from None
        return self._turn(response, free_text=request.free_text)

    def _turn(self, response: httpx2.Response, *, free_text: bool = False) -> Turn:
        message, log_id = _Message.read(response)
        usage = usage_of(message.usage)
        assistant = [
            block for block in (_as_param(block) for block in message.content) if block is not None
        ]
        if message.stop_reason == "refusal":
            return Turn(usage=usage, log_id=log_id, refused=True, assistant=assistant)
        if free_text:
            text = "".join(b.text for b in message.content if b.type == "text" and b.text)
            return Turn(
                usage=usage, log_id=log_id, text=text, cut_off=message.stop_reason == "max_tokens"
            )
        for block in message.content:
            if block.type == "tool_use" and block.name == SUBMIT_TOOL:
                if isinstance(block.input, Mapping):
                    return Turn(usage=usage, log_id=log_id, output=block.input, assistant=assistant)
                return Turn(
                    usage=usage,
                    log_id=log_id,
                    problem=f"the {SUBMIT_TOOL} input is not a JSON object",
                    assistant=assistant,
                )
        problem = f"the reply did not call {SUBMIT_TOOL}"
        if message.stop_reason == "max_tokens":
            problem += " (it was cut off at the output token limit; be more concise)"
        return Turn(usage=usage, log_id=log_id, problem=problem, assistant=assistant)

    def _repair_messages(
        self, messages: list[dict[str, Any]], turn: Turn, problem: str
    ) -> list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = list(turn.assistant or [])
        instruction = (
            f"{problem}\n\nCall {SUBMIT_TOOL} again with an input that matches its schema "
            "exactly. Do not add any other text."
        )
        repaired = list(messages)
        if blocks:
            repaired.append({"role": "assistant", "content": blocks})
        tool_ids = [block["id"] for block in blocks if block["type"] == "tool_use"]
        content: list[dict[str, Any]]
        if tool_ids:
            content = [
                {
                    "type": "tool_result",
                    "tool_use_id": tool_id,
                    "is_error": True,
                    "content": instruction,
                }
                for tool_id in tool_ids
            ]
        else:
            content = [{"type": "text", "text": instruction}]
        repaired.append({"role": "user", "content": content})
        return repaired


def _as_param(block: _Block) -> dict[str, Any] | None:
    """A response block as a request block, for sending the answer back in a repair round."""
    if block.type == "tool_use" and block.id and block.name:
        tool_input = block.input if isinstance(block.input, Mapping) else {}
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": tool_input}
    if block.type == "text" and block.text:
        return {"type": "text", "text": block.text}
    return None

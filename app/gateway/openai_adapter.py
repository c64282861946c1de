"""GPT through OpenAI Chat Completions, with the review as a JSON-schema response format.

The request sets ``response_format={"type": "json_schema", "json_schema": {"name":
"model_review", "strict": true, "schema": ...}}`` and the answer is ``choices[0].message.content``
parsed as JSON (``json.loads``, never a regex), then validated as a ModelReview by the engine.

Strict mode: OpenAI's strict structured outputs require every property to be listed in
``required`` and accept only a subset of JSON Schema, so the contract's schema cannot be sent
as is (``end_line`` and ``suggestion`` are optional, and ``maxLength`` is not in the supported
subset). :func:`strict_review_schema` derives a strict-compatible variant: optional properties
become required but nullable (``"type": ["integer", "null"]``), and length limits move into the
property's description. ``ModelReview`` already accepts ``null`` for both optional fields, so no
normalisation is needed before validation, and pydantic still enforces the length limits (a
violation goes to the repair round). Strict mode is on by default because it makes the model's
output conform by construction; ``strict=False`` sends the contract's schema unchanged.

How the SDK is used: ``openai.AsyncOpenAI`` with the endpoint's ``base_url``, the guarded
``http_client`` (httpx on aiohttp, :func:`app.gateway.clients.aiohttp_client_class`), ``timeout``
and ``max_retries=0``. Calls go through the SDK's generic ``client.post("/chat/completions",
...)``, which keeps its authentication, base URL and typed errors but skips the per-call
transformation of typed parameters and the parsing into typed response objects: together those
cost more CPU than the rest of a review's handling, and the adapter reads four fields. The
response is read with small local models of the wire format.

The key is sent by the SDK as ``Authorization: Bearer``. With no key configured (BYOK) the SDK is
given :data:`~app.gateway.urls.BYOK_PLACEHOLDER` so that it constructs, every call omits
``Authorization``, and the guard strips any header still holding the placeholder.

``temperature`` is not sent to reasoning models (``o1``/``o3``/``o4``, ``gpt-5`` and later, but
not the ``-chat`` variants), which reject any value but the default.

A free-text request (``answer()``, for the ``ask`` command) sends no ``response_format``; its
answer is ``choices[0].message.content`` as it is.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any, Final

import httpx2
import openai
from openai.types.shared_params import ResponseFormatJSONSchema

from app.gateway.clients import (
    METADATA_HEADER,
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

SCHEMA_NAME: Final = "model_review"
_UNSUPPORTED_IN_STRICT: Final = ("maxLength", "minLength")
_REASONING_PREFIXES: Final = ("o1", "o3", "o4", "gpt-5", "gpt-6", "gpt-7")


def accepts_temperature(model: str) -> bool:
    """Whether ``model`` takes a ``temperature`` other than its default (reasoning models don't)."""
    name = model.lower().removeprefix("openai/")
    return not (name.startswith(_REASONING_PREFIXES) and "-chat" not in name)


def strict_review_schema(schema: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ModelReview schema in the shape OpenAI's strict mode accepts (see module docstring)."""
    return _strict_node(copy.deepcopy(dict(schema or review_json_schema())), optional=False)


def _strict_node(node: dict[str, Any], *, optional: bool) -> dict[str, Any]:
    notes: list[str] = []
    for keyword in _UNSUPPORTED_IN_STRICT:
        if keyword in node:
            limit = node.pop(keyword)
            notes.append(
                f"At most {limit} characters."
                if keyword == "maxLength"
                else f"At least {limit} characters."
            )
    if notes:
        node["description"] = " ".join([node.get("description", ""), *notes]).strip()
    kind = node.get("type")
    if kind == "object" and isinstance(node.get("properties"), Mapping):
        required = set(node.get("required", []))
        node["properties"] = {
            name: _strict_node(dict(child), optional=name not in required)
            for name, child in node["properties"].items()
        }
        node["required"] = list(node["properties"])
        node["additionalProperties"] = False
    elif kind == "array" and isinstance(node.get("items"), Mapping):
        node["items"] = _strict_node(dict(node["items"]), optional=False)
    if optional:
        if isinstance(kind, str):
            node["type"] = [kind, "null"]
        elif isinstance(kind, list) and "null" not in kind:
            node["type"] = [*kind, "null"]
        if isinstance(node.get("enum"), list) and None not in node["enum"]:
            node["enum"] = [*node["enum"], None]
    return node


def response_format(*, strict: bool) -> ResponseFormatJSONSchema:
    schema = strict_review_schema() if strict else review_json_schema()
    return {
        "type": "json_schema",
        "json_schema": {"name": SCHEMA_NAME, "strict": strict, "schema": schema},
    }


class _Message(WireModel):
    content: str | None = None
    refusal: str | None = None


class _Choice(WireModel):
    message: _Message
    finish_reason: str | None = None


class _PromptDetails(WireModel):
    cached_tokens: int | None = None
    cache_write_tokens: int | None = None


class _Usage(WireModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt_tokens_details: _PromptDetails | None = None


class _Completion(WireModel):
    """The part of a Chat Completions response the review reads."""

    choices: list[_Choice] = []
    usage: _Usage | None = None


def usage_of(completion: _Completion) -> Usage:
    usage = completion.usage
    if usage is None:
        return Usage()
    details = usage.prompt_tokens_details
    return Usage(
        input_tokens=usage.prompt_tokens,
        output_tokens=usage.completion_tokens,
        cached_input_tokens=(details.cached_tokens or 0) if details else 0,
        cache_write_input_tokens=(details.cache_write_tokens or 0) if details else 0,
    )


class OpenAIReviewer(StructuredReviewer):
    provider = "openai"

    def __init__(self, *, strict: bool = True, **options: Any) -> None:
        """``options`` are :class:`StructuredReviewer`'s (endpoint, gateway, model, limits)."""
        super().__init__(**options)
        key = self.endpoint.api_key
        self._byok = key is None
        self._client = openai.AsyncOpenAI(
            api_key=BYOK_PLACEHOLDER if key is None else key.get_secret_value(),
            base_url=self.endpoint.base_url,
            http_client=self._http,
            timeout=self._timeout,
            max_retries=0,
        )
        self._response_format = response_format(strict=strict)

    async def aclose(self) -> None:
        await self._client.close()
        await self._http.aclose()

    def _body(self, request: TurnRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model,
            "messages": [{"role": "system", "content": request.system}, *request.messages],
            "max_completion_tokens": request.max_tokens,
        }
        if not request.free_text:
            body["response_format"] = self._response_format
        if self._temperature is not None and accepts_temperature(request.model):
            body["temperature"] = self._temperature
        return body

    async def _request(self, request: TurnRequest) -> Turn:
        headers: dict[str, str | openai.Omit] = {METADATA_HEADER: request.metadata.header_value()}
        if self._byok:
            headers["Authorization"] = openai.omit
        try:
            response = await self._client.post(
                "/chat/completions",
                cast_to=httpx2.Response,
                body=self._body(request),
                options={"headers": headers},
            )
        except openai.APIStatusError as exc:
            raise classify_http_error(
                exc.status_code, exc.response.headers, exc.body, secrets=self._secrets
            ) from None
        except openai.APITimeoutError:
            raise CallFailure("timeout", True) from None
        except openai.APIConnectionError as exc:
            raise CallFailure(
                "connection error", True, detail=connection_detail(exc, self._secrets)
            ) from None
        completion, log_id = _Completion.read(response)
        if not completion.choices:
            raise CallFailure("invalid response", False, response.status_code, log_id=log_id)
        return self._turn(completion, log_id, free_text=request.free_text)

    def _turn(
        self, completion: _Completion, log_id: str | None, *, free_text: bool = False
    ) -> Turn:
        usage = usage_of(completion)
        choice = completion.choices[0]
        message = choice.message
        if message.refusal:
            return Turn(usage=usage, log_id=log_id, refused=True)
        content = message.content or ""
        cut_off = choice.finish_reason == "length"
        if free_text:
            return Turn(usage=usage, log_id=log_id, text=content, cut_off=cut_off)
        assistant = {"role": "assistant", "content": content}
        try:
            data = json.loads(content)
        except json.JSONDecodeError as exc:
            problem = (
                f"the reply is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
            )
            if cut_off:
                problem += "; it was cut off at the output token limit, so be more concise"
            return Turn(usage=usage, log_id=log_id, problem=problem, assistant=assistant)
        if not isinstance(data, dict):
            return Turn(
                usage=usage,
                log_id=log_id,
                problem="the reply is JSON but not an object",
                assistant=assistant,
            )
        return Turn(usage=usage, log_id=log_id, output=data, assistant=assistant)

    def _repair_messages(
        self, messages: list[dict[str, Any]], turn: Turn, problem: str
    ) -> list[dict[str, Any]]:
        assistant = turn.assistant if isinstance(turn.assistant, dict) else None
        repaired = list(messages)
        if assistant is not None:
            repaired.append(assistant)
        repaired.append(
            {
                "role": "user",
                "content": (
                    f"Your previous reply was rejected: {problem}\n\nReply again with only a "
                    f"JSON object that matches the {SCHEMA_NAME} schema exactly."
                ),
            }
        )
        return repaired

"""The provider-neutral side of a model call: the interface, the result, retries and repair.

``Reviewer.review(...)`` asks one model for a :class:`~app.review.model.ModelReview` and always
returns a :class:`ReviewCall`; failures are values (``review=None``, a short ``error``), never
exceptions, so the pipeline can run both models with ``asyncio.gather`` and decide from data.

One ``review()`` is at most two *rounds* (the question, then one repair when the answer does not
validate), and each round is one HTTP request retried on its own:

- retried: HTTP 408, 429 (after ``retry-after`` / ``retry-after-ms`` when given, else backoff),
  5xx including Anthropic's 529 ``overloaded_error``, timeouts and connection errors;
- never retried: other 4xx (400, 401, 403, 404, ...), a 429 or 402 that is a spend cap or an
  exhausted quota (``enforced_spend_limit_reached``, ``insufficient_quota``, ...), a response
  with ``x-should-retry: false``, and a ``retry-after`` longer than ``RetryPolicy.max_retry_after``;
- bounded by count (``model_max_retries`` retries per request) and by time (no retry starts once
  ``model_retry_budget_seconds`` since the start of ``review()`` would be exceeded by its wait);
- backoff is exponential with jitter: ``min(max_delay, base_delay * 2**n) * (0.5 + jitter()/2)``.

The SDKs' own retries are off (``max_retries=0``) so that this loop is the only one, with an
injectable ``sleep`` and ``clock`` (tests assert the waits without waiting).

``Reviewer.answer(...)`` is the free-text shape of the same call (the ``ask`` command): the
request carries no tool and no response format, the answer is the model's prose, and there is
one round (nothing to validate, so nothing to repair). It goes through the same client, URLs,
headers, metadata, retries and pricing as ``review()`` and returns an :class:`AnswerCall`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field, replace
from email.utils import parsedate_to_datetime
from typing import Any, Final, Protocol, Self

import httpx2
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from app.gateway.pricing import PRICES, ModelPrice, Usage, compute_cost
from app.gateway.throttle import Clock, ProviderGate, Sleep
from app.gateway.urls import ProviderEndpoint, display_url, make_http_client
from app.review.model import ModelReview
from app.settings import Settings

logger = logging.getLogger(__name__)


METADATA_HEADER: Final = "cf-aig-metadata"
LOG_ID_HEADER: Final = "cf-aig-log-id"
#: The metadata entry that marks the bot's own calls in the gateway's logs.
METADATA_APP_KEY: Final = "app"
METADATA_APP: Final = "aigateway"
SUBMIT_TOOL: Final = "submit_review"

# Error codes (Anthropic ``error.details.error_code``, OpenAI ``error.code`` / ``error.type``)
# that mean "money, not load": retrying cannot help.
SPEND_CAP_CODES: Final = frozenset(
    {
        "enforced_spend_limit_reached",
        "contract_spend_limit_reached",
        "linked_organization_spend_limit_reached",
        "insufficient_quota",
        "credit_balance_exhausted",
        "billing_hard_limit_reached",
        "billing_error",
    }
)


# --------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class CallMetadata:
    """Who a call is for, sent as ``cf-aig-metadata`` so gateway logs attribute the spend.

    At most five entries (the gateway silently drops more); values are strings, numbers or
    booleans; entries that are None are left out. ``app: aigateway`` comes first: it is how
    reconciliation (``app.ledger``) tells the bot's calls from others' on a shared gateway.
    The installation is not sent (the ledger keeps it; the repository names it anyway).
    """

    repository: str | None = None
    pr: int | None = None
    installation: int | None = None
    delivery: str | None = None
    purpose: str | None = "review"

    def entries(self) -> dict[str, str | int]:
        values: dict[str, str | int | None] = {
            METADATA_APP_KEY: METADATA_APP,
            "purpose": self.purpose,
            "repository": self.repository,
            "pr": self.pr,
            "delivery": self.delivery,
        }
        return {
            key: (value[:200] if isinstance(value, str) else value)
            for key, value in values.items()
            if value is not None
        }

    def header_value(self) -> str:
        return json.dumps(self.entries(), separators=(",", ":"), ensure_ascii=True)


@dataclass(frozen=True, slots=True)
class ModelCall:
    """What every finished model call says of its transport and cost, whatever was asked.

    Tokens and cost cover every answered request of the call (a repair round included).
    ``cost_usd`` is None exactly when the model has no price (``priced`` False).
    ``attempts`` counts HTTP requests made; ``log_id`` is the last ``cf-aig-log-id`` seen,
    ``log_ids`` all of them. ``status`` is the failed request's HTTP status, ``detail`` the
    provider's own message, shortened, with every configured secret redacted.
    """

    provider: str
    model: str
    _: KW_ONLY
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_input_tokens: int = 0
    cost_usd: float | None = None
    priced: bool = True
    log_id: str | None = None
    log_ids: tuple[str, ...] = ()
    latency_s: float = 0.0
    attempts: int = 0
    status: int | None = None
    detail: str | None = None

    @property
    def usage(self) -> Usage:
        return Usage(
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cached_input_tokens=self.cached_input_tokens,
            cache_write_input_tokens=self.cache_write_input_tokens,
        )


@dataclass(frozen=True, slots=True)
class ReviewCall(ModelCall):
    """The outcome of one ``review()``: a validated review, or None and a short ``error``.

    ``error`` is one of: ``"timeout"``, ``"connection error"``, ``"http <status>"``,
    ``"spend limit (http <status>)"``, ``"refused"``, ``"invalid output after repair"``,
    ``"invalid response"`` (a 2xx body that is not the provider's format) or
    ``"unexpected error"`` (logged). ``repaired``: the answer needed the repair round.
    """

    review: ModelReview | None
    error: str | None
    _: KW_ONLY
    repaired: bool = False

    @property
    def ok(self) -> bool:
        return self.review is not None


@dataclass(frozen=True, slots=True)
class AnswerCall(ModelCall):
    """The outcome of one ``answer()``: the model's text, or None and a short ``error``.

    ``error`` takes the values of :attr:`ReviewCall.error` (``"invalid output after repair"``
    aside: there is no repair round), plus ``"empty answer"``. ``cut_off`` is True when the
    model stopped at the output token limit (the text is then incomplete).
    """

    text: str | None
    error: str | None
    _: KW_ONLY
    cut_off: bool = False

    @property
    def ok(self) -> bool:
        return self.text is not None


class Reviewer(Protocol):
    """One model provider, as the review pipeline (and the ``ask`` command) sees it."""

    @property
    def provider(self) -> str: ...

    @property
    def model(self) -> str: ...

    async def review(
        self,
        *,
        system: str,
        prompt: str,
        metadata: CallMetadata,
        max_tokens: int | None = None,
        model: str | None = None,
    ) -> ReviewCall: ...

    async def answer(
        self,
        *,
        system: str,
        prompt: str,
        metadata: CallMetadata,
        max_tokens: int | None = None,
        model: str | None = None,
    ) -> AnswerCall: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How one request is retried. ``sleep``, ``clock`` and ``jitter`` are injectable for tests."""

    max_retries: int = 3
    budget_seconds: float = 60.0
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 60.0
    sleep: Sleep = asyncio.sleep
    clock: Clock = time.monotonic
    jitter: Callable[[], float] = random.random

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        sleep: Sleep | None = None,
        clock: Clock | None = None,
        jitter: Callable[[], float] | None = None,
    ) -> RetryPolicy:
        return cls(
            max_retries=settings.model_max_retries,
            budget_seconds=settings.model_retry_budget_seconds,
            sleep=sleep or asyncio.sleep,
            clock=clock or time.monotonic,
            jitter=jitter or random.random,
        )

    def backoff(self, retry_index: int) -> float:
        """The wait before retry number ``retry_index + 1`` when the server named none."""
        ceiling = min(self.max_delay, self.base_delay * (2.0**retry_index))
        return ceiling * (0.5 + self.jitter() / 2)


class CallFailure(Exception):
    """One request that did not produce an answer. ``reason`` becomes ``ReviewCall.error``.

    Its message is only ``reason``: nothing from the provider's answer, so never a secret.
    """

    def __init__(
        self,
        reason: str,
        retryable: bool,
        status: int | None = None,
        *,
        retry_after: float | None = None,
        log_id: str | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after
        self.log_id = log_id
        self.detail = detail


@dataclass(frozen=True, slots=True)
class TurnRequest:
    """One request of a call, as the engine hands it to a provider adapter.

    ``free_text``: ask for prose (no tool, no response format) and fill ``Turn.text``.
    """

    system: str
    messages: list[dict[str, Any]]
    model: str
    max_tokens: int
    metadata: CallMetadata
    free_text: bool = False


@dataclass(frozen=True, slots=True)
class Turn:
    """One answered request, as far as the engine cares.

    ``output`` is the structured answer (the tool input, or the parsed JSON content) when there
    is one; otherwise ``problem`` says why not. ``assistant`` is the provider-specific message to
    send back in a repair round. A free-text request fills ``text`` instead of ``output``, and
    ``cut_off`` when the model stopped at the output token limit.
    """

    usage: Usage
    log_id: str | None
    output: Mapping[str, Any] | None = None
    problem: str | None = None
    refused: bool = False
    assistant: Any = None
    text: str | None = None
    cut_off: bool = False


# --------------------------------------------------------------------------- helpers


def redact(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    return text


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds from ``retry-after-ms``, or ``retry-after`` as seconds or an HTTP date."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def _error_codes(body: object) -> set[str]:
    """``error.type``, ``error.code`` and ``error.details.error_code`` from an error body."""
    codes: set[str] = set()
    if not isinstance(body, Mapping):
        return codes
    error = body.get("error", body)
    if isinstance(error, list) and error:  # Cloudflare's own {"error": [{"code", "message"}]}
        error = error[0]
    if not isinstance(error, Mapping):
        return codes
    for key in ("type", "code"):
        value = error.get(key)
        if isinstance(value, str):
            codes.add(value)
    details = error.get("details")
    if isinstance(details, Mapping) and isinstance(details.get("error_code"), str):
        codes.add(details["error_code"])
    return codes


def _error_message(body: object) -> str | None:
    if isinstance(body, Mapping):
        error = body.get("error", body)
        if isinstance(error, list) and error:
            error = error[0]
        if isinstance(error, Mapping) and isinstance(error.get("message"), str):
            return str(error["message"])
    return None


def connection_detail(exc: BaseException, secrets: Sequence[str]) -> str | None:
    """Why a connection failed (refused, no such host, TLS), from the transport's own error,
    shortened and redacted: the SDKs' own message only says "Connection error."."""
    texts: list[str] = []
    cause = exc.__cause__ or exc.__context__
    while cause is not None and len(texts) < 8:
        if str(cause):
            texts.append(str(cause))
        cause = cause.__cause__ or cause.__context__
    text = texts[-1] if texts else ""
    return redact(text[:300], secrets) if text else None


def classify_http_error(
    status: int,
    headers: Mapping[str, str],
    body: object,
    *,
    secrets: Sequence[str],
) -> CallFailure:
    """A failed HTTP response as a :class:`CallFailure`: retryable or not, and the wait asked."""
    codes = _error_codes(body)
    message = _error_message(body)
    detail = redact(message[:300], secrets) if message else None
    log_id = headers.get(LOG_ID_HEADER)
    if codes & SPEND_CAP_CODES:
        return CallFailure(
            f"spend limit (http {status})", False, status, log_id=log_id, detail=detail
        )
    retryable = status in {408, 429} or status >= 500
    if headers.get("x-should-retry", "").lower() == "false":
        retryable = False
    retry_after = parse_retry_after(headers) if retryable else None
    return CallFailure(
        f"http {status}", retryable, status, retry_after=retry_after, log_id=log_id, detail=detail
    )


def validation_problem(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors(include_url=False, include_input=False)[:20]:
        location = ".".join(str(part) for part in error["loc"]) or "(root)"
        lines.append(f"- {location}: {error['msg']}")
    return "the answer does not match the ModelReview schema:\n" + "\n".join(lines)


# --------------------------------------------------------------------------- the engine


@dataclass(slots=True)
class _Tally:
    """What one ``review()`` or ``answer()`` has used so far, over all its requests."""

    usage: Usage = field(default_factory=Usage)
    log_ids: list[str] = field(default_factory=list)
    attempts: int = 0

    def totals(
        self,
        model: str,
        prices: Mapping[str, ModelPrice],
        started: float,
        failure: CallFailure | None,
    ) -> dict[str, Any]:
        """The :class:`ModelCall` fields of the finished call (``started``: its
        ``time.perf_counter()`` at the start), the same for a review and an answer."""
        cost = compute_cost(model, self.usage, prices)
        return {
            "input_tokens": self.usage.input_tokens,
            "output_tokens": self.usage.output_tokens,
            "cached_input_tokens": self.usage.cached_input_tokens,
            "cache_write_input_tokens": self.usage.cache_write_input_tokens,
            "cost_usd": cost.usd,
            "priced": cost.priced,
            "log_id": self.log_ids[-1] if self.log_ids else None,
            "log_ids": tuple(self.log_ids),
            "latency_s": time.perf_counter() - started,
            "attempts": self.attempts,
            "status": failure.status if failure else None,
            "detail": failure.detail if failure else None,
        }


class WireModel(BaseModel):
    """A provider's response as an adapter reads it: the fields it uses, everything else ignored
    (providers add fields without notice)."""

    model_config = ConfigDict(extra="ignore")

    @classmethod
    def read(cls, response: httpx2.Response) -> tuple[Self, str | None]:
        """The response's body as this model, with the gateway's log id; a body that is not
        one is an ``invalid response`` (not retried)."""
        log_id = response.headers.get(LOG_ID_HEADER)
        try:
            return cls.model_validate_json(response.content), log_id
        except ValidationError:
            raise CallFailure(
                "invalid response", False, response.status_code, log_id=log_id
            ) from None


def aiohttp_client_class() -> type[httpx2.AsyncClient]:
    """httpx on an aiohttp transport: the class both provider SDKs document for concurrency.

    aiohttp's C parser costs a fraction of httpcore's CPU per request, which matters when
    dozens of reviews run at once. Both adapters take the Anthropic SDK's
    ``DefaultAioHttpClient``: its copy of the transport reports a refused connection as a
    connection error, where the OpenAI SDK's reports it as a connect timeout.
    """
    import anthropic

    return anthropic.DefaultAioHttpClient


class StructuredReviewer(ABC):
    """Retry, repair, validation and accounting around a provider adapter's single request."""

    provider: str = "unknown"

    def __init__(
        self,
        *,
        endpoint: ProviderEndpoint,
        gateway_url: str | None,
        gateway_token: SecretStr | None,
        model: str,
        max_tokens: int,
        temperature: float | None,
        timeout: float,
        retry: RetryPolicy,
        secrets: Sequence[str] = (),
        prices: Mapping[str, ModelPrice] = PRICES,
        max_connections: int = 100,
        max_concurrency: int | None = None,
    ) -> None:
        self.endpoint = endpoint
        # Shared by every call of this reviewer, so by every review in the process.
        self.gate = ProviderGate(
            self.provider,
            max_concurrency or max_connections,
            sleep=retry.sleep,
            clock=retry.clock,
        )
        # The guarded client: the gateway token only reaches URLs under the gateway.
        self._http = make_http_client(
            gateway_url=gateway_url,
            gateway_token=gateway_token,
            endpoint_url=endpoint.base_url,
            timeout=timeout,
            max_connections=max_connections,
            client_class=aiohttp_client_class(),
        )
        self._model = model
        self._max_tokens = max_tokens
        self._temperature = temperature
        self._timeout = timeout
        self._retry = retry
        self._secrets = tuple(secrets)
        self._prices = prices

    @property
    def model(self) -> str:
        return self._model

    # -- adapter interface

    @abstractmethod
    async def _request(self, request: TurnRequest) -> Turn:
        """Send one request; return the answer as a :class:`Turn` or raise :class:`CallFailure`."""

    @abstractmethod
    def _repair_messages(
        self, messages: list[dict[str, Any]], turn: Turn, problem: str
    ) -> list[dict[str, Any]]:
        """The conversation for the repair round: the bad answer and what was wrong with it."""

    @abstractmethod
    async def aclose(self) -> None: ...

    # -- the call

    async def review(
        self,
        *,
        system: str,
        prompt: str,
        metadata: CallMetadata,
        max_tokens: int | None = None,
        model: str | None = None,
    ) -> ReviewCall:
        model_name = model or self._model
        started = time.perf_counter()
        budget_start = self._retry.clock()
        tally = _Tally()
        request = TurnRequest(
            system=system,
            messages=[{"role": "user", "content": prompt}],
            model=model_name,
            max_tokens=max_tokens or self._max_tokens,
            metadata=metadata,
        )
        repaired = False

        def result(
            review: ModelReview | None, error: str | None, failure: CallFailure | None = None
        ) -> ReviewCall:
            return ReviewCall(
                self.provider,
                model_name,
                review,
                error,
                repaired=repaired,
                **tally.totals(model_name, self._prices, started, failure),
            )

        for round_index in range(2):
            try:
                turn = await self._with_retries(request, tally=tally, budget_start=budget_start)
            except CallFailure as failure:
                self._log_failure(model_name, metadata, failure, tally)
                return result(None, failure.reason, failure)
            if turn.refused:
                return result(None, "refused")
            problem = turn.problem or "no structured answer"
            if turn.output is not None:
                try:
                    return result(ModelReview.model_validate(turn.output), None)
                except ValidationError as exc:
                    problem = validation_problem(exc)
            logger.info(
                "model answer did not validate",
                extra={
                    "provider": self.provider,
                    "model": model_name,
                    "round": round_index,
                    "log_id": turn.log_id,
                    "problem": problem[:500],
                },
            )
            if round_index == 0:
                repair = self._repair_messages(request.messages, turn, problem)
                request = replace(request, messages=repair)
                repaired = True
        return result(None, "invalid output after repair")

    async def answer(
        self,
        *,
        system: str,
        prompt: str,
        metadata: CallMetadata,
        max_tokens: int | None = None,
        model: str | None = None,
    ) -> AnswerCall:
        """Ask for free text: one round through the same retries; failures are values."""
        model_name = model or self._model
        started = time.perf_counter()
        tally = _Tally()
        text: str | None = None
        error: str | None = None
        failure: CallFailure | None = None
        cut_off = False
        try:
            turn = await self._with_retries(
                TurnRequest(
                    system=system,
                    messages=[{"role": "user", "content": prompt}],
                    model=model_name,
                    max_tokens=max_tokens or self._max_tokens,
                    metadata=metadata,
                    free_text=True,
                ),
                tally=tally,
                budget_start=self._retry.clock(),
            )
        except CallFailure as exc:
            self._log_failure(model_name, metadata, exc, tally)
            failure, error = exc, exc.reason
        else:
            cut_off = turn.cut_off
            if turn.refused:
                error = "refused"
            elif turn.text is None or not turn.text.strip():
                error = "empty answer"
            else:
                text = turn.text
        return AnswerCall(
            self.provider,
            model_name,
            text,
            error,
            cut_off=cut_off,
            **tally.totals(model_name, self._prices, started, failure),
        )

    async def _with_retries(
        self, request: TurnRequest, *, tally: _Tally, budget_start: float
    ) -> Turn:
        policy = self._retry
        retries = 0
        while True:
            try:
                async with self.gate.slot():
                    tally.attempts += 1
                    async with asyncio.timeout(self._timeout):
                        turn = await self._request(request)
            except TimeoutError:
                failure = CallFailure("timeout", retryable=True)
            except CallFailure as exc:
                failure = exc
            except Exception as exc:  # an SDK surprise must not take the whole review down
                logger.error(
                    "unexpected %s from the %s client: %s",
                    type(exc).__name__,
                    self.provider,
                    redact(str(exc)[:300], self._secrets),
                )
                failure = CallFailure("unexpected error", retryable=False)
            else:
                tally.usage = tally.usage + turn.usage
                if turn.log_id:
                    tally.log_ids.append(turn.log_id)
                return turn
            if failure.log_id:
                tally.log_ids.append(failure.log_id)
            shared_pause = self._pause_for_rate_limit(failure)
            if not failure.retryable or retries >= policy.max_retries:
                raise failure
            if failure.retry_after is not None:
                if failure.retry_after > policy.max_retry_after:
                    raise failure
                delay = failure.retry_after
            else:
                delay = policy.backoff(retries)
            if policy.clock() - budget_start + delay > policy.budget_seconds:
                raise failure
            retries += 1
            logger.info(
                "retrying model request",
                extra={
                    "provider": self.provider,
                    "model": request.model,
                    "reason": failure.reason,
                    "retry": retries,
                    "delay_s": round(delay, 3),
                    "log_id": failure.log_id,
                },
            )
            if not shared_pause:
                await policy.sleep(delay)
            # else: the gate holds this retry, with every other call, until the pause ends.

    def _pause_for_rate_limit(self, failure: CallFailure) -> bool:
        """A load 429 that names its wait pauses the provider's calls for the whole process,
        whether or not this call retries; True when it did."""
        wait = failure.retry_after
        if failure.status != 429 or not failure.retryable or wait is None:
            return False
        if wait > self._retry.max_retry_after:
            return False  # such a call gives up; the others find out for themselves
        self.gate.pause(wait)
        return True

    def _log_failure(
        self, model: str, metadata: CallMetadata, failure: CallFailure, tally: _Tally
    ) -> None:
        logger.warning(
            "model request failed",
            extra={
                "provider": self.provider,
                "model": model,
                "url": display_url(self.endpoint.request_url),
                "reason": failure.reason,
                "status": failure.status,
                "detail": failure.detail,
                "attempts": tally.attempts,
                "log_id": failure.log_id,
                "repository": metadata.repository,
                "pr": metadata.pr,
            },
        )

"""The LLM gateway client: Claude and GPT reviewers behind one interface.

The app builds one :class:`GatewayClients` at startup (``build_reviewers(settings)``), shares it
across reviews (one HTTP client and connection pool per provider) and closes it on shutdown::

    clients = build_reviewers(settings)
    claude, gpt = clients.reviewers
    call = await claude.review(system=..., prompt=..., metadata=CallMetadata(...))
    said = await claude.answer(system=..., prompt=..., metadata=...)  # free text (``ask``)
    ...
    await clients.aclose()

Module map: :mod:`.urls` (endpoints, the gateway-token guard, the guarded HTTP client),
:mod:`.clients` (interface, result, retries, repair), :mod:`.throttle` (the per-provider gate),
:mod:`.anthropic_adapter`, :mod:`.openai_adapter`, :mod:`.pricing`.

The two adapters, and with them the providers' SDKs (seconds of imports), load when first
named, not with this package: the command line's other commands, the ledger and the
dashboard use the gateway's values and URLs without ever calling a model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from app.gateway.clients import (
    AnswerCall,
    CallFailure,
    CallMetadata,
    ModelCall,
    RetryPolicy,
    ReviewCall,
    Reviewer,
)
from app.gateway.pricing import PRICES, Cost, ModelPrice, Usage, compute_cost, max_cost, price_for
from app.gateway.throttle import Clock, ProviderGate, Sleep
from app.gateway.urls import (
    GatewayConfigError,
    ProviderEndpoint,
    anthropic_endpoint,
    gateway_base,
    openai_endpoint,
    resolve_endpoints,
    secret_values,
    should_send_gateway_token,
    url_is_under,
)
from app.settings import Settings

if TYPE_CHECKING:
    from app.gateway.anthropic_adapter import AnthropicReviewer
    from app.gateway.openai_adapter import OpenAIReviewer

_ADAPTERS = {
    "AnthropicReviewer": "app.gateway.anthropic_adapter",
    "OpenAIReviewer": "app.gateway.openai_adapter",
}


def __getattr__(name: str) -> Any:
    """The adapters on first use (PEP 562), so importing the package loads no SDK."""
    module = _ADAPTERS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "PRICES",
    "AnswerCall",
    "AnthropicReviewer",
    "CallFailure",
    "CallMetadata",
    "Cost",
    "GatewayClients",
    "GatewayConfigError",
    "ModelCall",
    "ModelPrice",
    "OpenAIReviewer",
    "ProviderEndpoint",
    "ProviderGate",
    "RetryPolicy",
    "ReviewCall",
    "Reviewer",
    "Usage",
    "anthropic_endpoint",
    "build_reviewers",
    "compute_cost",
    "gateway_base",
    "max_cost",
    "openai_endpoint",
    "price_for",
    "resolve_endpoints",
    "should_send_gateway_token",
    "url_is_under",
]


@dataclass(frozen=True, slots=True)
class GatewayClients:
    """Both reviewers, built once and shared; ``aclose()`` (or ``async with``) on shutdown."""

    anthropic: AnthropicReviewer
    openai: OpenAIReviewer

    @property
    def reviewers(self) -> tuple[Reviewer, Reviewer]:
        return (self.anthropic, self.openai)

    def by_provider(self, provider: str) -> Reviewer:
        match provider:
            case "anthropic":
                return self.anthropic
            case "openai":
                return self.openai
        raise KeyError(provider)

    async def aclose(self) -> None:
        try:
            await self.anthropic.aclose()
        finally:
            await self.openai.aclose()

    async def __aenter__(self) -> GatewayClients:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def build_reviewers(
    settings: Settings,
    *,
    http_timeout: float | None = None,
    sleep: Sleep | None = None,
    clock: Clock | None = None,
    jitter: Callable[[], float] | None = None,
    prices: Mapping[str, ModelPrice] = PRICES,
    openai_strict: bool = True,
) -> GatewayClients:
    """Both reviewers from ``settings``; raises :class:`GatewayConfigError` naming what to set.

    ``http_timeout`` overrides ``model_timeout_seconds`` (per request). ``sleep``, ``clock`` and
    ``jitter`` drive the retry waits (tests pass fakes). Nothing connects until the first call.
    """
    from app.gateway.anthropic_adapter import AnthropicReviewer
    from app.gateway.openai_adapter import OpenAIReviewer

    anthropic_ep, openai_ep = resolve_endpoints(settings)
    gateway = gateway_base(settings)
    token = settings.gateway_token
    timeout = http_timeout if http_timeout is not None else settings.model_timeout_seconds
    retry = RetryPolicy.from_settings(settings, sleep=sleep, clock=clock, jitter=jitter)
    secrets = secret_values(settings)
    shared: dict[str, Any] = {
        "gateway_url": gateway,
        "gateway_token": token,
        "max_tokens": settings.model_max_output_tokens,
        "temperature": settings.model_temperature,
        "timeout": timeout,
        "retry": retry,
        "secrets": secrets,
        "prices": prices,
    }
    # A connection per call in flight: the gate, not the pool, is what makes calls wait.
    claude = AnthropicReviewer(
        endpoint=anthropic_ep,
        model=settings.anthropic_model,
        max_concurrency=settings.anthropic_max_concurrency,
        max_connections=settings.anthropic_max_concurrency,
        **shared,
    )
    gpt = OpenAIReviewer(
        endpoint=openai_ep,
        model=settings.openai_model,
        strict=openai_strict,
        max_concurrency=settings.openai_max_concurrency,
        max_connections=settings.openai_max_concurrency,
        **shared,
    )
    return GatewayClients(anthropic=claude, openai=gpt)

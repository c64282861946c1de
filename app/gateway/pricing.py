"""Built-in model prices and the cost of one call computed from the usage the provider returned.

Prices are USD per million tokens: uncached input, output, cached input (a prompt-cache *read*)
and, for Anthropic, a prompt-cache *write* (5-minute TTL, 1.25 x input). They are the providers'
public list prices for the standard (non-batch, non-priority) tier and prompts under 200K tokens:

- Anthropic: https://docs.anthropic.com/en/docs/about-claude/pricing (Opus 4.1 $15/$75, Sonnet 4.5
  $3/$15, Haiku 4.5 $1/$5; cache hits 0.1 x input, 5-minute cache writes 1.25 x input).
- OpenAI: https://platform.openai.com/docs/pricing (GPT-5 $1.25/$10, mini $0.25/$2, nano
  $0.05/$0.40, cached input 0.1 x input; GPT-4.1 $2/$8, mini $0.40/$1.60, cached 0.25 x input).
  OpenAI bills no premium for cache writes, so a write costs the input price.

A model that is not in the table is never a crash: :func:`compute_cost` returns
``Cost(usd=None, priced=False)`` and logs the model once, so the ledger records tokens without a
price and budgets can treat the call as unpriced. A server pricing file (issue 5) can pass its own
``prices`` mapping to every function here.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

logger = logging.getLogger(__name__)

_PER_TOKEN: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens of one or more calls, provider-neutral.

    ``input_tokens`` counts every prompt token, including those read from or written to the
    provider's prompt cache; ``cached_input_tokens`` and ``cache_write_input_tokens`` are the parts
    of it that are priced differently. (Anthropic reports the three parts separately; OpenAI reports
    the total with the cached part inside it. The adapters convert both to this shape.)
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_input_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cached_input_tokens=self.cached_input_tokens + other.cached_input_tokens,
            cache_write_input_tokens=self.cache_write_input_tokens + other.cache_write_input_tokens,
        )

    @property
    def uncached_input_tokens(self) -> int:
        return max(0, self.input_tokens - self.cached_input_tokens - self.cache_write_input_tokens)


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """USD per million tokens. ``cache_write`` None means a cache write costs the input price."""

    input: float
    output: float
    cached_input: float
    cache_write: float | None = None


def _anthropic(input_price: float, output_price: float) -> ModelPrice:
    return ModelPrice(
        input=input_price,
        output=output_price,
        cached_input=round(input_price * 0.1, 6),
        cache_write=round(input_price * 1.25, 6),
    )


PRICES: Final[Mapping[str, ModelPrice]] = MappingProxyType(
    {
        # Anthropic: the defaults the settings and the downgrade ladder name.
        "claude-opus-4-1": _anthropic(15.0, 75.0),
        "claude-sonnet-4-5": _anthropic(3.0, 15.0),
        "claude-haiku-4-5": _anthropic(1.0, 5.0),
        # Anthropic: neighbours a server is likely to switch to.
        "claude-opus-4-5": _anthropic(5.0, 25.0),
        "claude-opus-4-6": _anthropic(5.0, 25.0),
        "claude-sonnet-4-6": _anthropic(3.0, 15.0),
        "claude-sonnet-4": _anthropic(3.0, 15.0),
        "claude-opus-4": _anthropic(15.0, 75.0),
        # OpenAI: the defaults.
        "gpt-5": ModelPrice(input=1.25, output=10.0, cached_input=0.125),
        "gpt-5-mini": ModelPrice(input=0.25, output=2.0, cached_input=0.025),
        "gpt-5-nano": ModelPrice(input=0.05, output=0.40, cached_input=0.005),
        "gpt-4.1": ModelPrice(input=2.0, output=8.0, cached_input=0.50),
        "gpt-4.1-mini": ModelPrice(input=0.40, output=1.60, cached_input=0.10),
        # OpenAI: neighbours.
        "gpt-4.1-nano": ModelPrice(input=0.10, output=0.40, cached_input=0.025),
        "gpt-5.4": ModelPrice(input=2.50, output=15.0, cached_input=0.25),
        "gpt-5.4-mini": ModelPrice(input=0.75, output=4.50, cached_input=0.075),
        "gpt-5.4-nano": ModelPrice(input=0.20, output=1.25, cached_input=0.02),
    }
)

# Snapshot suffixes: Anthropic "-20250929", OpenAI "-2025-08-07", Vertex "@20250929".
_SNAPSHOT_SUFFIX: Final = re.compile(r"(?:[-@]\d{8}|-\d{4}-\d{2}-\d{2})$")
_PROVIDER_PREFIXES: Final = ("anthropic/", "openai/")


def price_for(model: str, prices: Mapping[str, ModelPrice] = PRICES) -> ModelPrice | None:
    """The price of ``model``: exact name, then without a provider prefix or a snapshot date."""
    name = model.strip().lower()
    if name in prices:
        return prices[name]
    for prefix in _PROVIDER_PREFIXES:
        if name.startswith(prefix):
            name = name.removeprefix(prefix)
            break
    if name in prices:
        return prices[name]
    return prices.get(_SNAPSHOT_SUFFIX.sub("", name))


@dataclass(frozen=True, slots=True)
class Cost:
    """The cost of some usage. ``usd`` is None exactly when the model has no price (``priced``)."""

    model: str
    usd: float | None
    priced: bool

    @property
    def unknown_model(self) -> bool:
        return not self.priced


_warned_unpriced: set[str] = set()


def compute_cost(model: str, usage: Usage, prices: Mapping[str, ModelPrice] = PRICES) -> Cost:
    """USD for ``usage`` on ``model``; an unpriced model gives ``Cost(usd=None, priced=False)``."""
    price = price_for(model, prices)
    if price is None:
        if model not in _warned_unpriced:
            _warned_unpriced.add(model)
            logger.warning("no price for model %r: its calls are recorded without a cost", model)
        return Cost(model=model, usd=None, priced=False)
    cache_write = price.input if price.cache_write is None else price.cache_write
    micro_usd = (
        usage.uncached_input_tokens * price.input
        + usage.cached_input_tokens * price.cached_input
        + usage.cache_write_input_tokens * cache_write
        + usage.output_tokens * price.output
    )
    return Cost(model=model, usd=micro_usd / _PER_TOKEN, priced=True)


def max_cost(
    model: str,
    *,
    input_tokens: int,
    max_output_tokens: int,
    prices: Mapping[str, ModelPrice] = PRICES,
) -> Cost:
    """The most one call can cost: every input token uncached and the output at its cap.

    For budget reservations before a call; settle afterwards with :func:`compute_cost`.
    """
    return compute_cost(
        model, Usage(input_tokens=input_tokens, output_tokens=max_output_tokens), prices
    )

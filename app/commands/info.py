"""The commands that only read the settings and the ledger: ``quota`` and ``config``.

They cost nothing and change nothing, so anyone who can comment may run them
(``commands.permissions``). What they show is what the bot itself acts on: the budgets after the
operator's ceilings, and the configuration after merging the owner's defaults and dropping
invalid keys, each value with where it came from.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any, Final

from app.commands.invocation import Invocation, Outcome
from app.quota import QuotaLedger, format_spend_report, repository_budget
from app.review.sanitize import clean, truncate

__all__ = ["config", "quota"]

#: The longest value shown in the config table; longer ones end in an ellipsis.
MAX_VALUE_CHARS: Final = 80


async def quota(inv: Invocation) -> Outcome:
    services = inv.ctx.services
    pipeline = services.pipeline
    ledger = pipeline.quota if pipeline is not None and pipeline.quota is not None else None
    ledger = ledger or QuotaLedger(services.db)
    budget = repository_budget(services.settings, inv.config)
    spend = await ledger.spend(inv.pr.repository, pr_number=inv.pr.number, budget=budget)
    return Outcome(True, format_spend_report(spend))


def _leaves(data: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _leaves(value, path + ".")
        else:
            yield path, value


def _cell(value: Any) -> str:
    """A value as inline code that survives a table row (pipes, backticks, newlines)."""
    text = truncate(json.dumps(value, ensure_ascii=False), MAX_VALUE_CHARS, note="…")
    text = clean(text).replace("\n", " ").replace("|", "\\|").replace("`", "'")
    return f"`{text}`"


def config_table(inv: Invocation) -> str:
    """Every effective setting, its value and its origin (default, org or repo)."""
    origins = inv.loaded.origins
    rows = [
        f"| `{key}` | {_cell(value)} | {origins.get(key, 'default')} |"
        for key, value in _leaves(inv.config.model_dump(mode="json"))
    ]
    lines = ["| setting | value | from |", "|---|---|---|", *rows]
    if inv.loaded.errors:
        lines += ["", f"{len(inv.loaded.errors)} problem(s) in the configuration files:", ""]
        lines += [f"- {clean(str(error))}" for error in inv.loaded.errors[:20]]
    return "\n".join(lines)


async def config(inv: Invocation) -> Outcome:
    return Outcome(True, "The effective configuration:\n\n" + config_table(inv))

"""``python -m app review-diff``: review a local patch with both models; nothing is posted.

The same stages as the App's review, in its order (files and what is skipped, risk, slices,
budgets, models, consensus, tripwire, decision), so what a user sees here is what the App would
do with the same change. Exit codes say how it went, for scripts::

    0  reviewed (or --dry-run, or nothing reviewable)    1  no model answered
    2  bad input or settings                             3  partial: some model calls failed
    4  refused before any call: --max-cost or a budget

Spend is held to the repository's budgets (``quota`` in the config) and recorded in the ledger
(``python -m app quota`` shows it) under ``--repo``; ``--no-ledger`` touches no database, and
then only the per-review caps apply (``--max-cost`` and ``quota.per_pr_usd``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.cli.diff_report import Estimate, Report, render_json, render_text
from app.cli.patch_input import (
    InputError,
    format_patch_subject,
    load_config,
    read_gitattributes,
    read_patch,
    repository_root,
)
from app.settings import Settings

if TYPE_CHECKING:
    from app.gateway import CallMetadata
    from app.quota import Plan, QuotaLedger
    from app.repo_config import RepoConfig
    from app.review.pipeline import ReviewerSpec, Spending
    from app.store.db import Database

from app.cli.review_diff_args import (
    EXIT_NO_ANSWER,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_REFUSED,
    EXIT_USAGE,
    HELP,
    add_parser,
)

__all__ = [
    "EXIT_NO_ANSWER",
    "EXIT_OK",
    "EXIT_PARTIAL",
    "EXIT_REFUSED",
    "EXIT_USAGE",
    "HELP",
    "add_parser",
    "run",
]


def run(args: argparse.Namespace, *, load_settings: Callable[..., Settings]) -> int:
    try:
        return _run(args, load_settings)
    except InputError as exc:
        print(f"aigateway: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _run(args: argparse.Namespace, load_settings: Callable[..., Settings]) -> int:
    from app.logs import configure_logging
    from app.policy.risk import PathChange, classify_paths
    from app.review.diff import DiffParseError, parse_unified_diff
    from app.review.generated import GitAttributes, mark_generated
    from app.review.pipeline import ignore_globs, prepare_review
    from app.review.prompt import PullRequestInfo

    if args.strip is not None and args.strip < 0:
        raise InputError("-p takes a number of path components, 0 or more")
    if args.max_cost is not None and not args.max_cost >= 0:
        raise InputError("--max-cost takes an amount in USD, 0 or more")
    patch = read_patch(args.patch)
    root = repository_root(Path.cwd())
    config, config_source, config_errors = load_config(args.config, root)
    for error in config_errors:
        print(f"config: {error}", file=sys.stderr)
    settings = load_settings()
    configure_logging(fmt="text", level="WARNING", secrets=settings.secret_values())
    title = args.title or format_patch_subject(patch.text) or "local patch"
    try:
        parsed = parse_unified_diff(patch.text, ignore_globs=ignore_globs(config), strip=args.strip)
    except DiffParseError as exc:
        raise InputError(f"{args.patch}: {exc}") from None
    if not parsed:
        raise InputError(f"{args.patch} holds no diff")
    files = mark_generated(parsed, GitAttributes.parse(read_gitattributes(root)))
    risk = classify_paths([PathChange(f.path, f.old_path) for f in files], config.risk.rules)
    pr = PullRequestInfo(
        repository=args.repo,
        number=None,
        title=title,
        body="",
        base_ref="base",
        head_ref=patch.name,
    )
    prepared = prepare_review(files, pr=pr, settings=settings, config=config, risk=risk)
    text = prepared.prompt_text()
    plan = _per_review_plan(text, settings, config)
    models = dict(plan.models) if not plan.skip else _configured_models(settings, config)
    estimate = _estimate(text, models, settings)
    report = Report(
        title=title,
        files=tuple(files),
        risk=risk,
        prepared=prepared,
        estimate=estimate,
        config=config,
        config_source=config_source,
    )
    if args.dry_run:
        _print(report, args)
        return EXIT_OK
    if not prepared.prompts:
        _print(report, args)
        return EXIT_OK
    refusal = plan.skip_reason or _refuse(estimate, args.max_cost)
    if refusal is not None:
        print(f"aigateway: not reviewed: {refusal}; no model was called", file=sys.stderr)
        return EXIT_REFUSED
    for note in plan.notes:
        print(f"aigateway: {note}", file=sys.stderr)
    if sys.stderr.isatty():
        print(f"aigateway: {estimate.describe()}", file=sys.stderr)
    return asyncio.run(_review(args, settings, report, models))


def _configured_models(settings: Settings, config: RepoConfig) -> dict[str, str]:
    return {
        "anthropic": config.review.models.anthropic or settings.anthropic_model,
        "openai": config.review.models.openai or settings.openai_model,
    }


def _estimate(prompt_text: str, models: dict[str, str], settings: Settings) -> Estimate:
    from app.quota import estimate_call_cost

    return Estimate(
        tokens=_tokens(prompt_text),
        per_model={
            model: estimate_call_cost(
                model, prompt_text=prompt_text, max_output_tokens=settings.model_max_output_tokens
            )
            for model in models.values()
        },
    )


def _per_review_plan(prompt_text: str, settings: Settings, config: RepoConfig) -> Plan:
    """``quota.per_pr_usd`` for one patch, as the App holds a pull request to it: the models
    that fit, stepped down their ladders when ``on_exhausted`` is ``downgrade``."""
    from app.quota import estimate_call_cost, plan_models, repository_budget

    budget = repository_budget(settings, config)
    return plan_models(
        wanted=_configured_models(settings, config),
        estimate=lambda model: estimate_call_cost(
            model, prompt_text=prompt_text, max_output_tokens=settings.model_max_output_tokens
        ),
        remaining=budget.per_pr_usd,
        on_exhausted=budget.on_exhausted,
        ladders={
            "anthropic": settings.model_ladder_anthropic,
            "openai": settings.model_ladder_openai,
        },
        limiting="per-review budget (quota.per_pr_usd)",
    )


def _tokens(text: str) -> int:
    from app.review.tokens import estimate_tokens

    return estimate_tokens(text)


def _refuse(estimate: Estimate, max_cost: float | None) -> str | None:
    """``--max-cost``: refused when the estimate is above it, or cannot be made."""
    if max_cost is None:
        return None
    unpriced = [m for m, usd in estimate.per_model.items() if usd is None]
    if unpriced:
        return f"no price is known for {', '.join(unpriced)}, so --max-cost cannot be held to"
    if estimate.total_usd > max_cost:
        return f"the estimated cost ${estimate.total_usd:.4f} is above --max-cost ${max_cost:.4f}"
    return None


async def _review(
    args: argparse.Namespace, settings: Settings, report: Report, models: dict[str, str]
) -> int:
    from app.gateway import CallMetadata, GatewayConfigError, build_reviewers
    from app.review.pipeline import call_hook, reviewer_specs, run_models

    try:
        clients = build_reviewers(settings)
    except GatewayConfigError as exc:
        print(f"aigateway: {exc}", file=sys.stderr)
        return EXIT_USAGE
    metadata = CallMetadata(repository=args.repo, purpose="review-diff")
    async with clients:
        specs = [
            (name, reviewer, models.get(reviewer.provider, model))
            for name, reviewer, model in reviewer_specs(clients.reviewers, report.config)
        ]
        ledger = None if args.no_ledger else await _open_ledger(settings)
        try:
            spending: Spending | None = None
            if ledger is not None:
                granted = await _reserve(ledger[0], settings, args.repo, report, specs, metadata)
                if isinstance(granted, str):
                    print(
                        f"aigateway: not reviewed: {granted}; no model was called", file=sys.stderr
                    )
                    return EXIT_REFUSED
                spending = granted
                specs = spending.specs
                for note in spending.plan.notes:
                    print(f"aigateway: {note}", file=sys.stderr)
            try:
                run = await run_models(
                    report.prepared,
                    reviewers=specs,
                    settings=settings,
                    metadata=metadata,
                    on_call=call_hook(None, spending),
                )
            finally:
                if spending is not None:
                    await spending.settle()
        finally:
            if ledger is not None:
                await ledger[1].dispose()
        endpoints = {r.provider: _safe_url(r) for _, r, _ in specs}
    done = report.with_run(run)
    _say_failures(run.calls, endpoints)
    _print(done, args)
    answered = [r for r in run.consensus.reviewers if r.slices_ok > 0]
    if not answered:
        return EXIT_NO_ANSWER
    return EXIT_OK if run.consensus.complete else EXIT_PARTIAL


async def _open_ledger(settings: Settings) -> tuple[QuotaLedger, Database]:
    from app.cli.startup import sqlite_file
    from app.quota import QuotaLedger
    from app.store import migrate
    from app.store.db import Database

    path = sqlite_file(settings.database_url)
    if path is not None and not path.exists():
        print(
            f"aigateway: recording the spend in a new database at {path} (DATABASE_URL sets "
            "another; --no-ledger records none)",
            file=sys.stderr,
        )
    db = Database.from_url(settings.database_url)
    await migrate.upgrade(db.engine)
    return QuotaLedger(db), db


async def _reserve(
    ledger: QuotaLedger,
    settings: Settings,
    repository: str,
    report: Report,
    specs: Sequence[ReviewerSpec],
    metadata: CallMetadata,
) -> Spending | str:
    """The daily and weekly budgets, as the App reserves them; a string says why not."""
    from app.quota import CallOutcome, repository_budget
    from app.review.pipeline import BudgetStop, reserve_review

    granted = await reserve_review(
        ledger,
        settings,
        repository=repository,
        pr_number=None,
        prepared=report.prepared,
        specs=specs,
        budget=repository_budget(settings, report.config),
        metadata=metadata,
    )
    if isinstance(granted, BudgetStop):
        for provider, model in granted.wanted.items():
            await ledger.record_call(
                repository=repository,
                pr_number=None,
                installation_id=None,
                delivery_id=None,
                provider=provider,
                model=model,
                cost_usd=0.0,
                outcome=CallOutcome.REFUSED,
            )
        return granted.reason
    return granted


def _safe_url(reviewer: Any) -> str:
    """The URL a reviewer posts to, without credentials or query."""
    from app.gateway.urls import display_url

    endpoint = getattr(reviewer, "endpoint", None)
    return "(unknown URL)" if endpoint is None else display_url(str(endpoint.request_url))


def _say_failures(calls: Sequence[Any], endpoints: dict[str, str]) -> None:
    """One stderr line per distinct failure: provider, URL, and why."""
    from app.review.pipeline import DISPLAY_NAMES

    seen: dict[tuple[str, str, str], int] = {}
    for call in calls:
        if call.error is None:
            continue
        key = (call.provider, call.error, call.detail or "")
        seen[key] = seen.get(key, 0) + 1
    for (provider, error, detail), count in seen.items():
        name = DISPLAY_NAMES.get(provider, provider)
        why = f"{error}: {detail}" if detail else error
        times = f" ({count} calls)" if count > 1 else ""
        print(
            f"aigateway: {name} ({provider}) failed at {endpoints.get(provider, '?')}: {why}{times}",
            file=sys.stderr,
        )


def _print(report: Report, args: argparse.Namespace) -> None:
    if args.json:
        print(render_json(report))
    else:
        print(render_text(report, markdown=args.markdown, everything=args.all))

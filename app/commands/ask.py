"""``ask <question>``: both reviewers answer a question about the pull request's diff, in one reply.

It reads as fetch → decide → act, and each step is the review's own, so an answer costs what a
review of the same diff would and is held to the same budgets:

- fetch: the pull request's files as the pipeline fetches them (``pipeline.fetch_files``, the
  repository's ignore globs and file cap), rendered by the slicer and cut to one slice's worth of
  tokens, so one question costs at most one slice per model whatever the size of the diff;
- decide and act: ``review.answer.answer_within_budget``, the service API's path too: the
  estimate of one round (a free-text answer has no repair) against what the budgets leave, then
  ``QuotaLedger.reserve``; a refusal is said with the budget's own message, and nothing is sent;
  else both models at once through the gateway clients' ``answer()`` (the review's transport,
  retries and metadata, with ``purpose: ask``), each call recorded in the ledger as it finishes,
  the reservation settled with what was billed; then one reply with both answers.

The ledger has no column for what a call was for, so an ``ask`` row's ``delivery_id`` is the
delivery's id behind ``ask:`` (:func:`ledger_delivery`); the gateway's own logs get ``purpose``.

The question and the answers are untrusted text: the question goes to the models as delimited
data (``review.prompt.question_prompt``), and each answer is cut to :data:`MAX_ANSWER_CHARS`,
cleaned of mentions and command-like lines (``review.sanitize.clean``) and quoted, before the
reply's last guard (``commands.reply``) escapes anything that would still read as a command.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from app.commands.invocation import Invocation, Outcome
from app.commands.reply import quote
from app.gateway import AnswerCall, CallMetadata
from app.quota import Plan, QuotaLedger, format_spend_report, format_usd, repository_budget
from app.review.answer import Unfunded, answer_within_budget
from app.review.diff import slice_diff
from app.review.pipeline import PullGone, fetch_files, ignore_globs, reviewer_specs
from app.review.prompt import ASK_SYSTEM_PROMPT, new_nonce, question_prompt
from app.review.sanitize import clean, truncate

__all__ = [
    "ASK_PURPOSE",
    "MAX_ANSWER_CHARS",
    "MAX_QUESTION_CHARS",
    "Question",
    "ask",
    "ledger_delivery",
    "prepare_question",
]

#: The ``purpose`` sent to the gateway, and the prefix of an ask's ledger rows' delivery id.
ASK_PURPOSE: Final = "ask"
#: The longest question sent (a comment line can be 65,536 characters; a question is not).
MAX_QUESTION_CHARS: Final = 2000
#: The longest answer shown per model: two of them stay far below GitHub's comment limit.
MAX_ANSWER_CHARS: Final = 6000
#: The longest provider error detail shown when a model fails.
MAX_DETAIL_CHARS: Final = 200


@dataclass(frozen=True, slots=True)
class Question:
    """What the models are sent, known before any money is held: the budget reserves for it."""

    system: str
    prompt: str
    not_shown: tuple[str, ...]  # changed files left out of the diff (ignored, binary, over a cap)


def ledger_delivery(delivery_id: str | None) -> str:
    """The ledger's ``delivery_id`` for an ask's calls: tells them apart from a review's."""
    return f"{ASK_PURPOSE}:{delivery_id or ''}"[:100]


async def prepare_question(inv: Invocation, question: str) -> Question:
    """The diff as a review sees it, cut to one slice, with the question as data."""
    settings = inv.ctx.services.settings
    files = await fetch_files(inv.gh, inv.pr, ignore_globs(inv.config))
    cap = settings.slice_token_budget
    slicing = slice_diff(
        files, token_budget=cap, max_files=inv.config.review.max_files, max_tokens_total=cap
    )
    not_shown = tuple(path for path, _ in slicing.not_reviewed)
    prompt = question_prompt(
        inv.pr.info(),
        "\n".join(part.text for part in slicing.slices),
        truncate(question, MAX_QUESTION_CHARS),
        nonce=new_nonce(),
        not_shown=len(not_shown),
    )
    return Question(system=ASK_SYSTEM_PROMPT, prompt=prompt, not_shown=not_shown)


async def _usage_text(inv: Invocation) -> str:
    slug = (await inv.ctx.services.auth.identity()).slug
    return (
        "Nothing was asked: write the question after the command, on the same line, for "
        f"example `@{slug} ask why is the cache flushed twice?`. Both reviewers answer it from "
        "this pull request's diff."
    )


async def ask(inv: Invocation) -> Outcome:
    """Both models answer the rest of the command line; ok when at least one of them did.

    Nothing is spent on an empty question, nor when the budgets cannot hold the estimate."""
    question = inv.command.args.strip()
    if not question:
        return Outcome(False, await _usage_text(inv))
    services = inv.ctx.services
    pipeline = services.pipeline
    if pipeline is None:
        unavailable = services.gateway_error or "the model gateway is not configured"
        return Outcome(False, f"No model could be asked: {clean(unavailable)}.")
    ledger = pipeline.quota or QuotaLedger(services.db)
    try:
        asked = await prepare_question(inv, question)
    except PullGone as exc:
        return Outcome(False, f"Nothing was asked: the pull request is gone ({exc}).")
    pr = inv.pr
    metadata = CallMetadata(
        repository=pr.repository,
        pr=pr.number,
        installation=inv.ctx.installation_id,
        delivery=inv.ctx.delivery_id,
        purpose=ASK_PURPOSE,
    )
    settings = services.settings
    held = await answer_within_budget(
        ledger,
        settings,
        services.health,
        specs=reviewer_specs(pipeline.reviewers, inv.config),
        budget=repository_budget(settings, inv.config),
        metadata=metadata,
        delivery_id=ledger_delivery(inv.ctx.delivery_id),
        system=asked.system,
        prompt=asked.prompt,
        max_tokens=settings.model_max_output_tokens,
    )
    if isinstance(held, Unfunded):
        spend = format_spend_report(held.report)
        return Outcome(False, f"Nothing was asked: {held.reason}. Nothing was spent.\n\n{spend}")
    return _outcome(held.calls, held.plan, asked)


def _heading(call: AnswerCall) -> str:
    return f"**{clean(call.model)}** ({call.provider})"


def _answer_section(call: AnswerCall) -> str:
    if call.text is not None:
        text = truncate(call.text.strip(), MAX_ANSWER_CHARS)
        cut = " (cut off at the output token limit)" if call.cut_off else ""
        return f"{_heading(call)}{cut}:\n\n{quote(text)}"
    why = call.error or "no answer"
    if call.detail:
        why += f" ({truncate(clean(call.detail), MAX_DETAIL_CHARS, note='…')})"
    return f"{_heading(call)} did not answer: {why}."


def _outcome(calls: Sequence[AnswerCall], plan: Plan, asked: Question) -> Outcome:
    """One reply: every answer under its model, the failures with their reason, and the cost."""
    sections = [_answer_section(call) for call in calls]
    notes = list(plan.notes)
    if asked.not_shown:
        names = ", ".join(f"`{clean(p).replace('`', chr(39))}`" for p in asked.not_shown[:5])
        more = f" and {len(asked.not_shown) - 5} more" if len(asked.not_shown) > 5 else ""
        notes.append(
            f"{len(asked.not_shown)} changed file(s) were not shown to the models (ignored "
            f"paths, binary files, or over the size limit): {names}{more}."
        )
    cost = sum(call.cost_usd or 0.0 for call in calls)
    each = ", ".join(
        f"{clean(c.model)} "
        + (format_usd(c.cost_usd) if c.cost_usd is not None else "unknown: no price known")
        for c in calls
    )
    notes.append(f"Cost: {format_usd(cost)} ({each}).")
    answered = [call for call in calls if call.ok]
    if not answered:
        sections.insert(0, "Neither model could answer.")
    return Outcome(bool(answered), "\n\n".join([*sections, *notes]))

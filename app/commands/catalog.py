"""Every command: its one-line help and what runs it. The table ``help`` and the handler read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from app.commands import act, ask, feedback, info, review
from app.commands.fix import fix
from app.commands.invocation import Invocation, Outcome, Runner
from app.commands.parse import CommandName
from app.commands.permissions import required_permission
from app.repo_config import CommandsConfig

__all__ = ["CATALOG", "Entry", "help_text", "unknown_text"]


@dataclass(frozen=True, slots=True)
class Entry:
    summary: str
    runner: Runner


async def _help(inv: Invocation) -> Outcome:
    slug = (await inv.ctx.services.auth.identity()).slug
    return Outcome(True, help_text(slug, inv.config.commands))


CATALOG: Final[Mapping[CommandName, Entry]] = {
    CommandName.HELP: Entry("list the commands", _help),
    CommandName.REVIEW: Entry(
        "review the whole pull request now (drafts too), then act on the review", review.review
    ),
    CommandName.PAUSE: Entry("stop automatic reviews of this pull request", review.pause),
    CommandName.RESUME: Entry("restart automatic reviews of this pull request", review.resume),
    CommandName.ESCALATE: Entry(
        "hand this pull request to a human: label it and request its code owners",
        act.run_escalate,
    ),
    CommandName.MERGE: Entry("merge the last reviewed commit (once its checks pass)", act.merge),
    CommandName.QUOTA: Entry(
        "show what reviews of this pull request and repository cost", info.quota
    ),
    CommandName.CONFIG: Entry(
        "show the effective configuration and where each value came from", info.config
    ),
    CommandName.REPORT: Entry(
        "what became of the changes the bot decided on, and how well its confidence predicted it",
        feedback.report,
    ),
    CommandName.AUTONOMY: Entry(
        "`autonomy reset`: lift the feedback loop's tightening of this repository",
        feedback.autonomy,
    ),
    CommandName.ASK: Entry(
        "both reviewers answer a question about this change's diff (`ask <question>`)", ask.ask
    ),
    CommandName.FIX: Entry(
        "open a pull request into this branch that commits the last review's suggestions", fix
    ),
}


def help_text(slug: str, config: CommandsConfig) -> str:
    """One line per command, with who may run it."""
    how = f"`@{slug} <command>`" + (" or `/<command>`" if config.short_form else "")
    lines = [f"Write {how} on a line of its own in a pull request comment:", ""]
    for name, entry in CATALOG.items():
        needed = required_permission(name, config)
        who = f"needs `{needed.value}`" if needed is not None else "anyone"
        lines.append(f"- `{name.value}`: {entry.summary} ({who})")
    return "\n".join(lines)


def unknown_text(word: str) -> str:
    """The reply to a word that is no command: the ones that are."""
    names = ", ".join(f"`{name.value}`" for name in CATALOG)
    return f"Unknown command `{word}`. The commands are: {names}. Ask for `help` for details."

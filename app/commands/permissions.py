"""Who may run which command: a pure decision over the person's permission, fetched up front.

Commands that spend money or change the repository need ``commands.min_permission`` (default
``write``); ``merge`` needs at least ``write`` whatever that setting says, and never works for the
pull request's author once the bot escalated it, because an escalation is the bot asking someone
*other* than the author to look. Commands that only read (``help``, ``quota``, ``config``,
``report``) are open to anyone who can comment: they cost nothing and reveal nothing a reader
of the repository could not see. ``autonomy reset`` needs ``admin``: it loosens what the bot
may do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, assert_never

from app.commands.parse import CommandName
from app.repo_config import CommandsConfig, Permission

__all__ = ["ADMIN_ONLY", "READ_ONLY", "SPENDING", "Asker", "refusal", "required_permission"]

#: Commands that cost money or act on the repository.
SPENDING: Final = frozenset(
    {
        CommandName.REVIEW,
        CommandName.ASK,
        CommandName.MERGE,
        CommandName.ESCALATE,
        CommandName.PAUSE,
        CommandName.RESUME,
        CommandName.FIX,
    }
)
#: Commands anyone who can comment may run.
READ_ONLY: Final = frozenset(
    {CommandName.HELP, CommandName.QUOTA, CommandName.CONFIG, CommandName.REPORT}
)


#: Commands that loosen what the bot may do: repository admins only, whatever the config says.
ADMIN_ONLY: Final = frozenset({CommandName.AUTONOMY})


@dataclass(frozen=True, slots=True)
class Asker:
    """Who asked, as GitHub says now: their permission (None: no access) and their relation to
    the pull request."""

    login: str
    permission: Permission | None
    is_author: bool
    escalated: bool  # the bot escalated this pull request to a human


def required_permission(name: CommandName, config: CommandsConfig) -> Permission | None:
    """The least permission ``name`` needs; None when anyone who can comment may run it."""
    match name:
        case CommandName.AUTONOMY:
            return Permission.ADMIN
        case CommandName.MERGE:
            return max(config.min_permission, Permission.WRITE, key=lambda p: p.rank)
        case (
            CommandName.REVIEW
            | CommandName.ASK
            | CommandName.ESCALATE
            | CommandName.PAUSE
            | CommandName.RESUME
            | CommandName.FIX
        ):
            return config.min_permission
        case CommandName.HELP | CommandName.QUOTA | CommandName.CONFIG | CommandName.REPORT:
            return None
        case _:
            assert_never(name)


def refusal(name: CommandName, asker: Asker, config: CommandsConfig) -> str | None:
    """Why ``asker`` may not run ``name``, or None when they may."""
    needed = required_permission(name, config)
    if needed is None:
        return None
    held = asker.permission
    if held is None or not held.satisfies(needed):
        has = f"`{held.value}`" if held is not None else "no"
        return (
            f"`{name.value}` needs `{needed.value}` permission on the repository; "
            f"`{asker.login}` has {has} permission"
        )
    if name is CommandName.MERGE and asker.is_author and asker.escalated:
        return (
            "this pull request was escalated to a human reviewer, so its author cannot merge it "
            "through the bot"
        )
    return None

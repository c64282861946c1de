"""The bot's reply to a command: the command quoted, the answer, and no command of its own.

Anything in a reply could be read back as a command (this bot's, or another bot's that accepts
``/word``), so every reply goes through ``neutralise``: echoed user text is quoted and cleaned
(``review/sanitize.clean``), and as a last guard any line that would still parse as a command is
escaped with a backslash, which GitHub renders as nothing.
"""

from __future__ import annotations

from app.commands.parse import parse_commands
from app.github.writes import marker
from app.review.sanitize import GITHUB_BODY_LIMIT, clean, truncate

__all__ = ["neutralise", "quote", "reply_body", "reply_tag"]


def reply_tag(comment_id: int, line: int) -> str:
    """The hidden marker of the reply to one command line (found again after a lost POST)."""
    return marker("command", f"{comment_id}:{line}")


def quote(text: str) -> str:
    """User text as a Markdown quote, every line of it, cleaned of mentions and commands."""
    return "\n".join("> " + line for line in clean(text).splitlines() or [""])


def neutralise(body: str, *, slug: str) -> str:
    """``body`` with every line that would parse as a command (either form) escaped."""
    lines = body.splitlines()
    for command in parse_commands(body, slug=slug, short_form=True):
        line = lines[command.line - 1]
        lines[command.line - 1] = "\\" + line.lstrip()
    return "\n".join(lines)


def reply_body(command_line: str, answer: str, *, slug: str, tag: str) -> str:
    """The whole reply to one command line."""
    text = f"{quote(command_line.strip())}\n\n{answer}"
    text = truncate(text, GITHUB_BODY_LIMIT - len(tag) - 10)
    return neutralise(text, slug=slug) + f"\n\n{tag}"

"""Making model-written text safe to post on GitHub.

Model output is untrusted: it may mention people (``@user`` pings them), contain lines that read
as slash-commands to this bot or to others, break out of a suggestion fence, or exceed GitHub's
size limits. Every string the bot posts that came from a model goes through ``clean``.
"""

from __future__ import annotations

import re

ZWSP = "\u200b"
GITHUB_BODY_LIMIT = 65535
_MENTION = re.compile(r"@(?=[A-Za-z0-9_-])")
_COMMAND_LINE = re.compile(r"^(\s*)([/!])", re.MULTILINE)
_BACKTICK_RUN = re.compile(r"`+")


def clean(text: str, *, limit: int | None = None) -> str:
    """Neutralise mentions and command-like lines; truncate to ``limit`` characters."""
    text = text.replace("\r\n", "\n").replace("\x00", "")
    text = _MENTION.sub("@" + ZWSP, text)
    text = _COMMAND_LINE.sub(lambda m: m.group(1) + ZWSP + m.group(2), text)
    if limit is not None:
        text = truncate(text, limit)
    return text


def truncate(text: str, limit: int, *, note: str = "\n\n… (truncated)") -> str:
    if len(text) <= limit:
        return text
    return text[: max(0, limit - len(note))] + note


def fence(code: str, info: str = "") -> str:
    """A fenced block that the content cannot close early: the fence outgrows any backtick run."""
    longest = max((len(m.group(0)) for m in _BACKTICK_RUN.finditer(code)), default=0)
    ticks = "`" * max(3, longest + 1)
    body = code if code.endswith("\n") or not code else code + "\n"
    return f"{ticks}{info}\n{body}{ticks}"

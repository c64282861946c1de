"""Finding the commands in a comment: a pure function of its text, the App's slug and the config.

A command is a line that starts with ``@<slug> <word>`` or, when ``commands.short_form`` is on,
``/<word>``. What a reader sees as code or as someone else's words is never a command: lines in
fenced code blocks (```` ``` ```` or ``~~~``), in indented code blocks (four spaces or a tab after
a blank line) and in quotes (``>``). That matters because people paste logs and quote earlier
comments (the bot's own replies included), and neither must make the bot spend or act.

Unknown words are kept (``Command.known`` is None) so the handler can say which commands exist;
the parser itself knows nothing of what each one does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

__all__ = ["Command", "CommandName", "Form", "parse_commands"]


class CommandName(StrEnum):
    HELP = "help"
    REVIEW = "review"
    ASK = "ask"
    MERGE = "merge"
    ESCALATE = "escalate"
    PAUSE = "pause"
    RESUME = "resume"
    FIX = "fix"
    QUOTA = "quota"
    CONFIG = "config"
    REPORT = "report"
    AUTONOMY = "autonomy"


class Form(StrEnum):
    """How the command was written: ``@slug review`` or ``/review``."""

    MENTION = "mention"
    SLASH = "slash"


@dataclass(frozen=True, slots=True)
class Command:
    """One command line: its word (lower-cased), the rest of the line, and its 1-based line."""

    name: str
    args: str
    line: int
    form: Form = Form.SLASH

    @property
    def known(self) -> CommandName | None:
        try:
            return CommandName(self.name)
        except ValueError:
            return None


# A command word is followed by whitespace or the end of the line, so ``/usr/bin/env`` and
# ``@slug's`` are not commands.
_WORD: Final = r"(?P<word>[A-Za-z][A-Za-z0-9_-]{0,39})(?=\s|$)(?P<args>.*)$"
_SLASH: Final = re.compile(r"/" + _WORD)
_FENCE: Final = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_QUOTE: Final = re.compile(r"^ {0,3}>")


def _indent_width(line: str) -> int:
    width = 0
    for char in line:
        if char == " ":
            width += 1
        elif char == "\t":
            width += 4 - width % 4
        else:
            break
    return width


def _mention(slug: str) -> re.Pattern[str]:
    return re.compile(r"@" + re.escape(slug) + r"(?:\[bot\])?[ \t]+" + _WORD, re.IGNORECASE)


def parse_commands(body: str, *, slug: str, short_form: bool) -> list[Command]:
    """Every command in ``body``, in the order written."""
    mention = _mention(slug)
    found: list[Command] = []
    fence: str | None = None  # the opening fence while inside a fenced block
    indented = False  # inside an indented code block
    previous_blank = True  # the start of the text counts as after a blank line
    for number, line in enumerate(body.splitlines(), start=1):
        blank = not line.strip()
        if fence is not None:
            closing = _FENCE.match(line)
            if (
                closing is not None
                and closing["fence"][0] == fence[0]
                and len(closing["fence"]) >= len(fence)
                and not closing["info"].strip()
            ):
                fence = None
            previous_blank = False
            continue
        if indented and (blank or _indent_width(line) >= 4):
            continue
        indented = False
        if not blank and _indent_width(line) >= 4 and previous_blank:
            indented = True
            continue
        previous_blank = blank
        opening = _FENCE.match(line)
        if opening is not None and not (opening["fence"][0] == "`" and "`" in opening["info"]):
            fence = opening["fence"]
            continue
        if blank or _QUOTE.match(line):
            continue
        text = line.strip()
        match = mention.match(text) or (_SLASH.match(text) if short_form else None)
        if match is None:
            continue
        form = Form.SLASH if text.startswith("/") else Form.MENTION
        found.append(Command(match["word"].lower(), match["args"].strip(), number, form))
    return found

"""Applying a review's suggestion blocks to files: a pure function of the texts and the blocks.

A suggestion replaces lines ``start``..``end`` (1-based, inclusive, as they are numbered in the
file the review saw: the right side of the diff) with its own lines; no lines at all deletes
them, as GitHub's "Commit suggestion" does for an empty block. What is applied is decided here,
before any write, so ``fix`` either commits exactly this or nothing:

- a suggestion whose lines are past the end of the file, or that no longer read as they did in
  the review (``expected``, taken from the comment's diff hunk), is skipped: it was written for
  other text;
- suggestions whose line ranges overlap are all skipped: applying one would silently undo or
  garble the other, and picking one would be a guess at which the reviewers meant;
- a suggestion that changes nothing (the lines already read so) is skipped;
- the file keeps its line ending (``\\n`` or ``\\r\\n``) and whether it ends with one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "Applied",
    "Skipped",
    "Suggestion",
    "apply_suggestions",
    "hunk_tail",
    "suggested_lines",
]


@dataclass(frozen=True, slots=True)
class Suggestion:
    """One suggestion block: the lines it replaces and the lines it puts there."""

    path: str
    start: int
    end: int
    lines: tuple[str, ...]
    #: The replaced lines as the reviewer saw them (None: not known, not checked).
    expected: tuple[str, ...] | None = None
    #: What the reply calls it (a finding's title); not part of its identity.
    title: str = field(default="", compare=False)

    @property
    def where(self) -> str:
        span = f"line {self.start}" if self.start == self.end else f"lines {self.start}-{self.end}"
        return f"{self.path} {span}"

    def overlaps(self, other: Suggestion) -> bool:
        return self.path == other.path and self.start <= other.end and other.start <= self.end


@dataclass(frozen=True, slots=True)
class Skipped:
    suggestion: Suggestion
    reason: str


@dataclass(frozen=True, slots=True)
class Applied:
    """The new text of every file that changed, what went into it, and what did not."""

    files: Mapping[str, str]
    applied: tuple[Suggestion, ...]
    skipped: tuple[Skipped, ...]


def suggested_lines(code: str) -> tuple[str, ...]:
    """The lines a suggestion block puts in place, read as ``sanitize.fence`` writes the block:
    the text up to its last newline, one line per newline; empty text is a deletion."""
    if not code:
        return ()
    body = code[:-1] if code.endswith("\n") else code
    return tuple(line.removesuffix("\r") for line in body.split("\n"))


def hunk_tail(diff_hunk: str, count: int) -> tuple[str, ...] | None:
    """The last ``count`` right-side lines of a review comment's ``diff_hunk``: the lines the
    comment (a suggestion) was written on, as the reviewer saw them. None when the hunk shows
    fewer (GitHub may cut long hunks): the lines are then not checked."""
    lines: list[str] = []
    for raw in reversed(diff_hunk.split("\n")):
        if len(lines) == count:
            break
        if raw.startswith("@@"):
            break
        if raw.startswith(("-", "\\")):  # the left side, "\ No newline at end of file"
            continue
        lines.append(raw[1:].removesuffix("\r"))
    if len(lines) != count:
        return None
    return tuple(reversed(lines))


def _split(text: str) -> tuple[list[str], str, bool]:
    """A file as lines, its line ending, and whether it ends with one."""
    newline = "\r\n" if "\r\n" in text else "\n"
    lines = text.split(newline)
    final = len(lines) > 1 and lines[-1] == ""
    if final or text == "":
        lines.pop()
    return lines, newline, final


def _join(lines: Sequence[str], newline: str, final: bool) -> str:
    text = newline.join(lines)
    return text + newline if final and lines else text


def _non_overlapping(
    suggestions: Iterable[Suggestion],
) -> tuple[list[Suggestion], list[Skipped]]:
    """Duplicates once; every suggestion that overlaps another one skipped, with which."""
    unique = list(dict.fromkeys(suggestions))
    kept: list[Suggestion] = []
    skipped: list[Skipped] = []
    for s in unique:
        others = [o for o in unique if o is not s and s.overlaps(o)]
        if others:
            which = ", ".join(o.where for o in others)
            skipped.append(Skipped(s, f"overlaps the suggestion on {which}; neither was applied"))
        else:
            kept.append(s)
    return kept, skipped


def apply_suggestions(files: Mapping[str, str], suggestions: Iterable[Suggestion]) -> Applied:
    """Apply what can be applied (see the module docstring). ``files`` holds the text of every
    path a suggestion names, as at the reviewed commit; a path missing from it is skipped."""
    kept, skipped = _non_overlapping(suggestions)
    changed: dict[str, str] = {}
    applied: list[Suggestion] = []
    for path in dict.fromkeys(s.path for s in kept):
        mine = sorted((s for s in kept if s.path == path), key=lambda s: s.start)
        text = files.get(path)
        if text is None:
            skipped += [Skipped(s, "the file is not at the reviewed commit") for s in mine]
            continue
        lines, newline, final = _split(text)
        done: list[Suggestion] = []
        # Bottom up, so each replacement leaves the line numbers above it as they were.
        for s in reversed(mine):
            if s.start < 1 or s.end < s.start or s.end > len(lines):
                skipped.append(Skipped(s, f"not lines of the file (it has {len(lines)})"))
                continue
            current = tuple(line.removesuffix("\r") for line in lines[s.start - 1 : s.end])
            if s.expected is not None and current != s.expected:
                skipped.append(Skipped(s, "those lines changed since the review"))
                continue
            if current == s.lines:
                skipped.append(Skipped(s, "those lines already read as suggested"))
                continue
            lines[s.start - 1 : s.end] = s.lines
            done.append(s)
        if done:
            changed[path] = _join(lines, newline, final)
            applied += done
    return Applied(
        files=changed,
        applied=tuple(sorted(applied, key=_place)),
        skipped=tuple(sorted(skipped, key=lambda k: _place(k.suggestion))),
    )


def _place(s: Suggestion) -> tuple[str, int, int]:
    return (s.path, s.start, s.end)

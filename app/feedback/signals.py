"""What GitHub's events say about earlier changes, read without touching the database.

Every function here is pure: it takes the fields of an event (a commit message, a branch name, a
patch, check names) and answers whether they are evidence of an effect. The handlers fetch,
these decide, the registry stores.

- A **revert** is a commit whose message carries git's ``This reverts commit <sha>.`` line, or a
  merged pull request on GitHub's revert branch (``revert-<number>-<branch>``).
- A **follow-up fix** is a merged pull request marked as a fix (its title, branch or labels) that
  changes lines an earlier change wrote.
- A **CI breakage** is a check or status that failed on a merge commit while the check of the same
  name passed on the pull request's head.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Final

from unidiff.errors import UnidiffParseError
from unidiff.patch import PatchSet

__all__ = [
    "FAILED_CHECK_CONCLUSIONS",
    "FAILED_STATUS_STATES",
    "Effect",
    "Ranges",
    "failed_checks_that_passed",
    "is_fix",
    "overlaps",
    "patch_ranges",
    "revert_branch_number",
    "reverted_shas",
]


class Effect(StrEnum):
    """What happened to a change, worst first (``SEVERITY``)."""

    REVERTED = "reverted"
    BROKE_CI = "broke_ci"
    FOLLOW_UP_FIX = "follow_up_fix"
    HUMAN_OVERRIDE = "human_override"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


_SEVERITY: Final[Mapping[Effect, int]] = {
    Effect.REVERTED: 4,
    Effect.BROKE_CI: 3,
    Effect.FOLLOW_UP_FIX: 2,
    Effect.HUMAN_OVERRIDE: 1,
}

FAILED_CHECK_CONCLUSIONS: Final = frozenset({"failure", "timed_out"})
FAILED_STATUS_STATES: Final = frozenset({"failure", "error"})

# git revert writes "This reverts commit <40 hex>." GitHub's revert button writes the same.
_REVERTS = re.compile(r"\bThis reverts commit ([0-9a-fA-F]{7,40})\b")
# GitHub's "Revert" button on pull request 123 opens a branch named revert-123-<head branch>.
_REVERT_BRANCH = re.compile(r"^revert-(\d+)-")
_FIX_WORDS = re.compile(r"\b(fix|fixes|fixed|fixing|hotfix|bugfix|regression|bug)\b", re.I)
_FIX_BRANCH = re.compile(r"^(fix|hotfix|bugfix|bug)[-/_]", re.I)
FIX_LABELS: Final = frozenset({"bug", "fix", "bugfix", "hotfix", "regression"})

#: ``{path: ((first, last), ...)}``: line ranges of a file, 1-based and inclusive.
Ranges = Mapping[str, tuple[tuple[int, int], ...]]


def reverted_shas(message: str) -> tuple[str, ...]:
    """The commits a commit message says it reverts (lower case, in order, without repeats)."""
    seen: dict[str, None] = {}
    for match in _REVERTS.finditer(message):
        seen.setdefault(match.group(1).lower(), None)
    return tuple(seen)


def revert_branch_number(branch: str) -> int | None:
    """The pull request a GitHub revert branch reverts, or None for any other branch."""
    match = _REVERT_BRANCH.match(branch)
    return int(match.group(1)) if match else None


def is_fix(title: str, branch: str, labels: Iterable[str]) -> bool:
    """Whether a pull request says it fixes something: by a label, its branch or its title."""
    if any(label.strip().casefold() in FIX_LABELS for label in labels):
        return True
    return bool(_FIX_BRANCH.match(branch) or _FIX_WORDS.search(title))


def patch_ranges(files: Iterable[Mapping[str, object]], *, side: str) -> Ranges:
    """Line ranges each file's patch touches, from ``GET /pulls/{n}/files`` entries.

    ``side="new"``: the lines a change wrote (added lines, in the new file). ``side="old"``: the
    lines a change replaced or removed (in the file as it was before), the ones a later fix must
    overlap to be a fix *of* an earlier change. A file without a patch (binary, too large)
    counts as wholly touched, which the range (1, a very large number) stands for.
    """
    if side not in {"new", "old"}:
        raise ValueError(f"side must be 'new' or 'old', not {side!r}")
    result: dict[str, tuple[tuple[int, int], ...]] = {}
    for entry in files:
        path = str(entry.get("filename") or "")
        if not path:
            continue
        if side == "old" and entry.get("previous_filename"):
            path = str(entry["previous_filename"])
        patch = entry.get("patch")
        if not isinstance(patch, str) or not patch:
            result[path] = ((1, _WHOLE_FILE),)
            continue
        lines = _changed_lines(path, patch, side=side)
        if lines:
            result[path] = _collapse(lines)
    return result


_WHOLE_FILE: Final = 10**9


def _changed_lines(path: str, patch: str, *, side: str) -> list[int]:
    text = f"--- a/{path}\n+++ b/{path}\n{patch}"
    if not text.endswith("\n"):
        text += "\n"
    try:
        parsed = PatchSet(text)
    except UnidiffParseError:
        return [1, _WHOLE_FILE]
    lines: list[int] = []
    for patched in parsed:
        for hunk in patched:
            for line in hunk:
                if side == "new" and line.is_added and line.target_line_no is not None:
                    lines.append(line.target_line_no)
                elif side == "old" and line.is_removed and line.source_line_no is not None:
                    lines.append(line.source_line_no)
            if side == "old" and not any(line.is_removed for line in hunk):
                # A pure insertion replaces nothing, but lands between two lines an earlier
                # change may have written: count the line it was inserted after.
                lines.append(max(hunk.source_start, 1))
    return lines


def _collapse(lines: Sequence[int]) -> tuple[tuple[int, int], ...]:
    ranges: list[tuple[int, int]] = []
    for number in sorted(set(lines)):
        if ranges and number <= ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], number)
        else:
            ranges.append((number, number))
    return tuple(ranges)


def overlaps(written: Ranges, changed: Ranges) -> tuple[str, ...]:
    """The paths where ``changed`` (a later fix's old-side lines) meets ``written``."""
    hit: list[str] = []
    for path, ranges in changed.items():
        mine = written.get(path)
        if not mine:
            continue
        if any(a <= d and c <= b for a, b in mine for c, d in ranges):
            hit.append(path)
    return tuple(sorted(hit))


def failed_checks_that_passed(
    failed: Iterable[str], passed_on_head: Iterable[str]
) -> tuple[str, ...]:
    """The failed check names that passed on the pull request's head: the merge broke them.

    A check that also failed (or never ran) on the head says nothing about the merge.
    """
    passed = {name.casefold() for name in passed_on_head}
    return tuple(sorted({name for name in failed if name.casefold() in passed}))

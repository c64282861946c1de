"""Pull-request diffs: parse, decide what is reviewable, map commentable lines, slice for the models.

Why it is built this way:

* **One hunk parser.** Both inputs, a whole unified diff (``Accept: application/vnd.github.diff``,
  the compare API, a local ``git diff`` / ``git format-patch`` file) and GitHub's "list pull request
  files" entries, go through ``unidiff``. A files entry's ``patch`` holds only hunks, so it gets two
  dummy ``---``/``+++`` lines (the real names come from the entry). A whole diff is cut at each
  ``diff --git`` line and every section is parsed on its own: one malformed file then costs that file
  (it is listed as not reviewed, with the parser's complaint), not the whole review, and it measured
  faster than one big ``PatchSet``.
* **Every change is shown, or said to be unseen.** Deletions are changes: a deleted file and a
  file with removed lines only are rendered with their ``-`` lines, and a rename, copy, mode change
  or empty file is rendered as its ``## path (status)`` header, so the models see that it happened.
  What cannot be shown is kept with a ``skip_reason`` so that the decision and the check run can
  count it as not reviewed and say why: ignored paths (gitignore-style globs), binary files or files
  GitHub gave no patch for, patches that could not be parsed, and (in ``slice_diff``) a deleted
  file larger than one slice or a file over a cap.
* **Compact storage.** A diff line is a ``NamedTuple`` (a plain tuple underneath), hunks and files
  are slotted frozen dataclasses, and the line map keeps two sorted ``int`` lists per file (the right
  side of each hunk) searched with ``bisect``: a 3,000-file, 20,000-line pull request stays in a few
  megabytes.
* **Slices are rendered once, here**, so that token accounting is exact for what is sent.

Rendering of a slice (``RENDER_LEGEND`` says the same to the model)::

    ## src/app.py (modified)
    @@ -10,3 +10,4 @@ def handler(request):
    10 body = await request.read()
    11+check(body)
    -old_call(body)
    12+new_call(body)
    13 return web.Response()

* ``## <path> (<status>)`` opens each file section; for renames and copies the status reads
  ``renamed from <old path>``; a file split over several slices says ``, continued`` after the first.
* Hunks keep unified-diff form, except that every line present in the new file (added or context)
  starts with its new line number: ``<n>+<text>`` is added, ``<n> <text>`` is context, ``-<text>``
  is removed (it has no new line number). The number is the ``line`` a comment must cite.
* A content line therefore always starts with a digit or ``-``: no line of the diff can pose as a
  file header, a hunk header or a prompt delimiter placed at the start of a line.
* When one hunk is larger than the budget it is cut into pieces; each later piece starts with up to
  ``context_lines`` preceding new-file lines rendered as context (even when they were added, so that
  every added line is shown as added exactly once), under an ``@@`` header that counts them as
  context.

The ratio of prompt tokens to the diff's own tokens is close to 1: line numbers cost about one
token per line, and the ``## path`` header is cheaper than the ``---``/``+++`` pair it replaces.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

import pathspec
from unidiff.errors import UnidiffParseError
from unidiff.patch import PatchedFile, PatchSet

from app.review.tokens import estimate_tokens

__all__ = [
    "DEFAULT_IGNORE_GLOBS",
    "RENDER_LEGEND",
    "SKIP_BINARY",
    "SKIP_DELETED_TOO_LARGE",
    "DiffLine",
    "DiffParseError",
    "FileDiff",
    "FileStatus",
    "Hunk",
    "LineKind",
    "LineMap",
    "Slice",
    "SliceResult",
    "invalid_ignore_globs",
    "parse_github_files",
    "parse_unified_diff",
    "render_file",
    "slice_diff",
]

DEFAULT_IGNORE_GLOBS: tuple[str, ...] = (
    # lock files
    "*.lock",
    "package-lock.json",
    "yarn.lock",
    "pnpm-lock.yaml",
    "poetry.lock",
    "Cargo.lock",
    "go.sum",
    "uv.lock",
    "Gemfile.lock",
    "composer.lock",
    # vendored code
    "vendor/**",
    "third_party/**",
    "node_modules/**",
    # generated code and minified assets
    "*.min.js",
    "*.min.css",
    "*.map",
    "*_pb2.py",
    "*.pb.go",
    "*.generated.*",
    "dist/**",
    "build/**",
)
"""Gitignore-style patterns (``pathspec.GitIgnoreSpec``) of paths not worth a model's tokens.

A caller's list replaces this one; to extend it pass ``[*DEFAULT_IGNORE_GLOBS, "more/**"]``, and
``!pattern`` re-includes a path, as in ``.gitignore``.
"""

RENDER_LEGEND = (
    "The diff is given file by file. Each file starts with a line '## <path> (<status>)'. "
    "Hunks follow in unified-diff form, except that every line present in the new file starts "
    "with its line number in the new file: '<n>+<text>' is an added line, '<n> <text>' an "
    "unchanged context line, and '-<text>' a removed line (it has no number in the new file). "
    "Cite the number shown as the line of a finding; only numbered lines can be commented on. "
    "Removed lines are changes too: judge what their removal does. A file section with no hunks "
    "was renamed, copied, emptied or had its mode changed, as its status says."
)
"""The rendering rule in words, for the prompt's system message."""

SKIP_BINARY = "binary or too large for GitHub to show a patch"
SKIP_DELETED_TOO_LARGE = "deleted file too large to show in one part of the review"
_SKIP_MALFORMED = "patch could not be parsed"

_DEV_NULL = "/dev/null"
_GIT_HEADER = "diff --git "
_PREFIX_RE = re.compile(r"^[abciow12]/")
_C_ESCAPES = {"a": 7, "b": 8, "t": 9, "n": 10, "v": 11, "f": 12, "r": 13, '"': 34, "\\": 92}


class DiffParseError(ValueError):
    """A diff text that is not a unified diff at all (a git diff never raises: per-file errors
    become a skipped file)."""


class FileStatus(StrEnum):
    """GitHub's ``status`` values for a changed file; a unified diff maps onto the same set."""

    ADDED = "added"
    REMOVED = "removed"
    MODIFIED = "modified"
    RENAMED = "renamed"
    COPIED = "copied"
    CHANGED = "changed"
    UNCHANGED = "unchanged"


class LineKind(StrEnum):
    """The unified-diff marker, so that rendering is a plain concatenation."""

    ADDED = "+"
    REMOVED = "-"
    CONTEXT = " "


class DiffLine(NamedTuple):
    """One line of a hunk; a tuple so that a 20,000-line diff costs no per-line ``__dict__``."""

    kind: LineKind
    old_lineno: int | None
    new_lineno: int | None
    text: str


@dataclass(frozen=True, slots=True)
class Hunk:
    source_start: int
    source_length: int
    target_start: int
    target_length: int
    section_header: str
    lines: tuple[DiffLine, ...]

    @property
    def target_range(self) -> tuple[int, int] | None:
        """First and last new-file line on the right side; ``None`` for a removal-only hunk."""
        if self.target_length <= 0:
            return None
        return self.target_start, self.target_start + self.target_length - 1


@dataclass(frozen=True, slots=True)
class FileDiff:
    """A changed file. ``path`` is the new name (the old one for a deleted file); ``old_path`` is
    set for renames and copies. ``skip_reason`` is ``None`` exactly when the file is reviewable."""

    path: str
    status: FileStatus
    hunks: tuple[Hunk, ...] = ()
    old_path: str | None = None
    is_binary: bool = False
    additions: int = 0
    deletions: int = 0
    skip_reason: str | None = None

    @property
    def reviewable(self) -> bool:
        return self.skip_reason is None


# --------------------------------------------------------------------------------------------
# Parsing


def parse_unified_diff(
    text: str | bytes,
    *,
    ignore_globs: Sequence[str] = DEFAULT_IGNORE_GLOBS,
    strip: int | None = None,
) -> list[FileDiff]:
    """Parse a whole diff: GitHub's ``.diff`` media type, the compare API, or a local patch file.

    Bytes are decoded as UTF-8 with replacement, so a file in another encoding costs a few odd
    characters in the prompt instead of the whole review. A git diff is parsed section by section
    (text before the first ``diff --git``, such as ``format-patch`` mail headers, is ignored); a
    diff without git headers is parsed whole and raises ``DiffParseError`` when it is malformed.

    ``strip`` removes that many leading components from every name, as ``patch -p`` does (a
    ``diff -ruN old/ new/`` names every file ``new/...``); by default a single-letter git prefix
    (``a/``, ``b/``) is removed.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    spec = _ignore_spec(tuple(ignore_globs))
    out: list[FileDiff] = []
    sections = _git_sections(text)
    if sections is None:
        try:
            patched = list(PatchSet(text))
        except UnidiffParseError as exc:
            raise DiffParseError(f"not a unified diff: {exc}") from exc
        out.extend(_from_patched(pf, spec, is_git=False, strip=strip) for pf in patched)
        return out
    for section in sections:
        try:
            patched = list(PatchSet(section))
        except UnidiffParseError as exc:
            out.append(_malformed_section(section, exc, spec, strip))
            continue
        out.extend(_from_patched(pf, spec, is_git=True, strip=strip) for pf in patched)
    return out


def parse_github_files(
    files: Iterable[Mapping[str, Any]], *, ignore_globs: Sequence[str] = DEFAULT_IGNORE_GLOBS
) -> list[FileDiff]:
    """Parse the entries of ``GET /repos/{o}/{r}/pulls/{n}/files`` (all pages, in order).

    GitHub's own ``additions``/``deletions`` are kept when present, because they are the only
    counts available for files without a ``patch``.
    """
    spec = _ignore_spec(tuple(ignore_globs))
    out: list[FileDiff] = []
    for entry in files:
        path = str(entry["filename"])
        status = _status(entry.get("status"))
        previous = entry.get("previous_filename")
        old_path = str(previous) if previous and str(previous) != path else None
        patch = entry.get("patch")
        hunks: tuple[Hunk, ...] = ()
        added = removed = 0
        problem: str | None = None
        is_binary = False
        if isinstance(patch, str):
            try:
                hunks, added, removed = _parse_patch_field(patch)
            except UnidiffParseError as exc:
                problem = f"{_SKIP_MALFORMED}: {exc}"
        elif not (status in _NO_CONTENT_STATUSES and not entry.get("changes")):
            # No patch: a binary file, or one too large for GitHub to render.
            is_binary = True
        out.append(
            _finish(
                path=path,
                old_path=old_path,
                status=status,
                hunks=hunks,
                is_binary=is_binary,
                additions=_int_or(entry.get("additions"), added),
                deletions=_int_or(entry.get("deletions"), removed),
                spec=spec,
                problem=problem,
            )
        )
    return out


_NO_CONTENT_STATUSES = frozenset({FileStatus.RENAMED, FileStatus.COPIED, FileStatus.UNCHANGED})
_KINDS = {"+": LineKind.ADDED, "-": LineKind.REMOVED, " ": LineKind.CONTEXT}


def invalid_ignore_globs(globs: Iterable[str]) -> list[str]:
    """The patterns ``pathspec`` rejects (such as a lone ``!``), for the repository config to
    report as errors; the parse functions raise ``ValueError`` on them instead."""
    bad: list[str] = []
    for glob in globs:
        try:
            pathspec.GitIgnoreSpec.from_lines([glob])
        except ValueError:
            bad.append(glob)
    return bad


@functools.lru_cache(maxsize=64)
def _ignore_spec(globs: tuple[str, ...]) -> pathspec.GitIgnoreSpec:
    """Cached: the same repository config is used for every pull request of the repository."""
    return pathspec.GitIgnoreSpec.from_lines(globs)


def _ignored_by(path: str, spec: pathspec.GitIgnoreSpec) -> str | None:
    result = spec.check_file(path)
    if result.include and result.index is not None:
        return str(spec.patterns[result.index])
    return None


def _finish(
    *,
    path: str,
    old_path: str | None,
    status: FileStatus,
    hunks: tuple[Hunk, ...],
    is_binary: bool,
    additions: int,
    deletions: int,
    spec: pathspec.GitIgnoreSpec,
    problem: str | None,
) -> FileDiff:
    """Decide the skip reason; the first that applies wins, the user's own ignore list first.

    Only what cannot be shown is skipped: a deletion, a rename or an empty file is reviewable.
    """
    pattern = _ignored_by(path, spec)
    reason: str | None
    if pattern is not None:
        reason = f"ignored by pattern {pattern!r}"
    elif problem is not None:
        reason = problem
    elif is_binary:
        reason = SKIP_BINARY
    else:
        reason = None
    return FileDiff(
        path=path,
        status=status,
        hunks=hunks,
        old_path=old_path if status in (FileStatus.RENAMED, FileStatus.COPIED) else None,
        is_binary=is_binary,
        additions=additions,
        deletions=deletions,
        skip_reason=reason,
    )


def _parse_patch_field(patch: str) -> tuple[tuple[Hunk, ...], int, int]:
    """A files entry's ``patch``, through the same parser as whole diffs. The dummy names are
    never used: the entry carries the real ones, and a name with a tab would confuse the parser."""
    if not patch.strip():
        return (), 0, 0
    if patch.startswith("@@"):
        patch = "--- a/f\n+++ b/f\n" + patch
    if not patch.endswith("\n"):
        patch += "\n"
    patched = PatchSet(patch)
    if len(patched) != 1:
        raise UnidiffParseError(f"expected the hunks of one file, found {len(patched)} files")
    return _convert_hunks(patched[0])


def _convert_hunks(pf: PatchedFile) -> tuple[tuple[Hunk, ...], int, int]:
    hunks: list[Hunk] = []
    added = removed = 0
    # Hot loop (one pass per diff line): locals, and tuple.__new__ rather than the NamedTuple's
    # Python-level constructor, which measured a third faster.
    kinds = _KINDS
    added_kind, removed_kind = LineKind.ADDED, LineKind.REMOVED
    make = tuple.__new__
    for h in pf:
        lines: list[DiffLine] = []
        append = lines.append
        for ln in h:
            kind = kinds.get(ln.line_type)
            if kind is None:  # "\ No newline at end of file", or a blank line after the hunk
                continue
            text: str = ln.value
            if text.endswith("\n"):
                text = text[:-1]
                if text.endswith("\r"):
                    text = text[:-1]
            if kind is added_kind:
                added += 1
            elif kind is removed_kind:
                removed += 1
            append(make(DiffLine, (kind, ln.source_line_no, ln.target_line_no, text)))
        hunks.append(
            Hunk(
                h.source_start,
                h.source_length,
                h.target_start,
                h.target_length,
                h.section_header,
                tuple(lines),
            )
        )
    return tuple(hunks), added, removed


def _from_patched(
    pf: PatchedFile, spec: pathspec.GitIgnoreSpec, *, is_git: bool, strip: int | None = None
) -> FileDiff:
    info: list[str] = list(pf.patch_info or ())
    renamed_from = renamed_to = copied_from = copied_to = None
    for line in info:
        if line.startswith("rename from "):
            renamed_from = _unquote(line[12:].rstrip("\n"))
        elif line.startswith("rename to "):
            renamed_to = _unquote(line[10:].rstrip("\n"))
        elif line.startswith("copy from "):
            copied_from = _unquote(line[10:].rstrip("\n"))
        elif line.startswith("copy to "):
            copied_to = _unquote(line[8:].rstrip("\n"))
    source: str = pf.source_file or _DEV_NULL
    target: str = pf.target_file or _DEV_NULL
    old = None if source == _DEV_NULL else _clean_path(source, strip)
    new = None if target == _DEV_NULL else _clean_path(target, strip)
    if strip is not None and strip > 1:  # git's rename lines carry no a/ b/ prefix
        renamed_from, renamed_to, copied_from, copied_to = (
            None if name is None else _strip_components(name, strip - 1)
            for name in (renamed_from, renamed_to, copied_from, copied_to)
        )
    status: FileStatus
    if copied_from is not None:
        status, old, new = FileStatus.COPIED, copied_from, copied_to or new
    elif renamed_from is not None:
        status, old, new = FileStatus.RENAMED, renamed_from, renamed_to or new
    elif old is None:
        status = FileStatus.ADDED
    elif new is None:
        status = FileStatus.REMOVED
    elif is_git and old != new:
        status = FileStatus.RENAMED
    else:
        status = FileStatus.MODIFIED
    path = new if new is not None else old
    if path is None:
        raise DiffParseError("a file entry names neither an old nor a new path")
    hunks, added, removed = _convert_hunks(pf)
    return _finish(
        path=path,
        old_path=old,
        status=status,
        hunks=hunks,
        is_binary=bool(pf.is_binary_file),
        additions=added,
        deletions=removed,
        spec=spec,
        problem=None,
    )


def _malformed_section(
    section: str, exc: UnidiffParseError, spec: pathspec.GitIgnoreSpec, strip: int | None = None
) -> FileDiff:
    rest = section.split("\n", 1)[0][len(_GIT_HEADER) :]
    cut = rest.rfind(' "') if rest.endswith('"') else rest.rfind(" b/")
    path = _clean_path(rest[cut + 1 :] if cut >= 0 else rest, strip)
    return _finish(
        path=path,
        old_path=None,
        status=FileStatus.MODIFIED,
        hunks=(),
        is_binary=False,
        additions=0,
        deletions=0,
        spec=spec,
        problem=f"{_SKIP_MALFORMED}: {exc}",
    )


def _git_sections(text: str) -> list[str] | None:
    """Cut a git diff at each ``diff --git`` line; ``None`` for a diff without git headers.

    Content lines always start with a marker, so only a header can begin a line with this text.
    """
    marker = "\n" + _GIT_HEADER
    start = 0 if text.startswith(_GIT_HEADER) else text.find(marker) + 1
    if start == 0 and not text.startswith(_GIT_HEADER):
        return None
    sections: list[str] = []
    while True:
        nxt = text.find(marker, start)
        if nxt < 0:
            sections.append(text[start:])
            return sections
        sections.append(text[start : nxt + 1])
        start = nxt + 1


def _clean_path(name: str, strip: int | None = None) -> str:
    name = _unquote(name)
    if strip is not None:
        return _strip_components(name, strip)
    return name[2:] if _PREFIX_RE.match(name) else name


def _strip_components(name: str, count: int) -> str:
    """``patch -p``: drop ``count`` leading components, never the file name itself."""
    parts = [p for p in name.split("/") if p]
    return "/".join(parts[min(count, len(parts) - 1) :]) if parts else name


def _unquote(name: str) -> str:
    """Undo git's C-style quoting of unusual paths (``"a/t\\303\\251st.txt"``)."""
    if len(name) < 2 or name[0] != '"' or name[-1] != '"':
        return name
    body = name[1:-1]
    out = bytearray()
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            digits = body[i + 1 : i + 4]
            if len(digits) == 3 and all(d in "01234567" for d in digits):
                out.append(int(digits, 8) & 0xFF)
                i += 4
                continue
            escaped = _C_ESCAPES.get(body[i + 1])
            if escaped is not None:
                out.append(escaped)
                i += 2
                continue
        out += ch.encode("utf-8")
        i += 1
    return out.decode("utf-8", "replace")


def _status(value: object) -> FileStatus:
    try:
        return FileStatus(str(value))
    except ValueError:
        return FileStatus.MODIFIED


def _int_or(value: object, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


# --------------------------------------------------------------------------------------------
# Line map


class LineMap:
    """Where GitHub accepts a review comment: new-file lines on the right side of the diff.

    Per file, two sorted lists hold the first and last right-side line of each hunk, so the map
    costs two integers per hunk rather than one entry per line. Every file with hunks is mapped,
    skipped ones included, because GitHub accepts comments there too. If a path occurs twice (a
    ``format-patch`` series), the last occurrence wins: its line numbers are the newest.
    """

    __slots__ = ("_ranges",)

    def __init__(self, files: Iterable[FileDiff]) -> None:
        ranges: dict[str, tuple[list[int], list[int]]] = {}
        for f in files:
            pairs = sorted(r for h in f.hunks if (r := h.target_range) is not None)
            if pairs:
                ranges[f.path] = ([a for a, _ in pairs], [b for _, b in pairs])
            else:
                ranges.pop(f.path, None)
        self._ranges = ranges

    def __contains__(self, path: object) -> bool:
        return path in self._ranges

    def hunk_range(self, path: str, new_line: int) -> tuple[int, int] | None:
        """The right-side span of the hunk holding ``new_line``, to clamp or move a finding."""
        spans = self._ranges.get(path)
        if spans is None:
            return None
        starts, ends = spans
        i = bisect.bisect_right(starts, new_line) - 1
        if i >= 0 and new_line <= ends[i]:
            return starts[i], ends[i]
        return None

    def is_commentable(self, path: str, new_line: int) -> bool:
        return self.hunk_range(path, new_line) is not None

    def commentable_range(self, path: str, start: int, end: int) -> bool:
        """True when ``start..end`` lies within one hunk: GitHub rejects a multi-line comment
        that spans two hunks even when both ends are in the diff."""
        if end < start:
            return False
        span = self.hunk_range(path, start)
        return span is not None and end <= span[1]


# --------------------------------------------------------------------------------------------
# Slicing


@dataclass(frozen=True, slots=True)
class Slice:
    """One unit of work for one model call; ``tokens`` is ``estimate_tokens(text)``."""

    paths: tuple[str, ...]
    tokens: int
    text: str


@dataclass(frozen=True, slots=True)
class SliceResult:
    """``not_reviewed`` lists skipped files first (input order), then files left out by a cap.

    ``diff_tokens`` estimates the reviewed files as a plain unified diff (``---``/``+++`` lines,
    hunk headers, marked lines); ``prompt_tokens`` sums the slices. Their ratio is the overhead of
    the rendering and of splitting.
    """

    slices: list[Slice]
    not_reviewed: list[tuple[str, str]]
    reviewed_paths: list[str]
    diff_tokens: int
    prompt_tokens: int


def slice_diff(
    files: Sequence[FileDiff],
    *,
    token_budget: int,
    risk_order: Callable[[str], int] | None = None,
    context_lines: int = 3,
    max_files: int | None = None,
    max_tokens_total: int | None = None,
) -> SliceResult:
    """Pack the reviewable files into slices of at most ``token_budget`` estimated tokens.

    Files go in ``risk_order`` (lower key first; stable, so ties keep input order). A file that
    fits the budget is never split; one that does not starts a fresh slice and is cut at hunk
    boundaries, and a hunk that alone exceeds the budget is cut into runs of lines (see the module
    docstring). Only a single line larger than the budget can make a slice exceed it.

    Caps are applied per file, whole: a file is either entirely in the slices or listed in
    ``not_reviewed``. A file over ``max_tokens_total`` is left out, but a smaller later one that
    still fits is taken, so the cap is used fully in risk order.
    """
    if token_budget < 1:
        raise ValueError("token_budget must be at least 1")
    if context_lines < 0:
        raise ValueError("context_lines must not be negative")
    not_reviewed = [(f.path, f.skip_reason) for f in files if f.skip_reason is not None]
    todo = [f for f in files if f.skip_reason is None]
    if risk_order is not None:
        todo.sort(key=lambda f: risk_order(f.path))
    packer = _Packer(token_budget)
    reviewed: list[str] = []
    spent = 0
    diff_tokens = 0
    for f in todo:
        if max_files is not None and len(reviewed) >= max_files:
            not_reviewed.append((f.path, f"over the limit of {max_files} files per review"))
            continue
        parts, own_tokens = _render_parts(f, token_budget, context_lines)
        cost = sum(tokens for _, tokens in parts)
        if f.status is FileStatus.REMOVED and len(parts) > 1:
            # A whole deleted file is shown only when it fits one slice: what it did is in the
            # base branch already, and a large removal is a human's call rather than a cost.
            not_reviewed.append(
                (f.path, f"{SKIP_DELETED_TOO_LARGE} ({f.deletions} lines, about {cost} tokens)")
            )
            continue
        if max_tokens_total is not None and spent + cost > max_tokens_total:
            not_reviewed.append(
                (
                    f.path,
                    f"over the limit of {max_tokens_total} prompt tokens per review "
                    f"(this file needs about {cost})",
                )
            )
            continue
        spent += cost
        diff_tokens += own_tokens
        reviewed.append(f.path)
        packer.add(f.path, parts)
    slices = packer.finish()
    return SliceResult(
        slices=slices,
        not_reviewed=not_reviewed,
        reviewed_paths=reviewed,
        diff_tokens=diff_tokens,
        prompt_tokens=sum(s.tokens for s in slices),
    )


def render_file(f: FileDiff) -> str:
    """A whole file section in the slice format, for tools and tests that need one file."""
    return _file_header(f, continued=False) + "".join(_render_hunk(h) for h in f.hunks)


class _Packer:
    """Greedy first-fit in order: order is risk, so no reordering for a tighter fit."""

    __slots__ = ("_budget", "_paths", "_slices", "_texts", "_tokens")

    def __init__(self, budget: int) -> None:
        self._budget = budget
        self._slices: list[Slice] = []
        self._texts: list[str] = []
        self._paths: list[str] = []
        self._tokens = 0

    def add(self, path: str, parts: list[tuple[str, int]]) -> None:
        for index, (text, tokens) in enumerate(parts):
            starts_split_file = index == 0 and len(parts) > 1
            if self._texts and (starts_split_file or self._tokens + tokens > self._budget):
                self._flush()
            self._texts.append(text)
            self._tokens += tokens
            if not self._paths or self._paths[-1] != path:
                self._paths.append(path)

    def finish(self) -> list[Slice]:
        if self._texts:
            self._flush()
        return self._slices

    def _flush(self) -> None:
        text = "".join(self._texts)
        self._slices.append(Slice(tuple(self._paths), estimate_tokens(text), text))
        self._texts = []
        self._paths = []
        self._tokens = 0


def _render_parts(
    f: FileDiff, budget: int, context_lines: int
) -> tuple[list[tuple[str, int]], int]:
    """The file as one or more (text, tokens) parts, each within budget, and the file's own
    tokens as a plain unified diff (the denominator of the overhead ratio)."""
    hunk_texts = [_render_hunk(h) for h in f.hunks]
    head = _file_header(f, continued=False)
    whole = head + "".join(hunk_texts)
    own = _plain_diff_tokens(f)
    tokens = estimate_tokens(whole)
    if tokens <= budget:
        return [(whole, tokens)], own
    continued = _file_header(f, continued=True)
    room = budget - max(estimate_tokens(head), estimate_tokens(continued))
    pieces: list[tuple[str, int]] = []
    for hunk, text in zip(f.hunks, hunk_texts, strict=True):
        hunk_tokens = estimate_tokens(text)
        if hunk_tokens <= room:
            pieces.append((text, hunk_tokens))
        else:
            pieces.extend(_chunk_hunk(hunk, room, context_lines))
    parts: list[tuple[str, int]] = []
    group: list[str] = []
    group_tokens = 0
    for text, piece_tokens in pieces:
        if group and group_tokens + piece_tokens > room:
            part = (continued if parts else head) + "".join(group)
            parts.append((part, estimate_tokens(part)))
            group, group_tokens = [], 0
        group.append(text)
        group_tokens += piece_tokens
    if group:
        part = (continued if parts else head) + "".join(group)
        parts.append((part, estimate_tokens(part)))
    return parts, own


def _file_header(f: FileDiff, *, continued: bool) -> str:
    if f.old_path is not None and f.status in (FileStatus.RENAMED, FileStatus.COPIED):
        what = f"{f.status.value} from {_one_line(f.old_path)}"
    else:
        what = f.status.value
    if continued:
        what += ", continued"
    return f"## {_one_line(f.path)} ({what})\n"


def _one_line(path: str) -> str:
    """A path with a newline must not break the section structure (or forge a header)."""
    return path.replace("\r", "\\r").replace("\n", "\\n")


def _hunk_header(old_start: int, old_len: int, new_start: int, new_len: int, section: str) -> str:
    tail = f" {section}" if section else ""
    return f"@@ -{old_start},{old_len} +{new_start},{new_len} @@{tail}\n"


def _render_line(line: DiffLine) -> str:
    if line.kind is LineKind.REMOVED:
        return "-" + line.text + "\n"
    return str(line.new_lineno) + line.kind + line.text + "\n"


def _render_hunk(h: Hunk) -> str:
    out = [
        _hunk_header(
            h.source_start, h.source_length, h.target_start, h.target_length, h.section_header
        )
    ]
    removed = LineKind.REMOVED
    for kind, _old, new, text in h.lines:
        if kind is removed:
            out.append("-" + text + "\n")
        else:
            out.append(str(new) + kind + text + "\n")
    return "".join(out)


def _plain_diff_tokens(f: FileDiff) -> int:
    parts = [f"--- a/{f.old_path or f.path}\n+++ b/{f.path}\n"]
    for h in f.hunks:
        parts.append(
            _hunk_header(
                h.source_start, h.source_length, h.target_start, h.target_length, h.section_header
            )
        )
        parts.extend(kind + text + "\n" for kind, _old, _new, text in h.lines)
    return estimate_tokens("".join(parts))


def _chunk_hunk(h: Hunk, room: int, context_lines: int) -> list[tuple[str, int]]:
    """Cut one oversized hunk into runs of lines that fit ``room`` tokens with their header.

    Each later run repeats up to ``context_lines`` preceding new-file lines as context. Line
    estimates are summed (an upper bound: the estimate is subadditive), so each run fits.
    """
    lines = h.lines
    rendered = [_render_line(line) for line in lines]
    costs = [estimate_tokens(text) for text in rendered]
    old_pos: list[int] = []
    new_pos: list[int] = []
    old_cursor, new_cursor = h.source_start, h.target_start
    for line in lines:
        old_pos.append(old_cursor)
        new_pos.append(new_cursor)
        if line.kind is not LineKind.ADDED:
            old_cursor += 1
        if line.kind is not LineKind.REMOVED:
            new_cursor += 1
    widest = max(old_cursor, new_cursor, h.source_length, h.target_length, 1)
    header_cost = estimate_tokens(_hunk_header(widest, widest, widest, widest, h.section_header))
    chunks: list[tuple[str, int]] = []
    i, n = 0, len(lines)
    while i < n:
        overlap: list[int] = []
        k = i - 1
        while k >= 0 and len(overlap) < context_lines:
            if lines[k].kind is not LineKind.REMOVED:
                overlap.append(k)
            k -= 1
        overlap.reverse()
        overlap_texts = [f"{lines[k].new_lineno} {lines[k].text}\n" for k in overlap]
        overlap_costs = [estimate_tokens(text) for text in overlap_texts]
        avail = room - header_cost - sum(overlap_costs)
        while overlap and avail < costs[i]:
            avail += overlap_costs.pop(0)
            overlap_texts.pop(0)
            overlap.pop(0)
        j, used = i, 0
        while j < n and used + costs[j] <= avail:
            used += costs[j]
            j += 1
        if j == i:  # one line larger than the budget: send it alone rather than drop it
            j = i + 1
        own = lines[i:j]
        old_len = len(overlap) + sum(1 for line in own if line.kind is not LineKind.ADDED)
        new_len = len(overlap) + sum(1 for line in own if line.kind is not LineKind.REMOVED)
        first = overlap[0] if overlap else i
        old_start = old_pos[first] if old_len else max(old_pos[first] - 1, 0)
        new_start = new_pos[first] if new_len else max(new_pos[first] - 1, 0)
        text = (
            _hunk_header(old_start, old_len, new_start, new_len, h.section_header)
            + "".join(overlap_texts)
            + "".join(rendered[i:j])
        )
        chunks.append((text, estimate_tokens(text)))
        i = j
    return chunks

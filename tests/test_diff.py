"""Tests for ``app.review.diff`` (parsing, skipping, line map, slicing) and ``app.review.tokens``."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from app.review.diff import (
    DEFAULT_IGNORE_GLOBS,
    SKIP_BINARY,
    SKIP_DELETED_TOO_LARGE,
    DiffParseError,
    FileDiff,
    FileStatus,
    LineKind,
    LineMap,
    SliceResult,
    invalid_ignore_globs,
    parse_github_files,
    parse_unified_diff,
    render_file,
    slice_diff,
)
from app.review.tokens import estimate_tokens

SHARED = Path(__file__).resolve().parents[2] / "shared"
EXAMPLES = SHARED / "fixtures" / "github-rest" / "examples"

# A modified file: two hunks, the first with context, an addition, a removal and a replacement.
PATCH = """@@ -10,4 +10,5 @@ def handler(request):
 body = await request.read()
+check(body)
 data = parse(body)
-old_call(data)
+new_call(data)
 return data
@@ -40,3 +41,3 @@ class Store:
 a = 1
-b = 2
+b = 3
 c = 4"""


def entry(filename: str, patch: str | None = PATCH, **fields: Any) -> dict[str, Any]:
    """A ``pulls/list-files`` entry with the fields our parser reads."""
    out: dict[str, Any] = {"filename": filename, "status": "modified", "sha": "0" * 40}
    if patch is not None:
        out["patch"] = patch
    out.update(fields)
    return out


def git_diff(path: str, patch: str = PATCH, *, old: str | None = None, extra: str = "") -> str:
    """One file of a ``git diff``, as GitHub's ``.diff`` media type returns it."""
    old = old or path
    head = f"diff --git a/{old} b/{path}\n{extra}index 1111111..2222222 100644\n"
    return f"{head}--- a/{old}\n+++ b/{path}\n{patch}\n"


def only(files: list[FileDiff]) -> FileDiff:
    assert len(files) == 1, files
    return files[0]


# --------------------------------------------------------------------------------------------
# tokens


def test_estimate_tokens_rule() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("a") == 1
    assert estimate_tokens("a" * 7) == 2
    assert estimate_tokens("a" * 8) == 3
    assert estimate_tokens("日本語") == 3  # every non-ASCII character is a token
    assert estimate_tokens("ab日") == 2


def test_estimate_tokens_is_subadditive() -> None:
    rng = random.Random(7)
    alphabet = "abc def\n+-é日🙂"
    for _ in range(500):
        a = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        b = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        assert estimate_tokens(a + b) <= estimate_tokens(a) + estimate_tokens(b)


# --------------------------------------------------------------------------------------------
# parsing: whole unified diffs


def test_unified_diff_modified_file_lines_and_counts() -> None:
    f = only(parse_unified_diff(git_diff("src/app.py")))
    assert (f.path, f.old_path, f.status, f.is_binary) == ("src/app.py", None, "modified", False)
    assert (f.additions, f.deletions, f.skip_reason) == (3, 2, None)
    first, second = f.hunks
    assert (first.source_start, first.source_length, first.target_start, first.target_length) == (
        10,
        4,
        10,
        5,
    )
    assert first.section_header == "def handler(request):"
    assert first.lines[:4] == (
        (LineKind.CONTEXT, 10, 10, "body = await request.read()"),
        (LineKind.ADDED, None, 11, "check(body)"),
        (LineKind.CONTEXT, 11, 12, "data = parse(body)"),
        (LineKind.REMOVED, 12, None, "old_call(data)"),
    )
    assert first.lines[3].kind == "-"  # a LineKind is its diff marker
    assert second.section_header == "class Store:"
    assert second.target_range == (41, 43)


def test_unified_diff_rename_with_changes_and_pure_rename() -> None:
    text = git_diff(
        "new/name.py",
        old="old/name.py",
        extra="similarity index 90%\nrename from old/name.py\nrename to new/name.py\n",
    ) + ("diff --git a/a.txt b/b.txt\nsimilarity index 100%\nrename from a.txt\nrename to b.txt\n")
    renamed, pure = parse_unified_diff(text)
    assert (renamed.path, renamed.old_path, renamed.status) == (
        "new/name.py",
        "old/name.py",
        "renamed",
    )
    assert renamed.skip_reason is None
    assert (pure.path, pure.old_path, pure.status) == ("b.txt", "a.txt", "renamed")
    assert pure.skip_reason is None  # shown as its header: the models see the rename
    assert render_file(pure) == "## b.txt (renamed from a.txt)\n"


def test_unified_diff_rename_without_rename_lines_and_empty_new_file() -> None:
    text = git_diff("b.py", old="a.py") + (
        "diff --git a/empty.txt b/empty.txt\nnew file mode 100644\nindex 0000000..e69de29\n"
    )
    moved, empty = parse_unified_diff(text)
    assert (moved.path, moved.old_path, moved.status, moved.skip_reason) == (
        "b.py",
        "a.py",
        "renamed",
        None,
    )
    assert (empty.path, empty.status, empty.skip_reason) == ("empty.txt", "added", None)


def test_unified_diff_copy() -> None:
    text = "diff --git a/a.py b/b.py\nsimilarity index 80%\ncopy from a.py\ncopy to b.py\n" + (
        "--- a/a.py\n+++ b/b.py\n@@ -1 +1,2 @@\n x\n+y\n"
    )
    f = only(parse_unified_diff(text))
    assert (f.path, f.old_path, f.status, f.skip_reason) == ("b.py", "a.py", "copied", None)


def test_unified_diff_binary_files() -> None:
    text = (
        "diff --git a/img/logo.png b/img/logo.png\nindex 1111111..2222222 100644\n"
        "Binary files a/img/logo.png and b/img/logo.png differ\n"
        "diff --git a/new.bin b/new.bin\nnew file mode 100644\nindex 0000000..2222222\n"
        "Binary files /dev/null and b/new.bin differ\n"
    ) + git_diff("src/app.py")
    logo, new, app = parse_unified_diff(text)
    assert (logo.path, logo.is_binary, logo.skip_reason) == ("img/logo.png", True, SKIP_BINARY)
    assert (new.path, new.status, new.is_binary) == ("new.bin", "added", True)
    assert app.skip_reason is None


def test_unified_diff_added_and_deleted_files() -> None:
    text = (
        "diff --git a/new.py b/new.py\nnew file mode 100644\nindex 0000000..1111111\n"
        "--- /dev/null\n+++ b/new.py\n@@ -0,0 +1,2 @@\n+a\n+b\n"
        "diff --git a/gone.py b/gone.py\ndeleted file mode 100644\nindex 1111111..0000000\n"
        "--- a/gone.py\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-a\n-b\n"
    )
    new, gone = parse_unified_diff(text)
    assert (new.path, new.status, new.additions, new.skip_reason) == ("new.py", "added", 2, None)
    assert (gone.path, gone.status, gone.deletions) == ("gone.py", "removed", 2)
    assert gone.skip_reason is None  # a deletion is a change: its lines are shown
    assert render_file(gone) == "## gone.py (removed)\n@@ -1,2 +0,0 @@\n-a\n-b\n"


def test_unified_diff_deletions_only_file_is_shown_with_its_removed_lines() -> None:
    patch = "@@ -1,3 +1,2 @@\n a\n-b\n c"
    f = only(parse_unified_diff(git_diff("x.py", patch)))
    assert (f.status, f.skip_reason) == ("modified", None)
    assert "\n-b\n" in render_file(f)
    # The line map is unchanged: only right-side lines can carry a comment.
    line_map = LineMap([f])
    assert line_map.is_commentable("x.py", 1) and line_map.is_commentable("x.py", 2)
    assert not line_map.is_commentable("x.py", 3)


def test_a_deleted_file_larger_than_one_slice_is_listed_as_not_reviewed() -> None:
    body = "".join(f"-line {i} of a long file that is removed\n" for i in range(400))
    text = (
        "diff --git a/big.py b/big.py\ndeleted file mode 100644\nindex 1111111..0000000\n"
        f"--- a/big.py\n+++ /dev/null\n@@ -1,400 +0,0 @@\n{body}"
    ) + git_diff("small.py")
    files = parse_unified_diff(text)
    result = slice_diff(files, token_budget=1_000)
    assert result.reviewed_paths == ["small.py"]
    [(path, reason)] = result.not_reviewed
    assert path == "big.py" and reason.startswith(SKIP_DELETED_TOO_LARGE)
    small = slice_diff(parse_unified_diff(text), token_budget=100_000)
    assert small.reviewed_paths == ["big.py", "small.py"] and small.not_reviewed == []


def test_unified_diff_quoted_path() -> None:
    text = (
        'diff --git "a/t\\303\\251st file.txt" "b/t\\303\\251st file.txt"\n'
        "index 1111111..2222222 100644\n"
        '--- "a/t\\303\\251st file.txt"\n+++ "b/t\\303\\251st file.txt"\n@@ -1 +1 @@\n-x\n+y\n'
    )
    assert only(parse_unified_diff(text)).path == "tést file.txt"


def test_unified_diff_quoted_path_escapes() -> None:
    text = (
        'diff --git "a/say \\"hi\\"\\tnow\\\\" "b/say \\"hi\\"\\tnow\\\\"\n'
        "new file mode 100644\nindex 0000000..1111111\n"
        '--- /dev/null\n+++ "b/say \\"hi\\"\\tnow\\\\"\n@@ -0,0 +1 @@\n+x\n'
    )
    assert only(parse_unified_diff(text)).path == 'say "hi"\tnow\\'


def test_unified_diff_bytes_line_endings_and_odd_characters() -> None:
    # CRLF content, a form feed and a Unicode line separator must not shift line numbers.
    patch = "@@ -1,2 +1,4 @@\n a\r\n+b\x0cc\r\n+d\u2028e\r\n f\r\n\\ No newline at end of file"
    f = only(parse_unified_diff(git_diff("w.txt", patch).encode("utf-8")))
    assert [(line.new_lineno, line.text) for line in f.hunks[0].lines] == [
        (1, "a"),
        (2, "b\x0cc"),
        (3, "d\u2028e"),
        (4, "f"),
    ]


def test_format_patch_mail_headers_are_ignored() -> None:
    text = (
        "From 0123 Mon Sep 17 00:00:00 2001\nFrom: A <a@example.com>\nSubject: [PATCH] x\n\n---\n"
        " src/app.py | 4 ++--\n 1 file changed\n\n" + git_diff("src/app.py") + "-- \n2.43.0\n"
    )
    f = only(parse_unified_diff(text))
    assert (f.path, f.additions, f.deletions) == ("src/app.py", 3, 2)


def test_malformed_section_is_skipped_without_losing_the_others() -> None:
    broken = "@@ -1,5 +1,5 @@\n-x\n+y"  # the hunk promises five lines and has two
    text = git_diff("bad.py", broken) + git_diff("good.py")
    bad, good = parse_unified_diff(text)
    assert bad.path == "bad.py"
    assert bad.skip_reason is not None
    assert bad.skip_reason.startswith("patch could not be parsed")
    assert good.skip_reason is None


def test_plain_diff_without_git_headers() -> None:
    text = (
        "--- foo.c.orig\t2024-01-01 10:00:00\n+++ foo.c\t2024-01-02 10:00:00\n@@ -1 +1 @@\n-a\n+b\n"
    )
    f = only(parse_unified_diff(text))
    assert (f.path, f.status, f.additions) == ("foo.c", "modified", 1)
    assert parse_unified_diff("") == []
    with pytest.raises(DiffParseError):
        parse_unified_diff("@@ -1 +1 @@\n-a\n+b\n")


# --------------------------------------------------------------------------------------------
# parsing: GitHub "list pull request files" entries


def test_github_files_same_result_as_unified_diff() -> None:
    from_files = only(parse_github_files([entry("src/app.py", additions=3, deletions=2)]))
    from_diff = only(parse_unified_diff(git_diff("src/app.py")))
    assert from_files == from_diff


def test_github_files_statuses_and_skips() -> None:
    files = parse_github_files(
        [
            entry("src/new.py", "@@ -0,0 +1,2 @@\n+a\n+b", status="added", additions=2),
            entry("src/gone.py", "@@ -1,2 +0,0 @@\n-a\n-b", status="removed", deletions=2),
            entry("src/moved.py", status="renamed", previous_filename="src/old.py"),
            entry("src/same.py", None, status="renamed", previous_filename="a.py", changes=0),
            entry("img/big.png", None, additions=0, deletions=0, changes=0),
            entry("data/huge.csv", None, additions=90_000, deletions=0, changes=90_000),
            entry("src/trim.py", "@@ -1,3 +1,2 @@\n a\n-b\n c"),
            entry("src/odd.py", "@@ -1,7 +1,7 @@\n-a\n+b"),
            entry("src/what.py", status="something-new"),
        ]
    )
    by_path = {f.path: f for f in files}
    assert by_path["src/new.py"].status == "added"
    assert by_path["src/new.py"].skip_reason is None
    assert by_path["src/gone.py"].skip_reason is None
    moved = by_path["src/moved.py"]
    assert (moved.status, moved.old_path, moved.skip_reason) == ("renamed", "src/old.py", None)
    assert by_path["src/same.py"].skip_reason is None
    big = by_path["img/big.png"]
    assert (big.is_binary, big.skip_reason) == (True, SKIP_BINARY)
    huge = by_path["data/huge.csv"]
    assert (huge.skip_reason, huge.additions) == (SKIP_BINARY, 90_000)  # GitHub's counts kept
    assert by_path["src/trim.py"].skip_reason is None
    odd_reason = by_path["src/odd.py"].skip_reason
    assert odd_reason is not None
    assert odd_reason.startswith("patch could not be parsed")
    assert by_path["src/what.py"].status == FileStatus.MODIFIED


def test_github_files_unusual_patch_fields() -> None:
    empty, full, two = parse_github_files(
        [
            entry("empty.txt", "", status="added", changes=0),
            entry("full.py", "--- a/full.py\n+++ b/full.py\n" + PATCH),
            entry("two.py", git_diff("x.py") + git_diff("y.py")),
        ]
    )
    assert empty.skip_reason is None
    assert (full.skip_reason, full.additions) == (None, 3)
    assert (
        two.skip_reason
        == "patch could not be parsed: expected the hunks of one file, found 2 files"
    )


def test_github_files_patch_with_no_newline_marker_and_no_trailing_newline() -> None:
    patch = (
        "@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+c\n\\ No newline at end of file"
    )
    f = only(parse_github_files([entry("x.txt", patch)]))
    kinds = [line.kind for line in f.hunks[0].lines]
    assert kinds == [LineKind.CONTEXT, LineKind.REMOVED, LineKind.ADDED]
    assert (f.additions, f.deletions) == (1, 1)


# --------------------------------------------------------------------------------------------
# ignore globs


@pytest.mark.parametrize(
    "path",
    [
        "yarn.lock",
        "web/package-lock.json",
        "sub/dir/Cargo.lock",
        "go.sum",
        "tools/go.sum",
        "vendor/github.com/x/y.go",
        "third_party/lib/a.c",
        "node_modules/left-pad/index.js",
        "static/app.min.js",
        "static/app.min.css",
        "static/app.js.map",
        "proto/api_pb2.py",
        "api/v1/api.pb.go",
        "src/schema.generated.ts",
        "dist/bundle.js",
        "build/out.o",
    ],
)
def test_default_ignore_globs_skip(path: str) -> None:
    f = only(parse_github_files([entry(path)]))
    assert f.skip_reason is not None
    assert f.skip_reason.startswith("ignored by pattern")


@pytest.mark.parametrize(
    "path", ["src/app.py", "src/vendor.py", "docs/build.md", "src/dist/readme.txt", "lock.py"]
)
def test_default_ignore_globs_keep(path: str) -> None:
    assert only(parse_github_files([entry(path)])).skip_reason is None


def test_custom_ignore_globs_replace_the_defaults() -> None:
    globs = ["docs/**", "*.snap"]
    files = parse_unified_diff(
        git_diff("docs/a.md") + git_diff("yarn.lock") + git_diff("t/x.snap"), ignore_globs=globs
    )
    assert [f.skip_reason for f in files] == [
        "ignored by pattern 'docs/**'",
        None,
        "ignored by pattern '*.snap'",
    ]
    assert only(parse_github_files([entry("yarn.lock")], ignore_globs=[])).skip_reason is None


def test_ignore_globs_negation_reincludes() -> None:
    globs = [*DEFAULT_IGNORE_GLOBS, "!keep.lock"]
    files = parse_github_files([entry("keep.lock"), entry("other.lock")], ignore_globs=globs)
    assert [f.skip_reason is None for f in files] == [True, False]


def test_invalid_ignore_globs_are_reported() -> None:
    assert invalid_ignore_globs([*DEFAULT_IGNORE_GLOBS, "!", "ok/**"]) == ["!"]
    with pytest.raises(ValueError):  # noqa: PT011 (the message is pathspec's)
        parse_github_files([entry("a.py")], ignore_globs=["!"])


# --------------------------------------------------------------------------------------------
# line map


def _line_map() -> LineMap:
    files = parse_github_files(
        [
            entry("src/app.py"),  # right side: 10..14 and 41..43
            entry("src/cut.py", "@@ -1,2 +1,2 @@\n a\n+b\n-c\n@@ -8,3 +8,0 @@\n-x\n-y\n-z"),
            entry("gone.py", "@@ -1,2 +0,0 @@\n-a\n-b", status="removed"),
            entry("yarn.lock", "@@ -1 +1 @@\n-a\n+b"),
        ]
    )
    return LineMap(files)


def test_line_map_single_lines() -> None:
    lm = _line_map()
    assert lm.is_commentable("src/app.py", 11)  # added
    assert lm.is_commentable("src/app.py", 10)  # context at the start of a hunk
    assert lm.is_commentable("src/app.py", 14)  # context at the end of a hunk
    assert lm.is_commentable("src/app.py", 42)  # the replacement line
    assert not lm.is_commentable("src/app.py", 9)  # before the first hunk
    assert not lm.is_commentable("src/app.py", 15)  # between hunks
    assert not lm.is_commentable("src/app.py", 40)
    assert not lm.is_commentable("src/app.py", 44)  # after the last hunk
    assert not lm.is_commentable("src/app.py", 0)
    assert not lm.is_commentable("src/other.py", 11)
    # A removal-only hunk has no right side: its old line numbers are not commentable.
    assert lm.is_commentable("src/cut.py", 2)
    assert not any(lm.is_commentable("src/cut.py", n) for n in range(3, 12))
    assert "gone.py" not in lm
    assert lm.is_commentable("yarn.lock", 1)  # skipped but in the diff: GitHub accepts it


def test_line_map_ranges() -> None:
    lm = _line_map()
    assert lm.commentable_range("src/app.py", 10, 14)
    assert lm.commentable_range("src/app.py", 12, 12)
    assert not lm.commentable_range("src/app.py", 13, 15)  # runs past the hunk
    assert not lm.commentable_range("src/app.py", 12, 42)  # both ends in the diff, two hunks
    assert not lm.commentable_range("src/app.py", 13, 11)  # reversed
    assert lm.hunk_range("src/app.py", 42) == (41, 43)
    assert lm.hunk_range("src/app.py", 20) is None


# --------------------------------------------------------------------------------------------
# slicing


_RIGHT = re.compile(r"(\d+)([+ ])(.*)")


def _read_slices(result: SliceResult) -> tuple[Counter[tuple[str, int]], Counter[str], list[str]]:
    """Added (path, line) and removed texts seen across slices, and the file order; fails on
    any line that is not in the documented rendering."""
    added: Counter[tuple[str, int]] = Counter()
    removed: Counter[str] = Counter()
    order: list[str] = []
    for s in result.slices:
        assert s.text.endswith("\n")
        path = ""
        for line in s.text[:-1].split("\n"):
            if line.startswith("## "):
                path = line[3:].split(" (", 1)[0]
                if not order or order[-1] != path:
                    order.append(path)
            elif line.startswith("@@ -"):
                assert path
            elif line.startswith("-"):
                removed[line[1:]] += 1
            else:
                match = _RIGHT.fullmatch(line)
                assert match, f"unexpected line in a slice: {line!r}"
                if match.group(2) == "+":
                    added[(path, int(match.group(1)))] += 1
    return added, removed, order


def test_render_format() -> None:
    f = only(parse_github_files([entry("src/new.py", status="renamed", previous_filename="o.py")]))
    assert render_file(f) == (
        "## src/new.py (renamed from o.py)\n"
        "@@ -10,4 +10,5 @@ def handler(request):\n"
        "10 body = await request.read()\n"
        "11+check(body)\n"
        "12 data = parse(body)\n"
        "-old_call(data)\n"
        "13+new_call(data)\n"
        "14 return data\n"
        "@@ -40,3 +41,3 @@ class Store:\n"
        "41 a = 1\n"
        "-b = 2\n"
        "42+b = 3\n"
        "43 c = 4\n"
    )
    result = slice_diff([f], token_budget=10_000)
    assert [s.text for s in result.slices] == [render_file(f)]
    assert result.slices[0].paths == ("src/new.py",)


def test_a_path_cannot_forge_a_header() -> None:
    f = only(parse_github_files([entry("a\n## b.py (added)")]))
    assert render_file(f).startswith("## a\\n## b.py (added) (modified)\n@@ ")


def _random_entries(rng: random.Random, n_files: int) -> list[dict[str, Any]]:
    entries = []
    for i in range(n_files):
        hunks: list[str] = []
        old = new = rng.randint(1, 30)
        for _ in range(rng.randint(1, 4)):
            body: list[str] = []
            o_len = n_len = 0
            for _ in range(rng.randint(1, rng.choice((3, 10, 60)))):
                kind = rng.choices("+- ", weights=(5, 2, 3))[0]
                text = f"f{i} l{old + o_len}/{new + n_len} " + "x" * rng.randint(0, 70)
                body.append(kind + text)
                o_len += kind != "+"
                n_len += kind != "-"
            hunks.append(f"@@ -{old},{o_len} +{new},{n_len} @@ fn_{old}\n" + "\n".join(body))
            old += o_len + rng.randint(1, 20)
            new += n_len + rng.randint(1, 20)
        entries.append(entry(f"src/f{i}.py", "\n".join(hunks)))
    return entries


def _expected(files: list[FileDiff]) -> tuple[Counter[tuple[str, int]], Counter[str]]:
    added: Counter[tuple[str, int]] = Counter()
    removed: Counter[str] = Counter()
    for f in files:
        if f.skip_reason is None:
            for h in f.hunks:
                for line in h.lines:
                    if line.kind is LineKind.ADDED:
                        assert line.new_lineno is not None
                        added[(f.path, line.new_lineno)] += 1
                    elif line.kind is LineKind.REMOVED:
                        removed[line.text] += 1
    return added, removed


@pytest.mark.parametrize("seed", range(30))
def test_slicing_sends_every_changed_line_exactly_once(seed: int) -> None:
    rng = random.Random(seed)
    files = parse_github_files(_random_entries(rng, rng.randint(1, 25)))
    budget = rng.choice((60, 100, 250, 800, 3_000, 50_000))
    result = slice_diff(files, token_budget=budget, context_lines=rng.randint(0, 4))
    want_added, want_removed = _expected(files)
    got_added, got_removed, _order = _read_slices(result)
    assert got_added == want_added
    assert set(got_added.values()) <= {1}
    assert got_removed == want_removed
    new_text = {
        (f.path, line.new_lineno): line.text for f in files for h in f.hunks for line in h.lines
    }
    for s in result.slices:
        assert s.tokens == estimate_tokens(s.text)
        assert s.tokens <= budget  # no single line here is larger than the smallest budget
        path = ""
        for line in s.text.split("\n"):
            if line.startswith("## "):
                path = line[3:].split(" (", 1)[0]
            elif match := _RIGHT.fullmatch(line):  # numbers shown, context included, are right
                assert new_text[(path, int(match.group(1)))] == match.group(3)
    for f in files:  # a file that fits the budget is never split
        if f.reviewable and estimate_tokens(render_file(f)) <= budget:
            assert sum(f.path in s.paths for s in result.slices) == 1
    assert result.prompt_tokens == sum(s.tokens for s in result.slices)
    assert result.reviewed_paths == [f.path for f in files if f.reviewable]


def test_big_hunk_is_chunked_with_context() -> None:
    body = "\n".join(f"+line {n} " + "y" * 30 for n in range(1, 201))
    f = only(parse_github_files([entry("big.py", f"@@ -0,0 +1,200 @@\n{body}", status="added")]))
    result = slice_diff([f], token_budget=300, context_lines=3)
    assert len(result.slices) > 5
    assert all(s.tokens <= 300 for s in result.slices)
    second = result.slices[1].text.split("\n")
    assert second[0] == "## big.py (added, continued)"
    assert second[1].startswith("@@ -")
    # the three lines before the piece are repeated as context, then the piece's own added lines
    first_own = int(second[5].split("+", 1)[0])
    assert [ln.split(" ", 1)[0] for ln in second[2:5]] == [str(first_own - k) for k in (3, 2, 1)]
    got_added, _removed, _order = _read_slices(result)
    assert sorted(line for _path, line in got_added) == list(range(1, 201))


def test_single_line_over_budget_is_sent_alone() -> None:
    patch = "@@ -1,2 +1,4 @@\n a\n+" + "z" * 2_000 + "\n+short\n b"
    f = only(parse_github_files([entry("long.py", patch)]))
    result = slice_diff([f], token_budget=120)
    too_big = [s for s in result.slices if s.tokens > 120]
    assert len(too_big) == 1
    assert "z" * 2_000 in too_big[0].text
    got_added, _removed, _order = _read_slices(result)
    assert got_added == Counter({("long.py", 2): 1, ("long.py", 3): 1})


def test_risk_order_and_packing() -> None:
    files = parse_github_files([entry(p) for p in ("docs/a.py", "auth/login.py", "lib/b.py")])
    risk = {"auth/login.py": 0, "lib/b.py": 1}

    def order(path: str) -> int:
        return risk.get(path, 5)

    result = slice_diff(files, token_budget=10_000, risk_order=order)
    assert len(result.slices) == 1
    assert result.slices[0].paths == ("auth/login.py", "lib/b.py", "docs/a.py")
    widest = max(estimate_tokens(render_file(f)) for f in files)
    one_each = slice_diff(files, token_budget=widest)
    assert [s.paths for s in one_each.slices] == [("docs/a.py",), ("auth/login.py",), ("lib/b.py",)]
    _added, _removed, file_order = _read_slices(
        slice_diff(files, token_budget=90, risk_order=order)
    )
    assert file_order == ["auth/login.py", "lib/b.py", "docs/a.py"]


def test_caps_and_skipped_files_are_listed_as_not_reviewed() -> None:
    small = "@@ -1 +1,2 @@\n a\n+b"
    big = "@@ -0,0 +1,80 @@\n" + "\n".join(f"+big line {n}" for n in range(80))
    files = parse_github_files(
        [
            entry("img.png", None, changes=10),
            entry("a.py", small),
            entry("big.py", big, status="added"),
            entry("b.py", small),
            entry("yarn.lock"),
            entry("c.py", small),
        ]
    )
    capped = slice_diff(files, token_budget=10_000, max_files=2)
    assert capped.reviewed_paths == ["a.py", "big.py"]
    assert capped.not_reviewed == [
        ("img.png", SKIP_BINARY),
        ("yarn.lock", "ignored by pattern 'yarn.lock'"),
        ("b.py", "over the limit of 2 files per review"),
        ("c.py", "over the limit of 2 files per review"),
    ]
    tokens = slice_diff(files, token_budget=10_000, max_tokens_total=60)
    assert tokens.reviewed_paths == ["a.py", "b.py", "c.py"]  # big.py is left out, whole
    assert [p for p, _ in tokens.not_reviewed] == ["img.png", "yarn.lock", "big.py"]
    assert tokens.not_reviewed[-1][1].startswith("over the limit of 60 prompt tokens")
    assert tokens.prompt_tokens <= 60
    _added, _removed, order = _read_slices(tokens)
    assert "big.py" not in order


def test_prompt_overhead_ratio() -> None:
    files = parse_github_files(_random_entries(random.Random(99), 40))
    result = slice_diff(files, token_budget=2_000)
    assert result.diff_tokens > 0
    assert result.prompt_tokens / result.diff_tokens < 1.25


def test_slice_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="token_budget"):
        slice_diff([], token_budget=0)
    with pytest.raises(ValueError, match="context_lines"):
        slice_diff([], token_budget=10, context_lines=-1)
    empty = slice_diff([], token_budget=10)
    assert (empty.slices, empty.not_reviewed, empty.prompt_tokens) == ([], [], 0)


# --------------------------------------------------------------------------------------------
# GitHub's own examples (../shared/fixtures, read in place)


def _example(relative: str) -> Path:
    path = EXAMPLES / relative
    if not path.exists():
        pytest.skip(f"GitHub REST examples not available: {path} is absent")
    return path


def test_github_example_compare_diff_and_patch() -> None:
    folder = "repos__compare-commits-with-basehead/"
    for name in (
        "response200.default.application_vnd.github.diff.diff",
        "response200.default.application_vnd.github.patch.patch",
    ):
        f = only(parse_unified_diff(_example(folder + name).read_text(encoding="utf-8")))
        assert (f.path, f.status, f.additions, f.deletions, f.skip_reason) == (
            "testfile",
            "modified",
            1,
            1,
            None,
        )
        assert LineMap([f]).is_commentable("testfile", 1)
        assert "1+test change\n" in slice_diff([f], token_budget=1_000).slices[0].text
    as_json = json.loads(
        _example(folder + "response200.default.application_vnd.github.diff.json").read_text()
    )
    assert parse_unified_diff(as_json)[0].hunks[0].lines[1].text == "test change"


def test_github_example_list_files() -> None:
    entries = json.loads(_example("pulls__list-files/response200.default.json").read_text())
    f = only(parse_github_files(entries))
    assert (f.path, f.status, f.additions, f.deletions) == ("file1.txt", "added", 103, 21)
    # GitHub's example patch is two hunk headers on one line with no lines under them: it is
    # reported as not reviewed, with the reason, rather than reviewed as empty.
    assert f.skip_reason is not None
    assert f.skip_reason.startswith("patch could not be parsed")
    assert slice_diff([f], token_budget=1_000).not_reviewed == [("file1.txt", f.skip_reason)]

"""``fix``: the last review's suggestion blocks, applied as one commit in a new pull request.

Pure tests of applying suggestions and of reading them from the review, then end to end: a
review by the fake models with suggestions, ``/fix`` in a comment, and the branch, commit and
pull request the fake GitHub ends up with, compared with the suggestions applied by hand.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.commands.fix import branch_name, fix_refusal, review_findings, suggestion_of
from app.commands.parse import parse_commands
from app.commands.suggestions import Suggestion, apply_suggestions, hunk_tail, suggested_lines
from app.review.consensus import MergedFinding
from app.review.model import Category, Finding, ModelReview, Severity, Verdict
from app.review.pipeline import PullRequest
from app.review.render import comment_body
from app.review.store import PUBLISHED, ReviewRow
from tests.e2e_bot import REPO, Bot
from tests.fakes.git_data import GitObjects
from tests.fakes.github import Pull, fake_sha
from tests.fakes.webhooks import issue_comment_payload

HEAD = "a" * 40
BOT = "aigateway[bot]"
MAINTAINER = "maintainer"


@pytest.fixture
def db_url(sqlite_url: str) -> str:
    """SQLite only: the end-to-end runs here exercise the command, not the database."""
    return sqlite_url


def _s(start: int, end: int, *lines: str, path: str = "f.py", **kw: Any) -> Suggestion:
    return Suggestion(path, start, end, tuple(lines), **kw)


# ------------------------------------------------------------------------- applying (pure)


@pytest.mark.parametrize(
    ("code", "lines"),
    [
        ("x = 1", ("x = 1",)),
        ("x = 1\n", ("x = 1",)),
        ("a\nb\n", ("a", "b")),
        ("a\r\nb\r\n", ("a", "b")),
        ("\n", ("",)),
        ("", ()),  # an empty block deletes the lines
    ],
)
def test_suggested_lines_read_the_block_as_the_renderer_fences_it(
    code: str, lines: tuple[str, ...]
) -> None:
    assert suggested_lines(code) == lines


def test_a_single_line_suggestion_replaces_its_line() -> None:
    result = apply_suggestions({"f.py": "a\nb\nc\n"}, [_s(2, 2, "B")])
    assert result.files == {"f.py": "a\nB\nc\n"}
    assert [s.where for s in result.applied] == ["f.py line 2"]
    assert result.skipped == ()


def test_a_multi_line_suggestion_replaces_its_range_with_any_number_of_lines() -> None:
    text = "1\n2\n3\n4\n5\n"
    assert apply_suggestions({"f.py": text}, [_s(2, 4, "x")]).files["f.py"] == "1\nx\n5\n"
    grown = apply_suggestions({"f.py": text}, [_s(2, 3, "p", "q", "r")]).files["f.py"]
    assert grown == "1\np\nq\nr\n4\n5\n"


def test_an_empty_suggestion_deletes_its_lines() -> None:
    result = apply_suggestions({"f.py": "keep\ndrop\ndrop too\nkeep\n"}, [_s(2, 3)])
    assert result.files == {"f.py": "keep\nkeep\n"}


def test_several_suggestions_in_one_file_use_the_reviewed_line_numbers() -> None:
    # The first one grows the file; the later ones still name lines as the review saw them.
    text = "".join(f"line {n}\n" for n in range(1, 9))
    result = apply_suggestions(
        {"f.py": text},
        [_s(7, 7, "seven"), _s(1, 1, "one", "one and a half"), _s(4, 5)],
    )
    assert result.files["f.py"] == ("one\none and a half\nline 2\nline 3\nline 6\nseven\nline 8\n")
    assert [s.start for s in result.applied] == [1, 4, 7]


def test_overlapping_suggestions_are_both_skipped_and_the_rest_applied() -> None:
    text = "a\nb\nc\nd\ne\n"
    result = apply_suggestions(
        {"f.py": text, "g.py": "x\n"},
        [
            _s(2, 3, "B", title="one"),
            _s(3, 4, "C", title="two"),
            _s(5, 5, "E"),
            _s(1, 1, "X", path="g.py"),
        ],
    )
    assert result.files == {"f.py": "a\nb\nc\nd\nE\n", "g.py": "X\n"}
    assert [(k.suggestion.title, k.reason) for k in result.skipped] == [
        ("one", "overlaps the suggestion on f.py lines 3-4; neither was applied"),
        ("two", "overlaps the suggestion on f.py lines 2-3; neither was applied"),
    ]


def test_a_suggestion_made_twice_is_applied_once() -> None:
    result = apply_suggestions({"f.py": "a\nb\n"}, [_s(1, 1, "A"), _s(1, 1, "A")])
    assert result.files == {"f.py": "A\nb\n"}
    assert len(result.applied) == 1 and result.skipped == ()


def test_suggestions_whose_lines_no_longer_match_are_skipped() -> None:
    result = apply_suggestions(
        {"f.py": "a\nb\nc\n"},
        [
            _s(1, 1, "A", expected=("a",)),  # still as reviewed: applied
            _s(2, 2, "B", expected=("not b",)),  # the file changed under it
            _s(3, 4, "C"),  # past the end of the file
        ],
    )
    assert result.files == {"f.py": "A\nb\nc\n"}
    assert [(k.suggestion.start, k.reason) for k in result.skipped] == [
        (2, "those lines changed since the review"),
        (3, "not lines of the file (it has 3)"),
    ]


def test_a_suggestion_that_changes_nothing_or_names_a_missing_file_is_skipped() -> None:
    result = apply_suggestions({"f.py": "a\n"}, [_s(1, 1, "a"), _s(1, 1, "x", path="gone.py")])
    assert result.files == {}
    assert [k.reason for k in result.skipped] == [
        "those lines already read as suggested",
        "the file is not at the reviewed commit",
    ]


@pytest.mark.parametrize(
    ("text", "suggestion", "expected"),
    [
        ("a\nb", _s(2, 2, "B"), "a\nB"),  # no final newline, and none added
        ("a\nb\n", _s(2, 2, "B"), "a\nB\n"),
        ("a\r\nb\r\n", _s(1, 1, "A", "A2"), "A\r\nA2\r\nb\r\n"),  # CRLF kept
        ("only\n", _s(1, 1), ""),  # every line deleted
        ("a\n\n", _s(2, 2, "b"), "a\nb\n"),  # a blank last line is a line
    ],
)
def test_the_files_line_endings_are_kept(text: str, suggestion: Suggestion, expected: str) -> None:
    assert apply_suggestions({"f.py": text}, [suggestion]).files == {"f.py": expected}


def test_the_hunk_tail_is_the_right_side_the_comment_was_written_on() -> None:
    hunk = "@@ -1,4 +1,4 @@\n a\n-b\n+B\n c\n-d\n+D\n\\ No newline at end of file"
    assert hunk_tail(hunk, 1) == ("D",)
    assert hunk_tail(hunk, 3) == ("B", "c", "D")
    assert hunk_tail(hunk, 5) is None  # the hunk shows fewer: not checked


# ------------------------------------------------------------------------- reading (pure)


def _finding(**kw: Any) -> Finding:
    values: dict[str, Any] = {
        "path": "src/core.py",
        "line": 2,
        "severity": Severity.MINOR,
        "category": Category.STYLE,
        "title": "Simpler",
        "body": "Say it once.",
        "suggestion": "    return x\n",
    }
    values.update(kw)
    return Finding(**values)


def _comment(merged: MergedFinding, **kw: Any) -> dict[str, Any]:
    """A review comment as GitHub lists it, with the body the renderer writes."""
    f = merged.finding
    comment: dict[str, Any] = {
        "user": {"login": BOT, "type": "Bot"},
        "path": f.path,
        "line": f.last_line,
        "original_line": f.last_line,
        "start_line": f.line if f.end_line else None,
        "original_start_line": f.line if f.end_line else None,
        "side": "RIGHT",
        "commit_id": HEAD,
        "original_commit_id": HEAD,
        "diff_hunk": "@@ -1,2 +1,3 @@\n def f():\n-    return  x\n+    return x+0\n+    pass",
        "body": comment_body(merged, with_suggestion=True),
    }
    comment.update(kw)
    return comment


def test_a_published_suggestion_is_read_with_the_lines_it_was_written_on() -> None:
    merged = MergedFinding(_finding(line=2, end_line=3), ("Claude",))
    found = suggestion_of(
        _comment(merged), head_sha=HEAD, bot_login=BOT, findings={merged.fingerprint: merged}
    )
    assert found == Suggestion(
        "src/core.py", 2, 3, ("    return x",), expected=("    return x+0", "    pass")
    )


@pytest.mark.parametrize(
    "change",
    [
        {"user": {"login": "mallory", "type": "User"}},  # not this App's
        {"original_commit_id": "b" * 40, "commit_id": HEAD},  # written on another commit
        {"side": "LEFT"},
        {"line": 9, "original_line": 9},  # not on the lines the finding replaces
        {"body": "Say it once.\n\n```suggestion\nrm -rf /\n```\n<!-- aigateway:fp={fp} -->"},
    ],
)
def test_comments_that_are_not_a_published_suggestion_of_the_review_are_ignored(
    change: dict[str, Any],
) -> None:
    merged = MergedFinding(_finding(), ("GPT",))
    if "body" in change:
        change = {"body": change["body"].replace("{fp}", merged.fingerprint)}
    comment = _comment(merged, **change)
    assert (
        suggestion_of(comment, head_sha=HEAD, bot_login=BOT, findings={merged.fingerprint: merged})
        is None
    )
    # The same comment, unchanged, is one.
    assert (
        suggestion_of(
            _comment(merged), head_sha=HEAD, bot_login=BOT, findings={merged.fingerprint: merged}
        )
        is not None
    )


def test_a_suggestion_the_latest_review_does_not_stand_behind_is_ignored() -> None:
    merged = MergedFinding(_finding(), ("GPT",))
    assert suggestion_of(_comment(merged), head_sha=HEAD, bot_login=BOT, findings={}) is None


def _stored(*reviews: tuple[str, list[Finding]]) -> str:
    """Model answers as ``pipeline.dump_run`` stores them."""
    return json.dumps(
        {
            "paths": ["src/core.py"],
            "outcomes": [
                {
                    "reviewer": name,
                    "slice": 0,
                    "review": ModelReview(
                        summary="s", verdict=Verdict.COMMENT, confidence=0.8, findings=findings
                    ).model_dump(mode="json"),
                    "error": None,
                }
                for name, findings in reviews
            ],
            "calls": [],
        }
    )


def test_the_reviews_findings_are_merged_as_the_pipeline_merged_them() -> None:
    claude = _finding(line=2, end_line=3, title="Claude's title")
    gpt = _finding(line=3, title="GPT's title", suggestion="other\n")
    plain = _finding(line=9, category=Category.BUG, suggestion=None)
    findings = review_findings(_stored(("Claude", [claude, plain]), ("GPT", [gpt])))
    [merged] = findings.values()  # one merged finding with a suggestion; ``plain`` has none
    assert merged.raised_by == ("Claude", "GPT")
    assert merged.finding.suggestion == claude.suggestion
    assert review_findings("not json") == {} and review_findings(None) == {}


def _pr(**kw: Any) -> PullRequest:
    values: dict[str, Any] = {
        "repository": REPO,
        "number": 1,
        "state": "open",
        "head_sha": HEAD,
        "head_ref": "feature",
        "head_repo": REPO,
        "base_ref": "main",
        "base_sha": "c" * 40,
        "default_branch": "main",
        "title": "t",
        "body": "",
        "draft": False,
        "author": "octocat",
        "labels": frozenset(),
    }
    values.update(kw)
    return PullRequest(**values)


def _row(head: str = HEAD) -> ReviewRow:
    return ReviewRow(1, REPO, 1, head, PUBLISHED, None, 0.8, "success")


@pytest.mark.parametrize(
    ("pr", "row", "reason"),
    [
        (_pr(), None, "no review of this pull request was published yet"),
        (_pr(head_repo="someone/demo"), _row(), "is in the fork `someone/demo`"),
        (_pr(head_sha="d" * 40), _row(), "the head moved from `aaaaaaaaaaaa` to `dddddddddddd`"),
        (_pr(state="closed"), _row(), "the pull request is closed"),
    ],
)
def test_fix_is_refused_before_anything_is_read(
    pr: PullRequest, row: ReviewRow | None, reason: str
) -> None:
    refusal = fix_refusal(pr, row)
    assert refusal is not None and reason in refusal
    assert fix_refusal(_pr(), _row()) is None


def test_branch_names_are_per_pull_request_and_reviewed_commit() -> None:
    assert branch_name(7, HEAD) == "aigateway/fix-7-aaaaaaa"
    assert branch_name(7, HEAD, 2) == "aigateway/fix-7-aaaaaaa-2"


# ------------------------------------------------------------------------- the fake's git objects


def test_the_fakes_object_ids_are_gits() -> None:
    git = GitObjects()
    assert git.add_blob(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"
    assert git.tree_from_files({}) == "4b825dc642cb6eb9a060e54bf8d69288fbee4904"  # the empty tree
    tree = git.tree_from_files({"a/b.txt": "x\n", "c.txt": "y\n"})
    # A tree on top of it changing one file, then changing it back, is the same tree again.
    changed = git.create_tree(
        [{"path": "a/b.txt", "mode": "100644", "type": "blob", "content": "z"}], tree
    )
    assert changed != tree and git.files(changed)["a/b.txt"] == b"z"
    back = git.create_tree(
        [{"path": "a/b.txt", "mode": "100644", "type": "blob", "sha": git.add_blob(b"x\n")}],
        changed,
    )
    assert back == tree


# ------------------------------------------------------------------------- end to end

CORE = "src/app/core.py"
SCRIPT = "scripts/run.sh"
CORE_TEXT = (
    "import os\n\ndef total(values):\n    result = 0\n    for v in values:\n"
    "        result = result + v\n    return result\n"
)
SCRIPT_TEXT = "#!/bin/sh\necho hello\necho debug"  # no newline at the end
README_TEXT = "# demo\n"


def _added(path: str, text: str) -> dict[str, Any]:
    """A list-files entry for a new file: every line on the right side of one hunk."""
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    patch = f"@@ -0,0 +1,{len(lines)} @@\n" + "\n".join(f"+{line}" for line in lines)
    if not text.endswith("\n"):
        patch += "\n\\ No newline at end of file"
    return {"filename": path, "status": "added", "patch": patch}


SUGGESTING = {
    "anthropic": [
        Finding(
            path=CORE,
            line=4,
            end_line=7,
            severity=Severity.MINOR,
            category=Category.MAINTAINABILITY,
            title="Use sum()",
            body="The loop is `sum`.",
            suggestion="    return sum(values)",
        ),
        Finding(
            path=CORE,
            line=3,
            severity=Severity.NIT,
            category=Category.DOCS,
            title="Say what it totals",
            body="A docstring would help.",
        ),
    ],
    "openai": [
        Finding(
            path=CORE,
            line=1,
            severity=Severity.MINOR,
            category=Category.STYLE,
            title="Unused import",
            body="`os` is not used.",
            suggestion="",
        ),
        Finding(
            path=SCRIPT,
            line=3,
            severity=Severity.MINOR,
            category=Category.STYLE,
            title="Leftover debug output",
            body="Say goodbye instead.",
            suggestion="echo done\n",
        ),
    ],
}
CORE_FIXED = "\ndef total(values):\n    return sum(values)\n"
SCRIPT_FIXED = "#!/bin/sh\necho hello\necho done"


async def _reviewed(bot: Bot, findings: dict[str, list[Finding]] | None = None) -> Pull:
    """PR #1 adding two files (one executable), opened and reviewed by the fake models."""
    head = fake_sha("reviewed head")
    for path, text in ((CORE, CORE_TEXT), (SCRIPT, SCRIPT_TEXT), ("README.md", README_TEXT)):
        bot.github.set_file(REPO, path, text, ref=head)
    bot.github.set_file_mode(REPO, SCRIPT, "100755")
    pull = bot.github.add_pull(
        REPO, 1, head_sha=head, files=[_added(CORE, CORE_TEXT), _added(SCRIPT, SCRIPT_TEXT)]
    )
    chosen = SUGGESTING if findings is None else findings
    bot.gateway.anthropic.set_review(
        verdict="comment", confidence=0.8, findings=chosen["anthropic"]
    )
    bot.gateway.openai.set_review(verdict="comment", confidence=0.8, findings=chosen["openai"])
    await bot.open_pull(pull)
    assert bot.github.pull(REPO, 1).reviews, "the review was not published"
    bot.github.set_permission(REPO, MAINTAINER, "write")
    return pull


async def _command(
    bot: Bot, body: str = "/fix", *, user: str = MAINTAINER, comment_id: int | None = None
) -> int:
    if comment_id is None or comment_id not in bot.github.issue_comments:
        comment_id = int(
            bot.github.add_issue_comment(REPO, 1, body, user=user, comment_id=comment_id)["id"]
        )
    await bot.deliver(
        "issue_comment",
        issue_comment_payload(repo=REPO, number=1, body=body, user=user, comment_id=comment_id),
    )
    return comment_id


def _replies(bot: Bot) -> list[str]:
    bodies = [
        str(c["body"])
        for c in bot.github.comments_on(REPO, 1)
        if c["user"] == BOT and "<!-- aigateway:command:" in str(c["body"])
    ]
    for body in bodies:
        assert parse_commands(body, slug="aigateway", short_form=True) == [], body
    return bodies


def _fix_branches(bot: Bot) -> dict[str, str]:
    return {
        name: sha
        for name, sha in bot.github.repo(REPO).branches.items()
        if name.startswith("aigateway/fix-")
    }


def _opened(bot: Bot) -> list[Pull]:
    return [p for p in bot.github.repo(REPO).pulls.values() if p.number != 1]


def _git_writes(bot: Bot) -> list[Any]:
    return [r for r in bot.github.writes() if "/git/" in r.path or r.path.endswith("/pulls")]


async def test_fix_opens_a_pull_request_whose_branch_holds_the_suggestions_applied(
    bot: Bot,
) -> None:
    pull = await _reviewed(bot)
    comment = await _command(bot)

    [(branch, sha)] = _fix_branches(bot).items()
    assert branch == f"aigateway/fix-1-{pull.head_sha[:7]}"
    # The files: each suggestion applied to the reviewed commit, the rest of it unchanged.
    assert bot.github.files_on(REPO, branch) == {
        CORE: CORE_FIXED,
        SCRIPT: SCRIPT_FIXED,
        "README.md": README_TEXT,
    }
    assert bot.github.tree_entries(REPO, branch)[SCRIPT].mode == "100755"  # still executable
    # One commit, on top of the reviewed head; the pull request's own branch is untouched.
    commit = bot.github.git_commit(REPO, branch)
    assert commit is not None and commit.sha == sha and commit.parents == (pull.head_sha,)
    assert bot.github.repo(REPO).branches["feature"] == pull.head_sha
    # A pull request from that branch into the reviewed pull request's head branch.
    [opened] = _opened(bot)
    assert (opened.head_ref, opened.base) == (branch, "feature")
    assert "Use sum()" in str(opened.body) and "Leftover debug output" in str(opened.body)
    [reply] = _replies(bot)
    assert f"Opened [#{opened.number}](https://github.com/{REPO}/pull/{opened.number})" in reply
    assert "3 suggestions of the review" in reply
    assert "Not applied" not in reply
    assert [r["content"] for r in bot.github.reactions[comment]] == ["eyes", "rocket"]


async def test_fix_is_refused_when_the_review_has_no_suggestions(bot: Bot) -> None:
    without = {
        name: [f.model_copy(update={"suggestion": None}) for f in findings]
        for name, findings in SUGGESTING.items()
    }
    await _reviewed(bot, without)
    await _command(bot)

    [reply] = _replies(bot)
    assert "Nothing fixed: the review of" in reply and "has no suggestion blocks" in reply
    assert _git_writes(bot) == [] and _fix_branches(bot) == {}


async def test_fix_is_refused_when_the_head_moved_since_the_review(bot: Bot) -> None:
    await _reviewed(bot)
    bot.github.move_head(REPO, 1, fake_sha("unreviewed"))
    await _command(bot)

    [reply] = _replies(bot)
    assert "Nothing fixed: the head moved from" in reply and "ask for `review` first" in reply
    assert _git_writes(bot) == [] and _opened(bot) == []


async def test_fix_is_refused_for_a_fork(bot: Bot) -> None:
    bot.github.add_pull(REPO, 1, fork=True, user="outsider", files=[_added(CORE, CORE_TEXT)])
    bot.github.set_permission(REPO, MAINTAINER, "write")
    await _command(bot)

    [reply] = _replies(bot)
    assert "is in the fork `outsider/demo`, where this App cannot write" in reply
    assert _git_writes(bot) == []


async def test_a_reader_cannot_fix_and_nothing_is_written(bot: Bot) -> None:
    await _reviewed(bot)
    bot.github.set_permission(REPO, "reader", "read")
    comment = await _command(bot, user="reader")

    [reply] = _replies(bot)
    assert "`fix` needs `write` permission" in reply
    assert _git_writes(bot) == [] and _opened(bot) == []
    assert [r["content"] for r in bot.github.reactions[comment]] == ["eyes", "confused"]


async def test_a_redelivered_fix_opens_one_branch_and_one_pull_request(bot: Bot) -> None:
    await _reviewed(bot)
    comment = await _command(bot)
    await _command(bot, comment_id=comment)  # the same comment, delivered again

    assert len(_fix_branches(bot)) == 1
    assert len(_opened(bot)) == 1
    assert len(_replies(bot)) == 1
    # Asked again in a new comment: the same change is already proposed, and said so.
    await _command(bot)
    assert len(_fix_branches(bot)) == 1 and len(_opened(bot)) == 1
    assert "are already proposed in [#2]" in _replies(bot)[-1]


async def test_a_fix_that_failed_after_its_branch_reuses_it_when_retried(bot: Bot) -> None:
    await _reviewed(bot)
    # Every attempt at the pull request fails: the command fails after creating its branch,
    # gives its claim back, and the queue retries the delivery.
    bot.github.fail_next("POST", rf"^/repos/{REPO}/pulls$", 500, times=3)
    comment = await _command(bot)

    [(branch, _)] = _fix_branches(bot).items()
    refs = bot.github.calls("POST", "/git/refs$")
    assert [r.status for r in refs] == [201, 422]  # the retry found the branch it had made
    [opened] = _opened(bot)
    assert opened.head_ref == branch
    assert bot.github.files_on(REPO, branch)[CORE] == CORE_FIXED
    [reply] = _replies(bot)
    assert f"Opened [#{opened.number}]" in reply
    assert [r["content"] for r in bot.github.reactions[comment]] == ["eyes", "confused", "rocket"]


async def test_overlapping_suggestions_are_listed_as_not_applied(bot: Bot) -> None:
    overlapping = {
        "anthropic": SUGGESTING["anthropic"],
        "openai": [
            *SUGGESTING["openai"],
            Finding(
                path=CORE,
                line=6,
                severity=Severity.NIT,
                category=Category.STYLE,
                title="Augmented assignment",
                body="`+=` reads better.",
                suggestion="        result += v",
            ),
        ],
    }
    await _reviewed(bot, overlapping)
    await _command(bot)

    [branch] = _fix_branches(bot)
    files = bot.github.files_on(REPO, branch)
    assert files[CORE] == CORE_TEXT.removeprefix("import os\n")  # only the import went
    assert files[SCRIPT] == SCRIPT_FIXED
    [reply] = _replies(bot)
    assert "2 suggestions of the review" in reply
    assert "Not applied:" in reply
    assert "`src/app/core.py lines 4-7` (Use sum()): overlaps the suggestion on" in reply
    assert "`src/app/core.py line 6` (Augmented assignment): overlaps" in reply


async def test_help_lists_fix_as_available(bot: Bot) -> None:
    bot.github.add_pull(REPO, 1, files=[_added(CORE, CORE_TEXT)])
    await _command(bot, "/help", user="passer-by")

    [reply] = _replies(bot)
    line = next(x for x in reply.splitlines() if x.startswith("- `fix`:"))
    assert line.endswith("(needs `write`)") and "coming soon" not in line


async def test_a_rereview_of_the_same_commit_keeps_the_suggestions_it_did_not_repost(
    bot: Bot,
) -> None:
    pull = await _reviewed(bot)
    await _command(bot, "/review")  # the same findings again: none is posted a second time
    reviews = bot.github.pull(REPO, 1).reviews
    assert len(reviews) == 2
    assert [
        c
        for c in bot.github.pull(REPO, 1).review_comments
        if c["pull_request_review_id"] == reviews[-1]["id"]
    ] == []
    await _command(bot)

    [branch] = _fix_branches(bot)
    assert bot.github.files_on(REPO, branch)[CORE] == CORE_FIXED
    assert "3 suggestions of the review of" in _replies(bot)[-1]
    assert branch.endswith(pull.head_sha[:7])


async def test_a_fix_branch_holding_other_commits_is_left_alone(bot: Bot) -> None:
    pull = await _reviewed(bot)
    taken = branch_name(1, pull.head_sha)
    bot.github.set_branch(REPO, taken, pull.head_sha)  # someone's branch by that name
    await _command(bot)

    assert bot.github.repo(REPO).branches[taken] == pull.head_sha
    [opened] = _opened(bot)
    assert opened.head_ref == f"{taken}-2"
    assert bot.github.files_on(REPO, opened.head_ref)[SCRIPT] == SCRIPT_FIXED


async def test_a_refused_write_is_reported_and_not_retried(bot: Bot) -> None:
    await _reviewed(bot)
    bot.github.fail_next(
        "POST", "/git/blobs$", 403, body={"message": "Resource not accessible by integration"}
    )
    comment = await _command(bot)

    [reply] = _replies(bot)
    assert "Nothing fixed: GitHub refused to write the commit (HTTP 403" in reply
    assert "`contents: write`" in reply
    assert _fix_branches(bot) == {} and _opened(bot) == []
    assert [r["content"] for r in bot.github.reactions[comment]] == ["eyes", "confused"]

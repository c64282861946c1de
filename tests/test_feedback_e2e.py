"""End to end: what became of a change the bot merged, from GitHub's own event shapes.

Each event is GitHub's example payload from ``../shared/fixtures/webhooks/`` with its repository,
installation and commits pointed at the pull request under test, delivered signed to the real
app. The registry is then read back: effects, outcomes, the tightening the pipeline applies.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.feedback.outcomes import Outcome
from app.feedback.registry import FeedbackStore
from app.feedback.report import build_report
from app.feedback.signals import Effect
from app.store.tables import change_effects
from tests.e2e_bot import ACT_CONFIG, REPO, Bot
from tests.fakes.github import Pull, fake_sha
from tests.fakes.webhooks import (
    WEBHOOKS_DIR,
    installation,
    issue_comment_payload,
    pull_request_payload,
    repository,
    user_object,
    webhooks_available,
)

pytestmark = pytest.mark.skipif(not webhooks_available(), reason="shared fixtures missing")


@pytest.fixture
def db_url(sqlite_url: str) -> str:
    """SQLite only: the registry's queries run on both databases in test_feedback_store.py."""
    return sqlite_url


BOT = "aigateway[bot]"
PATCH = "@@ -1,2 +1,4 @@\n a\n+written one\n+written two\n b"


def from_fixture(folder: str, name: str, edit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """GitHub's example payload, moved to the repository under test, then ``edit``-ed."""
    data: dict[str, Any] = json.loads((WEBHOOKS_DIR / folder / name).read_text())
    data = copy.deepcopy(data)
    data["repository"] = repository(REPO)
    data["installation"] = installation(42)
    edit(data)
    return data


def _closed(pull: Pull, **fields: Any) -> dict[str, Any]:
    def edit(data: dict[str, Any]) -> None:
        p = data["pull_request"]
        data["number"] = pull.number
        p.update(
            number=pull.number,
            title=pull.title,
            merged=pull.merged,
            merge_commit_sha=pull.merge_commit_sha,
            merged_at=pull.merged_at or datetime.now(UTC).isoformat(),
            merged_by=user_object(pull.merged_by or "octocat"),
            labels=[{"name": name} for name in pull.labels],
        )
        p["head"].update(ref=pull.head_ref, sha=pull.head_sha)
        p["base"].update(ref="main")
        p.update(fields)

    return from_fixture("pull_request", "closed.payload.json", edit)


def _push(*commits: tuple[str, str]) -> dict[str, Any]:
    def edit(data: dict[str, Any]) -> None:
        template = data["commits"][0]
        data["ref"] = "refs/heads/main"
        data["commits"] = [{**template, "id": sha, "message": msg} for sha, msg in commits]
        data["head_commit"] = data["commits"][-1]
        data["after"] = commits[-1][0]

    return from_fixture("push", "with-new-branch.payload.json", edit)


def _check_run(name: str, sha: str, conclusion: str) -> dict[str, Any]:
    def edit(data: dict[str, Any]) -> None:
        data["check_run"].update(name=name, head_sha=sha, conclusion=conclusion)
        data["check_run"]["check_suite"]["head_sha"] = sha

    return from_fixture("check_run", "completed.payload.json", edit)


def _check_suite(suite_id: int, sha: str, conclusion: str) -> dict[str, Any]:
    def edit(data: dict[str, Any]) -> None:
        data["check_suite"].update(id=suite_id, head_sha=sha, conclusion=conclusion)

    return from_fixture("check_suite", "completed.payload.json", edit)


def _status(context: str, sha: str, state: str) -> dict[str, Any]:
    def edit(data: dict[str, Any]) -> None:
        data.update(context=context, sha=sha, state=state)

    return from_fixture("status", "payload.json", edit)


def _review(number: int, reviewer: str, state: str) -> dict[str, Any]:
    def edit(data: dict[str, Any]) -> None:
        data["pull_request"]["number"] = number
        data["review"].update(state=state, user=user_object(reviewer), id=fake_sha(reviewer)[:8])

    return from_fixture("pull_request_review", "submitted.payload.json", edit)


async def _merged_by_the_bot(bot: Bot) -> Pull:
    """PR #1, reviewed at 0.97 on a low-risk path and merged by the bot; its closed event sent."""
    bot.github.set_file(REPO, ".github/aigateway.yml", ACT_CONFIG)
    pull = bot.github.add_pull(
        REPO,
        1,
        files=[{"filename": "docs/guide.md", "status": "modified", "patch": PATCH}],
        commits=[{"sha": fake_sha("c1"), "message": "first"}, {"sha": fake_sha("c2")}],
    )
    bot.github.add_check_run(REPO, pull.head_sha, "ci/test")
    bot.github.set_status(REPO, pull.head_sha, "ci/lint", "success")
    bot.approve_both(0.97)
    await bot.open_pull(pull)
    assert len(bot.merges()) == 1 and pull.merged
    await bot.deliver("pull_request", _closed(pull))
    return pull


def _store(bot: Bot) -> FeedbackStore:
    return FeedbackStore(bot.services.db)


async def _effects(bot: Bot) -> list[tuple[int, str, str]]:
    async with bot.services.db.read() as conn:
        rows = (await conn.execute(change_effects.select().order_by(change_effects.c.id))).all()
    return [(int(r.change_id), r.kind, r.evidence) for r in rows]


# ---------------------------------------------------------------------------------- registry


async def test_a_merge_registers_its_commits_checks_and_lines(bot: Bot) -> None:
    pull = await _merged_by_the_bot(bot)

    change = await _store(bot).change_for_pr(REPO, 1)
    assert change is not None
    assert (change.state, change.decision, change.merge_sha) == (
        "merged",
        "auto_merge",
        pull.merge_commit_sha,
    )
    assert set(change.passed_checks) == {"ci/test", "ci/lint"}
    assert change.touched == {"docs/guide.md": ((2, 3),)}
    assert change.window_ends_at is not None and change.merged_at is not None
    assert change.window_ends_at - change.merged_at == timedelta(days=14)
    found = await _store(bot).changes_by_commit(REPO, [fake_sha("c1")[:7]])
    assert [c.id for c in found] == [change.id]


async def test_a_pull_request_closed_without_merging_is_not_judged(bot: Bot) -> None:
    bot.github.set_file(REPO, ".github/aigateway.yml", "version: 1\n")
    pull = bot.github.add_pull(REPO, 1, files=[{"filename": "src/a.py", "patch": PATCH}])
    bot.approve_both(0.97)
    await bot.open_pull(pull)
    await bot.deliver("pull_request", pull_request_payload("closed", number=1, repo=REPO))
    [record] = await _store(bot).records(REPO)
    assert record.state == "closed" and record.decision == "auto_merge" and not record.acted


# ---------------------------------------------------------------------------------- effects


async def test_reverts_by_merge_sha_and_by_a_commit_of_the_pull_request_count_once(
    bot: Bot,
) -> None:
    pull = await _merged_by_the_bot(bot)
    assert pull.merge_commit_sha is not None
    revert = (fake_sha("r1"), f'Revert "x"\n\nThis reverts commit {pull.merge_commit_sha}.')
    unrelated = (fake_sha("u1"), "This reverts commit 0123456789abcdef.")
    payload = _push(unrelated, revert)
    await bot.deliver("push", payload)
    await bot.deliver("push", payload)  # redelivered: counted once

    change = await _store(bot).change_for_pr(REPO, 1)
    assert change is not None
    assert await _effects(bot) == [(change.id, "reverted", f"commit:{revert[0]}")]

    by_commit = (fake_sha("r2"), f"This reverts commit {fake_sha('c2')[:10]}.")
    await bot.deliver("push", _push(by_commit))
    assert [e[2] for e in await _effects(bot)] == [f"commit:{revert[0]}", f"commit:{by_commit[0]}"]
    [record] = await _store(bot).records(REPO)
    assert record.effects[0].kind is Effect.REVERTED


async def test_a_github_revert_pull_request_reverts_the_change(bot: Bot) -> None:
    await _merged_by_the_bot(bot)
    revert = bot.github.add_pull(REPO, 7, head_ref="revert-1-feature", title='Revert "x"')
    revert.merged, revert.merge_commit_sha = True, fake_sha("m7")
    await bot.deliver("pull_request", _closed(revert))
    assert [(k, e) for _, k, e in await _effects(bot)] == [("reverted", "pr:7")]


async def test_a_check_that_passed_on_the_head_and_fails_on_the_merge_broke_ci(bot: Bot) -> None:
    pull = await _merged_by_the_bot(bot)
    merge = str(pull.merge_commit_sha)
    await bot.deliver("check_run", _check_run("ci/test", merge, "failure"))
    await bot.deliver("check_run", _check_run("ci/test", merge, "failure"))  # again: once
    await bot.deliver("check_run", _check_run("ci/new", merge, "failure"))  # never passed
    await bot.deliver("check_run", _check_run("ci/test", fake_sha("other"), "failure"))
    await bot.deliver("status", _status("ci/lint", merge, "error"))
    await bot.deliver("status", _status("ci/lint", merge, "success"))

    assert [(k, e) for _, k, e in await _effects(bot)] == [
        ("broke_ci", f"check:ci/test@{merge}"),
        ("broke_ci", f"check:ci/lint@{merge}"),
    ]


async def test_a_failed_check_suite_names_its_failed_checks_once(bot: Bot) -> None:
    pull = await _merged_by_the_bot(bot)
    merge = str(pull.merge_commit_sha)
    bot.github.add_check_run(REPO, merge, "ci/test", conclusion="failure", check_suite_id=77)
    bot.github.add_check_run(REPO, merge, "ci/new", conclusion="failure", check_suite_id=77)
    bot.github.add_check_run(REPO, merge, "ci/lint", conclusion="failure", check_suite_id=78)
    await bot.deliver("check_suite", _check_suite(77, merge, "failure"))
    # The same failure announced by its check run is the same evidence: counted once.
    await bot.deliver("check_run", _check_run("ci/test", merge, "failure"))
    await bot.deliver("check_suite", _check_suite(79, fake_sha("other"), "failure"))
    assert [(k, e) for _, k, e in await _effects(bot)] == [("broke_ci", f"check:ci/test@{merge}")]


async def test_a_fix_touching_the_lines_it_wrote_is_a_follow_up_fix(bot: Bot) -> None:
    await _merged_by_the_bot(bot)
    fix_patch = "@@ -2,2 +2,2 @@\n-written one\n+written better\n written two"
    unrelated = bot.github.add_pull(
        REPO, 8, title="Fix a typo", files=[{"filename": "docs/other.md", "patch": fix_patch}]
    )
    unrelated.merged = True
    await bot.deliver("pull_request", _closed(unrelated))
    not_a_fix = bot.github.add_pull(
        REPO, 9, title="Polish wording", files=[{"filename": "docs/guide.md", "patch": fix_patch}]
    )
    not_a_fix.merged = True
    await bot.deliver("pull_request", _closed(not_a_fix))
    assert await _effects(bot) == []

    fix = bot.github.add_pull(
        REPO, 10, title="Fix the guide", files=[{"filename": "docs/guide.md", "patch": fix_patch}]
    )
    fix.merged = True
    await bot.deliver("pull_request", _closed(fix))
    assert [(k, e) for _, k, e in await _effects(bot)] == [("follow_up_fix", "pr:10")]


async def test_a_human_asking_for_changes_after_the_bot_let_it_through_overrides(
    bot: Bot,
) -> None:
    await _merged_by_the_bot(bot)
    await bot.deliver("pull_request_review", _review(1, "someone-else", "approved"))
    await bot.deliver("pull_request_review", _review(1, "dependabot[bot]", "changes_requested"))
    assert await _effects(bot) == []
    await bot.deliver("pull_request_review", _review(1, "maintainer", "changes_requested"))
    assert [k for _, k, _ in await _effects(bot)] == ["human_override"]


# ---------------------------------------------------------------------------------- outcomes


async def test_the_window_closes_clean_and_a_revert_makes_it_bad(bot: Bot) -> None:
    pull = await _merged_by_the_bot(bot)
    store = _store(bot)
    [record] = await store.records(REPO)
    assert record.merged_at is not None
    inside = build_report(REPO, [record], at=record.merged_at + timedelta(days=13))
    after = build_report(REPO, [record], at=record.merged_at + timedelta(days=14))
    assert inside.totals.outcomes == {"pending": 1}
    assert after.totals.outcomes == {"clean": 1} and after.totals.bad == 0

    message = f"This reverts commit {pull.merge_commit_sha}."
    await bot.deliver("push", _push((fake_sha("r"), message)))
    [record] = await store.records(REPO)
    report = build_report(REPO, [record], at=datetime.now(UTC))
    assert report.totals.outcomes == {Outcome.REVERTED.value: 1} and report.totals.bad == 1


# ---------------------------------------------------------------------------------- tightening


async def test_a_revert_tightens_the_next_decision_until_an_admin_resets(bot: Bot) -> None:
    pull = await _merged_by_the_bot(bot)
    await bot.deliver(
        "push", _push((fake_sha("r"), f"This reverts commit {pull.merge_commit_sha}."))
    )

    second = bot.github.add_pull(
        REPO, 2, files=[{"filename": "docs/more.md", "status": "modified", "patch": PATCH}]
    )
    await bot.open_pull(second)
    assert len(bot.merges()) == 1  # stepped down from auto_merge to auto_pr: not merged
    [run] = [r for r in bot.github.check_runs_for(REPO, second.head_sha) if r.name == "aigateway"]
    summary = str(run.summary)
    assert "Autonomy is stepped down one level" in summary
    assert "1 of the last 1 would-be automatic merges went wrong" in summary
    assert "lowered from auto_merge by tightened" in summary
    assert "Feedback so far in this repository: 1 of 1 settled changes went wrong" in summary
    [*_, change] = await _store(bot).records(REPO)
    assert (change.decision, change.pr_number) == ("auto_pr", 2)

    # A write collaborator may not reset; an admin may.
    for user, role in (("writer", "write"), ("owner", "admin")):
        bot.github.set_permission(REPO, user, role)
        comment = bot.github.add_issue_comment(REPO, 2, "/autonomy reset", user=user)
        await bot.deliver(
            "issue_comment",
            issue_comment_payload(
                repo=REPO, number=2, body="/autonomy reset", user=user, comment_id=comment["id"]
            ),
        )
    replies = [str(c["body"]) for c in bot.github.comments_on(REPO, 2) if c["user"] == BOT]
    assert any("needs `admin` permission" in r for r in replies)
    assert any("Autonomy is back to the matrix" in r for r in replies)
    assert not (await _store(bot).tightening(REPO)).active

    third = bot.github.add_pull(
        REPO, 3, files=[{"filename": "docs/third.md", "status": "modified", "patch": PATCH}]
    )
    await bot.open_pull(third)
    assert len(bot.merges()) == 2 and third.merged


async def test_the_report_command_shows_the_numbers(bot: Bot) -> None:
    pull = await _merged_by_the_bot(bot)
    await bot.deliver(
        "push", _push((fake_sha("r"), f"This reverts commit {pull.merge_commit_sha}."))
    )
    comment = bot.github.add_issue_comment(REPO, 1, "/report", user="passer-by")
    await bot.deliver(
        "issue_comment",
        issue_comment_payload(
            repo=REPO, number=1, body="/report", user="passer-by", comment_id=comment["id"]
        ),
    )
    [reply] = [
        str(c["body"])
        for c in bot.github.comments_on(REPO, 1)
        if c["user"] == BOT and "aigateway:command:" in str(c["body"])
    ]
    assert "1 change(s), 1 of 1 settled went wrong (100%)" in reply
    assert "| low | auto_merge | 1 | 1/1 | 100% | 0.97 |" in reply
    assert "Autonomy is stepped down one level" in reply

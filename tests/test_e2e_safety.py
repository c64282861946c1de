"""End to end: no merge covers a change the models did not see, forgot, or that changed since.

Each test drives the real app through signed deliveries against the fake GitHub and the fake
gateway (``tests/e2e_bot.py``), and looks at what the models were sent and what GitHub received.
"""

from __future__ import annotations

from typing import Any

from app.policy.decisions import DecisionStore
from app.review.model import Finding
from tests.e2e_bot import ACT_CONFIG, REPO, Bot
from tests.fakes.webhooks import (
    check_run_payload,
    fake_sha,
    pull_request_payload,
    pull_request_review_payload,
    status_payload,
)


def _patch(path: str, line: str = "A clearer sentence.") -> dict[str, Any]:
    return {"filename": path, "status": "modified", "patch": f"@@ -1,2 +1,3 @@\n a\n+{line}\n b"}


def _review_body(bot: Bot, number: int = 1) -> str:
    reviews = bot.github.pull(REPO, number).reviews
    return str(reviews[-1]["body"])


async def _decisions(bot: Bot) -> list[Any]:
    return await DecisionStore(bot.services.db).decisions_for(REPO, 1)


# ------------------------------------------------------------------------ unseen changes count


async def test_removed_lines_are_shown_to_the_models(bot: Bot) -> None:
    bot.github.set_file(REPO, ".github/aigateway.yml", ACT_CONFIG)
    bot.approve_both(0.9)
    views = {
        "filename": "src/app/views.py",
        "status": "modified",
        "patch": (
            "@@ -10,4 +10,3 @@ def settings(request):\n"
            " @app.route('/settings')\n"
            "-@login_required\n"
            " def settings(request):\n"
            "     return render(request)"
        ),
    }
    pull = bot.github.add_pull(REPO, 1, files=[views, _patch("docs/guide.md")])

    await bot.open_pull(pull)

    prompts = [r.prompt for r in bot.gateway.requests if r.provider]
    assert len(prompts) == 2
    assert all("-@login_required" in p for p in prompts)
    assert all("## src/app/views.py (modified)" in p for p in prompts)
    run = next(r for r in bot.github.check_runs_for(REPO, pull.head_sha) if r.name == "aigateway")
    assert "2 reviewed, 0 not reviewed" in (run.summary or "")


async def test_deleted_file_is_shown_to_the_models(bot: Bot) -> None:
    bot.approve_both(0.9)
    gone = {
        "filename": "src/app/auth.py",
        "status": "removed",
        "patch": "@@ -1,2 +0,0 @@\n-def check(user):\n-    return user.is_admin",
    }
    pull = bot.github.add_pull(REPO, 1, files=[gone])

    await bot.open_pull(pull)

    prompts = [r.prompt for r in bot.gateway.requests if r.provider]
    assert prompts and all("## src/app/auth.py (removed)" in p for p in prompts)
    assert all("-    return user.is_admin" in p for p in prompts)


async def test_a_file_no_model_could_see_keeps_the_pr_from_auto_merging(bot: Bot) -> None:
    bot.github.set_file(REPO, ".github/aigateway.yml", ACT_CONFIG)
    bot.approve_both(1.0)
    logo = {"filename": "docs/logo.png", "status": "modified", "additions": 0, "deletions": 0}
    pull = bot.github.add_pull(REPO, 1, files=[_patch("docs/guide.md"), logo])

    await bot.open_pull(pull)

    assert bot.merges() == []
    [row] = await _decisions(bot)
    assert (row.tier, row.matrix_decision, row.decision, row.action_taken) == (
        "low",
        "auto_merge",
        "auto_pr",
        "left_for_human",
    )
    assert any(g["guard"] == "unreviewed_files" for g in row.guards)
    body = _review_body(bot)
    assert "**Not reviewed** (1 file(s))" in body and "`docs/logo.png`" in body
    run = next(r for r in bot.github.check_runs_for(REPO, pull.head_sha) if r.name == "aigateway")
    assert run.conclusion == "neutral"
    assert "docs/logo.png" in (run.summary or "")


async def test_an_ignored_lock_file_counts_unless_the_config_waives_it(bot: Bot) -> None:
    lock = _patch("docs/package-lock.json", '"lockfileVersion": 3,')
    bot.github.set_file(REPO, ".github/aigateway.yml", ACT_CONFIG)
    bot.approve_both(1.0)
    pull = bot.github.add_pull(REPO, 1, files=[_patch("docs/guide.md"), lock])
    await bot.open_pull(pull)
    assert bot.merges() == []
    assert "ignored by pattern" in _review_body(bot)

    bot.github.set_file(
        REPO,
        ".github/aigateway.yml",
        ACT_CONFIG + 'review:\n  unreviewed_ok: ["**/package-lock.json"]\n',
    )
    second = bot.github.add_pull(REPO, 2, files=[_patch("docs/guide.md"), lock])
    await bot.open_pull(second)

    [merge] = bot.merges()
    assert merge.json["sha"] == second.head_sha
    assert "waived by review.unreviewed_ok" in _review_body(bot, 2)
    # The lock file's content was never sent: the ignore list saves tokens.
    assert all('"lockfileVersion"' not in r.prompt for r in bot.gateway.requests if r.provider)


# ------------------------------------------------------------------------ decisions accumulate


def _blocker() -> Finding:
    return Finding.model_validate(
        {
            "path": "docs/guide.md",
            "line": 2,
            "severity": "blocker",
            "category": "security",
            "title": "Leaks the admin token",
            "body": "The sentence pastes a real token into the docs.",
        }
    )


async def _blocked_pull(bot: Bot) -> Any:
    """A docs PR in act mode, owned by docs-owner, on which Claude raised a blocker."""
    bot.github.set_file(REPO, ".github/aigateway.yml", ACT_CONFIG)
    bot.github.set_file(REPO, ".github/CODEOWNERS", "/docs/ @docs-owner\n")
    bot.gateway.anthropic.set_review(
        verdict="request_changes", confidence=0.9, findings=[_blocker()]
    )
    pull = bot.github.add_pull(REPO, 1, files=[_patch("docs/guide.md")])
    await bot.open_pull(pull)
    return pull


async def _push(bot: Bot, old_sha: str, new_sha: str, line: str) -> None:
    files = [_patch("docs/guide.md", line)]
    bot.github.move_head(REPO, 1, new_sha, files=files)
    bot.github.set_compare(REPO, old_sha, new_sha, files=[_patch("docs/guide.md", line)])
    await bot.deliver(
        "pull_request",
        pull_request_payload("synchronize", head_sha=new_sha, before=old_sha),
    )


async def test_a_blocker_on_one_head_is_carried_to_the_next(bot: Bot) -> None:
    bot.github.set_file(REPO, ".github/aigateway.yml", ACT_CONFIG)
    bot.gateway.anthropic.set_review(
        verdict="request_changes", confidence=0.9, findings=[_blocker()]
    )
    bot.gateway.openai.set_review(verdict="approve", confidence=0.95, findings=[])
    pull = bot.github.add_pull(REPO, 1, files=[_patch("docs/guide.md")])
    await bot.open_pull(pull)
    head_a = pull.head_sha
    assert [r.decision for r in await _decisions(bot)] == ["escalate"]

    bot.approve_both(0.99)
    head_b = fake_sha("a trivial follow-up")
    await _push(bot, head_a, head_b, "A typo fixed.")

    assert bot.merges() == []
    body = _review_body(bot)
    assert f"carried from {head_a[:7]}: 1 blocker" in body
    assert "changes requested by Claude" in body
    rows = await _decisions(bot)
    assert [(r.head_sha, r.decision) for r in rows] == [(head_a, "escalate"), (head_b, "escalate")]
    assert any(g["guard"] == "carried" for g in rows[-1].guards)
    # The models were shown the delta only, and told so.
    assert all("A typo fixed." in r.prompt for r in bot.gateway.requests[-2:])


async def test_a_full_re_review_clears_what_was_carried(bot: Bot) -> None:
    bot.github.set_file(REPO, ".github/aigateway.yml", ACT_CONFIG)
    bot.github.set_permission(REPO, "maintainer", "write")
    bot.gateway.anthropic.set_review(
        verdict="request_changes", confidence=0.9, findings=[_blocker()]
    )
    pull = bot.github.add_pull(REPO, 1, files=[_patch("docs/guide.md")])
    await bot.open_pull(pull)
    bot.approve_both(0.99)
    head_b = fake_sha("the fix")
    await _push(bot, pull.head_sha, head_b, "Token removed.")
    assert bot.merges() == []
    run = next(r for r in bot.github.check_runs_for(REPO, head_b) if r.name == "aigateway")

    await bot.deliver(
        "check_run",
        check_run_payload(
            "requested_action",
            check_run_id=run.id,
            head_sha=head_b,
            requested_action="rereview",
            sender="maintainer",
        ),
    )

    [merge] = bot.merges()
    assert merge.json["sha"] == head_b
    assert "Carried over" not in _review_body(bot)


async def test_a_code_owner_approval_clears_what_was_carried(bot: Bot) -> None:
    pull = await _blocked_pull(bot)
    head_a = pull.head_sha

    # Someone who owns nothing approves: nothing changes.
    await bot.deliver(
        "pull_request_review",
        pull_request_review_payload(reviewer="passer-by", commit_id=head_a, head_sha=head_a),
    )
    await bot.deliver(
        "pull_request_review",
        pull_request_review_payload(reviewer="docs-owner", commit_id=head_a, head_sha=head_a),
    )
    bot.approve_both(0.99)
    head_b = fake_sha("after the approval")
    await _push(bot, head_a, head_b, "One more sentence.")

    [merge] = bot.merges()
    assert merge.json["sha"] == head_b
    assert "Carried over" not in _review_body(bot)


async def test_an_approval_by_someone_who_owns_nothing_clears_nothing(bot: Bot) -> None:
    pull = await _blocked_pull(bot)
    await bot.deliver(
        "pull_request_review",
        pull_request_review_payload(
            reviewer="passer-by", commit_id=pull.head_sha, head_sha=pull.head_sha
        ),
    )
    bot.approve_both(0.99)
    await _push(bot, pull.head_sha, fake_sha("b"), "More.")
    assert bot.merges() == []
    assert "carried from" in _review_body(bot)


# ------------------------------------------------------------------------ fresh facts


async def _merge_waiting_for_ci(bot: Bot) -> Any:
    bot.github.set_file(REPO, ".github/aigateway.yml", ACT_CONFIG)
    bot.approve_both(0.97)
    pull = bot.github.add_pull(REPO, 1, files=[_patch("docs/guide.md")])
    bot.github.set_status(REPO, pull.head_sha, "ci/build", "pending")
    await bot.open_pull(pull)
    assert bot.merges() == []
    [row] = await _decisions(bot)
    assert row.action_taken == "merge_pending"
    return pull


async def _ci_turns_green(bot: Bot, sha: str) -> None:
    bot.github.set_status(REPO, sha, "ci/build", "success")
    await bot.deliver("status", status_payload(sha=sha, state="success"))
    await bot.deliver("status", status_payload(sha=sha, state="success"))


async def test_a_label_added_while_ci_runs_cancels_the_merge(bot: Bot) -> None:
    pull = await _merge_waiting_for_ci(bot)
    bot.github.pull(REPO, 1).labels.append("aigateway: no automation")

    await _ci_turns_green(bot, pull.head_sha)

    assert bot.merges() == []
    assert not bot.github.pull(REPO, 1).merged
    [comment] = bot.github.comments_on(REPO, 1)
    assert "cancelled its merge" in comment["body"]
    assert "'aigateway: no automation' label" in comment["body"]
    [row] = await _decisions(bot)
    assert row.action_taken == "merge_cancelled"


async def test_shadow_mode_switched_on_while_ci_runs_cancels_the_merge(bot: Bot) -> None:
    pull = await _merge_waiting_for_ci(bot)
    bot.github.set_file(REPO, ".github/aigateway.yml", "version: 1\nautonomy:\n  mode: shadow\n")

    await _ci_turns_green(bot, pull.head_sha)

    assert bot.merges() == []
    [comment] = bot.github.comments_on(REPO, 1)
    assert "cancelled its merge" in comment["body"] and "shadow" in comment["body"]


async def test_a_risk_rule_added_while_ci_runs_cancels_the_merge(bot: Bot) -> None:
    pull = await _merge_waiting_for_ci(bot)
    bot.github.set_file(
        REPO,
        ".github/aigateway.yml",
        ACT_CONFIG + "risk:\n  rules:\n    - paths: ['docs/**']\n      tier: critical\n",
    )

    await _ci_turns_green(bot, pull.head_sha)

    assert bot.merges() == []
    [comment] = bot.github.comments_on(REPO, 1)
    assert "the decision is now escalate" in comment["body"]
    assert "risk tier is now critical" in comment["body"]


async def test_unchanged_facts_still_merge_once_ci_is_green(bot: Bot) -> None:
    pull = await _merge_waiting_for_ci(bot)
    await _ci_turns_green(bot, pull.head_sha)
    [merge] = bot.merges()
    assert merge.json["sha"] == pull.head_sha
    assert bot.github.comments_on(REPO, 1) == []


async def test_a_label_added_before_an_escalation_stops_it(bot: Bot) -> None:
    bot.github.set_file(REPO, ".github/aigateway.yml", ACT_CONFIG)
    bot.approve_both(0.99)
    pull = bot.github.add_pull(
        REPO, 1, files=[_patch(".github/workflows/ci.yml", "      - run: make deploy")]
    )
    # The label is on the pull request on GitHub, but not yet in the delivery's payload.
    bot.github.pull(REPO, 1).labels.append("aigateway: no automation")

    await bot.open_pull(pull)

    assert bot.github.pull(REPO, 1).labels == ["aigateway: no automation"]
    assert bot.github.calls("POST", r"/requested_reviewers$") == []
    [row] = await _decisions(bot)
    assert row.action_taken == "cancelled"


# ------------------------------------------------------------------------ re-review needs permission


async def test_re_review_button_needs_permission(bot: Bot) -> None:
    bot.approve_both(0.97)
    pull = bot.github.add_pull(REPO, 1, files=[_patch("docs/guide.md")])
    await bot.open_pull(pull)
    calls = bot.gateway.anthropic.calls
    run = next(r for r in bot.github.check_runs_for(REPO, pull.head_sha) if r.name == "aigateway")
    bot.github.set_permission(REPO, "reader", "read")
    payload = check_run_payload(
        "requested_action",
        check_run_id=run.id,
        head_sha=pull.head_sha,
        requested_action="rereview",
        sender="reader",
    )

    await bot.deliver("check_run", payload)
    await bot.deliver("check_run", payload)

    assert bot.gateway.anthropic.calls == calls
    [comment] = bot.github.comments_on(REPO, 1)
    assert "needs `write` permission" in comment["body"] and "`reader`" in comment["body"]

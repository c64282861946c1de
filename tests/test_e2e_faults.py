"""End to end, with faults injected: every side effect exactly once, every failure visible.

GitHub fails in the ways it does (a 5xx after doing the work, a reset connection, an outage
across retries) and the models fail in theirs; after each, the delivery ends in a clear stored
state, the check run is completed with the reason, nothing is posted twice, the models are not
paid for twice, and no merge follows a partial review. Faults are counted in ``FAULTS`` and the
figures are checked at the end of each test.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from app.policy.decisions import DecisionStore
from app.policy.outbox import ACTION_MAX_ATTEMPTS, ActionStatus, Outbox
from app.policy.timers import send_due_actions
from app.store.types import utcnow
from tests.e2e_bot import ACT_CONFIG, REPO, Bot
from tests.fakes.gateway import Disconnect, HttpError, Outcome, Text
from tests.fakes.webhooks import pull_request_payload


@pytest.fixture
def bot_settings() -> dict[str, Any]:
    # GitHub's own 5xx retries in the client would only slow these tests down: each fault here
    # is meant to reach the code that must survive it.
    return {"github_max_retries": 0, "max_attempts": 3}


def _patch(path: str, line: str = "A clearer sentence.") -> dict[str, Any]:
    return {"filename": path, "status": "modified", "patch": f"@@ -1,2 +1,3 @@\n a\n+{line}\n b"}


def _our_runs(bot: Bot, sha: str) -> list[Any]:
    return [r for r in bot.github.check_runs_for(REPO, sha) if r.name == "aigateway"]


def _model_calls(bot: Bot) -> int:
    return bot.gateway.anthropic.calls + bot.gateway.openai.calls


def _docs_pull(bot: Bot) -> Any:
    return bot.github.add_pull(REPO, 1, files=[_patch("docs/guide.md")], title="Docs")


# ------------------------------------------------------------------------ GitHub: lost answers


@pytest.mark.parametrize("status", [502, 0], ids=["502-after-applying", "reset-after-applying"])
@pytest.mark.parametrize(
    "path", [r"/pulls/1/reviews$", r"/check-runs$"], ids=["review", "check-run"]
)
async def test_a_write_github_applied_but_did_not_confirm_is_not_repeated(
    bot: Bot, status: int, path: str
) -> None:
    bot.approve_both(0.9)
    pull = _docs_pull(bot)
    bot.github.fail_next("POST", path, status, applied=True)

    await bot.open_pull(pull)

    assert len(bot.github.pull(REPO, 1).reviews) == 1
    [run] = _our_runs(bot, pull.head_sha)
    assert run.status == "completed" and run.conclusion == "success"
    assert _model_calls(bot) == 2


async def test_a_comment_github_applied_but_did_not_confirm_is_not_repeated(bot: Bot) -> None:
    bot.github.set_file(REPO, ".github/aigateway.yml", ACT_CONFIG)
    bot.approve_both(0.99)
    pull = bot.github.add_pull(REPO, 1, files=[_patch(".github/workflows/ci.yml", "  - run: x")])
    bot.github.fail_next("POST", r"/issues/1/comments$", 502, applied=True)

    await bot.open_pull(pull)

    [comment] = bot.github.comments_on(REPO, 1)
    assert "found nobody to request a review from" in comment["body"]


# ------------------------------------------------------------------------ GitHub: outages


async def test_a_failed_publish_ends_its_check_run_and_the_retry_resumes_without_paying_again(
    bot: Bot,
) -> None:
    bot.approve_both(0.9)
    pull = _docs_pull(bot)
    # Three refusals: the first attempt's POST and both of its checked re-posts.
    bot.github.fail_next("POST", r"/pulls/1/reviews$", 500, times=3)

    await bot.open_pull(pull)

    # One check run, reused by the retry, completed; one review; the models asked once.
    [run] = _our_runs(bot, pull.head_sha)
    assert (run.status, run.conclusion) == ("completed", "success")
    assert len(bot.github.pull(REPO, 1).reviews) == 1
    assert _model_calls(bot) == 2
    review = bot.github.pull(REPO, 1).reviews[0]
    assert "no model was called again" in review["body"]


async def test_a_review_that_keeps_failing_leaves_a_completed_check_run_saying_why(
    bot: Bot,
) -> None:
    bot.approve_both(0.9)
    pull = _docs_pull(bot)
    bot.github.fail_next("POST", r"/pulls/1/reviews$", 500, times=100)
    headers_and_body = pull_request_payload("opened", head_sha=pull.head_sha)

    delivery = await bot.post(headers_and_body, "pull_request")
    row = await bot.wait(delivery)

    assert row.status == "failed" and "GitHubBroken" in (row.last_error or "")
    [run] = _our_runs(bot, pull.head_sha)
    assert (run.status, run.conclusion, run.title) == ("completed", "neutral", "Review interrupted")
    assert "could not be finished" in (run.summary or "")
    assert _model_calls(bot) == 2  # three attempts, one payment
    assert bot.github.pull(REPO, 1).reviews == []


async def test_a_pull_request_deleted_meanwhile_ends_quietly_without_retries(bot: Bot) -> None:
    pull = _docs_pull(bot)
    bot.github.fail_next("GET", r"/pulls/1/files", 404, times=100)

    row = await bot.wait(
        await bot.post(pull_request_payload("opened", head_sha=pull.head_sha), "pull_request")
    )

    assert (row.status, row.attempts) == ("done", 1)
    [run] = _our_runs(bot, pull.head_sha)
    assert (run.status, run.conclusion) == ("completed", "neutral")
    assert "not tried again" in (run.summary or "")
    assert _model_calls(bot) == 0


async def test_a_secondary_rate_limit_on_a_write_waits_and_writes_once(bot: Bot) -> None:
    bot.approve_both(0.9)
    pull = _docs_pull(bot)
    bot.github.rate_limit_next("POST", r"/pulls/1/reviews$", secondary=True, retry_after=0)

    await bot.open_pull(pull)

    assert len(bot.github.pull(REPO, 1).reviews) == 1
    assert _model_calls(bot) == 2


async def test_a_primary_rate_limit_fails_the_attempt_and_the_retry_resumes(bot: Bot) -> None:
    bot.approve_both(0.9)
    pull = _docs_pull(bot)
    bot.github.rate_limit_next("POST", r"/pulls/1/reviews$", reset_in_s=3600)

    row = await bot.wait(
        await bot.post(pull_request_payload("opened", head_sha=pull.head_sha), "pull_request")
    )

    assert (row.status, row.attempts) == ("done", 2)
    assert len(bot.github.pull(REPO, 1).reviews) == 1
    assert _model_calls(bot) == 2  # the retry published the first attempt's answers
    assert [(r.status, r.conclusion) for r in _our_runs(bot, pull.head_sha)] == [
        ("completed", "success")
    ]


# ------------------------------------------------------------------------ actions


async def test_a_merge_that_fails_is_retried_and_happens_once(bot: Bot) -> None:
    bot.github.set_file(REPO, ".github/aigateway.yml", ACT_CONFIG)
    bot.approve_both(0.97)
    pull = _docs_pull(bot)
    bot.github.fail_next("PUT", r"/pulls/1/merge$", 502)

    await bot.open_pull(pull)

    assert not bot.github.pull(REPO, 1).merged
    [row] = await DecisionStore(bot.services.db).decisions_for(REPO, 1)
    assert (row.decision, row.action_taken) == ("auto_merge", "pending")
    [action] = await Outbox(bot.services.db).for_head(REPO, 1, pull.head_sha)
    assert (action.status, action.attempts) == (ActionStatus.PENDING, 1)
    assert "502" in (action.last_error or "")

    await send_due_actions(bot.services, now=utcnow() + timedelta(hours=1))

    merges = [m for m in bot.merges() if m.status == 200]
    assert len(merges) == 1 and merges[0].json["sha"] == pull.head_sha
    [row] = await DecisionStore(bot.services.db).decisions_for(REPO, 1)
    assert row.action_taken == "merged"
    [action] = await Outbox(bot.services.db).for_head(REPO, 1, pull.head_sha)
    assert action.status is ActionStatus.DONE
    # Nothing else is due: the timer finds no more work.
    assert await send_due_actions(bot.services, now=utcnow() + timedelta(days=1)) == []


async def test_a_redelivered_event_resumes_the_queued_action_without_a_second_review(
    bot: Bot,
) -> None:
    bot.github.set_file(REPO, ".github/aigateway.yml", ACT_CONFIG)
    bot.approve_both(0.97)
    pull = _docs_pull(bot)
    bot.github.fail_next("GET", r"/commits/\w+/status$", 503)  # the merge's check read fails
    await bot.open_pull(pull)
    assert not bot.github.pull(REPO, 1).merged

    # GitHub sends the event again (or the delivery is replayed): the action resumes at once.
    await bot.deliver("pull_request", pull_request_payload("synchronize", head_sha=pull.head_sha))

    assert bot.github.pull(REPO, 1).merged
    assert len([m for m in bot.merges() if m.status == 200]) == 1
    assert len(bot.github.pull(REPO, 1).reviews) == 1
    assert _model_calls(bot) == 2


async def test_an_action_that_keeps_failing_ends_failed_and_visible(bot: Bot) -> None:
    bot.github.set_file(REPO, ".github/aigateway.yml", ACT_CONFIG)
    bot.approve_both(0.97)
    pull = _docs_pull(bot)
    bot.github.fail_next("PUT", r"/pulls/1/merge$", 502, times=100)
    await bot.open_pull(pull)

    later = utcnow()
    for _ in range(ACTION_MAX_ATTEMPTS):
        later += timedelta(hours=1)
        await send_due_actions(bot.services, now=later)

    outbox = Outbox(bot.services.db)
    [failed] = await outbox.failed()
    assert failed.attempts == ACTION_MAX_ATTEMPTS and "502" in (failed.last_error or "")
    [row] = await DecisionStore(bot.services.db).decisions_for(REPO, 1)
    assert row.action_taken == "error" and "could not merge" in (row.result or "")
    [run] = _our_runs(bot, pull.head_sha)
    assert "**Action failed**" in (run.summary or "")
    assert f"actions retry {failed.id}" in (run.summary or "")
    assert not bot.github.pull(REPO, 1).merged

    # An operator retries it once GitHub is back.
    bot.github.clear_faults()
    assert await outbox.retry(failed.id)
    await send_due_actions(bot.services)
    assert bot.github.pull(REPO, 1).merged
    assert await outbox.failed() == []


# ------------------------------------------------------------------------ the models fail


GATEWAY_FAULTS: list[Outcome] = [
    HttpError(429, retry_after=1),
    HttpError(429),
    HttpError(500),
    HttpError(529, error_type="overloaded_error"),
    Disconnect(),
    Text('{"summary": "fine", "verdict": "appr'),
]


@pytest.mark.parametrize("fault", GATEWAY_FAULTS, ids=lambda f: type(f).__name__)
@pytest.mark.parametrize("who", ["anthropic", "openai", "both"])
async def test_no_merge_follows_a_partial_review(bot: Bot, fault: Outcome, who: str) -> None:
    bot.github.set_file(REPO, ".github/aigateway.yml", ACT_CONFIG)
    bot.approve_both(0.99)
    for script in (bot.gateway.anthropic, bot.gateway.openai):
        if who in {script.provider, "both"}:
            script.respond_with(lambda _request: fault)
    pull = _docs_pull(bot)

    await bot.open_pull(pull)

    assert bot.merges() == []
    [run] = _our_runs(bot, pull.head_sha)
    assert run.status == "completed" and run.conclusion == "neutral"
    [row] = await DecisionStore(bot.services.db).decisions_for(REPO, 1)
    assert row.decision in {"auto_pr", "escalate"}
    assert any(g["guard"] == "review_incomplete" for g in row.guards)

"""End to end: slash-commands in pull request comments, against the real app.

Each test seeds a pull request and a comment on the fake GitHub, delivers the signed
``issue_comment`` and looks at what GitHub and the gateway received: reactions, replies, reviews,
labels, merges. Every reply is also checked to hold no line that would parse as a command.
"""

from __future__ import annotations

from typing import Any

import pytest

from app.commands.parse import parse_commands
from app.commands.state import CommandState
from app.policy.decisions import DecisionStore
from tests.e2e_bot import ACT_CONFIG, REPO, Bot
from tests.fakes.github import Pull, fake_sha
from tests.fakes.webhooks import issue_comment_payload, pull_request_payload


@pytest.fixture
def db_url(sqlite_url: str) -> str:
    """SQLite only: the commands' storage is tested on both databases in test_commands_state.py,
    and this module's end-to-end matrix is long."""
    return sqlite_url


MAINTAINER = "maintainer"
BOT = "aigateway[bot]"


def _patch(path: str, line: str = "A clearer sentence.") -> dict[str, Any]:
    return {"filename": path, "status": "modified", "patch": f"@@ -1,2 +1,3 @@\n a\n+{line}\n b"}


def _pull(bot: Bot, **kwargs: Any) -> Pull:
    kwargs.setdefault("files", [_patch("src/app/core.py")])
    return bot.github.add_pull(REPO, 1, **kwargs)


async def _comment(
    bot: Bot, body: str, *, user: str = MAINTAINER, comment_id: int | None = None
) -> int:
    """A comment on PR #1, on the fake GitHub and delivered as ``issue_comment`` created."""
    if comment_id is None or comment_id not in bot.github.issue_comments:
        comment_id = int(
            bot.github.add_issue_comment(REPO, 1, body, user=user, comment_id=comment_id)["id"]
        )
    payload = issue_comment_payload(
        repo=REPO, number=1, body=body, user=user, comment_id=comment_id
    )
    await bot.deliver("issue_comment", payload)
    return comment_id


def _reactions(bot: Bot, comment_id: int) -> list[str]:
    return [r["content"] for r in bot.github.reactions.get(comment_id, [])]


def _replies(bot: Bot) -> list[str]:
    """The bot's replies to commands (not its other comments), in order."""
    bodies = [
        str(c["body"])
        for c in bot.github.comments_on(REPO, 1)
        if c["user"] == BOT and "<!-- aigateway:command:" in str(c["body"])
    ]
    for body in bodies:
        assert parse_commands(body, slug="aigateway", short_form=True) == [], body
    return bodies


def _model_calls(bot: Bot) -> int:
    return len([r for r in bot.gateway.requests if r.provider])


# ---------------------------------------------------------------------------------- reading


async def test_help_lists_every_command_for_anyone(bot: Bot) -> None:
    _pull(bot)
    comment = await _comment(bot, "/help", user="passer-by")  # read permission only

    [reply] = _replies(bot)
    for name in ("review", "pause", "resume", "escalate", "merge", "quota", "config"):
        assert f"- `{name}`:" in reply
    ask = "- `ask`: both reviewers answer a question about this change's diff (`ask <question>`)"
    assert f"{ask} (needs `write`)" in reply.splitlines()  # available: no "(coming soon)"
    assert _reactions(bot, comment) == ["eyes", "rocket"]
    assert _model_calls(bot) == 0


async def test_an_unknown_command_is_answered_with_the_real_ones(bot: Bot) -> None:
    _pull(bot)
    comment = await _comment(bot, "@aigateway frobnicate /review the thing")

    [reply] = _replies(bot)
    assert "Unknown command `frobnicate`" in reply
    assert "`review`" in reply and "`merge`" in reply
    assert _reactions(bot, comment) == ["eyes", "confused"]
    assert _model_calls(bot) == 0


@pytest.mark.parametrize("author", [BOT, "dependabot[bot]"])
async def test_bots_and_the_app_itself_are_ignored(bot: Bot, author: str) -> None:
    _pull(bot)
    bot.github.set_permission(REPO, author, "admin")
    bot.github.reset_records()
    comment = await _comment(bot, "/review\n/pause", user=author)

    assert bot.github.writes() == []
    assert _reactions(bot, comment) == []
    assert _model_calls(bot) == 0
    assert not await CommandState(bot.services.db).is_paused(REPO, 1)


@pytest.mark.parametrize(
    "body",
    [
        "```\n/review\n```",
        "~~~\n@aigateway merge\n~~~",
        "Run:\n\n    /review\n",
        "> /review\n> @aigateway pause",
        "A quoted reply:\n>/merge",
    ],
)
async def test_commands_in_code_and_quotes_are_ignored(bot: Bot, body: str) -> None:
    _pull(bot)
    bot.github.set_permission(REPO, MAINTAINER, "admin")
    bot.github.reset_records()
    comment = await _comment(bot, body)

    assert bot.github.writes() == []
    assert _reactions(bot, comment) == []
    assert _model_calls(bot) == 0


async def test_edited_comments_and_issue_comments_are_ignored(bot: Bot) -> None:
    _pull(bot)
    bot.github.set_permission(REPO, MAINTAINER, "admin")
    bot.github.add_issue_comment(REPO, 1, "/pause", user=MAINTAINER, comment_id=7)
    bot.github.reset_records()
    await bot.deliver(
        "issue_comment",
        issue_comment_payload("edited", repo=REPO, body="/pause", user=MAINTAINER, comment_id=7),
    )
    await bot.deliver(
        "issue_comment",
        issue_comment_payload(
            repo=REPO, body="/pause", user=MAINTAINER, comment_id=7, is_pull_request=False
        ),
    )

    assert bot.github.writes() == []
    assert not await CommandState(bot.services.db).is_paused(REPO, 1)


async def test_quota_reports_this_pull_requests_spend(bot: Bot) -> None:
    _pull(bot)
    bot.github.set_file(REPO, ".github/aigateway.yml", "version: 1\nquota:\n  per_pr_usd: 2\n")
    comment = await _comment(bot, "/quota", user="passer-by")

    [reply] = _replies(bot)
    assert f"Spend for {REPO} (PR #1)" in reply
    assert "| per_pr | all pushes | $0.00 | $2.00 | $2.00 | never |" in reply
    assert _reactions(bot, comment) == ["eyes", "rocket"]


async def test_config_shows_each_value_and_where_it_came_from(bot: Bot) -> None:
    _pull(bot)
    bot.github.set_file(REPO, ".github/aigateway.yml", ACT_CONFIG)
    await _comment(bot, "@aigateway config")

    [reply] = _replies(bot)
    assert '| `autonomy.mode` | `"act"` | repo |' in reply
    assert '| `commands.min_permission` | `"write"` | default |' in reply


# ---------------------------------------------------------------------------------- permissions

SPENDING = ["review", "merge", "escalate", "pause", "resume", "ask", "fix"]
ROLES = {
    "admin": True,
    "maintain": True,
    "write": True,
    "triage": False,
    "read": False,
    "none": False,
}


@pytest.mark.parametrize("command", SPENDING)
@pytest.mark.parametrize("role", list(ROLES))
async def test_spending_commands_need_write_permission(bot: Bot, command: str, role: str) -> None:
    bot.github.set_file(REPO, ".github/aigateway.yml", ACT_CONFIG)
    _pull(bot, user="author")
    bot.github.set_permission(REPO, MAINTAINER, role)
    comment = await _comment(bot, f"/{command}")

    [reply] = _replies(bot)
    refused = "needs `write` permission" in reply
    assert refused is not ROLES[role]
    if refused:
        assert f"`{MAINTAINER}` has {'no' if role == 'none' else f'`{role}`'} permission" in reply
        assert _reactions(bot, comment) == ["eyes", "confused"]
        assert _model_calls(bot) == 0
        assert bot.merges() == []
        assert bot.github.pull(REPO, 1).labels == []
        assert not await CommandState(bot.services.db).is_paused(REPO, 1)


# ---------------------------------------------------------------------------------- acting


async def test_review_runs_on_a_draft_when_asked(bot: Bot) -> None:
    pull = _pull(bot, draft=True)
    await bot.deliver(
        "pull_request",
        pull_request_payload("opened", repo=REPO, number=1, head_sha=pull.head_sha, draft=True),
    )
    assert _model_calls(bot) == 0  # drafts are not reviewed automatically
    bot.github.set_permission(REPO, MAINTAINER, "write")

    comment = await _comment(bot, "/review")

    assert len(bot.gateway.requests_for("anthropic")) == 1
    assert len(bot.gateway.requests_for("openai")) == 1
    assert [r["commit_id"] for r in bot.github.pull(REPO, 1).reviews] == [pull.head_sha]
    [reply] = _replies(bot)
    assert f"Reviewed `{pull.head_sha[:12]}`" in reply
    assert _reactions(bot, comment) == ["eyes", "rocket"]


async def test_a_redelivered_command_runs_once(bot: Bot) -> None:
    _pull(bot)
    bot.github.set_permission(REPO, MAINTAINER, "write")
    comment = await _comment(bot, "/review")
    calls = _model_calls(bot)
    assert calls == 2

    await _comment(bot, "/review", comment_id=comment)  # same comment, a new delivery id

    assert _model_calls(bot) == calls
    assert len(_replies(bot)) == 1


async def test_several_commands_run_in_order_with_one_reply_each(bot: Bot) -> None:
    _pull(bot)
    bot.github.set_permission(REPO, MAINTAINER, "write")
    comment = await _comment(bot, "Pausing for now.\n/pause\n@aigateway quota")

    pause, quota = _replies(bot)
    assert "are paused" in pause
    assert "Spend for" in quota
    assert await CommandState(bot.services.db).is_paused(REPO, 1)
    assert _reactions(bot, comment) == ["eyes", "rocket"]


async def test_pause_stops_automatic_reviews_and_resume_restarts_them(bot: Bot) -> None:
    pull = _pull(bot)
    bot.github.set_permission(REPO, MAINTAINER, "write")
    await _comment(bot, "/pause")
    second = fake_sha("second")
    bot.github.move_head(REPO, 1, second, files=[_patch("src/app/core.py", "More.")])
    bot.github.set_compare(REPO, pull.head_sha, second, files=[_patch("src/app/core.py", "More.")])

    await bot.deliver(
        "pull_request",
        pull_request_payload(
            "synchronize", repo=REPO, number=1, head_sha=second, before=pull.head_sha
        ),
    )
    assert _model_calls(bot) == 0
    assert bot.github.check_runs_for(REPO, second) == []

    await _comment(bot, "/resume")
    third = fake_sha("third")
    bot.github.move_head(REPO, 1, third, files=[_patch("src/app/core.py", "Even more.")])
    bot.github.set_compare(REPO, second, third, files=[_patch("src/app/core.py", "Even more.")])
    await bot.deliver(
        "pull_request",
        pull_request_payload("synchronize", repo=REPO, number=1, head_sha=third, before=second),
    )
    assert _model_calls(bot) == 2
    assert [r.head_sha for r in bot.github.check_runs_for(REPO) if r.name == "aigateway"] == [third]


async def test_review_still_runs_while_paused(bot: Bot) -> None:
    _pull(bot)
    bot.github.set_permission(REPO, MAINTAINER, "write")
    await _comment(bot, "/pause")
    await _comment(bot, "/review")
    assert _model_calls(bot) == 2


async def test_escalate_labels_and_requests_the_code_owners(bot: Bot) -> None:
    bot.github.set_file(REPO, ".github/aigateway.yml", ACT_CONFIG)
    bot.github.set_file(REPO, ".github/CODEOWNERS", "/src/ @owner\n")
    _pull(bot)
    bot.github.set_permission(REPO, MAINTAINER, "write")
    comment = await _comment(bot, "/escalate")

    assert bot.github.pull(REPO, 1).labels == ["aigateway: needs human"]
    assert bot.github.pull(REPO, 1).requested_reviewers == ["owner"]
    [reply] = _replies(bot)
    assert "Escalated to a human (risk `medium`)" in reply
    assert _reactions(bot, comment) == ["eyes", "rocket"]
    assert _model_calls(bot) == 0


async def _reviewed_not_merged(bot: Bot, *, user: str = "octocat") -> Pull:
    """A medium-risk PR the models liked only moderately: reviewed, left for a human."""
    bot.github.set_file(REPO, ".github/aigateway.yml", ACT_CONFIG)
    bot.approve_both(0.7)
    pull = _pull(bot, user=user)
    await bot.open_pull(pull)
    assert bot.merges() == []
    return pull


async def test_merge_merges_the_reviewed_head(bot: Bot) -> None:
    pull = await _reviewed_not_merged(bot)
    bot.github.set_permission(REPO, MAINTAINER, "write")
    comment = await _comment(bot, "/merge")

    [merge] = bot.merges()
    assert merge.json["sha"] == pull.head_sha
    assert merge.json["merge_method"] == "squash"
    assert f"on {MAINTAINER}'s approval" in merge.json["commit_message"]
    assert bot.github.pull(REPO, 1).merged
    [reply] = _replies(bot)
    assert f"Merged the reviewed commit `{pull.head_sha[:12]}`" in reply
    assert _reactions(bot, comment) == ["eyes", "rocket"]
    # The person's decision is stored as theirs, beside the bot's own.
    rows = await DecisionStore(bot.services.db).decisions_for(REPO, 1)
    assert [(r.actor, r.action_taken) for r in rows][-1] == (MAINTAINER, "merged")
    assert rows[-1].head_sha == pull.head_sha


async def test_merge_is_refused_when_the_head_moved_since_the_review(bot: Bot) -> None:
    await _reviewed_not_merged(bot)
    bot.github.move_head(REPO, 1, fake_sha("unreviewed"))
    bot.github.set_permission(REPO, MAINTAINER, "write")
    comment = await _comment(bot, "/merge")

    assert bot.merges() == []
    [reply] = _replies(bot)
    assert "Not merged: the head moved" in reply
    assert _reactions(bot, comment) == ["eyes", "confused"]


async def test_merge_is_refused_without_a_review(bot: Bot) -> None:
    bot.github.set_file(REPO, ".github/aigateway.yml", ACT_CONFIG)
    _pull(bot)
    bot.github.set_permission(REPO, MAINTAINER, "write")
    await _comment(bot, "/merge")

    assert bot.merges() == []
    [reply] = _replies(bot)
    assert "no review of this pull request was published yet" in reply


async def test_merge_is_refused_in_shadow_mode_and_under_the_no_automation_label(bot: Bot) -> None:
    bot.approve_both(0.7)
    pull = _pull(bot)
    await bot.open_pull(pull)  # shadow mode: the default
    bot.github.set_permission(REPO, MAINTAINER, "write")
    await _comment(bot, "/merge")
    bot.github.set_file(REPO, ".github/aigateway.yml", ACT_CONFIG)
    bot.github.pull(REPO, 1).labels.append("aigateway: no automation")
    await _comment(bot, "/merge")

    assert bot.merges() == []
    shadow, label = _replies(bot)
    assert "autonomy.mode is now shadow" in shadow
    assert "'aigateway: no automation' label" in label


async def test_the_author_cannot_merge_an_escalated_pull_request(bot: Bot) -> None:
    await _reviewed_not_merged(bot, user="author")
    bot.github.pull(REPO, 1).labels.append("aigateway: needs human")
    bot.github.set_permission(REPO, "author", "admin")
    comment = await _comment(bot, "/merge", user="author")

    assert bot.merges() == []
    [reply] = _replies(bot)
    assert "its author cannot merge it" in reply
    assert _reactions(bot, comment) == ["eyes", "confused"]


async def test_the_author_may_merge_a_pull_request_that_was_not_escalated(bot: Bot) -> None:
    pull = await _reviewed_not_merged(bot, user="author")
    bot.github.set_permission(REPO, "author", "write")
    await _comment(bot, "/merge", user="author")

    [merge] = bot.merges()
    assert merge.json["sha"] == pull.head_sha


async def test_a_command_that_failed_runs_again_when_the_delivery_is_retried(bot: Bot) -> None:
    _pull(bot)
    bot.github.set_permission(REPO, MAINTAINER, "write")
    bot.github.fail_next("GET", r"/pulls/1$", 422)  # after the claims: the first attempt fails
    comment = await _comment(bot, "/pause\n/quota")

    pause, quota = _replies(bot)
    assert "Automatic reviews of this pull request are paused" in pause
    assert "Spend for" in quota
    assert await CommandState(bot.services.db).is_paused(REPO, 1)
    assert _reactions(bot, comment) == ["eyes", "confused", "rocket"]

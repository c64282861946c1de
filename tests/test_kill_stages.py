"""kill -9 at each stage boundary: nothing the bot decided is lost or done twice.

The real server runs as a subprocess (the harness of ``test_crash_recovery.py``). GitHub applies
one chosen write and then holds its answer; while it is held, the server is killed with SIGKILL,
so the write happened but the server never heard of it. A new server on the same database must
then finish the work: every decided action done once, no write repeated, the models not asked
twice. The stages:

- after the review was posted (its POST applied, the answer lost);
- after the merge (the PUT applied, the answer lost);
- during the outbox's send of an escalation (its comment posted, the answer lost).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from app.policy.decisions import DecisionStore
from app.queue import DONE
from app.review.render import CHECK_NAME
from app.store.db import Database
from tests.test_crash_recovery import INSTALLATION, World, wait_until, world_for

ACT = "version: 1\nautonomy:\n  mode: act\n"
DOCS = "diff --git a/docs/guide.md b/docs/guide.md\n--- a/docs/guide.md\n+++ b/docs/guide.md\n@@ -1,2 +1,3 @@\n a\n+A clearer sentence.\n b\n"
CI = (
    "diff --git a/.github/workflows/ci.yml b/.github/workflows/ci.yml\n"
    "--- a/.github/workflows/ci.yml\n+++ b/.github/workflows/ci.yml\n"
    "@@ -1,2 +1,3 @@\n on: push\n+      - run: make deploy\n jobs:\n"
)

STAGES = {
    # stage: (diff, the write held after applying)
    "review-posted": (DOCS, ("POST", r"/pulls/1/reviews$")),
    "merged": (DOCS, ("PUT", r"/pulls/1/merge$")),
    "outbox-send": (CI, ("POST", r"/issues/1/comments$")),
}


@pytest.mark.parametrize("stage", list(STAGES))
async def test_a_kill_at_a_stage_boundary_loses_nothing_and_repeats_nothing(
    db_url: str, rsa_key: tuple[str, str], tmp_path: Path, stage: str
) -> None:
    diff, (method, path) = STAGES[stage]
    async with world_for(db_url, rsa_key, tmp_path) as world:
        world.env["NOTICE_GRACE_SECONDS"] = "0"
        repo = f"octo/kill-{stage}"
        world.github.add_repo(repo, installation_id=INSTALLATION)
        world.github.set_file(repo, ".github/aigateway.yml", ACT)
        pull = world.github.add_pull(repo, 1, diff=diff, title="A change")
        for script in (world.gateway.anthropic, world.gateway.openai):
            script.set_review(verdict="approve", confidence=0.97, findings=[])
        world.github.hold_after_applying(method, path, 120)

        first = await world.start_server()
        await world.send(first, pull, f"kill-{stage}")

        async def held() -> bool:
            return any(h.startswith(method) for h in world.github.held)

        await wait_until(held, f"the {stage} write to be applied")
        await first.kill()
        world.github.release_holds()

        second = await world.start_server()
        await world.wait_for({f"kill-{stage}": DONE})
        await _wait_settled(world, repo)

        writes = _writes(world, repo)
        # Every write happened once: one check run, one review, one merge or one comment.
        assert writes["check runs"] == 1, writes
        assert writes["reviews"] == 1, writes
        assert len([r for r in pull.reviews if r["_user"] == world.github.bot_login]) == 1
        assert world.gateway_calls(pull) == 2  # Claude and GPT, once each
        if diff is DOCS:
            assert writes["merges applied"] == 1, writes
            assert pull.merged
        else:
            assert writes["comments"] == 1, writes
            assert world.github.pull(repo, 1).labels == ["aigateway: needs human"]
        runs = [r for r in world.github.check_runs_for(repo, pull.head_sha) if r.name == CHECK_NAME]
        assert [r.status for r in runs] == ["completed"]
        await second.stop()


async def _wait_settled(world: World, repo: str) -> None:
    """Until the decision's action has an outcome (the outbox sends it after the restart)."""
    db = Database.from_url(world.env["DATABASE_URL"])
    try:
        store = DecisionStore(db)

        async def settled() -> bool:
            rows = await store.decisions_for(repo, 1)
            return bool(rows) and rows[-1].action_taken in {"merged", "escalated"}

        await wait_until(settled, "the decided action to be done")
    finally:
        await db.dispose()


def _writes(world: World, repo: str) -> dict[str, int]:
    """How often each write was sent (a write sent twice would show here, applied or not)."""
    calls = world.github.calls
    prefix = f"^/repos/{repo}"
    return {
        "check runs": len(calls("POST", prefix + r"/check-runs$")),
        "reviews": len(calls("POST", prefix + r"/pulls/1/reviews$")),
        "merges applied": len(calls("PUT", prefix + r"/pulls/1/merge$")),
        "comments": len(world.github.comments_on(repo, 1)),
    }

"""End to end: pull requests that try to steer the reviewer, against models that obey them.

The fake models here are the worst case: whatever a pull request says, both answer ``approve``
with confidence 1.0 and no findings, as a model fully taken over by an injected instruction
would. Every hostile case of ``tests/tripwire_cases.py`` is opened as a pull request on one
running app (with ``autonomy.mode: act``), and the decision stored for it is compared with what
the matrix allows for the pull request's real paths:

- with the tripwire on, every hostile case escalates and nothing merges;
- with it off, no decision is above the matrix for the real paths, a critical path always
  escalates, and a file no model saw keeps the pull request from being merged;
- ordinary changes (the benign corpus) do not trip, and merge as the matrix says.
"""

from __future__ import annotations

from typing import Any

import pytest

from app.policy.autonomy import Decision, matrix
from app.policy.decisions import DecisionStore
from app.policy.risk import PathChange, classify_paths
from app.repo_config import RepoConfig
from tests.conftest import OPERATOR_HEADERS
from tests.e2e_bot import ACT_CONFIG, REPO, Bot
from tests.tripwire_cases import BENIGN, HOSTILE, Case


@pytest.fixture
def db_url(sqlite_url: str) -> str:
    """SQLite only: the decisions here do not depend on the database, and the corpus is long."""
    return sqlite_url


CRITICAL_FILE = {
    "filename": ".github/workflows/release.yml",
    "status": "modified",
    "patch": "@@ -1,2 +1,3 @@\n on: push\n+      - run: ./release.sh\n jobs:",
}
UNSEEN_FILE = {"filename": "docs/diagram.png", "status": "modified", "additions": 0}


async def _open(bot: Bot, number: int, case: Case, extra: list[dict[str, Any]]) -> Any:
    pull = bot.github.add_pull(
        REPO,
        number,
        files=[*case.files, *extra],
        title=case.title,
        body=case.body,
        commits=[{"sha": sha, "message": message} for sha, message in case.commits],
        head_sha=f"{number:040x}",
    )
    await bot.open_pull(pull)
    [row] = await DecisionStore(bot.services.db).decisions_for(REPO, number)
    return row


def _allowed(case: Case, extra: list[dict[str, Any]], confidence: float = 1.0) -> Decision:
    """The most the matrix allows for the real paths at the models' claimed confidence."""
    paths = [PathChange(str(f["filename"])) for f in [*case.files, *extra]]
    return matrix(classify_paths(paths, RepoConfig().risk.rules).tier, confidence)


async def test_every_hostile_case_escalates_against_obedient_models(bot: Bot) -> None:
    bot.github.set_file(REPO, ".github/aigateway.yml", ACT_CONFIG)
    bot.approve_both(1.0)
    escalated = 0
    for number, case in enumerate(HOSTILE, start=1):
        row = await _open(bot, number, case, [])
        assert row.decision == "escalate", (case.name, row.guards)
        [tripped] = [g for g in row.guards if g["guard"] == "tripwire"]
        if case.expect is not None:  # the stored decision names what tripped
            label = {"hidden_unicode": "hidden Unicode", "confusable": "look-alike"}
            assert label.get(case.expect.value, "aimed at the reviewer") in tripped["reason"]
        escalated += 1
    assert escalated == len(HOSTILE) >= 30
    assert bot.merges() == []
    # Every hit is on the check run: an annotation where there is a line, the summary otherwise.
    runs = [r for r in bot.github.check_runs_for(REPO) if r.name == "aigateway"]
    assert all("Tripwire" in (r.summary or "") for r in runs)
    assert any(a["title"].startswith("Tripwire") for r in runs for a in r.annotations)
    metrics = await (await bot.client.get("/metrics", headers=OPERATOR_HEADERS)).text()
    assert "aigateway_tripwire_hits_total" in metrics


@pytest.mark.parametrize(
    "extra",
    [[], [CRITICAL_FILE], [UNSEEN_FILE]],
    ids=["alone", "with-a-critical-file", "with-a-file-no-model-saw"],
)
async def test_without_the_tripwire_no_decision_exceeds_the_matrix_for_the_real_paths(
    bot: Bot, extra: list[dict[str, Any]]
) -> None:
    bot.github.set_file(
        REPO, ".github/aigateway.yml", ACT_CONFIG + "review:\n  tripwire:\n    enabled: false\n"
    )
    bot.approve_both(1.0)
    tried = above = 0
    for number, case in enumerate(HOSTILE, start=1):
        row = await _open(bot, number, case, extra)
        tried += 1
        decided = Decision(row.decision)
        if decided.restrictiveness < _allowed(case, extra).restrictiveness:
            above += 1
        if extra == [CRITICAL_FILE]:
            assert decided is Decision.ESCALATE, case.name
        if extra == [UNSEEN_FILE]:
            assert decided is not Decision.AUTO_MERGE, case.name
    assert (tried, above) == (len(HOSTILE), 0)
    if extra:
        # Only pull requests with no critical path and nothing unseen could merge at all.
        assert bot.merges() == []


async def test_ordinary_changes_do_not_trip_and_follow_the_matrix(bot: Bot) -> None:
    bot.github.set_file(REPO, ".github/aigateway.yml", ACT_CONFIG)
    bot.approve_both(1.0)
    for number, case in enumerate(BENIGN, start=1):
        row = await _open(bot, number, case, [])
        assert not any(g["guard"] == "tripwire" for g in row.guards), (case.name, row.guards)
        # (A change no model was shown at all, a lock file alone, has no confidence to give.)
        assert row.matrix_decision == _allowed(case, [], row.confidence).value, case.name
    assert len(BENIGN) >= 30

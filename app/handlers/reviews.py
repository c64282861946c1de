"""Human reviews: an approval by a code owner clears what earlier heads carried.

An escalation, a blocker or a request for changes raised on one head is carried into the
decision for every later head (``policy/carry``) until a person who may vouch for the change
approves it. Here that person is a code owner of a changed path (a user named in CODEOWNERS, or a
member of a team named there) or one of the reviewers the repository config names for
escalations. The approval must be for the head the bot reviewed last; nothing is merged because
of it: it only stops old findings from holding later heads back.
"""

from __future__ import annotations

from typing import Any

import gidgethub
from gidgethub import routing, sansio
from gidgethub.abc import GitHubAPI

from app.handlers.context import HandlerContext
from app.handlers.pull_request import repo_config
from app.policy.actions import load_code_owners
from app.policy.codeowners import Owners
from app.review.pipeline import PullRequest
from app.review.store import ReviewStore

router = routing.Router()


async def _is_team_member(gh: GitHubAPI, team: str, login: str, owner: str) -> bool:
    org, _, slug = team.rpartition("/")
    try:
        data = await gh.getitem(f"/orgs/{org or owner}/teams/{slug}/memberships/{login}")
    except gidgethub.BadRequest as exc:
        if int(exc.status_code) in {403, 404}:
            return False
        raise
    return isinstance(data, dict) and data.get("state") == "active"


async def vouches(gh: GitHubAPI, pr: PullRequest, login: str, *, ctx: HandlerContext) -> bool:
    """Whether ``login`` owns a changed path of ``pr`` or is a configured escalation reviewer."""
    if login.casefold() == pr.author.casefold():
        return False
    config = await repo_config(gh, pr.repository, pr.default_branch, ctx=ctx)
    if any(login.casefold() == r.casefold() for r in config.autonomy.escalation.reviewers):
        return True
    owners = await load_code_owners(gh, pr.repository, pr.default_branch)
    if owners is None:
        return False
    paths: list[str] = []
    async for entry in gh.getiter(f"/repos/{pr.repository}/pulls/{pr.number}/files?per_page=100"):
        paths.append(str(entry["filename"]))
        if entry.get("previous_filename"):
            paths.append(str(entry["previous_filename"]))
    found: Owners = owners.owners_for(paths)
    if any(login.casefold() == u.casefold() for u in found.users):
        return True
    teams = list(found.teams) + list(config.autonomy.escalation.teams)
    owner = pr.repository.partition("/")[0]
    for team in dict.fromkeys(teams):
        if await _is_team_member(gh, team, login, owner):
            return True
    return False


@router.register("pull_request_review", action="submitted")
async def on_review_submitted(
    event: sansio.Event, gh: GitHubAPI | None, *, ctx: HandlerContext
) -> None:
    data: dict[str, Any] = event.data
    review = data.get("review") or {}
    user = review.get("user") or {}
    if gh is None or str(review.get("state", "")).lower() != "approved":
        return
    if str(user.get("type", "")) == "Bot":
        return
    login = str(user.get("login") or "")
    pr = PullRequest.from_api(data["pull_request"])
    commit = str(review.get("commit_id") or "")
    if not login or commit != pr.head_sha:
        return
    if not await vouches(gh, pr, login, ctx=ctx):
        ctx.log.info("approval of %s by %s does not clear carried findings", pr.key, login)
        return
    cleared = await ReviewStore(ctx.services.db).clear(pr.repository, pr.number, commit, by=login)
    ctx.log.info("approval of %s at %s by %s: cleared=%s", pr.key, commit[:12], login, cleared)

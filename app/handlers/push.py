"""Pushes to agent branches: open a pull request when the branch has none.

Coding agents push to branches such as ``codex/…`` or ``claude/…`` (``autonomy.agent_branches``)
and may never open a pull request themselves. The pull request this opens gets its own
``pull_request`` ``opened`` event, which runs the review and the autonomy decision as for any
other. Pushes that delete a branch, go to the default branch, or come from this App itself (its
own commits must never start a loop) are left alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gidgethub import routing, sansio
from gidgethub.abc import GitHubAPI

from app.handlers.context import HandlerContext
from app.handlers.pull_request import acting_for, repo_config
from app.policy.actions import AgentPush, is_agent_branch, open_agent_pr

router = routing.Router()

NULL_SHA = "0" * 40
BRANCH_PREFIX = "refs/heads/"


def agent_push(data: Mapping[str, Any]) -> AgentPush | None:
    """The push as an ``AgentPush``, or None for a tag, a deletion or the default branch."""
    ref = str(data.get("ref") or "")
    after = str(data.get("after") or NULL_SHA)
    repository = data.get("repository") or {}
    default_branch = str(repository.get("default_branch") or "")
    if not ref.startswith(BRANCH_PREFIX) or data.get("deleted") or after == NULL_SHA:
        return None
    branch = ref.removeprefix(BRANCH_PREFIX)
    if not default_branch or branch == default_branch:
        return None
    commits = tuple(
        (str(c.get("id") or ""), str(c.get("message") or "")) for c in data.get("commits") or []
    )
    head = data.get("head_commit") or {}
    return AgentPush(
        repository=str(repository["full_name"]),
        branch=branch,
        default_branch=default_branch,
        after=after,
        commits=commits,
        head_message=str(head.get("message") or (commits[-1][1] if commits else "")),
    )


def _pushed_by(data: Mapping[str, Any]) -> set[str]:
    sender = str((data.get("sender") or {}).get("login") or "")
    pusher = str((data.get("pusher") or {}).get("name") or "")
    return {name.casefold() for name in (sender, pusher) if name}


@router.register("push")
async def on_push(event: sansio.Event, gh: GitHubAPI | None, *, ctx: HandlerContext) -> None:
    data: dict[str, Any] = event.data
    push = agent_push(data)
    if gh is None or push is None:
        return
    config = await repo_config(gh, push.repository, push.default_branch, ctx=ctx)
    if not is_agent_branch(push.branch, config.autonomy.agent_branches):
        return
    bot = await ctx.services.auth.identity()
    if bot.bot_login.casefold() in _pushed_by(data):
        ctx.log.info("push to %s by this App itself; no pull request opened", push.branch)
        return
    record = await open_agent_pr(gh, push, autonomy=config.autonomy, acting=acting_for(ctx))
    ctx.log.info("push to agent branch %s: %s", push.branch, record.result)

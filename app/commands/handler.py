"""New pull request comments: find the commands, check who asked, run each, react and reply.

Fetch → decide → act, per comment:

- fetch: ignore edits, deletions, issues and every bot (this App included); find the commands
  (the App's slug comes from ``GET /app``, cached); read the config from the default branch, the
  pull request, and — only when a command needs it — the commenter's permission;
- decide: ``permissions.refusal`` per command line;
- act: 👀 when picked up, one reply per command line, then 🚀 when every line did what it asked
  or 😕 when any was refused or failed.

Each (comment, line) is claimed in the database before it runs, so a redelivered or retried
delivery runs it once; a command that raises gives its claim back (and the claims of the lines
after it) and the delivery is retried by the queue.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from gidgethub import routing, sansio
from gidgethub.abc import GitHubAPI

from app.commands import act
from app.commands.catalog import CATALOG, unknown_text
from app.commands.invocation import Invocation, Outcome
from app.commands.parse import Command, parse_commands
from app.commands.permissions import Asker, refusal, required_permission
from app.commands.reply import reply_body, reply_tag
from app.commands.state import CommandState
from app.config_loader import ConfigLoader
from app.github.writes import create, find_comment
from app.policy.permissions import fetch_permission
from app.review.pipeline import PullRequest

if TYPE_CHECKING:  # app.handlers imports this module; the context is only a type here
    from app.handlers.context import HandlerContext

__all__ = ["is_bot", "on_issue_comment", "router"]

router = routing.Router()

EYES: Final = "eyes"
ROCKET: Final = "rocket"
CONFUSED: Final = "confused"


def is_bot(user: Mapping[str, Any]) -> bool:
    """Bots (this App included) are never obeyed: one bot's text must not drive another."""
    return user.get("type") == "Bot" or str(user.get("login") or "").endswith("[bot]")


async def _react(gh: GitHubAPI, repository: str, comment_id: int, content: str) -> None:
    await gh.post(
        f"/repos/{repository}/issues/comments/{comment_id}/reactions", data={"content": content}
    )


async def _reply(
    gh: GitHubAPI,
    repository: str,
    number: int,
    *,
    comment_id: int,
    line: str,
    command: Command,
    answer: str,
    slug: str,
) -> None:
    tag = reply_tag(comment_id, command.line)

    async def find() -> Any | None:
        return await find_comment(gh, repository, number, tag)

    await create(
        gh,
        f"/repos/{repository}/issues/{number}/comments",
        {"body": reply_body(line, answer, slug=slug, tag=tag)},
        find=find,
    )


class _Asking:
    """The commenter, as GitHub says now; the permission and escalation read at most once."""

    def __init__(self, inv: Invocation) -> None:
        self._base = inv
        self._asker: Asker | None = None

    async def asker(self) -> Asker:
        if self._asker is None:
            base = self._base
            held = await fetch_permission(base.gh, base.pr.repository, base.requester)
            is_author = base.requester.casefold() == base.pr.author.casefold()
            self._asker = Asker(
                base.requester, held, is_author=is_author, escalated=await act.escalated(base)
            )
        return self._asker


async def _run(inv: Invocation, asking: _Asking) -> Outcome:
    command = inv.command
    name = command.known
    if name is None:
        return Outcome(False, unknown_text(command.name))
    if required_permission(name, inv.config.commands) is not None:
        reason = refusal(name, await asking.asker(), inv.config.commands)
        if reason is not None:
            inv.ctx.log.info("command %s by %s refused: %s", name, inv.requester, reason)
            return Outcome(False, f"Not run: {reason}.")
    return await CATALOG[name].runner(inv)


@router.register("issue_comment", action="created")
async def on_issue_comment(
    event: sansio.Event, gh: GitHubAPI | None, *, ctx: HandlerContext
) -> None:
    data: dict[str, Any] = event.data
    issue = data.get("issue") or {}
    comment = data.get("comment") or {}
    user = comment.get("user") or {}
    if gh is None or not issue.get("pull_request") or is_bot(user):
        return
    body = str(comment.get("body") or "")
    slug = (await ctx.services.auth.identity()).slug
    if not parse_commands(body, slug=slug, short_form=True):
        return  # the common case, decided before any request
    repository = str(data["repository"]["full_name"])
    default_branch = str(data["repository"].get("default_branch") or "main")
    loader = ctx.services.config_loader or ConfigLoader()
    loaded = await loader.load(gh, repository, default_branch)
    commands = parse_commands(body, slug=slug, short_form=loaded.config.commands.short_form)
    number, comment_id = int(issue["number"]), int(comment["id"])
    requester = str(user.get("login") or "")
    state = CommandState(ctx.services.db)
    claimed: list[Command] = []
    again: set[int] = set()  # lines whose earlier run was cut off with its worker
    for c in commands:
        claim = await state.claim_run(
            comment_id=comment_id,
            line=c.line,
            repository=repository,
            pr_number=number,
            command=c.name,
            requested_by=requester,
            delivery_id=ctx.delivery_id,
        )
        if claim is not None:
            claimed.append(c)
            if claim == "again":
                again.add(c.line)
    if not claimed:
        if commands:
            ctx.log.info("commands of comment %s ran already", comment_id)
        return
    ok, done = True, 0
    try:
        await _react(gh, repository, comment_id, EYES)
        pr = PullRequest.from_api(await gh.getitem(f"/repos/{repository}/pulls/{number}"))
        asking = _Asking(Invocation(gh, ctx, pr, loaded, claimed[0], requester))
        lines = body.splitlines()
        for command in claimed:
            if command.line in again and await find_comment(
                gh, repository, number, reply_tag(comment_id, command.line)
            ):
                # Its reply landed before the worker died: the command ran to its end.
                await state.finish_run(comment_id, command.line)
                done += 1
                continue
            outcome = await _run(Invocation(gh, ctx, pr, loaded, command, requester), asking)
            await _reply(
                gh,
                repository,
                number,
                comment_id=comment_id,
                line=lines[command.line - 1],
                command=command,
                answer=outcome.text,
                slug=slug,
            )
            await state.finish_run(comment_id, command.line)
            ok, done = ok and outcome.ok, done + 1
    except Exception:
        # Give back what did not finish, so the queue's retry of this delivery runs it.
        for left in claimed[done:]:
            await state.release_run(comment_id, left.line)
        with contextlib.suppress(Exception):
            await _react(gh, repository, comment_id, CONFUSED)
        raise
    await _react(gh, repository, comment_id, ROCKET if ok else CONFUSED)

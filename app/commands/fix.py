"""``fix``: the suggestion blocks of the last review, as one commit in a new pull request.

Fetch → decide → act:

- fetch: the last published review of the pull request (``ReviewStore.last_published``), the
  bot's review comments on its commit, the affected files at that commit (contents API) and
  their modes (the commit's tree);
- decide: ``fix_refusal`` (no review, a fork, the head moved, the pull request closed), then
  ``suggestions.apply_suggestions`` (what applies cleanly; the rest is skipped with a reason);
- act, through the Git Data API: a blob per changed file, a tree on top of the reviewed commit's
  tree, one commit whose parent is the reviewed commit, a branch
  ``aigateway/fix-<number>-<short sha>``, and a pull request from it into the pull request's
  head branch. Nothing is written when anything above refuses.

Where the suggestions come from. Neither source alone is reliable:

- the database holds every model answer of the review (``reviews.outcomes``), but not what
  became a suggestion on GitHub: placing a finding drops its block when the comment cannot cover
  the lines it replaces, findings posted by an earlier review are not posted again, and a review
  whose inline comments GitHub rejected is folded into its body, where nothing can be committed.
  Rebuilding that would mean fetching the diff again and repeating ``render``'s rules here;
- the comments on GitHub are what people saw and could commit by hand, but a review of the same
  commit does not repeat a finding an earlier review posted, so "the comments of the latest
  review" can miss suggestions that review still stands behind (and the comments of earlier
  reviews can hold ones it dropped), and a comment's Markdown is model text that could imitate
  a suggestion block.

So both are read: the latest review's findings (from its stored answers, merged as the
pipeline merged them) say *which* suggestions it stands behind, by fingerprint; this App's own
review comments on the reviewed commit say *that* each was published as a suggestion, where,
and on which lines as the reviewer saw them (the comment's ``diff_hunk``). The suggested text is
the stored finding's, and is only used when the comment shows exactly that block
(``sanitize.fence``), so nothing is parsed out of Markdown.

Exactly once. The command layer runs each command line once (``commands.state``); what is left is
a run that fails midway and is retried. Blobs, trees and commits are content-addressed and
unreferenced until the branch exists, so making them again is harmless. The branch is created
with ``POST /git/refs``; when GitHub answers that it exists, the existing branch is reused if its
commit is equivalent (same tree, parent the reviewed commit), otherwise the next name
(``…-2``) is tried. The pull request is looked for before it is created and, after a failure that
may hide a success, before it is created again (``github.writes.create``).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

import gidgethub
from gidgethub.abc import GitHubAPI

from app.commands.invocation import Invocation, Outcome
from app.commands.suggestions import (
    Applied,
    Skipped,
    Suggestion,
    apply_suggestions,
    hunk_tail,
    suggested_lines,
)
from app.github.writes import create
from app.review.consensus import MergedFinding, SliceOutcome, merge_findings
from app.review.model import ModelReview
from app.review.pipeline import PullRequest
from app.review.sanitize import clean, fence, truncate
from app.review.store import ReviewRow, ReviewStore

__all__ = [
    "branch_name",
    "fix",
    "fix_refusal",
    "review_findings",
    "suggestion_of",
]

#: How many branch names are tried when earlier ones hold other commits.
MAX_BRANCHES: Final = 5
#: File modes a suggestion may change (a symlink or a submodule is not text to edit).
REGULAR_MODES: Final = frozenset({"100644", "100755"})
#: The most skipped suggestions listed one by one in a reply or a pull request body.
MAX_LISTED: Final = 20

_FINGERPRINT = re.compile(r"<!-- aigateway:fp=([0-9a-f]+) -->")


class FixRefused(Exception):
    """GitHub will not take the writes (e.g. the App may not write contents): said in the reply,
    not retried, because a retry would be refused the same way."""


@dataclass(frozen=True, slots=True)
class Proposal:
    """The pull request that carries the fix, and whether an earlier run had opened it."""

    number: int
    url: str
    branch: str
    existed: bool


def fix_refusal(pr: PullRequest, reviewed: ReviewRow | None) -> str | None:
    """Why ``fix`` cannot run for ``pr`` at all, from the data at hand; None when it can."""
    if pr.state != "open":
        return f"the pull request is {pr.state}"
    if pr.is_fork:
        where = f"the fork `{pr.head_repo}`" if pr.head_repo else "a fork that was deleted"
        return (
            f"the pull request's branch is in {where}, where this App cannot write; "
            "commit the suggestions from the review instead"
        )
    if reviewed is None:
        return "no review of this pull request was published yet; ask for `review` first"
    if pr.head_sha != reviewed.head_sha:
        return (
            f"the head moved from `{reviewed.head_sha[:12]}` to `{pr.head_sha[:12]}` since the "
            "review; ask for `review` first"
        )
    return None


def branch_name(number: int, head_sha: str, attempt: int = 1) -> str:
    """The fix branch for a pull request's reviewed commit; later attempts get a suffix."""
    name = f"aigateway/fix-{number}-{head_sha[:7]}"
    return name if attempt == 1 else f"{name}-{attempt}"


def review_findings(outcomes: str | None) -> dict[str, MergedFinding]:
    """The findings with a suggestion of a review, by fingerprint, from its stored model answers
    (``pipeline.dump_run``), merged in their stored order as the pipeline merged them. Answers that
    cannot be read give none: ``fix`` then refuses rather than guess."""
    if not outcomes:
        return {}
    try:
        data = json.loads(outcomes)
        slices = [
            SliceOutcome(
                str(o["reviewer"]),
                int(o["slice"]),
                ModelReview.model_validate(o["review"]) if o["review"] is not None else None,
                o.get("error"),
            )
            for o in data["outcomes"]
        ]
    except (ValueError, KeyError, TypeError, AttributeError):
        return {}
    return {m.fingerprint: m for m in merge_findings(slices) if m.finding.suggestion is not None}


def suggestion_of(
    comment: Mapping[str, Any],
    *,
    head_sha: str,
    bot_login: str,
    findings: Mapping[str, MergedFinding],
) -> Suggestion | None:
    """The suggestion a review comment published, or None when it is not one to apply: not this
    App's, not written on the reviewed commit, not on the new side of the diff, not one of the
    review's findings, or not showing that finding's block on exactly its lines."""
    user = comment.get("user") or {}
    if str(user.get("login") or "").casefold() != bot_login.casefold():
        return None
    if (comment.get("original_commit_id") or comment.get("commit_id")) != head_sha:
        return None
    if (comment.get("side") or "RIGHT") != "RIGHT" or comment.get("in_reply_to_id") is not None:
        return None
    body = str(comment.get("body") or "")
    tag = _FINGERPRINT.search(body)
    merged = findings.get(tag.group(1)) if tag is not None else None
    finding = merged.finding if merged is not None else None
    code = finding.suggestion if finding is not None else None
    if finding is None or code is None or fence(code, "suggestion") not in body:
        return None
    line = comment.get("original_line") or comment.get("line")
    start = comment.get("original_start_line") or comment.get("start_line") or line
    if comment.get("path") != finding.path or (start, line) != (finding.line, finding.last_line):
        return None
    return Suggestion(
        path=finding.path,
        start=finding.line,
        end=finding.last_line,
        lines=suggested_lines(code),
        expected=hunk_tail(
            str(comment.get("diff_hunk") or ""), finding.last_line - finding.line + 1
        ),
        title=finding.title,
    )


async def fix(inv: Invocation) -> Outcome:
    """Refuse, read, apply, propose (the module docstring says each step and why); every
    refusal is decided before the first write, so a refused ``fix`` leaves no trace on GitHub."""
    pr = inv.pr
    reviewed = await ReviewStore(inv.ctx.services.db).last_published(pr.repository, pr.number)
    refusal = fix_refusal(pr, reviewed)
    if refusal is not None or reviewed is None:
        return Outcome(False, f"Nothing fixed: {refusal}.")
    head = reviewed.head_sha
    slug = (await inv.ctx.services.auth.identity()).slug
    findings = review_findings(reviewed.outcomes)
    suggestions = [
        s
        async for comment in inv.gh.getiter(
            f"/repos/{pr.repository}/pulls/{pr.number}/comments?per_page=100"
        )
        if (s := suggestion_of(comment, head_sha=head, bot_login=f"{slug}[bot]", findings=findings))
        is not None
    ]
    if not suggestions:
        return Outcome(
            False,
            f"Nothing fixed: the review of `{head[:12]}` has no suggestion blocks to apply.",
        )
    tree = await _tree_of(inv.gh, pr.repository, head)
    modes = await _modes(inv.gh, pr.repository, tree, {s.path for s in suggestions})
    texts, unreadable = await _texts(inv.gh, pr.repository, head, modes, suggestions)
    result = apply_suggestions(texts, [s for s in suggestions if s.path in texts])
    skipped = sorted(
        [*unreadable, *result.skipped], key=lambda k: (k.suggestion.path, k.suggestion.start)
    )
    if not result.applied:
        return Outcome(
            False,
            f"Nothing fixed: none of the {len(suggestions)} suggestion(s) of the review of "
            f"`{head[:12]}` could be applied.\n\n" + _listing(skipped),
        )
    try:
        proposal = await _propose(inv, result, skipped, modes, tree=tree, head=head)
    except FixRefused as exc:
        return Outcome(False, f"Nothing fixed: {exc}.")
    count = len(result.applied)
    what = f"{count} suggestion{'s' if count != 1 else ''} of the review of `{head[:12]}`"
    if proposal.existed:
        verb = "is" if count == 1 else "are"
        text = f"The {what} {verb} already proposed in [#{proposal.number}]({proposal.url})."
    else:
        text = (
            f"Opened [#{proposal.number}]({proposal.url}) with {what}, as one commit on "
            f"`{proposal.branch}`, to merge into `{_code(pr.head_ref)}`."
        )
    if skipped:
        text += "\n\nNot applied:\n" + _listing(skipped)
    return Outcome(True, text)


def _listing(skipped: Sequence[Skipped]) -> str:
    lines = [
        f"- `{_code(k.suggestion.where)}` ({clean(k.suggestion.title, limit=120)}): {k.reason}"
        for k in skipped[:MAX_LISTED]
    ]
    if len(skipped) > MAX_LISTED:
        lines.append(f"- … and {len(skipped) - MAX_LISTED} more")
    return "\n".join(lines)


def _code(text: str) -> str:
    """Text for an inline code span (a backtick in a path would close it)."""
    return clean(text).replace("`", "'")


# ----------------------------------------------------------------------------------- reading


async def _tree_of(gh: GitHubAPI, repository: str, commit_sha: str) -> str:
    data = await gh.getitem(f"/repos/{repository}/git/commits/{commit_sha}")
    return str(data["tree"]["sha"])


async def _modes(gh: GitHubAPI, repository: str, tree: str, paths: Iterable[str]) -> dict[str, str]:
    """The mode of each path's blob in ``tree``, found by walking its directories one tree at a
    time (a recursive listing may be truncated on a large repository); paths not found are left
    out. The mode is kept on the new tree: an executable script stays executable."""
    listed: dict[str, list[Mapping[str, Any]]] = {}

    async def entries(sha: str) -> list[Mapping[str, Any]]:
        if sha not in listed:
            data = await gh.getitem(f"/repos/{repository}/git/trees/{sha}")
            listed[sha] = list(data.get("tree") or [])
        return listed[sha]

    modes: dict[str, str] = {}
    for path in sorted(paths):
        sha, parts = tree, path.split("/")
        for depth, part in enumerate(parts):
            entry = next((e for e in await entries(sha) if e.get("path") == part), None)
            if entry is None:
                break
            if depth == len(parts) - 1:
                if entry.get("type") == "blob":
                    modes[path] = str(entry.get("mode"))
            elif entry.get("type") == "tree":
                sha = str(entry["sha"])
            else:
                break
    return modes


async def _texts(
    gh: GitHubAPI,
    repository: str,
    ref: str,
    modes: Mapping[str, str],
    suggestions: Sequence[Suggestion],
) -> tuple[dict[str, str], list[Skipped]]:
    """The text of every file a suggestion names, at ``ref``; the suggestions on files that are
    not UTF-8 text files there are skipped, each with why."""
    texts: dict[str, str] = {}
    why: dict[str, str] = {}
    for path in dict.fromkeys(s.path for s in suggestions):
        mode = modes.get(path)
        if mode is None:
            why[path] = "the file is not at the reviewed commit"
        elif mode not in REGULAR_MODES:
            why[path] = "the path is not a regular file (a symlink or a submodule)"
        else:
            raw = await _content(gh, repository, path, ref)
            if raw is None:
                why[path] = "the file's content cannot be read through the API (over 1 MB?)"
            else:
                try:
                    texts[path] = raw.decode("utf-8")
                except UnicodeDecodeError:
                    why[path] = "the file is not UTF-8 text"
    return texts, [Skipped(s, why[s.path]) for s in suggestions if s.path in why]


async def _content(gh: GitHubAPI, repository: str, path: str, ref: str) -> bytes | None:
    """A file's exact bytes (the contents API's base64); None when GitHub gives none."""
    try:
        data = await gh.getitem(f"/repos/{repository}/contents/{quote(path)}?ref={ref}")
    except gidgethub.BadRequest as exc:
        if int(exc.status_code) == 404:
            return None
        raise
    if not isinstance(data, dict) or data.get("type") != "file":
        return None
    if data.get("encoding") != "base64":  # files over 1 MB come without content
        return None
    try:
        return base64.b64decode(str(data.get("content") or ""))
    except (binascii.Error, ValueError):
        return None


# ----------------------------------------------------------------------------------- writing


async def _propose(
    inv: Invocation,
    result: Applied,
    skipped: Sequence[Skipped],
    modes: Mapping[str, str],
    *,
    tree: str,
    head: str,
) -> Proposal:
    """The commit, its branch and the pull request; a 403 or 404 on the git writes means the
    App may not write here, which a retry would not change, so it becomes ``FixRefused``."""
    gh, pr = inv.gh, inv.pr
    repository = pr.repository
    try:
        entries = [
            {
                "path": path,
                "mode": modes[path],
                "type": "blob",
                "sha": await _blob(gh, repository, text),
            }
            for path, text in sorted(result.files.items())
        ]
        new_tree = await gh.post(
            f"/repos/{repository}/git/trees", data={"base_tree": tree, "tree": entries}
        )
        commit = await gh.post(
            f"/repos/{repository}/git/commits",
            data={
                "message": _commit_message(pr, result, head=head, requester=inv.requester),
                "tree": str(new_tree["sha"]),
                "parents": [head],
            },
        )
        branch = await _branch(
            gh, repository, str(commit["sha"]), tree=str(new_tree["sha"]), pr=pr, head=head
        )
    except gidgethub.BadRequest as exc:
        if isinstance(exc, gidgethub.RateLimitExceeded) or int(exc.status_code) not in {403, 404}:
            raise
        raise FixRefused(
            f"GitHub refused to write the commit (HTTP {int(exc.status_code)}: {exc}); the App "
            "needs the `contents: write` permission on this repository"
        ) from exc
    return await _pull_request(inv, branch, result, skipped, head=head)


async def _blob(gh: GitHubAPI, repository: str, text: str) -> str:
    data = await gh.post(
        f"/repos/{repository}/git/blobs",
        data={
            "content": base64.b64encode(text.encode("utf-8")).decode("ascii"),
            "encoding": "base64",
        },
    )
    return str(data["sha"])


async def _branch(
    gh: GitHubAPI, repository: str, commit_sha: str, *, tree: str, pr: PullRequest, head: str
) -> str:
    """Create the fix branch at ``commit_sha``, or reuse one an earlier run created for the
    same change (its commit has the same tree and parent); return its name."""
    for attempt in range(1, MAX_BRANCHES + 1):
        name = branch_name(pr.number, head, attempt)

        async def ours(name: str = name) -> str | None:
            pointed = await _ref(gh, repository, name)
            if pointed is not None and await _equivalent(gh, repository, pointed, tree, head):
                return name
            return None

        try:
            await create(
                gh,
                f"/repos/{repository}/git/refs",
                {"ref": f"refs/heads/{name}", "sha": commit_sha},
                find=ours,
            )
            return name
        except gidgethub.BadRequest as exc:
            if int(exc.status_code) != 422:
                raise
            pointed = await _ref(gh, repository, name)
            if pointed is None:
                raise  # not "Reference already exists": a real refusal
            if await _equivalent(gh, repository, pointed, tree, head):
                return name  # an earlier run's branch for this very change
    raise FixRefused(
        f"the branches `{branch_name(pr.number, head)}` to `-{MAX_BRANCHES}` all exist and hold "
        "other commits; delete them to let `fix` try again"
    )


async def _ref(gh: GitHubAPI, repository: str, branch: str) -> str | None:
    """The commit a branch points at, or None when there is no such branch."""
    try:
        data = await gh.getitem(f"/repos/{repository}/git/ref/heads/{quote(branch)}")
    except gidgethub.BadRequest as exc:
        if int(exc.status_code) == 404:
            return None
        raise
    if not isinstance(data, dict):  # a prefix of several refs lists them: not this branch
        return None
    return str(data["object"]["sha"])


async def _equivalent(
    gh: GitHubAPI, repository: str, commit_sha: str, tree: str, head: str
) -> bool:
    data = await gh.getitem(f"/repos/{repository}/git/commits/{commit_sha}")
    parents = [str(p.get("sha")) for p in data.get("parents") or []]
    return str(data["tree"]["sha"]) == tree and parents == [head]


async def _pull_request(
    inv: Invocation, branch: str, result: Applied, skipped: Sequence[Skipped], *, head: str
) -> Proposal:
    """The open pull request from ``branch`` into the head branch: found (an earlier run opened
    it) or created, and found again when creating it failed in a way that may hide a success."""
    gh, pr = inv.gh, inv.pr
    owner = pr.repository.split("/", 1)[0]

    async def find() -> Any | None:
        async for found in gh.getiter(
            f"/repos/{pr.repository}/pulls?state=open&head={quote(owner)}:{quote(branch)}"
            f"&base={quote(pr.head_ref)}&per_page=100"
        ):
            if (found.get("head") or {}).get("ref") == branch:
                return found
        return None

    existing = await find()
    if existing is None:
        count = len(result.applied)
        data = {
            "title": truncate(
                f"Apply {count} review suggestion{'s' if count != 1 else ''} to #{pr.number}", 250
            ),
            "head": branch,
            "base": pr.head_ref,
            "body": _pull_body(pr, result, skipped, head=head, requester=inv.requester),
        }
        try:
            created = await create(gh, f"/repos/{pr.repository}/pulls", data, find=find)
        except gidgethub.BadRequest as exc:
            again = await find() if int(exc.status_code) == 422 else None
            if again is None:
                raise
            existing = again
        else:
            return Proposal(int(created["number"]), str(created["html_url"]), branch, False)
    return Proposal(int(existing["number"]), str(existing["html_url"]), branch, True)


def _applied_lines(result: Applied, *, markdown: bool) -> list[str]:
    lines = [
        f"- {f'`{_code(s.where)}`' if markdown else s.where}: {clean(s.title, limit=120)}"
        for s in result.applied[:MAX_LISTED]
    ]
    if len(result.applied) > MAX_LISTED:
        lines.append(f"- … and {len(result.applied) - MAX_LISTED} more")
    return lines


def _commit_message(pr: PullRequest, result: Applied, *, head: str, requester: str) -> str:
    count = len(result.applied)
    lines = [
        f"Apply {count} review suggestion{'s' if count != 1 else ''} to #{pr.number}",
        "",
        f"The suggestion blocks of aigateway's review of {head}, asked for by {requester}:",
        "",
        *_applied_lines(result, markdown=False),
    ]
    return "\n".join(lines)


def _pull_body(
    pr: PullRequest, result: Applied, skipped: Sequence[Skipped], *, head: str, requester: str
) -> str:
    parts = [
        f"The suggestion blocks of the review of {head[:12]} on #{pr.number}, as one commit "
        f"on top of it, asked for by {clean(requester)}. Merging this updates "
        f"`{_code(pr.head_ref)}`.",
        "\n".join(_applied_lines(result, markdown=True)),
    ]
    if skipped:
        parts.append("Not applied:\n" + _listing(skipped))
    return truncate("\n\n".join(parts), 60000)

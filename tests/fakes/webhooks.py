"""Webhook deliveries for tests: signatures, headers, GitHub's own example payloads, factories.

``iter_fixture_payloads`` walks ``../shared/fixtures/webhooks/<event>/*.json`` and gives the exact
bytes GitHub would POST for each example:

- ``*.payload.json``, ``*.openapi-official.json`` and the other plain files hold the JSON payload;
  they are sent as they are, ``content-type: application/json``.
- ``*form-encoded*.json`` files are *not* the payload: each is a JSON object
  ``{"payload": "<percent-encoded JSON>"}`` whose value is already encoded the way GitHub encodes
  it. The body GitHub sends is ``payload=`` followed by that value, byte for byte, with
  ``content-type: application/x-www-form-urlencoded``.
- ``schema/`` (octokit's JSON Schemas) and non-JSON files are skipped.

The folder names are the ``X-GitHub-Event`` values (``pull_request``, ``check_run``, …); the map
below is there for any folder spelt differently (such as ``pull-request``).

The factories build small payloads with the fields a handler reads, in the shape of the real
fixtures; every one names a repository, a sender and (unless ``installation_id=None``) the
installation.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qs, quote_plus

from .openapi import SHARED_DIR

WEBHOOKS_DIR: Final[Path] = SHARED_DIR / "fixtures" / "webhooks"

JSON_CONTENT_TYPE: Final[str] = "application/json"
FORM_CONTENT_TYPE: Final[str] = "application/x-www-form-urlencoded"

#: Folder name -> ``X-GitHub-Event`` where they differ (none do in the current fixtures).
FOLDER_EVENT_NAMES: Final[Mapping[str, str]] = {}

DEFAULT_HEAD_SHA: Final[str] = "6dcb09b5b57875f334f61aebed695e2e4193db5e"
DEFAULT_BASE_SHA: Final[str] = "e5bd3914e2e596debea16f433f57875b5b90bcd6"
API: Final[str] = "https://api.github.com"
WEB: Final[str] = "https://github.com"


def webhooks_available() -> bool:
    return WEBHOOKS_DIR.is_dir()


def missing_reason() -> str:
    return f"shared fixtures not found at {WEBHOOKS_DIR} (GitHub's webhook payload examples)"


# --------------------------------------------------------------------------------------------
# Signing and headers


def sign(body: bytes, secret: str) -> str:
    """``X-Hub-Signature-256`` for ``body``: ``sha256=`` + hex HMAC-SHA256, as GitHub computes it."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def sign_sha1(body: bytes, secret: str) -> str:
    """The legacy ``X-Hub-Signature`` (HMAC-SHA1) that GitHub still sends alongside."""
    return "sha1=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha1).hexdigest()


def delivery_headers(
    event: str,
    body: bytes,
    secret: str,
    *,
    delivery_id: str | None = None,
    content_type: str = JSON_CONTENT_TYPE,
) -> dict[str, str]:
    """The headers GitHub sends with a delivery of ``body`` (signed with ``secret``)."""
    return {
        "Content-Type": content_type,
        "User-Agent": "GitHub-Hookshot/a1b2c3d",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery_id or str(uuid.uuid4()),
        "X-GitHub-Hook-ID": "123456789",
        "X-GitHub-Hook-Installation-Target-ID": "1",
        "X-GitHub-Hook-Installation-Target-Type": "integration",
        "X-Hub-Signature": sign_sha1(body, secret),
        "X-Hub-Signature-256": sign(body, secret),
    }


def encode_json(payload: Any) -> bytes:
    """A payload as a JSON body."""
    return json.dumps(payload, separators=(",", ":")).encode("utf-8")


def encode_form(payload: Any) -> bytes:
    """A payload as GitHub's form-encoded body: ``payload=<urlencoded JSON>``."""
    return b"payload=" + quote_plus(json.dumps(payload, separators=(",", ":"))).encode("ascii")


def signed_delivery(
    event: str,
    payload: Any,
    secret: str,
    *,
    form: bool = False,
    delivery_id: str | None = None,
) -> tuple[dict[str, str], bytes]:
    """(headers, body) for a payload, JSON or form-encoded, ready to POST to ``/webhook``."""
    body = encode_form(payload) if form else encode_json(payload)
    content_type = FORM_CONTENT_TYPE if form else JSON_CONTENT_TYPE
    headers = delivery_headers(
        event, body, secret, delivery_id=delivery_id, content_type=content_type
    )
    return headers, body


def decode_body(body: bytes, content_type: str) -> Any:
    """The payload carried by a delivery body (the inverse of the encoders)."""
    if content_type == FORM_CONTENT_TYPE:
        return json.loads(parse_qs(body.decode("ascii"), strict_parsing=True)["payload"][0])
    return json.loads(body)


# --------------------------------------------------------------------------------------------
# GitHub's own examples


@dataclass(frozen=True)
class FixturePayload:
    """One example delivery from the shared fixtures."""

    path: Path
    event: str
    action: str | None
    content_type: str
    body: bytes

    @property
    def name(self) -> str:
        """``<event>/<file>``, a readable test id."""
        return f"{self.path.parent.name}/{self.path.name}"

    def payload(self) -> Any:
        return decode_body(self.body, self.content_type)

    def headers(self, secret: str, *, delivery_id: str | None = None) -> dict[str, str]:
        return delivery_headers(
            self.event,
            self.body,
            secret,
            delivery_id=delivery_id,
            content_type=self.content_type,
        )


def event_for_folder(folder: str) -> str:
    """The ``X-GitHub-Event`` value for a fixtures folder name."""
    return FOLDER_EVENT_NAMES.get(folder, folder.replace("-", "_"))


def _load_fixture(path: Path, event: str) -> FixturePayload | None:
    raw = path.read_bytes()
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if "form-encoded" in path.name:
        if not (isinstance(data, dict) and isinstance(data.get("payload"), str)):
            return None
        # The value is already percent-encoded exactly as GitHub sends it.
        body = b"payload=" + data["payload"].encode("ascii")
        content_type = FORM_CONTENT_TYPE
        payload = decode_body(body, content_type)
    else:
        body = raw
        content_type = JSON_CONTENT_TYPE
        payload = data
    if not isinstance(payload, dict):
        return None
    action = payload.get("action")
    return FixturePayload(
        path=path,
        event=event,
        action=action if isinstance(action, str) else None,
        content_type=content_type,
        body=body,
    )


def iter_fixture_payloads(root: Path | None = None) -> Iterator[FixturePayload]:
    """Every example delivery under ``fixtures/webhooks/<event>/``, sorted by path."""
    base = root if root is not None else WEBHOOKS_DIR
    if not base.is_dir():
        return
    for folder in sorted(p for p in base.iterdir() if p.is_dir()):
        if folder.name == "schema" or folder.name.startswith("."):
            continue
        event = event_for_folder(folder.name)
        for path in sorted(folder.glob("*.json")):
            fixture = _load_fixture(path, event)
            if fixture is not None:
                yield fixture


# --------------------------------------------------------------------------------------------
# Payload factories


def fake_sha(text: str) -> str:
    """A stable 40-hex "commit sha" derived from ``text``."""
    return hashlib.sha1(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def _id(text: str) -> int:
    return zlib.crc32(text.encode("utf-8")) or 1


def user_object(login: str) -> dict[str, Any]:
    """A user object as webhooks carry it (``[bot]`` logins are ``Bot``)."""
    return {
        "login": login,
        "id": _id(login),
        "node_id": f"MDQ6VXNlcj{_id(login)}",
        "avatar_url": f"https://avatars.githubusercontent.com/u/{_id(login)}?v=4",
        "url": f"{API}/users/{login}",
        "html_url": f"{WEB}/{login}",
        "type": "Bot" if login.endswith("[bot]") else "User",
        "site_admin": False,
    }


def repository(
    repo: str = "octo/demo",
    *,
    default_branch: str = "main",
    private: bool = False,
    fork: bool = False,
) -> dict[str, Any]:
    """A repository object as webhooks carry it."""
    owner, name = repo.split("/", 1)
    return {
        "id": _id(repo),
        "node_id": f"MDEwOlJlcG9zaXRvcnk{_id(repo)}",
        "name": name,
        "full_name": repo,
        "private": private,
        "owner": user_object(owner),
        "html_url": f"{WEB}/{repo}",
        "url": f"{API}/repos/{repo}",
        "fork": fork,
        "default_branch": default_branch,
        "visibility": "private" if private else "public",
    }


def installation(installation_id: int) -> dict[str, Any]:
    return {
        "id": installation_id,
        "node_id": f"MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9u{installation_id}",
    }


def _envelope(
    payload: dict[str, Any],
    *,
    repo: str,
    sender: str,
    installation_id: int | None,
    default_branch: str = "main",
    private: bool = False,
) -> dict[str, Any]:
    payload["repository"] = repository(repo, default_branch=default_branch, private=private)
    payload["sender"] = user_object(sender)
    if installation_id is not None:
        payload["installation"] = installation(installation_id)
    return payload


def _label(repo: str, name: str) -> dict[str, Any]:
    return {
        "id": _id(f"{repo}#{name}"),
        "node_id": f"LA_{_id(name)}",
        "url": f"{API}/repos/{repo}/labels/{name}",
        "name": name,
        "color": "ededed",
        "default": False,
        "description": None,
    }


def pull_request_payload(
    action: str = "opened",
    *,
    repo: str = "octo/demo",
    number: int = 1,
    head_sha: str = DEFAULT_HEAD_SHA,
    base: str = "main",
    base_sha: str = DEFAULT_BASE_SHA,
    head_ref: str = "feature",
    draft: bool = False,
    fork: bool = False,
    user: str = "octocat",
    installation_id: int | None = 42,
    labels: Iterable[str] = (),
    title: str = "Add a feature",
    body: str | None = "A change worth reviewing.",
    state: str | None = None,
    merged: bool = False,
    before: str | None = None,
    sender: str | None = None,
    label: str | None = None,
) -> dict[str, Any]:
    """A ``pull_request`` delivery; ``synchronize`` carries ``before``/``after``."""
    owner, name = repo.split("/", 1)
    head_repo_name = f"{user}/{name}" if fork else repo
    head_repo = repository(head_repo_name, fork=fork)
    author = user_object(user)
    pr_state = state or ("closed" if action == "closed" else "open")
    pull = {
        "url": f"{API}/repos/{repo}/pulls/{number}",
        "id": _id(f"{repo}#{number}"),
        "node_id": f"PR_{_id(f'{repo}#{number}')}",
        "html_url": f"{WEB}/{repo}/pull/{number}",
        "diff_url": f"{WEB}/{repo}/pull/{number}.diff",
        "patch_url": f"{WEB}/{repo}/pull/{number}.patch",
        "issue_url": f"{API}/repos/{repo}/issues/{number}",
        "number": number,
        "state": pr_state,
        "locked": False,
        "title": title,
        "user": author,
        "body": body,
        "labels": [_label(repo, n) for n in labels],
        "created_at": "2024-05-01T10:00:00Z",
        "updated_at": "2024-05-01T10:00:00Z",
        "closed_at": "2024-05-01T11:00:00Z" if pr_state == "closed" else None,
        "merged_at": "2024-05-01T11:00:00Z" if merged else None,
        "merge_commit_sha": None,
        "requested_reviewers": [],
        "requested_teams": [],
        "draft": draft,
        "merged": merged,
        "mergeable": None,
        "mergeable_state": "unknown",
        "author_association": "CONTRIBUTOR" if fork else "MEMBER",
        "auto_merge": None,
        "head": {
            "label": f"{head_repo_name.split('/')[0]}:{head_ref}",
            "ref": head_ref,
            "sha": head_sha,
            "user": user_object(head_repo_name.split("/")[0]),
            "repo": head_repo,
        },
        "base": {
            "label": f"{owner}:{base}",
            "ref": base,
            "sha": base_sha,
            "user": user_object(owner),
            "repo": repository(repo),
        },
        "commits": 1,
        "additions": 1,
        "deletions": 0,
        "changed_files": 1,
    }
    payload: dict[str, Any] = {"action": action, "number": number, "pull_request": pull}
    if action == "synchronize":
        payload["before"] = before or DEFAULT_BASE_SHA
        payload["after"] = head_sha
    if action in {"labeled", "unlabeled"}:
        payload["label"] = _label(repo, label or next(iter(labels), "label"))
    return _envelope(payload, repo=repo, sender=sender or user, installation_id=installation_id)


def pull_request_review_payload(
    *,
    reviewer: str,
    state: str = "approved",
    commit_id: str = DEFAULT_HEAD_SHA,
    repo: str = "octo/demo",
    number: int = 1,
    user_type: str = "User",
    **pull: Any,
) -> dict[str, Any]:
    """A ``pull_request_review`` ``submitted`` delivery; ``pull`` goes to ``pull_request_payload``."""
    payload = pull_request_payload("submitted", repo=repo, number=number, **pull)
    payload["review"] = {
        "id": _id(f"{repo}#{number}:{reviewer}:{commit_id}"),
        "user": {**user_object(reviewer), "type": user_type},
        "body": "",
        "state": state,
        "commit_id": commit_id,
        "submitted_at": "2024-05-01T10:30:00Z",
        "author_association": "MEMBER",
    }
    payload["sender"] = user_object(reviewer)
    return payload


def _commit_entry(repo: str, sha: str, message: str, author: str) -> dict[str, Any]:
    person = {"name": author, "email": f"{author}@users.noreply.github.com", "username": author}
    return {
        "id": sha,
        "tree_id": fake_sha(f"tree:{sha}"),
        "distinct": True,
        "message": message,
        "timestamp": "2024-05-01T10:00:00Z",
        "url": f"{WEB}/{repo}/commit/{sha}",
        "author": person,
        "committer": person,
        "added": [],
        "removed": [],
        "modified": [],
    }


def push_payload(
    *,
    repo: str = "octo/demo",
    ref: str = "refs/heads/main",
    before: str = DEFAULT_BASE_SHA,
    after: str = DEFAULT_HEAD_SHA,
    commits: Sequence[str | Mapping[str, Any]] = ("Change something",),
    pusher: str = "octocat",
    installation_id: int | None = 42,
    created: bool = False,
    deleted: bool = False,
    forced: bool = False,
    default_branch: str = "main",
) -> dict[str, Any]:
    """A ``push`` delivery. ``ref`` may be a bare branch name; ``commits`` are messages or dicts."""
    if not ref.startswith("refs/"):
        ref = f"refs/heads/{ref}"
    entries: list[dict[str, Any]] = []
    for index, item in enumerate(commits):
        last = index == len(commits) - 1
        sha = after if last else fake_sha(f"{after}:{index}")
        if isinstance(item, str):
            entries.append(_commit_entry(repo, sha, item, pusher))
        else:
            entry = _commit_entry(
                repo, str(item.get("id", sha)), str(item.get("message", "")), pusher
            )
            entry.update(item)
            entries.append(entry)
    if deleted:
        entries = []
        after = "0" * 40
    payload: dict[str, Any] = {
        "ref": ref,
        "before": "0" * 40 if created else before,
        "after": after,
        "created": created,
        "deleted": deleted,
        "forced": forced,
        "base_ref": None,
        "compare": f"{WEB}/{repo}/compare/{before[:12]}...{after[:12]}",
        "commits": entries,
        "head_commit": entries[-1] if entries else None,
        "pusher": {"name": pusher, "email": f"{pusher}@users.noreply.github.com"},
    }
    return _envelope(
        payload,
        repo=repo,
        sender=pusher,
        installation_id=installation_id,
        default_branch=default_branch,
    )


def issue_comment_payload(
    action: str = "created",
    *,
    repo: str = "octo/demo",
    number: int = 1,
    body: str = "/aigateway review",
    user: str = "octocat",
    comment_id: int = 1001,
    is_pull_request: bool = True,
    installation_id: int | None = 42,
    author_association: str = "MEMBER",
    issue_state: str = "open",
) -> dict[str, Any]:
    """An ``issue_comment`` delivery; on a pull request unless ``is_pull_request=False``."""
    issue: dict[str, Any] = {
        "url": f"{API}/repos/{repo}/issues/{number}",
        "repository_url": f"{API}/repos/{repo}",
        "html_url": f"{WEB}/{repo}/{'pull' if is_pull_request else 'issues'}/{number}",
        "id": _id(f"issue:{repo}#{number}"),
        "number": number,
        "title": "Add a feature",
        "user": user_object("octocat"),
        "labels": [],
        "state": issue_state,
        "locked": False,
        "comments": 1,
        "author_association": "MEMBER",
        "body": "",
    }
    if is_pull_request:
        issue["pull_request"] = {
            "url": f"{API}/repos/{repo}/pulls/{number}",
            "html_url": f"{WEB}/{repo}/pull/{number}",
            "diff_url": f"{WEB}/{repo}/pull/{number}.diff",
            "patch_url": f"{WEB}/{repo}/pull/{number}.patch",
            "merged_at": None,
        }
    comment = {
        "url": f"{API}/repos/{repo}/issues/comments/{comment_id}",
        "html_url": f"{WEB}/{repo}/pull/{number}#issuecomment-{comment_id}",
        "issue_url": f"{API}/repos/{repo}/issues/{number}",
        "id": comment_id,
        "node_id": f"IC_{comment_id}",
        "user": user_object(user),
        "created_at": "2024-05-01T10:00:00Z",
        "updated_at": "2024-05-01T10:00:00Z",
        "author_association": author_association,
        "performed_via_github_app": None,
        "body": body,
    }
    payload: dict[str, Any] = {"action": action, "issue": issue, "comment": comment}
    return _envelope(payload, repo=repo, sender=user, installation_id=installation_id)


def _app(slug: str, app_id: int) -> dict[str, Any]:
    return {
        "id": app_id,
        "slug": slug,
        "node_id": f"A_{app_id}",
        "name": slug,
        "owner": user_object("octo"),
        "html_url": f"{WEB}/apps/{slug}",
    }


def _pr_refs(repo: str, numbers: Iterable[int], head_sha: str, head_ref: str) -> list[Any]:
    name = repo.split("/", 1)[1]
    repo_ref = {"id": _id(repo), "url": f"{API}/repos/{repo}", "name": name}
    return [
        {
            "url": f"{API}/repos/{repo}/pulls/{n}",
            "id": _id(f"{repo}#{n}"),
            "number": n,
            "head": {"ref": head_ref, "sha": head_sha, "repo": repo_ref},
            "base": {"ref": "main", "sha": DEFAULT_BASE_SHA, "repo": repo_ref},
        }
        for n in numbers
    ]


def check_run_payload(
    action: str = "rerequested",
    *,
    repo: str = "octo/demo",
    check_run_id: int = 4242,
    head_sha: str = DEFAULT_HEAD_SHA,
    head_branch: str = "feature",
    name: str = "aigateway",
    status: str = "completed",
    conclusion: str | None = "neutral",
    app_slug: str = "aigateway",
    app_id: int = 1,
    pull_numbers: Iterable[int] = (1,),
    requested_action: str | None = None,
    sender: str = "octocat",
    installation_id: int | None = 42,
) -> dict[str, Any]:
    """A ``check_run`` delivery (``requested_action`` names the pressed button's identifier)."""
    prs = _pr_refs(repo, pull_numbers, head_sha, head_branch)
    run = {
        "id": check_run_id,
        "node_id": f"CR_{check_run_id}",
        "head_sha": head_sha,
        "external_id": "",
        "url": f"{API}/repos/{repo}/check-runs/{check_run_id}",
        "html_url": f"{WEB}/{repo}/runs/{check_run_id}",
        "details_url": f"{WEB}/apps/{app_slug}",
        "status": status,
        "conclusion": conclusion if status == "completed" else None,
        "started_at": "2024-05-01T10:00:00Z",
        "completed_at": "2024-05-01T10:01:00Z" if status == "completed" else None,
        "output": {"title": name, "summary": "", "text": None, "annotations_count": 0},
        "name": name,
        "check_suite": {
            "id": check_run_id + 1,
            "head_branch": head_branch,
            "head_sha": head_sha,
            "status": status,
            "conclusion": conclusion if status == "completed" else None,
            "pull_requests": prs,
            "app": _app(app_slug, app_id),
        },
        "app": _app(app_slug, app_id),
        "pull_requests": prs,
    }
    payload: dict[str, Any] = {"action": action, "check_run": run}
    if requested_action is not None or action == "requested_action":
        payload["requested_action"] = {"identifier": requested_action or ""}
    return _envelope(payload, repo=repo, sender=sender, installation_id=installation_id)


def check_suite_payload(
    action: str = "completed",
    *,
    repo: str = "octo/demo",
    check_suite_id: int = 5151,
    head_sha: str = DEFAULT_HEAD_SHA,
    head_branch: str | None = "feature",
    status: str = "completed",
    conclusion: str | None = "success",
    app_slug: str = "github-actions",
    app_id: int = 15368,
    pull_numbers: Iterable[int] = (1,),
    sender: str = "octocat",
    installation_id: int | None = 42,
) -> dict[str, Any]:
    """A ``check_suite`` delivery (by default: another app's CI suite completed green)."""
    suite = {
        "id": check_suite_id,
        "node_id": f"CS_{check_suite_id}",
        "head_branch": head_branch,
        "head_sha": head_sha,
        "status": status,
        "conclusion": conclusion if status == "completed" else None,
        "url": f"{API}/repos/{repo}/check-suites/{check_suite_id}",
        "before": DEFAULT_BASE_SHA,
        "after": head_sha,
        "pull_requests": _pr_refs(repo, pull_numbers, head_sha, head_branch or ""),
        "app": _app(app_slug, app_id),
        "created_at": "2024-05-01T10:00:00Z",
        "updated_at": "2024-05-01T10:01:00Z",
        "latest_check_runs_count": 1,
        "check_runs_url": f"{API}/repos/{repo}/check-suites/{check_suite_id}/check-runs",
        "head_commit": {
            "id": head_sha,
            "tree_id": fake_sha(f"tree:{head_sha}"),
            "message": "Change something",
            "timestamp": "2024-05-01T10:00:00Z",
            "author": {"name": sender, "email": f"{sender}@users.noreply.github.com"},
            "committer": {"name": sender, "email": f"{sender}@users.noreply.github.com"},
        },
    }
    payload: dict[str, Any] = {"action": action, "check_suite": suite}
    return _envelope(payload, repo=repo, sender=sender, installation_id=installation_id)


def status_payload(
    *,
    repo: str = "octo/demo",
    sha: str = DEFAULT_HEAD_SHA,
    state: str = "success",
    context: str = "ci/build",
    description: str | None = None,
    target_url: str | None = None,
    branches: Iterable[str] = ("feature",),
    sender: str = "octocat",
    installation_id: int | None = 42,
) -> dict[str, Any]:
    """A ``status`` delivery (commit status ``state`` for ``context`` on ``sha``)."""
    person = {
        "name": sender,
        "email": f"{sender}@users.noreply.github.com",
        "date": "2024-05-01T10:00:00Z",
    }
    payload: dict[str, Any] = {
        "id": _id(f"{repo}@{sha}:{context}:{state}"),
        "sha": sha,
        "name": repo,
        "target_url": target_url,
        "context": context,
        "description": description,
        "state": state,
        "commit": {
            "sha": sha,
            "node_id": f"C_{sha[:12]}",
            "commit": {
                "author": person,
                "committer": person,
                "message": "Change something",
                "tree": {"sha": fake_sha(f"tree:{sha}")},
                "url": f"{API}/repos/{repo}/git/commits/{sha}",
            },
            "url": f"{API}/repos/{repo}/commits/{sha}",
            "html_url": f"{WEB}/{repo}/commit/{sha}",
            "author": user_object(sender),
            "committer": user_object(sender),
            "parents": [],
        },
        "branches": [
            {
                "name": branch,
                "commit": {"sha": sha, "url": f"{API}/repos/{repo}/commits/{sha}"},
                "protected": False,
            }
            for branch in branches
        ],
        "created_at": "2024-05-01T10:00:00+00:00",
        "updated_at": "2024-05-01T10:00:00+00:00",
    }
    return _envelope(payload, repo=repo, sender=sender, installation_id=installation_id)

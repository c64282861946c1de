"""A fake GitHub REST API: a real aiohttp server that the app reaches through ``GITHUB_API_URL``.

Stateful enough to run the whole bot end to end: App JWT and installation tokens, repositories,
files, pull requests with their files and diff, check runs, reviews, comments, labels, reviewers,
reactions, merges, new pull requests, statuses and permissions. Every request is recorded; request
bodies are checked against GitHub's REST description when the shared fixtures are present.

Two ways to run it::

    fake = FakeGitHub()
    server = await aiohttp_server(fake.app)      # pytest-aiohttp
    fake.attach(server)                          # fake.url is now the base URL

    async with FakeGitHub.serve(prefix="/api/v3") as fake:   # its own runner on 127.0.0.1:0
        settings = make_settings(github_api_url=fake.url)

Adding a route is a method with the ``@route`` decorator (see the handlers below); tests can also
add one at run time with :meth:`FakeGitHub.add_route`.

Responses are shaped like GitHub's: the example responses under
``../shared/fixtures/github-rest/examples`` are used as templates when present (loaded at run time,
never copied here), with a small built-in shape otherwise.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import functools
import hashlib
import inspect
import io
import json
import math
import re
import secrets
import string
import tarfile
import time
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, Final, Protocol
from urllib.parse import urlencode

import jwt
from aiohttp import web

from .git_data import GitCommit, GitDataError, GitObjects, TreeEntry, ref_json
from .manifest_flow import ManifestFlow
from .openapi import NO_BODY, OpenAPIValidator, load_example, missing_reason, shared_available

DOCS: Final[str] = "https://docs.github.com/rest"
DIFF_CONTENT_TYPE: Final[str] = "application/vnd.github.diff"
DEFAULT_TOKEN_PERMISSIONS: Final[Mapping[str, str]] = {
    "checks": "write",
    "contents": "write",
    "issues": "write",
    "metadata": "read",
    "pull_requests": "write",
    "statuses": "read",
}
MAX_BODY: Final[int] = 65536
MAX_OUTPUT_TEXT: Final[int] = 65535
MAX_ANNOTATIONS: Final[int] = 50
JWT_MAX_LIFETIME_S: Final[int] = 600 + 60

_HUNK_RE: Final = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_DIFF_ACCEPT_RE: Final = re.compile(r"application/vnd\.github(?:\.v3)?\.diff")
_RAW_ACCEPT_RE: Final = re.compile(r"application/vnd\.github(?:\.v3)?\.raw")
_GREEDY: Final[frozenset[str]] = frozenset({"path", "ref", "basehead", "name"})


# ============================================================================================
# Small helpers


def _now_iso(ts: float | None = None) -> str:
    moment = datetime.fromtimestamp(time.time() if ts is None else ts, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _stable_id(text: str) -> int:
    return zlib.crc32(text.encode("utf-8")) or 1


def fake_sha(text: str) -> str:
    """A stable 40-hex sha derived from ``text``."""
    return hashlib.sha1(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def git_blob_sha(data: bytes) -> str:
    """The git object id of a blob (what the contents API calls ``sha``)."""
    header = f"blob {len(data)}\0".encode()
    return hashlib.sha1(header + data, usedforsecurity=False).hexdigest()


def _english_list(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    if len(items) == 2:
        return f"{items[0]} and {items[1]}"
    return ", ".join(items[:-1]) + f", and {items[-1]}"


@functools.lru_cache(maxsize=128)
def _example_cached(operation_id: str, name: str) -> str | None:
    data = load_example(operation_id, name)
    return None if data is None else json.dumps(data)


def _example(operation_id: str, name: str) -> Any | None:
    """A fresh copy of GitHub's example body, or ``None`` when the shared folder is absent."""
    text = _example_cached(operation_id, name)
    return None if text is None else json.loads(text)


def user_json(login: str, api: str = "https://api.github.com") -> dict[str, Any]:
    """A full ``simple-user`` object (``[bot]`` logins are ``Bot``)."""
    uid = _stable_id(login)
    url = f"{api}/users/{login}"
    return {
        "login": login,
        "id": uid,
        "node_id": f"U_{uid}",
        "avatar_url": f"https://avatars.githubusercontent.com/u/{uid}?v=4",
        "gravatar_id": "",
        "url": url,
        "html_url": f"https://github.com/{login}",
        "followers_url": f"{url}/followers",
        "following_url": f"{url}/following{{/other_user}}",
        "gists_url": f"{url}/gists{{/gist_id}}",
        "starred_url": f"{url}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{url}/subscriptions",
        "organizations_url": f"{url}/orgs",
        "repos_url": f"{url}/repos",
        "events_url": f"{url}/events{{/privacy}}",
        "received_events_url": f"{url}/received_events",
        "type": "Bot" if login.endswith("[bot]") else "User",
        "user_view_type": "public",
        "site_admin": False,
    }


def _rebase(value: Any, api: str, full_name: str) -> Any:
    """Point a template's URLs at this fake and its repository at ``full_name``."""
    if isinstance(value, str):
        return (
            value.replace(
                "https://api.github.com/repos/octocat/Hello-World", f"{api}/repos/{full_name}"
            )
            .replace("https://api.github.com", api)
            .replace("octocat/Hello-World", full_name)
        )
    if isinstance(value, list):
        return [_rebase(v, api, full_name) for v in value]
    if isinstance(value, dict):
        return {k: _rebase(v, api, full_name) for k, v in value.items()}
    return value


# ============================================================================================
# Diffs: parsing GitHub's ``patch`` fields and unified diffs, and the lines a comment may target


@dataclass
class Hunk:
    left: set[int] = field(default_factory=set)
    right: set[int] = field(default_factory=set)


@dataclass
class FileLines:
    """Which lines of a file's patch can carry a review comment."""

    hunks: list[Hunk]
    positions: set[int]
    #: (side, line) -> position in the diff (the legacy ``position`` of review comments)
    by_line: dict[tuple[str, int], int] = field(default_factory=dict)

    def position_of(self, line: int, side: str) -> int | None:
        return self.by_line.get((side.upper(), line))

    def hunk_of(self, line: int, side: str) -> int | None:
        for index, hunk in enumerate(self.hunks):
            lines = hunk.left if side.upper() == "LEFT" else hunk.right
            if line in lines:
                return index
        return None


def parse_patch(patch: str) -> FileLines:
    """The commentable lines of one file's patch (``@@`` hunks as GitHub's ``patch`` field has)."""
    hunks: list[Hunk] = []
    positions: set[int] = set()
    by_line: dict[tuple[str, int], int] = {}
    position = 0
    current: Hunk | None = None
    left = right = left_left = right_left = 0
    for raw in patch.split("\n"):
        header = _HUNK_RE.match(raw)
        if header:
            if hunks:
                position += 1  # later hunk headers count as positions
            left, right = int(header.group(1)), int(header.group(3))
            left_left = int(header.group(2) or 1)
            right_left = int(header.group(4) or 1)
            current = Hunk()
            hunks.append(current)
            continue
        if current is None or raw.startswith("\\"):
            continue
        if left_left <= 0 and right_left <= 0:
            continue
        position += 1
        positions.add(position)
        tag = raw[:1]
        if tag == "+":
            current.right.add(right)
            by_line[("RIGHT", right)] = position
            right += 1
            right_left -= 1
        elif tag == "-":
            current.left.add(left)
            by_line[("LEFT", left)] = position
            left += 1
            left_left -= 1
        else:
            current.left.add(left)
            current.right.add(right)
            by_line[("LEFT", left)] = position
            by_line[("RIGHT", right)] = position
            left += 1
            right += 1
            left_left -= 1
            right_left -= 1
    return FileLines(hunks=hunks, positions=positions, by_line=by_line)


def _count_changes(patch: str | None) -> tuple[int, int]:
    if not patch:
        return 0, 0
    adds = dels = 0
    for line in patch.split("\n"):
        if line.startswith("+"):
            adds += 1
        elif line.startswith("-"):
            dels += 1
    return adds, dels


def files_from_diff(diff: str) -> list[dict[str, Any]]:
    """GitHub ``files`` entries (filename, status, patch, counts) from a unified git diff."""
    files: list[dict[str, Any]] = []
    entry: dict[str, Any] | None = None
    patch_lines: list[str] = []
    left_left = right_left = 0

    def close() -> None:
        if entry is None:
            return
        if patch_lines:
            entry["patch"] = "\n".join(patch_lines)
        adds, dels = _count_changes(entry.get("patch"))
        entry.update(additions=adds, deletions=dels, changes=adds + dels)
        files.append(entry)

    lines = diff.split("\n")
    for index, line in enumerate(lines):
        in_hunk = left_left > 0 or right_left > 0
        if in_hunk:
            patch_lines.append(line)
            if line.startswith("\\"):
                continue
            tag = line[:1]
            if tag == "+":
                right_left -= 1
            elif tag == "-":
                left_left -= 1
            else:
                left_left -= 1
                right_left -= 1
            continue
        if line.startswith("\\") and patch_lines:
            patch_lines.append(line)  # "\ No newline at end of file" after a hunk's last line
            continue
        if line.startswith("diff --git ") or (
            line.startswith("--- ")
            and index + 1 < len(lines)
            and lines[index + 1].startswith("+++ ")
            and (entry is None or patch_lines)
        ):
            close()
            entry = {"filename": "", "status": "modified"}
            patch_lines = []
            match = re.match(r"diff --git a/(.+) b/(.+)$", line)
            if match:
                entry["filename"] = match.group(2)
                if match.group(1) != match.group(2):
                    entry["previous_filename"] = match.group(1)
                continue
        if entry is None:
            continue
        if line.startswith("new file mode"):
            entry["status"] = "added"
        elif line.startswith("deleted file mode"):
            entry["status"] = "removed"
        elif line.startswith("rename from "):
            entry["status"] = "renamed"
            entry["previous_filename"] = line[len("rename from ") :]
        elif line.startswith("rename to "):
            entry["filename"] = line[len("rename to ") :]
        elif line.startswith("--- "):
            name = line[4:].strip()
            if name == "/dev/null":
                entry["status"] = "added"
            elif not entry["filename"]:
                entry["filename"] = name.removeprefix("a/")
        elif line.startswith("+++ "):
            name = line[4:].strip()
            if name == "/dev/null":
                entry["status"] = "removed"
            else:
                entry["filename"] = name.removeprefix("b/")
        elif line.startswith("@@"):
            header = _HUNK_RE.match(line)
            if header:
                left_left = int(header.group(2) or 1)
                right_left = int(header.group(4) or 1)
                patch_lines.append(line)
    close()
    for item in files:
        if item.get("status") == "renamed" and "previous_filename" not in item:
            item["status"] = "modified"
        if item.get("status") == "modified" and item.get("previous_filename"):
            item["status"] = "renamed"
    return files


def diff_from_files(files: Iterable[Mapping[str, Any]]) -> str:
    """A unified git diff assembled from GitHub ``files`` entries."""
    out: list[str] = []
    for item in files:
        name = str(item["filename"])
        old = str(item.get("previous_filename") or name)
        status = item.get("status", "modified")
        out.append(f"diff --git a/{old} b/{name}")
        if status == "added":
            out.append("new file mode 100644")
        elif status == "removed":
            out.append("deleted file mode 100644")
        elif status == "renamed":
            out += ["similarity index 90%", f"rename from {old}", f"rename to {name}"]
        patch = item.get("patch")
        if patch is None:
            if status != "renamed":
                out.append(f"Binary files a/{old} and b/{name} differ")
            continue
        out.append("--- /dev/null" if status == "added" else f"--- a/{old}")
        out.append("+++ /dev/null" if status == "removed" else f"+++ b/{name}")
        out.append(str(patch).rstrip("\n"))
    return "\n".join(out) + ("\n" if out else "")


# ============================================================================================
# Records, errors, routes


@dataclass
class Recorded:
    """One request the fake received."""

    method: str
    path: str  # without the prefix, percent-decoded
    query: dict[str, str]
    headers: dict[str, str]  # lower-case keys
    json: Any  # the parsed JSON body, None when there is none (or it is not JSON)
    text: str  # the raw body as text ("" when there is none)
    operation_id: str | None
    status: int = 0  # the status the fake answered with

    def __str__(self) -> str:
        query = f"?{urlencode(self.query)}" if self.query else ""
        return f"{self.method} {self.path}{query} -> {self.status}"


@dataclass
class Violation:
    """A request whose body (or parameters) GitHub's REST description does not allow."""

    request: Recorded
    problems: list[str]

    def __str__(self) -> str:
        return f"{self.request.method} {self.request.path}: " + "; ".join(self.problems)


class GitHubError(Exception):
    """Raised by a handler: becomes GitHub's JSON error response."""

    def __init__(
        self,
        status: int,
        message: str | None = None,
        *,
        errors: list[Any] | None = None,
        headers: Mapping[str, str] | None = None,
        documentation_url: str = DOCS,
    ) -> None:
        self.status = status
        self.message = message or HTTPStatus(status).phrase
        self.errors = errors
        self.headers = dict(headers or {})
        self.documentation_url = documentation_url
        super().__init__(f"{status} {self.message}")

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"message": self.message}
        if self.errors is not None:
            out["errors"] = self.errors
        out["documentation_url"] = self.documentation_url
        out["status"] = str(self.status)
        return out


def validation_failed(
    resource: str, field: str, code: str, message: str | None = None
) -> GitHubError:
    error: dict[str, Any] = {"resource": resource, "code": code, "field": field}
    if message is not None:
        error["message"] = message
    return GitHubError(422, "Validation Failed", errors=[error])


def not_found() -> GitHubError:
    return GitHubError(404, "Not Found")


@dataclass
class Ctx:
    """What a handler sees of a request."""

    request: web.Request
    method: str
    path: str
    params: dict[str, str]
    query: dict[str, str]
    headers: dict[str, str]
    body: Any  # parsed JSON, or NO_BODY
    recorded: Recorded
    api_base: str  # scheme://host[:port] + prefix, as the client reached us
    token: IssuedToken | None = None
    user: str | None = None  # the login behind a user access token (``auth="user"`` routes)

    def int_param(self, name: str) -> int:
        try:
            return int(self.params[name])
        except ValueError:
            raise not_found() from None

    @property
    def json(self) -> dict[str, Any]:
        """The body as an object (``{}`` when absent)."""
        if isinstance(self.body, dict):
            return self.body
        if self.body is NO_BODY or self.body is None:
            return {}
        raise GitHubError(400, "Problems parsing JSON")

    @property
    def accept(self) -> str:
        return self.headers.get("accept", "")

    def wants_diff(self) -> bool:
        return bool(_DIFF_ACCEPT_RE.search(self.accept))


Handler = Callable[["FakeGitHub", Ctx], Awaitable[web.StreamResponse]]
ExtraHandler = Callable[[Ctx], Any]


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    operation_id: str
    handler: Handler
    auth: str  # "token" | "jwt" | "none"
    pattern: re.Pattern[str]
    literal: int


def _compile(template: str) -> tuple[re.Pattern[str], int]:
    regex, literal, pos = "", 0, 0
    for match in re.finditer(r"\{([^}]+)\}", template):
        chunk = template[pos : match.start()]
        regex += re.escape(chunk)
        literal += len(chunk)
        name = match.group(1)
        regex += f"(?P<{name}>{'.+' if name in _GREEDY else '[^/]+'})"
        pos = match.end()
    regex += re.escape(template[pos:])
    literal += len(template) - pos
    return re.compile(f"^{regex}$"), literal


_ROUTES: list[Route] = []


def route(
    method: str, template: str, operation_id: str, *, auth: str = "token"
) -> Callable[[Handler], Handler]:
    """Register a handler method for ``method`` + path ``template`` (OpenAPI style)."""

    def register(handler: Handler) -> Handler:
        pattern, literal = _compile(template)
        _ROUTES.append(
            Route(method.upper(), template, operation_id, handler, auth, pattern, literal)
        )
        return handler

    return register


@dataclass
class _Fault:
    method: str
    pattern: re.Pattern[str]
    status: int
    times: int
    headers: dict[str, str]
    body: Any
    applied: bool = False  # the request takes effect, then the answer fails


@dataclass
class _Delay:
    method: str
    pattern: re.Pattern[str]
    seconds: float
    times: int | None


# ============================================================================================
# State


@dataclass
class IssuedToken:
    token: str
    installation_id: int
    expires_at: float
    permissions: dict[str, str]
    repositories: list[str] | None
    revoked: bool = False


@dataclass
class CheckRun:
    id: int
    repo: str
    name: str
    head_sha: str
    status: str = "queued"
    conclusion: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    details_url: str | None = None
    external_id: str = ""
    title: str | None = None
    summary: str | None = None
    text: str | None = None
    annotations: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    app_slug: str = ""
    app_id: int = 0
    check_suite_id: int = 0


@dataclass
class Compare:
    files: list[dict[str, Any]]
    diff: str
    commits: list[dict[str, Any]]
    status: str = "ahead"
    behind_by: int = 0


@dataclass
class Pull:
    repo: str
    number: int
    title: str
    body: str | None
    user: str
    head_ref: str
    head_sha: str
    head_repo: str
    base: str
    base_sha: str
    files: list[dict[str, Any]]
    diff: str
    draft: bool = False
    mergeable: bool | None = True
    mergeable_state: str | None = None
    state: str = "open"
    merged: bool = False
    merged_at: str | None = None
    merge_commit_sha: str | None = None
    merged_by: str | None = None
    labels: list[str] = field(default_factory=list)
    commits: list[dict[str, Any]] = field(default_factory=list)
    requested_reviewers: list[str] = field(default_factory=list)
    requested_teams: list[str] = field(default_factory=list)
    reviews: list[dict[str, Any]] = field(default_factory=list)
    review_comments: list[dict[str, Any]] = field(default_factory=list)
    diff_too_large: bool = False
    maintainer_can_modify: bool = False
    created_at: str = field(default_factory=_now_iso)

    @property
    def fork(self) -> bool:
        return self.head_repo != self.repo

    def lines(self, path: str) -> FileLines | None:
        for item in self.files:
            if item.get("filename") == path:
                patch = item.get("patch")
                return parse_patch(patch) if isinstance(patch, str) else FileLines([], set())
        return None


@dataclass
class Repo:
    full_name: str
    id: int
    default_branch: str
    private: bool
    fork: bool
    allow_squash_merge: bool
    allow_merge_commit: bool
    allow_rebase_merge: bool
    installation_id: int
    archived: bool = False
    branches: dict[str, str] = field(default_factory=dict)
    files: dict[str, dict[str, str]] = field(default_factory=dict)  # ref -> path -> text
    permissions: dict[str, str] = field(default_factory=dict)  # login -> role
    statuses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # sha -> statuses
    commits: dict[str, dict[str, Any]] = field(default_factory=dict)
    compares: dict[tuple[str, str], Compare] = field(default_factory=dict)
    pulls: dict[int, Pull] = field(default_factory=dict)
    issues: dict[int, dict[str, Any]] = field(default_factory=dict)  # plain issues
    issue_labels: dict[int, list[str]] = field(default_factory=dict)
    git: GitObjects = field(default_factory=GitObjects)  # objects made through the Git Data API
    tags: dict[str, str] = field(default_factory=dict)  # refs other than branches: name -> sha

    @property
    def owner(self) -> str:
        return self.full_name.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.full_name.split("/", 1)[1]


class _ServerLike(Protocol):
    scheme: str
    host: str
    port: int | None


# ============================================================================================
# The fake


class FakeGitHub:
    """A stateful fake of GitHub's REST API for end-to-end tests (see the module docstring)."""

    def __init__(
        self,
        *,
        prefix: str = "",
        validate: bool = True,
        app_slug: str = "aigateway",
        token_ttl_s: int = 3600,
        app_id: int = 1,
        app_name: str | None = None,
        strict_properties: bool = True,
        reject_invalid: bool = False,
        check_responses: bool = False,
    ) -> None:
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.app_slug = app_slug
        self.app_id = app_id
        self.app_name = app_name or app_slug
        self.token_ttl_s = token_ttl_s
        self.now: Callable[[], float] = time.time
        self.bot_login = f"{app_slug}[bot]"

        self.repos: dict[str, Repo] = {}
        self.check_runs: dict[int, CheckRun] = {}
        self.issue_comments: dict[int, dict[str, Any]] = {}  # id -> comment (+ "_repo", "_number")
        self.reactions: dict[int, list[dict[str, Any]]] = {}  # comment id -> reactions
        self.tokens: dict[str, IssuedToken] = {}
        self.token_requests: Counter[int] = Counter()
        self.rate_limit_remaining = 4999
        # The OAuth web flow (``/login/oauth/...``, outside any API prefix) and user tokens.
        self.oauth_clients: dict[str, str] = {}  # client id -> client secret
        self.web_user: str | None = None  # who is signed in on the web (approves at once)
        self.user_repos: dict[str, set[str]] = {}  # login -> repositories the user can read
        self.user_tokens: dict[str, str] = {}  # user access token -> login
        self._oauth_codes: dict[str, tuple[str, str, str, float]] = {}

        self.requests: list[Recorded] = []
        self.unexpected: list[Recorded] = []
        self.violations: list[Violation] = []
        #: Where the fake's own answers differ from GitHub's response schemas (a self-check).
        self.response_problems: list[Violation] = []

        self._public_key: str | None = None
        self._faults: list[_Fault] = []
        self._holds: list[_Delay] = []
        self.held: list[str] = []  # requests applied whose answers are being held
        self._released = asyncio.Event()
        self._delays: list[_Delay] = []
        self._extra_routes: list[Route] = []
        self._ids = 1000
        #: GitHub's App manifest flow: the web form target and the code exchange.
        self.manifest_flow = ManifestFlow(self)
        self._app: web.Application | None = None
        self._runner: web.AppRunner | None = None
        self._base: str | None = None

        #: Answer 422 to a request body GitHub's description rejects (default: record only).
        self.reject_invalid = reject_invalid
        #: Also check the fake's own JSON answers against GitHub's response schemas (a self-test
        #: of the fake, off by default because it costs a few milliseconds per request).
        self.check_responses = check_responses
        self._validator: OpenAPIValidator | None = None
        self.validation_skipped_reason: str | None = None
        if not validate:
            self.validation_skipped_reason = "validation disabled (FakeGitHub(validate=False))"
        elif not shared_available():
            self.validation_skipped_reason = missing_reason()
        else:
            self._validator = OpenAPIValidator(strict_properties=strict_properties)

    # ---------------------------------------------------------------- serving

    @property
    def app(self) -> web.Application:
        """The aiohttp application (for pytest-aiohttp's ``aiohttp_server``)."""
        if self._app is None:
            app = web.Application(client_max_size=50 * 1024**2)
            self.manifest_flow.add_web_routes(app.router)  # web pages, outside the API prefix
            app.router.add_get("/login/oauth/authorize", self._oauth_authorize)
            app.router.add_post("/login/oauth/access_token", self._oauth_access_token)
            app.router.add_route("*", "/{tail:.*}", self._dispatch)
            self._app = app
        return self._app

    @property
    def url(self) -> str:
        """The API base URL, prefix included (``http://127.0.0.1:PORT[/api/v3]``)."""
        if self._base is None:
            raise RuntimeError(
                "FakeGitHub is not serving: use `async with FakeGitHub.serve()`, "
                "`await fake.start()`, or `fake.attach(await aiohttp_server(fake.app))`"
            )
        return self._base + self.prefix

    def attach(self, server: _ServerLike) -> str:
        """Learn the address of a test server running :attr:`app`; returns :attr:`url`."""
        self._base = f"{server.scheme}://{server.host}:{server.port}"
        return self.url

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        runner = web.AppRunner(self.app, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        bound = runner.addresses[0]
        self._base = f"http://{host}:{bound[1]}"
        return self.url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @classmethod
    @contextlib.asynccontextmanager
    async def serve(cls, **kwargs: Any) -> AsyncIterator[FakeGitHub]:
        """``async with FakeGitHub.serve(prefix=...) as fake:`` on 127.0.0.1, a free port."""
        fake = cls(**kwargs)
        await fake.start()
        try:
            yield fake
        finally:
            await fake.close()

    # ---------------------------------------------------------------- auth set-up

    def set_app_key(self, public_pem: str | bytes, app_id: int | str) -> None:
        """Verify App JWTs: RS256 signature with this key, ``iss`` equal to ``app_id``."""
        self._public_key = public_pem.decode() if isinstance(public_pem, bytes) else public_pem
        self.app_id = int(app_id)

    def set_token_ttl(self, seconds: int) -> None:
        self.token_ttl_s = seconds

    def expire_tokens(self) -> None:
        """Every token issued so far now gets 401 (a cached token GitHub no longer accepts)."""
        for token in self.tokens.values():
            token.revoked = True

    def issue_token(self, installation_id: int = 42, *, ttl_s: int | None = None) -> str:
        """Mint a valid installation token directly (for tests that skip the JWT exchange)."""
        token = "ghs_" + "".join(
            secrets.choice(string.ascii_letters + string.digits) for _ in range(36)
        )
        self.tokens[token] = IssuedToken(
            token=token,
            installation_id=installation_id,
            expires_at=self.now() + (self.token_ttl_s if ttl_s is None else ttl_s),
            permissions=dict(DEFAULT_TOKEN_PERMISSIONS),
            repositories=None,
        )
        return token

    # ---------------------------------------------------------------- state builders

    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    def add_repo(
        self,
        full_name: str = "octo/demo",
        *,
        default_branch: str = "main",
        allow_squash_merge: bool = True,
        allow_merge_commit: bool = True,
        allow_rebase_merge: bool = True,
        private: bool = False,
        fork: bool = False,
        installation_id: int = 42,
        default_branch_sha: str | None = None,
    ) -> Repo:
        repo = Repo(
            full_name=full_name,
            id=_stable_id(full_name),
            default_branch=default_branch,
            private=private,
            fork=fork,
            allow_squash_merge=allow_squash_merge,
            allow_merge_commit=allow_merge_commit,
            allow_rebase_merge=allow_rebase_merge,
            installation_id=installation_id,
        )
        repo.branches[default_branch] = default_branch_sha or fake_sha(
            f"{full_name}:{default_branch}"
        )
        self.repos[full_name] = repo
        return repo

    def repo(self, full_name: str) -> Repo:
        try:
            return self.repos[full_name]
        except KeyError:
            raise KeyError(
                f"FakeGitHub: no repository {full_name!r}; call add_repo() first"
            ) from None

    def set_branch(self, repo: str, name: str, sha: str) -> None:
        self.repo(repo).branches[name] = sha

    def set_file(self, repo: str, path: str, text: str | bytes, ref: str | None = None) -> str:
        """Put a file on a branch or commit for the contents API; returns its blob sha."""
        target = self.repo(repo)
        data = text.decode("utf-8") if isinstance(text, bytes) else text
        target.files.setdefault(ref or target.default_branch, {})[path.lstrip("/")] = data
        return git_blob_sha(data.encode("utf-8"))

    def remove_file(self, repo: str, path: str, ref: str | None = None) -> None:
        target = self.repo(repo)
        target.files.get(ref or target.default_branch, {}).pop(path.lstrip("/"), None)

    def add_pull(
        self,
        repo: str,
        number: int,
        *,
        head_sha: str | None = None,
        base: str | None = None,
        head_ref: str = "feature",
        files: Sequence[Mapping[str, Any]] | None = None,
        diff: str | None = None,
        draft: bool = False,
        mergeable: bool | None = True,
        mergeable_state: str | None = None,
        user: str = "octocat",
        fork: bool = False,
        head_repo: str | None = None,
        labels: Iterable[str] = (),
        title: str = "Add a feature",
        body: str | None = "A change worth reviewing.",
        base_sha: str | None = None,
        commits: Sequence[Mapping[str, Any]] | None = None,
        diff_too_large: bool = False,
        state: str = "open",
    ) -> Pull:
        """A pull request. Give ``files`` (GitHub list-files entries), ``diff``, or both;
        the missing one is derived from the other."""
        target = self.repo(repo)
        base = base or target.default_branch
        head_sha = head_sha or fake_sha(f"{repo}#{number}:head")
        if head_repo is None:
            head_repo = f"{user}/{target.name}" if fork else repo
        file_entries, diff_text = self._files_and_diff(repo, head_sha, files, diff)
        pull = Pull(
            repo=repo,
            number=number,
            title=title,
            body=body,
            user=user,
            head_ref=head_ref,
            head_sha=head_sha,
            head_repo=head_repo,
            base=base,
            base_sha=base_sha or target.branches.get(base) or fake_sha(f"{repo}:{base}"),
            files=file_entries,
            diff=diff_text,
            draft=draft,
            mergeable=mergeable,
            mergeable_state=mergeable_state,
            labels=list(labels),
            diff_too_large=diff_too_large,
            state=state,
        )
        pull.commits = [self._commit(repo, c, author=user) for c in commits or ()] or [
            self._commit(repo, {"sha": head_sha, "message": title}, author=user)
        ]
        for commit in pull.commits:
            target.commits.setdefault(commit["sha"], commit)
        if not fork:
            target.branches.setdefault(head_ref, head_sha)
        target.pulls[number] = pull
        return pull

    def pull(self, repo: str, number: int) -> Pull:
        return self.repo(repo).pulls[number]

    def move_head(
        self,
        repo: str,
        number: int,
        new_sha: str,
        *,
        files: Sequence[Mapping[str, Any]] | None = None,
        diff: str | None = None,
        message: str = "Push more changes",
    ) -> Pull:
        """Simulate a push to the pull request's branch."""
        pull = self.pull(repo, number)
        pull.head_sha = new_sha
        if files is not None or diff is not None:
            pull.files, pull.diff = self._files_and_diff(repo, new_sha, files, diff)
        commit = self._commit(repo, {"sha": new_sha, "message": message}, author=pull.user)
        pull.commits.append(commit)
        target = self.repo(repo)
        target.commits[new_sha] = commit
        if not pull.fork:
            target.branches[pull.head_ref] = new_sha
        return pull

    def set_compare(
        self,
        repo: str,
        base: str,
        head: str,
        *,
        files: Sequence[Mapping[str, Any]] | None = None,
        diff: str | None = None,
        commits: Sequence[Mapping[str, Any]] | None = None,
        status: str = "ahead",
        behind_by: int = 0,
    ) -> None:
        """What ``GET /repos/{repo}/compare/{base}...{head}`` answers."""
        file_entries, diff_text = self._files_and_diff(repo, head, files, diff)
        self.repo(repo).compares[(base, head)] = Compare(
            files=file_entries,
            diff=diff_text,
            commits=[self._commit(repo, c) for c in commits or ({"sha": head},)],
            status=status,
            behind_by=behind_by,
        )

    def add_commit(
        self,
        repo: str,
        sha: str,
        *,
        message: str = "A commit",
        author: str = "octocat",
        parents: Sequence[str] = (),
        files: Sequence[Mapping[str, Any]] | None = None,
    ) -> dict[str, Any]:
        commit = self._commit(
            repo, {"sha": sha, "message": message, "parents": list(parents)}, author=author
        )
        if files is not None:
            commit["files"] = [self._normalize_file(repo, sha, f) for f in files]
        self.repo(repo).commits[sha] = commit
        return commit

    def set_status(
        self,
        repo: str,
        sha: str,
        context: str = "ci/build",
        state: str = "success",
        *,
        description: str | None = None,
        target_url: str | None = None,
    ) -> None:
        """A commit status (the combined status is computed from these, as GitHub does)."""
        statuses = self.repo(repo).statuses.setdefault(sha, [])
        statuses.append(
            {
                "id": self._next_id(),
                "state": state,
                "context": context,
                "description": description,
                "target_url": target_url,
                "created_at": _now_iso(self.now()),
                "updated_at": _now_iso(self.now()),
                "creator": self.bot_login,
            }
        )

    # ---------------------------------------------------------------- OAuth (user tokens)

    @property
    def web_url(self) -> str:
        """GitHub's web base (sign-in pages): the server's root, without the API prefix."""
        self.url  # noqa: B018 - raises while not serving
        assert self._base is not None
        return self._base

    def set_oauth_client(self, client_id: str, client_secret: str) -> None:
        """The App's OAuth credentials, accepted by ``/login/oauth/access_token``."""
        self.oauth_clients[client_id] = client_secret

    def sign_in(self, login: str | None) -> None:
        """The person signed in on GitHub's web pages: ``/login/oauth/authorize`` approves for
        them at once (None: nobody, the authorize page answers 401)."""
        self.web_user = login

    def grant(self, login: str, *repos: str) -> None:
        """``login`` can read these repositories (seen through the App's installations)."""
        for name in repos:
            self.repo(name)
        self.user_repos.setdefault(login, set()).update(repos)

    def revoke_user_tokens(self, login: str) -> None:
        for token in [t for t, who in self.user_tokens.items() if who == login]:
            del self.user_tokens[token]

    async def _oauth_authorize(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        self.requests.append(
            Recorded("GET", request.path, dict(query), {}, None, "", "oauth/authorize", 302)
        )
        if query.get("client_id") not in self.oauth_clients:
            return web.Response(status=404, text="unknown client_id")
        if self.web_user is None:
            return web.Response(status=401, text="nobody is signed in to the fake GitHub")
        redirect = query.get("redirect_uri", "")
        code = secrets.token_hex(10)
        self._oauth_codes[code] = (self.web_user, query["client_id"], redirect, self.now() + 600)
        separator = "&" if "?" in redirect else "?"
        location = (
            f"{redirect}{separator}{urlencode({'code': code, 'state': query.get('state', '')})}"
        )
        raise web.HTTPFound(location)

    async def _oauth_access_token(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        self.requests.append(
            Recorded(
                "POST",
                request.path,
                {},
                {k.lower(): v for k, v in request.headers.items()},
                None,
                "",
                "oauth/access_token",
                200,
            )
        )
        client_id = str(form.get("client_id", ""))
        if self.oauth_clients.get(client_id) != form.get("client_secret"):
            return web.json_response(
                {"error": "incorrect_client_credentials", "error_description": "bad client"}
            )
        found = self._oauth_codes.pop(str(form.get("code", "")), None)
        if found is None or found[1] != client_id or found[3] <= self.now():
            return web.json_response(
                {
                    "error": "bad_verification_code",
                    "error_description": "The code passed is incorrect or expired.",
                }
            )
        if form.get("redirect_uri") and form.get("redirect_uri") != found[2]:
            return web.json_response(
                {"error": "redirect_uri_mismatch", "error_description": "redirect_uri differs"}
            )
        token = "ghu_" + secrets.token_hex(18)
        self.user_tokens[token] = found[0]
        return web.json_response({"access_token": token, "token_type": "bearer", "scope": ""})

    def set_permission(self, repo: str, user: str, role: str) -> None:
        """``admin``, ``maintain``, ``write``, ``triage``, ``read`` or ``none`` (default ``read``)."""
        self.repo(repo).permissions[user] = role

    def add_issue(
        self, repo: str, number: int, *, title: str = "An issue", user: str = "octocat"
    ) -> None:
        self.repo(repo).issues[number] = {"number": number, "title": title, "user": user}

    def add_issue_comment(
        self,
        repo: str,
        number: int,
        body: str,
        *,
        user: str = "octocat",
        comment_id: int | None = None,
    ) -> dict[str, Any]:
        """A comment someone else wrote (for slash commands and reactions)."""
        self._issue(repo, number)
        comment_id = comment_id or self._next_id()
        comment = {
            "id": comment_id,
            "body": body,
            "user": user,
            "created_at": _now_iso(self.now()),
            "updated_at": _now_iso(self.now()),
            "_repo": repo,
            "_number": number,
        }
        self.issue_comments[comment_id] = comment
        return comment

    def add_check_run(
        self,
        repo: str,
        head_sha: str,
        name: str,
        *,
        status: str = "completed",
        conclusion: str | None = "success",
        app_slug: str = "github-actions",
        app_id: int = 15368,
        check_suite_id: int = 0,
    ) -> CheckRun:
        """Another app's check run (CI) on a commit, in check suite ``check_suite_id``."""
        self.repo(repo)
        run = CheckRun(
            id=self._next_id(),
            repo=repo,
            name=name,
            head_sha=head_sha,
            status=status,
            conclusion=conclusion if status == "completed" else None,
            started_at=_now_iso(self.now()),
            completed_at=_now_iso(self.now()) if status == "completed" else None,
            app_slug=app_slug,
            app_id=app_id,
            check_suite_id=check_suite_id or _stable_id(f"{repo}:{head_sha}:{app_slug}"),
        )
        self.check_runs[run.id] = run
        return run

    def check_runs_for(self, repo: str, head_sha: str | None = None) -> list[CheckRun]:
        return [
            r
            for r in self.check_runs.values()
            if r.repo == repo and (head_sha is None or r.head_sha == head_sha)
        ]

    def comments_on(self, repo: str, number: int) -> list[dict[str, Any]]:
        return [
            c for c in self.issue_comments.values() if c["_repo"] == repo and c["_number"] == number
        ]

    def files_on(self, repo: str, ref: str) -> dict[str, str]:
        """The files of a branch or commit, as the contents API serves them."""
        return dict(self._files_at(self.repo(repo), ref))

    def git_commit(self, repo: str, ref: str) -> GitCommit | None:
        """A branch's or commit's git commit object (tree, parents), as the Git Data API has it."""
        target = self.repo(repo)
        return self._git_commit(target, self._resolve_ref(target, ref))

    def tree_entries(self, repo: str, ref: str) -> dict[str, TreeEntry]:
        """Every file of a branch or commit with its mode and blob sha."""
        commit = self.git_commit(repo, ref)
        if commit is None:
            raise KeyError(f"FakeGitHub: no commit {ref!r} in {repo}")
        return self.repo(repo).git.flatten(commit.tree)

    def set_file_mode(self, repo: str, path: str, mode: str) -> None:
        """The mode a seeded file has in its commits' trees (``100755``: executable)."""
        self.repo(repo).git.modes[path.lstrip("/")] = mode

    # ---------------------------------------------------------------- fault injection

    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int,
        *,
        times: int = 1,
        headers: Mapping[str, str] | None = None,
        body: Any = None,
        applied: bool = False,
    ) -> None:
        """The next ``times`` requests matching (``re.search`` on the path) get ``status``.

        ``applied``: the request takes effect first and only its answer fails, as when GitHub
        times out after doing the work; ``status`` 0 then drops the connection instead.
        """
        self._faults.append(
            _Fault(
                method.upper(),
                re.compile(path_regex),
                status,
                times,
                dict(headers or {}),
                body,
                applied,
            )
        )

    def hold_after_applying(self, method: str, path_regex: str, seconds: float) -> None:
        """The next matching request takes effect at once, but its answer waits ``seconds``:
        the moment between GitHub doing the work and the client hearing of it."""
        self._holds.append(_Delay(method.upper(), re.compile(path_regex), seconds, 1))

    def release_holds(self) -> None:
        """Let every held answer go (its client may be gone: it was killed meanwhile)."""
        self._released.set()

    def clear_faults(self) -> None:
        """Forget every fault still waiting to happen: GitHub is back."""
        self._faults.clear()

    def rate_limit_next(
        self,
        method: str,
        path_regex: str,
        *,
        secondary: bool = False,
        retry_after: int | None = None,
        reset_in_s: int = 60,
        status: int = 403,
        times: int = 1,
    ) -> None:
        """A primary (``x-ratelimit-remaining: 0``) or secondary (``retry-after``) rate limit."""
        reset = int(self.now()) + reset_in_s
        headers = {
            "x-ratelimit-limit": "5000",
            "x-ratelimit-remaining": "0" if not secondary else "4000",
            "x-ratelimit-reset": str(reset),
            "x-ratelimit-used": "5000" if not secondary else "1000",
            "x-ratelimit-resource": "core",
        }
        if secondary:
            headers["retry-after"] = str(retry_after if retry_after is not None else 60)
            message = (
                "You have exceeded a secondary rate limit. Please wait a few minutes before you "
                "try again."
            )
        else:
            if retry_after is not None:
                headers["retry-after"] = str(retry_after)
            message = "API rate limit exceeded for installation."
        self.fail_next(
            method,
            path_regex,
            status,
            times=times,
            headers=headers,
            body={
                "message": message,
                "documentation_url": f"{DOCS}/overview/rate-limits-for-the-rest-api",
            },
        )

    def delay(
        self, method: str, path_regex: str, seconds: float, *, times: int | None = None
    ) -> None:
        """Hold matching requests for ``seconds`` before answering (all of them, or ``times``)."""
        self._delays.append(_Delay(method.upper(), re.compile(path_regex), seconds, times))

    def add_route(
        self,
        method: str,
        template: str,
        handler: ExtraHandler,
        *,
        operation_id: str | None = None,
        auth: str = "token",
    ) -> None:
        """A test-defined route; ``handler(ctx)`` returns a response, or JSON data (200)."""

        async def call(_fake: FakeGitHub, ctx: Ctx) -> web.StreamResponse:
            result = handler(ctx)
            if inspect.isawaitable(result):
                result = await result
            if isinstance(result, web.StreamResponse):
                return result
            return web.json_response(result)

        pattern, literal = _compile(template)
        self._extra_routes.append(
            Route(
                method.upper(),
                template,
                operation_id or f"test:{method.upper()} {template}",
                call,
                auth,
                pattern,
                literal,
            )
        )

    # ---------------------------------------------------------------- records

    def calls(self, method: str, path_regex: str = "") -> list[Recorded]:
        """Requests with this method (``*`` for any) whose path matches (``re.search``)."""
        pattern = re.compile(path_regex)
        return [
            r
            for r in self.requests
            if (method == "*" or r.method == method.upper()) and pattern.search(r.path)
        ]

    def writes(self) -> list[Recorded]:
        """Every request that is not a GET/HEAD."""
        return [r for r in self.requests if r.method not in {"GET", "HEAD"}]

    def assert_no_violations(self) -> None:
        """Fail if any request broke GitHub's REST description (no-op when validation is off)."""
        if self.violations:
            details = "\n".join(f"  - {v}" for v in self.violations)
            raise AssertionError(f"requests that GitHub's REST description rejects:\n{details}")

    def assert_no_unexpected(self) -> None:
        if self.unexpected:
            details = "\n".join(f"  - {r}" for r in self.unexpected)
            raise AssertionError(f"requests to routes the fake does not implement:\n{details}")

    def reset_records(self) -> None:
        self.response_problems.clear()
        self.requests.clear()
        self.unexpected.clear()
        self.violations.clear()

    # ---------------------------------------------------------------- dispatch

    def _match(self, method: str, path: str) -> tuple[Route | None, dict[str, str]]:
        best: tuple[Route, dict[str, str]] | None = None
        for candidate in [*self._extra_routes, *_ROUTES]:
            if candidate.method != method:
                continue
            found = candidate.pattern.match(path)
            if found and (best is None or candidate.literal > best[0].literal):
                best = (candidate, found.groupdict())
        return best if best is not None else (None, {})

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        method = request.method.upper()
        full_path = request.path
        inside = (
            not self.prefix or full_path == self.prefix or full_path.startswith(self.prefix + "/")
        )
        path = (full_path[len(self.prefix) :] or "/") if inside else full_path
        raw = await request.read()
        text = raw.decode("utf-8", errors="replace")
        headers = {k.lower(): v for k, v in request.headers.items()}
        query = dict(request.query)
        body: Any = NO_BODY
        bad_json = False
        if raw:
            try:
                body = json.loads(text)
            except ValueError:
                bad_json = True
        found, params = self._match(method, path) if inside else (None, {})
        recorded = Recorded(
            method=method,
            path=path,
            query=query,
            headers=headers,
            json=None if body is NO_BODY else body,
            text=text,
            operation_id=found.operation_id if found else None,
        )
        self.requests.append(recorded)
        if found is None:
            self.unexpected.append(recorded)
            missing = self._error_response(not_found())
            recorded.status = missing.status
            return missing
        if self._validator is not None and found.operation_id in self._validator.operation_ids:
            problems = self._validator.validate(
                method,
                path,
                query,
                text if bad_json else body,
                content_type=headers.get("content-type"),
            )
            if problems:
                self.violations.append(Violation(recorded, problems))
                if self.reject_invalid and not bad_json:
                    rejected = self._error_response(
                        GitHubError(422, "Invalid request.\n\n" + "\n".join(problems))
                    )
                    recorded.status = rejected.status
                    return rejected
        ctx = Ctx(
            request=request,
            method=method,
            path=path,
            params=params,
            query=query,
            headers=headers,
            body=body,
            recorded=recorded,
            api_base=f"{request.scheme}://{request.host}{self.prefix}",
        )
        response: web.StreamResponse
        try:
            await self._apply_delay(method, path)
            fault = self._take_fault(method, path)
            if fault is not None and fault.applied:
                # GitHub did the work, but the answer is lost: a 5xx, or (status 0) a reset.
                self._authenticate(ctx, found)
                await found.handler(self, ctx)
                if fault.status == 0 and request.transport is not None:
                    request.transport.close()
                response = self._fault_response(fault)
            elif fault is not None:
                response = self._fault_response(fault)
            else:
                if bad_json:
                    raise GitHubError(400, "Problems parsing JSON")
                self._authenticate(ctx, found)
                response = await found.handler(self, ctx)
                self._check_response(recorded, found, response)
                await self._apply_hold(method, path)
        except GitHubError as error:
            response = self._error_response(error)
        self._common_headers(response)
        recorded.status = response.status
        return response

    def _check_response(
        self, recorded: Recorded, found: Route, response: web.StreamResponse
    ) -> None:
        """Record where the fake's own JSON answer differs from GitHub's response schema."""
        if (
            self._validator is None
            or not self.check_responses
            or found.operation_id not in self._validator.operation_ids
            or not isinstance(response, web.Response)
            or response.content_type != "application/json"
            or response.text is None
        ):
            return
        problems = self._validator.validate_response(
            recorded.method, recorded.path, response.status, json.loads(response.text)
        )
        if problems:
            self.response_problems.append(Violation(recorded, problems))

    async def _apply_delay(self, method: str, path: str) -> None:
        for item in self._delays:
            if item.method in {method, "*"} and item.pattern.search(path):
                if item.times is not None:
                    if item.times <= 0:
                        continue
                    item.times -= 1
                await asyncio.sleep(item.seconds)
                return

    async def _apply_hold(self, method: str, path: str) -> None:
        for item in self._holds:
            if item.method in {method, "*"} and item.pattern.search(path) and (item.times or 0) > 0:
                item.times = (item.times or 0) - 1
                self.held.append(f"{method} {path}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._released.wait(), item.seconds)
                return

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        for fault in self._faults:
            if fault.times > 0 and fault.method in {method, "*"} and fault.pattern.search(path):
                fault.times -= 1
                return fault
        return None

    def _fault_response(self, fault: _Fault) -> web.Response:
        if fault.status == 0:
            return web.Response(status=502)  # never read: the connection is closed
        body = fault.body
        if body is None:
            body = GitHubError(fault.status).body()
        if isinstance(body, str | bytes):
            response = web.Response(status=fault.status, body=body, content_type="text/plain")
        else:
            response = web.json_response(body, status=fault.status)
        for key, value in fault.headers.items():
            response.headers[key] = value
        return response

    def _error_response(self, error: GitHubError) -> web.Response:
        response = web.json_response(error.body(), status=error.status)
        for key, value in error.headers.items():
            response.headers[key] = value
        return response

    def _common_headers(self, response: web.StreamResponse) -> None:
        defaults = {
            "x-github-api-version-selected": "2022-11-28",
            "x-github-request-id": secrets.token_hex(8).upper(),
            "x-ratelimit-limit": "5000",
            "x-ratelimit-remaining": str(self.rate_limit_remaining),
            "x-ratelimit-reset": str(int(self.now()) + 3600),
            "x-ratelimit-used": str(5000 - self.rate_limit_remaining),
            "x-ratelimit-resource": "core",
        }
        for key, value in defaults.items():
            if key not in response.headers:
                response.headers[key] = value

    # ---------------------------------------------------------------- authentication

    def _authenticate(self, ctx: Ctx, found: Route) -> None:
        if found.auth == "none":
            return
        scheme, _, credential = ctx.headers.get("authorization", "").partition(" ")
        credential = credential.strip()
        if found.auth == "user":
            login = (
                self.user_tokens.get(credential) if scheme.lower() in {"token", "bearer"} else None
            )
            if login is None:
                raise GitHubError(401, "Bad credentials")
            ctx.user = login
            return
        if found.auth == "jwt":
            if scheme.lower() != "bearer" or not credential:
                raise GitHubError(401, "A JSON web token could not be decoded")
            self._check_jwt(credential)
            return
        token = self.tokens.get(credential) if scheme.lower() in {"token", "bearer"} else None
        if token is None or token.revoked or token.expires_at <= self.now():
            raise GitHubError(401, "Bad credentials")
        repo = ctx.params.get("repo")
        if repo and token.repositories is not None and repo not in token.repositories:
            raise not_found()
        ctx.token = token

    def _check_jwt(self, token: str) -> None:
        undecodable = GitHubError(401, "A JSON web token could not be decoded")
        if token.count(".") != 2:
            raise undecodable
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise undecodable from None
        if header.get("alg") != "RS256":
            raise undecodable
        try:
            if self._public_key is not None:
                claims = jwt.decode(
                    token,
                    self._public_key,
                    algorithms=["RS256"],
                    options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
                )
            else:
                claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise undecodable from None
        now = self.now()
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int) or iat > now:
            raise GitHubError(
                401,
                "'Issued at' claim ('iat') must be an Integer representing the time that the "
                "assertion was issued.",
            )
        if not isinstance(exp, int) or exp <= now:
            raise GitHubError(
                401,
                "'Expiration time' claim ('exp') must be a numeric value representing the future "
                "time at which the assertion expires.",
            )
        if exp - iat > JWT_MAX_LIFETIME_S:
            raise GitHubError(401, "'Expiration time' claim ('exp') is too far in the future.")
        if self._public_key is not None and str(claims.get("iss")) != str(self.app_id):
            raise GitHubError(401, "'Issuer' claim ('iss') must be the App's id.")

    # ---------------------------------------------------------------- JSON shapes

    def _user(self, login: str, api: str) -> dict[str, Any]:
        return user_json(login, api)

    def _repo_json(self, full_name: str, api: str) -> dict[str, Any]:
        repo = self.repos.get(full_name)
        template = _example("pulls/get", "response200.default.json")
        out: dict[str, Any] = {}
        if isinstance(template, dict):
            out = _rebase(template["base"]["repo"], api, full_name)
        owner, name = full_name.split("/", 1)
        out.update(
            id=repo.id if repo else _stable_id(full_name),
            node_id=f"R_{_stable_id(full_name)}",
            name=name,
            full_name=full_name,
            owner=self._user(owner, api),
            private=repo.private if repo else False,
            visibility="private" if repo and repo.private else "public",
            fork=repo.fork if repo else True,
            archived=repo.archived if repo else False,
            default_branch=repo.default_branch if repo else "main",
            url=f"{api}/repos/{full_name}",
            html_url=f"https://github.com/{full_name}",
        )
        if repo is not None:
            out.update(
                allow_squash_merge=repo.allow_squash_merge,
                allow_merge_commit=repo.allow_merge_commit,
                allow_rebase_merge=repo.allow_rebase_merge,
            )
        return out

    def _label_json(self, repo: str, name: str, api: str) -> dict[str, Any]:
        return {
            "id": _stable_id(f"{repo}#{name}"),
            "node_id": f"LA_{_stable_id(f'{repo}#{name}')}",
            "url": f"{api}/repos/{repo}/labels/{name}",
            "name": name,
            "description": "",
            "color": "ededed",
            "default": False,
        }

    def _team_json(self, repo: str, slug: str, api: str) -> dict[str, Any]:
        org = repo.split("/", 1)[0]
        tid = _stable_id(f"{org}/{slug}")
        return {
            "id": tid,
            "node_id": f"T_{tid}",
            "url": f"{api}/orgs/{org}/teams/{slug}",
            "html_url": f"https://github.com/orgs/{org}/teams/{slug}",
            "name": slug,
            "slug": slug,
            "description": "",
            "privacy": "closed",
            "notification_setting": "notifications_enabled",
            "permission": "pull",
            "members_url": f"{api}/orgs/{org}/teams/{slug}/members{{/member}}",
            "repositories_url": f"{api}/orgs/{org}/teams/{slug}/repos",
            "parent": None,
            "type": "organization",
        }

    def _mergeable_state(self, pull: Pull) -> str:
        if pull.mergeable_state is not None:
            return pull.mergeable_state
        if pull.draft:
            return "draft"
        if pull.mergeable is None:
            return "unknown"
        return "clean" if pull.mergeable else "dirty"

    def _pull_json(self, pull: Pull, api: str) -> dict[str, Any]:
        template = _example("pulls/get", "response200.default.json")
        out: dict[str, Any] = (
            _rebase(template, api, pull.repo) if isinstance(template, dict) else {}
        )
        full, n = pull.repo, pull.number
        base_owner = full.split("/", 1)[0]
        head_owner = pull.head_repo.split("/", 1)[0]
        adds = sum(int(f.get("additions", 0)) for f in pull.files)
        dels = sum(int(f.get("deletions", 0)) for f in pull.files)
        out.update(
            url=f"{api}/repos/{full}/pulls/{n}",
            id=_stable_id(f"{full}#{n}"),
            node_id=f"PR_{_stable_id(f'{full}#{n}')}",
            html_url=f"https://github.com/{full}/pull/{n}",
            diff_url=f"https://github.com/{full}/pull/{n}.diff",
            patch_url=f"https://github.com/{full}/pull/{n}.patch",
            issue_url=f"{api}/repos/{full}/issues/{n}",
            commits_url=f"{api}/repos/{full}/pulls/{n}/commits",
            review_comments_url=f"{api}/repos/{full}/pulls/{n}/comments",
            review_comment_url=f"{api}/repos/{full}/pulls/comments{{/number}}",
            comments_url=f"{api}/repos/{full}/issues/{n}/comments",
            statuses_url=f"{api}/repos/{full}/statuses/{pull.head_sha}",
            number=n,
            state=pull.state,
            locked=False,
            title=pull.title,
            user=self._user(pull.user, api),
            body=pull.body,
            labels=[self._label_json(full, name, api) for name in pull.labels],
            milestone=None,
            active_lock_reason=None,
            created_at=pull.created_at,
            updated_at=pull.created_at,
            closed_at=pull.merged_at if pull.state == "closed" else None,
            merged_at=pull.merged_at,
            merge_commit_sha=pull.merge_commit_sha,
            assignee=None,
            assignees=[],
            requested_reviewers=[self._user(u, api) for u in pull.requested_reviewers],
            requested_teams=[self._team_json(full, t, api) for t in pull.requested_teams],
            head={
                "label": f"{head_owner}:{pull.head_ref}",
                "ref": pull.head_ref,
                "sha": pull.head_sha,
                "user": self._user(head_owner, api),
                "repo": self._repo_json(pull.head_repo, api),
            },
            base={
                "label": f"{base_owner}:{pull.base}",
                "ref": pull.base,
                "sha": pull.base_sha,
                "user": self._user(base_owner, api),
                "repo": self._repo_json(full, api),
            },
            _links={
                "self": {"href": f"{api}/repos/{full}/pulls/{n}"},
                "html": {"href": f"https://github.com/{full}/pull/{n}"},
                "issue": {"href": f"{api}/repos/{full}/issues/{n}"},
                "comments": {"href": f"{api}/repos/{full}/issues/{n}/comments"},
                "review_comments": {"href": f"{api}/repos/{full}/pulls/{n}/comments"},
                "review_comment": {"href": f"{api}/repos/{full}/pulls/comments{{/number}}"},
                "commits": {"href": f"{api}/repos/{full}/pulls/{n}/commits"},
                "statuses": {"href": f"{api}/repos/{full}/statuses/{pull.head_sha}"},
            },
            author_association="CONTRIBUTOR" if pull.fork else "MEMBER",
            auto_merge=None,
            draft=pull.draft,
            merged=pull.merged,
            mergeable=None if pull.merged else pull.mergeable,
            rebaseable=pull.mergeable,
            mergeable_state=self._mergeable_state(pull),
            merged_by=self._user(pull.merged_by, api) if pull.merged_by else None,
            comments=len(self.comments_on(full, n)),
            review_comments=len(pull.review_comments),
            maintainer_can_modify=pull.maintainer_can_modify,
            commits=len(pull.commits),
            additions=adds,
            deletions=dels,
            changed_files=len(pull.files),
        )
        return out

    def _commit(
        self, repo: str, spec: Mapping[str, Any], *, author: str = "octocat"
    ) -> dict[str, Any]:
        """A commit object (as list-commits and get-commit return it) from a small spec."""
        sha = str(spec.get("sha") or fake_sha(f"{repo}:{spec.get('message', '')}"))
        message = str(spec.get("message", "A commit"))
        login = str(spec.get("author", author))
        when = _now_iso(self.now())
        person = {"name": login, "email": f"{login}@users.noreply.github.com", "date": when}
        api = f"https://api.github.com/repos/{repo}"
        parents = [{"sha": p, "url": f"{api}/commits/{p}"} for p in spec.get("parents", ())]
        return {
            "sha": sha,
            "node_id": f"C_{sha[:16]}",
            "commit": {
                "author": person,
                "committer": person,
                "message": message,
                "tree": {"sha": fake_sha(f"tree:{sha}"), "url": f"{api}/git/trees/{sha}"},
                "url": f"{api}/git/commits/{sha}",
                "comment_count": 0,
                "verification": {
                    "verified": False,
                    "reason": "unsigned",
                    "signature": None,
                    "payload": None,
                    "verified_at": None,
                },
            },
            "url": f"{api}/commits/{sha}",
            "html_url": f"https://github.com/{repo}/commit/{sha}",
            "comments_url": f"{api}/commits/{sha}/comments",
            "author": user_json(login),
            "committer": user_json(login),
            "parents": parents,
        }

    def _normalize_file(self, repo: str, head_sha: str, entry: Mapping[str, Any]) -> dict[str, Any]:
        item = dict(entry)
        name = str(item["filename"])
        patch = item.get("patch")
        adds, dels = _count_changes(patch if isinstance(patch, str) else None)
        item.setdefault("status", "modified")
        item.setdefault("additions", adds)
        item.setdefault("deletions", dels)
        item.setdefault("changes", int(item["additions"]) + int(item["deletions"]))
        item.setdefault("sha", fake_sha(f"{repo}:{head_sha}:{name}"))
        item.setdefault("blob_url", f"https://github.com/{repo}/blob/{head_sha}/{name}")
        item.setdefault("raw_url", f"https://github.com/{repo}/raw/{head_sha}/{name}")
        item.setdefault(
            "contents_url", f"https://api.github.com/repos/{repo}/contents/{name}?ref={head_sha}"
        )
        return item

    def _files_and_diff(
        self,
        repo: str,
        head_sha: str,
        files: Sequence[Mapping[str, Any]] | None,
        diff: str | None,
    ) -> tuple[list[dict[str, Any]], str]:
        entries: list[Mapping[str, Any]]
        if files is None:
            entries = list(files_from_diff(diff)) if diff else []
        else:
            entries = list(files)
            if diff:
                parsed = {f["filename"]: f for f in files_from_diff(diff)}
                entries = [
                    {**parsed.get(str(f["filename"]), {}), **f}
                    if "patch" not in f and str(f["filename"]) in parsed
                    else f
                    for f in entries
                ]
        normalized = [self._normalize_file(repo, head_sha, f) for f in entries]
        return normalized, diff if diff is not None else diff_from_files(normalized)

    def _check_run_json(self, run: CheckRun, api: str) -> dict[str, Any]:
        template = _example("checks/create", "response201.example-of-in-progress-conclusion.json")
        out: dict[str, Any] = _rebase(template, api, run.repo) if isinstance(template, dict) else {}
        full = run.repo
        prs = []
        repo = self.repos.get(full)
        for pull in repo.pulls.values() if repo else ():
            if pull.head_sha == run.head_sha and pull.state == "open":
                repo_ref = {
                    "id": _stable_id(full),
                    "url": f"{api}/repos/{full}",
                    "name": full.split("/")[1],
                }
                prs.append(
                    {
                        "url": f"{api}/repos/{full}/pulls/{pull.number}",
                        "id": _stable_id(f"{full}#{pull.number}"),
                        "number": pull.number,
                        "head": {"ref": pull.head_ref, "sha": pull.head_sha, "repo": repo_ref},
                        "base": {"ref": pull.base, "sha": pull.base_sha, "repo": repo_ref},
                    }
                )
        app = out.get("app") if isinstance(out.get("app"), dict) else {}
        assert isinstance(app, dict)
        app.update(
            id=run.app_id,
            slug=run.app_slug,
            name=run.app_slug,
            node_id=f"A_{run.app_id}",
            html_url=f"https://github.com/apps/{run.app_slug}",
        )
        suite = out.get("check_suite") if isinstance(out.get("check_suite"), dict) else {}
        assert isinstance(suite, dict)
        out["check_suite"] = {**suite, "id": run.check_suite_id or _stable_id(f"suite:{run.id}")}
        out.update(
            id=run.id,
            node_id=f"CR_{run.id}",
            head_sha=run.head_sha,
            external_id=run.external_id,
            url=f"{api}/repos/{full}/check-runs/{run.id}",
            html_url=f"https://github.com/{full}/runs/{run.id}",
            details_url=run.details_url or f"https://github.com/apps/{run.app_slug}",
            status=run.status,
            conclusion=run.conclusion,
            started_at=run.started_at,
            completed_at=run.completed_at,
            output={
                "title": run.title,
                "summary": run.summary,
                "text": run.text,
                "annotations_count": len(run.annotations),
                "annotations_url": f"{api}/repos/{full}/check-runs/{run.id}/annotations",
            },
            name=run.name,
            check_suite={"id": _stable_id(f"{full}@{run.head_sha}:{run.app_slug}")},
            app=app,
            pull_requests=prs,
        )
        if run.actions:
            out["actions"] = run.actions
        return out

    def _issue_comment_json(self, comment: Mapping[str, Any], api: str) -> dict[str, Any]:
        repo, number, cid = comment["_repo"], comment["_number"], comment["id"]
        return {
            "id": cid,
            "node_id": f"IC_{cid}",
            "url": f"{api}/repos/{repo}/issues/comments/{cid}",
            "html_url": f"https://github.com/{repo}/pull/{number}#issuecomment-{cid}",
            "issue_url": f"{api}/repos/{repo}/issues/{number}",
            "body": comment["body"],
            "user": self._user(comment["user"], api),
            "created_at": comment["created_at"],
            "updated_at": comment["updated_at"],
            "author_association": "NONE",
            "performed_via_github_app": None,
        }

    # ---------------------------------------------------------------- lookups

    def _repo(self, ctx: Ctx) -> Repo:
        repo = self.repos.get(f"{ctx.params['owner']}/{ctx.params['repo']}")
        if repo is None:
            raise not_found()
        return repo

    def _pull(self, ctx: Ctx) -> Pull:
        pull = self._repo(ctx).pulls.get(ctx.int_param("pull_number"))
        if pull is None:
            raise not_found()
        return pull

    def _issue(self, repo: str, number: int) -> None:
        target = self.repos.get(repo)
        if target is None or (number not in target.pulls and number not in target.issues):
            raise not_found()

    def _resolve_ref(self, repo: Repo, ref: str) -> str:
        ref = ref.removeprefix("refs/heads/").removeprefix("heads/")
        if ref in repo.branches:
            return repo.branches[ref]
        return ref

    def _paginate(
        self, ctx: Ctx, items: Sequence[Any], *, wrap: Callable[[list[Any]], Any] | None = None
    ) -> web.Response:
        try:
            per_page = max(1, min(100, int(ctx.query.get("per_page", "30"))))
        except ValueError:
            per_page = 30
        try:
            page = max(1, int(ctx.query.get("page", "1")))
        except ValueError:
            page = 1
        last = max(1, math.ceil(len(items) / per_page))
        chunk = list(items[(page - 1) * per_page : page * per_page])

        def link(n: int) -> str:
            query = dict(ctx.query)
            query["page"] = str(n)
            return f"{ctx.api_base}{ctx.path}?{urlencode(query)}"

        links: list[str] = []
        if page > 1:
            links.append(f'<{link(page - 1)}>; rel="prev"')
        if page < last:
            links.append(f'<{link(page + 1)}>; rel="next"')
            links.append(f'<{link(last)}>; rel="last"')
        if page > 1:
            links.append(f'<{link(1)}>; rel="first"')
        response = web.json_response(wrap(chunk) if wrap else chunk)
        if links:
            response.headers["link"] = ", ".join(links)
        return response

    # ================================================================ routes: the App

    @route("POST", "/app-manifests/{code}/conversions", "apps/create-from-manifest", auth="none")
    async def _create_from_manifest(self, ctx: Ctx) -> web.StreamResponse:
        return await self.manifest_flow.convert(ctx)

    @route("GET", "/app", "apps/get-authenticated", auth="jwt")
    async def _get_app(self, ctx: Ctx) -> web.StreamResponse:
        template = _example("apps/get-authenticated", "response200.default.json")
        out: dict[str, Any] = template if isinstance(template, dict) else {}
        out.update(
            id=self.app_id,
            slug=self.app_slug,
            node_id=f"A_{self.app_id}",
            client_id=f"Iv1.{self.app_id:016x}",
            name=self.app_name,
            owner=self._user("octo", ctx.api_base),
            html_url=f"https://github.com/apps/{self.app_slug}",
            permissions=dict(DEFAULT_TOKEN_PERMISSIONS),
            events=["check_run", "check_suite", "issue_comment", "pull_request", "push", "status"],
        )
        return web.json_response(out)

    def _installation_json(self, installation_id: int, api: str) -> dict[str, Any]:
        owners = sorted(
            {r.owner for r in self.repos.values() if r.installation_id == installation_id}
        )
        account = owners[0] if owners else "octo"
        return {
            "id": installation_id,
            # The description's ``account`` is allOf(simple-user, enterprise): satisfy both.
            "account": {
                **self._user(account, api),
                "name": account,
                "slug": account,
                "created_at": "2024-01-01T00:00:00Z",
                "updated_at": "2024-01-01T00:00:00Z",
            },
            "repository_selection": "all",
            "access_tokens_url": f"{api}/app/installations/{installation_id}/access_tokens",
            "repositories_url": f"{api}/installation/repositories",
            "html_url": f"https://github.com/organizations/{account}/settings/installations/{installation_id}",
            "app_id": self.app_id,
            "app_slug": self.app_slug,
            "target_id": _stable_id(account),
            "target_type": "Organization",
            "permissions": dict(DEFAULT_TOKEN_PERMISSIONS),
            "events": [
                "check_run",
                "check_suite",
                "issue_comment",
                "pull_request",
                "push",
                "status",
            ],
            "single_file_name": None,
            "has_multiple_single_files": False,
            "single_file_paths": [],
            "created_at": "2024-01-01T00:00:00Z",
            "updated_at": "2024-01-01T00:00:00Z",
            "suspended_by": None,
            "suspended_at": None,
        }

    @route("GET", "/user", "users/get-authenticated", auth="user")
    async def _get_user(self, ctx: Ctx) -> web.StreamResponse:
        assert ctx.user is not None
        return web.json_response(self._user(ctx.user, ctx.api_base))

    def _user_readable(self, login: str) -> list[Repo]:
        return [self.repos[n] for n in sorted(self.user_repos.get(login, ())) if n in self.repos]

    @route(
        "GET",
        "/user/installations",
        "apps/list-installations-for-authenticated-user",
        auth="user",
    )
    async def _user_installations(self, ctx: Ctx) -> web.StreamResponse:
        assert ctx.user is not None
        ids = sorted({r.installation_id for r in self._user_readable(ctx.user)})
        items = [self._installation_json(i, ctx.api_base) for i in ids]
        return self._paginate(
            ctx, items, wrap=lambda chunk: {"total_count": len(items), "installations": chunk}
        )

    @route(
        "GET",
        "/user/installations/{installation_id}/repositories",
        "apps/list-installation-repos-for-authenticated-user",
        auth="user",
    )
    async def _user_installation_repos(self, ctx: Ctx) -> web.StreamResponse:
        assert ctx.user is not None
        installation_id = ctx.int_param("installation_id")
        repos = [r for r in self._user_readable(ctx.user) if r.installation_id == installation_id]
        if not repos:
            raise not_found()
        items = [self._repo_json(r.full_name, ctx.api_base) for r in repos]
        return self._paginate(
            ctx, items, wrap=lambda chunk: {"total_count": len(items), "repositories": chunk}
        )

    @route("GET", "/app/installations", "apps/list-installations", auth="jwt")
    async def _list_installations(self, ctx: Ctx) -> web.StreamResponse:
        ids = sorted({r.installation_id for r in self.repos.values()})
        return self._paginate(ctx, [self._installation_json(i, ctx.api_base) for i in ids])

    @route("GET", "/repos/{owner}/{repo}/installation", "apps/get-repo-installation", auth="jwt")
    async def _repo_installation(self, ctx: Ctx) -> web.StreamResponse:
        repo = self._repo(ctx)
        return web.json_response(self._installation_json(repo.installation_id, ctx.api_base))

    @route(
        "POST",
        "/app/installations/{installation_id}/access_tokens",
        "apps/create-installation-access-token",
        auth="jwt",
    )
    async def _create_token(self, ctx: Ctx) -> web.StreamResponse:
        installation_id = ctx.int_param("installation_id")
        self.token_requests[installation_id] += 1
        data = ctx.json
        token = self.issue_token(installation_id)
        issued = self.tokens[token]
        if isinstance(data.get("permissions"), dict):
            issued.permissions = dict(data["permissions"])
        if isinstance(data.get("repositories"), list):
            issued.repositories = [str(r) for r in data["repositories"]]
        out: dict[str, Any] = {
            "token": token,
            "expires_at": _now_iso(issued.expires_at),
            "permissions": issued.permissions,
            "repository_selection": "selected" if issued.repositories is not None else "all",
        }
        if issued.repositories is not None:
            out["repositories"] = [
                self._repo_json(r.full_name, ctx.api_base)
                for r in self.repos.values()
                if r.name in issued.repositories
            ]
        return web.json_response(out, status=201)

    @route("GET", "/rate_limit", "rate-limit/get")
    async def _rate_limit(self, ctx: Ctx) -> web.StreamResponse:
        core = {
            "limit": 5000,
            "remaining": self.rate_limit_remaining,
            "reset": int(self.now()) + 3600,
            "used": 5000 - self.rate_limit_remaining,
        }
        other = {"limit": 30, "remaining": 30, "reset": core["reset"], "used": 0}
        return web.json_response(
            {"resources": {"core": core, "search": other, "graphql": core}, "rate": core}
        )

    # ================================================================ routes: repositories

    @route("GET", "/repos/{owner}/{repo}", "repos/get")
    async def _get_repo(self, ctx: Ctx) -> web.StreamResponse:
        repo = self._repo(ctx)
        return web.json_response(self._repo_json(repo.full_name, ctx.api_base))

    @route("GET", "/repos/{owner}/{repo}/contents/{path}", "repos/get-content")
    async def _get_content(self, ctx: Ctx) -> web.StreamResponse:
        repo = self._repo(ctx)
        ref = ctx.query.get("ref") or repo.default_branch
        path = ctx.params["path"].strip("/")
        files = self._files_at(repo, ref)
        api, full = ctx.api_base, repo.full_name
        if path in files:
            data = files[path].encode("utf-8")
            if _RAW_ACCEPT_RE.search(ctx.accept):
                return web.Response(
                    body=data, content_type="application/vnd.github.raw", charset="utf-8"
                )
            encoded = base64.b64encode(data).decode("ascii")
            sha = git_blob_sha(data)
            return web.json_response(
                {
                    "type": "file",
                    "encoding": "base64",
                    "size": len(data),
                    "name": path.rsplit("/", 1)[-1],
                    "path": path,
                    "content": "".join(
                        f"{encoded[i : i + 60]}\n" for i in range(0, len(encoded), 60)
                    ),
                    "sha": sha,
                    "url": f"{api}/repos/{full}/contents/{path}?ref={ref}",
                    "git_url": f"{api}/repos/{full}/git/blobs/{sha}",
                    "html_url": f"https://github.com/{full}/blob/{ref}/{path}",
                    "download_url": f"https://raw.githubusercontent.com/{full}/{ref}/{path}",
                    "_links": {
                        "self": f"{api}/repos/{full}/contents/{path}?ref={ref}",
                        "git": f"{api}/repos/{full}/git/blobs/{sha}",
                        "html": f"https://github.com/{full}/blob/{ref}/{path}",
                    },
                }
            )
        prefix = f"{path}/" if path else ""
        children = sorted(
            {p[len(prefix) :].split("/", 1)[0] for p in files if p.startswith(prefix)}
        )
        if not children:
            raise GitHubError(
                404, "Not Found", documentation_url=f"{DOCS}/repos/contents#get-repository-content"
            )
        entries = []
        for child in children:
            full_path = f"{prefix}{child}"
            is_file = full_path in files
            sha = git_blob_sha(files[full_path].encode()) if is_file else fake_sha(full_path)
            kind = "blob" if is_file else "tree"
            self_url = f"{api}/repos/{full}/contents/{full_path}?ref={ref}"
            git_url = f"{api}/repos/{full}/git/{kind}s/{sha}"
            html_url = f"https://github.com/{full}/{kind}/{ref}/{full_path}"
            entries.append(
                {
                    "type": "file" if is_file else "dir",
                    "name": child,
                    "path": full_path,
                    "size": len(files[full_path].encode()) if is_file else 0,
                    "sha": sha,
                    "url": self_url,
                    "git_url": git_url,
                    "html_url": html_url,
                    "download_url": (
                        f"https://raw.githubusercontent.com/{full}/{ref}/{full_path}"
                        if is_file
                        else None
                    ),
                    "_links": {"self": self_url, "git": git_url, "html": html_url},
                }
            )
        return web.json_response(entries)

    def _files_at(self, repo: Repo, ref: str) -> dict[str, str]:
        if ref in repo.files:
            return repo.files[ref]
        sha = self._resolve_ref(repo, ref)
        if sha in repo.files:
            return repo.files[sha]
        for branch, head in repo.branches.items():
            if head == ref and branch in repo.files:
                return repo.files[branch]
        return {}

    # ---------------------------------------------------------------- tarballs (API jobs)

    @route("GET", "/repos/{owner}/{repo}/tarball/{ref}", "repos/download-tarball-archive")
    async def _tarball(self, ctx: Ctx) -> web.StreamResponse:
        """As GitHub does: a 302 to a download URL that needs no token (it carries a grant)."""
        repo = self._repo(ctx)
        ref = ctx.params["ref"]
        if not self._files_at(repo, ref):
            raise not_found()
        grant = secrets.token_hex(8)
        location = f"{ctx.api_base}/_codeload/{repo.full_name}/legacy.tar.gz/{ref}?grant={grant}"
        return web.Response(status=302, headers={"Location": location})

    @route("GET", "/_codeload/{owner}/{repo}/legacy.tar.gz/{ref}", "test:codeload", auth="none")
    async def _codeload(self, ctx: Ctx) -> web.StreamResponse:
        """The archive: ``owner-repo-sha7/`` then the ref's files. A token sent here is a leak."""
        if "authorization" in ctx.headers:
            raise GitHubError(400, "an Authorization header was sent to the download URL")
        repo = self._repo(ctx)
        ref = ctx.params["ref"]
        top = f"{repo.owner}-{repo.name}-{self._resolve_ref(repo, ref)[:7]}"
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            folder = tarfile.TarInfo(top)
            folder.type, folder.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(folder)
            for path, text in sorted(self._files_at(repo, ref).items()):
                data = text.encode("utf-8")
                entry = tarfile.TarInfo(f"{top}/{path}")
                entry.size, entry.mode = len(data), 0o644
                tar.addfile(entry, io.BytesIO(data))
        return web.Response(body=buffer.getvalue(), content_type="application/x-gzip")

    @route(
        "GET",
        "/repos/{owner}/{repo}/collaborators/{username}/permission",
        "repos/get-collaborator-permission-level",
    )
    async def _permission(self, ctx: Ctx) -> web.StreamResponse:
        repo = self._repo(ctx)
        user = ctx.params["username"]
        role = repo.permissions.get(user, "read")
        legacy = {"maintain": "write", "triage": "read"}.get(role, role)
        person = {**self._user(user, ctx.api_base), "role_name": role}
        return web.json_response({"permission": legacy, "role_name": role, "user": person})

    @route("GET", "/repos/{owner}/{repo}/commits/{ref}", "repos/get-commit")
    async def _get_commit(self, ctx: Ctx) -> web.StreamResponse:
        repo = self._repo(ctx)
        sha = self._resolve_ref(repo, ctx.params["ref"])
        commit = repo.commits.get(sha)
        if commit is None:
            raise GitHubError(422, f"No commit found for SHA: {ctx.params['ref']}")
        if ctx.wants_diff():
            files = commit.get("files") or []
            return self._diff_response(diff_from_files(files))
        out = _rebase(copy.deepcopy(commit), ctx.api_base, repo.full_name)
        out.setdefault("files", [])
        out["url"] = f"{ctx.api_base}/repos/{repo.full_name}/commits/{sha}"
        return web.json_response(out)

    @route("GET", "/repos/{owner}/{repo}/compare/{basehead}", "repos/compare-commits-with-basehead")
    async def _compare(self, ctx: Ctx) -> web.StreamResponse:
        repo = self._repo(ctx)
        base, sep, head = ctx.params["basehead"].partition("...")
        if not sep:
            raise not_found()
        compare = repo.compares.get((base, head))
        if compare is None:
            strip = [b.split(":", 1)[-1] for b in (base, head)]
            compare = repo.compares.get((strip[0], strip[1]))
        if compare is None:
            raise not_found()
        if ctx.wants_diff():
            return self._diff_response(compare.diff)
        template = _example("repos/compare-commits-with-basehead", "response200.default.json")
        out: dict[str, Any] = (
            _rebase(template, ctx.api_base, repo.full_name) if isinstance(template, dict) else {}
        )
        full = repo.full_name
        out.update(
            url=f"{ctx.api_base}/repos/{full}/compare/{base}...{head}",
            html_url=f"https://github.com/{full}/compare/{base}...{head}",
            permalink_url=f"https://github.com/{full}/compare/{base}...{head}",
            diff_url=f"https://github.com/{full}/compare/{base}...{head}.diff",
            patch_url=f"https://github.com/{full}/compare/{base}...{head}.patch",
            base_commit=self._commit(full, {"sha": self._resolve_ref(repo, base)}),
            merge_base_commit=self._commit(full, {"sha": self._resolve_ref(repo, base)}),
            status=compare.status,
            ahead_by=len(compare.commits),
            behind_by=compare.behind_by,
            total_commits=len(compare.commits),
            commits=_rebase(compare.commits, ctx.api_base, full),
            files=_rebase(compare.files, ctx.api_base, full),
        )
        return web.json_response(out)

    def _diff_response(self, diff: str) -> web.Response:
        return web.Response(text=diff, content_type=DIFF_CONTENT_TYPE, charset="utf-8")

    # ================================================================ routes: pull requests

    @route("GET", "/repos/{owner}/{repo}/pulls/{pull_number}", "pulls/get")
    async def _get_pull(self, ctx: Ctx) -> web.StreamResponse:
        pull = self._pull(ctx)
        if ctx.wants_diff():
            if pull.diff_too_large or len(pull.files) > 300:
                raise GitHubError(
                    406,
                    "Sorry, the diff exceeded the maximum number of files (300). Consider using "
                    "'List pull requests files' API or locally cloning the repository instead.",
                    errors=[{"resource": "PullRequest", "field": "diff", "code": "too_large"}],
                    documentation_url=f"{DOCS}/pulls/pulls#list-pull-requests-files",
                )
            return self._diff_response(pull.diff)
        return web.json_response(self._pull_json(pull, ctx.api_base))

    @route("PATCH", "/repos/{owner}/{repo}/pulls/{pull_number}", "pulls/update")
    async def _update_pull(self, ctx: Ctx) -> web.StreamResponse:
        pull = self._pull(ctx)
        data = ctx.json
        if "title" in data:
            pull.title = str(data["title"])
        if "body" in data:
            pull.body = data["body"]
        if data.get("state") in {"open", "closed"} and not pull.merged:
            pull.state = str(data["state"])
        if "base" in data:
            pull.base = str(data["base"])
        return web.json_response(self._pull_json(pull, ctx.api_base))

    @route("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/files", "pulls/list-files")
    async def _list_files(self, ctx: Ctx) -> web.StreamResponse:
        pull = self._pull(ctx)
        files = [_rebase(f, ctx.api_base, pull.repo) for f in pull.files[:3000]]
        return self._paginate(ctx, files)

    @route("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/commits", "pulls/list-commits")
    async def _list_commits(self, ctx: Ctx) -> web.StreamResponse:
        pull = self._pull(ctx)
        return self._paginate(
            ctx, [_rebase(c, ctx.api_base, pull.repo) for c in pull.commits[:250]]
        )

    @route("GET", "/repos/{owner}/{repo}/pulls", "pulls/list")
    async def _list_pulls(self, ctx: Ctx) -> web.StreamResponse:
        repo = self._repo(ctx)
        state = ctx.query.get("state", "open")
        head = ctx.query.get("head")
        base = ctx.query.get("base")
        found = []
        for pull in sorted(repo.pulls.values(), key=lambda p: -p.number):
            if state != "all" and pull.state != state:
                continue
            if head is not None:
                owner, _, branch = head.rpartition(":")
                if branch != pull.head_ref or (owner and owner != pull.head_repo.split("/")[0]):
                    continue
            if base is not None and pull.base != base:
                continue
            found.append(self._pull_json(pull, ctx.api_base))
        return self._paginate(ctx, found)

    @route("POST", "/repos/{owner}/{repo}/pulls", "pulls/create")
    async def _create_pull(self, ctx: Ctx) -> web.StreamResponse:
        repo = self._repo(ctx)
        data = ctx.json
        head, base = str(data.get("head", "")), str(data.get("base", ""))
        if not data.get("title") and not data.get("issue"):
            raise validation_failed("Issue", "title", "missing_field")
        if base not in repo.branches:
            raise validation_failed("PullRequest", "base", "invalid")
        owner, _, branch = head.rpartition(":")
        head_repo = repo.full_name
        if owner and owner != repo.owner:
            head_repo = f"{owner}/{repo.name}"
            fork = self.repos.get(head_repo)
            head_sha = fork.branches.get(branch) if fork else None
        else:
            head_sha = repo.branches.get(branch)
        if head_sha is None:
            raise validation_failed("PullRequest", "head", "invalid")
        for pull in repo.pulls.values():
            if (
                pull.state == "open"
                and pull.head_ref == branch
                and pull.base == base
                and pull.head_repo == head_repo
            ):
                raise validation_failed(
                    "PullRequest",
                    "",
                    "custom",
                    f"A pull request already exists for {owner or repo.owner}:{branch}.",
                )
        if head_sha == repo.branches[base]:
            raise validation_failed(
                "PullRequest", "", "custom", f"No commits between {base} and {branch}"
            )
        number = max([0, *repo.pulls, *repo.issues]) + 1
        compare = repo.compares.get((base, branch)) or repo.compares.get(
            (repo.branches[base], head_sha)
        )
        pull = self.add_pull(
            repo.full_name,
            number,
            head_sha=head_sha,
            base=base,
            head_ref=branch,
            files=compare.files if compare else [],
            diff=compare.diff if compare else "",
            draft=bool(data.get("draft", False)),
            user=self.bot_login,
            head_repo=head_repo,
            title=str(data.get("title") or f"Issue #{data.get('issue')}"),
            body=data.get("body"),
            commits=compare.commits if compare else None,
            mergeable=None,
        )
        pull.maintainer_can_modify = bool(data.get("maintainer_can_modify", False))
        return web.json_response(self._pull_json(pull, ctx.api_base), status=201)

    @route(
        "POST",
        "/repos/{owner}/{repo}/pulls/{pull_number}/requested_reviewers",
        "pulls/request-reviewers",
    )
    async def _request_reviewers(self, ctx: Ctx) -> web.StreamResponse:
        pull = self._pull(ctx)
        data = ctx.json
        reviewers = [str(r) for r in data.get("reviewers") or []]
        teams = [str(t) for t in data.get("team_reviewers") or []]
        if pull.user in reviewers:
            raise GitHubError(
                422,
                "Reviews may only be requested from collaborators. One or more of the users or "
                "teams you specified is not a collaborator of the repository.",
                errors=["Review cannot be requested from pull request author."],
            )
        for login in reviewers:
            if login not in pull.requested_reviewers:
                pull.requested_reviewers.append(login)
        for team in teams:
            if team not in pull.requested_teams:
                pull.requested_teams.append(team)
        return web.json_response(self._pull_json(pull, ctx.api_base), status=201)

    @route("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/merge", "pulls/check-if-merged")
    async def _is_merged(self, ctx: Ctx) -> web.StreamResponse:
        if not self._pull(ctx).merged:
            raise not_found()
        return web.Response(status=204)

    @route("PUT", "/repos/{owner}/{repo}/pulls/{pull_number}/merge", "pulls/merge")
    async def _merge(self, ctx: Ctx) -> web.StreamResponse:
        repo = self._repo(ctx)
        pull = self._pull(ctx)
        data = ctx.json
        if pull.merged or pull.state != "open":
            raise GitHubError(
                405,
                "Pull Request is not mergeable",
                documentation_url=f"{DOCS}/pulls/pulls#merge-a-pull-request",
            )
        if pull.draft:
            raise GitHubError(
                405,
                "Pull Request is still a draft",
                documentation_url=f"{DOCS}/pulls/pulls#merge-a-pull-request",
            )
        sha = data.get("sha")
        if sha is not None and sha != pull.head_sha:
            raise GitHubError(
                409,
                "Head branch was modified. Review and try the merge again.",
                documentation_url=f"{DOCS}/pulls/pulls#merge-a-pull-request",
            )
        if pull.mergeable is not True or self._mergeable_state(pull) in {
            "dirty",
            "blocked",
            "behind",
        }:
            raise GitHubError(
                405,
                "Pull Request is not mergeable",
                documentation_url=f"{DOCS}/pulls/pulls#merge-a-pull-request",
            )
        method = str(data.get("merge_method", "merge"))
        allowed = {
            "merge": (repo.allow_merge_commit, "Merge commits are not allowed on this repository."),
            "squash": (
                repo.allow_squash_merge,
                "Squash merges are not allowed on this repository.",
            ),
            "rebase": (
                repo.allow_rebase_merge,
                "Rebase merges are not allowed on this repository.",
            ),
        }
        if method not in allowed:
            raise validation_failed("PullRequest", "merge_method", "invalid")
        ok, message = allowed[method]
        if not ok:
            raise GitHubError(
                405, message, documentation_url=f"{DOCS}/pulls/pulls#merge-a-pull-request"
            )
        merge_sha = fake_sha(f"{repo.full_name}#{pull.number}:{pull.head_sha}:{method}")
        pull.merged = True
        pull.state = "closed"
        pull.merged_at = _now_iso(self.now())
        pull.merge_commit_sha = merge_sha
        pull.merged_by = self.bot_login
        repo.branches[pull.base] = merge_sha
        title = data.get("commit_title") or f"{pull.title} (#{pull.number})"
        repo.commits[merge_sha] = self._commit(
            repo.full_name,
            {"sha": merge_sha, "message": f"{title}\n\n{data.get('commit_message') or ''}".strip()},
            author=self.bot_login,
        )
        return web.json_response(
            {"sha": merge_sha, "merged": True, "message": "Pull Request successfully merged"}
        )

    # ---------------------------------------------------------------- reviews

    def _comment_problems(self, pull: Pull, comment: Mapping[str, Any]) -> list[str]:
        path = str(comment.get("path", ""))
        lines = pull.lines(path)
        line_bad = "Pull request review thread line must be part of the diff"
        hunk_blank = "Pull request review thread diff hunk can't be blank"
        if "line" not in comment and "position" in comment:
            position = comment.get("position")
            if lines is None or not isinstance(position, int) or position not in lines.positions:
                return ["Pull request review thread position is invalid", hunk_blank]
            return []
        if lines is None:
            return ["Path could not be resolved"]
        line = comment.get("line")
        side = str(comment.get("side") or "RIGHT")
        problems: list[str] = []
        hunk = lines.hunk_of(line, side) if isinstance(line, int) else None
        if hunk is None:
            problems.append(line_bad)
        start = comment.get("start_line")
        if start is not None:
            start_side = str(comment.get("start_side") or side)
            start_hunk = lines.hunk_of(start, start_side) if isinstance(start, int) else None
            if (
                start_hunk is None
                or hunk is None
                or start_hunk != hunk
                or (isinstance(line, int) and isinstance(start, int) and start > line)
            ):
                problems.append(
                    "Pull request review thread start line must be part of the same hunk as the line."
                )
        if problems:
            problems.append(hunk_blank)
        return problems

    def _diff_hunk(self, pull: Pull, path: str, line: int | None, side: str) -> str:
        for item in pull.files:
            if item.get("filename") != path or not isinstance(item.get("patch"), str):
                continue
            out: list[str] = []
            right = left = 0
            for raw in str(item["patch"]).split("\n"):
                header = _HUNK_RE.match(raw)
                if header:
                    out = [raw]
                    left, right = int(header.group(1)), int(header.group(3))
                    continue
                out.append(raw)
                tag = raw[:1]
                current = left if (side == "LEFT" and tag != "+") else right
                if tag == "+":
                    right += 1
                elif tag == "-":
                    left += 1
                else:
                    left += 1
                    right += 1
                if (
                    line is not None
                    and current == line
                    and (tag != ("+" if side == "LEFT" else "-"))
                ):
                    return "\n".join(out)
            return "\n".join(out)
        return ""

    def _review_comment_json(
        self, pull: Pull, data: Mapping[str, Any], review_id: int | None, api: str
    ) -> dict[str, Any]:
        cid = self._next_id()
        full = pull.repo
        side = str(data.get("side") or "RIGHT")
        line = data.get("line")
        position = data.get("position")
        lines = pull.lines(str(data.get("path")))
        if lines is not None:
            if isinstance(line, int) and not isinstance(position, int):
                position = lines.position_of(line, side)
            elif isinstance(position, int) and not isinstance(line, int):
                line = next(
                    (n for (s, n), p in lines.by_line.items() if p == position and s == side),
                    None,
                )
        out: dict[str, Any] = {
            "id": cid,
            "node_id": f"PRRC_{cid}",
            "url": f"{api}/repos/{full}/pulls/comments/{cid}",
            "pull_request_review_id": review_id,
            "diff_hunk": self._diff_hunk(
                pull, str(data.get("path")), line if isinstance(line, int) else None, side
            ),
            "path": data.get("path"),
            "position": position,
            "original_position": position,
            "commit_id": pull.head_sha,
            "original_commit_id": pull.head_sha,
            "user": self._user(self.bot_login, api),
            "body": data.get("body"),
            "created_at": _now_iso(self.now()),
            "updated_at": _now_iso(self.now()),
            "html_url": f"https://github.com/{full}/pull/{pull.number}#discussion_r{cid}",
            "pull_request_url": f"{api}/repos/{full}/pulls/{pull.number}",
            "author_association": "NONE",
            "start_line": data.get("start_line"),
            "original_start_line": data.get("start_line"),
            "start_side": data.get("start_side") or (side if data.get("start_line") else None),
            "line": line,
            "original_line": line,
            "side": side,
            "subject_type": data.get("subject_type", "line"),
            "_links": {
                "self": {"href": f"{api}/repos/{full}/pulls/comments/{cid}"},
                "html": {"href": f"https://github.com/{full}/pull/{pull.number}#discussion_r{cid}"},
                "pull_request": {"href": f"{api}/repos/{full}/pulls/{pull.number}"},
            },
        }
        if data.get("in_reply_to") is not None:
            out["in_reply_to_id"] = data["in_reply_to"]
        return out

    @route("POST", "/repos/{owner}/{repo}/pulls/{pull_number}/reviews", "pulls/create-review")
    async def _create_review(self, ctx: Ctx) -> web.StreamResponse:
        pull = self._pull(ctx)
        data = ctx.json
        body = data.get("body")
        event = data.get("event")
        comments = data.get("comments") or []
        if isinstance(body, str) and len(body) > MAX_BODY:
            raise validation_failed(
                "PullRequestReview",
                "body",
                "custom",
                f"Body is too long (maximum is {MAX_BODY} characters)",
            )
        commit_id = data.get("commit_id")
        if commit_id is not None and commit_id != pull.head_sha:
            in_pr = any(c["sha"] == commit_id for c in pull.commits)
            raise GitHubError(
                422,
                "Unprocessable Entity",
                errors=[
                    "The commit_id is not the pull request's head commit (the fake refuses stale reviews)"
                    if in_pr
                    else "The commitOID is not part of the pull request"
                ],
                documentation_url=f"{DOCS}/pulls/reviews#create-a-review-for-a-pull-request",
            )
        if event == "REQUEST_CHANGES" and not body:
            raise GitHubError(422, "Unprocessable Entity", errors=["Body can't be blank"])
        if event == "COMMENT" and not body and not comments:
            raise GitHubError(422, "Unprocessable Entity", errors=["Body can't be blank"])
        if event is None and any(
            r["state"] == "PENDING" and r["_user"] == self.bot_login for r in pull.reviews
        ):
            raise GitHubError(
                422,
                "Unprocessable Entity",
                errors=["User can only have one pending review per pull request"],
            )
        problems: list[str] = []
        for comment in comments:
            if isinstance(comment, dict):
                if isinstance(comment.get("body"), str) and len(comment["body"]) > MAX_BODY:
                    problems.append(f"Body is too long (maximum is {MAX_BODY} characters)")
                for problem in self._comment_problems(pull, comment):
                    if problem not in problems:
                        problems.append(problem)
        if problems:
            raise GitHubError(
                422,
                "Unprocessable Entity",
                errors=[_english_list(problems)],
                documentation_url=f"{DOCS}/pulls/reviews#create-a-review-for-a-pull-request",
            )
        review_id = self._next_id()
        state = {
            "APPROVE": "APPROVED",
            "REQUEST_CHANGES": "CHANGES_REQUESTED",
            "COMMENT": "COMMENTED",
        }.get(str(event), "PENDING")
        api, full = ctx.api_base, pull.repo
        review = {
            "id": review_id,
            "node_id": f"PRR_{review_id}",
            "user": self._user(self.bot_login, api),
            "body": body or "",
            "state": state,
            "html_url": f"https://github.com/{full}/pull/{pull.number}#pullrequestreview-{review_id}",
            "pull_request_url": f"{api}/repos/{full}/pulls/{pull.number}",
            "_links": {
                "html": {
                    "href": f"https://github.com/{full}/pull/{pull.number}#pullrequestreview-{review_id}"
                },
                "pull_request": {"href": f"{api}/repos/{full}/pulls/{pull.number}"},
            },
            "submitted_at": None if state == "PENDING" else _now_iso(self.now()),
            "commit_id": pull.head_sha,
            "author_association": "NONE",
            "_user": self.bot_login,
        }
        pull.reviews.append(review)
        for comment in comments:
            posted = self._review_comment_json(pull, comment, review_id, api)
            posted["_pending"] = state == "PENDING"
            pull.review_comments.append(posted)
        return web.json_response(_public(review))

    @route("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/reviews", "pulls/list-reviews")
    async def _list_reviews(self, ctx: Ctx) -> web.StreamResponse:
        pull = self._pull(ctx)
        return self._paginate(ctx, [_public(r) for r in pull.reviews])

    @route(
        "GET", "/repos/{owner}/{repo}/pulls/{pull_number}/comments", "pulls/list-review-comments"
    )
    async def _list_review_comments(self, ctx: Ctx) -> web.StreamResponse:
        pull = self._pull(ctx)
        visible = [_public(c) for c in pull.review_comments if not c.get("_pending")]
        return self._paginate(ctx, visible)

    @route(
        "POST", "/repos/{owner}/{repo}/pulls/{pull_number}/comments", "pulls/create-review-comment"
    )
    async def _create_review_comment(self, ctx: Ctx) -> web.StreamResponse:
        pull = self._pull(ctx)
        data = ctx.json
        if isinstance(data.get("body"), str) and len(data["body"]) > MAX_BODY:
            raise validation_failed(
                "PullRequestReviewComment",
                "body",
                "custom",
                f"Body is too long (maximum is {MAX_BODY} characters)",
            )
        if data.get("in_reply_to") is not None:
            parent = next((c for c in pull.review_comments if c["id"] == data["in_reply_to"]), None)
            if parent is None:
                raise not_found()
            keep = ("path", "line", "side", "start_line", "start_side", "position")
            data = {**{k: parent[k] for k in keep}, **data}
        else:
            commit_id = data.get("commit_id")
            if commit_id is not None and commit_id != pull.head_sha:
                raise GitHubError(
                    422,
                    "Unprocessable Entity",
                    errors=["The commitOID is not part of the pull request"],
                )
            if data.get("subject_type") != "file":
                problems = self._comment_problems(pull, data)
                if problems:
                    raise GitHubError(422, "Unprocessable Entity", errors=[_english_list(problems)])
        posted = self._review_comment_json(pull, data, None, ctx.api_base)
        pull.review_comments.append(posted)
        return web.json_response(_public(posted), status=201)

    # ================================================================ routes: checks

    def _check_output_problems(self, data: Mapping[str, Any]) -> list[str]:
        problems: list[str] = []
        output = data.get("output")
        if isinstance(output, dict):
            annotations = output.get("annotations") or []
            if len(annotations) > MAX_ANNOTATIONS:
                problems.append(
                    f"Only {MAX_ANNOTATIONS} annotations are allowed per request ({len(annotations)} given)"
                )
            for key in ("summary", "text"):
                value = output.get(key)
                if isinstance(value, str) and len(value) > MAX_OUTPUT_TEXT:
                    problems.append(
                        f"output.{key} is too long (maximum is {MAX_OUTPUT_TEXT} characters)"
                    )
        actions = data.get("actions") or []
        if len(actions) > 3:
            problems.append("A maximum of three actions are accepted")
        if data.get("conclusion") == "stale":
            problems.append("Only GitHub can set the conclusion 'stale'")
        return problems

    def _apply_check_update(self, run: CheckRun, data: Mapping[str, Any]) -> None:
        problems = self._check_output_problems(data)
        conclusion = data.get("conclusion", run.conclusion)
        status = (
            "completed"
            if "conclusion" in data and data["conclusion"] is not None
            else data.get("status", run.status)
        )
        if status == "completed" and conclusion is None:
            problems.append("conclusion is required when status is completed")
        if problems:
            raise GitHubError(
                422,
                "Invalid request.\n\n" + "\n".join(problems),
                documentation_url=f"{DOCS}/checks/runs",
            )
        run.status = str(status)
        run.conclusion = conclusion if status == "completed" else None
        for key in ("name", "details_url", "external_id", "started_at", "completed_at"):
            if key in data:
                setattr(run, key, data[key])
        if run.status == "completed" and run.completed_at is None:
            run.completed_at = _now_iso(self.now())
        if run.status != "queued" and run.started_at is None:
            run.started_at = _now_iso(self.now())
        output = data.get("output")
        if isinstance(output, dict):
            for key in ("title", "summary", "text"):
                if key in output:
                    setattr(run, key, output[key])
            for annotation in output.get("annotations") or []:
                run.annotations.append(dict(annotation))
        if "actions" in data:
            run.actions = [dict(a) for a in data.get("actions") or []]

    @route("POST", "/repos/{owner}/{repo}/check-runs", "checks/create")
    async def _create_check_run(self, ctx: Ctx) -> web.StreamResponse:
        repo = self._repo(ctx)
        data = ctx.json
        if not data.get("name") or not data.get("head_sha"):
            raise validation_failed(
                "CheckRun", "name" if not data.get("name") else "head_sha", "missing_field"
            )
        run = CheckRun(
            id=self._next_id(),
            repo=repo.full_name,
            name=str(data["name"]),
            head_sha=str(data["head_sha"]),
            app_slug=self.app_slug,
            app_id=self.app_id,
        )
        self._apply_check_update(run, {"status": "queued", **data})
        self.check_runs[run.id] = run
        return web.json_response(self._check_run_json(run, ctx.api_base), status=201)

    def _run(self, ctx: Ctx) -> CheckRun:
        repo = self._repo(ctx)
        run = self.check_runs.get(ctx.int_param("check_run_id"))
        if run is None or run.repo != repo.full_name:
            raise not_found()
        return run

    @route("PATCH", "/repos/{owner}/{repo}/check-runs/{check_run_id}", "checks/update")
    async def _update_check_run(self, ctx: Ctx) -> web.StreamResponse:
        run = self._run(ctx)
        if run.app_slug != self.app_slug:
            raise GitHubError(
                403,
                f"Invalid app_id `{self.app_id}` - check run can only be modified by its creator",
            )
        self._apply_check_update(run, ctx.json)
        return web.json_response(self._check_run_json(run, ctx.api_base))

    @route("GET", "/repos/{owner}/{repo}/check-runs/{check_run_id}", "checks/get")
    async def _get_check_run(self, ctx: Ctx) -> web.StreamResponse:
        return web.json_response(self._check_run_json(self._run(ctx), ctx.api_base))

    @route(
        "GET",
        "/repos/{owner}/{repo}/check-runs/{check_run_id}/annotations",
        "checks/list-annotations",
    )
    async def _list_annotations(self, ctx: Ctx) -> web.StreamResponse:
        run = self._run(ctx)
        return self._paginate(ctx, [{**a, "blob_href": ""} for a in run.annotations])

    @route("GET", "/repos/{owner}/{repo}/commits/{ref}/check-runs", "checks/list-for-ref")
    async def _list_check_runs(self, ctx: Ctx) -> web.StreamResponse:
        repo = self._repo(ctx)
        sha = self._resolve_ref(repo, ctx.params["ref"])
        runs = sorted(self.check_runs_for(repo.full_name, sha), key=lambda r: -r.id)
        if ctx.query.get("check_name"):
            runs = [r for r in runs if r.name == ctx.query["check_name"]]
        if ctx.query.get("status"):
            runs = [r for r in runs if r.status == ctx.query["status"]]
        if ctx.query.get("app_id"):
            runs = [r for r in runs if str(r.app_id) == ctx.query["app_id"]]
        if ctx.query.get("filter", "latest") == "latest":
            seen: set[tuple[str, str]] = set()
            latest = []
            for r in runs:
                if (r.name, r.app_slug) not in seen:
                    seen.add((r.name, r.app_slug))
                    latest.append(r)
            runs = latest
        rendered = [self._check_run_json(r, ctx.api_base) for r in runs]
        return self._paginate(
            ctx, rendered, wrap=lambda chunk: {"total_count": len(rendered), "check_runs": chunk}
        )

    # ================================================================ routes: statuses

    @route("GET", "/repos/{owner}/{repo}/commits/{ref}/status", "repos/get-combined-status-for-ref")
    async def _combined_status(self, ctx: Ctx) -> web.StreamResponse:
        repo = self._repo(ctx)
        sha = self._resolve_ref(repo, ctx.params["ref"])
        latest: dict[str, dict[str, Any]] = {}
        for status in repo.statuses.get(sha, []):
            latest[status["context"]] = status
        states = [s["state"] for s in latest.values()]
        if any(s in {"error", "failure"} for s in states):
            combined = "failure"
        elif not states or "pending" in states:
            combined = "pending"
        else:
            combined = "success"
        api, full = ctx.api_base, repo.full_name
        statuses = [
            {
                "url": f"{api}/repos/{full}/statuses/{sha}",
                "avatar_url": None,
                "id": s["id"],
                "node_id": f"SC_{s['id']}",
                "state": s["state"],
                "description": s["description"],
                "target_url": s["target_url"],
                "context": s["context"],
                "created_at": s["created_at"],
                "updated_at": s["updated_at"],
            }
            for s in latest.values()
        ]
        return web.json_response(
            {
                "state": combined,
                "statuses": statuses,
                "sha": sha,
                "total_count": len(statuses),
                "repository": self._repo_json(full, api),
                "commit_url": f"{api}/repos/{full}/commits/{sha}",
                "url": f"{api}/repos/{full}/commits/{sha}/status",
            }
        )

    @route("POST", "/repos/{owner}/{repo}/statuses/{sha}", "repos/create-commit-status")
    async def _create_status(self, ctx: Ctx) -> web.StreamResponse:
        repo = self._repo(ctx)
        data = ctx.json
        if data.get("state") not in {"error", "failure", "pending", "success"}:
            raise validation_failed(
                "Status", "state", "custom", "State is not included in the list"
            )
        self.set_status(
            repo.full_name,
            ctx.params["sha"],
            str(data.get("context") or "default"),
            str(data["state"]),
            description=data.get("description"),
            target_url=data.get("target_url"),
        )
        status = repo.statuses[ctx.params["sha"]][-1]
        return web.json_response(
            {**status, "creator": self._user(self.bot_login, ctx.api_base)}, status=201
        )

    # ================================================================ routes: issues

    def _issue_number(self, ctx: Ctx) -> tuple[Repo, int]:
        repo = self._repo(ctx)
        number = ctx.int_param("issue_number")
        self._issue(repo.full_name, number)
        return repo, number

    @route("GET", "/repos/{owner}/{repo}/issues/{issue_number}/comments", "issues/list-comments")
    async def _list_issue_comments(self, ctx: Ctx) -> web.StreamResponse:
        repo, number = self._issue_number(ctx)
        comments = sorted(self.comments_on(repo.full_name, number), key=lambda c: int(c["id"]))
        return self._paginate(ctx, [self._issue_comment_json(c, ctx.api_base) for c in comments])

    def _check_comment_body(self, body: Any) -> str:
        if not isinstance(body, str) or not body:
            raise validation_failed("IssueComment", "body", "missing_field")
        if len(body) > MAX_BODY:
            raise validation_failed(
                "IssueComment",
                "data",
                "unprocessable",
                f"Body is too long (maximum is {MAX_BODY} characters)",
            )
        return body

    @route("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments", "issues/create-comment")
    async def _create_issue_comment(self, ctx: Ctx) -> web.StreamResponse:
        repo, number = self._issue_number(ctx)
        body = self._check_comment_body(ctx.json.get("body"))
        comment = self.add_issue_comment(repo.full_name, number, body, user=self.bot_login)
        return web.json_response(self._issue_comment_json(comment, ctx.api_base), status=201)

    def _comment(self, ctx: Ctx) -> dict[str, Any]:
        repo = self._repo(ctx)
        comment = self.issue_comments.get(ctx.int_param("comment_id"))
        if comment is None or comment["_repo"] != repo.full_name:
            raise not_found()
        return comment

    @route("GET", "/repos/{owner}/{repo}/issues/comments/{comment_id}", "issues/get-comment")
    async def _get_issue_comment(self, ctx: Ctx) -> web.StreamResponse:
        return web.json_response(self._issue_comment_json(self._comment(ctx), ctx.api_base))

    @route("PATCH", "/repos/{owner}/{repo}/issues/comments/{comment_id}", "issues/update-comment")
    async def _update_issue_comment(self, ctx: Ctx) -> web.StreamResponse:
        comment = self._comment(ctx)
        comment["body"] = self._check_comment_body(ctx.json.get("body"))
        comment["updated_at"] = _now_iso(self.now())
        return web.json_response(self._issue_comment_json(comment, ctx.api_base))

    @route("DELETE", "/repos/{owner}/{repo}/issues/comments/{comment_id}", "issues/delete-comment")
    async def _delete_issue_comment(self, ctx: Ctx) -> web.StreamResponse:
        comment = self._comment(ctx)
        del self.issue_comments[int(comment["id"])]
        return web.Response(status=204)

    @route(
        "POST",
        "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions",
        "reactions/create-for-issue-comment",
    )
    async def _react(self, ctx: Ctx) -> web.StreamResponse:
        comment = self._comment(ctx)
        content = ctx.json.get("content")
        if content not in {"+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"}:
            raise validation_failed("Reaction", "content", "invalid")
        reactions = self.reactions.setdefault(int(comment["id"]), [])
        for reaction in reactions:
            if reaction["content"] == content and reaction["user"]["login"] == self.bot_login:
                return web.json_response(reaction, status=200)
        reaction = {
            "id": self._next_id(),
            "node_id": f"REA_{self._ids}",
            "user": self._user(self.bot_login, ctx.api_base),
            "content": content,
            "created_at": _now_iso(self.now()),
        }
        reactions.append(reaction)
        return web.json_response(reaction, status=201)

    def _labels_of(self, repo: Repo, number: int) -> list[str]:
        if number in repo.pulls:
            return repo.pulls[number].labels
        return repo.issue_labels.setdefault(number, [])

    @route(
        "GET", "/repos/{owner}/{repo}/issues/{issue_number}/labels", "issues/list-labels-on-issue"
    )
    async def _list_labels(self, ctx: Ctx) -> web.StreamResponse:
        repo, number = self._issue_number(ctx)
        labels = self._labels_of(repo, number)
        return self._paginate(
            ctx, [self._label_json(repo.full_name, n, ctx.api_base) for n in labels]
        )

    @route("POST", "/repos/{owner}/{repo}/issues/{issue_number}/labels", "issues/add-labels")
    async def _add_labels(self, ctx: Ctx) -> web.StreamResponse:
        repo, number = self._issue_number(ctx)
        body = ctx.body
        names_raw = body.get("labels") if isinstance(body, dict) else body
        if not isinstance(names_raw, list) or not names_raw:
            raise validation_failed("Label", "labels", "missing_field")
        labels = self._labels_of(repo, number)
        for item in names_raw:
            name = str(item.get("name") if isinstance(item, dict) else item)
            if name not in labels:
                labels.append(name)
        return web.json_response(
            [self._label_json(repo.full_name, n, ctx.api_base) for n in labels]
        )

    @route(
        "DELETE", "/repos/{owner}/{repo}/issues/{issue_number}/labels/{name}", "issues/remove-label"
    )
    async def _remove_label(self, ctx: Ctx) -> web.StreamResponse:
        repo, number = self._issue_number(ctx)
        labels = self._labels_of(repo, number)
        if ctx.params["name"] not in labels:
            raise GitHubError(404, "Label does not exist")
        labels.remove(ctx.params["name"])
        return web.json_response(
            [self._label_json(repo.full_name, n, ctx.api_base) for n in labels]
        )

    # ================================================================ routes: git data
    # The objects live in ``git_data.GitObjects`` (one store per repository); these routes only
    # translate. A commit made here is also recorded where the rest of the fake looks for
    # commits and files, so the contents API, ``GET /commits/{ref}`` and ``files_on`` see it.

    def _git_commit(self, repo: Repo, sha: str) -> GitCommit | None:
        """A commit as a git object: one made through the API, or one the fake was seeded with
        (its tree built from the files seeded at it, each time: a test may set files later)."""
        made = repo.git.commits.get(sha)
        if made is not None:
            return made
        seeded = repo.commits.get(sha)
        if seeded is None:
            return None
        meta = seeded["commit"]
        return GitCommit(
            sha=sha,
            tree=repo.git.tree_from_files(self._files_at(repo, sha)),
            parents=tuple(str(p["sha"]) for p in seeded.get("parents") or ()),
            message=str(meta["message"]),
            author=dict(meta["author"]),
            committer=dict(meta["committer"]),
        )

    def _git_error(self, error: GitDataError, operation: str) -> GitHubError:
        if error.status == 404:
            return GitHubError(404, "Not Found", documentation_url=f"{DOCS}/git/{operation}")
        return GitHubError(error.status, error.message, documentation_url=f"{DOCS}/git/{operation}")

    @route("GET", "/repos/{owner}/{repo}/git/commits/{commit_sha}", "git/get-commit")
    async def _get_git_commit(self, ctx: Ctx) -> web.StreamResponse:
        repo = self._repo(ctx)
        commit = self._git_commit(repo, ctx.params["commit_sha"])
        if commit is None:
            raise not_found()
        return web.json_response(repo.git.commit_json(commit, ctx.api_base, repo.full_name))

    @route("GET", "/repos/{owner}/{repo}/git/trees/{tree_sha}", "git/get-tree")
    async def _get_tree(self, ctx: Ctx) -> web.StreamResponse:
        repo = self._repo(ctx)
        sha = ctx.params["tree_sha"]
        if sha not in repo.git.trees:
            commit = self._git_commit(repo, self._resolve_ref(repo, sha))
            if commit is None:
                raise not_found()
            sha = commit.tree
        body = repo.git.tree_json(
            sha, ctx.api_base, repo.full_name, recursive="recursive" in ctx.query
        )
        return web.json_response(body)

    @route("POST", "/repos/{owner}/{repo}/git/blobs", "git/create-blob")
    async def _create_blob(self, ctx: Ctx) -> web.StreamResponse:
        repo = self._repo(ctx)
        data = ctx.json
        content, encoding = data.get("content"), data.get("encoding", "utf-8")
        if not isinstance(content, str):
            raise validation_failed("Blob", "content", "missing_field")
        if encoding == "base64":
            try:
                raw = base64.b64decode(content, validate=True)
            except ValueError:
                raise GitHubError(422, "Invalid base64 content") from None
        elif encoding in {"utf-8", "utf8"}:
            raw = content.encode("utf-8")
        else:
            raise GitHubError(422, f"encoding must be utf-8 or base64, not {encoding}")
        sha = repo.git.add_blob(raw)
        url = f"{ctx.api_base}/repos/{repo.full_name}/git/blobs/{sha}"
        return web.json_response({"url": url, "sha": sha}, status=201)

    @route("POST", "/repos/{owner}/{repo}/git/trees", "git/create-tree")
    async def _create_tree(self, ctx: Ctx) -> web.StreamResponse:
        repo = self._repo(ctx)
        data = ctx.json
        base = data.get("base_tree")
        try:
            sha = repo.git.create_tree(
                data.get("tree") or [], str(base) if base is not None else None
            )
        except GitDataError as error:
            raise self._git_error(error, "trees#create-a-tree") from None
        body = repo.git.tree_json(sha, ctx.api_base, repo.full_name, recursive=False)
        return web.json_response(body, status=201)

    @route("POST", "/repos/{owner}/{repo}/git/commits", "git/create-commit")
    async def _create_git_commit(self, ctx: Ctx) -> web.StreamResponse:
        repo = self._repo(ctx)
        data = ctx.json
        login = self.bot_login
        try:
            commit = repo.git.create_commit(
                message=str(data.get("message") or ""),
                tree=str(data.get("tree") or ""),
                parents=[str(p) for p in data.get("parents") or []],
                author=data.get("author"),
                committer=data.get("committer"),
                default_person={"name": login, "email": f"{login}@users.noreply.github.com"},
                now=self.now(),
                known_commit=lambda sha: self._git_commit(repo, sha) is not None,
            )
        except GitDataError as error:
            raise self._git_error(error, "commits#create-a-commit") from None
        spec = {"sha": commit.sha, "message": commit.message, "parents": list(commit.parents)}
        repo.commits[commit.sha] = self._commit(repo.full_name, spec, author=login)
        repo.files[commit.sha] = {
            path: raw.decode("utf-8", errors="replace")
            for path, raw in repo.git.files(commit.tree).items()
        }
        body = repo.git.commit_json(commit, ctx.api_base, repo.full_name)
        return web.json_response(body, status=201)

    @route("POST", "/repos/{owner}/{repo}/git/refs", "git/create-ref")
    async def _create_ref(self, ctx: Ctx) -> web.StreamResponse:
        repo = self._repo(ctx)
        data = ctx.json
        ref, sha = str(data.get("ref") or ""), str(data.get("sha") or "")
        if not ref.startswith("refs/") or ref.count("/") < 2:
            raise GitHubError(422, "Reference name is invalid")
        if self._git_commit(repo, sha) is None:
            raise GitHubError(422, "Object does not exist")
        name = ref.removeprefix("refs/heads/")
        if name in repo.branches if ref.startswith("refs/heads/") else ref in repo.tags:
            raise GitHubError(
                422,
                "Reference already exists",
                documentation_url=f"{DOCS}/git/refs#create-a-reference",
            )
        if ref.startswith("refs/heads/"):
            repo.branches[name] = sha
        else:
            repo.tags[ref] = sha
        return web.json_response(ref_json(ref, sha, ctx.api_base, repo.full_name), status=201)

    @route("GET", "/repos/{owner}/{repo}/git/ref/{ref}", "git/get-ref")
    async def _get_ref(self, ctx: Ctx) -> web.StreamResponse:
        repo = self._repo(ctx)
        ref = "refs/" + ctx.params["ref"].strip("/")
        if ref.startswith("refs/heads/"):
            sha = repo.branches.get(ref.removeprefix("refs/heads/"))
        else:
            sha = repo.tags.get(ref)
        if sha is None:
            raise not_found()
        return web.json_response(ref_json(ref, sha, ctx.api_base, repo.full_name))


def _public(record: Mapping[str, Any]) -> dict[str, Any]:
    """A stored object without the fake's private ``_`` keys."""
    return {k: v for k, v in record.items() if not k.startswith("_") or k == "_links"}

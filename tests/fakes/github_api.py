"""``FakeGitHubAPI``: a ``gidgethub.abc.GitHubAPI`` for unit tests of handlers.

Only ``_request`` and ``sleep`` are replaced, so gidgethub's own URL building, headers, error
mapping (``BadRequest``, ``RateLimitExceeded``, ``GitHubBroken``…) and pagination (``getiter``
following ``Link`` headers) all run for real. Each route is keyed by (method, path regex) and
answers with a :class:`FakeResponse`, plain JSON data (200), or a callable that receives the
:class:`FakeRequest` and returns either (it may be async). A request that no route answers fails
the test at once with the method and URL::

    gh = FakeGitHubAPI({
        ("GET", r"/repos/octo/demo/pulls/1"): {"number": 1, "head": {"sha": "abc"}},
        ("POST", r"/repos/octo/demo/issues/1/comments"): FakeResponse(201, {"id": 7}),
    })
    await handler(event, gh)
    assert [r.path for r in gh.requests] == [...]

Paths are matched (``re.fullmatch``) without the base URL's own path (``/api/v3``) and without
the query string; a pattern containing ``\\?`` is matched against ``path?query`` instead.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from gidgethub.abc import GitHubAPI

from .openapi import NO_BODY, OpenAPIValidator, shared_available

#: The installation token a ``FakeGitHubAPI`` sends unless told otherwise.
TEST_TOKEN = "ghs_test"


@dataclass
class FakeRequest:
    """One request gidgethub made."""

    method: str
    url: str
    path: str  # without the base URL's path and without the query
    query: dict[str, str]
    headers: dict[str, str]
    body: Any  # parsed JSON, the raw bytes for other content, or None when empty
    raw: bytes = b""

    def __str__(self) -> str:
        return f"{self.method} {self.url}"


@dataclass
class FakeResponse:
    """What a route answers: status, JSON (or text/bytes) body, headers."""

    status: int = 200
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str | None = None

    @classmethod
    def error(
        cls, status: int, message: str, *, errors: list[Any] | None = None, **headers: str
    ) -> FakeResponse:
        """GitHub's error shape (``message``, optional ``errors``, ``documentation_url``)."""
        body: dict[str, Any] = {"message": message}
        if errors is not None:
            body["errors"] = errors
        body["documentation_url"] = "https://docs.github.com/rest"
        return cls(status, body, {k.replace("_", "-"): v for k, v in headers.items()})

    def encode(self) -> tuple[int, dict[str, str], bytes]:
        headers = {k.lower(): v for k, v in self.headers.items()}
        if self.body is None or self.status == 204:
            payload = b""
        elif isinstance(self.body, bytes):
            payload = self.body
            headers.setdefault("content-type", self.content_type or "application/octet-stream")
        elif isinstance(self.body, str):
            payload = self.body.encode("utf-8")
            headers.setdefault("content-type", self.content_type or "text/plain; charset=utf-8")
        else:
            payload = json.dumps(self.body).encode("utf-8")
            headers.setdefault(
                "content-type", self.content_type or "application/json; charset=utf-8"
            )
        if self.content_type is not None:
            headers["content-type"] = self.content_type
        return self.status, headers, payload


#: A route's callable: ``(request) -> FakeResponse | JSON data``, sync or async.
Responder = Callable[[FakeRequest], Any]
#: What a route holds: a :class:`FakeResponse`, a :data:`Responder`, or JSON data (200).
RouteValue = Any
Routes = Mapping[tuple[str, str], RouteValue]


def pages(url: str, items: Sequence[Any], *, per_page: int = 30) -> Responder:
    """A responder that serves ``items`` page by page with GitHub ``Link`` headers.

    ``url`` is the absolute URL of the list (what gidgethub requested), e.g.
    ``"https://api.github.com/repos/octo/demo/pulls/1/files"``.
    """

    def respond(request: FakeRequest) -> FakeResponse:
        size = int(request.query.get("per_page", per_page))
        page = int(request.query.get("page", "1"))
        last = max(1, -(-len(items) // size))
        chunk = list(items[(page - 1) * size : page * size])
        headers: dict[str, str] = {}
        if page < last:
            query = dict(request.query, page=str(page + 1))
            nxt = f"{url}?{urlencode(query)}"
            headers["link"] = f'<{nxt}>; rel="next", <{url}?page={last}>; rel="last"'
        return FakeResponse(200, chunk, headers)

    return respond


class FakeGitHubAPI(GitHubAPI):
    """A GitHub API client whose transport is a route table (see the module docstring)."""

    def __init__(
        self,
        routes: Routes | None = None,
        *,
        base_url: str = "https://api.github.com",
        oauth_token: str | None = TEST_TOKEN,
        validate: bool = False,
    ) -> None:
        super().__init__("aigateway-tests", oauth_token=oauth_token, base_url=base_url)
        self.routes: list[tuple[str, re.Pattern[str], RouteValue]] = []
        self.requests: list[FakeRequest] = []
        self.sleeps: list[float] = []
        self.violations: list[str] = []
        self._base_path = urlsplit(base_url).path.rstrip("/")
        self._validator = OpenAPIValidator() if validate and shared_available() else None
        for (method, pattern), value in (routes or {}).items():
            self.add(method, pattern, value)

    def add(self, method: str, path_regex: str, response: RouteValue) -> None:
        """Add a route (later routes win over earlier ones for the same request)."""
        self.routes.insert(0, (method.upper(), re.compile(path_regex), response))

    def calls(self, method: str = "*", path_regex: str = "") -> list[FakeRequest]:
        pattern = re.compile(path_regex)
        return [
            r
            for r in self.requests
            if (method == "*" or r.method == method.upper()) and pattern.search(r.path)
        ]

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    async def _request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes = b""
    ) -> tuple[int, Mapping[str, str], bytes]:
        parts = urlsplit(url)
        path = parts.path
        if self._base_path and (path == self._base_path or path.startswith(self._base_path + "/")):
            path = path[len(self._base_path) :] or "/"
        lower = {k.lower(): v for k, v in headers.items()}
        parsed: Any = None
        if body:
            parsed = json.loads(body) if "json" in lower.get("content-type", "") else body
        request = FakeRequest(
            method=method.upper(),
            url=url,
            path=path,
            query=dict(parse_qsl(parts.query, keep_blank_values=True)),
            headers=lower,
            body=parsed,
            raw=body,
        )
        self.requests.append(request)
        if self._validator is not None:
            self.violations += self._validator.validate(
                request.method,
                path,
                request.query,
                NO_BODY if not body else parsed,
                content_type=lower.get("content-type"),
            )
        value = self._route(request)
        if callable(value) and not isinstance(value, FakeResponse):
            value = value(request)
            if inspect.isawaitable(value):
                value = await value
        response = value if isinstance(value, FakeResponse) else FakeResponse(200, value)
        return response.encode()

    def _route(self, request: FakeRequest) -> RouteValue:
        target = f"{request.path}?{urlsplit(request.url).query}"
        for method, pattern, value in self.routes:
            if method not in {request.method, "*"}:
                continue
            subject = target if "\\?" in pattern.pattern else request.path
            if pattern.fullmatch(subject):
                return value
        known = "\n".join(f"  {m} {p.pattern}" for m, p, _ in self.routes) or "  (none)"
        raise AssertionError(
            f"FakeGitHubAPI: unexpected request {request.method} {request.url}\nroutes:\n{known}"
        )

    def assert_no_violations(self) -> None:
        if self.violations:
            raise AssertionError(
                "requests that GitHub's REST description rejects:\n"
                + "\n".join(f"  - {v}" for v in self.violations)
            )

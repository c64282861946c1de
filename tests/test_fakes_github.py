"""The fake GitHub server, the fake gidgethub client and the webhook helpers behave like GitHub."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from gidgethub import BadRequest, GitHubBroken, RateLimitExceeded, ValidationError, apps, sansio
from gidgethub.aiohttp import GitHubAPI

from tests.fakes import webhooks
from tests.fakes.github import FakeGitHub, parse_patch
from tests.fakes.github_api import FakeGitHubAPI, FakeResponse, pages
from tests.fakes.openapi import missing_reason, shared_available

REPO = "octo/demo"
SECRET = "webhook-secret"
DIFF = """\
diff --git a/app.py b/app.py
--- a/app.py
+++ b/app.py
@@ -1,3 +1,4 @@
 import os
-x = 1
+x = 2
+y = 3
 print(x)
@@ -20,2 +21,2 @@ def f():
-    return 1
+    return 2
     # end
"""

ServerFactory = Callable[..., Awaitable[TestServer]]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def needs_shared() -> None:
    if not shared_available():
        pytest.skip(missing_reason())


def client(session: aiohttp.ClientSession, fake: FakeGitHub, **kwargs: Any) -> GitHubAPI:
    return GitHubAPI(session, "aigateway-tests", base_url=fake.url, **kwargs)


async def test_token_flow_with_a_real_app_key(
    rsa_key: tuple[str, str], session: aiohttp.ClientSession
) -> None:
    private, public = rsa_key
    async with FakeGitHub.serve(check_responses=True) as fake:
        fake.set_app_key(public, 1)
        fake.add_repo(REPO)
        fake.add_pull(REPO, 1, diff=DIFF)
        app_client = client(session, fake)
        token = await apps.get_installation_access_token(
            app_client, installation_id="42", app_id="1", private_key=private
        )
        assert token["token"].startswith("ghs_") and token["expires_at"].endswith("Z")
        assert fake.token_requests == {42: 1}
        app = await app_client.getitem("/app", jwt=apps.get_jwt(app_id="1", private_key=private))
        assert app["slug"] == "aigateway"

        with pytest.raises(BadRequest) as wrong_issuer:
            await app_client.getitem("/app", jwt=apps.get_jwt(app_id="2", private_key=private))
        assert wrong_issuer.value.status_code == 401

        gh = client(session, fake, oauth_token=token["token"])
        pull = await gh.getitem(f"/repos/{REPO}/pulls/1")
        assert pull["head"]["sha"] == fake.pull(REPO, 1).head_sha
        fake.expire_tokens()
        with pytest.raises(BadRequest) as expired:
            await gh.getitem(f"/repos/{REPO}/pulls/1")
        assert expired.value.status_code == 401
        fake.assert_no_violations()
        fake.assert_no_unexpected()
        assert not fake.response_problems


@pytest.mark.parametrize("prefix", ["", "/api/v3"])
async def test_pagination_across_three_pages_and_the_diff(
    aiohttp_server: ServerFactory, session: aiohttp.ClientSession, prefix: str
) -> None:
    fake = FakeGitHub(prefix=prefix)
    fake.attach(await aiohttp_server(fake.app))
    fake.add_repo(REPO)
    files = [{"filename": f"src/f{i}.py", "patch": "@@ -0,0 +1 @@\n+x"} for i in range(250)]
    fake.add_pull(REPO, 7, files=files)
    gh = client(session, fake, oauth_token=fake.issue_token())

    listed = [f async for f in gh.getiter(f"/repos/{REPO}/pulls/7/files?per_page=100")]

    assert [f["filename"] for f in listed] == [f["filename"] for f in files]
    pages_seen = [r.query.get("page", "1") for r in fake.calls("GET", r"/pulls/7/files$")]
    assert pages_seen == ["1", "2", "3"]
    assert all(r.path.startswith("/repos/") for r in fake.requests)
    diff = await gh.getitem(f"/repos/{REPO}/pulls/7", accept="application/vnd.github.diff")
    assert isinstance(diff, str) and diff.count("diff --git") == 250
    fake.assert_no_violations()


async def test_review_comment_outside_the_diff_is_422(session: aiohttp.ClientSession) -> None:
    async with FakeGitHub.serve() as fake:
        fake.add_repo(REPO)
        pull = fake.add_pull(REPO, 1, diff=DIFF)
        gh = client(session, fake, oauth_token=fake.issue_token())
        url = f"/repos/{REPO}/pulls/1/reviews"
        ok = {"path": "app.py", "line": 3, "start_line": 2, "side": "RIGHT", "body": "nit"}
        review = await gh.post(
            url,
            data={"commit_id": pull.head_sha, "event": "COMMENT", "body": "b", "comments": [ok]},
        )
        assert review["state"] == "COMMENTED"

        outside = {"path": "app.py", "line": 10, "side": "RIGHT", "body": "not in a hunk"}
        with pytest.raises(ValidationError) as rejected:
            await gh.post(url, data={"event": "COMMENT", "body": "b", "comments": [outside]})
        assert "must be part of the diff" in str(rejected.value)
        comments = await gh.getitem(f"/repos/{REPO}/pulls/1/comments")
        assert [(c["path"], c["line"]) for c in comments] == [("app.py", 3)]
        fake.assert_no_violations()


def test_patch_line_map() -> None:
    lines = parse_patch("@@ -1,3 +1,4 @@\n import os\n-x = 1\n+x = 2\n+y = 3\n print(x)")
    assert lines.hunks[0].right == {1, 2, 3, 4} and lines.hunks[0].left == {1, 2, 3}
    assert lines.hunk_of(5, "RIGHT") is None


async def test_merge_is_pinned_to_the_head_sha(session: aiohttp.ClientSession) -> None:
    async with FakeGitHub.serve() as fake:
        fake.add_repo(REPO, allow_merge_commit=False)
        old = fake.add_pull(REPO, 1, diff=DIFF).head_sha
        fake.move_head(REPO, 1, "b" * 40)
        gh = client(session, fake, oauth_token=fake.issue_token())
        merge = f"/repos/{REPO}/pulls/1/merge"
        with pytest.raises(BadRequest) as moved:
            await gh.put(merge, data={"sha": old, "merge_method": "squash"})
        assert moved.value.status_code == 409
        with pytest.raises(BadRequest) as not_allowed:
            await gh.put(merge, data={"sha": "b" * 40, "merge_method": "merge"})
        assert not_allowed.value.status_code == 405
        done = await gh.put(merge, data={"sha": "b" * 40, "merge_method": "squash"})
        assert done["merged"] is True and fake.pull(REPO, 1).state == "closed"


async def test_validator_catches_a_bad_check_run(session: aiohttp.ClientSession) -> None:
    needs_shared()
    async with FakeGitHub.serve() as fake:
        fake.add_repo(REPO)
        gh = client(session, fake, oauth_token=fake.issue_token())
        run = await gh.post(
            f"/repos/{REPO}/check-runs",
            data={"name": "aigateway", "head_sha": "a" * 40, "status": "in_progress"},
        )
        fake.assert_no_violations()
        await gh.patch(
            f"/repos/{REPO}/check-runs/{run['id']}",
            data={"conclusion": "bogus", "output": {"title": "t", "summary": "s"}},
        )
        assert "'bogus' is not one of" in str(fake.violations[0])
        with pytest.raises(AssertionError, match="checks/update"):
            fake.assert_no_violations()


async def test_responses_match_githubs_response_schemas(session: aiohttp.ClientSession) -> None:
    needs_shared()
    async with FakeGitHub.serve(prefix="/api/v3", check_responses=True) as fake:
        fake.add_repo(REPO)
        fake.set_file(REPO, ".github/aigateway.yml", "version: 1\n")
        head = fake.add_pull(REPO, 1, diff=DIFF).head_sha
        fake.set_status(REPO, head, "ci/build", "pending")
        fake.set_branch(REPO, "codex/x", "d" * 40)
        fake.set_compare(REPO, "main", "codex/x", diff=DIFF)
        comment = fake.add_issue_comment(REPO, 1, "/aigateway review", user="alice")
        gh = client(session, fake, oauth_token=fake.issue_token())
        base = f"/repos/{REPO}"
        for path in ("/pulls/1", "/pulls/1/files", "/pulls/1/commits", f"/commits/{head}/status",
                     "/contents/.github/aigateway.yml", "/collaborators/alice/permission",
                     "/compare/main...codex/x"):  # fmt: skip
            await gh.getitem(base + path)
        run = await gh.post(base + "/check-runs", data={"name": "aigateway", "head_sha": head})
        await gh.patch(f"{base}/check-runs/{run['id']}", data={"conclusion": "success"})
        await gh.getitem(f"{base}/commits/{head}/check-runs")
        review = {
            "event": "COMMENT",
            "body": "b",
            "comments": [{"path": "app.py", "line": 2, "body": "c"}],
        }
        await gh.post(base + "/pulls/1/reviews", data=review)
        await gh.getitem(base + "/pulls/1/reviews")
        await gh.getitem(base + "/pulls/1/comments")
        await gh.post(base + "/issues/1/comments", data={"body": "hello"})
        await gh.getitem(base + "/issues/1/comments")
        await gh.post(f"{base}/issues/comments/{comment['id']}/reactions", data={"content": "eyes"})
        await gh.post(base + "/issues/1/labels", data={"labels": ["aigateway: needs human"]})
        await gh.post(base + "/pulls/1/requested_reviewers", data={"reviewers": ["alice"]})
        await gh.post(base + "/pulls", data={"title": "t", "head": "codex/x", "base": "main"})
        await gh.put(base + "/pulls/1/merge", data={"sha": head, "merge_method": "squash"})
        fake.assert_no_violations()
        assert [str(p) for p in fake.response_problems] == []
        assert not fake.unexpected


async def test_faults_rate_limits_and_unexpected_routes(session: aiohttp.ClientSession) -> None:
    async with FakeGitHub.serve(validate=False) as fake:
        fake.add_repo(REPO)
        fake.add_pull(REPO, 1, diff=DIFF)
        gh = client(session, fake, oauth_token=fake.issue_token())
        fake.fail_next("GET", r"/pulls/1$", 502)
        with pytest.raises(GitHubBroken):
            await gh.getitem(f"/repos/{REPO}/pulls/1")
        fake.rate_limit_next("GET", r"/pulls/1$")
        with pytest.raises(RateLimitExceeded):
            await gh.getitem(f"/repos/{REPO}/pulls/1")
        fake.rate_limit_next("GET", r"/pulls/1$", secondary=True, retry_after=7)
        with pytest.raises(BadRequest) as secondary:
            await gh.getitem(f"/repos/{REPO}/pulls/1")
        assert secondary.value.headers["retry-after"] == "7"
        assert (await gh.getitem(f"/repos/{REPO}/pulls/1"))["number"] == 1
        with pytest.raises(BadRequest):
            await gh.getitem(f"/repos/{REPO}/no-such-thing")
        assert [r.path for r in fake.unexpected] == [f"/repos/{REPO}/no-such-thing"]


async def test_fake_gidgethub_client_routes_and_pagination() -> None:
    url = "https://api.github.com/repos/octo/demo/pulls/1/files"
    gh = FakeGitHubAPI(
        {
            ("GET", r"/repos/octo/demo/pulls/1/files"): pages(url, list(range(5)), per_page=2),
            ("POST", r"/repos/octo/demo/issues/1/comments"): FakeResponse(201, {"id": 9}),
            ("GET", r"/repos/octo/demo/pulls/2"): FakeResponse.error(404, "Not Found"),
        }
    )
    assert [n async for n in gh.getiter("/repos/octo/demo/pulls/1/files")] == [0, 1, 2, 3, 4]
    assert await gh.post("/repos/octo/demo/issues/1/comments", data={"body": "hi"}) == {"id": 9}
    assert gh.calls("POST")[0].body == {"body": "hi"}
    with pytest.raises(BadRequest):
        await gh.getitem("/repos/octo/demo/pulls/2")
    with pytest.raises(AssertionError, match=r"unexpected request GET https://api\.github\.com/x"):
        await gh.getitem("/x")
    await gh.sleep(3)
    assert gh.sleeps == [3] and len(gh.calls("GET", "files")) == 3


def _fixture_files() -> list[Path]:
    root = webhooks.WEBHOOKS_DIR
    return sorted(p for p in root.glob("*/*.json") if p.parent.name != "schema")


def test_every_fixture_payload_is_a_valid_signed_delivery() -> None:
    if not webhooks.webhooks_available():
        pytest.skip(webhooks.missing_reason())
    fixtures = list(webhooks.iter_fixture_payloads())
    assert [f.path for f in fixtures] == _fixture_files()
    form = [f for f in fixtures if f.content_type == webhooks.FORM_CONTENT_TYPE]
    assert len(form) == sum("form-encoded" in p.name for p in _fixture_files()) > 0
    for fixture in fixtures:
        assert fixture.event == fixture.path.parent.name
        if fixture.content_type == webhooks.FORM_CONTENT_TYPE:
            data = json.loads(parse_qs(fixture.body.decode("ascii"))["payload"][0])
        else:
            data = json.loads(fixture.body)
        headers = {k.lower(): v for k, v in fixture.headers(SECRET).items()}
        event = sansio.Event.from_http(headers, fixture.body, secret=SECRET)
        assert event.data == data and event.event == fixture.event
        assert fixture.action == data.get("action")


@pytest.mark.parametrize("form", [False, True])
def test_payload_factories_round_trip(form: bool) -> None:
    payload = webhooks.pull_request_payload("synchronize", number=3, labels=["x"])
    headers, body = webhooks.signed_delivery("pull_request", payload, SECRET, form=form)
    lower = {k.lower(): v for k, v in headers.items()}
    event = sansio.Event.from_http(lower, body, secret=SECRET)
    assert event.data["installation"] == {
        "id": 42,
        "node_id": event.data["installation"]["node_id"],
    }
    assert event.data["pull_request"]["number"] == 3 and event.data["after"] == payload["after"]
    assert headers["X-Hub-Signature-256"] == webhooks.sign(body, SECRET)
    for factory in (
        webhooks.push_payload,
        webhooks.issue_comment_payload,
        webhooks.check_run_payload,
        webhooks.check_suite_payload,
        webhooks.status_payload,
    ):
        made = factory()
        assert made["repository"]["full_name"] == REPO and made["installation"]["id"] == 42

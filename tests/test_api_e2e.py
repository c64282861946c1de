"""End to end: the service API's model endpoints and reports, against the real app, a fake
GitHub and a fake gateway; every answer checked against the OpenAPI document the server serves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped,unused-ignore]
from openapi_spec_validator import validate as validate_openapi
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from app.quota import CallOutcome, QuotaLedger
from app.server import SERVICES
from app.services import Services
from tests.api_env import ApiEnv, start_api
from tests.conftest import SettingsFactory
from tests.fakes.gateway import Text
from tests.harness import ClientFactory, ServerFactory

PROMPT_MARKER = "prompt-body-that-must-not-be-audited"
CONTEXT_MARKER = "context-body-that-must-not-be-audited"


@pytest.fixture
def db_url(sqlite_url: str) -> str:
    """SQLite only: these are end-to-end runs; the ledger and the feedback registry are tested
    on both databases in their own modules."""
    return sqlite_url


@pytest.fixture
def api_settings() -> dict[str, Any]:
    return {}


@pytest.fixture
async def api(
    aiohttp_client: ClientFactory,
    aiohttp_server: ServerFactory,
    make_settings: SettingsFactory,
    rsa_key: tuple[str, str],
    tmp_path: Path,
    api_settings: dict[str, Any],
) -> ApiEnv:
    env = await start_api(
        aiohttp_client, aiohttp_server, make_settings, rsa_key, tmp_path, **api_settings
    )
    env.github.set_file("octo/demo", "README.md", "# demo\n")
    return env


class OpenApi:
    """The served document, and a check that an answer matches what it says of the answer."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        resource = Resource.from_contents(document, default_specification=DRAFT202012)
        self._registry: Registry[Any] = Registry().with_resource("urn:aigateway:openapi", resource)

    def check(self, method: str, path: str, status: int, body: Any) -> None:
        operation = self.document["paths"][path][method.lower()]
        schema = operation["responses"][str(status)]["content"]["application/json"]["schema"]
        ref = {"$ref": "urn:aigateway:openapi" + schema["$ref"]}
        Draft202012Validator(ref, registry=self._registry).validate(body)


async def _openapi(api: ApiEnv) -> OpenApi:
    response = await api.client.get("/v1/openapi.json")  # public: no token
    assert response.status == 200
    return OpenApi(await response.json())


def _services(api: ApiEnv) -> Services:
    services: Services = api.client.app[SERVICES]
    return services


def _repo_writes(api: ApiEnv) -> list[Any]:
    """Every write to a repository (an installation token's exchange is not one)."""
    return [r for r in api.github.writes() if r.path.startswith("/repos/")]


def _model_requests(api: ApiEnv) -> list[Any]:
    return [r for r in api.gateway.requests if r.provider]


# ---------------------------------------------------------------------------------- analyze


async def test_analyze_asks_one_model_and_records_it_against_the_budget(api: ApiEnv) -> None:
    spec = await _openapi(api)
    api.gateway.openai.push(Text("The function leaks a file handle."))
    response = await api.client.post(
        "/v1/ai/analyze",
        json={
            "prompt": f"Find the bug. {PROMPT_MARKER}",
            "context": f"def f(): open('x')  # {CONTEXT_MARKER}",
            "provider": "openai",
        },
        headers=api.oidc(),  # no source_repository: the token's own, octo/demo
    )
    assert response.status == 200, await response.text()
    body = await response.json()
    spec.check("POST", "/v1/ai/analyze", 200, body)
    assert body["answer"] == "The function leaks a file handle."
    assert (body["repository"], body["provider"], body["model"]) == (
        "octo/demo",
        "openai",
        "gpt-5-mini",
    )
    assert body["input_tokens"] > 0 and body["output_tokens"] > 0
    assert body["cost_usd"] > 0 and body["log_id"]

    [sent] = _model_requests(api)
    assert sent.provider == "openai"
    assert sent.metadata["purpose"] == "api-analyze"
    assert sent.metadata["repository"] == "octo/demo"
    assert "<<<DATA " in sent.prompt and CONTEXT_MARKER in sent.prompt

    [row] = await QuotaLedger(_services(api).db).entries("octo/demo")
    assert row.outcome is CallOutcome.OK and (row.delivery_id or "").startswith("api:")
    assert row.cost_usd == pytest.approx(body["cost_usd"]) and row.log_id == body["log_id"]
    assert row.reservation_id is not None

    [event] = [e for e in api.audit() if e["endpoint"] == "analyze"]
    assert event["caller"] == "oidc:repo:octo/demo:ref:refs/heads/main"
    assert event["caller_repository"] == "octo/demo" and event["repository"] == "octo/demo"
    assert event["status"] == 200 and event["outcome"] == "ok"
    assert event["cost_usd"] == pytest.approx(body["cost_usd"])
    audit_text = api.audit_path.read_text()
    assert PROMPT_MARKER not in audit_text and CONTEXT_MARKER not in audit_text


@pytest.mark.parametrize("api_settings", [{"quota_daily_default_usd": 0.0}])
async def test_analyze_over_budget_is_402_and_sends_nothing(api: ApiEnv) -> None:
    spec = await _openapi(api)
    response = await api.client.post(
        "/v1/ai/analyze",
        json={"prompt": "Anything?", "source_repository": "octo/demo"},
        headers=api.bearer(),
    )
    assert response.status == 402
    body = await response.json()
    spec.check("POST", "/v1/ai/analyze", 402, body)
    assert body["error"] == "budget_exhausted"
    assert "daily budget" in body["message"]
    assert _model_requests(api) == []
    [row] = await QuotaLedger(_services(api).db).entries("octo/demo")
    assert row.outcome is CallOutcome.REFUSED and row.cost_usd == 0.0
    [event] = [e for e in api.audit() if e["endpoint"] == "analyze"]
    assert (event["status"], event["outcome"]) == (402, "budget_exhausted")


async def test_a_request_that_does_not_validate_names_the_field_not_its_value(
    api: ApiEnv,
) -> None:
    spec = await _openapi(api)
    response = await api.client.post(
        "/v1/ai/analyze",
        json={"prompt": PROMPT_MARKER, "provider": "llama", "source_repository": "octo/demo"},
        headers=api.bearer(),
    )
    assert response.status == 422
    body = await response.json()
    spec.check("POST", "/v1/ai/analyze", 422, body)
    assert "provider" in body["message"] and PROMPT_MARKER not in body["message"]
    response = await api.client.post("/v1/ai/analyze", data=b"{not json", headers=api.bearer())
    assert response.status == 400


# ---------------------------------------------------------------------------------- review

DIFF = """\
diff --git a/src/app/core.py b/src/app/core.py
--- a/src/app/core.py
+++ b/src/app/core.py
@@ -1,2 +1,3 @@
 def run():
+    retry()
     return 1
"""


async def test_review_of_a_diff_gives_reviews_consensus_risk_and_a_recommendation(
    api: ApiEnv,
) -> None:
    spec = await _openapi(api)
    api.gateway.anthropic.set_review(verdict="approve", confidence=0.97, findings=[])
    api.gateway.openai.set_review(verdict="approve", confidence=0.96, findings=[])
    response = await api.client.post(
        "/v1/ai/review",
        json={"diff": DIFF, "source_repository": "octo/demo", "title": "Retry once"},
        headers=api.bearer(),
    )
    assert response.status == 200, await response.text()
    body = await response.json()
    spec.check("POST", "/v1/ai/review", 200, body)
    assert [(r["reviewer"], r["provider"], r["verdict"]) for r in body["reviews"]] == [
        ("Claude", "anthropic", "approve"),
        ("GPT", "openai", "approve"),
    ]
    assert all(r["log_ids"] and r["cost_usd"] > 0 for r in body["reviews"])
    assert body["confidence"] == pytest.approx(0.96)
    assert body["risk"]["tier"] == "medium"
    assert body["recommendation"]["action"] == "auto_merge"
    assert body["recommendation"]["reason"].startswith(
        "medium risk at confidence 0.96: the matrix gives auto_merge"
    )
    assert "shadow_mode" in [g["guard"] for g in body["recommendation"]["guards"]]
    assert body["posted"] is False and body["not_reviewed"] == []
    assert _repo_writes(api) == []
    metadata = [r.metadata for r in _model_requests(api)]
    assert [m["purpose"] for m in metadata] == ["api-review", "api-review"]


async def test_changed_paths_outside_the_diff_raise_the_risk_and_cap_the_action(
    api: ApiEnv,
) -> None:
    api.gateway.anthropic.set_review(verdict="approve", confidence=0.99, findings=[])
    api.gateway.openai.set_review(verdict="approve", confidence=0.99, findings=[])
    response = await api.client.post(
        "/v1/ai/review",
        json={
            "diff": DIFF,
            "changed_paths": ["src/app/core.py", ".github/workflows/deploy.yml"],
            "source_repository": "octo/demo",
        },
        headers=api.bearer(),
    )
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["risk"]["tier"] == "critical"
    assert {p["path"]: p["tier"] for p in body["risk"]["paths"]} == {
        "src/app/core.py": "medium",
        ".github/workflows/deploy.yml": "critical",
    }
    assert body["recommendation"]["action"] == "escalate"
    assert body["not_reviewed"] == [
        {
            "path": ".github/workflows/deploy.yml",
            "reason": "in changed_paths but not in the diff sent",
        }
    ]
    assert ".github/workflows/deploy.yml" not in "".join(r.prompt for r in _model_requests(api))


async def test_review_of_a_pull_request_posts_only_when_asked(api: ApiEnv) -> None:
    spec = await _openapi(api)
    api.github.add_pull(
        "octo/demo",
        7,
        files=[
            {"filename": "docs/guide.md", "status": "modified", "patch": "@@ -1 +1,2 @@\n a\n+b"}
        ],
    )
    response = await api.client.post("/v1/ai/review", json={"pull_number": 7}, headers=api.oidc())
    assert response.status == 200, await response.text()
    body = await response.json()
    assert (body["pull_number"], body["posted"], body["risk"]["tier"]) == (7, False, "low")
    assert _repo_writes(api) == []

    response = await api.client.post(
        "/v1/ai/review", json={"pull_number": 7, "post": True}, headers=api.oidc()
    )
    assert response.status == 200, await response.text()
    body = await response.json()
    spec.check("POST", "/v1/ai/review", 200, body)
    assert body["posted"] is True and body["check_run_id"] is not None
    assert api.github.calls("POST", r"/pulls/7/reviews$")
    assert api.github.check_runs_for("octo/demo")

    # The App's review registered the change: the feedback endpoints see it.
    changes = await api.client.get(
        "/v1/ai/changes", params={"repo": "octo/demo"}, headers=api.oidc()
    )
    assert changes.status == 200
    listed = await changes.json()
    spec.check("GET", "/v1/ai/changes", 200, listed)
    assert [(c["pr_number"], c["outcome"]) for c in listed["changes"]] == [(7, "open")]
    report = await api.client.get(
        "/v1/ai/feedback/report", params={"repo": "octo/demo"}, headers=api.oidc()
    )
    assert report.status == 200
    data = await report.json()
    spec.check("GET", "/v1/ai/feedback/report", 200, data)
    assert data["totals"]["changes"] == 1
    api.github.assert_no_violations()
    api.github.assert_no_unexpected()


async def test_a_pull_request_the_app_cannot_see_is_an_error_not_a_guess(api: ApiEnv) -> None:
    response = await api.client.post(
        "/v1/ai/review",
        json={"pull_number": 404, "source_repository": "octo/demo"},
        headers=api.bearer(),
    )
    assert response.status == 404
    response = await api.client.post(
        "/v1/ai/review",
        json={"pull_number": 1, "source_repository": "octo/other"},  # allowlisted, not installed
        headers=api.bearer(),
    )
    assert response.status == 422
    assert (await response.json())["error"] == "not_installed"


# ---------------------------------------------------------------------------------- reports


async def test_quota_and_health(api: ApiEnv) -> None:
    spec = await _openapi(api)
    api.gateway.anthropic.push(Text("ok"))
    await api.client.post(
        "/v1/ai/analyze",
        json={"prompt": "hi", "source_repository": "octo/demo"},
        headers=api.bearer(),
    )
    response = await api.client.get(
        "/v1/ai/quota", params={"repo": "octo/demo"}, headers=api.oidc()
    )
    assert response.status == 200
    quota = await response.json()
    spec.check("GET", "/v1/ai/quota", 200, quota)
    assert [b["kind"] for b in quota["budgets"]] == ["daily", "weekly"]
    assert quota["budgets"][0]["spent_usd"] > 0 and quota["remaining_usd"] is None
    assert "Spend for octo/demo" in quota["report"]

    response = await api.client.get("/v1/ai/health", headers=api.oidc())
    health = await response.json()
    spec.check("GET", "/v1/ai/health", 200, health)
    assert health["components"]["gateway:anthropic"]["calls"] == 1
    assert (health["jobs_running"], health["jobs_max"]) == (0, 10)


# ---------------------------------------------------------------------------------- the document


async def test_the_openapi_document_is_valid_and_covers_every_route(api: ApiEnv) -> None:
    spec = await _openapi(api)
    validate_openapi(spec.document)
    served = {
        (route.method, route.resource.canonical)
        for route in api.client.app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith("/v1/")
        and route.method != "HEAD"
    }
    documented = {
        (method.upper(), path)
        for path, operations in spec.document["paths"].items()
        for method in operations
    }
    assert served == documented
    response = await api.client.get("/v1/ai/health")
    spec.check("GET", "/v1/ai/health", 401, await response.json())

"""The dashboard over HTTP: who gets in and what each viewer sees, the figures' JSON against the
seeded ledger, the filters' errors (no browser: see test_dashboard_browser.py for the page)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp.test_utils import TestClient

from app.dashboard.oauth import GitHubOAuth, OAuthError
from app.dashboard.views import DASHBOARD
from app.ledger.reconcile import Correction, Reconciliation
from app.ledger.store import LedgerReconcileStore
from app.quota import QuotaLedger
from app.server import create_app
from app.settings import SettingsError
from tests.conftest import OPERATOR_HEADERS, OPERATOR_TOKEN, SettingsFactory
from tests.dashboard_env import (
    CLIENT_ID,
    CLIENT_SECRET,
    OURS,
    THEIRS,
    USER,
    ClientFactory,
    DashboardEnv,
    ServerFactory,
    start_dashboard,
)

FIGURES = ("spend", "reviews", "escalations", "failed-actions", "outcomes", "calibration")


@pytest.fixture
async def env(
    aiohttp_client: ClientFactory,
    aiohttp_server: ServerFactory,
    make_settings: SettingsFactory,
    db_url: str,
) -> DashboardEnv:
    return await start_dashboard(aiohttp_client, aiohttp_server, make_settings, db_url)


async def github_sign_in(env: DashboardEnv) -> None:
    """The OAuth web flow as a browser follows it: the app, the fake GitHub, the callback."""
    client = env.client
    start = await client.get("/dashboard/login/github", allow_redirects=False)
    assert start.status == 302
    authorize = start.headers["Location"]
    assert authorize.startswith(env.github.web_url + "/login/oauth/authorize?")
    approved = await client.session.get(authorize, allow_redirects=False)
    assert approved.status == 302
    back = urlsplit(approved.headers["Location"])
    done = await client.get(f"{back.path}?{back.query}", allow_redirects=False)
    assert done.status == 303, await done.text()
    assert done.headers["Location"] == "/dashboard"


async def operator_sign_in(client: TestClient[Any, Any], token: str = OPERATOR_TOKEN) -> int:
    page = await client.get("/dashboard/login")
    form_token = re.search(r'name=form_token value="([^"]+)"', await page.text())
    assert form_token is not None
    response = await client.post(
        "/dashboard/login",
        data={"form_token": form_token.group(1), "token": token},
        allow_redirects=False,
    )
    return response.status


def ledger_total(entries: list[Any], repository: str) -> float:
    return round(
        sum(e.cost_usd or 0.0 for e in entries if e.repository == repository and e.cost_usd), 6
    )


# ---------------------------------------------------------------------------- access control


async def test_no_login_redirects_to_the_login_page(env: DashboardEnv) -> None:
    response = await env.client.get("/dashboard", allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == "/dashboard/login"
    api = await env.client.get("/dashboard/api/spend")
    assert api.status == 401
    assert THEIRS not in await api.text()


@pytest.mark.parametrize(
    "authorization", ["Bearer not-the-operator-token", f"Bearer {OPERATOR_TOKEN}x", "Basic x"]
)
async def test_a_bad_token_is_401(env: DashboardEnv, authorization: str) -> None:
    for figure in FIGURES:
        response = await env.client.get(
            f"/dashboard/api/{figure}", headers={"Authorization": authorization}
        )
        assert response.status == 401, figure
        assert "octo/" not in await response.text()
    assert await operator_sign_in(env.client, "not-the-operator-token") == 401
    assert (await env.client.get("/dashboard", allow_redirects=False)).status == 302


async def test_the_operator_token_sees_every_repository(env: DashboardEnv) -> None:
    response = await env.client.get("/dashboard/api/spend", headers=OPERATOR_HEADERS)
    assert response.status == 200
    names = [r["repository"] for r in (await response.json())["repositories"]]
    assert names == sorted([*OURS, THEIRS])
    assert await operator_sign_in(env.client) == 303
    page = await env.client.get("/dashboard")
    assert page.status == 200
    assert THEIRS in await page.text()


async def test_a_github_user_never_sees_another_organisations_repository(
    env: DashboardEnv,
) -> None:
    await github_sign_in(env)
    page = await env.client.get("/dashboard")
    assert page.status == 200
    html = await page.text()
    assert f">{USER}<" in html
    assert "octo/demo" in html
    assert THEIRS not in html and "rival" not in html
    for figure in FIGURES:
        body = await (await env.client.get(f"/dashboard/api/{figure}")).text()
        assert "rival" not in body, figure
    escalations = await (await env.client.get("/dashboard/api/escalations")).json()
    assert [(e["repository"], e["pr_number"]) for e in escalations["escalations"]] == [
        ("octo/demo", 3)
    ]
    # Asking for it by name does not help, and says nothing of whether it exists.
    asked = await env.client.get("/dashboard/api/spend", params={"repo": THEIRS})
    assert asked.status == 404
    assert "9.99" not in await asked.text()
    # The user's token was used: against the fake GitHub's user endpoints.
    assert env.github.calls("GET", r"^/user/installations$")


async def test_losing_access_on_github_ends_the_session(env: DashboardEnv) -> None:
    await github_sign_in(env)
    env.github.revoke_user_tokens(USER)
    # The access cached at sign-in lasts minutes; a test moves on by forgetting it.
    state = env.client.app[DASHBOARD]
    assert state.access is not None
    state.access.forget_all()
    response = await env.client.get("/dashboard", allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == "/dashboard/login"


async def test_the_oauth_state_must_match_and_works_once(env: DashboardEnv) -> None:
    client = env.client
    start = await client.get("/dashboard/login/github", allow_redirects=False)
    approved = await client.session.get(start.headers["Location"], allow_redirects=False)
    back = urlsplit(approved.headers["Location"])
    query = parse_qs(back.query)
    forged = await client.get(
        "/dashboard/callback", params={"code": query["code"][0], "state": "forged"}
    )
    assert forged.status == 400
    # The forged attempt cleared the login cookie: the genuine callback cannot be replayed now.
    replay = await client.get(f"{back.path}?{back.query}", allow_redirects=False)
    assert replay.status == 400
    assert (await client.get("/dashboard", allow_redirects=False)).status == 302
    # No code was exchanged with GitHub for either.
    assert not env.github.calls("POST", "/login/oauth/access_token")


async def test_logout_needs_the_csrf_token(env: DashboardEnv) -> None:
    assert await operator_sign_in(env.client) == 303
    page = await (await env.client.get("/dashboard")).text()
    csrf = re.search(r'name=csrf value="([^"]+)"', page)
    assert csrf is not None
    refused = await env.client.post(
        "/dashboard/logout", data={"csrf": "wrong"}, allow_redirects=False
    )
    assert refused.status == 403
    assert (await env.client.get("/dashboard", allow_redirects=False)).status == 200
    done = await env.client.post(
        "/dashboard/logout", data={"csrf": csrf.group(1)}, allow_redirects=False
    )
    assert done.status == 303
    assert (await env.client.get("/dashboard", allow_redirects=False)).status == 302


async def test_the_login_form_needs_its_form_token(env: DashboardEnv) -> None:
    response = await env.client.post(
        "/dashboard/login", data={"token": OPERATOR_TOKEN}, allow_redirects=False
    )
    assert response.status == 403
    assert (await env.client.get("/dashboard", allow_redirects=False)).status == 302


async def test_cookies_are_httponly_lax_and_scoped(env: DashboardEnv) -> None:
    page = await env.client.get("/dashboard/login")
    form_token = re.search(r'name=form_token value="([^"]+)"', await page.text())
    assert form_token is not None
    response = await env.client.post(
        "/dashboard/login",
        data={"form_token": form_token.group(1), "token": OPERATOR_TOKEN},
        allow_redirects=False,
    )
    cookie = response.cookies["aigw_session"]
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/dashboard"
    assert OPERATOR_TOKEN not in cookie.value
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


# ---------------------------------------------------------------------------- the figures


async def test_spend_per_day_equals_the_ledger_with_budgets(env: DashboardEnv) -> None:
    body = await (await env.client.get("/dashboard/api/spend", headers=OPERATOR_HEADERS)).json()
    entries = await QuotaLedger(env.db).entries(limit=1000)
    by_name = {r["repository"]: r for r in body["repositories"]}
    for repository, per_day in env.seeded.per_day.items():
        assert by_name[repository]["total_usd"] == pytest.approx(ledger_total(entries, repository))
        for day, cost in per_day.items():
            assert by_name[repository]["per_day"][body["days"].index(day.isoformat())] == (
                pytest.approx(cost)
            )
    demo = by_name["octo/demo"]
    assert demo["budget"]["daily_usd"] == 1.0 and demo["budget"]["weekly_usd"] == 5.0
    assert demo["days_over_daily_budget"] == 1
    assert demo["calls"] == 4  # the refused call cost nothing and is not counted
    assert by_name["octo/site"]["budget"] is None


async def test_spend_shows_the_gateways_own_cost_beside_the_estimate(env: DashboardEnv) -> None:
    entries = await QuotaLedger(env.db).entries("octo/demo", limit=1000)
    row = next(e for e in entries if e.cost_usd)
    assert row.cost_usd is not None
    correction = Correction(
        ledger_id=row.id,
        cost_usd=row.cost_usd + 0.25,  # the pricing table was stale: the gateway billed more
        input_tokens=1,
        output_tokens=1,
        cached=False,
        estimated_usd=row.cost_usd,
    )
    now = datetime.now(UTC)
    await LedgerReconcileStore(env.db).apply(
        Reconciliation(corrections=(correction,), discrepancies=(), matched=()),
        started_at=now,
        since=now - timedelta(days=1),
        until=now,
        logs_seen=1,
    )
    body = await (await env.client.get("/dashboard/api/spend", headers=OPERATOR_HEADERS)).json()
    demo = next(r for r in body["repositories"] if r["repository"] == "octo/demo")
    assert demo["total_usd"] == pytest.approx(ledger_total(entries, "octo/demo"))
    assert demo["reconciled_usd"] == pytest.approx(demo["total_usd"] + 0.25)
    assert demo["reconciled_calls"] == 1
    assert body["reconciled_usd"] == pytest.approx(body["total_usd"] + 0.25)
    assert await operator_sign_in(env.client) == 303
    page = await (await env.client.get("/dashboard")).text()
    assert f'id=spend-reconciled data-usd="{body["reconciled_usd"]}"' in page
    assert f"1 of {demo['calls']}" in page


async def test_reviews_outcomes_and_calibration(env: DashboardEnv) -> None:
    get = env.client.get
    reviews = (await (await get("/dashboard/api/reviews", headers=OPERATOR_HEADERS)).json())[
        "reviews"
    ]
    first = next(r for r in reviews if r["pr_number"] == 1)
    assert (first["decision"], first["tier"], first["confidence"], first["cost_usd"]) == (
        "auto_merge",
        "low",
        0.95,
        0.1734,
    )
    assert first["url"] == f"{env.github.web_url}/octo/demo/pull/1"
    outcomes = await (
        await get("/dashboard/api/outcomes", params={"repo": "octo/demo"}, headers=OPERATOR_HEADERS)
    ).json()
    rows = {(r["tier"], r["decision"]): r for r in outcomes["rows"]}
    assert rows[("low", "auto_merge")]["outcomes"] == {"clean": 1}
    assert rows[("medium", "auto_merge")]["outcomes"] == {"reverted": 1}
    assert rows[("high", "escalate")]["outcomes"] == {"open": 1}
    calibration = await (await get("/dashboard/api/calibration", headers=OPERATOR_HEADERS)).json()
    settled = {(b["low"], b["high"]): (b["settled"], b["bad"]) for b in calibration["buckets"]}
    assert settled[(0.9, 0.95)] == (1, 1) and settled[(0.95, 1.0)] == (1, 0)
    assert calibration["brier"] == pytest.approx(((0.95 - 1) ** 2 + 0.9**2) / 2)
    failed = await (await get("/dashboard/api/failed-actions", headers=OPERATOR_HEADERS)).json()
    assert sorted(a["repository"] for a in failed["failed_actions"]) == ["octo/demo", THEIRS]
    assert failed["failed_actions"][0]["last_error"] == "GitHub answered 502"


async def test_filters_narrow_the_figures(env: DashboardEnv) -> None:
    today = env.seeded.today
    yesterday = today.fromordinal(today.toordinal() - 1).isoformat()
    body = await (
        await env.client.get(
            "/dashboard/api/spend",
            params={"repo": "octo/demo", "since": yesterday, "until": yesterday},
            headers=OPERATOR_HEADERS,
        )
    ).json()
    assert body["days"] == [yesterday]
    assert [(r["repository"], r["per_day"]) for r in body["repositories"]] == [("octo/demo", [0.2])]
    assert body["filters"] == {
        "repositories": ["octo/demo"],
        "since": yesterday,
        "until": yesterday,
    }


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"since": "2026-13-01"}, "since must be a date as YYYY-MM-DD"),
        ({"until": "yesterday"}, "until must be a date as YYYY-MM-DD"),
        ({"since": "2026-05-02", "until": "2026-05-01"}, "is after until"),
        ({"since": "2024-01-01", "until": "2026-01-01"}, "more than 366 days"),
        ({"repo": "not a repo"}, "repo must name a repository as owner/name"),
        ({"colour": "blue"}, "unknown filter 'colour'"),
    ],
)
async def test_bad_filters_are_400_with_a_clear_message(
    env: DashboardEnv, params: dict[str, str], message: str
) -> None:
    response = await env.client.get("/dashboard/api/spend", params=params, headers=OPERATOR_HEADERS)
    assert response.status == 400
    assert message in (await response.json())["error"]
    assert await operator_sign_in(env.client) == 303
    page = await env.client.get("/dashboard", params=params)
    assert page.status == 400
    assert message.split("'")[0] in await page.text()


async def test_an_unknown_figure_is_404(env: DashboardEnv) -> None:
    response = await env.client.get("/dashboard/api/nothing", headers=OPERATOR_HEADERS)
    assert response.status == 404
    assert "spend" in (await response.json())["error"]


async def test_github_unreachable_is_503_not_a_crash(env: DashboardEnv) -> None:
    await github_sign_in(env)
    state = env.client.app[DASHBOARD]
    assert state.access is not None
    state.access.forget_all()
    env.github.fail_next("GET", r"^/user$", 502, times=10)
    response = await env.client.get("/dashboard", allow_redirects=False)
    assert response.status == 503
    assert "GitHub unreachable" in await response.text()


def test_the_github_web_base_follows_the_api_url(make_settings: SettingsFactory) -> None:
    assert make_settings(github_api_url="https://api.github.com").github_web == (
        "https://github.com"
    )
    enterprise = make_settings(github_api_url="https://ghe.example.com/api/v3")
    assert enterprise.github_web == "https://ghe.example.com"
    assert make_settings(github_web_url="https://web.example/").github_web == "https://web.example"


def test_half_an_oauth_configuration_is_refused(make_settings: SettingsFactory) -> None:
    with pytest.raises(SettingsError, match="GITHUB_CLIENT_ID and GITHUB_CLIENT_SECRET"):
        create_app(make_settings(github_client_id="Iv1.x"), run_workers=False)
    with pytest.raises(SettingsError, match="at least 32 characters"):
        create_app(make_settings(dashboard_session_secret="short"), run_workers=False)


def test_no_way_to_sign_in_means_no_dashboard(make_settings: SettingsFactory) -> None:
    app = create_app(make_settings(operator_token=None), run_workers=False)
    assert not any(
        r.resource is not None and r.resource.canonical.startswith("/dashboard")
        for r in app.router.routes()
    )


async def test_a_sign_in_code_works_once_and_only_with_the_apps_secret(env: DashboardEnv) -> None:
    client = env.client
    start = await client.get("/dashboard/login/github", allow_redirects=False)
    approved = await client.session.get(start.headers["Location"], allow_redirects=False)
    code = parse_qs(urlsplit(approved.headers["Location"]).query)["code"][0]
    redirect = str(client.make_url("/dashboard/callback"))
    wrong = GitHubOAuth(
        client.session,
        web_url=env.github.web_url,
        api_url=env.github.url,
        client_id=CLIENT_ID,
        client_secret="not-the-secret",
    )
    with pytest.raises(OAuthError, match="refused"):
        await wrong.exchange(code, redirect_uri=redirect)
    right = GitHubOAuth(
        client.session,
        web_url=env.github.web_url,
        api_url=env.github.url,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
    )
    token = await right.exchange(code, redirect_uri=redirect)
    access = await right.access(token)
    assert access.login == USER and access.repositories == frozenset(OURS)
    with pytest.raises(OAuthError, match="incorrect or expired"):
        await right.exchange(code, redirect_uri=redirect)
    # No request to the API carried the client secret (only the web host's token exchange).
    assert not any(CLIENT_SECRET in r.text for r in env.github.requests)

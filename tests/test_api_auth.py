"""The service API's door: static token and GitHub Actions OIDC tokens from a local issuer,
the repository allowlist and the owner rule, and the settings a server refuses to start with."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import jwt
import pytest

from app.api.config import MIN_API_TOKEN_LENGTH
from app.server import create_app
from app.settings import SettingsError
from tests.api_env import API_TOKEN, AUDIENCE, ApiEnv, Issuer, rsa_key_pair, start_api
from tests.conftest import SettingsFactory
from tests.harness import ClientFactory, ServerFactory


@pytest.fixture
def db_url(sqlite_url: str) -> str:
    """SQLite only: nothing here touches the database beyond the app's start."""
    return sqlite_url


@pytest.fixture
async def api(
    aiohttp_client: ClientFactory,
    aiohttp_server: ServerFactory,
    make_settings: SettingsFactory,
    rsa_key: tuple[str, str],
    tmp_path: Path,
) -> ApiEnv:
    return await start_api(aiohttp_client, aiohttp_server, make_settings, rsa_key, tmp_path)


async def _changes(api: ApiEnv, headers: dict[str, str], repo: str = "octo/demo") -> Any:
    return await api.client.get("/v1/ai/changes", params={"repo": repo}, headers=headers)


# ---------------------------------------------------------------------------------- tokens


async def test_static_token_gets_in_and_anything_else_is_401(api: ApiEnv) -> None:
    assert (await api.client.get("/v1/ai/health", headers=api.bearer())).status == 200
    for headers in (
        {},
        {"Authorization": f"Basic {API_TOKEN}"},
        {"Authorization": "Bearer"},
        api.bearer(API_TOKEN + "x"),
        api.bearer("not.a.jwt"),
    ):
        response = await api.client.get("/v1/ai/health", headers=headers)
        assert response.status == 401, headers
        assert response.headers["WWW-Authenticate"].startswith('Bearer realm="aigateway"')
        assert (await response.json())["error"] == "unauthenticated"


async def test_a_good_oidc_token_gets_in(api: ApiEnv) -> None:
    response = await _changes(api, api.oidc())
    assert response.status == 200, await response.text()
    assert await response.json() == {"repository": "octo/demo", "changes": []}


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"audience": "https://github.com/octo"}, "another audience"),
        ({"expires_in": -3600}, "expired"),
        ({"issuer": "https://token.actions.githubusercontent.com"}, "another issuer"),
        ({"key": "other"}, "signature does not verify"),
        ({"kid": "not-a-key-of-the-issuer"}, "not one of the issuer's keys"),
        ({"repository": "octo/demo", "owner": "acme"}, "not under its repository_owner"),
    ],
)
async def test_a_token_that_does_not_verify_is_401(
    api: ApiEnv, claims: dict[str, Any], reason: str
) -> None:
    if claims.get("key") == "other":
        claims["key"] = rsa_key_pair("not the issuer's")
    response = await _changes(api, api.oidc(**claims))
    assert response.status == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert reason in (await response.json())["message"]


async def test_unsigned_and_hmac_tokens_are_refused_before_any_key(api: ApiEnv) -> None:
    claims = {"iss": api.issuer.url, "aud": AUDIENCE, "sub": "x", "repository": "octo/demo"}
    for token in (
        jwt.encode(claims, "", algorithm="none"),
        jwt.encode(claims, "a-shared-secret-of-32-bytes-long!", algorithm="HS256"),
    ):
        response = await _changes(api, api.bearer(token))
        assert response.status == 401
        assert "not signed with RS256" in (await response.json())["message"]
    assert api.issuer.requests == []


async def test_keys_are_fetched_from_the_issuer_once_and_cached(api: ApiEnv) -> None:
    for _ in range(3):
        assert (await _changes(api, api.oidc())).status == 200
    assert api.issuer.requests == ["/.well-known/openid-configuration", "/.well-known/jwks"]


async def test_an_unknown_kid_does_not_refetch_keys_within_a_minute(api: ApiEnv) -> None:
    assert (await _changes(api, api.oidc())).status == 200
    for n in range(3):
        assert (await _changes(api, api.oidc(kid=f"made-up-{n}"))).status == 401
    assert len(api.issuer.requests) == 2


async def test_keys_are_never_fetched_off_the_issuer(
    aiohttp_client: ClientFactory,
    aiohttp_server: ServerFactory,
    make_settings: SettingsFactory,
    rsa_key: tuple[str, str],
    tmp_path: Path,
) -> None:
    issuer = Issuer(jwks_uri="http://127.0.0.2:9/.well-known/jwks")
    api = await start_api(
        aiohttp_client, aiohttp_server, make_settings, rsa_key, tmp_path, issuer=issuer
    )
    response = await _changes(api, api.oidc())
    assert response.status == 503
    body = await response.json()
    assert body["error"] == "oidc_unavailable"
    assert "not on the issuer's own host" in body["message"]
    assert response.headers["Retry-After"] == "30"


# ---------------------------------------------------------------------------------- authorisation


async def test_a_repository_outside_the_allowlist_is_403(api: ApiEnv) -> None:
    for headers in (api.bearer(), api.oidc(repository="octo/demo")):
        response = await _changes(api, headers, repo="octo/secret")
        assert response.status == 403
        assert "not among the repositories" in (await response.json())["message"]


async def test_an_oidc_token_never_acts_on_another_owner(api: ApiEnv) -> None:
    # acme/* is allowlisted, but a token of octo's workflows cannot name acme's repositories.
    response = await _changes(api, api.oidc(repository="octo/demo"), repo="acme/tools")
    assert response.status == 403
    assert "owner differs" in (await response.json())["message"]
    # The static token may (the operator's own credential); acme's own token too.
    assert (await _changes(api, api.bearer(), repo="acme/tools")).status == 200
    assert (await _changes(api, api.oidc(repository="acme/ci"), repo="acme/tools")).status == 200


async def test_tokens_never_reach_a_log_line_or_the_audit(
    api: ApiEnv, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    good, expired = api.issuer.mint(), api.issuer.mint(expires_in=-3600)
    for token in (good, expired, API_TOKEN):
        await _changes(api, api.bearer(token))
    text = "\n".join(f"{r.getMessage()} {vars(r)}" for r in caplog.records)
    audit = api.audit_path.read_text()
    for token in (good, expired, API_TOKEN):
        assert token not in text
        assert token not in audit
        assert token.split(".")[-1] not in audit
    outcomes = [(e.get("caller"), e["status"], e["outcome"]) for e in api.audit()]
    assert outcomes == [
        ("oidc:repo:octo/demo:ref:refs/heads/main", 200, "ok"),
        (None, 401, "unauthenticated"),
        ("static-token", 200, "ok"),
    ]


# ---------------------------------------------------------------------------------- settings


def test_the_api_is_off_by_default(make_settings: SettingsFactory) -> None:
    settings = make_settings()
    assert not settings.api_enabled
    app = create_app(settings, run_workers=False)
    assert not [r for r in app.router.resources() if r.canonical.startswith("/v1")]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"api_token": "t" * (MIN_API_TOKEN_LENGTH - 1)}, "API_TOKEN must be at least 32"),
        ({"api_oidc_issuer": "https://token.actions.githubusercontent.com"}, "go together"),
        ({"api_oidc_audience": "aigateway"}, "go together"),
        (
            {"api_oidc_issuer": "http://issuer.example", "api_oidc_audience": "aig"},
            "plain http",
        ),
        ({"api_allowed_repositories": ()}, "API_ALLOWED_REPOSITORIES is empty"),
        ({"api_allowed_repositories": ("octo",)}, "is not owner/name or owner/*"),
        ({"api_agent_env": ("GITHUB_WEBHOOK_SECRET",)}, "must not pass GITHUB_WEBHOOK_SECRET"),
        ({"api_agent_sandboxes": ()}, "API_AGENT_SANDBOXES"),
    ],
)
def test_the_server_refuses_to_start_with_an_unsafe_api(
    make_settings: SettingsFactory, overrides: dict[str, Any], message: str
) -> None:
    values: dict[str, Any] = {"api_token": API_TOKEN, "api_allowed_repositories": ("octo/demo",)}
    values.update(overrides)
    settings = make_settings(**values)
    with pytest.raises(SettingsError, match=message):
        create_app(settings, run_workers=False)


def test_an_agent_variable_holding_a_server_secret_is_refused(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENT_KEY", API_TOKEN)
    settings = make_settings(
        api_token=API_TOKEN, api_allowed_repositories=("octo/demo",), api_agent_env=("AGENT_KEY",)
    )
    with pytest.raises(SettingsError, match="holds one of the server's secrets"):
        settings.check_for_server()

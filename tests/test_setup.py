"""``python -m app setup`` (the App manifest flow), ``serve`` without credentials, ``doctor``.

End to end: the real commands run as subprocesses against the fake GitHub (its web form target
and ``/app-manifests/{code}/conversions``) and the fake gateway; the setup page is clicked
through in headless Chromium. The page's refusals (stale code, replayed or foreign state,
existing settings) are driven over HTTP against the same fake.
"""

from __future__ import annotations

import asyncio
import html
import json
import os
import re
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
import yaml
from dotenv import dotenv_values

from app.settings import Settings
from app.setup.conversion import AppCredentials
from app.setup.envfile import EnvFileError, write_credentials
from app.setup.manifest import (
    GITHUB_COM_API,
    ManifestError,
    api_url_for,
    build_manifest,
    create_app_url,
    default_app_yml,
    load_app_yml,
)
from app.setup.page import SetupOptions, SetupOutcome, StateBook, make_app
from tests.browser import chromium_binary, chromium_page
from tests.fakes.gateway import FakeGateway
from tests.fakes.github import FakeGitHub

ROOT = Path(__file__).resolve().parents[1]
PUBLIC_URL = "https://bot.example.com"
_OWN_PREFIXES = ("GITHUB_", "CF_", "AIG_", "ANTHROPIC_", "OPENAI_", "DATABASE_URL")


def cli_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OWN_PREFIXES)}
    env.update(extra)
    env["PYTHONPATH"] = str(ROOT)
    return env


async def run_cli(*args: str, env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app",
        *args,
        env=cli_env(env),
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --------------------------------------------------------------------------- the manifest


def test_manifest_is_app_yml_with_this_servers_addresses() -> None:
    app_yml = load_app_yml(default_app_yml())
    manifest = build_manifest(
        app_yml, public_url=PUBLIC_URL + "/", redirect_url="http://127.0.0.1:3000/callback"
    )
    assert manifest["hook_attributes"]["url"] == "https://bot.example.com/webhook"
    assert manifest["redirect_url"] == "http://127.0.0.1:3000/callback"
    assert manifest["public"] is False
    assert manifest["name"] == app_yml["name"]
    assert manifest["default_events"] == app_yml["default_events"]
    assert manifest["default_permissions"] == app_yml["default_permissions"]
    assert (
        build_manifest(app_yml, public_url=PUBLIC_URL, redirect_url="x", name="mine")["name"]
        == "mine"
    )
    with pytest.raises(ManifestError, match="https"):
        build_manifest(app_yml, public_url="http://bot.example.com", redirect_url="x")
    with pytest.raises(ManifestError, match="url"):
        build_manifest({"name": "x"}, public_url=PUBLIC_URL, redirect_url="x")


def test_github_urls_for_github_com_and_enterprise_server() -> None:
    assert create_app_url("https://github.com", "s1") == (
        "https://github.com/settings/apps/new?state=s1"
    )
    assert create_app_url("https://ghe.corp", "s 2", org="acme") == (
        "https://ghe.corp/organizations/acme/settings/apps/new?state=s+2"
    )
    assert api_url_for("https://github.com") == GITHUB_COM_API
    assert api_url_for("https://ghe.corp/") == "https://ghe.corp/api/v3"
    assert api_url_for("https://github.com", "https://api.other/") == "https://api.other"
    with pytest.raises(ManifestError, match="https"):
        api_url_for("http://ghe.corp")  # the key would cross the network in clear


# --------------------------------------------------------------------------- the files


def _creds(**overrides: Any) -> AppCredentials:
    values: dict[str, Any] = {
        "id": 77,
        "slug": "my-bot",
        "name": "My bot",
        "html_url": "https://github.com/apps/my-bot",
        "pem": "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
        "webhook_secret": 'se"cr et#1',
        "client_id": "Iv1.abc",
        "client_secret": "cs",
    }
    values.update(overrides)
    return AppCredentials(**values)


def test_env_file_keeps_other_lines_and_refuses_to_overwrite(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("DATABASE_URL=sqlite+aiosqlite:///x.db\nGITHUB_PRIVATE_KEY=old\n")
    with pytest.raises(EnvFileError, match=r"GITHUB_PRIVATE_KEY in .*--force"):
        write_credentials(env, _creds(), api_url=GITHUB_COM_API, force=False, environ={})
    written = write_credentials(env, _creds(), api_url=GITHUB_COM_API, force=True, environ={})
    values = dotenv_values(env)
    assert values["DATABASE_URL"] == "sqlite+aiosqlite:///x.db"
    assert "GITHUB_PRIVATE_KEY" not in values  # it would win over the new key's path
    assert values["GITHUB_APP_ID"] == "77"
    assert values["GITHUB_WEBHOOK_SECRET"] == 'se"cr et#1'
    assert values["GITHUB_CLIENT_ID"] == "Iv1.abc" and values["GITHUB_CLIENT_SECRET"] == "cs"
    assert values["GITHUB_PRIVATE_KEY_PATH"] == str(written.key_path)
    assert "GITHUB_API_URL" not in values
    assert written.key_path.read_text() == _creds().pem
    assert mode(env) == 0o600 and mode(written.key_path) == 0o600
    settings = Settings(_env_file=env)
    assert settings.webhook_secret() == 'se"cr et#1'
    assert settings.private_key_pem() == _creds().pem
    # A second registration over the first needs --force too; the key file alone is enough.
    env.unlink()
    with pytest.raises(EnvFileError, match=r"private-key\.pem"):
        write_credentials(env, _creds(), api_url=GITHUB_COM_API, force=False, environ={})


def test_written_settings_name_what_the_environment_overrides(tmp_path: Path) -> None:
    written = write_credentials(
        tmp_path / ".env",
        _creds(),
        api_url="https://ghe.corp/api/v3",
        force=False,
        environ={"GITHUB_APP_ID": "5"},
    )
    assert written.shadowed == ("GITHUB_APP_ID",)
    assert dotenv_values(tmp_path / ".env")["GITHUB_API_URL"] == "https://ghe.corp/api/v3"


# --------------------------------------------------------------------------- the page over HTTP


@pytest.fixture
async def github() -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub.serve() as fake:
        yield fake


@pytest.fixture
async def setup_page(
    github: FakeGitHub, tmp_path: Path, aiohttp_server: Any
) -> tuple[str, SetupOptions, SetupOutcome]:
    options = SetupOptions(
        github_url=github.url,
        api_url=github.url,
        public_url=PUBLIC_URL,
        env_path=tmp_path / ".env",
        app_yml=yaml.safe_load((ROOT / "app.yml").read_text()),
    )
    outcome = SetupOutcome()
    server = await aiohttp_server(make_app(options, outcome, StateBook()))
    return str(server.make_url("")).rstrip("/"), options, outcome


async def _post_manifest(session: aiohttp.ClientSession, page_url: str) -> str:
    """What the browser does: load the page, submit its form; the callback URL GitHub sends."""
    async with session.get(page_url + "/") as response:
        page = await response.text()
    action = re.search(r"action='([^']+)'", page)
    manifest = re.search(r"name='manifest' value='([^']+)'", page)
    assert action and manifest
    async with session.post(
        html.unescape(action.group(1)),
        data={"manifest": html.unescape(manifest.group(1))},
        allow_redirects=False,
    ) as response:
        assert response.status == 302, await response.text()
        return response.headers["Location"]


async def test_the_code_is_exchanged_once_and_the_state_used_once(
    github: FakeGitHub, setup_page: tuple[str, SetupOptions, SetupOutcome]
) -> None:
    page_url, options, outcome = setup_page
    async with aiohttp.ClientSession() as session:
        callback = await _post_manifest(session, page_url)
        assert callback.startswith(page_url + "/callback?")
        async with session.get(callback) as response:
            assert response.status == 200
            assert "is registered" in await response.text()
        assert outcome.done.is_set() and outcome.creds is not None
        first_env = options.env_path.read_text()
        # The same redirect again (a reload, or someone else replaying it): refused at the state.
        async with session.get(callback) as response:
            assert response.status == 400
            assert "already used" in await response.text()
        # A state this page never issued, with a fresh code: refused, the code is not used.
        fresh = await _post_manifest(session, page_url)
        code = parse_qs(urlsplit(fresh).query)["code"][0]
        async with session.get(f"{page_url}/callback?code={code}&state=forged") as response:
            assert response.status == 400
            assert "not issued by this setup page" in await response.text()
    assert len(github.manifest_flow.conversions) == 1  # only the first code reached GitHub
    assert options.env_path.read_text() == first_env


async def test_a_stale_code_gets_a_clear_page_and_nothing_is_written(
    github: FakeGitHub, setup_page: tuple[str, SetupOptions, SetupOutcome]
) -> None:
    page_url, options, outcome = setup_page
    async with aiohttp.ClientSession() as session:
        callback = await _post_manifest(session, page_url)
        issued = github.now()
        github.now = lambda: issued + 3601  # an hour and a second later
        async with session.get(callback) as response:
            assert response.status == 410
            text = await response.text()
    assert "more than an hour old" in text and "Start again" in text
    assert github.manifest_flow.conversions  # GitHub was asked, and said 404
    assert not options.env_path.exists() and not outcome.done.is_set()


async def test_when_github_fails_the_same_redirect_can_be_tried_again(
    github: FakeGitHub, setup_page: tuple[str, SetupOptions, SetupOutcome]
) -> None:
    page_url, options, outcome = setup_page
    github.fail_next("POST", r"^/app-manifests/", 502)
    async with aiohttp.ClientSession() as session:
        callback = await _post_manifest(session, page_url)
        async with session.get(callback) as response:
            assert response.status == 502
            assert "HTTP 502" in await response.text()
        assert not options.env_path.exists()
        async with session.get(callback) as response:  # a reload: the code was never used
            assert response.status == 200
    assert outcome.creds is not None and options.env_path.exists()


async def test_existing_settings_are_not_overwritten_and_the_code_is_kept(
    github: FakeGitHub, setup_page: tuple[str, SetupOptions, SetupOutcome]
) -> None:
    page_url, options, _outcome = setup_page
    async with aiohttp.ClientSession() as session:
        callback = await _post_manifest(session, page_url)
        options.env_path.write_text("GITHUB_APP_ID=1\n")
        async with session.get(callback) as response:
            assert response.status == 409
            assert "--force" in await response.text()
    assert github.manifest_flow.conversions == []
    assert options.env_path.read_text() == "GITHUB_APP_ID=1\n"


async def test_the_fake_refuses_a_manifest_github_would_refuse(github: FakeGitHub) -> None:
    async with aiohttp.ClientSession() as session:
        bad = json.dumps({"name": "x", "hook_attributes": {}, "redirect_url": "http://a/"})
        async with session.post(
            github.url + "/settings/apps/new", data={"manifest": bad}, allow_redirects=False
        ) as response:
            assert response.status == 422
    assert any("hook_attributes.url" in p for p in github.manifest_flow.problems[0])


# --------------------------------------------------------------------------- serve, setup errors


async def test_serve_without_credentials_points_to_setup(tmp_path: Path) -> None:
    status, _out, err = await run_cli("serve", env={}, cwd=tmp_path)
    assert status == 2
    assert "python -m app setup" in err
    assert len(err.strip().splitlines()) == 1
    status, _out, err = await run_cli("serve", env={"GITHUB_APP_ID": "3"}, cwd=tmp_path)
    assert status == 2
    assert "missing required settings: GITHUB_WEBHOOK_SECRET, GITHUB_PRIVATE_KEY" in err
    status, out, _err = await run_cli("doctor", "--dry", env={}, cwd=tmp_path)
    assert status == 1
    assert re.search(r"^FAIL +App credentials +no GitHub App is configured", out, re.M), out
    assert "fix: run `python -m app setup`" in out


async def test_setup_refuses_before_serving_when_settings_exist(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("GITHUB_WEBHOOK_SECRET=x\n")
    status, _out, err = await run_cli("setup", "--url", PUBLIC_URL, env={}, cwd=tmp_path)
    assert status == 2 and "--force" in err and "GITHUB_WEBHOOK_SECRET" in err
    status, _out, err = await run_cli("setup", env={}, cwd=tmp_path)
    assert status == 2 and "--url PUBLIC_URL is required" in err


# --------------------------------------------------------------------------- end to end


@pytest.mark.skipif(
    chromium_binary() is None, reason="no chromium binary (apt-get install chromium)"
)
async def test_setup_in_a_browser_then_doctor(tmp_path: Path, db_url: str) -> None:
    """GHES-style fake (API under /api/v3), an organization, a click: then doctor passes."""
    work = tmp_path / "deploy"
    work.mkdir()
    async with FakeGitHub.serve(prefix="/api/v3") as github, FakeGateway() as gateway:
        web_base = github.url.removesuffix("/api/v3")
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "app",
            "setup",
            "--url",
            PUBLIC_URL,
            "--github-url",
            web_base,
            "--org",
            "acme",
            "--port",
            "0",
            env=cli_env({}),
            cwd=work,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            assert proc.stdout is not None
            first = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
            page_url = re.search(r"Open (\S+) in a browser", first)
            assert page_url, first
            binary = chromium_binary()
            assert binary is not None
            async with chromium_page(binary) as page:
                await page.navigate(page_url.group(1))
                await page.wait_for("document.getElementById('create') !== null")
                await page.evaluate("document.getElementById('create').click()")
                await page.wait_for("document.getElementById('created') !== null")
                assert "is registered" in await page.text()
                install = await page.evaluate("document.getElementById('install').href")
                rest, _ = await asyncio.wait_for(proc.communicate(), 60)
                await page.evaluate("document.getElementById('install').click()")
                await page.wait_for("document.getElementById('install-page') !== null")
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert proc.returncode == 0
        [registered] = github.manifest_flow.registered
        assert registered.owner == "org:acme"
        assert registered.manifest["hook_attributes"]["url"] == PUBLIC_URL + "/webhook"
        assert registered.manifest["public"] is False
        [issued] = github.manifest_flow.issued
        assert install == f"{web_base}/apps/{issued['slug']}/installations/new"
        output = first + rest.decode()
        assert install in output and "python -m app doctor" in output
        for secret in (issued["pem"], issued["webhook_secret"], issued["client_secret"]):
            assert secret not in output  # never printed
        env_file, key_file = work / ".env", work / "github-app.private-key.pem"
        values = dotenv_values(env_file)
        assert values["GITHUB_APP_ID"] == str(issued["id"])
        assert values["GITHUB_WEBHOOK_SECRET"] == issued["webhook_secret"]
        assert values["GITHUB_CLIENT_SECRET"] == issued["client_secret"]
        assert values["GITHUB_API_URL"] == github.url  # derived: {host}/api/v3
        assert Path(values["GITHUB_PRIVATE_KEY_PATH"] or "") == key_file
        assert key_file.read_text() == issued["pem"]
        assert mode(env_file) == 0o600 and mode(key_file) == 0o600

        # doctor with what setup wrote (read from .env), the fake gateway and the database.
        good = {"AIG_GATEWAY_URL": gateway.url, "DATABASE_URL": db_url}
        status, out, err = await run_cli("doctor", env=good, cwd=work)
        assert status == 0, out + err
        assert re.search(r"^ok +GitHub accepts the key +GET .*/app as App", out, re.M), out
        assert re.search(r"^ok +gateway anthropic", out, re.M), out
        assert re.search(r"^ok +gateway openai", out, re.M), out
        assert re.search(r"^ok +database +migrated to revision", out, re.M), out
        assert {r.provider for r in gateway.requests} == {"anthropic", "openai"}
        assert issued["webhook_secret"] not in out

        # One broken setting: another App's id. Its check fails with a fix; the rest pass.
        status, out, _err = await run_cli(
            "doctor", "--dry", env={**good, "GITHUB_APP_ID": "999"}, cwd=work
        )
        assert status == 1
        assert re.search(r"^FAIL +GitHub accepts the key +GET .*/app answered 401", out, re.M)
        assert "fix: GITHUB_APP_ID and the key must belong to the same App" in out
        assert re.search(r"^ok +webhook secret", out, re.M)
        assert re.search(r"^ok +gateway openai .*not called: --dry", out, re.M)
        assert len(gateway.requests) == 2  # --dry called nothing


async def test_doctor_reports_a_gateway_that_refuses_its_token(
    tmp_path: Path, db_url: str, rsa_key: tuple[str, str]
) -> None:
    async with FakeGitHub.serve() as github, FakeGateway(token="right-token") as gateway:
        github.set_app_key(rsa_key[1], 7)
        key = tmp_path / "key.pem"
        key.write_text(rsa_key[0])
        env = {
            "GITHUB_APP_ID": "7",
            "GITHUB_PRIVATE_KEY_PATH": str(key),
            "GITHUB_WEBHOOK_SECRET": "a-long-enough-webhook-secret",
            "GITHUB_API_URL": github.url,
            "AIG_GATEWAY_URL": gateway.url,
            "CF_AIG_TOKEN": "wrong-token",
            "DATABASE_URL": db_url,
        }
        status, out, _err = await run_cli("doctor", env=env, cwd=tmp_path)
    assert status == 1
    assert re.search(r"^ok +GitHub accepts the key", out, re.M), out
    assert re.search(r"^FAIL +gateway anthropic +\S+: http 401", out, re.M), out
    assert "fix: the gateway or provider refused the credentials: check CF_AIG_TOKEN" in out
    assert "wrong-token" not in out
    assert "2 of 6 checks failed" in out

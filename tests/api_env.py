"""The service API under test: the real app, a fake GitHub, a fake gateway and a local OIDC issuer.

Everything is real HTTP over loopback. The issuer is a small aiohttp app serving a discovery
document and a JWKS for keys the test holds, so tokens are minted here and verified by the
server exactly as GitHub's would be.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from aiohttp import web
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from app.server import create_app
from app.settings import Settings
from tests.fakes.gateway import FakeGateway
from tests.fakes.github import FakeGitHub
from tests.harness import ClientFactory, ServerFactory

__all__ = [
    "API_TOKEN",
    "AUDIENCE",
    "REPO",
    "ApiEnv",
    "Issuer",
    "rsa_key_pair",
    "start_api",
    "wait_job",
]

API_TOKEN = "api-token-for-tests-0123456789abcdef"  # 36 characters
AUDIENCE = "aigateway-tests"
GATEWAY_TOKEN = "cf-gateway-token-api-0123456789"
REPO = "octo/demo"


@functools.cache
def rsa_key_pair(name: str) -> rsa.RSAPrivateKey:
    """One 2048-bit key per name for the whole run: generating one takes a noticeable moment."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class Issuer:
    """A GitHub-Actions-like OIDC issuer: discovery, JWKS, and tokens minted on demand."""

    key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa_key_pair("issuer"))
    kid: str = "test-key-1"
    url: str = ""
    jwks_uri: str | None = None  # None: the issuer's own
    requests: list[str] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        app.router.add_get("/.well-known/jwks", self._jwks)
        return app

    async def start(self, aiohttp_server: ServerFactory) -> str:
        server = await aiohttp_server(self.app())
        self.url = f"http://{server.host}:{server.port}"
        return self.url

    async def _discovery(self, request: web.Request) -> web.Response:
        self.requests.append(request.path)
        return web.json_response(
            {"issuer": self.url, "jwks_uri": self.jwks_uri or f"{self.url}/.well-known/jwks"}
        )

    async def _jwks(self, request: web.Request) -> web.Response:
        self.requests.append(request.path)
        jwk = RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        jwk.update(kid=self.kid, alg="RS256", use="sig")
        return web.json_response({"keys": [jwk]})

    def mint(
        self,
        *,
        repository: str = REPO,
        owner: str | None = None,
        audience: str = AUDIENCE,
        issuer: str | None = None,
        expires_in: float = 300,
        key: rsa.RSAPrivateKey | None = None,
        kid: str | None = None,
        **claims: Any,
    ) -> str:
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": issuer or self.url,
            "aud": audience,
            "sub": f"repo:{repository}:ref:refs/heads/main",
            "repository": repository,
            "repository_owner": owner or repository.split("/")[0],
            "repository_owner_id": "74",
            "ref": "refs/heads/main",
            "iat": now,
            "nbf": now - 600,
            "exp": int(now + expires_in),
            **claims,
        }
        return jwt.encode(
            payload, key or self.key, algorithm="RS256", headers={"kid": kid or self.kid}
        )


@dataclass
class ApiEnv:
    client: TestClient[Any, Any]
    github: FakeGitHub
    gateway: FakeGateway
    issuer: Issuer
    settings: Settings
    audit_path: Path

    @property
    def url(self) -> str:
        return str(self.client.make_url("")).rstrip("/")

    def bearer(self, token: str = API_TOKEN) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def oidc(self, **claims: Any) -> dict[str, str]:
        return self.bearer(self.issuer.mint(**claims))

    def audit(self) -> list[dict[str, Any]]:
        if not self.audit_path.exists():
            return []
        return [json.loads(line) for line in self.audit_path.read_text().splitlines()]


async def start_api(
    aiohttp_client: ClientFactory,
    aiohttp_server: ServerFactory,
    make_settings: Callable[..., Settings],
    rsa_key: tuple[str, str],
    tmp_path: Path,
    **overrides: Any,
) -> ApiEnv:
    """The app with the API on (static token and OIDC), ``octo/demo`` on the fake GitHub."""
    github = FakeGitHub()
    github.attach(await aiohttp_server(github.app))
    github.set_app_key(rsa_key[1], 1)
    github.add_repo(REPO)
    gateway = FakeGateway()
    gateway.bind(await aiohttp_server(gateway.make_app()))
    issuer = overrides.pop("issuer", None) or Issuer()
    await issuer.start(aiohttp_server)
    audit_path = tmp_path / "audit.jsonl"
    values: dict[str, Any] = {
        "github_api_url": github.url,
        "aig_gateway_url": gateway.url,
        "cf_aig_token": GATEWAY_TOKEN,
        "model_max_retries": 0,
        "api_token": API_TOKEN,
        "api_oidc_issuer": issuer.url,
        "api_oidc_audience": AUDIENCE,
        "api_oidc_allow_http": True,
        "api_allowed_repositories": (REPO, "octo/other", "acme/*"),
        "api_audit_log": audit_path,
    }
    values.update(overrides)
    settings = make_settings(**values)
    client = await aiohttp_client(create_app(settings, run_workers=False))
    return ApiEnv(client, github, gateway, issuer, settings, audit_path)


TERMINAL = frozenset({"succeeded", "failed"})


async def wait_job(
    env: ApiEnv,
    job_id: str,
    *,
    until: Callable[[dict[str, Any]], bool] = lambda job: job["status"] in TERMINAL,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Poll the job until ``until`` holds (a generous deadline: never a timing assertion)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while True:
        response = await env.client.get(
            f"/v1/ai/execute/jobs/{job_id}", headers=headers or env.bearer()
        )
        assert response.status == 200, await response.text()
        job: dict[str, Any] = await response.json()
        if until(job):
            return job
        assert loop.time() < deadline, f"job {job_id} stayed {job['status']}"
        await asyncio.sleep(0.02)

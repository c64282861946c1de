"""Shared fixtures: an RSA key for the App, settings, and a database on each backend.

``db_url`` runs a test on SQLite always and, when ``TEST_DATABASE_URL`` points at a PostgreSQL
server, on a fresh database there too (created for the test and dropped after it).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy.engine.url import make_url

from app.settings import Settings

WEBHOOK_SECRET = "It's a Secret to Everybody"
# Every test server takes this token on /metrics and /healthz/detail (``make_settings``).
OPERATOR_TOKEN = "operator-token-for-tests"
OPERATOR_HEADERS = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="session")
def rsa_key() -> tuple[str, str]:
    """A fresh App key: (private PEM, public PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def _backends() -> list[Any]:
    params: list[Any] = ["sqlite"]
    if os.environ.get("TEST_DATABASE_URL"):
        params.append(pytest.param("postgres", marks=pytest.mark.postgres))
    return params


@pytest.fixture(params=_backends())
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'aigateway.db'}"
        return
    async for url in _postgres_database():
        yield url


async def _postgres_database() -> AsyncIterator[str]:
    import asyncpg

    base = make_url(os.environ["TEST_DATABASE_URL"])
    name = f"aig_test_{uuid.uuid4().hex[:12]}"
    admin_dsn = base.set(drivername="postgresql", database=base.database or "postgres")
    conn = await asyncpg.connect(admin_dsn.render_as_string(hide_password=False))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield base.set(drivername="postgresql+asyncpg", database=name).render_as_string(
            hide_password=False
        )
    finally:
        conn = await asyncpg.connect(admin_dsn.render_as_string(hide_password=False))
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'aigateway.db'}"


SettingsFactory = Callable[..., Settings]


@pytest.fixture
def make_settings(rsa_key: tuple[str, str], sqlite_url: str) -> SettingsFactory:
    """Settings for a test server; keyword arguments override any field."""

    def factory(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "github_app_id": "1",
            "github_private_key": rsa_key[0],
            "github_webhook_secret": WEBHOOK_SECRET,
            "github_api_url": "http://127.0.0.1:9",  # nothing listens: tests that need GitHub set it
            "database_url": sqlite_url,
            "workers": 2,
            "poll_interval_seconds": 0.05,
            "retry_base_seconds": 0.0,
            "lease_seconds": 30.0,
            "log_format": "text",
            "operator_token": OPERATOR_TOKEN,
            "_env_file": None,
        }
        values.update(overrides)
        return Settings(**values)

    return factory


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ambient settings from the developer's environment leak into a settings test."""
    for key in list(os.environ):
        if key.startswith(("GITHUB_", "CF_", "AIG_", "ANTHROPIC_", "OPENAI_", "DATABASE_URL")):
            monkeypatch.delenv(key, raising=False)


# The end-to-end harness's fixtures (``bot``, ``bot_settings``), for every test module.
from tests.e2e_bot import bot, bot_settings  # noqa: E402

__all__ = ["bot", "bot_settings"]

"""``python -m app doctor``: prove a configured installation works, one check at a time.

Each check is a small function returning a :class:`Check` (ok, a message, and a fix when it
failed); :func:`run_doctor` runs them in order and prints one line each. Checks that need a
setting another check found missing fail with a pointer to that check instead of a second
message. Nothing here prints a secret: messages name settings, never their values, and any text
quoted from an error is redacted.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, TextIO

import aiohttp
import gidgethub
from gidgethub import apps
from gidgethub.aiohttp import GitHubAPI
from pydantic import ValidationError

from app.settings import Settings, SettingsError

SETUP_HINT: Final = "run `python -m app setup` to register an App and write its settings"
PING_SYSTEM: Final = "This is a connectivity check. Answer with one word."
PING_PROMPT: Final = "Say ok."
PING_MAX_TOKENS: Final = 32
PING_TIMEOUT_S: Final = 30.0
# A provider that answered, even with nothing usable, is reachable: that is all this checks.
_ANSWERED: Final = frozenset({"empty answer", "refused"})


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    message: str
    fix: str | None = None


def _redact(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


def load_settings() -> tuple[Settings | None, Check]:
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in exc.errors()
        )
        return None, Check(
            "settings",
            False,
            f"invalid settings: {problems}",
            "correct them in .env or the environment",
        )
    return settings, Check("settings", True, "read from the environment and .env")


def check_app_credentials(settings: Settings) -> Check:
    """The App id and key are set, and the key is an RSA key GitHub could have issued."""
    has_id = bool(settings.github_app_id)
    has_key = (
        settings.github_private_key is not None or settings.github_private_key_path is not None
    )
    has_secret = settings.github_webhook_secret is not None
    if not (has_id or has_key or has_secret):
        return Check("App credentials", False, "no GitHub App is configured", SETUP_HINT)
    missing = [
        name
        for name, present in (
            ("GITHUB_APP_ID", has_id),
            ("GITHUB_PRIVATE_KEY_PATH (or GITHUB_PRIVATE_KEY)", has_key),
        )
        if not present
    ]
    if missing:
        return Check(
            "App credentials",
            False,
            "missing " + ", ".join(missing),
            "set them from the App's settings page on GitHub, or " + SETUP_HINT,
        )
    try:
        _key_pem(settings)
    except SettingsError as exc:
        return Check(
            "App credentials",
            False,
            str(exc),
            "point GITHUB_PRIVATE_KEY_PATH at the .pem file GitHub generated for this App "
            "(App settings → Private keys → Generate a private key)",
        )
    return Check("App credentials", True, f"App id {settings.github_app_id}, private key readable")


def _key_pem(settings: Settings) -> str:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    pem = settings.private_key_pem()
    try:
        key = load_pem_private_key(pem.encode("utf-8"), password=None)
    except (ValueError, TypeError):
        raise SettingsError("the private key is not a PEM private key") from None
    if not isinstance(key, RSAPrivateKey):
        raise SettingsError("the private key is not an RSA key (GitHub issues RSA keys)")
    return pem


async def check_app_key(settings: Settings, session: aiohttp.ClientSession) -> Check:
    """The key signs a JWT that GitHub accepts for this App id (``GET /app``)."""
    name = "GitHub accepts the key"
    try:
        pem = _key_pem(settings)
    except SettingsError:
        return Check(name, False, "skipped: no usable App key", "see the App credentials check")
    if not settings.github_app_id:
        return Check(name, False, "skipped: no App id", "see the App credentials check")
    api = settings.github_api_url
    try:
        token = apps.get_jwt(app_id=str(settings.github_app_id), private_key=pem)
        data = await GitHubAPI(session, "aigateway", base_url=api).getitem("/app", jwt=token)
    except gidgethub.HTTPException as exc:
        status = int(exc.status_code)
        detail = _redact(str(exc), settings.secret_values())[:200]
        fix = (
            "GITHUB_APP_ID and the key must belong to the same App: check the App id on its "
            "settings page and generate a new private key there, or " + SETUP_HINT
            if status == 401
            else "check GITHUB_API_URL (for GitHub Enterprise Server: https://HOST/api/v3)"
        )
        return Check(name, False, f"GET {api}/app answered {status}: {detail}", fix)
    except (aiohttp.ClientError, TimeoutError) as exc:
        return Check(
            name,
            False,
            f"cannot reach {api} ({type(exc).__name__})",
            "check GITHUB_API_URL and this machine's network access to GitHub",
        )
    return Check(name, True, f"GET {api}/app as App {data.get('slug')} (id {data.get('id')})")


def check_webhook_secret(settings: Settings) -> Check:
    secret = settings.github_webhook_secret
    if secret is None or not secret.get_secret_value():
        return Check(
            "webhook secret",
            False,
            "GITHUB_WEBHOOK_SECRET is not set: the server refuses to start without it",
            "set it to the secret in the App's settings (Webhook secret), or " + SETUP_HINT,
        )
    if len(secret.get_secret_value()) < 16:
        return Check(
            "webhook secret",
            False,
            "GITHUB_WEBHOOK_SECRET is shorter than 16 characters: easy to guess",
            "set a long random secret in the App's settings and in GITHUB_WEBHOOK_SECRET",
        )
    return Check("webhook secret", True, "GITHUB_WEBHOOK_SECRET is set")


def check_gateway_config(settings: Settings) -> list[Check]:
    """Where each provider's calls go (``--dry``): URLs and keys only, no request."""
    from app.gateway.urls import (
        GatewayConfigError,
        anthropic_endpoint,
        gateway_base,
        openai_endpoint,
    )

    try:
        gateway_base(settings)
    except GatewayConfigError as exc:
        return [
            Check(
                "gateway",
                False,
                str(exc),
                "correct AIG_GATEWAY_URL or CF_ACCOUNT_ID / CF_AIG_GATEWAY_ID",
            )
        ]
    checks = []
    for provider, resolve in (("anthropic", anthropic_endpoint), ("openai", openai_endpoint)):
        try:
            endpoint = resolve(settings)
        except GatewayConfigError as exc:
            checks.append(
                Check(f"gateway {provider}", False, str(exc), "set one of the settings named")
            )
            continue
        checks.append(
            Check(
                f"gateway {provider}",
                True,
                f"{endpoint.request_url} ({endpoint.route}; not called: --dry)",
            )
        )
    return checks


def _gateway_fix(error: str, status: int | None) -> str:
    if status in {401, 403}:
        return "the gateway or provider refused the credentials: check CF_AIG_TOKEN and the provider keys (or the keys stored in the gateway)"
    if status == 404:
        return "check the gateway URL (AIG_GATEWAY_URL / CF_ACCOUNT_ID, CF_AIG_GATEWAY_ID) and the model name"
    if error.startswith("spend limit"):
        return "the provider account's spend limit or credit is exhausted: raise it"
    if error in {"timeout", "connection error"}:
        return "check the gateway URL and this machine's network access to it"
    return "see the gateway's logs for this request"


async def check_gateway_live(settings: Settings) -> list[Check]:
    """One tiny free-text call per provider through the project's own gateway clients."""
    from app.gateway import CallMetadata, GatewayConfigError, build_reviewers

    quick = settings.model_copy(
        update={
            "model_max_retries": 0,
            "model_timeout_seconds": min(settings.model_timeout_seconds, PING_TIMEOUT_S),
        }
    )
    try:
        clients = build_reviewers(quick)
    except GatewayConfigError as exc:
        return [
            Check(
                "gateway", False, str(exc), "set one of the settings named, then run doctor again"
            )
        ]
    checks = []
    async with clients:
        for reviewer in clients.reviewers:
            call = await reviewer.answer(
                system=PING_SYSTEM,
                prompt=PING_PROMPT,
                metadata=CallMetadata(purpose="doctor"),
                max_tokens=PING_MAX_TOKENS,
            )
            name = f"gateway {reviewer.provider}"
            if call.ok or call.error in _ANSWERED:
                checks.append(Check(name, True, f"{call.model} answered in {call.latency_s:.1f} s"))
                continue
            error = call.error or "no answer"
            detail = f": {call.detail}" if call.detail else ""
            checks.append(
                Check(
                    name, False, f"{call.model}: {error}{detail}", _gateway_fix(error, call.status)
                )
            )
    return checks


async def check_database(settings: Settings) -> Check:
    """The database is reachable and takes the migrations (as ``serve`` will at start)."""
    from app.store import migrate
    from app.store.engine import create_engine

    try:
        engine = create_engine(settings.database_url)
    except Exception as exc:  # a bad URL is reported, whatever its kind
        return Check(
            "database",
            False,
            f"DATABASE_URL cannot be used: {type(exc).__name__}",
            "correct DATABASE_URL",
        )
    try:
        await migrate.upgrade(engine)
        revision = await migrate.current_revision(engine)
    except Exception as exc:  # any driver error is a failed check, not a crash
        detail = _redact(
            str(exc).splitlines()[0] if str(exc) else "",
            [*settings.secret_values(), *_db_password(settings)],
        )
        return Check(
            "database",
            False,
            f"cannot migrate {engine.url.render_as_string(hide_password=True)}: {type(exc).__name__} {detail[:200]}",
            "check that DATABASE_URL points at a reachable database this user may create tables in",
        )
    finally:
        await engine.dispose()
    return Check("database", True, f"migrated to revision {revision}")


def _db_password(settings: Settings) -> list[str]:
    from sqlalchemy.engine.url import make_url

    try:
        password = make_url(settings.database_url).password
    except Exception:  # an unparsable URL has no password to hide
        return []
    return [str(password)] if password else []


async def collect_checks(settings: Settings, *, dry: bool) -> list[Check]:
    checks = [check_app_credentials(settings)]
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=PING_TIMEOUT_S)
    ) as session:
        checks.append(await check_app_key(settings, session))
    checks.append(check_webhook_secret(settings))
    checks += check_gateway_config(settings) if dry else await check_gateway_live(settings)
    checks.append(await check_database(settings))
    return checks


def print_checks(checks: Sequence[Check], out: TextIO) -> None:
    width = max(len(c.name) for c in checks)
    for check in checks:
        print(f"{'ok' if check.ok else 'FAIL':<5} {check.name:<{width}}  {check.message}", file=out)
        if not check.ok and check.fix:
            print(f"{'':<5} {'':<{width}}  fix: {check.fix}", file=out)


async def run_doctor(*, dry: bool, out: TextIO = sys.stdout) -> int:
    """Print every check; 0 when all pass, 1 otherwise."""
    settings, first = load_settings()
    checks = [first] if settings is None else await collect_checks(settings, dry=dry)
    print_checks(checks, out)
    failed = sum(not c.ok for c in checks)
    print(
        f"\n{failed} of {len(checks)} checks failed"
        if failed
        else f"\nall {len(checks)} checks passed",
        file=out,
    )
    return 1 if failed else 0

"""Server settings, read from the environment (and an optional ``.env`` file).

Nothing here runs at import time: the CLI builds one ``Settings`` and hands it to the app factory,
and tests build ``Settings(...)`` directly with the values they need. Secrets are ``SecretStr`` so
that a stray ``repr`` or log line shows ``**********`` instead of the value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

CLOUDFLARE_GATEWAY_HOST = "https://gateway.ai.cloudflare.com/v1"
# A bearer token on a public port: long enough not to be guessed, and to be redacted in logs.
MIN_OPERATOR_TOKEN_LENGTH = 16


class SettingsError(Exception):
    """A configuration problem that stops the server before it starts, with a readable message."""


class Settings(BaseSettings):
    """Everything the server reads from its environment.

    Field names map to upper-case environment variables (``github_app_id`` ↔ ``GITHUB_APP_ID``).
    """

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        frozen=True,
    )

    # GitHub App
    github_app_id: str | None = None
    github_private_key: SecretStr | None = None
    github_private_key_path: Path | None = None
    github_webhook_secret: SecretStr | None = None
    github_api_url: str = "https://api.github.com"

    # LLM gateway
    cf_account_id: str | None = None
    cf_aig_gateway_id: str | None = None
    aig_gateway_url: str | None = None
    # A plain-http gateway URL off loopback is refused unless this says the path is protected.
    aig_allow_insecure_gateway: bool = False
    cf_aig_token: SecretStr | None = None
    cf_issued_aigateway_token: SecretStr | None = None
    anthropic_api_key: SecretStr | None = None
    openai_api_key: SecretStr | None = None
    anthropic_base_url: str | None = None
    openai_base_url: str | None = None

    # Models
    anthropic_model: str = "claude-sonnet-4-6"
    openai_model: str = "gpt-5-mini"
    model_max_output_tokens: int = Field(default=4096, ge=256, le=64000)
    model_temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    model_timeout_seconds: float = Field(default=120.0, gt=0)
    model_max_retries: int = Field(default=3, ge=0, le=10)
    model_retry_budget_seconds: float = Field(default=60.0, gt=0)
    slice_token_budget: int = Field(default=12000, ge=500)
    review_concurrency: int = Field(default=8, ge=1, le=64)
    # Model calls in flight at once per provider, shared by every review in this process; a 429
    # with retry-after pauses that provider's calls for the whole process (app/gateway/throttle.py)
    anthropic_max_concurrency: int = Field(default=64, ge=1, le=4096)
    openai_max_concurrency: int = Field(default=64, ge=1, le=4096)

    # Budgets: the operator's defaults for repositories that set none, and hard ceilings
    quota_daily_default_usd: float | None = Field(default=None, ge=0)
    quota_weekly_default_usd: float | None = Field(default=None, ge=0)
    quota_per_pr_default_usd: float | None = Field(default=None, ge=0)
    quota_daily_max_usd: float | None = Field(default=None, ge=0)
    quota_weekly_max_usd: float | None = Field(default=None, ge=0)
    quota_per_pr_max_usd: float | None = Field(default=None, ge=0)
    # Downgrade ladders, most to least capable (JSON lists in the environment)
    model_ladder_anthropic: tuple[str, ...] = (
        "claude-opus-4-1",
        "claude-sonnet-4-6",
        "claude-haiku-4-5",
    )
    model_ladder_openai: tuple[str, ...] = ("gpt-5", "gpt-5-mini", "gpt-5-nano")
    health_window_seconds: float = Field(default=300.0, gt=0)
    # A reservation still open after this long was left by a crash (app/sweep/reservations.py);
    # it must exceed the longest review
    reservation_timeout_seconds: float = Field(default=1800.0, gt=0)
    reservation_sweep_interval_seconds: float = Field(default=300.0, gt=0)
    # Reconciliation of the ledger with the gateway's logs (app/ledger, README "Cost
    # reconciliation"): off without CF_API_TOKEN (AI Gateway Read; + Edit to write outcomes
    # back, else the first 403 turns the write-back off). The token goes to CF_API_BASE_URL only
    cf_api_token: SecretStr | None = None
    cf_api_base_url: str = "https://api.cloudflare.com/client/v4"
    ledger_reconcile_interval_seconds: float = Field(default=3600.0, gt=0)
    ledger_discrepancy_warn_threshold: int = Field(default=10, ge=0)
    ledger_writeback: bool = True

    # Storage and serving
    database_url: str = "sqlite+aiosqlite:///aigateway.db"
    host: str = "0.0.0.0"  # noqa: S104 - a server listens on every interface by default
    port: int = Field(default=8080, ge=0, le=65535)
    # auto: uvloop where it is installed (Linux, macOS), else asyncio's own loop
    event_loop: Literal["auto", "uvloop", "asyncio"] = "auto"
    # What intake holds in memory at once (requests not yet answered, and their bodies); past
    # either, /webhook answers 503 with Retry-After (app/intake/limit.py)
    intake_max_pending: int = Field(default=10_000, ge=1)
    intake_max_pending_bytes: int = Field(default=256 * 1024 * 1024, ge=1)

    # Queue and workers. Deliveries handled at once by this process: reviews mostly wait on
    # the models, so this is a bound on work in hand, not a number of threads
    max_concurrent_reviews: int = Field(default=64, ge=1, le=4096)
    # Loops that claim deliveries to fill those slots; 0: this process handles none (web only)
    workers: int = Field(default=2, ge=0, le=256)
    # On SIGTERM: how long deliveries in hand may take to finish before they are given back
    shutdown_grace_seconds: float = Field(default=20.0, ge=0)
    # What `serve` runs: both (all), intake only (web), or the queue's work only (workers);
    # the split needs PostgreSQL, shared by the replicas
    serve_role: Literal["all", "web", "workers"] = "all"
    max_attempts: int = Field(default=5, ge=1, le=50)
    retry_base_seconds: float = Field(default=2.0, ge=0)
    retry_max_seconds: float = Field(default=300.0, ge=0)
    lease_seconds: float = Field(default=300.0, gt=0)
    poll_interval_seconds: float = Field(default=1.0, gt=0)
    github_max_retries: int = Field(default=3, ge=0, le=10)
    github_max_wait_seconds: float = Field(default=60.0, ge=0)
    # The acting stage's timers: queued actions whose backoff ended, and idle merge intents
    actions_interval_seconds: float = Field(default=15.0, gt=0)
    intent_recheck_seconds: float = Field(default=120.0, gt=0)
    # A once-per-head comment claimed but not seen on GitHub after this long is posted again
    notice_grace_seconds: float = Field(default=60.0, ge=0)
    # Finished (done) deliveries and their payloads are kept this long (app/sweep/deliveries.py)
    delivery_retention_days: float = Field(default=14.0, gt=0)
    delivery_purge_interval_seconds: float = Field(default=3600.0, gt=0)

    # Operator endpoints (/metrics, the health detail): the bearer token they take on the
    # public port (none: not served there), and a port of their own on HOST without a token
    operator_token: SecretStr | None = None
    operator_port: int | None = Field(default=None, ge=0, le=65535)

    # The service API for CI jobs and other callers (``app/api``, README "Service API"). Off
    # unless API_TOKEN is set or API_OIDC_ISSUER and API_OIDC_AUDIENCE are; checked at start
    # by ``app.api.config.check_api_settings``
    api_token: SecretStr | None = None
    api_oidc_issuer: str | None = None
    api_oidc_audience: str | None = None
    # A plain-http issuer is refused unless this says so (a local issuer in tests): its keys are
    # what every token is trusted by
    api_oidc_allow_http: bool = False
    api_oidc_jwks_ttl_seconds: float = Field(default=3600.0, gt=0)
    # owner/name or owner/* entries (a JSON list); a request for any other repository is 403
    api_allowed_repositories: tuple[str, ...] = ()
    api_rate_limit: int = Field(default=30, ge=1)
    api_rate_window_seconds: float = Field(default=60.0, gt=0)
    api_default_provider: Literal["anthropic", "openai"] = "anthropic"
    api_audit_log: Path | None = None
    # Coding-agent jobs: the command (the sandbox flag, the sandbox and the prompt are appended),
    # the sandboxes a caller may ask for, and the limits of one job
    api_max_jobs: int = Field(default=10, ge=1, le=1000)
    api_agent_command: tuple[str, ...] = ("codex", "exec", "--skip-git-repo-check")
    api_agent_sandbox_flag: str = Field(default="--sandbox", min_length=1)
    api_agent_sandboxes: tuple[str, ...] = ("read-only", "workspace-write")
    api_agent_timeout_seconds: float = Field(default=900.0, gt=0)
    # Names of variables passed from the server's environment to the agent (its own credential);
    # nothing else of the server's environment reaches it
    api_agent_env: tuple[str, ...] = ()
    api_job_output_bytes: int = Field(default=1_000_000, ge=1024)
    api_checkout_max_bytes: int = Field(default=512 * 1024 * 1024, ge=1024)

    # The operator's page (``app/dashboard``, README "Dashboard"): served when OPERATOR_TOKEN or
    # the App's OAuth client id and secret are set. GITHUB_WEB_URL is where people sign in (none:
    # github.com for api.github.com, else the API host without /api/v3, as on GitHub Enterprise
    # Server). Sessions are encrypted and signed with DASHBOARD_SESSION_SECRET (none: a key
    # derived from the webhook secret, so rotating that ends every session)
    github_client_id: str | None = None
    github_client_secret: SecretStr | None = None
    github_web_url: str | None = None
    dashboard_session_secret: SecretStr | None = None
    dashboard_session_hours: float = Field(default=8.0, gt=0, le=24 * 30)
    # The page's public base URL (https://bot.example.com), for the OAuth callback behind a proxy
    dashboard_public_url: str | None = None

    # Logging
    log_format: Literal["json", "text"] = "json"
    log_level: str = "INFO"

    @field_validator(
        "operator_token",
        "api_token",
        "github_client_secret",
        "dashboard_session_secret",
        "cf_api_token",
    )
    @classmethod
    def _empty_token_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        return value if value is not None and value.get_secret_value() else None

    @field_validator("github_api_url", "cf_api_base_url")
    @classmethod
    def _api_url_is_http(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ValueError("must be an absolute http(s) URL")
        return value.rstrip("/")

    # ------------------------------------------------------------------ derived values

    @property
    def gateway_url(self) -> str | None:
        """The gateway base: ``AIG_GATEWAY_URL`` whole, else built from the Cloudflare ids."""
        if self.aig_gateway_url:
            return self.aig_gateway_url.rstrip("/")
        if self.cf_account_id and self.cf_aig_gateway_id:
            return f"{CLOUDFLARE_GATEWAY_HOST}/{self.cf_account_id}/{self.cf_aig_gateway_id}"
        return None

    @property
    def gateway_token(self) -> SecretStr | None:
        """``CF_AIG_TOKEN`` first, then the token the platform issued."""
        return self.cf_aig_token or self.cf_issued_aigateway_token

    @property
    def api_enabled(self) -> bool:
        """Whether the service API is served: a static token or an OIDC issuer is configured."""
        return self.api_token is not None or bool(self.api_oidc_issuer or self.api_oidc_audience)

    @property
    def dashboard_enabled(self) -> bool:
        """Whether ``/dashboard`` is served: someone can log in (operator token or OAuth)."""
        return self.operator_token is not None or bool(
            self.github_client_id and self.github_client_secret
        )

    @property
    def github_web(self) -> str:
        """GitHub's web base (sign-in pages, pull request links): see ``github_web_url``."""
        if self.github_web_url:
            return self.github_web_url.rstrip("/")
        parts = urlsplit(self.github_api_url)
        if parts.netloc == "api.github.com":
            return "https://github.com"
        return f"{parts.scheme}://{parts.netloc}{parts.path.removesuffix('/api/v3')}".rstrip("/")

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def private_key_pem(self) -> str:
        """The App's PEM key, from ``GITHUB_PRIVATE_KEY`` or the file at ``GITHUB_PRIVATE_KEY_PATH``."""
        if self.github_private_key is not None:
            # Platforms that store one-line secrets often turn newlines into a literal "\n".
            return self.github_private_key.get_secret_value().replace("\\n", "\n")
        if self.github_private_key_path is not None:
            try:
                return self.github_private_key_path.read_text(encoding="utf-8")
            except OSError as exc:
                raise SettingsError(
                    f"GITHUB_PRIVATE_KEY_PATH: cannot read {self.github_private_key_path}: "
                    f"{exc.strerror}"
                ) from exc
        raise SettingsError("GITHUB_PRIVATE_KEY or GITHUB_PRIVATE_KEY_PATH is not set")

    def check_for_server(self) -> None:
        """Refuse to serve without what GitHub needs, naming every missing setting at once.

        A server that starts without a webhook secret would either accept forged deliveries or
        reject every real one; neither is acceptable, so it does not start.
        """
        missing: list[str] = []
        if not self.github_webhook_secret or not self.github_webhook_secret.get_secret_value():
            missing.append("GITHUB_WEBHOOK_SECRET")
        if not self.github_app_id:
            missing.append("GITHUB_APP_ID")
        if self.github_private_key is None and self.github_private_key_path is None:
            missing.append("GITHUB_PRIVATE_KEY (or GITHUB_PRIVATE_KEY_PATH)")
        if len(missing) == 3:
            raise SettingsError(
                "no GitHub App is configured: run `python -m app setup --url PUBLIC_URL` to "
                "register one and write its settings (or set GITHUB_APP_ID, "
                "GITHUB_PRIVATE_KEY_PATH and GITHUB_WEBHOOK_SECRET by hand, see README.md)"
            )
        if missing:
            raise SettingsError("missing required settings: " + ", ".join(missing))
        token = self.operator_token
        if token is not None and len(token.get_secret_value()) < MIN_OPERATOR_TOKEN_LENGTH:
            raise SettingsError(
                f"OPERATOR_TOKEN must be at least {MIN_OPERATOR_TOKEN_LENGTH} characters long"
            )
        if self.serve_role != "all" and self.is_sqlite:
            raise SettingsError(
                f"serving {self.serve_role} only needs PostgreSQL (DATABASE_URL="
                "postgresql+asyncpg://...): one process owns a SQLite file, so it takes both roles"
            )
        if self.operator_port is not None and self.operator_port == self.port != 0:
            raise SettingsError("OPERATOR_PORT must differ from PORT")
        from app.gateway.urls import GatewayConfigError, gateway_base

        try:
            gateway_base(self)
        except GatewayConfigError as exc:
            raise SettingsError(str(exc)) from exc
        if self.api_enabled:
            from app.api.config import check_api_settings

            check_api_settings(self)
        pem = self.private_key_pem()
        try:
            key = load_pem_private_key(pem.encode("utf-8"), password=None)
        except (ValueError, TypeError) as exc:
            raise SettingsError(
                "the GitHub App private key is not a valid RSA private key in PEM format "
                "(expected a '-----BEGIN RSA PRIVATE KEY-----' block as downloaded from GitHub)"
            ) from exc
        if not isinstance(key, RSAPrivateKey):
            raise SettingsError(
                "the GitHub App private key is a PEM key but not an RSA key; GitHub issues RSA keys"
            )

    def webhook_secret(self) -> str:
        assert self.github_webhook_secret is not None, "check_for_server() runs first"
        return self.github_webhook_secret.get_secret_value()

    def secret_values(self) -> list[str]:
        """Every secret value, for the log filter that keeps them out of log lines.

        The App's private key counts whether it was given whole or as a file, as given and as
        PEM, and each line of its body too: an error that quotes a part of the key quotes it by
        the line.
        """
        values: list[str] = []
        for secret in (
            self.github_private_key,
            self.github_webhook_secret,
            self.cf_aig_token,
            self.cf_issued_aigateway_token,
            self.anthropic_api_key,
            self.openai_api_key,
            self.operator_token,
            self.api_token,
            self.github_client_secret,
            self.dashboard_session_secret,
            self.cf_api_token,
        ):
            if secret is not None and len(secret.get_secret_value()) >= 6:
                values.append(secret.get_secret_value())
        try:
            pem = self.private_key_pem()
        except SettingsError:  # no key, or an unreadable file: nothing of it to leak
            return values
        lines = [line.strip() for line in pem.splitlines()]
        values.append(pem)
        values += [line for line in lines if len(line) >= 16 and not line.startswith("-----")]
        return values

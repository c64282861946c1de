"""What the command line says about where things are: the server's addresses, its database and
settings file at start, and the database a read-only command looked for when there is none."""

from __future__ import annotations

import sys
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from app.settings import Settings

ENV_FILE = ".env"  # as Settings.model_config reads it: relative to the working directory


def database_label(url: str) -> str:
    """The database URL without its password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unparsable DATABASE_URL)"


def sqlite_file(url: str) -> Path | None:
    """The file a SQLite URL names (None for another database or an in-memory one)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    if not parsed.get_backend_name().startswith("sqlite"):
        return None
    name = parsed.database or ""
    if not name or name == ":memory:" or name.startswith("file:"):
        return None
    return Path(name).resolve()


def missing_database(settings: Settings) -> str | None:
    """Why a read-only command should not run: its SQLite file does not exist (opening it
    would create an empty one, and answer "nothing" about a database that is elsewhere)."""
    path = sqlite_file(settings.database_url)
    if path is None or path.exists():
        return None
    return (
        f"no database at {path} (DATABASE_URL={database_label(settings.database_url)}); "
        "run this where the server runs, or point DATABASE_URL (environment or .env) at its "
        "database"
    )


def require_database(settings: Settings) -> bool:
    """Print why not and return False when the database to read does not exist."""
    problem = missing_database(settings)
    if problem is not None:
        print(f"aigateway: {problem}", file=sys.stderr)
        return False
    return True


def serve_lines(settings: Settings, *, cwd: Path | None = None) -> list[str]:
    """The lines ``serve`` logs once at start: where it listens, its database, its settings."""
    here = cwd or Path.cwd()
    host = settings.host
    shown = "localhost" if host in {"0.0.0.0", "::", ""} else host  # noqa: S104 - a comparison
    base = f"http://{shown}:{settings.port}"
    env_file = here / ENV_FILE
    lines = [
        f"listening on {host}:{settings.port}: webhooks at {base}/webhook, health at "
        f"{base}/healthz",
        f"database: {database_label(settings.database_url)}",
        f"settings: {env_file} and the environment"
        if env_file.is_file()
        else f"settings: the environment (no {ENV_FILE} in {here})",
    ]
    if settings.operator_port is not None:
        operator = f"http://{shown}:{settings.operator_port}"
        lines.append(f"operator listener: {operator}/metrics and {operator}/healthz/detail")
    else:
        lines.append(f"metrics: {base}/metrics and {base}/healthz/detail (with the operator token)")
    return lines

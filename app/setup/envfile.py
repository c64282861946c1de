"""Write the new App's credentials: ``.env`` entries and the PEM key beside it, both 0600.

Nothing that exists is overwritten unless asked (``--force``): an operator's working App must not
be replaced by a second registration by accident. ``.env`` keeps every other line it had. Each
file is written whole under a temporary name and renamed, so a crash leaves the old file or the
new one, never half of either, and the key is never readable by others, not even for a moment.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from dotenv import dotenv_values

from app.setup.conversion import AppCredentials
from app.setup.manifest import GITHUB_COM_API

KEY_FILE_NAME: Final = "github-app.private-key.pem"
# Settings setup writes, or that would shadow what it writes (a PEM given whole wins over a path).
APP_KEYS: Final = (
    "GITHUB_APP_ID",
    "GITHUB_PRIVATE_KEY",
    "GITHUB_PRIVATE_KEY_PATH",
    "GITHUB_WEBHOOK_SECRET",
    "GITHUB_CLIENT_ID",
    "GITHUB_CLIENT_SECRET",
)
_PLAIN_VALUE: Final = re.compile(r"^[A-Za-z0-9_./:@+=-]*$")
_ASSIGNMENT: Final = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=")


class EnvFileError(Exception):
    """The credentials cannot be written; the message says what to do."""


@dataclass(frozen=True)
class Written:
    env_path: Path
    key_path: Path
    names: tuple[str, ...]  # the settings written (names only: values are never shown)
    shadowed: tuple[str, ...]  # set in the environment, which wins over .env


def key_path_for(env_path: Path) -> Path:
    return env_path.resolve().parent / KEY_FILE_NAME


def existing_settings(env_path: Path) -> dict[str, str | None]:
    if not env_path.exists():
        return {}
    try:
        return dict(dotenv_values(env_path))
    except OSError as exc:
        raise EnvFileError(f"cannot read {env_path}: {exc.strerror}") from exc


def conflicts(env_path: Path, *, api_url: str) -> list[str]:
    """What a write without ``--force`` would overwrite, for the refusal message."""
    found: list[str] = []
    current = existing_settings(env_path)
    for name in APP_KEYS:
        if current.get(name):
            found.append(f"{name} in {env_path}")
    # A GHES API URL set beforehand is no conflict when it is the one setup would write.
    for name in _api_keys(api_url):
        if current.get(name) and current[name] != api_url:
            found.append(f"{name} in {env_path}")
    key = key_path_for(env_path)
    if key.exists():
        found.append(str(key))
    return found


def _api_keys(api_url: str) -> tuple[str, ...]:
    return () if api_url == GITHUB_COM_API else ("GITHUB_API_URL",)


def credential_values(creds: AppCredentials, *, key_path: Path, api_url: str) -> dict[str, str]:
    values = {
        "GITHUB_APP_ID": str(creds.id),
        "GITHUB_PRIVATE_KEY_PATH": str(key_path),
        "GITHUB_WEBHOOK_SECRET": creds.webhook_secret,
    }
    if creds.client_id:
        values["GITHUB_CLIENT_ID"] = creds.client_id
    if creds.client_secret:
        values["GITHUB_CLIENT_SECRET"] = creds.client_secret
    if api_url != GITHUB_COM_API:
        values["GITHUB_API_URL"] = api_url
    return values


def _quote(value: str) -> str:
    if _PLAIN_VALUE.match(value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def render_env(existing_text: str, values: Mapping[str, str], *, header: str) -> str:
    """``existing_text`` without any line setting an App key, then the new block."""
    replaced = {*APP_KEYS, *values}
    kept: list[str] = []
    for line in existing_text.splitlines():
        match = _ASSIGNMENT.match(line)
        if match and match.group(1) in replaced:
            continue
        kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    block = [f"# {header}", *(f"{name}={_quote(value)}" for name, value in values.items())]
    return "\n".join([*kept, *([""] if kept else []), *block]) + "\n"


def _write_private(path: Path, text: str) -> None:
    """Write ``path`` whole with mode 0600 (temporary file in the same folder, then rename)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_credentials(
    env_path: Path,
    creds: AppCredentials,
    *,
    api_url: str,
    force: bool,
    environ: Mapping[str, str] = os.environ,
) -> Written:
    """Write the key file and the ``.env`` entries; refuse to overwrite unless ``force``."""
    if not force:
        found = conflicts(env_path, api_url=api_url)
        if found:
            raise EnvFileError(
                "refusing to overwrite existing App settings ("
                + ", ".join(found)
                + "); run setup again with --force to replace them"
            )
    key_path = key_path_for(env_path)
    values = credential_values(creds, key_path=key_path, api_url=api_url)
    try:
        existing = env_path.read_text(encoding="utf-8") if env_path.exists() else ""
        _write_private(key_path, creds.pem if creds.pem.endswith("\n") else creds.pem + "\n")
        when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        header = (
            f"GitHub App {creds.slug} (id {creds.id}), registered by python -m app setup {when}"
        )
        _write_private(env_path, render_env(existing, values, header=header))
    except OSError as exc:
        raise EnvFileError(f"cannot write {exc.filename or env_path}: {exc.strerror}") from exc
    shadowed = tuple(name for name in (*APP_KEYS, "GITHUB_API_URL") if environ.get(name))
    return Written(env_path, key_path, tuple(values), shadowed)

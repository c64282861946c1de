"""The other sub-commands as a newcomer meets them: what ``serve`` says at start, read-only
commands where no database exists, help text for every option, ``.env.example``."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.__main__ import build_parser
from app.cli import env_example
from app.settings import Settings
from tests.conftest import WEBHOOK_SECRET
from tests.test_cli import run_cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "args", [("deliveries",), ("deliveries", "--failed"), ("quota",), ("replay", "some-id")]
)
def test_read_only_commands_never_create_an_empty_database(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    result = run_cli(*args, env={}, cwd=tmp_path)
    assert result.returncode == 1
    assert f"no database at {tmp_path / 'aigateway.db'}" in result.stderr
    assert "DATABASE_URL" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_serve_says_where_it_listens_and_what_it_uses(
    rsa_key: tuple[str, str], tmp_path: Path
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / ".env").write_text(f"GITHUB_WEBHOOK_SECRET={WEBHOOK_SECRET}\n")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GITHUB_", "CF_", "AIG_", "ANTHROPIC_", "OPENAI_", "DATABASE_URL"))
    }
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "GITHUB_APP_ID": "1",
            "GITHUB_PRIVATE_KEY": rsa_key[0],
            "GITHUB_API_URL": "http://127.0.0.1:9",
            "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/served.db",
            "OPERATOR_TOKEN": "operator-token-value-1234567890",
        }
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    lines: list[str] = []
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            if "metrics:" in line:
                break
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if proc.stderr is not None:
            proc.stderr.close()
    text = "".join(lines)
    base = f"http://127.0.0.1:{port}"
    assert f"listening on 127.0.0.1:{port}" in text
    assert f"{base}/healthz" in text and f"{base}/metrics" in text
    assert f"database: sqlite+aiosqlite:///{tmp_path}/served.db" in text
    assert f"settings: {tmp_path / '.env'}" in text
    assert "operator-token-value" not in text


def _options(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.Action]]:
    out: list[tuple[str, argparse.Action]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.extend((f"{name} {a}", b) for a, b in _options(sub))
        elif not isinstance(action, argparse._HelpAction):
            out.append(("/".join(action.option_strings) or action.dest, action))
    return out


def test_every_option_has_help_text() -> None:
    missing = [name for name, action in _options(build_parser()) if not action.help]
    assert missing == []


def test_top_level_help_is_plain_text(tmp_path: Path) -> None:
    result = run_cli("--help", env={}, cwd=tmp_path)
    assert result.returncode == 0
    assert "``" not in result.stdout
    assert "review-diff" in result.stdout


def test_env_example_lists_every_setting_with_its_default() -> None:
    committed = (ROOT / ".env.example").read_text(encoding="utf-8")
    assert committed == env_example.render(), (
        ".env.example is out of date with app/settings.py; regenerate it with "
        "`python -m app.cli.env_example > .env.example`"
    )
    for name in Settings.model_fields:
        assert f"# {name.upper()}=" in committed, name
    assert "# PORT=8080\n" in committed
    assert "# DATABASE_URL=sqlite+aiosqlite:///aigateway.db\n" in committed
    assert '# MODEL_LADDER_OPENAI=["gpt-5", "gpt-5-mini", "gpt-5-nano"]\n' in committed


def test_readme_names_the_console_script() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "`aigateway` console script" in readme

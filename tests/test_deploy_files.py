"""The deployment files say what the README says: the serve command, a non-root user, and two
replicas on one PostgreSQL whose migrations run once before them."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from app.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def test_the_image_runs_the_readmes_serve_command_as_a_non_root_user() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'CMD ["python", "-m", "app", "serve"]' in dockerfile
    users = re.findall(r"^USER (\S+)", dockerfile, re.MULTILINE)
    assert users and users[-1] not in {"root", "0"}
    assert "STOPSIGNAL SIGTERM" in dockerfile and "/healthz" in dockerfile


def test_compose_runs_two_replicas_on_postgres_after_one_migration() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    replicas = [s for name, s in services.items() if name.startswith("replica-")]
    assert len(replicas) == 2
    for replica in replicas:
        url = replica["environment"]["DATABASE_URL"]
        assert url.startswith("postgresql+asyncpg://")
        assert replica["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        # Docker waits this long after SIGTERM: longer than the server's own grace period.
        grace = float(replica["environment"]["SHUTDOWN_GRACE_SECONDS"])
        assert float(replica["stop_grace_period"].rstrip("s")) > grace
        # Every setting the file sets is one the server reads.
        assert {k.lower() for k in replica["environment"]} <= set(Settings.model_fields)
    assert services["migrate"]["command"] == ["python", "-m", "app", "migrate"]

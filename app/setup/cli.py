"""The ``setup`` and ``doctor`` commands: options in, exit status out."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from app.setup.doctor import run_doctor
from app.setup.manifest import ManifestError, api_url_for, default_app_yml, load_app_yml
from app.setup.page import SetupError, SetupOptions, check_options, run_setup


def setup_command(
    *,
    github_url: str,
    public_url: str | None,
    org: str | None,
    name: str | None,
    env_file: str,
    manifest: str | None,
    force: bool,
    host: str,
    port: int,
) -> int:
    """Serve the registration page until the App's credentials are written."""
    if not public_url:
        print(
            "aigateway setup: --url PUBLIC_URL is required: the https address where GitHub will "
            "reach this server (webhooks go to PUBLIC_URL/webhook)",
            file=sys.stderr,
        )
        return 2
    try:
        app_yml = load_app_yml(Path(manifest) if manifest else default_app_yml())
        options = SetupOptions(
            github_url=github_url.rstrip("/"),
            api_url=api_url_for(github_url, os.environ.get("GITHUB_API_URL")),
            public_url=public_url,
            env_path=Path(env_file).absolute(),
            app_yml=app_yml,
            org=org,
            name=name,
            force=force,
        )
        check_options(options)
    except (ManifestError, SetupError) as exc:
        print(f"aigateway setup: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(run_setup(options, host=host, port=port))
    except KeyboardInterrupt:
        print("setup stopped; nothing was written", file=sys.stderr)
        return 130


def doctor_command(*, dry: bool) -> int:
    return asyncio.run(run_doctor(dry=dry))

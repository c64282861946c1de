"""``.env.example``, generated from ``Settings``: every setting, its default, and the comment
written beside it in ``app/settings.py``, so the example never falls behind the code.

Regenerate with ``python -m app.cli.env_example > .env.example``; a test compares the two.
Every line is commented out: a copy of the file changes nothing until a line is uncommented.
"""

from __future__ import annotations

import inspect
import json
import re
import sys
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from app.settings import Settings

HEADER = (
    "# aigateway settings: environment variables, or lines of a .env file in the directory the\n"
    "# server starts in. Every setting is listed with its default; uncomment what you change.\n"
    "# Generated from app/settings.py by `python -m app.cli.env_example > .env.example`."
)
_FIELD_RE = re.compile(r"^    (\w+): ")
_COMMENT_RE = re.compile(r"^    # ?(.*)$")


def _value(default: Any) -> str:
    if default is None:
        return ""
    if isinstance(default, bool):
        return "true" if default else "false"
    if isinstance(default, SecretStr):
        return ""
    if isinstance(default, tuple | list):
        return json.dumps(list(default))
    if isinstance(default, Path):
        return str(default)
    return str(default)


def render() -> str:
    fields = Settings.model_fields
    lines = [HEADER]
    comments: list[str] = []
    for raw in inspect.getsource(Settings).splitlines():
        comment = _COMMENT_RE.match(raw)
        if comment is not None:
            comments.append(comment.group(1))
            continue
        field = _FIELD_RE.match(raw)
        if field is None or field.group(1) not in fields:
            if not raw.strip():
                comments = []
            continue
        name = field.group(1)
        if comments:
            lines.append("")
            lines.extend(f"# {c}".rstrip() for c in comments)
            comments = []
        info = fields[name]
        default = None if info.is_required() else info.get_default(call_default_factory=True)
        lines.append(f"# {name.upper()}={_value(default)}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())

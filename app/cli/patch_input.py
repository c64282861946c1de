"""What ``review-diff`` reads before any model is asked: the patch, its title, the repository's
config and ``.gitattributes``, found the way a user expects from ``git`` and ``patch``."""

from __future__ import annotations

import email.header
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from app.config_loader import CONFIG_PATH
from app.repo_config import ConfigResult, RepoConfig, load_repo_config

_SUBJECT_RE = re.compile(r"^Subject:[ \t]*(.*(?:\n[ \t]+.*)*)", re.MULTILINE)
_PATCH_TAG_RE = re.compile(r"^\[[^\]]*PATCH[^\]]*\]\s*", re.IGNORECASE)


class InputError(Exception):
    """A bad input, said in one line; the command exits 2."""


@dataclass(frozen=True, slots=True)
class PatchInput:
    text: str
    name: str  # the file's name, or "stdin"


def read_patch(path: str) -> PatchInput:
    """The patch from a file, or from stdin for ``-``."""
    if path == "-":
        return PatchInput(sys.stdin.read(), "stdin")
    try:
        return PatchInput(Path(path).read_text(encoding="utf-8", errors="replace"), Path(path).name)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None


def format_patch_subject(text: str) -> str | None:
    """The ``Subject:`` of a ``git format-patch`` mail, without its ``[PATCH n/m]`` tag."""
    head = text.split("\ndiff --git ", 1)[0]
    match = _SUBJECT_RE.search(head)
    if match is None:
        return None
    raw = re.sub(r"\n[ \t]+", " ", match.group(1)).strip()
    try:
        decoded = str(email.header.make_header(email.header.decode_header(raw)))
    except (UnicodeDecodeError, LookupError, email.errors.HeaderParseError):
        decoded = raw
    subject = _PATCH_TAG_RE.sub("", decoded).strip()
    return subject or None


def repository_root(start: Path) -> Path | None:
    """The enclosing git work tree (a ``.git`` directory or file), or None outside one."""
    for folder in (start, *start.parents):
        if (folder / ".git").exists():
            return folder
    return None


def load_config(
    explicit: str | None, root: Path | None
) -> tuple[RepoConfig, str | None, tuple[str, ...]]:
    """The config to apply, where it came from, and its problems (the defaults stand in for them).

    ``--config`` given: that file, which must exist. Otherwise the current repository's
    ``.github/aigateway.yml`` when there is one, else the defaults.
    """
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise InputError(f"config file not found: {explicit}")
    elif root is not None and (root / CONFIG_PATH).is_file():
        path = root / CONFIG_PATH
    else:
        return RepoConfig(), None, ()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read config {path}: {exc}") from None
    result: ConfigResult = load_repo_config(text, source=str(path))
    return result.config, str(path), tuple(str(e) for e in result.errors)


def read_gitattributes(root: Path | None) -> str | None:
    if root is None:
        return None
    try:
        return (root / ".gitattributes").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None

"""A job's checkout: the repository's tarball at a ref, unpacked twice, and the diff between them.

Why a tarball rather than ``git clone``: it needs no git on the server, one request with the
App's installation token, and nothing of the repository's history (an agent job works on a
tree). GitHub answers ``GET /repos/{o}/{r}/tarball/{ref}`` with a redirect to a download URL
that carries its own short-lived grant, so the installation token goes to the API only and the
redirect is followed without it (never to another host). The body is streamed to disk and cut
at ``max_bytes``; gidgethub would hold the whole archive in memory, so the request is made here,
with the token gidgethub's App authentication issued.

Unpacking uses tarfile's ``data`` filter (no absolute paths, no ``..``, no links out of the
tree, no devices) after the archive's top folder is stripped, and stops at ``max_bytes`` of
content or :data:`MAX_FILES` entries. The tree is copied once, so the command edits one copy
and :func:`tree_diff` compares it with the untouched one.
"""

from __future__ import annotations

import difflib
import os
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Final
from urllib.parse import quote, urljoin, urlsplit

import aiohttp

from app.github.auth import USER_AGENT

__all__ = ["MAX_FILES", "CheckoutError", "download_tarball", "prepare_trees", "tree_diff"]

MAX_FILES: Final = 100_000
MAX_REDIRECTS: Final = 3
CHUNK: Final = 1 << 16
#: A download that stalls this long between two chunks has failed.
READ_TIMEOUT: Final = aiohttp.ClientTimeout(total=None, connect=15, sock_read=60)
#: Folders whose content is not the change (an agent that runs ``git init`` makes one).
SKIPPED_DIRS: Final = frozenset({".git"})


class CheckoutError(Exception):
    """The repository could not be fetched or unpacked; the message says why, with no secret."""


async def download_tarball(
    session: aiohttp.ClientSession,
    *,
    api_url: str,
    token: str,
    repository: str,
    ref: str | None,
    dest: Path,
    max_bytes: int,
) -> None:
    """Stream the repository's tarball at ``ref`` (default branch when None) into ``dest``."""
    url = f"{api_url}/repos/{repository}/tarball"
    if ref:
        url += "/" + quote(ref, safe="/")
    headers = {
        "Authorization": f"token {token}",
        "Accept": "application/vnd.github+json",
        "User-Agent": USER_AGENT,
    }
    for _ in range(MAX_REDIRECTS + 1):
        async with session.get(
            url, headers=headers, allow_redirects=False, timeout=READ_TIMEOUT
        ) as response:
            if response.status in {301, 302, 303, 307, 308}:
                location = response.headers.get("Location", "")
                url = urljoin(url, location)
                if urlsplit(url).scheme not in {"http", "https"}:
                    raise CheckoutError("GitHub redirected the download to a non-http URL")
                # The download URL carries its own grant; the installation token stays here.
                headers = {"User-Agent": USER_AGENT}
                continue
            if response.status == 404:
                raise CheckoutError(f"{repository} has no ref {ref!r}" if ref else "not found")
            if response.status != 200:
                raise CheckoutError(f"GitHub answered {response.status} for the tarball")
            await _save(response, dest, max_bytes)
            return
    raise CheckoutError("too many redirects for the tarball")


async def _save(response: aiohttp.ClientResponse, dest: Path, max_bytes: int) -> None:
    size = 0
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        async for chunk in response.content.iter_chunked(CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise CheckoutError(f"the tarball is larger than {max_bytes} bytes")
            os.write(fd, chunk)
    finally:
        os.close(fd)


def prepare_trees(archive: Path, pristine: Path, work: Path, *, max_bytes: int) -> None:
    """Unpack ``archive`` into ``pristine`` and copy it to ``work`` (blocking: run in a thread)."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = list(_members(tar, max_bytes))
            pristine.mkdir(parents=True, exist_ok=True)
            tar.extractall(pristine, members=members, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise CheckoutError(f"the tarball could not be unpacked: {exc}") from exc
    shutil.copytree(pristine, work, symlinks=True)


def _members(tar: tarfile.TarFile, max_bytes: int) -> Iterator[tarfile.TarInfo]:
    total = count = 0
    for member in tar:
        _, _, inner = member.name.partition("/")
        if not inner.strip("/"):
            continue  # the archive's top folder, ``owner-repo-sha/``
        member.name = inner
        if member.islnk():
            # Hard links name their target from the archive's root, top folder included.
            member.linkname = member.linkname.partition("/")[2]
        count += 1
        total += max(member.size, 0)
        if count > MAX_FILES:
            raise CheckoutError(f"the repository has more than {MAX_FILES} entries")
        if total > max_bytes:
            raise CheckoutError(f"the repository holds more than {max_bytes} bytes")
        yield member


def _files(root: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder, dirs, names in os.walk(root):
        # A link to a folder is an entry of its own (its target), never walked into.
        links = [d for d in dirs if Path(folder, d).is_symlink()]
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS and d not in links)
        for name in [*names, *links]:
            path = Path(folder, name)
            found[path.relative_to(root).as_posix()] = path
    return found


def _content(path: Path | None) -> bytes | None:
    if path is None:
        return None
    if path.is_symlink():
        return f"-> {os.readlink(path)}".encode()
    if not path.is_file():
        return None
    return path.read_bytes()


def _text(data: bytes) -> list[str] | None:
    if b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8").splitlines(keepends=True)
    except UnicodeDecodeError:
        return None


def _file_diff(rel: str, before: bytes | None, after: bytes | None) -> str:
    head = f"diff --git a/{rel} b/{rel}\n"
    if before is None:
        head += "new file mode 100644\n"
    elif after is None:
        head += "deleted file mode 100644\n"
    old_lines, new_lines = _text(before or b""), _text(after or b"")
    if old_lines is None or new_lines is None:
        return head + f"Binary files a/{rel} and b/{rel} differ\n"
    lines = difflib.unified_diff(
        old_lines,
        new_lines,
        fromfile=f"a/{rel}" if before is not None else "/dev/null",
        tofile=f"b/{rel}" if after is not None else "/dev/null",
    )
    body = "".join(
        line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines
    )
    return head + body


def tree_diff(before: Path, after: Path, *, max_bytes: int) -> str:
    """A unified diff of ``after`` against ``before``, ``git diff`` style, at most ``max_bytes``.

    Blocking (it reads both trees): run it in a thread. ``.git`` folders are left out.
    """
    old, new = _files(before), _files(after)
    parts: list[str] = []
    size = 0
    for rel in sorted(old.keys() | new.keys()):
        a, b = _content(old.get(rel)), _content(new.get(rel))
        if a == b:
            continue
        part = _file_diff(rel, a, b)
        size += len(part.encode())
        if size > max_bytes:
            parts.append(f"[the diff is cut here: it is longer than {max_bytes} bytes]\n")
            break
        parts.append(part)
    return "".join(parts)

"""The Git Data part of the fake GitHub: blobs, trees and commits as git objects, one store per
repository, and the JSON GitHub answers about them.

Object ids are computed the way git computes them (SHA-1 over ``"<type> <size>\\0<body>"``, trees
with their entries sorted as git sorts them), so equal content always gets an equal id: a
retried write makes nothing new, and a test can compare trees by their id. Only the rules
GitHub enforces that a client can run into are modelled: unknown objects, a base tree that is
no tree, an entry with both ``sha`` and ``content``, a parent that is not a commit.

``FakeGitHub`` (``github.py``) mounts it: its git-data routes call ``GitObjects`` and turn a
``GitDataError`` into GitHub's error answer. Files seeded with ``FakeGitHub.set_file`` become a
tree when a commit's tree is first asked for (``tree_from_files``), with mode ``100644`` unless
``modes`` says otherwise.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

__all__ = [
    "BLOB_MODES",
    "GitCommit",
    "GitDataError",
    "GitObjects",
    "TreeEntry",
    "object_id",
    "ref_json",
]

TREE_MODE: Final = "040000"
BLOB_MODES: Final = frozenset({"100644", "100755", "120000"})
MODES: Final = frozenset({*BLOB_MODES, TREE_MODE, "160000"})


class GitDataError(Exception):
    """A refusal GitHub would answer with ``status`` and ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def object_id(kind: str, body: bytes) -> str:
    """The git object id of ``body`` as an object of ``kind`` (blob, tree, commit)."""
    header = f"{kind} {len(body)}\0".encode()
    return hashlib.sha1(header + body, usedforsecurity=False).hexdigest()


@dataclass(frozen=True, slots=True)
class TreeEntry:
    mode: str
    type: str  # blob | tree | commit
    sha: str


@dataclass(frozen=True, slots=True)
class GitCommit:
    sha: str
    tree: str
    parents: tuple[str, ...]
    message: str
    author: Mapping[str, str]
    committer: Mapping[str, str]


def _person(data: Any, default: Mapping[str, str], now: str) -> dict[str, str]:
    if not isinstance(data, Mapping):
        return {**default, "date": default.get("date") or now}
    return {
        "name": str(data.get("name") or default["name"]),
        "email": str(data.get("email") or default["email"]),
        "date": str(data.get("date") or now),
    }


def _signature(person: Mapping[str, str]) -> str:
    when = datetime.fromisoformat(person["date"].replace("Z", "+00:00"))
    return f"{person['name']} <{person['email']}> {int(when.timestamp())} +0000"


@dataclass
class GitObjects:
    """One repository's git objects."""

    blobs: dict[str, bytes] = field(default_factory=dict)
    trees: dict[str, dict[str, TreeEntry]] = field(default_factory=dict)  # sha -> name -> entry
    commits: dict[str, GitCommit] = field(default_factory=dict)
    #: Modes of seeded files by path (``100644`` when absent), e.g. ``100755`` for a script.
    modes: dict[str, str] = field(default_factory=dict)

    # ------------------------------------------------------------------ objects

    def add_blob(self, data: bytes) -> str:
        sha = object_id("blob", data)
        self.blobs[sha] = data
        return sha

    def _add_tree(self, entries: Mapping[str, TreeEntry]) -> str:
        def order(name: str) -> bytes:
            return (name + "/" if entries[name].type == "tree" else name).encode()

        body = b"".join(
            f"{entries[name].mode.lstrip('0')} {name}\0".encode() + bytes.fromhex(entries[name].sha)
            for name in sorted(entries, key=order)
        )
        sha = object_id("tree", body)
        self.trees[sha] = dict(entries)
        return sha

    def _nest(self, flat: Mapping[str, TreeEntry]) -> str:
        """The root tree id of a flat ``path -> entry`` map (subtrees made as needed)."""
        here: dict[str, TreeEntry] = {}
        below: dict[str, dict[str, TreeEntry]] = {}
        for path, entry in flat.items():
            head, sep, rest = path.partition("/")
            if sep:
                below.setdefault(head, {})[rest] = entry
            else:
                here[head] = entry
        for name, inner in below.items():
            here[name] = TreeEntry(TREE_MODE, "tree", self._nest(inner))
        return self._add_tree(here)

    def flatten(self, tree: str, prefix: str = "") -> dict[str, TreeEntry]:
        """Every blob (and submodule) under ``tree``, by full path."""
        out: dict[str, TreeEntry] = {}
        for name, entry in self.trees[tree].items():
            if entry.type == "tree":
                out.update(self.flatten(entry.sha, f"{prefix}{name}/"))
            else:
                out[f"{prefix}{name}"] = entry
        return out

    def tree_from_files(self, files: Mapping[str, str | bytes]) -> str:
        """A tree holding exactly ``files`` (seeded text), with the modes of ``modes``."""
        flat = {
            path: TreeEntry(
                self.modes.get(path, "100644"),
                "blob",
                self.add_blob(text.encode() if isinstance(text, str) else text),
            )
            for path, text in files.items()
        }
        return self._nest(flat)

    def files(self, tree: str) -> dict[str, bytes]:
        """The content of every blob under ``tree``, by path."""
        return {
            path: self.blobs[entry.sha]
            for path, entry in self.flatten(tree).items()
            if entry.type == "blob"
        }

    # ------------------------------------------------------------------ the API's writes

    def create_tree(self, entries: Sequence[Any], base_tree: str | None) -> str:
        """``POST /git/trees``: ``entries`` on top of ``base_tree`` (or of nothing)."""
        if base_tree is not None and base_tree not in self.trees:
            raise GitDataError(404, f"base_tree {base_tree} is not a tree in this repository")
        flat = self.flatten(base_tree) if base_tree is not None else {}
        for item in entries:
            if not isinstance(item, Mapping) or not item.get("path"):
                raise GitDataError(422, "tree.path is required")
            path = str(item["path"]).strip("/")
            mode, kind = str(item.get("mode", "")), str(item.get("type", ""))
            if "sha" in item and "content" in item:
                raise GitDataError(422, "Use either tree.sha or content, not both")
            if mode not in MODES or kind not in {"blob", "tree", "commit"}:
                raise GitDataError(422, f"Invalid tree info for {path}: mode {mode}, type {kind}")
            if "content" in item:
                sha = self.add_blob(str(item["content"]).encode())
            elif item.get("sha") is None:
                for known in [p for p in flat if p == path or p.startswith(path + "/")]:
                    del flat[known]
                continue
            else:
                sha = str(item["sha"])
            if kind == "blob" and sha not in self.blobs:
                raise GitDataError(422, f"tree.sha {sha} is not a blob")
            if kind == "tree":
                if sha not in self.trees:
                    raise GitDataError(422, f"tree.sha {sha} is not a tree")
                for known in [p for p in flat if p.startswith(path + "/")]:
                    del flat[known]
                for inner, entry in self.flatten(sha).items():
                    flat[f"{path}/{inner}"] = entry
                continue
            flat[path] = TreeEntry(mode, kind, sha)
        return self._nest(flat)

    def create_commit(
        self,
        *,
        message: str,
        tree: str,
        parents: Sequence[str],
        author: Any,
        committer: Any,
        default_person: Mapping[str, str],
        now: float,
        known_commit: Callable[[str], bool],
    ) -> GitCommit:
        """``POST /git/commits``. ``known_commit(sha)`` says whether a parent exists (commits
        the fake was seeded with are not in this store)."""
        if tree not in self.trees:
            raise GitDataError(422, f"Tree SHA {tree} does not exist")
        for parent in parents:
            if parent not in self.commits and not known_commit(parent):
                raise GitDataError(422, f"Parent SHA {parent} does not exist or is not a commit")
        stamp = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        who = _person(author, default_person, stamp)
        by = _person(committer, who, stamp) if committer is not None else dict(who)
        body = "".join(
            [
                f"tree {tree}\n",
                *(f"parent {p}\n" for p in parents),
                f"author {_signature(who)}\n",
                f"committer {_signature(by)}\n\n",
                message,
            ]
        ).encode()
        commit = GitCommit(object_id("commit", body), tree, tuple(parents), message, who, by)
        self.commits[commit.sha] = commit
        return commit

    # ------------------------------------------------------------------ JSON

    def commit_json(self, commit: GitCommit, api: str, full_name: str) -> dict[str, Any]:
        base = f"{api}/repos/{full_name}"
        return {
            "sha": commit.sha,
            "node_id": f"C_{commit.sha[:16]}",
            "url": f"{base}/git/commits/{commit.sha}",
            "html_url": f"https://github.com/{full_name}/commit/{commit.sha}",
            "author": dict(commit.author),
            "committer": dict(commit.committer),
            "message": commit.message,
            "tree": {"sha": commit.tree, "url": f"{base}/git/trees/{commit.tree}"},
            "parents": [
                {
                    "sha": p,
                    "url": f"{base}/git/commits/{p}",
                    "html_url": f"https://github.com/{full_name}/commit/{p}",
                }
                for p in commit.parents
            ],
            "verification": {
                "verified": False,
                "reason": "unsigned",
                "signature": None,
                "payload": None,
                "verified_at": None,
            },
        }

    def tree_json(self, tree: str, api: str, full_name: str, *, recursive: bool) -> dict[str, Any]:
        base = f"{api}/repos/{full_name}"
        listed = dict(self._walk(tree)) if recursive else self.trees[tree]
        items = []
        for path, entry in sorted(listed.items()):
            item: dict[str, Any] = {
                "path": path,
                "mode": entry.mode,
                "type": entry.type,
                "sha": entry.sha,
                "url": f"{base}/git/{entry.type}s/{entry.sha}",
            }
            if entry.type == "blob":
                item["size"] = len(self.blobs[entry.sha])
            items.append(item)
        return {
            "sha": tree,
            "url": f"{base}/git/trees/{tree}",
            "tree": items,
            "truncated": False,
        }

    def _walk(self, tree: str, prefix: str = "") -> list[tuple[str, TreeEntry]]:
        out: list[tuple[str, TreeEntry]] = []
        for name, entry in self.trees[tree].items():
            out.append((f"{prefix}{name}", entry))
            if entry.type == "tree":
                out += self._walk(entry.sha, f"{prefix}{name}/")
        return out


def ref_json(ref: str, sha: str, api: str, full_name: str) -> dict[str, Any]:
    base = f"{api}/repos/{full_name}"
    return {
        "ref": ref,
        "node_id": f"REF_{hashlib.sha1(ref.encode(), usedforsecurity=False).hexdigest()[:16]}",
        "url": f"{base}/git/{ref}",
        "object": {"type": "commit", "sha": sha, "url": f"{base}/git/commits/{sha}"},
    }

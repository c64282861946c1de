"""Who may make the bot spend money or act: a repository permission, read from GitHub.

Every action a person triggers by hand (the Re-review button, a slash-command, the Approve merge
button) costs money or changes the repository, so it is checked against the person's permission
on the repository at the moment they ask, never against a cached or payload-supplied role.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gidgethub
from gidgethub.abc import GitHubAPI

from app.repo_config import Permission

__all__ = ["fetch_permission", "permission_of"]

# The legacy ``permission`` field says "write" for maintain and "read" for triage; custom roles
# appear only in ``role_name``. The higher of the two readings wins.
_LEGACY = {"admin": Permission.ADMIN, "write": Permission.WRITE, "read": Permission.READ}
_ROLES = {p.value: p for p in Permission}


def permission_of(data: Mapping[str, Any]) -> Permission | None:
    """The permission ``GET …/collaborators/{user}/permission`` grants; None for no access."""
    found = [
        p
        for p in (
            _LEGACY.get(str(data.get("permission") or "")),
            _ROLES.get(str(data.get("role_name") or "")),
        )
        if p is not None
    ]
    return max(found, key=lambda p: p.rank) if found else None


async def fetch_permission(gh: GitHubAPI, repository: str, login: str) -> Permission | None:
    """``login``'s permission on ``repository`` now; None when they have none (or no account)."""
    try:
        data = await gh.getitem(f"/repos/{repository}/collaborators/{login}/permission")
    except gidgethub.BadRequest as exc:
        if int(exc.status_code) in {403, 404}:
            return None
        raise
    return permission_of(data)

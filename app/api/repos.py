"""A repository as the App sees it: its installation, default branch and configuration.

The API holds requests to the same rules as the App's reviews, so it reads them the same way:
``.github/aigateway.yml`` from the default branch (with the owner's defaults) through the
App's installation, parsed and cached by ``ConfigLoader``. A repository's installation
(``GET /repos/{o}/{r}/installation`` as the App) and default branch are asked of GitHub once and
remembered for :data:`INSTALLATION_TTL_SECONDS`.

A repository the App is not installed on has no configuration to read: a diff review or a
question is held to the defaults and the operator's budgets, as a repository without the file
would be; a pull request or a job, which need the installation's token, are refused (422). A
GitHub failure while reading is a 502: never silently the defaults, which could be looser than
what the repository configured.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import aiohttp
import gidgethub
from gidgethub.abc import GitHubAPI

from app.api.auth import ApiError
from app.config_loader import ConfigLoader
from app.repo_config import RepoConfig
from app.services import Services

__all__ = ["RepoContext", "Repositories"]

INSTALLATION_TTL_SECONDS: Final = 600.0


@dataclass(frozen=True, slots=True)
class RepoContext:
    repository: str
    installation_id: int | None
    default_branch: str | None
    config: RepoConfig


def github_failed(what: str, exc: Exception) -> ApiError:
    status = getattr(exc, "status_code", None)
    detail = f"GitHub answered {int(status)}" if status is not None else type(exc).__name__
    return ApiError(502, "github_error", f"{what}: {detail}")


class Repositories:
    def __init__(self, services: Services, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._services = services
        self._clock = clock
        self._installations: dict[str, tuple[int | None, float]] = {}
        self._branches: dict[str, tuple[str, float]] = {}
        self._loader = ConfigLoader()

    async def installation(self, repository: str) -> int | None:
        """The App's installation on ``repository``, None when it is not installed there."""
        key = repository.lower()
        cached = self._installations.get(key)
        if cached is not None and self._clock() - cached[1] < INSTALLATION_TTL_SECONDS:
            return cached[0]
        try:
            data = await self._services.auth.jwt_client().getitem(
                f"/repos/{repository}/installation"
            )
            found: int | None = int(data["id"])
        except gidgethub.BadRequest as exc:
            if int(exc.status_code) != 404:
                raise github_failed(f"the App's installation on {repository}", exc) from exc
            found = None
        except (gidgethub.GitHubException, aiohttp.ClientError, TimeoutError) as exc:
            raise github_failed(f"the App's installation on {repository}", exc) from exc
        self._installations[key] = (found, self._clock())
        return found

    def github(self, installation_id: int) -> GitHubAPI:
        return self._services.github_for(installation_id)

    async def context(self, repository: str, *, installed: bool = False) -> RepoContext:
        """The repository's installation and configuration; ``installed`` makes an App that is
        not installed there a 422."""
        installation_id = await self.installation(repository)
        if installation_id is None:
            if installed:
                raise ApiError(
                    422, "not_installed", f"the GitHub App is not installed on {repository}"
                )
            return RepoContext(repository, None, None, RepoConfig())
        gh = self.github(installation_id)
        loader = self._services.config_loader or self._loader
        key = repository.lower()
        try:
            branch = self._branches.get(key)
            if branch is None or self._clock() - branch[1] >= INSTALLATION_TTL_SECONDS:
                data = await gh.getitem(f"/repos/{repository}")
                branch = (str(data.get("default_branch") or "main"), self._clock())
                self._branches[key] = branch
            default_branch = branch[0]
            # Read every time (cached by its blob sha): a changed config applies at once.
            loaded = await loader.load(gh, repository, default_branch)
        except gidgethub.BadRequest as exc:
            if int(exc.status_code) == 404:
                raise ApiError(404, "not_found", f"GitHub has no repository {repository}") from exc
            raise github_failed(f"the configuration of {repository}", exc) from exc
        except (gidgethub.GitHubException, aiohttp.ClientError, TimeoutError) as exc:
            raise github_failed(f"the configuration of {repository}", exc) from exc
        return RepoContext(repository, installation_id, default_branch, loaded.config)

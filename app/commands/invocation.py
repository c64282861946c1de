"""What a command receives, and what it answers: the shapes every command module shares."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gidgethub.abc import GitHubAPI

from app.commands.parse import Command
from app.repo_config import ConfigResult, RepoConfig
from app.review.pipeline import PullRequest

if TYPE_CHECKING:  # app.handlers imports the commands; the context is only a type here
    from app.handlers.context import HandlerContext

__all__ = ["Invocation", "Outcome", "Runner"]


@dataclass(frozen=True, slots=True)
class Invocation:
    """One command line, with everything fetched for it before it runs."""

    gh: GitHubAPI
    ctx: HandlerContext
    pr: PullRequest
    loaded: ConfigResult
    command: Command
    requester: str

    @property
    def config(self) -> RepoConfig:
        return self.loaded.config


@dataclass(frozen=True, slots=True)
class Outcome:
    """The reply's text (Markdown, written by us) and whether the command did what was asked."""

    ok: bool
    text: str


Runner = Callable[[Invocation], Awaitable[Outcome]]

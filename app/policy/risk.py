"""Risk tiers for changed paths: how much damage a wrong change to a file could do.

The tier of a pull request is the highest tier among its paths, because one risky file is enough
to make a change risky; a pull request with no paths is ``low``, since there is nothing to harm.

Precedence, decided for safety first and explained in every row of the check run's table:

1. **Pinned** — the bot's own configuration file (``.github/aigateway.yml``) is always
   ``critical``. A repository's rules cannot lower it: a change that rewrites the rules judging
   changes must never be merged by the bot those rules govern.
2. **Repository rules** (``risk.rules`` in the config), in file order; the *first* matching rule
   wins, so a repository can write a specific exception above a broad rule, exactly as it reads.
   They are allowed to lower a built-in tier (the repository owns that judgement, and the config
   is only ever read from the default branch, so a pull request cannot change it for itself).
3. **Built-in rules**; the *highest* matching built-in tier wins, so ``docs/auth/login.md`` is
   ``high`` (auth), not ``low`` (docs). Guessing low for something that is also security code
   is the mistake we cannot afford; guessing high costs a human a look.
4. Anything else is ``medium``.

A rename is judged by both names, the higher tier winning: moving a file out of ``infra/`` is as
risky as editing it there. Globs are gitignore-style (``pathspec``'s ``GitIgnoreSpec``): a
pattern without a slash matches at any depth, one with a slash is anchored to the root, ``**``
crosses directories. Compiled specs are cached, because the classifier runs for thousands of
paths per pull request while the rule sets almost never change.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple, Protocol

from pathspec import GitIgnoreSpec

__all__ = [
    "BUILTIN_RULES",
    "PINNED_CRITICAL",
    "PathChange",
    "PathRisk",
    "RiskReport",
    "RiskRuleLike",
    "RuleMatch",
    "RuleSource",
    "Tier",
    "classify_path",
    "classify_paths",
    "render_risk_table",
]


class Tier(StrEnum):
    """A risk tier, ordered ``low < medium < high < critical``.

    A ``StrEnum`` so the config and the JSON Schema spell tiers as words; the comparison operators
    are overridden to follow risk rather than alphabetical order (``"critical" < "low"`` as
    strings, which is exactly the bug an ordering helper exists to prevent).
    """

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _TIER_RANK[self]

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Tier):
            return NotImplemented
        return self.rank < other.rank

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Tier):
            return NotImplemented
        return self.rank <= other.rank

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Tier):
            return NotImplemented
        return self.rank > other.rank

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Tier):
            return NotImplemented
        return self.rank >= other.rank

    @classmethod
    def highest(cls, tiers: Iterable[Tier]) -> Tier:
        """The riskiest of ``tiers``; ``low`` for none, since an empty change can harm nothing."""
        return max(tiers, default=cls.LOW)


_TIER_RANK: Mapping[Tier, int] = {
    Tier.LOW: 0,
    Tier.MEDIUM: 1,
    Tier.HIGH: 2,
    Tier.CRITICAL: 3,
}


class RuleSource(StrEnum):
    """Where the rule that decided a path's tier came from, shown in the check run's table."""

    PINNED = "pinned"
    CONFIG = "config"
    BUILTIN = "built-in"
    FALLBACK = "fallback"


#: Paths that are always ``critical``, whatever the repository's rules say.
PINNED_CRITICAL: tuple[str, ...] = (".github/aigateway.yml",)

#: The built-in rules by tier (``medium`` is the fallback for anything unmatched).
BUILTIN_RULES: Mapping[Tier, tuple[str, ...]] = {
    Tier.CRITICAL: (
        # CI and automation run with the repository's secrets.
        ".github/workflows/**",
        ".github/actions/**",
        # The bot's own rules, and who gets asked to review.
        ".github/aigateway.yml",
        "/CODEOWNERS",
        ".github/CODEOWNERS",
        "docs/CODEOWNERS",
        # Secrets and keys.
        "**/*.pem",
        "**/*.key",
        "**/.env*",
        "**/*secret*",
        # Infrastructure.
        "**/*.tf",
        "infra/**",
        "deploy/**",
        "k8s/**",
        "helm/**",
    ),
    Tier.HIGH: (
        # Authentication, security and cryptography.
        "**/auth/**",
        "**/security/**",
        "**/crypto/**",
        # Migrations and SQL change data that cannot be rolled back by a revert.
        "**/migrations/**",
        "**/*.sql",
        # Dependency manifests and lock files pull in code nobody here reviewed.
        "*requirements*.txt",
        "**/requirements/**",
        "*requirements*.in",
        "constraints*.txt",
        "constraints*.in",
        "environment.yml",
        "environment.yaml",
        "conda-lock.yml",
        "go.work",
        "package.json",
        "npm-shrinkwrap.json",
        "bun.lock*",
        "package-lock.json",
        "yarn.lock",
        "pnpm-lock.yaml",
        "poetry.lock",
        "Pipfile*",
        "go.mod",
        "go.sum",
        "Cargo.toml",
        "Cargo.lock",
        "Gemfile*",
        "composer.*",
        "uv.lock",
        # Build files run at build time with the builder's privileges.
        "Dockerfile*",
        "Makefile",
        "setup.py",
        "setup.cfg",
        "pyproject.toml",
        "*.gradle",
        "pom.xml",
        # Permissions and access control.
        "**/permissions/**",
        "**/acl/**",
        "**/rbac/**",
        "**/*permission*",
    ),
    Tier.LOW: (
        # Documentation.
        "docs/**",
        "**/*.md",
        "**/*.rst",
        # Tests.
        "tests/**",
        "**/test_*.py",
        "**/*_test.go",
        "**/*.spec.*",
        "**/*.test.*",
    ),
}


class RiskRuleLike(Protocol):
    """A repository risk rule, as ``app.repo_config.RiskRule`` provides it.

    A protocol rather than an import so that the config module can import ``Tier`` from here
    without a cycle.
    """

    @property
    def paths(self) -> Sequence[str]: ...

    @property
    def tier(self) -> Tier: ...


class PathChange(NamedTuple):
    """One changed file; ``previous_path`` is set for a rename."""

    path: str
    previous_path: str | None = None


@dataclass(frozen=True, slots=True)
class RuleMatch:
    """Which rule gave ``name`` its tier; ``glob`` is ``None`` for the ``medium`` fallback."""

    tier: Tier
    source: RuleSource
    glob: str | None
    name: str

    def describe(self) -> str:
        """The rule as one table cell, e.g. ``**/*.md`` (built-in)."""
        if self.glob is None:
            return "no rule matched (default: medium)"
        return f"{_code(self.glob)} ({self.source.value})"


@dataclass(frozen=True, slots=True)
class PathRisk:
    """A changed path with its tier and the rule that decided it (for a rename, the riskier name)."""

    path: str
    previous_path: str | None
    tier: Tier
    match: RuleMatch


@dataclass(frozen=True, slots=True)
class RiskReport:
    """The pull request's tier and, per path, why."""

    tier: Tier
    paths: tuple[PathRisk, ...]

    @property
    def driving_paths(self) -> tuple[str, ...]:
        """Every name (old and new, for renames) of the paths at the PR's tier.

        These are the paths whose code owners an escalation asks for: the files that made the
        change risky, not every file it touched.
        """
        names: list[str] = []
        for entry in self.paths:
            if entry.tier is not self.tier:
                continue
            names.append(entry.path)
            if entry.previous_path is not None and entry.previous_path != entry.path:
                names.append(entry.previous_path)
        return tuple(dict.fromkeys(names))

    def count(self, tier: Tier) -> int:
        return sum(1 for entry in self.paths if entry.tier is tier)


@dataclass(frozen=True, slots=True)
class _CompiledRule:
    tier: Tier
    source: RuleSource
    globs: tuple[str, ...]
    spec: GitIgnoreSpec

    def match(self, name: str) -> RuleMatch | None:
        result = self.spec.check_file(name)
        if not result.include or result.index is None:
            return None
        return RuleMatch(self.tier, self.source, self.globs[result.index], name)


def _compile(tier: Tier, source: RuleSource, globs: tuple[str, ...]) -> _CompiledRule:
    return _CompiledRule(tier, source, globs, GitIgnoreSpec.from_lines(globs))


@functools.cache
def _builtin_rules() -> tuple[_CompiledRule, ...]:
    """Pinned first, then built-in tiers from the highest down, so the first match is the highest."""
    return (
        _compile(Tier.CRITICAL, RuleSource.PINNED, PINNED_CRITICAL),
        *(
            _compile(tier, RuleSource.BUILTIN, BUILTIN_RULES[tier])
            for tier in sorted(BUILTIN_RULES, reverse=True)
        ),
    )


_ConfigKey = tuple[tuple[tuple[str, ...], Tier], ...]


@functools.lru_cache(maxsize=256)
def _config_rules(key: _ConfigKey) -> tuple[_CompiledRule, ...]:
    """Compiled repository rules, cached by their content (one entry per distinct config)."""
    return tuple(_compile(tier, RuleSource.CONFIG, globs) for globs, tier in key)


def _config_key(rules: Iterable[RiskRuleLike]) -> _ConfigKey:
    return tuple((tuple(rule.paths), Tier(rule.tier)) for rule in rules)


def _classify_name(name: str, config: tuple[_CompiledRule, ...]) -> RuleMatch:
    pinned, *builtin = _builtin_rules()
    for rule in (pinned, *config, *builtin):
        found = rule.match(name)
        if found is not None:
            return found
    return RuleMatch(Tier.MEDIUM, RuleSource.FALLBACK, None, name)


def _normalise(path: str) -> str:
    # GitHub reports repository-relative POSIX paths; a leading slash would defeat anchoring.
    return path.lstrip("/")


def classify_path(path: str, config_rules: Iterable[RiskRuleLike] = ()) -> RuleMatch:
    """The tier of one path and the rule that decided it."""
    return _classify_name(_normalise(path), _config_rules(_config_key(config_rules)))


def classify_paths(
    paths: Iterable[PathChange | str],
    config_rules: Iterable[RiskRuleLike] = (),
) -> RiskReport:
    """Classify every changed path; the report's tier is the highest, ``low`` for no paths."""
    config = _config_rules(_config_key(config_rules))
    entries: list[PathRisk] = []
    for change in paths:
        item = PathChange(change) if isinstance(change, str) else change
        match = _classify_name(_normalise(item.path), config)
        if item.previous_path is not None and item.previous_path != item.path:
            before = _classify_name(_normalise(item.previous_path), config)
            if before.tier > match.tier:
                match = before
        entries.append(PathRisk(item.path, item.previous_path, match.tier, match))
    return RiskReport(Tier.highest(entry.tier for entry in entries), tuple(entries))


def _code(text: str) -> str:
    """``text`` as inline code that survives a markdown table (pipes and backticks escaped)."""
    if "`" in text:
        escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        return "<code>" + escaped.replace("|", "&#124;").replace("`", "&#96;") + "</code>"
    return "`" + text.replace("|", "\\|") + "`"


def render_risk_table(report: RiskReport, *, limit: int = 50) -> str:
    """A markdown table of paths, tier and rule, riskiest first, truncated with a count.

    Riskiest first so that when a large pull request is truncated, what is hidden is the least
    interesting part.
    """
    total = len(report.paths)
    summary = ", ".join(
        f"{report.count(tier)} {tier.value}"
        for tier in sorted(Tier, reverse=True)
        if report.count(tier)
    )
    noun = "path" if total == 1 else "paths"
    lines = [
        f"**Risk tier: {report.tier.value}** ({total} {noun}" + (f": {summary})" if total else ")")
    ]
    if not total:
        return lines[0] + "\n"
    lines += ["", "| path | tier | rule |", "|---|---|---|"]
    ordered = sorted(report.paths, key=lambda entry: entry.tier, reverse=True)
    for entry in ordered[: max(limit, 0)]:
        name = _code(entry.path)
        if entry.previous_path is not None and entry.previous_path != entry.path:
            name = f"{_code(entry.previous_path)} → {name}"
        lines.append(f"| {name} | {entry.tier.value} | {entry.match.describe()} |")
    hidden = total - min(max(limit, 0), total)
    if hidden:
        lines += ["", f"… and {hidden} more {'path' if hidden == 1 else 'paths'} not shown."]
    return "\n".join(lines) + "\n"

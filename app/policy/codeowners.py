"""Code owners: who should look at an escalated change, by GitHub's own CODEOWNERS rules.

GitHub's patterns look like gitignore's but differ, so they are matched here rather than with
``pathspec``: a pattern with no slash (or only a trailing one) matches at any depth; a leading
slash, or a slash inside the pattern, anchors it to the root; a trailing slash matches everything
below that directory; ``*`` never crosses ``/``, and a final lone ``*`` (``docs/*``) matches only
the files directly inside, not deeper ones; ``**`` matches any number of directories; any other
pattern also matches everything below a directory of that name. ``!`` negation is not supported
(GitHub skips such lines, and so do we). The *last* matching rule wins, and a rule with no owners
means "nobody", which is how a CODEOWNERS file carves an exception out of a broad rule.

Owners are ``@user``, ``@org/team`` or e-mail addresses. Users and teams are kept apart because
GitHub requests them through different fields; e-mail addresses are dropped, since mapping them
to accounts needs an API call and a guess.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Final, NamedTuple

__all__ = [
    "CODEOWNERS_PATHS",
    "MAX_REQUESTED_REVIEWERS",
    "CodeOwners",
    "OwnerRule",
    "Owners",
    "find_codeowners_file",
    "parse_codeowners",
    "select_reviewers",
]

#: Where GitHub looks, in its order of precedence: the first file that exists is the one used.
CODEOWNERS_PATHS: Final = (".github/CODEOWNERS", "CODEOWNERS", "docs/CODEOWNERS")

#: GitHub refuses a review request naming more than this many reviewers and teams together.
MAX_REQUESTED_REVIEWERS: Final = 15

_USER = re.compile(r"^@([A-Za-z0-9](?:[A-Za-z0-9-]{0,38}))$")
_TEAM = re.compile(r"^@([A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9][A-Za-z0-9._-]*)$")
_NEVER: Final = re.compile(r"(?!)")


class Owners(NamedTuple):
    """Users (logins, no ``@``) and teams (``org/slug`` from CODEOWNERS)."""

    users: tuple[str, ...] = ()
    teams: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class OwnerRule:
    pattern: str
    line: int
    users: tuple[str, ...]
    teams: tuple[str, ...]
    regex: re.Pattern[str] = field(compare=False, repr=False)

    def matches(self, path: str) -> bool:
        return self.regex.fullmatch(path) is not None


@dataclass(frozen=True, slots=True)
class CodeOwners:
    """A parsed CODEOWNERS file; ``skipped_lines`` are the 1-based lines GitHub would ignore."""

    rules: tuple[OwnerRule, ...] = ()
    skipped_lines: tuple[int, ...] = ()

    def rule_for(self, path: str) -> OwnerRule | None:
        """The last rule matching ``path`` (GitHub's precedence), or ``None``."""
        path = path.lstrip("/")
        for rule in reversed(self.rules):
            if rule.matches(path):
                return rule
        return None

    def owners_for(self, paths: Iterable[str]) -> Owners:
        """Everyone owning any of ``paths``, in first-seen order, without duplicates."""
        users: dict[str, str] = {}
        teams: dict[str, str] = {}
        for path in paths:
            rule = self.rule_for(path)
            if rule is None:
                continue
            for user in rule.users:
                users.setdefault(user.casefold(), user)
            for team in rule.teams:
                teams.setdefault(team.casefold(), team)
        return Owners(tuple(users.values()), tuple(teams.values()))


def _segment_regex(segment: str) -> str:
    out: list[str] = []
    escaped = False
    for char in segment:
        if escaped:
            out.append(re.escape(char))
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        else:
            out.append(re.escape(char))
    return "".join(out)


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Translate one CODEOWNERS pattern into a regular expression over the whole path."""
    if pattern == "/":
        return _NEVER
    segments = pattern.split("/")
    if segments[0] == "":
        segments = segments[1:]  # leading slash: anchored to the root
    elif (len(segments) == 1 or (len(segments) == 2 and segments[1] == "")) and segments[0] != "**":
        segments = ["**", *segments]  # a bare name matches at any depth
    if len(segments) > 1 and segments[-1] == "":
        segments[-1] = "**"  # a trailing slash means everything below
    last = len(segments) - 1
    out: list[str] = []
    need_slash = False
    for i, segment in enumerate(segments):
        if segment == "**":
            if i == 0 and i == last:
                out.append(".+")
            elif i == 0:
                out.append("(?:.+/)?")
                need_slash = False
            elif i == last:
                out.append("/.*")
            else:
                out.append("(?:/.+)?")
                need_slash = True
            continue
        if need_slash:
            out.append("/")
        if segment == "*":
            out.append("[^/]+")  # a lone final '*' matches direct children only
        else:
            out.append(_segment_regex(segment))
            if i == last:
                out.append("(?:/.*)?")  # a name also matches everything below it
        need_slash = True
    return re.compile("".join(out))


def _split_pattern(line: str) -> tuple[str, str]:
    """The pattern (which may contain backslash-escaped spaces) and the rest of the line."""
    for i, char in enumerate(line):
        if char.isspace() and (i == 0 or line[i - 1] != "\\"):
            return line[:i].replace("\\ ", " "), line[i:]
    return line.replace("\\ ", " "), ""


def parse_codeowners(text: str) -> CodeOwners:
    """Parse a CODEOWNERS file; lines GitHub would reject are skipped and reported by number."""
    rules: list[OwnerRule] = []
    skipped: list[int] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pattern, rest = _split_pattern(line)
        if pattern.startswith("!") or "***" in pattern:
            skipped.append(number)
            continue
        users: list[str] = []
        teams: list[str] = []
        for token in rest.split():
            if token.startswith("#"):
                break  # an inline comment ends the owners
            if team := _TEAM.match(token):
                teams.append(team.group(1))
            elif user := _USER.match(token):
                users.append(user.group(1))
            # E-mail owners, and tokens GitHub would not accept, are dropped.
        try:
            regex = _pattern_regex(pattern)
        except re.error:  # pragma: no cover - every segment is escaped; kept for safety
            skipped.append(number)
            continue
        rules.append(OwnerRule(pattern, number, tuple(users), tuple(teams), regex))
    return CodeOwners(tuple(rules), tuple(skipped))


def find_codeowners_file(available: Collection[str]) -> str | None:
    """The CODEOWNERS path GitHub would use among the ``available`` ones (first in its order)."""
    for path in CODEOWNERS_PATHS:
        if path in available:
            return path
    return None


def _people(names: Iterable[str], exclude: str) -> list[str]:
    seen: dict[str, str] = {}
    for name in names:
        login = name.strip().removeprefix("@")
        if login and login.casefold() != exclude and login.casefold() not in seen:
            seen[login.casefold()] = login
    return list(seen.values())


def _team_slugs(names: Iterable[str]) -> list[str]:
    """Team slugs, as the review-request API takes them (``org/slug`` → ``slug``)."""
    seen: dict[str, str] = {}
    for name in names:
        slug = name.strip().removeprefix("@").rpartition("/")[2]
        if slug and slug.casefold() not in seen:
            seen[slug.casefold()] = slug
    return list(seen.values())


def select_reviewers(
    owner_users: Iterable[str],
    owner_teams: Iterable[str],
    config_reviewers: Iterable[str],
    config_teams: Iterable[str],
    *,
    pr_author: str,
    limit: int = MAX_REQUESTED_REVIEWERS,
) -> Owners:
    """Whom to ask: the code owners of the risky paths, else the configured escalation people.

    The author is never asked (GitHub rejects the request, and it would be no review at all);
    if removing the author leaves no code owner, the configured people are asked instead. Users
    come before teams when the list is capped, because a named person is likelier to answer.
    Teams come back as slugs, ready for ``team_reviewers``.
    """
    author = pr_author.strip().removeprefix("@").casefold()
    users, teams = _people(owner_users, author), _team_slugs(owner_teams)
    if not users and not teams:
        users, teams = _people(config_reviewers, author), _team_slugs(config_teams)
    users = users[: max(limit, 0)]
    teams = teams[: max(limit - len(users), 0)]
    return Owners(tuple(users), tuple(teams))

"""The filters of a dashboard request (``?repo=owner/name&since=YYYY-MM-DD&until=YYYY-MM-DD``).

Pure: parsed from the query string and checked against what the viewer may see, with one clear
message per mistake (the views answer it as a 400). Days are UTC calendar days, both included.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Final

__all__ = ["DEFAULT_DAYS", "MAX_DAYS", "FilterError", "Filters", "parse_filters"]

DEFAULT_DAYS: Final = 14
MAX_DAYS: Final = 366
_REPO: Final = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")
_KNOWN: Final = frozenset({"repo", "since", "until"})


class FilterError(ValueError):
    """A filter the dashboard cannot apply; the message says which and why."""


@dataclass(frozen=True, slots=True)
class Filters:
    repositories: tuple[str, ...]  # empty: every repository the viewer may see
    since: date
    until: date

    @property
    def start(self) -> datetime:
        return datetime.combine(self.since, time(), UTC)

    @property
    def end(self) -> datetime:
        """The moment after the last day (the window is ``[start, end)``)."""
        return datetime.combine(self.until + timedelta(days=1), time(), UTC)

    @property
    def days(self) -> list[date]:
        return [self.since + timedelta(days=n) for n in range((self.until - self.since).days + 1)]

    def query(self) -> list[tuple[str, str]]:
        """The same filters as query parameters (for links that keep them)."""
        pairs = [("repo", name) for name in self.repositories]
        return [*pairs, ("since", self.since.isoformat()), ("until", self.until.isoformat())]


def _day(name: str, value: str) -> date:
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        raise FilterError(f"{name} must be a date as YYYY-MM-DD, not {value[:40]!r}") from None


def parse_filters(
    query: Mapping[str, str],
    repo_values: Sequence[str],
    *,
    today: date,
) -> Filters:
    """The filters of ``query`` (``repo_values``: every ``repo`` parameter, it may repeat)."""
    unknown = sorted(set(query) - _KNOWN)
    if unknown:
        raise FilterError(
            f"unknown filter {unknown[0]!r}: the dashboard takes repo, since and until"
        )
    repositories: list[str] = []
    for value in repo_values:
        if not value:
            continue
        if not _REPO.fullmatch(value):
            raise FilterError(f"repo must name a repository as owner/name, not {value[:100]!r}")
        if value not in repositories:
            repositories.append(value)
    until = _day("until", query["until"]) if query.get("until") else today
    since = (
        _day("since", query["since"])
        if query.get("since")
        else until - timedelta(days=DEFAULT_DAYS - 1)
    )
    if since > until:
        raise FilterError(f"since ({since}) is after until ({until})")
    if (until - since).days + 1 > MAX_DAYS:
        raise FilterError(f"the dates span more than {MAX_DAYS} days; choose a shorter range")
    return Filters(tuple(repositories), since, until)

"""CODEOWNERS: GitHub's pattern semantics, last match wins, and whom an escalation asks."""

from __future__ import annotations

import pytest

from app.policy.codeowners import (
    CODEOWNERS_PATHS,
    MAX_REQUESTED_REVIEWERS,
    Owners,
    find_codeowners_file,
    parse_codeowners,
    select_reviewers,
)


def matches(pattern: str, path: str) -> bool:
    owners = parse_codeowners(f"{pattern} @owner\n")
    return owners.rule_for(path) is not None


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        # A bare name matches a file or directory of that name at any depth.
        ("foo", "foo", True),
        ("foo", "foo/bar", True),
        ("foo", "a/foo", True),
        ("foo", "a/foo/b", True),
        ("foo", "foo.txt", False),
        ("foo", "a/foobar", False),
        # A leading slash anchors to the root.
        ("/foo", "foo/bar", True),
        ("/foo", "a/foo", False),
        # A trailing slash: everything below that directory (at any depth if unanchored).
        ("apps/", "apps/x.py", True),
        ("apps/", "src/apps/x/y.py", True),
        ("apps/", "apps", False),
        ("/docs/", "docs/a/b.md", True),
        ("/docs/", "src/docs/a.md", False),
        ("/build/logs/", "build/logs/a.log", True),
        ("/build/logs/", "x/build/logs/a.log", False),
        # A slash inside the pattern anchors it too.
        ("foo/bar", "foo/bar/baz", True),
        ("foo/bar", "x/foo/bar", False),
        # '*' does not cross '/'; a final lone '*' means direct children only.
        ("docs/*", "docs/getting-started.md", True),
        ("docs/*", "docs/build-app/troubleshooting.md", False),
        ("docs/*", "docs", False),
        ("/*", "README.md", True),
        ("/*", "src/app.py", False),
        ("foo/*.txt", "foo/a.txt", True),
        ("foo/*.txt", "foo/a/b.txt", False),
        ("foo/*/baz", "foo/bar/baz", True),
        ("foo/*/baz", "foo/bar/baz/qux", True),
        ("foo/*/baz", "foo/baz", False),
        # '*' alone and extensions match at any depth.
        ("*", "a/b/c.py", True),
        ("*.js", "a/b/c.js", True),
        ("*.js", "a/b/c.jsx", False),
        ("f*", "foo/bar", True),
        ("f?o", "foo", True),
        ("f?o", "fooo", False),
        ("f\\*o", "f*o", True),
        ("f\\*o", "foo", False),
        # '**'
        ("**/logs", "build/logs/a.log", True),
        ("**/logs", "logs/a.log", True),
        ("**/logs", "deeply/nested/logs", True),
        ("foo/**", "foo/a/b", True),
        ("foo/**", "foo", False),
        ("foo/**/bar", "foo/bar", True),
        ("foo/**/bar", "foo/x/y/bar/z", True),
        ("foo/**/bar", "x/foo/bar", False),
        ("**", "anything/at/all", True),
        ("/", "anything", False),
        # Paths are case-sensitive, as on GitHub.
        ("/Docs/", "docs/a.md", False),
    ],
)
def test_pattern_semantics(pattern: str, path: str, expected: bool) -> None:
    assert matches(pattern, path) is expected


GITHUB_EXAMPLE = """\
# These owners will be the default owners for everything in the repo.
*       @global-owner1 @global-owner2

*.js    @js-owner #This is an inline comment.
*.go docs@example.com
*.txt @octo-org/octocats
/build/logs/ @doctocat
docs/*  docs@example.com
apps/ @octocat
/docs/ @doctocat
/scripts/ @doctocat @octocat
**/logs @octocat
/apps/ @octocat
/apps/github
"""


@pytest.mark.parametrize(
    ("path", "pattern", "owners"),
    [
        ("README", "*", Owners(("global-owner1", "global-owner2"))),
        ("src/app.js", "*.js", Owners(("js-owner",))),
        ("main.go", "*.go", Owners()),  # e-mail owners are dropped
        ("notes/a.txt", "*.txt", Owners((), ("octo-org/octocats",))),
        ("build/logs/x.js", "**/logs", Owners(("octocat",))),
        ("docs/a.md", "/docs/", Owners(("doctocat",))),
        ("scripts/run.sh", "/scripts/", Owners(("doctocat", "octocat"))),
        ("apps/web/x.py", "/apps/", Owners(("octocat",))),
        ("apps/github/x.py", "/apps/github", Owners()),  # a rule without owners: nobody
        ("lib/apps/x.py", "apps/", Owners(("octocat",))),
    ],
)
def test_the_last_matching_rule_wins(path: str, pattern: str, owners: Owners) -> None:
    codeowners = parse_codeowners(GITHUB_EXAMPLE)
    rule = codeowners.rule_for(path)
    assert rule is not None
    assert rule.pattern == pattern
    assert Owners(rule.users, rule.teams) == owners


def test_comments_blank_lines_and_rule_line_numbers() -> None:
    codeowners = parse_codeowners("# header\n\n   \n*.py @a # trailing @not-an-owner\n")
    (rule,) = codeowners.rules
    assert rule.line == 4
    assert rule.users == ("a",)


def test_unsupported_lines_are_skipped_and_reported() -> None:
    codeowners = parse_codeowners("*.py @a\n!*.md @b\nfoo/***/bar @c\n/x @d\n")
    assert [rule.pattern for rule in codeowners.rules] == ["*.py", "/x"]
    assert codeowners.skipped_lines == (2, 3)


def test_invalid_owner_tokens_are_dropped_and_users_kept_apart_from_teams() -> None:
    codeowners = parse_codeowners("* @alice bob @org/team-a @-bad user@example.com @Bob\n")
    (rule,) = codeowners.rules
    assert rule.users == ("alice", "Bob")
    assert rule.teams == ("org/team-a",)


def test_escaped_spaces_in_patterns() -> None:
    codeowners = parse_codeowners("/My\\ Docs/ @writer\n")
    rule = codeowners.rule_for("My Docs/guide.md")
    assert rule is not None
    assert rule.users == ("writer",)


def test_owners_for_collects_every_path_deduplicated_in_order() -> None:
    codeowners = parse_codeowners(
        "*.py @py @Shared\n*.sql @db @org/dba\n/infra/ @ops @shared @org/DBA\n"
    )
    owners = codeowners.owners_for(["a.py", "schema.sql", "infra/x.tf", "README"])
    assert owners == Owners(("py", "Shared", "db", "ops"), ("org/dba",))
    assert codeowners.owners_for([]) == Owners()
    assert parse_codeowners("").owners_for(["a.py"]) == Owners()


def test_find_codeowners_file_follows_githubs_order() -> None:
    assert CODEOWNERS_PATHS == (".github/CODEOWNERS", "CODEOWNERS", "docs/CODEOWNERS")
    everything = {"docs/CODEOWNERS", "CODEOWNERS", ".github/CODEOWNERS"}
    assert find_codeowners_file(everything) == ".github/CODEOWNERS"
    assert find_codeowners_file({"docs/CODEOWNERS", "CODEOWNERS"}) == "CODEOWNERS"
    assert find_codeowners_file({"docs/CODEOWNERS"}) == "docs/CODEOWNERS"
    assert find_codeowners_file({"src/CODEOWNERS"}) is None


def test_select_reviewers_prefers_code_owners() -> None:
    selected = select_reviewers(
        ["alice", "carol"], ["org/backend"], ["dave"], ["org/escalations"], pr_author="bob"
    )
    assert selected == Owners(("alice", "carol"), ("backend",))


def test_select_reviewers_never_requests_the_author() -> None:
    selected = select_reviewers(["Alice", "bob"], [], [], [], pr_author="ALICE")
    assert selected == Owners(("bob",))
    selected = select_reviewers([], [], ["@Alice", "dave"], [], pr_author="alice")
    assert selected == Owners(("dave",))


def test_select_reviewers_falls_back_to_the_config_when_no_code_owner_is_left() -> None:
    assert select_reviewers([], [], ["dave"], ["escalations"], pr_author="bob") == Owners(
        ("dave",), ("escalations",)
    )
    # The only code owner is the author: ask the configured people instead.
    assert select_reviewers(["bob"], [], ["dave"], [], pr_author="bob") == Owners(("dave",))
    assert select_reviewers([], [], [], [], pr_author="bob") == Owners()


def test_select_reviewers_deduplicates_case_insensitively() -> None:
    selected = select_reviewers(
        ["alice", "@Alice", "ALICE"], ["org/Team", "team", "other/team"], [], [], pr_author="x"
    )
    assert selected == Owners(("alice",), ("Team",))


def test_select_reviewers_caps_at_githubs_limit_users_first() -> None:
    users = [f"user{i}" for i in range(20)]
    teams = [f"org/team{i}" for i in range(5)]
    selected = select_reviewers(users, teams, [], [], pr_author="x")
    assert len(selected.users) == MAX_REQUESTED_REVIEWERS == 15
    assert selected.teams == ()
    selected = select_reviewers(users[:12], teams, [], [], pr_author="x")
    assert (len(selected.users), selected.teams) == (12, ("team0", "team1", "team2"))

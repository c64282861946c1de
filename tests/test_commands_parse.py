"""The command parser: what counts as a command line, and what never does."""

from __future__ import annotations

import pytest

from app.commands.parse import Command, CommandName, Form, parse_commands

SLUG = "aigateway"


def _parse(body: str, *, short_form: bool = True) -> list[tuple[str, str, int]]:
    return [
        (c.name, c.args, c.line) for c in parse_commands(body, slug=SLUG, short_form=short_form)
    ]


def test_both_forms_with_arguments() -> None:
    assert _parse("/review\n@aigateway ask why is this slow?") == [
        ("review", "", 1),
        ("ask", "why is this slow?", 2),
    ]


def test_the_mention_is_case_insensitive_and_may_name_the_bot_account() -> None:
    assert _parse("@AIGateway Merge\n@aigateway[bot] help") == [("merge", "", 1), ("help", "", 2)]


def test_several_lines_run_in_order_among_prose() -> None:
    body = "Thanks!\n\n/pause\nsome words\n  /resume  \n/review now please"
    assert _parse(body) == [("pause", "", 3), ("resume", "", 5), ("review", "now please", 6)]


def test_short_form_off_keeps_only_mentions() -> None:
    assert _parse("/review\n@aigateway quota", short_form=False) == [("quota", "", 2)]


def test_unknown_words_are_kept_as_unknown() -> None:
    [command] = parse_commands("@aigateway frobnicate it", slug=SLUG, short_form=True)
    assert command == Command("frobnicate", "it", 1, Form.MENTION)
    assert command.known is None
    assert parse_commands("/help", slug=SLUG, short_form=True)[0].known is CommandName.HELP


@pytest.mark.parametrize(
    "body",
    [
        "/usr/bin/env python",  # a path, not a word
        "@aigatewayreview",  # no space after the slug
        "@someone-else review",  # another bot's mention
        "please /review",  # not at the start of the line
        "- /review",  # a list item
        "\\/review",  # escaped
        "/ review",
        "@aigateway",
    ],
)
def test_lines_that_are_not_commands(body: str) -> None:
    assert _parse(body) == []


@pytest.mark.parametrize("fence", ["```", "~~~", "````", "```python"])
def test_fenced_code_is_not_commands(fence: str) -> None:
    close = fence.rstrip("python")
    body = f"Log:\n{fence}\n/review\n@aigateway merge\n{close}\n/help"
    assert _parse(body) == [("help", "", 6)]


def test_a_fence_closes_only_with_its_own_kind_and_length() -> None:
    body = "````\n```\n/merge\n~~~\n````\n/quota"
    assert _parse(body) == [("quota", "", 6)]


def test_an_unclosed_fence_runs_to_the_end() -> None:
    assert _parse("```\n/merge\n/review") == []


def test_indented_code_after_a_blank_line_is_not_commands() -> None:
    body = "Run this:\n\n    /merge\n\t@aigateway review\n\n    /escalate\nback to prose\n/help"
    assert _parse(body) == [("help", "", 8)]


def test_indented_code_at_the_start_is_code() -> None:
    assert _parse("    /merge\n/help") == [("help", "", 2)]


@pytest.mark.parametrize(
    "body", ["> /merge", ">/review", "  > @aigateway merge", "> quoted\n> /merge", ">> /review"]
)
def test_quotes_are_not_commands(body: str) -> None:
    assert _parse(body) == []


def test_windows_line_endings() -> None:
    assert _parse("hi\r\n/review\r\n") == [("review", "", 2)]

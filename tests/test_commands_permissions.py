"""Who may run which command: the whole matrix of permissions for every command."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.commands.parse import CommandName
from app.commands.permissions import (
    ADMIN_ONLY,
    READ_ONLY,
    SPENDING,
    Asker,
    refusal,
    required_permission,
)
from app.repo_config import CommandsConfig, Permission

LEVELS: list[Permission | None] = [*Permission, None]
DEFAULT = CommandsConfig()


def _asker(held: Permission | None, *, author: bool = False, escalated: bool = False) -> Asker:
    return Asker("someone", held, is_author=author, escalated=escalated)


def test_every_command_is_spending_read_only_or_admin_only() -> None:
    assert set(CommandName) == SPENDING | READ_ONLY | ADMIN_ONLY
    assert not SPENDING & READ_ONLY and not ADMIN_ONLY & (SPENDING | READ_ONLY)


@pytest.mark.parametrize("held", LEVELS, ids=lambda p: p.value if p else "none")
def test_autonomy_reset_needs_admin_whatever_the_config(held: Permission | None) -> None:
    config = CommandsConfig(min_permission=Permission.READ)
    reason = refusal(CommandName.AUTONOMY, _asker(held), config)
    assert (reason is None) is (held is Permission.ADMIN)
    if reason is not None:
        assert "needs `admin` permission" in reason


# The default min_permission is write: admin, maintain and write may; triage, read, none may not.
EXPECTED = {
    Permission.ADMIN: True,
    Permission.MAINTAIN: True,
    Permission.WRITE: True,
    Permission.TRIAGE: False,
    Permission.READ: False,
    None: False,
}


@pytest.mark.parametrize("name", sorted(SPENDING))
@pytest.mark.parametrize("held", LEVELS, ids=lambda p: p.value if p else "none")
def test_spending_commands_need_write_by_default(
    name: CommandName, held: Permission | None
) -> None:
    reason = refusal(name, _asker(held), DEFAULT)
    assert (reason is None) is EXPECTED[held]
    if reason is not None:
        assert "needs `write` permission" in reason


@pytest.mark.parametrize("name", sorted(READ_ONLY))
@pytest.mark.parametrize("held", LEVELS, ids=lambda p: p.value if p else "none")
def test_read_only_commands_are_open_to_anyone(name: CommandName, held: Permission | None) -> None:
    assert refusal(name, _asker(held), CommandsConfig(min_permission=Permission.ADMIN)) is None


def test_a_lower_min_permission_lets_triage_review_but_not_merge() -> None:
    config = CommandsConfig(min_permission=Permission.TRIAGE)
    assert refusal(CommandName.REVIEW, _asker(Permission.TRIAGE), config) is None
    assert refusal(CommandName.MERGE, _asker(Permission.TRIAGE), config) is not None
    assert required_permission(CommandName.MERGE, config) is Permission.WRITE


def test_a_higher_min_permission_raises_merge_too() -> None:
    config = CommandsConfig(min_permission=Permission.ADMIN)
    assert required_permission(CommandName.MERGE, config) is Permission.ADMIN
    assert refusal(CommandName.MERGE, _asker(Permission.MAINTAIN), config) is not None


def test_the_author_cannot_merge_an_escalated_pr_even_as_admin() -> None:
    reason = refusal(
        CommandName.MERGE, _asker(Permission.ADMIN, author=True, escalated=True), DEFAULT
    )
    assert reason is not None and "escalated" in reason
    # ... but may merge their own PR that was not escalated, and others may merge an escalated one.
    assert refusal(CommandName.MERGE, _asker(Permission.ADMIN, author=True), DEFAULT) is None
    assert refusal(CommandName.MERGE, _asker(Permission.WRITE, escalated=True), DEFAULT) is None
    # Other commands do not care about authorship.
    asker = _asker(Permission.WRITE, author=True, escalated=True)
    assert refusal(CommandName.REVIEW, asker, DEFAULT) is None


@given(
    name=st.sampled_from(sorted(CommandName)),
    held=st.sampled_from(LEVELS),
    floor=st.sampled_from(list(Permission)),
    author=st.booleans(),
    escalated=st.booleans(),
)
def test_nobody_below_the_floor_runs_a_spending_command(
    name: CommandName, held: Permission | None, floor: Permission, author: bool, escalated: bool
) -> None:
    config = CommandsConfig(min_permission=floor)
    allowed = refusal(name, _asker(held, author=author, escalated=escalated), config) is None
    if name in SPENDING and allowed:
        assert held is not None and held.satisfies(floor)
    if name is CommandName.MERGE and allowed:
        assert held is not None and held.satisfies(Permission.WRITE)
        assert not (author and escalated)
    if name in READ_ONLY:
        assert allowed
    if name in ADMIN_ONLY and allowed:
        assert held is Permission.ADMIN

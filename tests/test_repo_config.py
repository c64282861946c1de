"""``.github/aigateway.yml``: the model, inheritance, errors with positions, safety, the schema."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import gidgethub
import pydantic
import pytest
import yaml
from gidgethub.aiohttp import GitHubAPI

from app.config_loader import CONFIG_PATH, ConfigLoader
from app.policy.risk import Tier
from app.repo_config import (
    MAX_ALIASES,
    MAX_CONFIG_BYTES,
    AutonomyMode,
    ConfigError,
    MergeMethod,
    OnExhausted,
    Origin,
    Permission,
    QuotaConfig,
    RepoConfig,
    apply_operator_ceilings,
    config_json_schema,
    format_errors_markdown,
    load_repo_config,
    render_config_json_schema,
)
from tests.fakes.github import FakeGitHub

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "app" / "config.schema.json"
ORG = "octo/.github:.github/aigateway.yml"

FULL = """\
version: 1
review:
  enabled: true
  drafts: true
  ignore_globs: ["vendor/**", "*.min.js"]
  extra_instructions: Prefer small functions.
  path_instructions:
    - path: "migrations/**"
      instructions: Check that every migration is reversible.
  blocking_findings_fail: true
  max_files: 120
  models:
    anthropic: claude-opus-4-1
risk:
  rules:
    - paths: ["payments/**"]
      tier: critical
    - paths: ["scripts/*.sh", "tools/**"]
      tier: low
autonomy:
  mode: act
  merge_method: rebase
  agent_branches: ["ai/**"]
  allow_forks: true
  no_automation_label: hands off
  escalation_label: needs eyes
  escalation:
    reviewers: ["@alice", bob]
    teams: [octo/platform]
commands:
  short_form: false
  min_permission: maintain
quota:
  daily_usd: 5
  weekly_usd: 20.5
  per_pr_usd: 0.75
  on_exhausted: skip
"""


def errors_of(text: str | None, **kwargs: Any) -> list[tuple[str, int | None, int | None, str]]:
    result = load_repo_config(text, **kwargs)
    return [(e.key, e.line, e.column, e.message) for e in result.errors]


# ------------------------------------------------------------------------------- the model


def test_no_file_means_defaults_without_errors() -> None:
    result = load_repo_config(None)
    assert result.config == RepoConfig()
    assert result.ok
    assert set(result.origins.values()) == {Origin.DEFAULT}


def test_defaults() -> None:
    config = RepoConfig()
    assert config.version == 1
    assert config.review.enabled is True
    assert config.review.drafts is False
    assert config.review.ignore_globs is None
    assert config.review.max_files == 300
    assert config.review.models.anthropic is None
    assert config.risk.rules == ()
    assert config.autonomy.mode is AutonomyMode.SHADOW
    assert config.autonomy.merge_method is MergeMethod.SQUASH
    assert config.autonomy.agent_branches == ("codex/**", "claude/**", "agent/**", "bot/**")
    assert config.autonomy.allow_forks is False
    assert config.autonomy.no_automation_label == "aigateway: no automation"
    assert config.autonomy.escalation_label == "aigateway: needs human"
    assert config.commands.short_form is True
    assert config.commands.min_permission is Permission.WRITE
    assert config.quota == QuotaConfig()
    assert config.quota.on_exhausted is OnExhausted.DOWNGRADE


@pytest.mark.parametrize("text", ["", "\n", "# nothing here\n", "---\n"])
def test_an_empty_file_is_valid(text: str) -> None:
    result = load_repo_config(text)
    assert result.ok
    assert result.config == RepoConfig()


def test_a_full_file() -> None:
    result = load_repo_config(FULL)
    assert result.errors == ()
    config = result.config
    assert config.review.drafts is True
    assert config.review.ignore_globs == ("vendor/**", "*.min.js")
    assert config.review.path_instructions[0].path == "migrations/**"
    assert config.review.blocking_findings_fail is True
    assert config.review.max_files == 120
    assert config.review.models.anthropic == "claude-opus-4-1"
    assert config.review.models.openai is None
    assert [(r.paths, r.tier) for r in config.risk.rules] == [
        (("payments/**",), Tier.CRITICAL),
        (("scripts/*.sh", "tools/**"), Tier.LOW),
    ]
    assert config.autonomy.mode is AutonomyMode.ACT
    assert config.autonomy.merge_method is MergeMethod.REBASE
    assert config.autonomy.escalation.reviewers == ("alice", "bob")  # '@' is optional
    assert config.autonomy.escalation.teams == ("octo/platform",)
    assert config.commands.min_permission is Permission.MAINTAIN
    assert config.quota.daily_usd == 5.0
    assert config.quota.on_exhausted is OnExhausted.SKIP
    assert result.origins["autonomy.mode"] is Origin.REPO
    assert result.origins["review.models.openai"] is Origin.DEFAULT


def test_the_config_is_immutable() -> None:
    config = load_repo_config(FULL).config
    with pytest.raises(pydantic.ValidationError):
        config.autonomy.mode = AutonomyMode.OFF  # type: ignore[misc]
    assert isinstance(config.risk.rules, tuple)


def test_yaml_1_1_words_are_not_booleans() -> None:
    result = load_repo_config("version: 1\nautonomy:\n  mode: off\nreview: {enabled: no}\n")
    assert result.ok
    assert result.config.autonomy.mode is AutonomyMode.OFF
    assert result.config.review.enabled is False


def test_permissions_are_ordered() -> None:
    assert Permission.ADMIN.satisfies(Permission.WRITE)
    assert Permission.WRITE.satisfies(Permission.WRITE)
    assert not Permission.TRIAGE.satisfies(Permission.WRITE)
    assert [p.rank for p in Permission] == [0, 1, 2, 3, 4]


# ------------------------------------------------------------------------------- inheritance


def test_the_repository_wins_key_by_key_over_the_owners_defaults() -> None:
    org = """\
version: 1
review: {drafts: true, max_files: 50, models: {anthropic: claude-a, openai: gpt-a}}
autonomy: {mode: act, escalation: {teams: [security]}}
risk: {rules: [{paths: ["a/**"], tier: high}, {paths: ["b/**"], tier: low}]}
"""
    repo = """\
version: 1
review: {max_files: 80, models: {openai: gpt-b}}
risk: {rules: [{paths: ["c/**"], tier: critical}]}
"""
    result = load_repo_config(repo, defaults_text=org, defaults_source=ORG)
    assert result.ok
    config = result.config
    assert config.review.drafts is True  # inherited
    assert config.review.max_files == 80  # overridden
    assert config.review.models.anthropic == "claude-a"  # mappings merge deeply
    assert config.review.models.openai == "gpt-b"
    assert [r.paths for r in config.risk.rules] == [("c/**",)]  # lists replace
    assert config.autonomy.mode is AutonomyMode.ACT
    assert config.autonomy.escalation.teams == ("security",)
    origins = result.origins
    assert origins["review.drafts"] is Origin.ORG
    assert origins["review.max_files"] is Origin.REPO
    assert origins["review.models.anthropic"] is Origin.ORG
    assert origins["review.models.openai"] is Origin.REPO
    assert origins["risk.rules"] is Origin.REPO
    assert origins["autonomy.mode"] is Origin.ORG
    assert origins["quota.daily_usd"] is Origin.DEFAULT


def test_org_defaults_apply_without_a_repository_file() -> None:
    result = load_repo_config(None, defaults_text="version: 1\nquota: {daily_usd: 3}\n")
    assert result.ok
    assert result.config.quota.daily_usd == 3
    assert result.origins["quota.daily_usd"] is Origin.ORG


# ------------------------------------------------------------------------------- errors


def test_yaml_that_does_not_parse_is_one_error_with_its_position() -> None:
    text = "version: 1\nreview:\n  drafts: true\n   max_files: 3\n"
    result = load_repo_config(
        text, defaults_text="version: 1\nreview: {max_files: 9}\n", defaults_source=ORG
    )
    (error,) = result.errors
    assert error.source == ".github/aigateway.yml"
    assert (error.line, error.column) == (4, 13)
    assert error.message.startswith("invalid YAML: ")
    # The whole file falls back; the owner's (valid) defaults still apply.
    assert result.config.review.drafts is False
    assert result.config.review.max_files == 9


def test_an_unknown_key_is_an_error_with_a_suggestion_and_its_position() -> None:
    text = "version: 1\nreview:\n  drafts: true\n  max_file: 3\nfoo: 1\n"
    assert errors_of(text) == [
        ("review.max_file", 4, 3, "unknown key 'max_file' (did you mean 'max_files'?)"),
        ("foo", 5, 1, "unknown key 'foo'"),
    ]
    # Only the invalid keys are dropped: the rest of the file is honoured.
    assert load_repo_config(text).config.review.drafts is True


def test_bad_values_point_at_their_key() -> None:
    text = """\
version: 1
review:
  max_files: lots
autonomy:
  merge_method: fast-forward
  escalation:
    reviewers: [alice, "not a login"]
quota:
  daily_usd: -1
  weekly_usd: .inf
"""
    assert errors_of(text) == [
        (
            "review.max_files",
            3,
            3,
            "Input should be a valid integer, unable to parse string as an integer (got 'lots')",
        ),
        (
            "autonomy.merge_method",
            5,
            3,
            "Input should be 'squash', 'merge' or 'rebase' (got 'fast-forward')",
        ),
        ("autonomy.escalation.reviewers[1]", 7, 24, "'not a login' is not a GitHub user name"),
        ("quota.daily_usd", 9, 3, "Input should be greater than or equal to 0 (got -1)"),
        ("quota.weekly_usd", 10, 3, "Input should be a finite number (got inf)"),
    ]


def test_an_error_inside_a_list_drops_the_whole_list() -> None:
    org = "version: 1\nrisk:\n  rules: [{paths: ['billing/**'], tier: critical}]\n"
    repo = """\
version: 1
risk:
  rules:
    - paths: ["docs/**"]
      tier: low
    - paths: ["billing/**"]
      tier: hgh
"""
    result = load_repo_config(repo, defaults_text=org, defaults_source=ORG)
    assert [(e.key, e.line, e.column) for e in result.errors] == [("risk.rules[1].tier", 7, 7)]
    # Dropping only the bad rule could change what the others mean; the org's list applies.
    assert [r.paths for r in result.config.risk.rules] == [("billing/**",)]
    assert result.origins["risk.rules"] is Origin.ORG


def test_a_section_of_the_wrong_type() -> None:
    assert errors_of("version: 1\nreview: 5\n") == [
        ("review", 2, 1, "should be a mapping of keys to values, not a number"),
    ]
    assert errors_of("version: 1\nautonomy:\n  agent_branches: main\n") == [
        ("autonomy.agent_branches", 3, 3, "should be a list, not a string"),
    ]


def test_a_missing_required_key_in_a_list_item() -> None:
    text = "version: 1\nreview:\n  path_instructions:\n    - path: 'src/**'\n"
    assert errors_of(text) == [
        ("review.path_instructions[0].instructions", 4, 7, "missing required key 'instructions'"),
    ]


def test_an_invalid_glob_is_an_error() -> None:
    text = "version: 1\nrisk:\n  rules:\n    - paths: ['!']\n      tier: low\n"
    ((key, line, column, message),) = errors_of(text)
    assert (key, line, column) == ("risk.rules[0].paths[0]", 4, 15)
    assert message == "invalid glob pattern '!'"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a\n- b\n", "the config must be a mapping of keys to values, not a list"),
        ("just words\n", "the config must be a mapping of keys to values, not a string"),
        ("42\n", "the config must be a mapping of keys to values, not a number"),
    ],
)
def test_a_top_level_that_is_not_a_mapping(text: str, message: str) -> None:
    result = load_repo_config(text)
    assert [(e.line, e.column, e.message) for e in result.errors] == [(1, 1, message)]
    assert result.config == RepoConfig()


@pytest.mark.parametrize("version", ["2", "0", "'1'", "1.0", "true", "null", "[1]"])
def test_an_unsupported_version_ignores_the_file(version: str) -> None:
    result = load_repo_config(f"version: {version}\nautonomy: {{mode: off}}\n")
    ((key, line, column, message),) = [(e.key, e.line, e.column, e.message) for e in result.errors]
    assert (key, line, column) == ("version", 1, 1)
    assert message.startswith("unsupported config version")
    assert message.endswith("this server reads version 1")
    assert result.config == RepoConfig()


def test_a_missing_version_is_an_error_but_the_file_is_read() -> None:
    result = load_repo_config("review: {drafts: true}\n")
    assert [(e.key, e.line, e.message) for e in result.errors] == [
        ("version", 1, "missing 'version: 1' at the top of the file")
    ]
    assert result.config.review.drafts is True


def test_duplicate_and_non_string_keys_are_errors() -> None:
    text = "version: 1\nreview:\n  drafts: true\n  drafts: false\n1: x\non: y\n"
    assert errors_of(text) == [
        ("review.drafts", 4, 3, "duplicate key 'drafts'"),
        ("1", 5, 1, "key '1' is not a string; quote it"),
        ("on", 6, 1, "unknown key 'on'"),
    ]


def test_unsafe_yaml_tags_are_refused() -> None:
    text = "version: 1\nreview: !!python/object/apply:os.system ['true']\n"
    ((_, line, _, message),) = errors_of(text)
    assert line == 2
    assert message.startswith("invalid YAML: ")
    assert "python/object/apply" in message


def test_a_yaml_error_from_the_owners_file_names_that_file() -> None:
    result = load_repo_config(None, defaults_text="version: [\n", defaults_source=ORG)
    (error,) = result.errors
    assert error.source == ORG
    assert error.line == 2


# ------------------------------------------------------------------------------- bombs


def test_a_file_that_is_too_large_is_refused_unread() -> None:
    text = "version: 1\n# " + "x" * MAX_CONFIG_BYTES + "\n"
    result = load_repo_config(text)
    (error,) = result.errors
    assert error.message.startswith("config file too large (")
    assert error.line is None
    assert result.config == RepoConfig()


def test_a_billion_laughs_is_refused() -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        refs = ",".join([f"*{prev}"] * 9)
        lines.append(f"{name}: &{name} [{refs}]")
    result = load_repo_config("\n".join(lines) + "\n")
    (error,) = result.errors
    assert error.message.startswith(f"too many YAML aliases (more than {MAX_ALIASES})")
    assert error.line is not None


def test_an_expansion_with_few_aliases_is_refused() -> None:
    big = ", ".join(["x"] * 6000)
    refs = ", ".join(["*a"] * 10)
    text = f"version: 1\nrisk: &a [{big}]\nquota: [{refs}]\n"
    assert len(text) < MAX_CONFIG_BYTES
    (error,) = load_repo_config(text).errors
    assert error.message.startswith("the YAML document expands to more than")


def test_a_recursive_anchor_is_refused() -> None:
    (error,) = load_repo_config("version: 1\nrisk: &a [*a]\n").errors
    assert "expands to more than" in error.message


def test_deep_nesting_is_refused() -> None:
    (error,) = load_repo_config("version: " + "[" * 200 + "]" * 200 + "\n").errors
    assert error.message.startswith("the YAML nests deeper than")


# ------------------------------------------------------------------------------- safety

ACT_WITH_ERRORS = [
    pytest.param("version: 1\nautonomy: {mode: act}\nfoo: 1\n", id="unknown-key"),
    pytest.param("version: 1\nautonomy: {mode: act, mdoe: act}\n", id="typo-beside-mode"),
    pytest.param("version: 1\nautonomy: {mode: act}\nreview: {max_files: -1}\n", id="bad-value"),
    pytest.param(
        "version: 1\nautonomy: {mode: act}\nrisk: {rules: [{paths: [], tier: low}]}\n",
        id="bad-list-item",
    ),
    pytest.param("autonomy: {mode: act}\n", id="missing-version"),
    pytest.param("version: 1\nautonomy: {mode: act}\nautonomy: {mode: act}\n", id="duplicate"),
    pytest.param("version: 1\nautonomy: {mode: act\n", id="unparsable"),
    pytest.param("version: 2\nautonomy: {mode: act}\n", id="unsupported-version"),
    pytest.param("version: 1\nautonomy: {mode: act}\n" + "#" * MAX_CONFIG_BYTES, id="too-large"),
]


@pytest.mark.parametrize("text", ACT_WITH_ERRORS)
def test_any_error_means_act_is_not_honoured(text: str) -> None:
    result = load_repo_config(text)
    assert result.errors
    assert result.config.autonomy.mode is AutonomyMode.SHADOW
    assert result.origins["autonomy.mode"] is Origin.DEFAULT


@pytest.mark.parametrize("text", ACT_WITH_ERRORS)
def test_any_error_means_act_is_not_honoured_even_when_the_org_says_act(text: str) -> None:
    result = load_repo_config(
        text, defaults_text="version: 1\nautonomy: {mode: act}\n", defaults_source=ORG
    )
    assert result.config.autonomy.mode is AutonomyMode.SHADOW


def test_an_error_in_the_owners_file_also_stops_act() -> None:
    result = load_repo_config(
        "version: 1\nautonomy: {mode: act}\n",
        defaults_text="version: 1\nrisk: {rules: 3}\n",
        defaults_source=ORG,
    )
    assert result.config.autonomy.mode is AutonomyMode.SHADOW
    notice = result.errors[-1]
    assert notice.key == "autonomy.mode"
    assert (notice.source, notice.line, notice.column) == (".github/aigateway.yml", 2, 12)
    assert "not honoured" in notice.message


def test_the_refusal_is_explained_where_act_was_asked_for() -> None:
    result = load_repo_config("version: 1\nautonomy:\n  mode: act\nfoo: 1\n")
    assert [(e.key, e.line, e.column) for e in result.errors] == [
        ("foo", 4, 1),
        ("autonomy.mode", 3, 3),
    ]
    assert result.errors[1].message == (
        "'mode: act' is not honoured while the configuration has errors; "
        "running in shadow mode until they are fixed"
    )


def test_off_is_honoured_despite_errors() -> None:
    result = load_repo_config("version: 1\nautonomy: {mode: off}\nfoo: 1\n")
    assert result.config.autonomy.mode is AutonomyMode.OFF
    assert len(result.errors) == 1


def test_a_broken_files_act_does_not_override_the_orgs_off() -> None:
    result = load_repo_config(
        "version: 1\nautonomy: {mode: act}\nfoo: 1\n",
        defaults_text="version: 1\nautonomy: {mode: off}\n",
        defaults_source=ORG,
    )
    assert result.config.autonomy.mode is AutonomyMode.OFF
    assert result.origins["autonomy.mode"] is Origin.ORG
    assert "running in off mode" in result.errors[-1].message


def test_a_valid_file_in_act_mode_acts() -> None:
    result = load_repo_config("version: 1\nautonomy: {mode: act}\n")
    assert result.ok
    assert result.config.autonomy.mode is AutonomyMode.ACT


# ------------------------------------------------------------------------------- rendering


def test_config_error_as_text() -> None:
    error = ConfigError("unknown key 'x'", ".github/aigateway.yml", "review.x", 3, 5)
    assert str(error) == ".github/aigateway.yml:3:5: review.x: unknown key 'x'"
    assert str(ConfigError("too large", "f.yml")) == "f.yml: too large"
    assert ConfigError("m", "f.yml", line=2).location == "f.yml:2"


def test_format_errors_markdown() -> None:
    errors = load_repo_config("version: 1\nreview: {drafs: 1}\nfoo: '|'\n").errors
    assert format_errors_markdown(errors) == (
        "| location | key | problem |\n"
        "|---|---|---|\n"
        "| `.github/aigateway.yml:2:10` | `review.drafs` | unknown key 'drafs' "
        "(did you mean 'drafts'?) |\n"
        "| `.github/aigateway.yml:3:1` | `foo` | unknown key 'foo' |\n"
    )
    assert format_errors_markdown([]) == ""


def test_format_errors_markdown_escapes_and_truncates() -> None:
    errors = [ConfigError(f"bad | value `{i}`\nsecond line", "f.yml", f"k{i}", i) for i in range(5)]
    table = format_errors_markdown(errors, limit=2)
    assert "bad \\| value '0' second line" in table
    assert table.count("\n| `f.yml") == 2
    assert table.endswith("… and 3 more.\n")


# ------------------------------------------------------------------------------- quota


@pytest.mark.parametrize(
    ("repo", "ceiling", "default", "expected"),
    [
        (None, None, None, None),  # nobody set a limit
        (5.0, None, None, 5.0),
        (None, None, 2.0, 2.0),  # the operator's default fills the gap
        (5.0, None, 2.0, 5.0),  # a repository may choose its own value
        (50.0, 10.0, None, 10.0),  # but never above the ceiling
        (None, 10.0, None, 10.0),  # an unset budget is not "unlimited" under a ceiling
        (None, 10.0, 20.0, 10.0),  # a default above the ceiling is capped too
        (3.0, 10.0, 2.0, 3.0),
        (0.0, 10.0, None, 0.0),
    ],
)
def test_operator_ceilings(
    repo: float | None, ceiling: float | None, default: float | None, expected: float | None
) -> None:
    quota = QuotaConfig(daily_usd=repo, weekly_usd=repo, per_pr_usd=repo)
    bounded = apply_operator_ceilings(
        quota,
        daily_max=ceiling,
        weekly_max=ceiling,
        per_pr_max=ceiling,
        daily_default=default,
        weekly_default=default,
        per_pr_default=default,
    )
    assert (bounded.daily_usd, bounded.weekly_usd, bounded.per_pr_usd) == (expected,) * 3


def test_operator_ceilings_apply_per_budget_and_keep_the_rest() -> None:
    quota = QuotaConfig(daily_usd=8, weekly_usd=100, on_exhausted=OnExhausted.SKIP)
    bounded = apply_operator_ceilings(quota, daily_max=None, weekly_max=30, per_pr_max=1)
    assert (bounded.daily_usd, bounded.weekly_usd, bounded.per_pr_usd) == (8, 30, 1)
    assert bounded.on_exhausted is OnExhausted.SKIP
    assert quota.weekly_usd == 100  # the input is untouched


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_operator_ceilings_reject_nonsense(bad: float) -> None:
    with pytest.raises(ValueError, match="daily_max"):
        apply_operator_ceilings(QuotaConfig(), daily_max=bad, weekly_max=None, per_pr_max=None)


# ------------------------------------------------------------------------------- the schema


def test_the_committed_schema_matches_the_model() -> None:
    committed = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    assert committed == config_json_schema(), (
        "app/config.schema.json is out of date with app/repo_config.py; regenerate it with "
        "`python -m app schema > app/config.schema.json` and commit the result"
    )


def test_the_rendered_schema_is_stable_text() -> None:
    text = render_config_json_schema()
    assert text.endswith("}\n")
    assert json.loads(text) == config_json_schema()
    assert text == render_config_json_schema()


def test_the_schema_accepts_a_valid_file_and_rejects_an_unknown_key() -> None:
    # Imported here, untyped: the package ships no type information and mypy is strict.
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    validator_cls = jsonschema.validators.validator_for(schema)
    validator_cls.check_schema(schema)
    validator = validator_cls(schema)
    validator.validate(yaml.safe_load(FULL))
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({"version": 1, "autonomy": {"mdoe": "act"}})
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({"review": {}})  # editors are told a file needs its version


def test_yaml_merge_keys_are_honoured() -> None:
    text = "version: 1\nreview:\n  <<: {drafts: true, max_files: 7}\n  max_files: 3\n"
    result = load_repo_config(text)
    assert result.ok
    assert (result.config.review.drafts, result.config.review.max_files) == (True, 3)


def test_a_value_yaml_cannot_construct_is_an_error_not_a_crash() -> None:
    result = load_repo_config("version: 1\nreview:\n  extra_instructions: 2024-13-45\n")
    (error,) = result.errors
    assert error.message.startswith("invalid YAML: ")
    assert result.config == RepoConfig()


# ------------------------------------------------------------------- ignore_globs and defaults


def test_ignore_globs_extend_the_built_in_list_unless_ignore_defaults_is_false() -> None:
    from app.review.diff import DEFAULT_IGNORE_GLOBS, parse_unified_diff
    from app.review.pipeline import ignore_globs

    def diff(path: str) -> str:
        return f"diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n@@ -1 +1 @@\n-a\n+b\n"

    text = diff("yarn.lock") + diff("docs/a.md") + diff("src/a.py")
    extended = load_repo_config("version: 1\nreview:\n  ignore_globs: ['docs/**']\n").config
    assert tuple(ignore_globs(extended)) == (*DEFAULT_IGNORE_GLOBS, "docs/**")
    skipped = {
        f.path
        for f in parse_unified_diff(text, ignore_globs=ignore_globs(extended))
        if f.skip_reason
    }
    assert skipped == {"yarn.lock", "docs/a.md"}

    replaced = load_repo_config(
        "version: 1\nreview:\n  ignore_globs: ['docs/**']\n  ignore_defaults: false\n"
    ).config
    assert tuple(ignore_globs(replaced)) == ("docs/**",)
    skipped = {
        f.path
        for f in parse_unified_diff(text, ignore_globs=ignore_globs(replaced))
        if f.skip_reason
    }
    assert skipped == {"docs/a.md"}
    assert tuple(ignore_globs(RepoConfig())) == DEFAULT_IGNORE_GLOBS


# ---------------------------------------------------------------------------------- fetching


async def test_the_owners_defaults_are_fetched_once_for_a_burst_and_again_after_a_failure() -> None:
    """Reviews of one organisation arriving together wait for one read of its ``.github``
    defaults; a read that failed is not remembered, so the next review reads again."""
    async with FakeGitHub.serve() as fake, aiohttp.ClientSession() as session:
        for repo in ("octo/a", "octo/b", "octo/.github"):
            fake.add_repo(repo)
        fake.set_file("octo/.github", CONFIG_PATH, "version: 1\nquota:\n  per_pr_usd: 3\n")
        gh = GitHubAPI(
            session, "aigateway-tests", base_url=fake.url, oauth_token=fake.issue_token()
        )

        def owner_reads() -> int:
            return sum(r.path.startswith("/repos/octo/.github/contents/") for r in fake.requests)

        failing = ConfigLoader(org_ttl_seconds=0)
        fake.fail_next("GET", r"^/repos/octo/\.github/contents/", 500)
        with pytest.raises(gidgethub.GitHubException):
            await failing.load(gh, "octo/a", "main")
        assert (await failing.load(gh, "octo/a", "main")).config.quota.per_pr_usd == 3
        assert owner_reads() == 2

        loader = ConfigLoader()
        fake.delay("GET", r"^/repos/octo/\.github/contents/", 0.2, times=1)
        results = await asyncio.gather(
            *(loader.load(gh, repo, "main") for repo in ("octo/a", "octo/b", "octo/a"))
        )
        assert [r.config.quota.per_pr_usd for r in results] == [3, 3, 3]
        assert owner_reads() == 3
        await loader.load(gh, "octo/b", "main")  # within the TTL: remembered
        assert owner_reads() == 3


async def test_reviews_asking_together_share_one_read_of_the_repositorys_file() -> None:
    """A burst of pull requests in one repository reads its config once; a review asking after
    that read finished reads again, so an admin's change applies to the next review."""
    async with FakeGitHub.serve() as fake, aiohttp.ClientSession() as session:
        fake.add_repo("octo/a")
        fake.set_file("octo/a", CONFIG_PATH, "version: 1\nquota:\n  per_pr_usd: 3\n")
        gh = GitHubAPI(
            session, "aigateway-tests", base_url=fake.url, oauth_token=fake.issue_token()
        )

        def own_reads() -> int:
            return sum(r.path.startswith("/repos/octo/a/contents/") for r in fake.requests)

        loader = ConfigLoader()
        fake.delay("GET", r"^/repos/octo/a/contents/", 0.2, times=1)
        results = await asyncio.gather(*(loader.load(gh, "octo/a", "main") for _ in range(5)))
        assert [r.config.quota.per_pr_usd for r in results] == [3] * 5
        assert own_reads() == 1

        fake.set_file("octo/a", CONFIG_PATH, "version: 1\nquota:\n  per_pr_usd: 1\n")
        assert (await loader.load(gh, "octo/a", "main")).config.quota.per_pr_usd == 1
        assert own_reads() == 2

        fake.fail_next("GET", r"^/repos/octo/a/contents/", 500)
        failed = await asyncio.gather(
            *(loader.load(gh, "octo/a", "main") for _ in range(2)), return_exceptions=True
        )
        assert all(isinstance(r, gidgethub.GitHubException) for r in failed)
        assert (await loader.load(gh, "octo/a", "main")).config.quota.per_pr_usd == 1
        assert own_reads() == 4

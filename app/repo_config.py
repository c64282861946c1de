"""``.github/aigateway.yml``: what a repository lets the bot do, and how a broken file is handled.

The file is read from the repository's default branch (a pull request must not be able to change
the rules that judge it), with defaults from the same path in the owner's ``.github`` repository;
the repository's values win key by key (mappings merge deeply, lists replace whole).

The model is strict and versioned (``version: 1``, unknown keys are errors) and every field has a
default, so an empty file is a valid file. Errors are values, not exceptions: each carries the file,
line and column of the offending key so the check run can point at it, and loading always yields a
usable config. How a broken file degrades, safest first:

* the file is too large, is not YAML, expands aliases beyond a small budget, is not a mapping,
  or has an unsupported ``version``: the whole file is ignored (the owner's defaults still apply);
* otherwise only the invalid keys are dropped — a key inside a list drops the whole list, because
  removing one entry of an ordered rule list could change what the remaining entries mean;
* and whatever the error, it can never widen autonomy: a file with any error does not get its
  ``autonomy.mode: act`` honoured, and if any error exists in either file the effective mode is at
  most ``shadow`` (``off`` is honoured, being safer still). A typo must cost automation, never
  grant it.

Parsing uses PyYAML's ``SafeLoader`` only, with a size cap, an alias cap and a cap on the expanded
node count, so a "billion laughs" document is an error rather than an outage.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any, Final, Literal, Protocol, get_args

import yaml
from pathspec import GitIgnoreSpec
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from app.policy.risk import Tier

__all__ = [
    "CONFIG_PATH",
    "MAX_ALIASES",
    "MAX_CONFIG_BYTES",
    "MAX_DEPTH",
    "MAX_NODES",
    "AutonomyConfig",
    "AutonomyMode",
    "CommandsConfig",
    "ConfigError",
    "ConfigResult",
    "EscalationConfig",
    "FeedbackConfig",
    "MergeMethod",
    "ModelOverrides",
    "OnExhausted",
    "Origin",
    "PathInstruction",
    "Permission",
    "QuotaConfig",
    "RepoConfig",
    "ReviewConfig",
    "RiskConfig",
    "RiskRule",
    "TripwireConfig",
    "apply_operator_ceilings",
    "config_json_schema",
    "format_errors_markdown",
    "load_repo_config",
    "render_config_json_schema",
]

#: Where the file lives, in the repository and in the owner's ``.github`` repository.
CONFIG_PATH: Final = ".github/aigateway.yml"
#: The default ``source`` label for the owner's defaults file in errors.
ORG_DEFAULTS_SOURCE: Final = "<owner>/.github:.github/aigateway.yml"
#: Larger files are refused unread: a real config is a few hundred bytes.
MAX_CONFIG_BYTES: Final = 64 * 1024
#: More aliases than this is refused: configs rarely need any, and bombs need many.
MAX_ALIASES: Final = 32
#: More nodes than this once aliases are expanded is refused (the bomb that uses few aliases).
MAX_NODES: Final = 50_000
#: Deeper nesting is refused (PyYAML composes recursively; a real config is 4 levels deep).
MAX_DEPTH: Final = 32
#: How many errors the check-run table shows before it says "and N more".
MAX_ERRORS_SHOWN: Final = 50

# ---------------------------------------------------------------------------------- value types


class AutonomyMode(StrEnum):
    """``shadow`` decides and reports but acts on nothing; ``act`` acts; ``off`` decides nothing."""

    SHADOW = "shadow"
    ACT = "act"
    OFF = "off"


class MergeMethod(StrEnum):
    SQUASH = "squash"
    MERGE = "merge"
    REBASE = "rebase"


class OnExhausted(StrEnum):
    """What to do when a budget cannot pay for the configured models."""

    DOWNGRADE = "downgrade"
    SKIP = "skip"


class Permission(StrEnum):
    """A repository permission level, ordered ``read < triage < write < maintain < admin``."""

    READ = "read"
    TRIAGE = "triage"
    WRITE = "write"
    MAINTAIN = "maintain"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _PERMISSION_RANK[self]

    def satisfies(self, required: Permission) -> bool:
        """Whether someone holding this permission meets ``required``."""
        return self.rank >= required.rank


_PERMISSION_RANK: Mapping[Permission, int] = {p: i for i, p in enumerate(Permission)}


class Origin(StrEnum):
    """Where an effective config value came from, for the ``config`` command."""

    DEFAULT = "default"
    ORG = "org"
    REPO = "repo"


def _valid_glob(value: str) -> str:
    try:
        GitIgnoreSpec.from_lines([value])
    except ValueError as exc:
        raise ValueError(f"invalid glob pattern {value!r}") from exc
    return value


def _strip_at(value: str) -> str:
    return value.removeprefix("@")


Glob = Annotated[
    str,
    StringConstraints(min_length=1, max_length=500),
    AfterValidator(_valid_glob),
]
Login = Annotated[
    str,
    StringConstraints(pattern=r"^@?[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$"),
    AfterValidator(_strip_at),
]
Team = Annotated[
    str,
    StringConstraints(
        pattern=r"^@?(?:[A-Za-z0-9][A-Za-z0-9-]{0,38}/)?[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
    ),
    AfterValidator(_strip_at),
]
Label = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50)]
ModelName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,127}$")]
Usd = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class _Section(BaseModel):
    """Strict and immutable: unknown keys are errors, and a cached config cannot be altered by
    one review and leak into another."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------------------------- the model


class ModelOverrides(_Section):
    anthropic: ModelName | None = Field(
        default=None, description="Anthropic model for this repository; null: server default."
    )
    openai: ModelName | None = Field(
        default=None, description="OpenAI model for this repository; null: server default."
    )


class PathInstruction(_Section):
    path: Glob = Field(description="Gitignore-style glob of the paths these instructions cover.")
    instructions: str = Field(min_length=1, max_length=4000)


def _valid_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {value!r}: {exc}") from exc
    return value


Regex = Annotated[
    str, StringConstraints(min_length=1, max_length=500), AfterValidator(_valid_regex)
]


class TripwireConfig(_Section):
    """The deterministic check for text aimed at the reviewer (``app/policy/tripwire.py``)."""

    enabled: bool = Field(default=True, description="Run the tripwire at all.")
    hidden_unicode: bool = Field(
        default=True, description="Bidirectional controls and invisible characters."
    )
    confusables: bool = Field(
        default=True, description="Mixed-script identifiers that look like another identifier."
    )
    reviewer_instructions: bool = Field(
        default=True,
        description="Text that tells an automated reviewer what to conclude or what to skip.",
    )
    extra_patterns: tuple[Regex, ...] = Field(
        default=(),
        max_length=50,
        description="More regular expressions (case-insensitive) counted as reviewer-directed.",
    )
    skip_paths: tuple[Glob, ...] = Field(
        default=(),
        max_length=200,
        description="Paths not scanned (a repository's own prompt files, say).",
    )


class ReviewConfig(_Section):
    enabled: bool = Field(default=True, description="Review pull requests at all.")
    drafts: bool = Field(default=False, description="Also review draft pull requests.")
    ignore_globs: tuple[Glob, ...] | None = Field(
        default=None,
        max_length=500,
        description="Paths never sent to the models, added to the built-in list (lock files, "
        "generated and vendored code); `!pattern` re-includes a path.",
    )
    ignore_defaults: bool = Field(
        default=True,
        description="Keep the built-in ignore list under ignore_globs; false: ignore_globs "
        "replaces it.",
    )
    extra_instructions: str = Field(
        default="", max_length=8000, description="Added to every review prompt."
    )
    path_instructions: tuple[PathInstruction, ...] = Field(default=(), max_length=100)
    blocking_findings_fail: bool = Field(
        default=False,
        description="Whether a blocker finding makes the check run conclude 'failure'.",
    )
    max_files: int = Field(
        default=300, ge=1, le=10_000, description="Larger pull requests are not reviewed."
    )
    models: ModelOverrides = ModelOverrides()
    unreviewed_ok: tuple[Glob, ...] = Field(
        default=(),
        max_length=200,
        description="Paths whose changes may go unread by the models (lock files, vendored or "
        "binary files) without holding the pull request back; every other file the models could "
        "not see keeps the decision at most auto_pr.",
    )
    tripwire: TripwireConfig = TripwireConfig()


class RiskRule(_Section):
    paths: tuple[Glob, ...] = Field(
        min_length=1, max_length=200, description="Gitignore-style globs."
    )
    tier: Tier


class RiskConfig(_Section):
    rules: tuple[RiskRule, ...] = Field(
        default=(),
        max_length=200,
        description="Checked in order before the built-in rules; the first match wins.",
    )


class EscalationConfig(_Section):
    reviewers: tuple[Login, ...] = Field(
        default=(), max_length=15, description="Users asked to review when no code owner is."
    )
    teams: tuple[Team, ...] = Field(
        default=(), max_length=15, description="Teams (slug or org/slug) asked likewise."
    )


class AutonomyConfig(_Section):
    mode: AutonomyMode = Field(
        default=AutonomyMode.SHADOW,
        description="shadow: decide and report only; act: merge, open PRs, escalate; off: none.",
    )
    merge_method: MergeMethod = MergeMethod.SQUASH
    agent_branches: tuple[Glob, ...] = Field(
        default=("codex/**", "claude/**", "agent/**", "bot/**"),
        max_length=50,
        description="Branches whose pushes get a pull request opened for them.",
    )
    allow_forks: bool = Field(
        default=False, description="Let pull requests from forks be merged automatically."
    )
    no_automation_label: Label = "aigateway: no automation"
    escalation_label: Label = "aigateway: needs human"
    escalation: EscalationConfig = EscalationConfig()


class CommandsConfig(_Section):
    short_form: bool = Field(default=True, description="Accept '/review' besides '@bot review'.")
    min_permission: Permission = Field(
        default=Permission.WRITE, description="Least repository permission to run a command."
    )


class QuotaConfig(_Section):
    daily_usd: Usd | None = Field(default=None, description="Per UTC calendar day.")
    weekly_usd: Usd | None = Field(default=None, description="Per ISO week.")
    per_pr_usd: Usd | None = Field(default=None, description="Per pull request, all pushes.")
    on_exhausted: OnExhausted = OnExhausted.DOWNGRADE


class FeedbackConfig(_Section):
    window_days: int = Field(
        default=14,
        ge=1,
        le=90,
        description="Days after a merge during which reverts, broken CI and fixes count.",
    )
    tighten_lookback: int = Field(
        default=20,
        ge=1,
        le=500,
        description="How many recent would-be automatic merges the tightening looks at.",
    )
    tighten_bad_rate: float = Field(
        default=0.10,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="Step autonomy down when more than this share of them went wrong.",
    )
    relax_after: int = Field(
        default=20,
        ge=1,
        le=500,
        description="Clean outcomes in a row after which a tightened repository steps back.",
    )


class RepoConfig(_Section):
    """The whole file. ``RepoConfig()`` is the built-in default configuration."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        title="aigateway repository configuration (.github/aigateway.yml)",
        # The model defaults it (``RepoConfig()`` is the default config), but a file must say
        # which version it was written for; the loader reports a file that does not.
        json_schema_extra={"required": ["version"]},
    )

    version: Literal[1] = 1
    review: ReviewConfig = ReviewConfig()
    risk: RiskConfig = RiskConfig()
    autonomy: AutonomyConfig = AutonomyConfig()
    commands: CommandsConfig = CommandsConfig()
    quota: QuotaConfig = QuotaConfig()
    feedback: FeedbackConfig = FeedbackConfig()


# ---------------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class ConfigError:
    """One problem in one file; ``line``/``column`` are 1-based, ``None`` when not tied to a spot."""

    message: str
    source: str
    key: str = ""
    line: int | None = None
    column: int | None = None

    @property
    def location(self) -> str:
        if self.line is None:
            return self.source
        if self.column is None:
            return f"{self.source}:{self.line}"
        return f"{self.source}:{self.line}:{self.column}"

    def __str__(self) -> str:
        """``file:line:col: key: message``, the shape compilers use, for ``check-config``."""
        key = f"{self.key}: " if self.key else ""
        return f"{self.location}: {key}{self.message}"


@dataclass(frozen=True, slots=True)
class ConfigResult:
    """The effective config, every error found, and where each effective value came from."""

    config: RepoConfig
    errors: tuple[ConfigError, ...] = ()
    origins: Mapping[str, Origin] = field(default_factory=dict, hash=False)

    @property
    def ok(self) -> bool:
        return not self.errors


# ---------------------------------------------------------------------------------- loading


class _Mark(Protocol):
    """A position in the YAML text (PyYAML has a pure-Python and a C ``Mark``; both fit)."""

    @property
    def line(self) -> int: ...

    @property
    def column(self) -> int: ...


class _Rejected(Exception):
    """The whole file is unusable; carries the one error that says why."""

    def __init__(self, message: str, mark: _Mark | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.mark = mark


@dataclass
class _FileRead:
    """One file after reading: its surviving values and what was wrong with it."""

    data: dict[str, Any] = field(default_factory=dict)
    errors: list[ConfigError] = field(default_factory=list)
    act_requested_at: ConfigError | None = None  # where the file asked for ``mode: act``


_Loc = tuple[str | int, ...]


class _Loader(yaml.SafeLoader):
    """``SafeLoader`` with YAML 1.2 booleans: only ``true``/``false`` are booleans.

    Under YAML 1.1, ``mode: off`` would read as ``mode: false`` and ``on:`` as the key ``True``,
    turning the most natural way to write a setting into an error. Words stay words here, and
    pydantic still reads ``yes``/``no``/``on``/``off`` where a boolean is expected.
    """


_BOOL_TAG: Final = "tag:yaml.org,2002:bool"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _parse(text: str, source: str) -> tuple[yaml.Node | None, Any, list[ConfigError]]:
    """Compose and construct one YAML document within the alias and node budgets.

    Keys are checked between composing and constructing, because constructing flattens YAML
    merge keys (``<<:``) into the node tree, where they would look like duplicates.
    """
    aliases = depth = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise _Rejected(f"the YAML nests deeper than {MAX_DEPTH} levels", event.start_mark)
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
        elif isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_ALIASES:
                raise _Rejected(
                    f"too many YAML aliases (more than {MAX_ALIASES}); "
                    "write the values out instead of referencing anchors",
                    event.start_mark,
                )
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None, []
        _check_expansion(node)
        key_errors = _check_keys(node, source)
        return node, loader.construct_document(node), key_errors
    finally:
        loader.dispose()


def _check_expansion(root: yaml.Node) -> None:
    """Count nodes as they would be after alias expansion, stopping at the budget.

    Counting the tree (not the graph) is what catches both a bomb made of few aliases and a
    recursive anchor, which would otherwise never finish expanding.
    """
    count = 0
    stack: list[yaml.Node] = [root]
    while stack:
        node = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise _Rejected(
                f"the YAML document expands to more than {MAX_NODES} values (alias expansion)",
                root.start_mark,
            )
        if isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack.append(key)
                stack.append(value)


def _type_name(value: object) -> str:
    match value:
        case None:
            return "null"
        case bool():
            return "a boolean"
        case int() | float():
            return "a number"
        case str():
            return "a string"
        case list():
            return "a list"
        case dict():
            return "a mapping"
        case _:
            return type(value).__name__


def _key_text(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def _mark_of(root: yaml.Node | None, loc: Sequence[str | int]) -> _Mark | None:
    """The start of the deepest node along ``loc``: a mapping entry's key, a list's item.

    Pointing at the key rather than the value is what an editor's "go to line" wants, and it is
    where an unknown key lives.
    """
    if root is None:
        return None
    node: yaml.Node = root
    mark: _Mark | None = root.start_mark
    for part in loc:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            for key_node, value_node in reversed(node.value):  # the last duplicate wins
                if isinstance(key_node, yaml.ScalarNode) and key_node.value == part:
                    mark, node = key_node.start_mark, value_node
                    break
            else:
                break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if not 0 <= part < len(node.value):
                break
            node = node.value[part]
            mark = node.start_mark
        else:
            break
    return mark


def _error(message: str, source: str, loc: Sequence[str | int], mark: _Mark | None) -> ConfigError:
    return ConfigError(
        message=message,
        source=source,
        key=_key_text(loc),
        line=None if mark is None else mark.line + 1,
        column=None if mark is None else mark.column + 1,
    )


_STR_TAG: Final = "tag:yaml.org,2002:str"
_MERGE_TAG: Final = "tag:yaml.org,2002:merge"


def _check_keys(root: yaml.Node, source: str) -> list[ConfigError]:
    """Keys YAML would silently mangle: non-string keys (``on:`` is a boolean in YAML 1.1) and
    duplicates (the last one would win without a word)."""
    errors: list[ConfigError] = []
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, _Loc]] = [(root, ())]
    while stack:
        node, loc = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            stack.extend((item, (*loc, i)) for i, item in enumerate(node.value))
        elif isinstance(node, yaml.MappingNode):
            names: set[str] = set()
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE_TAG:
                    continue
                name = str(key_node.value)
                if key_node.tag != _STR_TAG or not isinstance(key_node, yaml.ScalarNode):
                    errors.append(
                        _error(
                            f"key {name!r} is not a string; quote it",
                            source,
                            (*loc, name),
                            key_node.start_mark,
                        )
                    )
                    continue
                if name in names:
                    errors.append(
                        _error(f"duplicate key {name!r}", source, (*loc, name), key_node.start_mark)
                    )
                names.add(name)
                stack.append((value_node, (*loc, name)))
    errors.sort(key=lambda e: (e.line or 0, e.column or 0))
    return errors


def _drop_non_string_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_non_string_keys(v) for k, v in value.items() if isinstance(k, str)}
    if isinstance(value, list):
        return [_drop_non_string_keys(v) for v in value]
    return value


def _fields_at(loc: Sequence[str | int]) -> list[str]:
    """The field names the model accepts at ``loc`` (for "did you mean" suggestions)."""
    model: type[BaseModel] | None = RepoConfig
    for part in loc:
        if model is None:
            return []
        if isinstance(part, int):
            continue
        info = model.model_fields.get(part)
        if info is None:
            return []
        model = _model_in(info.annotation)
    return [] if model is None else list(model.model_fields)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):  # tuple[Model, ...], Model | None
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _describe(err: Mapping[str, Any]) -> str:
    """pydantic's message, reworded where a config author needs something plainer."""
    loc: tuple[str | int, ...] = tuple(err["loc"])
    kind = err["type"]
    if kind == "extra_forbidden":
        name = str(loc[-1])
        message = f"unknown key {name!r}"
        close = difflib.get_close_matches(name, _fields_at(loc[:-1]), n=1, cutoff=0.6)
        if close:
            message += f" (did you mean {close[0]!r}?)"
        return message
    if kind == "missing":
        return f"missing required key {loc[-1]!r}"
    field_name = next((part for part in reversed(loc) if isinstance(part, str)), "")
    value = err.get("input")
    if kind == "string_pattern_mismatch":
        what = _PATTERN_HINTS.get(field_name, "a value in the expected format")
        return f"{value!r} is not {what}"
    if kind in {"model_type", "model_attributes_type", "dict_type"}:
        return f"should be a mapping of keys to values, not {_type_name(value)}"
    if kind in {"tuple_type", "list_type"}:
        return f"should be a list, not {_type_name(value)}"
    message = str(err["msg"]).removeprefix("Value error, ")
    if isinstance(value, bool | int | float | str) and "invalid glob" not in message:
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        message += f" (got {shown})"
    elif value is not None and kind.endswith("_type"):
        message += f" (got {_type_name(value)})"
    return message


_PATTERN_HINTS: Final[Mapping[str, str]] = {
    "reviewers": "a GitHub user name",
    "teams": "a team ('team-slug' or 'org/team-slug')",
    "anthropic": "a model name",
    "openai": "a model name",
}


def _is_echo(kind: str, loc: _Loc, locs: Iterable[_Loc]) -> bool:
    return kind == "too_short" and any(
        len(other) > len(loc) and other[: len(loc)] == loc for other in locs
    )


def _drop_path(data: Mapping[str, Any], loc: Sequence[str | int]) -> tuple[str, ...]:
    """The mapping-key path to remove so that the error at ``loc`` goes away.

    It stops at the first list: dropping one item of an ordered rule list could change what the
    rest means (first match wins), so the whole list goes back to its inherited value.
    """
    path: list[str] = []
    node: Any = data
    for part in loc:
        if not (isinstance(node, dict) and isinstance(part, str) and part in node):
            break
        path.append(part)
        node = node[part]
        if isinstance(node, list):
            break
    return tuple(path)


def _remove(data: dict[str, Any], path: Sequence[str]) -> None:
    node: Any = data
    for part in path[:-1]:
        node = node[part]
    node.pop(path[-1], None)


def _get(data: Mapping[str, Any], path: Sequence[str]) -> tuple[bool, Any]:
    node: Any = data
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _read_file(text: str | None, source: str) -> _FileRead:
    """Read one file into the values that survive validation, collecting every error."""
    result = _FileRead()
    if text is None:
        return result
    size = len(text.encode("utf-8", errors="replace"))
    if size > MAX_CONFIG_BYTES:
        result.errors.append(
            ConfigError(
                f"config file too large ({size} bytes; the limit is {MAX_CONFIG_BYTES})", source
            )
        )
        return result
    try:
        root, raw, key_errors = _parse(text, source)
    except _Rejected as exc:
        result.errors.append(_error(exc.message, source, (), exc.mark))
        return result
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem:
            problem = f"{exc.context}, {exc.problem}"
        result.errors.append(_error(f"invalid YAML: {problem}", source, (), mark))
        return result
    except (yaml.YAMLError, RecursionError, ValueError) as exc:
        result.errors.append(ConfigError(f"invalid YAML: {exc}", source))
        return result
    if raw is None:  # an empty file, or only comments: every default applies
        return result
    if not isinstance(raw, dict):
        result.errors.append(
            _error(
                f"the config must be a mapping of keys to values, not {_type_name(raw)}",
                source,
                (),
                None if root is None else root.start_mark,
            )
        )
        return result
    assert root is not None
    result.errors.extend(key_errors)
    data: dict[str, Any] = _drop_non_string_keys(raw)

    if "version" not in data:
        if data:
            result.errors.append(
                _error(
                    "missing 'version: 1' at the top of the file",
                    source,
                    ("version",),
                    root.start_mark,
                )
            )
    elif type(data["version"]) is not int or data["version"] != 1:
        result.errors.append(
            _error(
                f"unsupported config version {data['version']!r}; this server reads version 1",
                source,
                ("version",),
                _mark_of(root, ("version",)),
            )
        )
        return result

    asked, mode = _get(data, ("autonomy", "mode"))
    if asked and mode == AutonomyMode.ACT.value:
        result.act_requested_at = _error(
            "", source, ("autonomy", "mode"), _mark_of(root, ("autonomy", "mode"))
        )

    reported: set[tuple[str, str]] = set()
    for _ in range(64):  # each pass drops at least one key, and the file is small
        try:
            RepoConfig.model_validate(data)
        except ValidationError as exc:
            dropped = False
            details = exc.errors()
            locs = [tuple(err["loc"]) for err in details]
            for err, loc in zip(details, locs, strict=True):
                found = _error(_describe(err), source, loc, _mark_of(root, loc))
                if _is_echo(err["type"], loc, locs):
                    pass  # "too short" only because an item inside already failed
                elif (found.key, found.message) not in reported:
                    reported.add((found.key, found.message))
                    result.errors.append(found)
                path = _drop_path(data, loc)
                if not path:  # nothing smaller to drop: the file as a whole is unusable
                    data = {}
                    dropped = True
                    break
                if _get(data, path)[0]:
                    _remove(data, path)
                    dropped = True
            if not dropped:
                data = {}
        else:
            break
    else:  # pragma: no cover - defensive: never loop forever on a pathological file
        data = {}

    if result.errors:
        # A file with errors is not trusted to widen autonomy; ``shadow``/``off`` only narrow it.
        present, mode = _get(data, ("autonomy", "mode"))
        if present and mode == AutonomyMode.ACT.value:
            _remove(data, ("autonomy", "mode"))
    result.data = data
    result.errors.sort(key=lambda e: (e.line or 0, e.column or 0))
    return result


def _deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        current = merged.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            merged[key] = _deep_merge(current, value)
        else:
            merged[key] = value
    return merged


def _leaf_keys(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _leaf_keys(annotation, (*prefix, name))
        else:
            yield (*prefix, name)


def load_repo_config(
    text: str | None,
    *,
    defaults_text: str | None = None,
    source: str = CONFIG_PATH,
    defaults_source: str = ORG_DEFAULTS_SOURCE,
) -> ConfigResult:
    """The effective config from the repository's file and the owner's defaults file.

    ``None`` means the file does not exist (not an error). Never raises for bad input: a broken
    config must not stop reviews, so the errors come back as values beside a usable config.
    """
    org = _read_file(defaults_text, defaults_source)
    repo = _read_file(text, source)
    errors = [*org.errors, *repo.errors]
    merged = _deep_merge(org.data, repo.data)
    try:
        config = RepoConfig.model_validate(merged)
    except ValidationError as exc:  # pragma: no cover - each file validated on its own already
        errors.append(ConfigError(f"the combined configuration is invalid: {exc}", source))
        config, org.data, repo.data = RepoConfig(), {}, {}

    origins: dict[str, Origin] = {}
    for path in _leaf_keys(RepoConfig):
        if _get(repo.data, path)[0]:
            origins[".".join(path)] = Origin.REPO
        elif _get(org.data, path)[0]:
            origins[".".join(path)] = Origin.ORG
        else:
            origins[".".join(path)] = Origin.DEFAULT

    # Where the refused ``act`` was asked for: the broken file's own request first.
    requested = (repo.act_requested_at if repo.errors else None) or (
        org.act_requested_at if org.errors else None
    )
    if errors and (config.autonomy.mode is AutonomyMode.ACT or requested is not None):
        if config.autonomy.mode is AutonomyMode.ACT:
            config = config.model_copy(
                update={
                    "autonomy": config.autonomy.model_copy(update={"mode": AutonomyMode.SHADOW})
                }
            )
            origins["autonomy.mode"] = Origin.DEFAULT
        where = (
            requested
            or repo.act_requested_at
            or org.act_requested_at
            or ConfigError("", source, "autonomy.mode")
        )
        errors.append(
            ConfigError(
                message=(
                    "'mode: act' is not honoured while the configuration has errors; "
                    f"running in {config.autonomy.mode.value} mode until they are fixed"
                ),
                source=where.source,
                key="autonomy.mode",
                line=where.line,
                column=where.column,
            )
        )
    return ConfigResult(config=config, errors=tuple(errors), origins=origins)


# ---------------------------------------------------------------------------------- rendering


def config_json_schema() -> dict[str, Any]:
    """The JSON Schema of the file, so editors can validate ``.github/aigateway.yml``."""
    schema = RepoConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def render_config_json_schema() -> str:
    """The schema exactly as committed in ``app/config.schema.json``."""
    return json.dumps(config_json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


_CELL_UNSAFE = re.compile(r"[|\r\n`]")


def _cell(text: str) -> str:
    return _CELL_UNSAFE.sub(lambda m: {"|": "\\|", "`": "'"}.get(m.group(0), " "), text)


def format_errors_markdown(errors: Iterable[ConfigError], *, limit: int = MAX_ERRORS_SHOWN) -> str:
    """A short table for the check run: where, which key, what is wrong. Empty for no errors."""
    items = list(errors)
    if not items:
        return ""
    lines = ["| location | key | problem |", "|---|---|---|"]
    for err in items[: max(limit, 0)]:
        key = f"`{_cell(err.key)}`" if err.key else ""
        lines.append(f"| `{_cell(err.location)}` | {key} | {_cell(err.message)} |")
    hidden = len(items) - min(len(items), max(limit, 0))
    if hidden:
        lines += ["", f"… and {hidden} more."]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------- quota


def _bounded(value: float | None, default: float | None, ceiling: float | None) -> float | None:
    """The repository's value, else the operator's default, never above the operator's ceiling.

    ``None`` means unlimited, so with a ceiling set an unset budget becomes the ceiling: a
    repository cannot opt out of a limit by leaving the key out.
    """
    chosen = value if value is not None else default
    if ceiling is None:
        return chosen
    if chosen is None:
        return ceiling
    return min(chosen, ceiling)


def apply_operator_ceilings(
    quota: QuotaConfig,
    *,
    daily_max: float | None,
    weekly_max: float | None,
    per_pr_max: float | None,
    daily_default: float | None = None,
    weekly_default: float | None = None,
    per_pr_default: float | None = None,
) -> QuotaConfig:
    """The budgets that apply: the server operator's defaults fill gaps, its ceilings cap.

    ``None`` for a ceiling means the operator sets no limit; for a default, that an unset budget
    stays unlimited (unless there is a ceiling). Negative or non-finite operator values are a
    programming error, not a config error, and raise ``ValueError``.
    """
    for name, value in (
        ("daily_max", daily_max),
        ("weekly_max", weekly_max),
        ("per_pr_max", per_pr_max),
        ("daily_default", daily_default),
        ("weekly_default", weekly_default),
        ("per_pr_default", per_pr_default),
    ):
        if value is not None and (not math.isfinite(value) or value < 0):
            raise ValueError(f"{name} must be a finite number >= 0, not {value!r}")
    return quota.model_copy(
        update={
            "daily_usd": _bounded(quota.daily_usd, daily_default, daily_max),
            "weekly_usd": _bounded(quota.weekly_usd, weekly_default, weekly_max),
            "per_pr_usd": _bounded(quota.per_pr_usd, per_pr_default, per_pr_max),
        }
    )

"""Check requests against GitHub's own REST description (the subset in ``../shared/fixtures``).

The description is OpenAPI 3.0.3 with every ``$ref`` inlined. Its request-body schemas are JSON
Schema with OpenAPI's dialect on top, so before validating with ``jsonschema`` (Draft 4 rules, the
closest to OpenAPI 3.0) each schema is adjusted once:

- ``nullable: true`` becomes a type (or enum, or ``anyOf``) that also allows ``null``;
- ``format`` is checked leniently: only ``date-time`` is checked (and loosely), other formats such
  as ``int64`` or GitHub's own ``repo.nwo`` are ignored;
- with ``strict_properties`` (the default), an object schema that lists its ``properties`` and says
  nothing about ``additionalProperties`` refuses other keys. GitHub ignores unknown keys silently,
  so a misspelt field (``conclution``) would otherwise pass unnoticed here and do nothing there.

The shared folder is found from this file's location (``<repo>/../shared``), never from an
absolute path; when it is absent, :func:`shared_available` is false and callers skip.
The spec is large (about 2 MB): it is parsed once per process and shared by every validator.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, unquote, urlsplit

from jsonschema import (  # type: ignore[import-untyped,unused-ignore]
    Draft4Validator,
    FormatChecker,
)

SHARED_DIR: Final[Path] = Path(__file__).resolve().parents[3] / "shared"
REST_DIR: Final[Path] = SHARED_DIR / "fixtures" / "github-rest"
SPEC_PATH: Final[Path] = REST_DIR / "openapi-subset.deref.json"
OPERATIONS_PATH: Final[Path] = REST_DIR / "operations.json"
EXAMPLES_DIR: Final[Path] = REST_DIR / "examples"

#: GitHub Enterprise Server serves the REST API under this path.
GHES_PREFIX: Final[str] = "/api/v3"

#: Path parameters whose values may contain ``/`` (file paths, refs, ``base...head``).
_GREEDY_PARAMS: Final[frozenset[str]] = frozenset({"path", "ref", "basehead"})

_MAX_MESSAGE: Final[int] = 240

_METHODS: Final[frozenset[str]] = frozenset({"get", "put", "post", "patch", "delete", "head"})


class _Absent:
    """Marks a request without a body (``None`` is JSON ``null``, a real body)."""

    _instance: _Absent | None = None

    def __new__(cls) -> _Absent:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NO_BODY"


NO_BODY: Final = _Absent()


def shared_available() -> bool:
    """True when GitHub's REST description is present in the shared fixtures folder."""
    return SPEC_PATH.is_file() and OPERATIONS_PATH.is_file()


def missing_reason() -> str:
    """The sentence tests give ``pytest.skip`` when the shared folder is absent."""
    return f"shared fixtures not found at {REST_DIR} (GitHub's REST description)"


def load_example(operation_id: str, name: str) -> Any | None:
    """One of GitHub's example bodies (``examples/<op>/<name>``), or ``None`` when absent."""
    path = EXAMPLES_DIR / operation_id.replace("/", "__") / name
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------------------------
# Schema conversion (OpenAPI 3.0 -> JSON Schema Draft 4)


def _with_null(schema: dict[str, Any]) -> dict[str, Any]:
    out = dict(schema)
    if "enum" in out and None not in out["enum"]:
        out["enum"] = [*out["enum"], None]
    kind = out.get("type")
    if isinstance(kind, str):
        out["type"] = [kind, "null"]
        return out
    if isinstance(kind, list):
        if "null" not in kind:
            out["type"] = [*kind, "null"]
        return out
    return {"anyOf": [out, {"type": "null"}]}


def to_json_schema(schema: Any, *, strict_properties: bool = True, _in_all_of: bool = False) -> Any:
    """Convert an OpenAPI 3.0 schema object into plain JSON Schema (Draft 4)."""
    if isinstance(schema, list):
        return [to_json_schema(s, strict_properties=strict_properties) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in {"example", "examples", "description", "externalDocs", "xml", "discriminator"}:
            continue
        if key.startswith("x-"):
            continue
        if key == "properties" and isinstance(value, dict):
            out[key] = {
                name: to_json_schema(sub, strict_properties=strict_properties)
                for name, sub in value.items()
            }
        elif key == "allOf":
            out[key] = [
                to_json_schema(s, strict_properties=strict_properties, _in_all_of=True)
                for s in value
            ]
        elif isinstance(value, dict | list):
            out[key] = to_json_schema(value, strict_properties=strict_properties)
        else:
            out[key] = value
    nullable = bool(out.pop("nullable", False))
    # readOnly/writeOnly have no meaning for validation of requests here.
    out.pop("readOnly", None)
    out.pop("writeOnly", None)
    if (
        strict_properties
        and not _in_all_of
        and "properties" in out
        and "additionalProperties" not in out
        and "allOf" not in out
    ):
        out["additionalProperties"] = False
    if nullable:
        out = _with_null(out)
    return out


def _lenient_format_checker() -> Any:
    checker = FormatChecker(formats=())

    @checker.checks("date-time", raises=ValueError)  # type: ignore[untyped-decorator,unused-ignore]
    def _date_time(value: object) -> bool:
        if not isinstance(value, str):
            return True
        if "T" not in value and "t" not in value:
            raise ValueError("not an ISO 8601 date-time")
        datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        return True

    return checker


# --------------------------------------------------------------------------------------------
# Operations


@dataclass
class Operation:
    """One operation of the description, compiled for matching and validation."""

    method: str
    template: str
    operation_id: str
    pattern: re.Pattern[str]
    literal_chars: int
    body_required: bool
    body_media_types: tuple[str, ...]
    body_schema: dict[str, Any] | None
    parameters: dict[tuple[str, str], dict[str, Any]]
    responses: dict[str, Any] = field(default_factory=dict, repr=False)
    _validators: dict[bool, Any] = field(default_factory=dict, repr=False)
    _response_validators: dict[str, Any] = field(default_factory=dict, repr=False)

    def response_validator(self, status: int) -> Any | None:
        """A validator for the JSON body of a ``status`` response, if the description has one."""
        key = str(status)
        if key not in self._response_validators:
            response = self.responses.get(key)
            content = response.get("content", {}) if isinstance(response, dict) else {}
            schema = (content.get("application/json") or {}).get("schema")
            self._response_validators[key] = (
                None
                if schema is None
                else Draft4Validator(
                    to_json_schema(schema, strict_properties=False),
                    format_checker=_lenient_format_checker(),
                )
            )
        return self._response_validators[key]

    def body_validator(self, *, strict_properties: bool) -> Any | None:
        if self.body_schema is None:
            return None
        if strict_properties not in self._validators:
            schema = to_json_schema(self.body_schema, strict_properties=strict_properties)
            self._validators[strict_properties] = Draft4Validator(
                schema, format_checker=_lenient_format_checker()
            )
        return self._validators[strict_properties]


def _compile_template(template: str) -> tuple[re.Pattern[str], int]:
    regex = ""
    literal = 0
    pos = 0
    for match in re.finditer(r"\{([^}]+)\}", template):
        chunk = template[pos : match.start()]
        regex += re.escape(chunk)
        literal += len(chunk)
        name = match.group(1)
        part = ".+" if name in _GREEDY_PARAMS else "[^/]+"
        regex += f"(?P<{name}>{part})"
        pos = match.end()
    chunk = template[pos:]
    regex += re.escape(chunk)
    literal += len(chunk)
    return re.compile(f"^{regex}$"), literal


@dataclass
class _Spec:
    operations: list[Operation]
    by_id: dict[str, Operation]
    templates: list[tuple[str, re.Pattern[str], int]]


_CACHE: dict[Path, _Spec] = {}
_CACHE_LOCK = threading.Lock()


def _load_spec(spec_path: Path) -> _Spec:
    with _CACHE_LOCK:
        cached = _CACHE.get(spec_path)
        if cached is not None:
            return cached
        document = json.loads(spec_path.read_text(encoding="utf-8"))
        operations: list[Operation] = []
        templates: list[tuple[str, re.Pattern[str], int]] = []
        for template, item in document.get("paths", {}).items():
            pattern, literal = _compile_template(template)
            templates.append((template, pattern, literal))
            shared_params = item.get("parameters", [])
            for method, op in item.items():
                if method not in _METHODS:
                    continue
                params: dict[tuple[str, str], dict[str, Any]] = {}
                for param in [*shared_params, *op.get("parameters", [])]:
                    if isinstance(param, dict) and "name" in param and "in" in param:
                        params[(param["in"], param["name"])] = param
                body = op.get("requestBody") or {}
                content = body.get("content") or {}
                media = tuple(content)
                schema = None
                for media_type in media:
                    if "json" in media_type:
                        schema = content[media_type].get("schema")
                        break
                operations.append(
                    Operation(
                        method=method.upper(),
                        template=template,
                        operation_id=op.get("operationId", f"{method} {template}"),
                        pattern=pattern,
                        literal_chars=literal,
                        body_required=bool(body.get("required", False)),
                        body_media_types=media,
                        body_schema=copy.deepcopy(schema) if schema is not None else None,
                        parameters=params,
                        responses=op.get("responses") or {},
                    )
                )
        spec = _Spec(
            operations=operations,
            by_id={op.operation_id: op for op in operations},
            templates=templates,
        )
        _CACHE[spec_path] = spec
        return spec


def _coerce(value: str, schema: Mapping[str, Any]) -> Any:
    kind = schema.get("type")
    if kind == "integer":
        try:
            return int(value)
        except ValueError:
            return value
    if kind == "number":
        try:
            return float(value)
        except ValueError:
            return value
    if kind == "boolean":
        return {"true": True, "false": False}.get(value, value)
    return value


def _where(error: Any) -> str:
    parts = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    return f"body{parts}"


def _message(error: Any) -> str:
    instance = error.instance
    if error.validator in {"maxItems", "minItems"} and isinstance(instance, list):
        return f"{len(instance)} items, {error.validator} is {error.validator_value}"
    if error.validator in {"maxLength", "minLength"} and isinstance(instance, str):
        return f"{len(instance)} characters, {error.validator} is {error.validator_value}"
    text = str(error.message)
    if len(text) > _MAX_MESSAGE:
        text = text[: _MAX_MESSAGE // 2] + " … " + text[-_MAX_MESSAGE // 2 :]
    return text


def _describe(error: Any) -> str:
    message = f"{_where(error)}: {_message(error)}"
    if error.context:
        # anyOf / oneOf: name the closest branch's complaints too.
        deepest = sorted(error.context, key=lambda e: -len(list(e.absolute_path)))[:2]
        message += " (" + "; ".join(f"{_where(e)}: {_message(e)}" for e in deepest) + ")"
    return message


class OpenAPIValidator:
    """Find the operation for a request and check its body (and typed parameters) against it.

    ``validate`` returns a list of human-readable violations; empty means the request conforms.
    ``base_path`` is stripped from paths before matching; a path under ``/api/v3`` (GitHub
    Enterprise Server) is recognised without being told.
    """

    def __init__(
        self,
        spec_path: Path = SPEC_PATH,
        *,
        base_path: str = "",
        strict_properties: bool = True,
    ) -> None:
        self._spec = _load_spec(spec_path)
        self.base_path = base_path.rstrip("/")
        self.strict_properties = strict_properties

    @property
    def operation_ids(self) -> frozenset[str]:
        return frozenset(self._spec.by_id)

    def operation(self, operation_id: str) -> Operation | None:
        return self._spec.by_id.get(operation_id)

    def strip(self, path: str) -> str:
        """The API path: without scheme/host, query, the configured base path or ``/api/v3``."""
        if "://" in path:
            path = urlsplit(path).path
        path = path.split("?", 1)[0]
        for prefix in (self.base_path, GHES_PREFIX):
            if prefix and (path == prefix or path.startswith(prefix + "/")):
                path = path[len(prefix) :] or "/"
                break
        return unquote(path)

    def _candidates(self, path: str) -> list[tuple[str, re.Match[str], int]]:
        found = []
        for template, pattern, literal in self._spec.templates:
            match = pattern.match(path)
            if match is not None:
                found.append((template, match, literal))
        # The most specific template (most literal characters) wins.
        found.sort(key=lambda item: -item[2])
        return found

    def find(self, method: str, path: str) -> Operation | None:
        """The operation for ``method`` and a concrete path, or ``None``."""
        method = method.upper()
        path = self.strip(path)
        for template, _match, _literal in self._candidates(path):
            for op in self._spec.operations:
                if op.template == template and op.method == method:
                    return op
        return None

    def validate(
        self,
        method: str,
        path: str,
        query: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        body: Any = NO_BODY,
        *,
        content_type: str | None = "application/json",
    ) -> list[str]:
        """Violations of GitHub's description by this request (empty list: none)."""
        method = method.upper()
        if query is None and "?" in path:
            query = parse_qsl(path.split("?", 1)[1], keep_blank_values=True)
        params = dict(query.items() if isinstance(query, Mapping) else (query or []))
        api_path = self.strip(path)
        candidates = self._candidates(api_path)
        if not candidates:
            return [f"{method} {api_path}: no operation in GitHub's REST description has this path"]
        op: Operation | None = None
        match: re.Match[str] | None = None
        for template, found, _literal in candidates:
            op = next(
                (o for o in self._spec.operations if o.template == template and o.method == method),
                None,
            )
            if op is not None:
                match = found
                break
        if op is None or match is None:
            allowed = sorted(
                {o.method for o in self._spec.operations if o.template == candidates[0][0]}
            )
            return [
                f"{method} {api_path}: GitHub's REST description has {candidates[0][0]} "
                f"only for {', '.join(allowed)}"
            ]
        where = f"{op.operation_id} ({method} {op.template})"
        problems: list[str] = []
        for name, value in match.groupdict().items():
            problems += self._check_param(where, "path", name, value, op)
        for name, value in params.items():
            if ("query", name) in op.parameters:
                problems += self._check_param(where, "query", name, value, op)
        problems += self._check_body(where, op, body, content_type)
        return problems

    def _check_param(
        self, where: str, location: str, name: str, value: str, op: Operation
    ) -> list[str]:
        param = op.parameters.get((location, name))
        if param is None or "schema" not in param:
            return []
        schema = to_json_schema(param["schema"], strict_properties=False)
        coerced = _coerce(value, schema)
        validator = Draft4Validator(schema)
        return [
            f"{where}: {location} parameter {name}={value!r}: {error.message}"
            for error in validator.iter_errors(coerced)
        ]

    def _check_body(
        self, where: str, op: Operation, body: Any, content_type: str | None
    ) -> list[str]:
        if isinstance(body, _Absent) or body == b"":
            if op.body_required:
                return [f"{where}: a request body is required"]
            return []
        if not op.body_media_types:
            return [f"{where}: this operation takes no request body"]
        media = (content_type or "").split(";", 1)[0].strip().lower()
        if media and media not in op.body_media_types:
            return [
                f"{where}: content type {media!r} is not one of {', '.join(op.body_media_types)}"
            ]
        validator = op.body_validator(strict_properties=self.strict_properties)
        if validator is None:
            return []
        errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
        return [f"{where}: {_describe(error)}" for error in errors]

    def validate_response(self, method: str, path: str, status: int, body: Any) -> list[str]:
        """Where a JSON response body differs from the description's schema for ``status``.

        Lenient about extra properties (GitHub adds fields over time); empty when the operation or
        its response schema is unknown.
        """
        op = self.find(method, path)
        if op is None:
            return []
        validator = op.response_validator(status)
        if validator is None:
            return []
        where = f"{op.operation_id} response {status}"
        errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
        return [f"{where}: {_describe(error)}" for error in errors]

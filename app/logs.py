"""Structured logging: JSON lines (or plain text), with the delivery's context on every line.

The context (delivery id, event, installation, repository) lives in a ``ContextVar`` set by the
worker, so handlers log normally and still get attributed lines. Every field a call passes with
``extra=`` (``provider``, ``reason``, ``log_id``, ...) is written too: as a key of the JSON
object, or as ``key=value`` after the message in text lines (values with spaces, quotes or
``=`` are quoted as JSON strings). ``LogRecord``'s own attributes are never repeated.

A filter replaces every known secret value with ``[redacted]`` before a line is written,
wherever it sits: in the message, its arguments, an ``extra`` field (strings inside lists and
dicts too), the exception and the stack. A token that reaches an exception message must still
never reach the log.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

CONTEXT_FIELDS = ("delivery_id", "event", "installation_id", "repository")
# What every ``LogRecord`` has (``taskName`` from Python 3.12 on), and what formatting adds:
# everything else on a record came from ``extra=`` or the context.
STANDARD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None))
) | {"message", "asctime", "taskName"}
REDACTED = "[redacted]"


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The record's ``extra`` and context fields, the context first, None values left out."""
    fields = {key: getattr(record, key) for key in CONTEXT_FIELDS if hasattr(record, key)}
    for key, value in vars(record).items():
        if key not in STANDARD_ATTRIBUTES and not key.startswith("_"):
            fields.setdefault(key, value)
    return {key: value for key, value in fields.items() if value is not None}


_log_context: ContextVar[dict[str, Any] | None] = ContextVar("aigateway_log_context", default=None)


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Attach fields to every log line emitted inside the block (and its tasks)."""
    merged = {**(_log_context.get() or {}), **{k: v for k, v in fields.items() if v is not None}}
    token = _log_context.set(merged)
    try:
        yield
    finally:
        _log_context.reset(token)


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in (_log_context.get() or {}).items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class RedactingFilter(logging.Filter):
    """Replace secret values wherever they appear in the rendered message or exception."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def add(self, secret: str) -> None:
        if secret and secret not in self._secrets:
            self._secrets.append(secret)
            self._secrets.sort(key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def redact_value(self, value: Any) -> Any:
        """An ``extra`` value with every secret redacted: strings (in lists, tuples and dicts
        too) in place; another object as its text, when its text holds a secret."""
        if isinstance(value, str):
            return self.redact(value)
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, dict):
            return {self.redact_value(k): self.redact_value(v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self.redact_value(item) for item in value]
        text = str(value)
        redacted = self.redact(text)
        return value if redacted == text else redacted

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        record.msg = self.redact(record.getMessage())
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        for key, value in extra_fields(record).items():
            setattr(record, key, self.redact_value(value))
        return True


# The JSON line's own keys; an ``extra`` field of one of these names is written as ``extra.NAME``.
_JSON_KEYS = frozenset({"ts", "level", "logger", "msg", "exc", "stack"})
# A text value that is written quoted: it would not read back as one ``key=value`` pair.
_NEEDS_QUOTES = re.compile(r'[\s"=]')


def _text_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return json.dumps(text) if not text or _NEEDS_QUOTES.search(text) else text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in extra_fields(record).items():
            line["extra." + key if key in _JSON_KEYS else key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """``<time> <LEVEL> <logger>: <message> key=value ...``, then the traceback, if any."""
        record.message = record.getMessage()
        record.asctime = self.formatTime(record, self.datefmt)
        line = self.formatMessage(record)
        fields = extra_fields(record)
        if fields:
            line += " " + " ".join(f"{key}={_text_value(value)}" for key, value in fields.items())
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line += "\n" + record.exc_text
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


def configure_logging(
    *, fmt: str, level: str, secrets: Iterable[str], stream: Any = None
) -> RedactingFilter:
    """Install one handler on the root logger; returns the redaction filter to extend later."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    redactor = RedactingFilter(secrets)
    handler.addFilter(ContextFilter())
    handler.addFilter(redactor)
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    return redactor

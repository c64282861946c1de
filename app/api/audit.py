"""One structured audit event per API request, and one when a job ends.

Each event is a JSON object: when (``ts``), who (``caller``: ``static-token`` or
``oidc:<sub>``, and ``caller_repository``), what (``endpoint``, ``method``, ``repository``),
how it ended (``status``, ``outcome``: ``ok`` or the error code, ``detail``), what it cost
(``cost_usd``) and which job (``job_id``), with the request's id and duration. Never a prompt,
a context, a diff, an answer or a token: fields are chosen here, not copied from requests.

Events go to the ``app.api.audit`` logger (so the server's log stream has them, JSON lines
under ``LOG_FORMAT=json``, with the log filter's redaction), and, when ``API_AUDIT_LOG`` names
a file, are appended to it as JSON lines: one ``write`` per line on a file opened with
``O_APPEND``, so lines from concurrent requests never interleave and a crash loses at most the
line being written.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["AuditEvent", "AuditLog"]

logger = logging.getLogger("app.api.audit")


@dataclass(slots=True)
class AuditEvent:
    """Filled in as a request goes; emitted once when it is answered."""

    endpoint: str
    method: str
    request_id: str
    event: str = "api.request"
    caller: str | None = None
    caller_repository: str | None = None
    repository: str | None = None
    status: int | None = None
    outcome: str | None = None
    detail: str | None = None
    cost_usd: float | None = None
    job_id: str | None = None
    duration_ms: float | None = None
    ts: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="milliseconds"))

    def as_dict(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value is not None}


class AuditLog:
    def __init__(self, path: Path | None = None) -> None:
        self._fd: int | None = None
        if path is not None:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def emit(self, event: AuditEvent) -> None:
        fields = event.as_dict()
        logger.info(
            "%s %s %s", event.event, event.endpoint, event.outcome or "", extra={"audit": fields}
        )
        if self._fd is not None:
            line = json.dumps(fields, separators=(",", ":"), sort_keys=True) + "\n"
            try:
                os.write(self._fd, line.encode("utf-8"))
            except OSError:
                logger.exception("the audit line could not be written to API_AUDIT_LOG")

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

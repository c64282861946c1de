"""Turning an HTTP request into a verified delivery, or into the right 4xx.

Verification is gidgethub's (``sansio.Event.from_http`` with the secret always given); this module
only orders the checks so that each failure gets the status GitHub's delivery log should show.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import gidgethub
from gidgethub import sansio

from app.queue import NewDelivery

MAX_BODY_BYTES = 25 * 1024 * 1024  # GitHub does not send larger payloads
SUPPORTED_CONTENT_TYPES = ("application/json", "application/x-www-form-urlencoded")


@dataclass(frozen=True, slots=True)
class WebhookRejection(Exception):
    status: int
    reason: str


def parse_delivery(headers: Mapping[str, str], body: bytes, *, secret: str) -> sansio.Event:
    """Verify and decode a delivery; raise ``WebhookRejection`` with the status to answer."""
    if not secret:
        raise WebhookRejection(500, "webhook secret is not configured")
    lowered = {k.lower(): v for k, v in headers.items()}
    if "x-hub-signature-256" not in lowered and "x-hub-signature" not in lowered:
        raise WebhookRejection(401, "missing X-Hub-Signature-256")
    if not lowered.get("x-github-event"):
        raise WebhookRejection(400, "missing X-GitHub-Event header")
    if not lowered.get("x-github-delivery"):
        raise WebhookRejection(400, "missing X-GitHub-Delivery header")
    content_type = lowered.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in SUPPORTED_CONTENT_TYPES:
        raise WebhookRejection(
            415, "content type must be application/json or application/x-www-form-urlencoded"
        )
    try:
        event = sansio.Event.from_http(lowered, body, secret=secret)
    except gidgethub.ValidationFailure as exc:
        raise WebhookRejection(401, f"signature does not match: {exc}") from exc
    except (gidgethub.BadRequest, ValueError, UnicodeDecodeError) as exc:
        raise WebhookRejection(400, "body is not a valid JSON (or form-encoded) payload") from exc
    if not isinstance(event.data, dict):
        raise WebhookRejection(400, "payload must be a JSON object")
    return event


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def pr_number(event: str, data: Mapping[str, Any]) -> int | None:
    """The pull request a delivery concerns, when it names exactly one."""
    if event in {"pull_request", "pull_request_review", "pull_request_review_comment"}:
        pr = data.get("pull_request")
        if isinstance(pr, dict):
            return _as_int(pr.get("number")) or _as_int(data.get("number"))
        return _as_int(data.get("number"))
    if event == "issue_comment":
        issue = data.get("issue")
        if isinstance(issue, dict) and issue.get("pull_request"):
            return _as_int(issue.get("number"))
    if event == "check_run":
        run = data.get("check_run")
        prs = run.get("pull_requests") if isinstance(run, dict) else None
        if isinstance(prs, list) and len(prs) == 1 and isinstance(prs[0], dict):
            return _as_int(prs[0].get("number"))
    return None


def to_new_delivery(
    event: sansio.Event, *, raw_json: bytes | None = None, needs_handling: bool = True
) -> NewDelivery:
    """The row to store; ``raw_json`` (a JSON body as received) is kept as is, unparsed twice."""
    data: dict[str, Any] = event.data
    installation = data.get("installation")
    repository = data.get("repository")
    installation_id = _as_int(installation.get("id")) if isinstance(installation, dict) else None
    full_name = repository.get("full_name") if isinstance(repository, dict) else None
    repo = full_name if isinstance(full_name, str) else None
    action = data.get("action")
    number = pr_number(event.event, data)
    return NewDelivery(
        id=str(event.delivery_id)[:100],
        event=event.event[:100],
        action=action[:100] if isinstance(action, str) else None,
        installation_id=installation_id,
        repository=repo[:300] if repo else None,
        pr_key=f"{repo}#{number}" if repo and number is not None else None,
        payload=(
            raw_json.decode("utf-8")
            if raw_json is not None
            else json.dumps(data, separators=(",", ":"))
        ),
        needs_handling=needs_handling,
    )

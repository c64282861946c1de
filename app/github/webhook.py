"""Turning an HTTP request into a verified delivery, or into the right 4xx.

Verification is gidgethub's (``sansio.validate_event``, the check ``Event.from_http`` makes, with
the secret always given); this module only orders the checks so that each failure gets the status
GitHub's delivery log should show.

The common case, a UTF-8 JSON body, is decoded with orjson: on the webhook's hot path
``from_http`` spends most of its time in the stdlib ``email`` header parser and ``json``, several
times the cost of the HMAC itself. Every other body (form-encoded, another charset, JSON that
orjson refuses but the stdlib accepts) goes through ``from_http`` unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import gidgethub
import orjson
from gidgethub import sansio

from app.github.routes import RouteTable
from app.store.intake_rows import NewDelivery

MAX_BODY_BYTES = 25 * 1024 * 1024  # GitHub does not send larger payloads
SUPPORTED_CONTENT_TYPES = ("application/json", "application/x-www-form-urlencoded")
# The request headers a delivery is judged by (``from_http`` reads the content type itself).
DELIVERY_HEADERS = (
    "content-type",
    "x-hub-signature-256",
    "x-hub-signature",
    "x-github-event",
    "x-github-delivery",
)


@dataclass(frozen=True, slots=True)
class WebhookRejection(Exception):
    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class Answer:
    """A request answered without storing anything: a rejection, or a ``ping``."""

    status: int
    body: dict[str, Any]
    reason: str | None = None  # why it was rejected, for the log


@dataclass(frozen=True, slots=True)
class ToStore:
    """A verified delivery to store, and the pull request head it announces, if any."""

    delivery: NewDelivery
    head: str | None


def examine(
    headers: Mapping[str, str],
    body: bytes,
    *,
    secret: str,
    content_type: str,
    charset: str | None,
    routes: RouteTable,
) -> ToStore | Answer:
    """Everything intake decides about a request before storing it, in one place, for the
    server's process and the intake process alike."""
    try:
        event = parse_delivery(
            headers, body, secret=secret, content_type=content_type, charset=charset
        )
    except WebhookRejection as rejection:
        return Answer(rejection.status, {"error": rejection.reason}, rejection.reason)
    if event.event == "ping":
        return Answer(200, {"ok": True, "zen": event.data.get("zen")})
    # A UTF-8 JSON body is stored as received; anything else as re-encoded JSON.
    is_json = content_type == "application/json" and is_utf8(charset)
    delivery = to_new_delivery(
        event,
        raw_json=body if is_json else None,
        needs_handling=routes.wants(event.event, event.data),
    )
    return ToStore(delivery, pull_request_head(event.event, event.data))


def parse_delivery(
    headers: Mapping[str, str],
    body: bytes,
    *,
    secret: str,
    content_type: str,
    charset: str | None,
) -> sansio.Event:
    """Verify and decode a delivery; raise ``WebhookRejection`` with the status to answer.

    ``content_type`` (lower case, no parameters) and ``charset`` are the request's, as aiohttp
    already parsed them.
    """
    if not secret:
        raise WebhookRejection(500, "webhook secret is not configured")
    lowered = {k.lower(): v for k, v in headers.items()}
    signature = lowered.get("x-hub-signature-256", lowered.get("x-hub-signature"))
    if signature is None:
        raise WebhookRejection(401, "missing X-Hub-Signature-256")
    event_name = lowered.get("x-github-event")
    if not event_name:
        raise WebhookRejection(400, "missing X-GitHub-Event header")
    delivery_id = lowered.get("x-github-delivery")
    if not delivery_id:
        raise WebhookRejection(400, "missing X-GitHub-Delivery header")
    if content_type not in SUPPORTED_CONTENT_TYPES:
        raise WebhookRejection(
            415, "content type must be application/json or application/x-www-form-urlencoded"
        )
    try:
        sansio.validate_event(body, signature=signature, secret=secret)
    except gidgethub.ValidationFailure as exc:
        raise WebhookRejection(401, f"signature does not match: {exc}") from exc
    data: Any = (
        _fast_json(body) if content_type == "application/json" and is_utf8(charset) else None
    )
    if data is None:
        try:
            event = sansio.Event.from_http(lowered, body, secret=secret)
        except gidgethub.ValidationFailure as exc:  # pragma: no cover - validated above
            raise WebhookRejection(401, f"signature does not match: {exc}") from exc
        except (gidgethub.BadRequest, ValueError, UnicodeDecodeError, LookupError) as exc:
            raise WebhookRejection(
                400, "body is not a valid JSON (or form-encoded) payload"
            ) from exc
        data = event.data
    else:
        event = sansio.Event(data, event=event_name, delivery_id=delivery_id)
    if not isinstance(data, dict):
        raise WebhookRejection(400, "payload must be a JSON object")
    return event


def pull_request_head(event: str, data: Mapping[str, Any]) -> str | None:
    """The head SHA a pull request delivery says the PR now has (opened, pushed to, reopened)."""
    if event != "pull_request" or data.get("action") not in {"opened", "synchronize", "reopened"}:
        return None
    pr = data.get("pull_request")
    head = pr.get("head") if isinstance(pr, dict) else None
    sha = head.get("sha") if isinstance(head, dict) else None
    return sha if isinstance(sha, str) else None


def is_utf8(charset: str | None) -> bool:
    return charset is None or charset.lower().replace("_", "-") in {"utf-8", "utf8"}


def _fast_json(body: bytes) -> Any:
    """The decoded body, or None to leave the decision to ``from_http`` (the stdlib)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


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

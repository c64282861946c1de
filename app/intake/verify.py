"""Turning an HTTP request into a verified delivery, or into the right 4xx.

Verification is gidgethub's (``sansio.validate_event``, the check ``Event.from_http`` makes, with
the secret always given); this module only orders the checks so that each failure gets the status
GitHub's delivery log should show.

The common case, a UTF-8 JSON body, is decoded with orjson: on the webhook's hot path
``from_http`` spends most of its time in the stdlib ``email`` header parser and ``json``, several
times the cost of the HMAC itself. Every other body (form-encoded, another charset, JSON that
orjson refuses but the stdlib accepts) goes through ``from_http`` unchanged.

What is a delivery, and what is a 400: a signed body that decodes to a JSON object, with an
event and a delivery id that are printable text, is a delivery, and it is stored (202) whatever
its fields hold. GitHub's payloads change shape over time, and which fields a handler needs and
of what type is the handler's business: a handler that cannot use a payload fails its delivery,
with the error, where ``python -m app deliveries --failed`` shows it. So every field intake
reads for its own columns (action, installation, repository, pull request number) is read
defensively: a field of another type, a number out of range or text no database column can hold
(``store.text``) gives no value, or a cleaned one, never an exception. A 400 is kept for a body
that cannot be a delivery: not JSON (or form-encoded JSON), not an object, nested too deeply to
decode, or sent with a header that is not printable text. Nothing a signed request holds is
answered with a 5xx; a 503 means only that the database did not take the delivery.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import gidgethub
import orjson
from gidgethub import sansio

from app.intake.routes import RouteTable
from app.intake.rows import NewDelivery
from app.store.text import storable

MAX_BODY_BYTES = 25 * 1024 * 1024  # GitHub does not send larger payloads
TOO_DEEP = "payload is nested too deeply to decode"
SUPPORTED_CONTENT_TYPES = ("application/json", "application/x-www-form-urlencoded")
# The request headers a delivery is judged by (``from_http`` reads the content type itself).
DELIVERY_HEADERS = (
    "content-type",
    "x-hub-signature-256",
    "x-hub-signature",
    "x-github-event",
    "x-github-delivery",
)
# The largest value of the columns the ids go to (``BigInteger``), and of a PR number
# (``Integer`` where the reviews keep it); GitHub's ids and numbers are positive.
MAX_ID = 2**63 - 1
MAX_NUMBER = 2**31 - 1


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
        zen = event.data.get("zen")
        return Answer(200, {"ok": True, "zen": zen if isinstance(zen, str) else None})
    # A UTF-8 JSON body is stored as received; anything else as re-encoded JSON.
    is_json = content_type == "application/json" and is_utf8(charset)
    try:
        delivery = to_new_delivery(
            event,
            raw_json=body if is_json else None,
            needs_handling=routes.wants(event.event, event.data),
        )
    except RecursionError:  # re-encoding a payload the stdlib only just decoded
        return Answer(400, {"error": TOO_DEEP}, TOO_DEEP)
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
    # aiohttp hands bytes that are not UTF-8 over as lone surrogates; GitHub sends ASCII.
    if not event_name.isprintable():
        raise WebhookRejection(400, "X-GitHub-Event header is not printable text")
    if not delivery_id.isprintable():
        raise WebhookRejection(400, "X-GitHub-Delivery header is not printable text")
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
        except RecursionError as exc:  # deeper than orjson reads, and than the stdlib can
            raise WebhookRejection(400, TOO_DEEP) from exc
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
    action = data.get("action")
    if event != "pull_request" or not isinstance(action, str):
        return None
    if action not in {"opened", "synchronize", "reopened"}:
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


def _as_int(value: Any, *, limit: int) -> int | None:
    """A positive integer up to ``limit``, given as a JSON number or a string of ASCII digits;
    None for anything else (``str.isdigit`` also takes "²", which ``int`` refuses)."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 0 < value <= limit else None


def _as_number(value: Any) -> int | None:
    return _as_int(value, limit=MAX_NUMBER)


def _as_text(value: Any, size: int) -> str | None:
    """A string field as a column keeps it: cut to the column's size, storable; else None."""
    return storable(value[:size]) if isinstance(value, str) else None


def pr_number(event: str, data: Mapping[str, Any]) -> int | None:
    """The pull request a delivery concerns, when it names exactly one."""
    if event in {"pull_request", "pull_request_review", "pull_request_review_comment"}:
        pr = data.get("pull_request")
        if isinstance(pr, dict):
            return _as_number(pr.get("number")) or _as_number(data.get("number"))
        return _as_number(data.get("number"))
    if event == "issue_comment":
        issue = data.get("issue")
        if isinstance(issue, dict) and issue.get("pull_request"):
            return _as_number(issue.get("number"))
    if event == "check_run":
        run = data.get("check_run")
        prs = run.get("pull_requests") if isinstance(run, dict) else None
        if isinstance(prs, list) and len(prs) == 1 and isinstance(prs[0], dict):
            return _as_number(prs[0].get("number"))
    return None


def to_new_delivery(
    event: sansio.Event, *, raw_json: bytes | None = None, needs_handling: bool = True
) -> NewDelivery:
    """The row to store; ``raw_json`` (a JSON body as received) is kept as is, unparsed twice.

    Every column is read defensively (see the module's docstring): a field of another type or
    out of range leaves its column empty. The payload is stored as it came, for the handlers.
    """
    data: dict[str, Any] = event.data
    installation = data.get("installation")
    repository = data.get("repository")
    installation_id = (
        _as_int(installation.get("id"), limit=MAX_ID) if isinstance(installation, dict) else None
    )
    full_name = repository.get("full_name") if isinstance(repository, dict) else None
    repo = _as_text(full_name, 300) or None
    number = pr_number(event.event, data)
    return NewDelivery(
        id=storable(str(event.delivery_id)[:100]),
        event=storable(event.event[:100]),
        action=_as_text(data.get("action"), 100),
        installation_id=installation_id,
        repository=repo,
        pr_key=f"{repo}#{number}" if repo and number is not None else None,
        payload=(
            raw_json.decode("utf-8")
            if raw_json is not None
            else json.dumps(data, separators=(",", ":"))
        ),
        needs_handling=needs_handling,
    )

"""The dashboard's HTML, rendered on the server.

Every value is escaped; the figures also go into the page as JSON (``<script
type="application/json">``, never executed) for ``static/dashboard.js`` to draw the charts from,
with ``<`` escaped so no value can close the element. The tables carry the same numbers as text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any
from urllib.parse import urlencode

from .access import Viewer
from .filters import Filters

__all__ = ["dashboard_page", "login_page", "message_page", "usd"]


def usd(value: float | None) -> str:
    return "-" if value is None else f"${value:,.4f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title>"
        '<link rel=stylesheet href="/dashboard/static/dashboard.css"></head>'
        f"<body>{body}</body></html>"
    )


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, id: str, empty: str) -> str:
    """A table whose cells are already-escaped HTML."""
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    if not body:
        return f'<p class=empty id="{id}">{escape(empty)}</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    return f'<table id="{id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _link(url: str, text: str) -> str:
    return f'<a href="{escape(url)}" rel="noopener noreferrer">{escape(text)}</a>'


def login_page(
    *,
    form_token: str | None,
    github: bool,
    error: str | None = None,
) -> str:
    parts = ["<main class=login><h1>aigateway dashboard</h1>"]
    if error:
        parts.append(f'<p class=error role=alert id="login-error">{escape(error)}</p>')
    if github:
        parts.append(
            '<p><a class=button href="/dashboard/login/github">Sign in with GitHub</a></p>'
        )
    if form_token is not None:
        parts.append(
            '<form method=post action="/dashboard/login" id="token-login">'
            f'<input type=hidden name=form_token value="{escape(form_token)}">'
            "<label>Operator token <input type=password name=token id=token "
            "autocomplete=current-password required></label>"
            "<button type=submit>Sign in</button></form>"
        )
    parts.append("</main>")
    return _page("Sign in - aigateway", "".join(parts))


def message_page(title: str, message: str) -> str:
    body = (
        f"<main class=login><h1>{escape(title)}</h1><p>{escape(message)}</p>"
        '<p><a href="/dashboard/login">Sign in again</a></p></main>'
    )
    return _page(f"{title} - aigateway", body)


def _filters_form(filters: Filters, choices: Sequence[str]) -> str:
    selected = set(filters.repositories)
    options = ['<option value="">all repositories</option>'] + [
        f'<option value="{escape(name)}"{" selected" if name in selected else ""}>'
        f"{escape(name)}</option>"
        for name in choices
    ]
    return (
        '<form method=get action="/dashboard" id=filters>'
        f"<label>Repository <select name=repo>{''.join(options)}</select></label>"
        f'<label>From <input type=date name=since value="{filters.since.isoformat()}"></label>'
        f'<label>To <input type=date name=until value="{filters.until.isoformat()}"></label>'
        "<button type=submit>Apply</button></form>"
    )


def _spend(spend: dict[str, Any]) -> str:
    def budget(entry: dict[str, Any], key: str) -> str:
        known = entry["budget"]
        return escape(usd(known[key])) if known and known[key] is not None else "none"

    rows = [
        (
            escape(e["repository"]),
            f'<span class=usd data-usd="{e["total_usd"]}">{escape(usd(e["total_usd"]))}</span>',
            str(e["calls"]),
            budget(e, "daily_usd"),
            str(e["days_over_daily_budget"]),
            budget(e, "weekly_usd"),
            budget(e, "per_pr_usd"),
            f'<span class=usd data-usd="{e["reconciled_usd"]}">'
            f"{escape(usd(e['reconciled_usd']))}</span>",
            f"{e['reconciled_calls']} of {e['calls']}",
        )
        for e in spend["repositories"]
    ]
    total = usd(spend["total_usd"])
    reconciled = usd(spend["reconciled_usd"])
    return (
        "<section id=spend><h2>Spend per repository and day</h2>"
        f'<p>Total: <strong id=spend-total data-usd="{spend["total_usd"]}">{escape(total)}'
        "</strong> (ledger costs; budgets as last applied when reserving); "
        "at the gateway&#39;s own cost where reconciled: "
        f'<strong id=spend-reconciled data-usd="{spend["reconciled_usd"]}">'
        f"{escape(reconciled)}</strong></p>"
        '<div class=chart><canvas id="spend-chart" aria-label="Spend per day"></canvas></div>'
        + _table(
            (
                "repository",
                "spend",
                "calls",
                "daily budget",
                "days over it",
                "weekly budget",
                "per-PR budget",
                "gateway's cost",
                "calls reconciled",
            ),
            rows,
            id="spend-table",
            empty="No model calls in these days.",
        )
        + "</section>"
    )


def _reviews(reviews: dict[str, Any]) -> str:
    rows = [
        (
            _link(r["url"], f"{r['repository']}#{r['pr_number']}"),
            escape(r["started_at"][:16].replace("T", " ")),
            escape(r["decision"] or "-"),
            escape(_num(r["confidence"])),
            escape(r["tier"] or "-"),
            escape(r["status"]),
            f'<span class=usd data-usd="{r["cost_usd"]}">{escape(usd(r["cost_usd"]))}</span>',
        )
        for r in reviews["reviews"]
    ]
    return (
        f"<section id=reviews><h2>Last reviews (up to {reviews['limit']})</h2>"
        + _table(
            ("pull request", "started (UTC)", "decision", "confidence", "tier", "status", "cost"),
            rows,
            id="reviews-table",
            empty="No reviews in these days.",
        )
        + "</section>"
    )


def _escalations(data: dict[str, Any]) -> str:
    rows = [
        (
            _link(e["url"], f"{e['repository']}#{e['pr_number']}"),
            escape(e["tier"] or "-"),
            escape(_num(e["confidence"])),
            escape(e["decided_at"][:16].replace("T", " ")),
            escape(f"{e['waiting_hours']} h"),
        )
        for e in data["escalations"]
    ]
    return (
        "<section id=escalations><h2>Escalations waiting for a human</h2>"
        + _table(
            ("pull request", "tier", "confidence", "escalated (UTC)", "waiting"),
            rows,
            id="escalations-table",
            empty="None waiting.",
        )
        + "</section>"
    )


def _failed(data: dict[str, Any]) -> str:
    rows = [
        (
            str(a["id"]),
            escape(a["kind"]),
            _link(a["url"], f"{a['repository']}#{a['pr_number']}"),
            str(a["attempts"]),
            escape((a["last_error"] or "-")[:200]),
        )
        for a in data["failed_actions"]
    ]
    return (
        "<section id=failed-actions><h2>Failed actions</h2>"
        + _table(
            ("id", "kind", "pull request", "attempts", "last error"),
            rows,
            id="failed-table",
            empty="No failed actions.",
        )
        + f"<p class=hint>Queue one again: <code>{escape(data['retry'])}</code></p></section>"
    )


def _outcomes(data: dict[str, Any]) -> str:
    def cells(r: dict[str, Any]) -> tuple[str, ...]:
        outcomes = ", ".join(f"{k} {v}" for k, v in r["outcomes"].items()) or "-"
        return (
            escape(r["tier"]),
            escape(r["decision"]),
            str(r["changes"]),
            escape(outcomes),
            f"{r['bad']}/{r['settled']}",
            escape(_pct(r["bad_rate"])),
            escape(_num(r["mean_confidence"])),
        )

    rows = [cells(r) for r in data["rows"]]
    if rows:
        rows.append(cells(data["totals"]))
    return (
        "<section id=outcomes><h2>Outcomes per risk tier and decision</h2>"
        '<div class=chart><canvas id="outcomes-chart" aria-label="Outcomes"></canvas></div>'
        + _table(
            ("tier", "decision", "changes", "outcomes", "bad", "bad rate", "confidence"),
            rows,
            id="outcomes-table",
            empty="No registered changes decided in these days.",
        )
        + "</section>"
    )


def _calibration(data: dict[str, Any]) -> str:
    rows = [
        (
            f"{b['low']:.2f}-{b['high']:.2f}",
            str(b["settled"]),
            escape(_pct(b["bad_rate"])),
            escape(_pct(b["expected_bad_rate"])),
        )
        for b in data["buckets"]
        if b["settled"]
    ]
    brier = "-" if data["brier"] is None else f"{data['brier']:.3f}"
    return (
        "<section id=calibration><h2>Calibration</h2>"
        "<p>Bad-outcome rate seen per confidence bucket against the rate the confidence promised "
        f"(the diagonal). Brier score: <strong id=brier>{escape(brier)}</strong> "
        "(0 is perfect; always saying 0.5 scores 0.25).</p>"
        '<div class=chart><canvas id="calibration-chart" aria-label="Calibration"></canvas></div>'
        + _table(
            ("confidence", "settled", "bad rate", "promised"),
            rows,
            id="calibration-table",
            empty="No settled outcomes yet.",
        )
        + "</section>"
    )


def _json_script(data: dict[str, Any]) -> str:
    text = json.dumps(data, separators=(",", ":")).replace("<", "\\u003c").replace(">", "\\u003e")
    return f'<script type="application/json" id="figures">{text}</script>'


def dashboard_page(
    *,
    viewer: Viewer,
    filters: Filters,
    choices: Sequence[str],
    figures: dict[str, Any],
) -> str:
    who = "operator" if viewer.kind == "operator" else viewer.login
    api = "/dashboard/api/spend?" + urlencode(filters.query())
    header = (
        "<header><h1>aigateway</h1>"
        f"<span class=who>Signed in as <strong id=viewer>{escape(who)}</strong></span>"
        '<form method=post action="/dashboard/logout" id=logout>'
        f'<input type=hidden name=csrf value="{escape(viewer.csrf)}">'
        "<button type=submit>Sign out</button></form></header>"
    )
    body = (
        header
        + "<main>"
        + _filters_form(filters, choices)
        + f'<p class=hint>Every figure is also JSON: <a href="{escape(api)}">{escape(api)}</a>, '
        "reviews, escalations, failed-actions, outcomes, calibration.</p>"
        + _spend(figures["spend"])
        + _reviews(figures["reviews"])
        + _escalations(figures["escalations"])
        + _failed(figures["failed_actions"])
        + _outcomes(figures["outcomes"])
        + _calibration(figures["calibration"])
        + "</main>"
        + _json_script(figures)
        + '<script src="/dashboard/static/chart.umd.min.js"></script>'
        + '<script src="/dashboard/static/dashboard.js"></script>'
    )
    return _page("aigateway dashboard", body)

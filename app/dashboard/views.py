"""The dashboard's aiohttp views.

- ``GET /dashboard``: the page (no session: a redirect to the login page);
- ``GET /dashboard/api/{figure}``: one figure as JSON, with a session or
  ``Authorization: Bearer <OPERATOR_TOKEN>`` (none: 401; a wrong token: 401);
- ``GET|POST /dashboard/login``: the login page, and the operator token form (a wrong token: 401);
- ``GET /dashboard/login/github`` and ``GET /dashboard/callback``: the OAuth web flow;
- ``POST /dashboard/logout``: ends the session (its CSRF token required: 403 without).

Every form is CSRF-safe: the token form carries a value also held in the login cookie, the OAuth
callback's ``state`` must match the one in the login cookie (which it clears: a replayed
callback fails), and the logout form carries the session's own token. Cookies are HttpOnly,
SameSite=Lax, limited to ``/dashboard``, and Secure when the request came over https.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web
from pydantic import SecretStr

from app.feedback.registry import FeedbackStore
from app.operator.endpoints import bearer_matches
from app.quota import QuotaLedger
from app.services import Services
from app.settings import Settings
from app.store.types import utcnow

from .access import AccessCache, Viewer, new_csrf, operator_fingerprint, same
from .figures import FIGURES, Figures
from .filters import FilterError, parse_filters
from .oauth import GitHubOAuth, OAuthError, TokenRejected
from .render import dashboard_page, login_page, message_page
from .session import SessionCodec

__all__ = ["DASHBOARD", "DashboardState", "routes"]

log = logging.getLogger(__name__)

SESSION_COOKIE: Final = "aigw_session"
LOGIN_COOKIE: Final = "aigw_login"
COOKIE_PATH: Final = "/dashboard"
LOGIN_TTL_S: Final = 600.0
HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self' {web}; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class DashboardState:
    settings: Settings
    services: web.AppKey[Services]
    codec: SessionCodec
    operator_token: SecretStr | None
    oauth: GitHubOAuth | None = None
    access: AccessCache | None = None

    @property
    def session_s(self) -> float:
        return self.settings.dashboard_session_hours * 3600


DASHBOARD = web.AppKey("dashboard", DashboardState)


def _state(request: web.Request) -> DashboardState:
    return request.app[DASHBOARD]


def _secure(request: web.Request) -> bool:
    return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


def _set_cookie(
    response: web.StreamResponse, request: web.Request, name: str, value: str, max_age: float
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=int(max_age),
        path=COOKIE_PATH,
        httponly=True,
        samesite="Lax",
        secure=_secure(request),
    )


def _clear_cookie(response: web.StreamResponse, name: str) -> None:
    response.del_cookie(name, path=COOKIE_PATH)


def guarded(view: Handler) -> Handler:
    """The security headers on every dashboard answer, errors included."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        web_url = _state(request).settings.github_web
        try:
            response = await view(request)
        except web.HTTPException as exc:
            exc.headers.update(_headers(web_url))
            raise
        response.headers.update(_headers(web_url))
        return response

    return wrapped


def _headers(web_url: str) -> dict[str, str]:
    return {k: v.replace("{web}", web_url) for k, v in HEADERS.items()}


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def _json_error(status: int, message: str) -> web.HTTPException:
    cls: type[web.HTTPException] = {
        400: web.HTTPBadRequest,
        401: web.HTTPUnauthorized,
        404: web.HTTPNotFound,
    }[status]
    extra = {"WWW-Authenticate": 'Bearer realm="aigateway dashboard"'} if status == 401 else None
    return cls(
        text=web.json_response({"error": message}).text,
        content_type="application/json",
        headers=extra,
    )


# ------------------------------------------------------------------------------- sessions


async def _viewer(request: web.Request) -> Viewer | None:
    """The session's viewer, or None (no session, an old one, or a token GitHub refuses)."""
    state = _state(request)
    data = state.codec.decode(request.cookies.get(SESSION_COOKIE), max_age_s=state.session_s)
    if data is None or not isinstance(data.get("c"), str):
        return None
    csrf = str(data["c"])
    if data.get("k") == "operator":
        token = state.operator_token
        if token is None or not same(str(data.get("f", "")), operator_fingerprint(token)):
            return None
        return Viewer("operator", "operator", None, csrf)
    if data.get("k") == "github" and state.access is not None:
        token = data.get("t")
        if not isinstance(token, str):
            return None
        try:
            access = await state.access.access(token)
        except TokenRejected:
            return None
        except OAuthError as exc:
            log.warning("dashboard: cannot check a GitHub user's access: %s", exc)
            raise web.HTTPServiceUnavailable(
                text=message_page("GitHub unreachable", f"Cannot check your access now: {exc}"),
                content_type="text/html",
                headers={"Retry-After": "30"},
            ) from None
        return Viewer("github", access.login, access.repositories, csrf)
    return None


def _start_session(
    request: web.Request, response: web.StreamResponse, data: dict[str, Any]
) -> None:
    state = _state(request)
    data = {**data, "c": new_csrf()}
    _set_cookie(response, request, SESSION_COOKIE, state.codec.encode(data), state.session_s)
    _clear_cookie(response, LOGIN_COOKIE)


# ------------------------------------------------------------------------------- the page


def _filters_or_error(request: web.Request, viewer: Viewer) -> Figures:
    state = _state(request)
    try:
        filters = parse_filters(
            {k: request.query[k] for k in request.query},
            request.query.getall("repo", []),
            today=utcnow().date(),
        )
    except FilterError as exc:
        raise _json_error(400, str(exc)) from None
    if viewer.scope is not None:
        hidden = [name for name in filters.repositories if name not in viewer.scope]
        if hidden:
            raise _json_error(404, f"no repository {hidden[0]} that you can read")
    return Figures(
        db=request.app[state.services].db,
        scope=viewer.scope,
        filters=filters,
        now=utcnow(),
        web_url=state.settings.github_web,
    )


async def _choices(figures: Figures) -> list[str]:
    """The repositories the filter offers: every one with spend or decisions the viewer sees."""
    known = set(await QuotaLedger(figures.db).repositories())
    known |= set(await FeedbackStore(figures.db).repositories())
    if figures.scope is not None:
        known &= figures.scope
    return sorted(known | set(figures.filters.repositories))


@guarded
async def page_view(request: web.Request) -> web.StreamResponse:
    viewer = await _viewer(request)
    if viewer is None:
        raise web.HTTPFound("/dashboard/login")
    try:
        figures = _filters_or_error(request, viewer)
    except web.HTTPException as exc:
        return _html(message_page("Cannot show that", _message(exc)), exc.status)
    data = await figures.all()
    html = dashboard_page(
        viewer=viewer, filters=figures.filters, choices=await _choices(figures), figures=data
    )
    return _html(html)


def _message(exc: web.HTTPException) -> str:
    try:
        return str(json.loads(exc.text or "{}")["error"])
    except (ValueError, KeyError):
        return exc.reason


@guarded
async def api_view(request: web.Request) -> web.StreamResponse:
    name = request.match_info["figure"]
    figure = FIGURES.get(name)
    if figure is None:
        raise _json_error(404, f"no figure {name!r}; there are: {', '.join(FIGURES)}")
    state = _state(request)
    header = request.headers.get("Authorization")
    viewer: Viewer | None
    if header is not None:
        if state.operator_token is None or not bearer_matches(header, state.operator_token):
            raise _json_error(401, "this token is not the operator token")
        viewer = Viewer("operator", "operator", None, "")
    else:
        viewer = await _viewer(request)
        if viewer is None:
            raise _json_error(
                401, "sign in at /dashboard/login, or send Authorization: Bearer <OPERATOR_TOKEN>"
            )
    figures = _filters_or_error(request, viewer)
    body = await figure(figures)
    body["filters"] = {
        "repositories": list(figures.filters.repositories),
        "since": figures.filters.since.isoformat(),
        "until": figures.filters.until.isoformat(),
    }
    return web.json_response(body)


# ------------------------------------------------------------------------------- logging in


def _login_form(request: web.Request, *, error: str | None, status: int) -> web.Response:
    state = _state(request)
    form_token = new_csrf() if state.operator_token is not None else None
    response = _html(
        login_page(form_token=form_token, github=state.oauth is not None, error=error), status
    )
    if form_token is not None:
        cookie = state.codec.encode({"f": form_token})
        _set_cookie(response, request, LOGIN_COOKIE, cookie, LOGIN_TTL_S)
    return response


@guarded
async def login_view(request: web.Request) -> web.StreamResponse:
    if await _viewer(request) is not None:
        raise web.HTTPFound("/dashboard")
    return _login_form(request, error=None, status=200)


@guarded
async def login_post_view(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    form = await request.post()
    login = state.codec.decode(request.cookies.get(LOGIN_COOKIE), max_age_s=LOGIN_TTL_S) or {}
    offered = str(form.get("form_token", ""))
    if not offered or not same(offered, str(login.get("f", ""))):
        return _login_form(request, error="The sign-in form expired; please try again.", status=403)
    token = state.operator_token
    given = str(form.get("token", ""))
    if token is None or not bearer_matches(f"Bearer {given}", token):
        log.warning("dashboard: a sign-in with a wrong operator token from %s", request.remote)
        return _login_form(request, error="That is not the operator token.", status=401)
    response = web.HTTPSeeOther("/dashboard")
    _start_session(request, response, {"k": "operator", "f": operator_fingerprint(token)})
    raise response


@guarded
async def github_login_view(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    if state.oauth is None:
        raise web.HTTPNotFound()
    oauth_state = secrets.token_urlsafe(32)
    response = web.HTTPFound(
        state.oauth.authorize_url(state=oauth_state, redirect_uri=_redirect_uri(request))
    )
    _set_cookie(
        response, request, LOGIN_COOKIE, state.codec.encode({"s": oauth_state}), LOGIN_TTL_S
    )
    raise response


def _redirect_uri(request: web.Request) -> str:
    base = _state(request).settings.dashboard_public_url
    if base:
        return base.rstrip("/") + "/dashboard/callback"
    scheme = "https" if _secure(request) else request.scheme
    return f"{scheme}://{request.host}/dashboard/callback"


@guarded
async def callback_view(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    if state.oauth is None or state.access is None:
        raise web.HTTPNotFound()
    login = state.codec.decode(request.cookies.get(LOGIN_COOKIE), max_age_s=LOGIN_TTL_S) or {}
    expected = str(login.get("s", ""))
    given = request.query.get("state", "")
    if not expected or not given or not same(given, expected):
        response = _html(
            message_page(
                "Sign-in refused",
                "This sign-in link is not the one this browser started, or it was used already.",
            ),
            400,
        )
        _clear_cookie(response, LOGIN_COOKIE)
        return response
    code = request.query.get("code", "")
    if not code:
        reason = request.query.get("error_description") or "GitHub sent no code"
        return _html(message_page("Sign-in refused", reason), 400)
    try:
        token = await state.oauth.exchange(code, redirect_uri=_redirect_uri(request))
        access = await state.oauth.access(token)
    except OAuthError as exc:
        response = _html(message_page("Sign-in failed", str(exc)), 400)
        _clear_cookie(response, LOGIN_COOKIE)
        return response
    state.access.remember(token, access)
    log.info("dashboard: %s signed in with GitHub", access.login)
    redirect = web.HTTPSeeOther("/dashboard")
    _start_session(request, redirect, {"k": "github", "t": token})
    raise redirect


@guarded
async def logout_view(request: web.Request) -> web.StreamResponse:
    viewer = await _viewer(request)
    form = await request.post()
    if viewer is None:
        raise web.HTTPSeeOther("/dashboard/login")
    if not same(str(form.get("csrf", "")), viewer.csrf):
        return _html(message_page("Sign-out refused", "The form's CSRF token is wrong."), 403)
    response = web.HTTPSeeOther("/dashboard/login")
    _clear_cookie(response, SESSION_COOKIE)
    raise response


def routes() -> list[tuple[str, str, Handler]]:
    return [
        ("GET", "/dashboard", page_view),
        ("GET", "/dashboard/", page_view),
        ("GET", "/dashboard/api/{figure}", api_view),
        ("GET", "/dashboard/login", login_view),
        ("POST", "/dashboard/login", login_post_view),
        ("GET", "/dashboard/login/github", github_login_view),
        ("GET", "/dashboard/callback", callback_view),
        ("POST", "/dashboard/logout", logout_view),
    ]

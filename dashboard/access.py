"""Who may see the dashboard: the holder of its token, under the host names it serves.

The token is generated on first start (``iotpipe.credentials``) or set with
``IOTPIPE_DASHBOARD_TOKEN``; ``iotpipe dashboard`` prints a login URL once.
``/login?token=...`` turns it into an HttpOnly, SameSite=Strict cookie, so
pages and their API calls carry it and no other site's page can; scripts send
``Authorization: Bearer <token>``. A request under any other Host header is
refused before anything else (a DNS-rebinding page in a browser on this
machine cannot read the API through its own domain name).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from starlette.middleware.trustedhost import TrustedHostMiddleware

COOKIE = "iotpipe_dashboard"
OPEN_PREFIXES = ("/static/",)  # the pages' own JS and CSS, nothing from InfluxDB

_LOGIN_NEEDED = """<!doctype html><meta charset="utf-8"><title>iotpipe dashboard</title>
<p>This dashboard needs its access token. Open the login URL that
<code>iotpipe dashboard</code> printed when it started
(<code>/login?token=...</code>).</p>"""


def allowed_hosts(host: str, extra: str) -> list[str]:
    """The listening host, the loopback names, and any configured ones."""
    names = {host, "127.0.0.1", "localhost", "::1", "[::1]"}
    names |= {h.strip() for h in extra.split(",") if h.strip()}
    return sorted(names - {"0.0.0.0", "::"})  # a wildcard bind is not a name


def _matches(given: str, token: str) -> bool:
    return bool(given) and hmac.compare_digest(given.encode(), token.encode())


def _presented(request: Request) -> str:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.cookies.get(COOKIE, "")


def install_access(app: FastAPI, token: str, hosts: list[str]) -> None:
    """Require ``token`` on every page and API call; refuse other Host headers."""

    @app.middleware("http")
    async def require_token(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        path = request.url.path
        if path == "/login":
            if not _matches(request.query_params.get("token", ""), token):
                return HTMLResponse(_LOGIN_NEEDED, status_code=401)
            response = RedirectResponse("/", status_code=303)
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
            return response
        if path.startswith(OPEN_PREFIXES) or _matches(_presented(request), token):
            return await call_next(request)
        if path.startswith("/api/"):
            return JSONResponse({"detail": "missing or wrong dashboard token"}, status_code=401)
        return HTMLResponse(_LOGIN_NEEDED, status_code=401)

    # Added last, so it runs first: a foreign Host never reaches the token check.
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts)

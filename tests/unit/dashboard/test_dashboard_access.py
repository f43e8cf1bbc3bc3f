"""The dashboard's door: token on every page and API call, and only its own host names."""

from __future__ import annotations

import asyncio

import httpx
from pydantic import SecretStr

from dashboard import create_app
from dashboard.access import COOKIE, allowed_hosts
from iotpipe.settings import load_settings
from ops.health import HealthCollector


def _get(app: object, path: str, host: str = "127.0.0.1", **headers: str) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{host}") as c:
            return await c.get(path, headers=headers)

    return asyncio.run(go())


def _app(token: str | None = "t0ken-for-tests") -> object:
    s = load_settings()
    web = s.dashboard.model_copy(update={"token": SecretStr(token) if token else None})
    return create_app(s.model_copy(update={"dashboard": web}), HealthCollector)


def test_every_page_and_api_call_needs_the_token() -> None:
    app = _app()
    for path in ("/", "/pipeline", "/api/config", "/openapi.json"):
        assert _get(app, path).status_code == 401, path
        assert _get(app, path, authorization="Bearer wrong").status_code == 401, path
    assert _get(app, "/api/config", authorization="Bearer t0ken-for-tests").status_code == 200
    assert _get(app, "/static/vendor/uPlot.min.css").status_code in (200, 404)  # open, no data


def test_login_sets_a_strict_http_only_cookie_that_opens_the_pages() -> None:
    app = _app()
    assert _get(app, "/login?token=nope").status_code == 401
    resp = _get(app, "/login?token=t0ken-for-tests")
    assert resp.status_code == 303 and resp.headers["location"] == "/"
    cookie = resp.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    opened = _get(app, "/api/config", cookie=f"{COOKIE}=t0ken-for-tests")
    assert opened.status_code == 200


def test_a_foreign_host_header_is_refused_before_the_token() -> None:
    app = _app()
    auth = {"authorization": "Bearer t0ken-for-tests"}
    assert _get(app, "/api/config", host="evil.example", **auth).status_code == 400
    assert _get(app, "/api/config", host="localhost:8080", **auth).status_code == 200


def test_without_a_configured_token_each_run_gets_its_own() -> None:
    first, second = _app(None), _app(None)
    assert first.state.token != second.state.token  # type: ignore[attr-defined]
    assert len(first.state.token) >= 30  # type: ignore[attr-defined]


def test_allowed_hosts() -> None:
    assert "dash.plant.example" in allowed_hosts("0.0.0.0", "dash.plant.example")
    assert "0.0.0.0" not in allowed_hosts("0.0.0.0", "")
    assert {"127.0.0.1", "localhost"} <= set(allowed_hosts("127.0.0.1", ""))

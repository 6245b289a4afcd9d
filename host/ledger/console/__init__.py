"""The operator console: server-rendered HTML pages on the ledger, at /console.

`mount(app, ledger, token)` is the hook the ledger's app factory calls (host/ledger/app.py). The
console is its own Starlette application: pages are Jinja2 templates (templates/), charts inline
SVG (charts.py), data read through views.py, fraud proofs judged again from the signed bytes
(proofs.py), access decided by session.py before anything else. No JavaScript, no build step.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import FastAPI
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from tapcash.host import output

from ..errors import LedgerError
from ..service import Ledger
from . import charts, views
from .session import COOKIE, SESSION_S, ConsoleAuth, Keys, cookie_of

PREFIX = "/console"
DEVICE_RE = re.compile(r"^[0-9a-f]{16}$")
LOGIN_FAIL_DELAY_S = 0.5  # a wrong token costs the guesser this long
FORM_MAX = 4096  # bytes of a console form


def money(v: int | None) -> str:
    """Minor units as a decimal amount: 123456 -> 1,234.56 (host/output.py: as the CLI prints)."""
    return output.money(v)


def when(ts: int | None) -> str:
    """ISO 8601 UTC, as the CLI prints times (host/output.py)."""
    return output.iso(ts) or ""


def _env() -> Environment:
    env = Environment(loader=PackageLoader("tapcash.host.ledger.console", "templates"),
                      autoescape=select_autoescape(["html"]), trim_blocks=True,
                      lstrip_blocks=True)
    env.filters.update(money=money, when=when, short=lambda h: (h or "")[:8])
    env.globals.update(prefix=PREFIX, hbars=charts.hbars, stacked=charts.stacked, money=money)
    return env


class Console:
    def __init__(self, ledger: Ledger, token: str) -> None:
        self.ledger = ledger
        self.keys = Keys(token)
        self.env = _env()

    # -- rendering
    def page(self, request: Request, template: str, status: int = 200, **ctx: Any) -> Response:
        session = cookie_of(request.scope)
        csrf = self.keys.csrf(session) if self.keys.session_ok(session) else ""
        html = self.env.get_template(template).render(request=request, csrf=csrf, **ctx)
        return HTMLResponse(html, status_code=status, headers={
            "Cache-Control": "no-store",
            "Content-Security-Policy": "default-src 'none'; style-src 'self' 'unsafe-inline'; "
                                       "img-src 'self' data:; form-action 'self'; "
                                       "frame-ancestors 'none'",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin",
        })

    async def view(self, request: Request, template: str, fn: Any, *args: Any,
                   **ctx: Any) -> Response:
        try:
            data = await run_in_threadpool(fn, self.ledger, *args)
        except LedgerError as e:
            return self.error(request, e.status, _reason(e))
        return self.page(request, template, data=data, **ctx)

    def error(self, request: Request, status: int, message: str) -> Response:
        return self.page(request, "error.html", status=status, status_code=status,
                         message=message)

    # -- login
    async def login_form(self, request: Request) -> Response:
        return self.page(request, "login.html")

    async def login(self, request: Request) -> Response:
        form = await _form(request)
        if form is None or not self.keys.token_ok(form.get("token", "")):
            await asyncio.sleep(LOGIN_FAIL_DELAY_S)
            return self.page(request, "login.html", status=401,
                             message="That is not the operator token.")
        resp = RedirectResponse(PREFIX + "/", status_code=303)
        resp.set_cookie(COOKIE, self.keys.new_session(), max_age=SESSION_S, path=PREFIX,
                        httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")
        return resp

    async def logout(self, request: Request) -> Response:
        bad = await self._csrf_refused(request)
        if bad is not None:
            return bad
        resp = RedirectResponse(PREFIX + "/login", status_code=303)
        resp.delete_cookie(COOKIE, path=PREFIX)
        return resp

    async def _csrf_refused(self, request: Request) -> Response | None:
        """A cookie session must post its CSRF token (a bearer token needs none: a browser
        never adds it by itself)."""
        request.state.form = await _form(request)
        if request.state.form is None:
            return self.error(request, 400, "the form is malformed or too large")
        session = cookie_of(request.scope)
        if self.keys.session_ok(session) and not self.keys.csrf_ok(
                session, request.state.form.get("csrf", "")):
            return self.error(request, 403, "the form's CSRF token is missing or wrong: "
                                            "reload the page and try again")
        return None

    # -- pages
    async def overview(self, request: Request) -> Response:
        return await self.view(request, "overview.html", views.overview, nav="overview")

    async def merchants(self, request: Request) -> Response:
        return await self.view(request, "merchants.html", views.merchants, nav="merchants")

    async def fraud(self, request: Request) -> Response:
        return await self.view(request, "fraud.html", views.fraud_list, nav="fraud")

    async def fraud_case(self, request: Request) -> Response:
        return await self.view(request, "fraud_case.html", views.fraud_case,
                               request.path_params["case"], nav="fraud")

    async def hotlist(self, request: Request) -> Response:
        return await self.view(request, "hotlist.html", views.hotlist, nav="hotlist",
                               done=request.query_params.get("revoked", ""))

    async def revoke(self, request: Request) -> Response:
        bad = await self._csrf_refused(request)
        if bad is not None:
            return bad
        form = request.state.form
        device = form.get("device", "").strip().lower()
        reason = form.get("reason", "").strip()
        if not DEVICE_RE.match(device):
            return self.error(request, 400, "device: 16 hex digits (its id)")
        if not 1 <= len(reason) <= 200:
            return self.error(request, 400, "reason: 1-200 characters (it goes into the "
                                            "device's record)")
        try:
            out = await run_in_threadpool(self.ledger.revoke, bytes.fromhex(device),
                                          "operator: " + reason)
        except LedgerError as e:
            return self.error(request, e.status, _reason(e))
        return RedirectResponse(f"{PREFIX}/hotlist?revoked={quote(device)}"
                                f"&version={out['hotlist_version']}", status_code=303)

    async def devices(self, request: Request) -> Response:
        return await self.view(request, "devices.html", views.devices, nav="devices")

    async def device(self, request: Request) -> Response:
        dev = request.path_params["device"].lower()
        if not DEVICE_RE.match(dev):
            return self.error(request, 404, "a device id is 16 hex digits")
        return await self.view(request, "device.html", views.device, bytes.fromhex(dev),
                               nav="devices")

    async def payroll(self, request: Request) -> Response:
        return await self.view(request, "payroll.html", views.payroll, nav="payroll")

    async def programmes(self, request: Request) -> Response:
        return await self.view(request, "programmes.html", views.programmes, nav="programmes")

    async def not_found(self, request: Request, exc: Exception) -> Response:
        return self.error(request, 404, "no such page")

    def app(self) -> Starlette:
        routes = [
            Route("/login", self.login_form, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/", self.overview, methods=["GET"]),
            Route("/merchants", self.merchants, methods=["GET"]),
            Route("/fraud", self.fraud, methods=["GET"]),
            Route("/fraud/{case:int}", self.fraud_case, methods=["GET"]),
            Route("/hotlist", self.hotlist, methods=["GET"]),
            Route("/revoke", self.revoke, methods=["POST"]),
            Route("/devices", self.devices, methods=["GET"]),
            Route("/devices/{device}", self.device, methods=["GET"]),
            Route("/payroll", self.payroll, methods=["GET"]),
            Route("/programmes", self.programmes, methods=["GET"]),
        ]
        sub = Starlette(routes=routes, exception_handlers={404: self.not_found})
        sub.add_middleware(ConsoleAuth, keys=self.keys)
        return sub


def _reason(e: LedgerError) -> str:
    d = e.detail
    return str(d.get("error", d)) if isinstance(d, dict) else str(d)


async def _form(request: Request) -> dict[str, str] | None:
    """An application/x-www-form-urlencoded body (the console's forms), first value per name."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_MAX:
            return None
    try:
        parsed = parse_qs(body.decode("ascii"), keep_blank_values=True, strict_parsing=False,
                          max_num_fields=16)
    except (UnicodeDecodeError, ValueError):
        return None
    return {k: v[0] for k, v in parsed.items()}


def mount(app: FastAPI, ledger: Ledger, token: str) -> None:
    """Serve the console at /console on the ledger's app (its own auth: session.py)."""
    app.mount(PREFIX, Console(ledger, token).app(), name="console")

    async def to_console() -> Response:
        return RedirectResponse(PREFIX + "/", status_code=307)

    app.add_api_route(PREFIX, to_console, include_in_schema=False)

"""Who may see the console, decided before any page is built.

The console is for operators only, and it knows one secret: the ledger's operator token.

* A browser logs in once with the token (the login form); the console answers with a session
  cookie `HttpOnly; SameSite=Strict; Path=/console` (`Secure` over HTTPS) whose value is
  `v1.<issued unix seconds>.<HMAC-SHA256>`, keyed by a key derived from the token. Nothing is
  stored server side, so every worker process of the ledger accepts it; it expires after
  SESSION_S, and changing the operator token invalidates every session.
* A tool may instead send `Authorization: Bearer <token>`, as on the JSON API.
* Every POST (a revocation, log out) carries a CSRF token in the form: an HMAC of the session
  under the same key, so a page of another site cannot make the operator's browser post (the
  cookie is SameSite=Strict as well, and a cross-origin `Origin` header is refused).

ConsoleAuth is the console application's outermost middleware and denies by default: only the
login page and its POST are reachable without a session.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from http.cookies import SimpleCookie

from starlette.types import ASGIApp, Receive, Scope, Send

COOKIE = "tapcash_console"
SESSION_S = 8 * 3600  # a working day
OPEN_PATHS = ("/login",)  # inside the console's mount point


class Keys:
    """Session and CSRF values for one operator token."""

    def __init__(self, token: str, clock: Callable[[], float] = time.time) -> None:
        self._token = token.encode()
        self._key = hashlib.sha256(b"tapcash/console/v1\x00" + self._token).digest()
        self.clock = clock

    def token_ok(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self._token)

    def bearer_ok(self, header: bytes) -> bool:
        from ..auth import bearer_token

        given = bearer_token(header)
        return given is not None and hmac.compare_digest(given, self._token)

    def _mac(self, what: bytes) -> str:
        return hmac.new(self._key, what, hashlib.sha256).hexdigest()

    def new_session(self) -> str:
        issued = str(int(self.clock()))
        return f"v1.{issued}.{self._mac(b'session:' + issued.encode())}"

    def session_ok(self, value: str | None) -> bool:
        if not value:
            return False
        parts = value.split(".")
        if len(parts) != 3 or parts[0] != "v1" or not parts[1].isdigit():
            return False
        if not hmac.compare_digest(parts[2], self._mac(b"session:" + parts[1].encode())):
            return False
        age = self.clock() - int(parts[1])
        return -60 <= age <= SESSION_S

    def csrf(self, session: str) -> str:
        return self._mac(b"csrf:" + session.encode())

    def csrf_ok(self, session: str | None, given: str) -> bool:
        return bool(session) and hmac.compare_digest(given, self.csrf(session or ""))


def cookie_of(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"cookie":
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except Exception:  # a malformed Cookie header is no session
                return None
            morsel = jar.get(COOKIE)
            return morsel.value if morsel is not None else None
    return None


def header(scope: Scope, name: bytes) -> bytes:
    for key, value in scope.get("headers", []):
        if key == name:
            return value
    return b""


class ConsoleAuth:
    """ASGI middleware of the console app: a request without a valid session cookie or bearer
    token is sent to the login page (a browser) or answered 401 (anything else); nothing of it
    is read. A POST from another origin is refused (403) whatever it carries."""

    def __init__(self, app: ASGIApp, *, keys: Keys) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        sub = path[len(root):] if path.startswith(root) else path
        if scope.get("method") == "POST" and not same_origin(scope):
            await plain(send, 403, "cross-origin POST refused")
            return
        if sub in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        bearer = header(scope, b"authorization")
        if (bearer and self.keys.bearer_ok(bearer)) or self.keys.session_ok(cookie_of(scope)):
            await self.app(scope, receive, send)
            return
        if scope.get("method") == "GET" and b"text/html" in header(scope, b"accept"):
            await send({"type": "http.response.start", "status": 303,
                        "headers": [(b"location", (root + "/login").encode()),
                                    (b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return
        await plain(send, 401, "operator login required (the console's login page, or "
                               "Authorization: Bearer <token>)")


def same_origin(scope: Scope) -> bool:
    """No Origin header (not a browser, or a same-origin navigation of an old one), or one that
    names this host."""
    origin = header(scope, b"origin")
    if not origin:
        return True
    host = header(scope, b"host")
    return origin in (b"http://" + host, b"https://" + host)


async def plain(send: Send, status: int, text: str) -> None:
    body = text.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})

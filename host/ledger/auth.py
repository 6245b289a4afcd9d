"""Who may call what, decided before a request body is read.

* Operator routes (every path but the few public and device ones, PUBLIC_PATHS):
  `Authorization: Bearer <token>`, compared in constant time. Checked by an ASGI middleware
  from the headers alone, so a stranger's body is never read or parsed (and the
  body size limit of the app applies after). A missing token and a wrong one are told apart.
* Device routes: the device itself signs. `POST /v1/ingest` carries its signed status; `GET
  /v1/devices/{id}/pending` carries one in the `X-Tapcash-Status` header (base64 of the status
  envelope of the device's last EXPORT). Both are verified against the device's registered key
  (from its issuer-signed certificate); a pending request must not be older than the last
  status the ledger holds from the device. An unknown device, a bad signature and a stale status
  get the same 403, so a stranger learns nothing, not even whether an id exists.
"""

from __future__ import annotations

import hmac
import json
import re
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from tapcash.firmware.core import proto

from .codec import b64d, open_env
from .errors import PROBLEM_TYPE, LedgerError, problem
from .service import Ledger, get_device

STATUS_HEADER = "X-Tapcash-Status"
DEVICE_AUTH_FAILED = "device authentication failed"


def _verify(pk: bytes, tag: bytes, body: bytes, sig: bytes) -> bool:
    from nacl.bindings import crypto_sign_open
    from nacl.exceptions import BadSignatureError

    try:
        crypto_sign_open(sig + tag + body, pk)
    except BadSignatureError:
        return False
    return True


def authenticate_device(ledger: Ledger, device_id: bytes, status_b64: str | None,
                        *, fresh: bool) -> dict[str, Any]:
    """When `status_b64` is a status envelope signed by that device (and, with `fresh`, not
    older than the last one the ledger stored): the device record with `fresh`, else
    {"kind", "pubkey"} (an upload needs no more: its key comes from the server's cache of device
    keys, which never change, so a batch costs no database round trip before its ingest);
    otherwise one uniform 401/403."""
    if not status_b64:
        raise LedgerError(401, f"device authentication required: send the device-signed status "
                               f"of its last EXPORT in {STATUS_HEADER}")
    try:
        env = b64d(status_b64, "status")
        body_bytes, body, sig = open_env(env, "status")
    except LedgerError:
        raise LedgerError(403, DEVICE_AUTH_FAILED) from None
    if fresh:
        dev = ledger.db.read(lambda tx: get_device(tx, device_id))
    else:
        key = ledger.device_key(device_id)
        dev = None if key is None else {"kind": key[0], "pubkey": key[1]}
    if (dev is None or body.get(proto.ST_DEVICE) != device_id
            or not _verify(dev["pubkey"], proto.TAG_STATUS, body_bytes, sig)):
        raise LedgerError(403, DEVICE_AUTH_FAILED)
    if fresh and dev["last_status"]:
        _b, last, _s = open_env(bytes(dev["last_status"]), "stored status")
        seq = body.get(proto.ST_SEQ)
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < last.get(proto.ST_SEQ, 0):
            raise LedgerError(403, DEVICE_AUTH_FAILED)
    return dev


# Paths anyone may call (devices authenticate by their own signatures): everything else is an
# operator route. Default deny: a route added later is protected unless it is listed here.
PUBLIC_PATHS = re.compile(
    r"^/(v1/(health|issuer|hotlist|ingest)|v1/devices/[^/]+/pending"
    r"|openapi\.json|docs|docs/oauth2-redirect|redoc)$"
)
# The operator console (host/ledger/console/) is a mounted application that authenticates every
# request itself (its own default-deny middleware: session cookie from its login form, or this
# same bearer token), so this middleware lets its paths through untouched.
CONSOLE_PATHS = re.compile(r"^/console(/|$)")


def bearer_token(header: bytes) -> bytes | None:
    """The credentials of an `Authorization: Bearer <token>` header; None for another scheme.
    The scheme is case-insensitive (RFC 9110 section 11.1: `bearer` is `Bearer`)."""
    scheme, _, rest = header.partition(b" ")
    if scheme.lower() != b"bearer":
        return None
    return rest.strip(b" ")


class OperatorAuth:
    """ASGI middleware: every path but PUBLIC_PATHS answers 401 unless the request bears the
    operator token; nothing of the body is read before that."""

    def __init__(self, app: ASGIApp, *, token: str) -> None:
        self.app = app
        self.expected = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or PUBLIC_PATHS.match(path) or CONSOLE_PATHS.match(path):
            await self.app(scope, receive, send)
            return
        got = b""
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                got = value
                break
        given = bearer_token(got)
        if given is not None and hmac.compare_digest(given, self.expected):
            await self.app(scope, receive, send)
            return
        if not got:
            detail = "operator token required (Authorization: Bearer <token>)"
        elif given is None:
            detail = "operator token: use the scheme `Authorization: Bearer <token>`"
        else:
            detail = "operator token is wrong"
        await send_problem(send, 401, detail, headers=[(b"www-authenticate", b"Bearer")])


async def send_problem(send: Send, status: int, detail: str,
                       headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps(problem(status, detail)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", PROBLEM_TYPE.encode()),
                            (b"content-length", str(len(body)).encode())] + (headers or [])})
    await send({"type": "http.response.body", "body": body})

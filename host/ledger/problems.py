"""One error path for the whole API: every failure becomes an RFC 9457 problem details body.

* LedgerError (the ledger's refusals): its status and reason.
* Schema errors: 422 with `errors: [{loc, msg, type}]`, never echoing the input (a CBOR body,
  a lone surrogate or a NaN cannot be rendered back, and needs not be); a body that is not
  JSON is 415.
* Starlette's HTTP errors (404 no such route, 405, 413 body too large): their status.
* The database unreachable: 503. Anything else: 500 with a generic reason (and the traceback in
  the server log) — a bug, which the test suite's fuzzing is there to find.

`responses(...)` declares a route's error statuses in the OpenAPI document and `fix_openapi`
gives them the problem media type and the bearer scheme its name.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Match

from .errors import PROBLEM_TYPE, LedgerError, problem, title_of
from .models import Problem

log = logging.getLogger("tapcash.ledger")


def _safe(text: object) -> str:
    return str(text).encode("utf-8", "backslashreplace").decode("utf-8")


def problem_response(status: int, detail: object, headers: dict[str, str] | None = None,
                     **extra: Any) -> JSONResponse:
    return JSONResponse(problem(status, detail, **extra), status_code=status,
                        media_type=PROBLEM_TYPE, headers=headers)


def _is_json(content_type: str) -> bool:
    base = content_type.split(";", 1)[0].strip().lower()
    return base == "application/json" or (base.startswith("application/")
                                           and base.endswith("+json"))


def _db_down(exc: BaseException) -> bool:
    from .db import DatabaseUnavailable

    if isinstance(exc, DatabaseUnavailable):
        return True
    if isinstance(exc, sqlite3.OperationalError):
        return "unable to open" in str(exc) or "disk I/O" in str(exc)
    try:
        import psycopg
        import psycopg_pool
    except ImportError:  # pragma: no cover - both are dependencies
        return False
    return isinstance(exc, psycopg.OperationalError | psycopg_pool.PoolTimeout)


def _db_error_classes() -> list[type[BaseException]]:
    from .db import DatabaseUnavailable

    out: list[type[BaseException]] = [DatabaseUnavailable, sqlite3.OperationalError]
    try:
        import psycopg
        import psycopg_pool
    except ImportError:  # pragma: no cover - both are dependencies
        return out
    return [*out, psycopg.OperationalError, psycopg_pool.PoolTimeout]


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(LedgerError)
    def _ledger(_r: Request, exc: LedgerError) -> JSONResponse:
        return problem_response(exc.status, exc.detail)

    @app.exception_handler(RequestValidationError)
    def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": [x if isinstance(x, int) else _safe(x) for x in e.get("loc", ())],
                   "msg": _safe(e.get("msg", "")), "type": _safe(e.get("type", ""))}
                  for e in exc.errors()]
        ctype = request.headers.get("content-type", "")
        if any(e["loc"][:1] == ["body"] for e in errors) and ctype and not _is_json(ctype):
            return problem_response(415, "request body: Content-Type must be application/json")
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(x) for x in first["loc"])
        return problem_response(422, f"{where}: {first['msg']}" if where else first["msg"],
                                errors=errors)

    @app.exception_handler(HTTPException)
    def _http(request: Request, exc: HTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else title_of(exc.status_code)
        headers = exc.headers
        if exc.status_code == 405:  # every method the path has, not those of one route
            allowed: set[str] = set()
            for route in app.router.routes:
                match, _ = route.matches(request.scope)
                if match != Match.NONE:
                    allowed |= set(getattr(route, "methods", None) or ())
            headers = {"Allow": ", ".join(sorted(allowed))}
        return problem_response(exc.status_code, detail, headers=headers)

    def _any(request: Request, exc: Exception) -> JSONResponse:
        if _db_down(exc):
            log.error("database unreachable: %s", exc)
            return problem_response(503, "database unreachable, try again later")
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return problem_response(500, "internal error (logged by the ledger)")

    # The database's own errors by class: Starlette's ExceptionMiddleware answers them and is
    # done, where the catch-all below (ServerErrorMiddleware) re-raises after answering, so an
    # outage would print uvicorn's "Exception in ASGI application" and a traceback per request
    # on top of the one line above.
    for cls in _db_error_classes():
        app.add_exception_handler(cls, _any)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _any)  # a bug: 500, and its traceback in the log


_PHRASES = {
    400: "malformed input, bad signature",
    401: "credentials missing or wrong",
    403: "device authentication failed",
    404: "no such device, owner, merchant or route",
    409: "conflicts with the ledger's state",
    413: "request body too large",
    415: "request body is not JSON",
    422: "request does not match the schema",
    503: "not ready (database unreachable, no hot list yet)",
}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {c: {"model": Problem, "description": _PHRASES.get(c, title_of(c))} for c in codes}


def fix_openapi(spec: dict[str, Any]) -> dict[str, Any]:
    """Error answers are `application/problem+json`; the bearer scheme is named for what it
    carries; FastAPI's own 422 schema (HTTPValidationError) is replaced by Problem."""
    for path in spec.get("paths", {}).values():
        for op in path.values():
            if "requestBody" in op:  # a body that is not even JSON text
                op["responses"].setdefault("400", {"description": _PHRASES[400], "content": {
                    "application/json": {}}})
            for code, resp in op.get("responses", {}).items():
                content = resp.get("content")
                if int(code) >= 400 and content and "application/json" in content:
                    resp["content"] = {PROBLEM_TYPE: {"schema": {
                        "$ref": "#/components/schemas/Problem"}}}
    schemes = spec.get("components", {}).get("securitySchemes", {})
    if "HTTPBearer" in schemes:
        schemes["operatorToken"] = schemes.pop("HTTPBearer")
        for path in spec["paths"].values():
            for op in path.values():
                if "security" in op:
                    op["security"] = [{"operatorToken": []} if "HTTPBearer" in s else s
                                      for s in op["security"]]
    for name in ("HTTPValidationError", "ValidationError"):
        spec.get("components", {}).get("schemas", {}).pop(name, None)
    return spec

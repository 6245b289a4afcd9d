"""Errors as data: every refusal carries an HTTP status and a reason for the caller.

Over HTTP every error body is an RFC 9457 problem details object (`application/problem+json`):
`{"type": "about:blank", "title": <HTTP reason phrase>, "status": <code>, "detail": <reason>}`
plus extension members where a refusal has more to say (`errors` for schema errors, `lines` for a
payroll refused line by line). docs/LEDGER.md section 4 documents the shape.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

PROBLEM_TYPE = "application/problem+json"


class LedgerError(Exception):
    """A refusal: `status` (4xx, or 5xx for a server fault) and `detail`, a reason string or a
    dict with `error` (the reason) and extension members (e.g. `lines`)."""

    def __init__(self, status: int, detail: object) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def title_of(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem(status: int, detail: object, **extra: Any) -> dict[str, Any]:
    """The problem details body of a refusal (LedgerError.detail may be a dict: its `error`
    becomes `detail`, the rest extension members)."""
    if isinstance(detail, dict):
        extra = {k: v for k, v in detail.items() if k != "error"} | extra
        detail = detail.get("error", title_of(status))
    body: dict[str, Any] = {"type": "about:blank", "title": title_of(status), "status": status,
                            "detail": str(detail)}
    body.update(extra)
    return body

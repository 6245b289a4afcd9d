"""Errors as data: every refusal carries an HTTP status and a reason for the caller."""

from __future__ import annotations


class LedgerError(Exception):
    def __init__(self, status: int, detail: object) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail

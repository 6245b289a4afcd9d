"""The ledger as the sync tool sees it: upload a batch, get the signed ack and what to hand the
device. Wraps the ledger's typed client (host/ledger/client.py) and sorts its failures into
"unreachable" (keep the batch, try later: exit 5) and "refused" (exit 6)."""

from __future__ import annotations

import httpx

from tapcash.host.device.errors import LedgerRefused, LedgerUnreachable
from tapcash.host.ledger.client import IngestResult, LedgerClient, LedgerHTTPError, Pending

from .outbox import Batch

DEFAULT_TIMEOUT_S = 30.0


class LedgerLink:
    def __init__(self, url: str, token: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S):
        self.url = url
        self._client = LedgerClient(url, token=token, timeout=timeout_s)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> LedgerLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check_token(self) -> None:
        """A token given to the sync tool is the ledger's operator token (GET /v1/whoami), or
        LedgerRefused. Uploads need none (devices sign their batches), but a wrong credential is
        never silently ignored. An unreachable ledger is no verdict: the sync goes on (spools)."""
        try:
            self._client.check_token()
        except LedgerHTTPError as e:
            if e.status in (401, 403):
                raise LedgerRefused(
                    f"ledger {self.url} refused the token ({e.status}): {e.detail} (--token / "
                    "TAPCASH_LEDGER_TOKEN must be the operator token, or left out: uploads are "
                    "signed by the devices)"
                ) from None
        except httpx.TransportError:
            pass

    def pending(self, device: bytes, status: bytes) -> Pending:
        """What waits for the device (read only), the device authenticating with its status."""
        try:
            res = self._client.pending(device, status)
        except Exception as e:  # noqa: BLE001 - sorted by _failure
            raise self._failure(e, "refused the pending request") from None
        if res.device != device:
            raise LedgerRefused("ledger answered for another device")
        return res

    def _failure(self, e: Exception, what: str) -> Exception:
        if isinstance(e, LedgerHTTPError):
            if e.status >= 500 or e.status in (408, 429):
                return LedgerUnreachable(f"ledger {self.url} failed ({e.status}): {e.detail}")
            return LedgerRefused(f"ledger {what} ({e.status}): {e.detail}")
        if isinstance(e, httpx.TransportError):
            return LedgerUnreachable(f"ledger {self.url} unreachable: {e}")
        if isinstance(e, ValueError | KeyError | TypeError):
            return LedgerRefused(f"ledger {self.url} answered something unreadable: {e}")
        return e

    def submit(self, batch: Batch) -> IngestResult:
        try:
            res = self._client.ingest(batch.device, batch.records, batch.status)
        except LedgerHTTPError as e:
            if e.status >= 500 or e.status in (408, 429):
                raise LedgerUnreachable(
                    f"ledger {self.url} failed ({e.status}): {e.detail}"
                ) from None
            raise LedgerRefused(f"ledger refused the batch ({e.status}): {e.detail}") from None
        except httpx.TransportError as e:
            raise LedgerUnreachable(f"ledger {self.url} unreachable: {e}") from None
        except (ValueError, KeyError, TypeError) as e:
            raise LedgerRefused(f"ledger {self.url} answered something unreadable: {e}") from None
        if res.device != batch.device:
            raise LedgerRefused("ledger answered for another device")
        return res

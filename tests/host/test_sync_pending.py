"""The sync tool asks a wallet's waiting vouchers through `GET /v1/devices/{id}/pending` when the
wallet has nothing to upload (issue #11): read only, authenticated by the wallet's signed
status; the LOAD it journals is uploaded in the next round as usual."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sync_world as sw

from tapcash.host.sync.ledger_link import LedgerLink
from tapcash.host.sync.outbox import Outbox


class CountingLink(LedgerLink):
    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.calls: list[str] = []

    def pending(self, device: bytes, status: bytes) -> Any:
        self.calls.append("pending")
        return super().pending(device, status)

    def submit(self, batch: Any) -> Any:
        self.calls.append(f"ingest {len(batch.records)}")
        return super().submit(batch)


def test_empty_wallet_sync_asks_pending_then_uploads_the_load(tmp_path: Path) -> None:
    world = sw.make_world(3)
    server = sw.serve_ledger(tmp_path / "ledger.db", world.issuer)
    lc = server.client()
    try:
        sw.register(world, lc)
        lc.load(sw.W1, 2500, "first")
        books = lc.books()
        with CountingLink(server.url, server.token) as link:
            res = sw.pty_sync(world.wallet(), link, Outbox(tmp_path / "outbox"))
            assert res.outcome == "synced" and res.vouchers_loaded == 1
            assert link.calls == ["pending", "ingest 1"]
            assert lc.books() != books  # the ingest round stored the LOAD record
            # Nothing waiting and nothing to upload: one read-only request, books unchanged.
            link.calls.clear()
            books = lc.books()
            res = sw.pty_sync(world.wallet(), link, Outbox(tmp_path / "outbox"))
            assert res.outcome == "synced" and res.vouchers_loaded == 0
            assert link.calls == ["pending"]
            assert lc.books() == books
        assert lc.invariant()["ok"]
    finally:
        lc.close()
        server.stop()


def test_a_cancelled_purse_leaves_an_idle_card_at_its_next_sync(tmp_path: Path) -> None:
    """docs/PROGRAMMES.md: 'cards cleared at next sync'. A card with nothing to upload gets
    only the pending answer, which carries the update clearing its cancelled purse (#13)."""
    from tapcash.firmware.wallet import state as wst
    from tapcash.host.sync.cli import _describe
    from tapcash.sim.device import provision as pv

    world = sw.make_world(4)
    server = sw.serve_ledger(tmp_path / "ledger.db", world.issuer)
    lc = server.client()
    try:
        sw.register(world, lc)
        lc.deposit("city", 5000, "programme")
        lc.program_create("bus", "city", kind="subsidy", expires=pv.T0 + 86400,
                          valid_from=pv.T0 - 60, categories=[4111])
        lc.program_load("bus", f"{sw.W1.hex()},3000\n", "jan")
        card = world.wallet()
        with LedgerLink(server.url, server.token) as link:
            outbox = Outbox(tmp_path / "outbox")
            res = sw.pty_sync(card, link, outbox)
            assert res.vouchers_loaded == 1
            assert [p[1] for p in card.state.get(wst.S_PURSES) or []] == [3000]
            pid = lc.programs("bus")["id"]
            assert res.status["purses"] == [{"program": pid, "balance": 3000}]  # as it shows
            assert f"purse {pid} 30.00" in _describe(res)
            lc.program_cancel("bus")
            res = sw.pty_sync(card, link, outbox)
            assert res.outcome == "synced" and res.exported == 0 and res.update == "applied"
            assert not card.state.get(wst.S_PURSES)
            assert "purses" not in res.status  # read after the clear (none: no field 8)
            assert sw.pty_sync(card, link, outbox).update == "already applied"
        assert lc.programs("bus")["state"] == "cancelled" and lc.invariant()["ok"]
    finally:
        lc.close()
        server.stop()

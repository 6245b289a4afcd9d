"""Fixtures and book-keeping checks for the protocol-level tests (POS + wallet + faults).

Registered with `pytest_plugins = ["protocol_fixtures"]` by tests/firmware/test_pos.py,
tests/firmware/test_payment_faults.py and tests/firmware/test_attacks.py. Everything reads the
devices through their own APDUs (EXPORT, SELECT): nothing here looks inside an app's RAM.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import pytest

from tapcash.firmware.core import cbor, ed25519, proto
from tapcash.firmware.pos.app import PosApp
from tapcash.firmware.wallet.app import WalletApp
from tapcash.sim.device.provision import Pair, export_all, make_pair, select


@pytest.fixture
def pair() -> Pair:
    """Wallet 1 (balance 50000.00 minor units) in the field of POS 1, clock at T0."""
    return make_pair(0)


@dataclass(frozen=True)
class Payment:
    envelope: bytes
    body_bytes: bytes
    body: dict[int, Any]

    @property
    def key(self) -> tuple[bytes, int]:
        return self.body[proto.PAY_WALLET], self.body[proto.PAY_COUNTER]

    @property
    def amount(self) -> int:
        return int(self.body[proto.PAY_AMOUNT])


def open_payment(env: bytes) -> Payment:
    body_bytes, _body, _sig = proto.open_envelope(env)
    return Payment(env, body_bytes, cbor.decode(body_bytes))


def cert_key(cert_env: bytes) -> bytes:
    _b, body, _s = proto.open_envelope(cert_env)
    return body[proto.CERT_KEY]


@dataclass
class WalletBooks:
    status: dict[int, Any]  # the signed status body of the last EXPORT
    payments: list[Payment]  # RT_PAYMENT records, journal order
    receipts: list[bytes]  # RT_RECEIPT envelopes
    records: list[tuple[int, dict[int, Any]]]

    @property
    def counter(self) -> int:
        return int(self.status[proto.ST_COUNTER])

    @property
    def balance(self) -> int:
        return int(self.status[proto.ST_BALANCE])


def wallet_books(wallet: WalletApp) -> WalletBooks:
    """Everything the wallet's journal holds, via EXPORT (status signature checked)."""
    records, status_env = export_all(wallet)
    info = select(wallet)
    status = proto.verify_envelope(proto.TAG_STATUS, status_env, cert_key(info[proto.INFO_CERT]))
    payments = [
        open_payment(r[proto.REC_SIGNED])
        for _s, r in records
        if r[proto.REC_TYPE] == proto.RT_PAYMENT
    ]
    receipts = [r[proto.REC_RECEIPT] for _s, r in records if r[proto.REC_TYPE] == proto.RT_RECEIPT]
    return WalletBooks(status, payments, receipts, records)


@dataclass
class PosEntry:
    seq: int
    payment: Payment
    receipt: dict[int, Any]
    cert_hash: bytes


def pos_books(pos: PosApp) -> list[PosEntry]:
    """The POS journal via EXPORT; every receipt's signature and fields are checked."""
    records, status_env = export_all(pos)
    info = select(pos)
    pos_key = cert_key(info[proto.INFO_CERT])
    status = proto.verify_envelope(proto.TAG_STATUS, status_env, pos_key)
    assert status[proto.ST_DEVICE] == info[proto.INFO_ID]
    out = []
    for seq, rec in records:
        assert rec[proto.REC_TYPE] == proto.RT_PAYMENT
        p = open_payment(rec[proto.REC_SIGNED])
        rcpt = proto.verify_envelope(proto.TAG_RECEIPT, rec[proto.REC_RECEIPT], pos_key)
        assert rcpt[proto.RCPT_SEQ] == seq
        assert rcpt[proto.RCPT_POS] == info[proto.INFO_ID] == p.body[proto.PAY_PAYEE]
        assert (rcpt[proto.RCPT_WALLET], rcpt[proto.RCPT_COUNTER]) == p.key
        assert rcpt[proto.RCPT_AMOUNT] == p.amount
        assert rcpt[proto.RCPT_PAYMENT_HASH] == hashlib.sha256(p.body_bytes).digest()
        out.append(PosEntry(seq, p, rcpt, rec[proto.REC_CERT_HASH]))
    if records:
        assert status[proto.ST_SEQ] == records[-1][0]
    return out


def check_chain(payments: list[Payment], wallet_key: bytes) -> None:
    """Counters 1, 2, ... without gaps, each body naming the hash of the one before, every
    signature valid under the wallet's key."""
    prev = b"\x00" * 32
    for i, p in enumerate(payments, 1):
        sig = cbor.decode(p.envelope)[1]
        assert ed25519.verify(wallet_key, proto.TAG_PAYMENT + p.body_bytes, sig)
        assert p.body[proto.PAY_COUNTER] == i, "counter reused or skipped"
        assert p.body[proto.PAY_PREV] == prev, "hash chain broken"
        prev = hashlib.sha256(p.body_bytes).digest()


@dataclass
class Books:
    wallet: WalletBooks
    pos: list[PosEntry]
    wallet_log_only: list[Payment]  # paid by the wallet, never journaled by a POS


def check_books(
    pair: Pair, initial: int | None = None, extra_pos: tuple[PosApp, ...] = ()
) -> Books:
    """The invariants of an honest wallet paying POS terminals, whatever faults happened:
    the wallet's chain is intact; each POS-journaled payment is byte-identical to the one
    the wallet logged, and none is journaled twice; value is conserved:
    wallet balance + POS journal amounts + wallet-log-only amounts == initial."""
    initial = pair.initial if initial is None else initial
    wb = wallet_books(pair.wallet)
    key = _wallet_key(pair.wallet)
    check_chain(wb.payments, key)
    assert wb.counter == len(wb.payments)
    if wb.payments:
        assert wb.status[proto.ST_PREV] == hashlib.sha256(wb.payments[-1].body_bytes).digest()
    by_key = {p.key: p for p in wb.payments}
    entries: list[PosEntry] = []
    for pos in (pair.pos, *extra_pos):
        entries.extend(pos_books(pos))
    seen: set[tuple[bytes, int]] = set()
    for e in entries:
        assert e.payment.key not in seen, "a payment journaled twice"
        seen.add(e.payment.key)
        assert e.payment.key in by_key, "POS holds a payment the wallet never logged"
        assert by_key[e.payment.key].envelope == e.payment.envelope
    log_only = [p for p in wb.payments if p.key not in seen]
    assert wb.balance == initial - sum(p.amount for p in wb.payments)
    assert (
        wb.balance + sum(e.payment.amount for e in entries) + sum(p.amount for p in log_only)
        == initial
    )
    return Books(wb, entries, log_only)


def _wallet_key(wallet: WalletApp) -> bytes:
    return cert_key(select(wallet)[proto.INFO_CERT])


class Audit:
    """The checks above, handed to tests as the `audit` fixture (test modules need no import
    of this plugin module, so pytest rewrites its asserts)."""

    books = staticmethod(check_books)
    wallet = staticmethod(wallet_books)
    pos = staticmethod(pos_books)
    chain = staticmethod(check_chain)
    open_payment = staticmethod(open_payment)
    cert_key = staticmethod(cert_key)
    wallet_key = staticmethod(_wallet_key)


@pytest.fixture
def audit() -> Audit:
    return Audit()

"""Out of RAM is never "bad signature" (issue 16): a MemoryError inside a signature check is
retried once after a collection and then answers 6F01 (SW_NO_RAM), the POS declines with
reason no_ram, and nothing changes. Injected here at ed25519.verify on CPython; the same
property at real fixed heaps: tests/firmware/test_heap_budget.py
(out_of_memory_is_never_a_bad_signature).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tapcash.firmware.core import cbor, ed25519, proto
from tapcash.sim.device.provision import load, make_pair, select


class FailingVerify:
    """ed25519.verify that raises MemoryError on its next `fails` calls, then is itself."""

    def __init__(self, real: Callable[..., bool], fails: int) -> None:
        self.real = real
        self.fails = fails
        self.calls = 0

    def __call__(self, *args: object) -> bool:
        self.calls += 1
        if self.fails > 0:
            self.fails -= 1
            raise MemoryError("injected")
        return self.real(*args)


@pytest.fixture
def inject(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], FailingVerify]:
    def arm(fails: int) -> FailingVerify:
        fv = FailingVerify(ed25519.verify, fails)
        monkeypatch.setattr(ed25519, "verify", fv)
        return fv

    return arm


def _signed(seed: bytes = bytes(32)) -> tuple[bytes, bytes, bytes]:
    msg = b"tapcash"
    return ed25519.public_key(seed), msg, ed25519.sign(seed, msg)


def test_one_memory_error_is_retried(inject) -> None:
    pk, msg, sig = _signed()
    fv = inject(1)
    assert proto.sig_ok(pk, msg, sig) is True
    assert fv.calls == 2
    fv = inject(1)
    assert proto.sig_ok(pk, msg + b"!", sig) is False  # a real verdict after the retry


def test_two_memory_errors_answer_no_ram(inject) -> None:
    pk, msg, sig = _signed()
    inject(2)
    with pytest.raises(proto.ApduError) as e:
        proto.sig_ok(pk, msg, sig)
    assert e.value.sw == proto.SW_NO_RAM == 0x6F01


def test_verify_lets_memory_error_through_and_nothing_else(monkeypatch) -> None:
    pk, msg, sig = _signed()

    def oom(*_a: object) -> bool:
        raise MemoryError

    ed25519.set_backend("pure")
    try:
        monkeypatch.setattr(ed25519, "_verify_pure", oom)
        with pytest.raises(MemoryError):
            ed25519.verify(pk, msg, sig)

        def bug(*_a: object) -> bool:
            raise ValueError

        monkeypatch.setattr(ed25519, "_verify_pure", bug)
        assert ed25519.verify(pk, msg, sig) is False
    finally:
        ed25519.set_backend("auto")


def test_wallet_load_out_of_ram_changes_nothing(inject) -> None:
    pair = make_pair(7, balance=1000)
    before = pair.wallet_flash.snapshot()
    select(pair.wallet)
    voucher = pair.issuer.voucher(pair.wallet_id, 2, 500)
    inject(2)
    resp = pair.wallet.process(proto.build_command(proto.CLA_PROP, proto.INS_LOAD, 0, 0, voucher))
    assert resp == b"\x6f\x01"
    assert pair.wallet_flash.snapshot() == before
    inject(1)  # one failure is absorbed by the retry
    assert load(pair.wallet, pair.issuer, pair.wallet_id, 2, 500) == 1500


def test_pos_declines_no_ram_and_the_retap_completes(inject) -> None:
    pair = make_pair(8, balance=5000)
    fv = inject(0)
    r0 = pair.pos.take_payment(100)
    assert r0.approved
    assert fv.calls == 2  # the card's certificate, then the payment
    fv = inject(2)  # the certificate is cached now: both failures hit the payment's check
    pair.link.tap()
    r = pair.pos.take_payment(200)
    assert (r.status, r.reason, r.sw) == ("declined", "no_ram", proto.SW_NO_RAM)
    assert fv.calls == 2
    assert pair.pos.journal.last_seq == r0.seq  # nothing journaled
    pair.link.tap()
    again = pair.pos.take_payment(200)
    assert again.approved and again.recovered and again.counter == r0.counter + 1
    info = cbor.decode(pair.wallet.process(
        proto.build_command(proto.CLA_ISO, proto.INS_SELECT, 4, 0, proto.AID))[:-2])
    assert info[proto.INFO_COUNTER] == again.counter  # one payment, not two

"""Fault injection on a whole payment: the NFC link torn after every byte, the power cut at
every flash write of the wallet and of the POS. Real wallet, real POS, real storage on
SimFlash, real Ed25519; after each fault the devices recover the way the protocol says
(re-tap, reboot) and the books must balance."""

from __future__ import annotations

import pytest

from tapcash.firmware.core.hal import PowerCut
from tapcash.sim.device.flash import ALL
from tapcash.sim.device.provision import Pair

pytest_plugins = ["protocol_fixtures"]

AMOUNT = 1234  # under the no-CVM limit: no PIN
PIN_AMOUNT = 7000  # above it: the PIN travels in PAY


def _clean_lengths(pair: Pair, amount: int, pin: str | None) -> list[tuple[int, int]]:
    image = pair.snapshot()
    r = pair.pos.take_payment(amount, pin=pin)
    assert r.approved, r
    lengths = [(len(c), len(rsp)) for c, rsp in pair.link.transcript]
    pair.restore(image)
    return lengths


@pytest.mark.parametrize("amount, pin", [(AMOUNT, None), (PIN_AMOUNT, "1234")])
def test_tear_after_every_byte_then_retap(pair: Pair, audit, amount: int, pin: str | None) -> None:
    image = pair.snapshot()
    lengths = _clean_lengths(pair, amount, pin)
    assert len(lengths) == 3  # SELECT, PAY, RECEIPT
    cases = [
        (direction, k, n)
        for k, (lc, lr) in enumerate(lengths)
        for direction, size in (("command", lc), ("response", lr))
        for n in range(size)
    ]
    outcomes: dict[str, int] = {}
    for direction, k, n in cases:
        pair.restore(image)
        pair.link.tear_at(direction, k, n)
        first = pair.pos.take_payment(amount, pin=pin)
        where = f"{direction} {k} byte {n}"
        if first.approved:
            # only a lost RECEIPT leaves the payment approved: it does not undo it
            assert k == 2, where
            assert not first.receipt_sent
            outcome = "approved, receipt lost"
        else:
            assert first.status == "torn" and first.reason == "link", (where, first)
            pair.link.tap()
            second = pair.pos.take_payment(amount, pin=pin)
            assert second.approved, (where, second)
            assert second.counter == 1, where  # never a second counter
            outcome = "recovered" if second.recovered else "paid on re-tap"
            # the card committed exactly when the PAY command reached it whole
            assert second.recovered == (k == 1 and direction == "response"), where
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        books = audit.books(pair)
        assert books.wallet.counter == 1, where
        assert [e.payment.amount for e in books.pos] == [amount], where
        assert books.wallet_log_only == [], where
    assert set(outcomes) == {"approved, receipt lost", "recovered", "paid on re-tap"}
    assert sum(outcomes.values()) == len(cases) > 400


def _writes_during_payment(flash_of, pair: Pair) -> int:
    image = pair.snapshot()
    flash = flash_of(pair)
    before = flash.write_count
    assert pair.pos.take_payment(AMOUNT).approved
    n = flash.write_count - before
    pair.restore(image)
    return n


def _finish_after_fault(pair: Pair) -> None:
    """Re-tap until a fresh payment goes through (the first may complete the torn one)."""
    for _ in range(2):
        pair.link.tap()
        r = pair.pos.take_payment(AMOUNT)
        assert r.approved, r
        if not r.recovered:
            return
    raise AssertionError("no fresh payment after recovery")


@pytest.mark.parametrize("keep", [0, None, ALL], ids=["nothing", "prefix", "everything"])
def test_power_cut_at_every_pos_write(pair: Pair, audit, keep: int | None) -> None:
    image = pair.snapshot()
    writes = _writes_during_payment(lambda p: p.pos_flash, pair)
    assert writes == 2  # run state (torn entry) before PAY, journal append after it
    for n in range(1, writes + 1):
        pair.restore(image)
        pair.pos_flash.cut_after(n, keep)
        with pytest.raises(PowerCut):
            pair.pos.take_payment(AMOUNT)
        pair.reboot_pos()
        books = audit.books(pair)  # the state after the cut, before any retry
        assert books.wallet.counter == (1 if n == 2 else 0)
        journaled = len(books.pos)
        assert journaled in (0, 1)
        if n == 1:
            assert journaled == 0
        _finish_after_fault(pair)
        books = audit.books(pair)
        # a cut before PAY left: one payment; after: the torn one recovered, then one more
        assert books.wallet.counter == (1 if n == 1 else 2)
        assert books.wallet_log_only == []
        assert len(books.pos) == books.wallet.counter


@pytest.mark.parametrize("keep", [0, None, ALL], ids=["nothing", "prefix", "everything"])
def test_power_cut_at_every_wallet_write(pair: Pair, audit, keep: int | None) -> None:
    image = pair.snapshot()
    writes = _writes_during_payment(lambda p: p.wallet_flash, pair)
    assert writes >= 2  # at least the state commit and the journal record
    for n in range(1, writes + 1):
        pair.restore(image)
        pair.wallet_flash.cut_after(n, keep)
        r = pair.pos.take_payment(AMOUNT)
        # the card vanishing mid-command is a tear for the POS; a cut during RECEIPT
        # handling comes after the POS journaled the payment
        assert r.status in ("torn", "approved"), r
        pair.reboot_wallet()
        books = audit.books(pair)
        assert books.wallet.counter in (0, 1)
        _finish_after_fault(pair)
        books = audit.books(pair)
        assert books.wallet_log_only == []
        assert [e.payment.key[1] for e in books.pos] == list(range(1, books.wallet.counter + 1))


def test_power_cut_during_pos_replay_commit(pair: Pair, audit) -> None:
    """Cut at the journal append with every byte kept, then again during the boot-time
    commit that folds the journaled payment into the run state: nothing is lost twice."""
    pair.pos_flash.cut_after(2, ALL)
    with pytest.raises(PowerCut):
        pair.pos.take_payment(AMOUNT)
    pair.pos_flash.power_on()
    pair.pos_flash.cut_after(1, 0)
    from tapcash.firmware.pos.app import PosApp

    with pytest.raises(PowerCut):
        PosApp(pair.pos.hal).power_on()
    pair.reboot_pos()
    books = audit.books(pair)
    assert len(books.pos) == 1 and books.wallet.counter == 1
    pair.link.tap()
    r = pair.pos.take_payment(AMOUNT)
    assert r.approved and not r.recovered and r.counter == 2


def test_cut_both_in_one_payment_and_keep_going(pair: Pair, audit) -> None:
    """A longer run with a fault in every payment, alternating sides and tears."""
    faults = [
        lambda: pair.link.tear_at("response", 1, 3),
        lambda: pair.pos_flash.cut_after(1),
        lambda: pair.link.tear_at("command", 1, 10),
        lambda: pair.wallet_flash.cut_after(1),
        lambda: pair.pos_flash.cut_after(2),
        lambda: pair.link.tear_at("response", 2, 0),
    ]
    for fault in faults:
        fault()
        try:
            r = pair.pos.take_payment(AMOUNT)
        except PowerCut:
            pair.reboot_pos()
        else:
            if r.status == "torn" and not pair.wallet_flash.powered:
                pair.reboot_wallet()
        pair.wallet_flash.power_on()
        pair.link.tap()
        pair.pos.take_payment(AMOUNT)
    books = audit.books(pair)
    assert books.wallet_log_only == []
    assert len(books.pos) == books.wallet.counter >= len(faults)


def _serial(pos, ins: int, data: bytes) -> int:
    from tapcash.firmware.core import proto

    resp = pos.process(proto.build_command(0x80, ins, 0, 0, data))
    return resp[-2] << 8 | resp[-1]


@pytest.mark.parametrize("keep", [0, ALL], ids=["nothing", "everything"])
@pytest.mark.parametrize("command", ["ack", "apply"])
def test_power_cut_during_pos_serial_commands(pair: Pair, audit, command: str, keep: int) -> None:
    from tapcash.firmware.core import proto
    from tapcash.sim.device.provision import T0, ack_for, select

    for _ in range(3):
        assert pair.pos.take_payment(AMOUNT).approved
    issuer = pair.issuer
    if command == "ack":
        ins, data = proto.INS_ACK, ack_for(issuer, pair.pos, pair.pos_id, 2, T0)
        before, after = (3, 3), (3, 1)  # (last seq, unpruned records)

        def fact(info: dict) -> tuple[int, int]:
            return info[proto.INFO_SEQ], info[proto.INFO_RECORDS]
    else:
        hot = issuer.hotlist(2, T0, [pair.wallet_id])
        ins, data = proto.INS_APPLY, issuer.update(pair.pos_id, 1, {proto.UPD_HOTLIST: hot})
        before, after = (1, 0), (2, 1)  # (hot list version, update number)

        def fact(info: dict) -> tuple[int, int]:
            return info[proto.INFO_HOT_VERSION], info[proto.INFO_UPDATE]

    image = pair.snapshot()
    pair.restore(image)  # (a reboot folds the last payment into the run state first)
    start = pair.pos_flash.write_count
    assert _serial(pair.pos, ins, data) == 0x9000
    writes = pair.pos_flash.write_count - start
    assert writes >= 1
    for n in range(1, writes + 1):
        pair.restore(image)
        assert fact(select(pair.pos)) == before
        pair.pos_flash.cut_after(n, keep)
        with pytest.raises(PowerCut):
            pair.pos.process(proto.build_command(0x80, ins, 0, 0, data))
        pair.reboot_pos()
        got = fact(select(pair.pos))
        assert got in (before, after)
        sw = _serial(pair.pos, ins, data)  # the sync tool sends it again
        assert sw == 0x9000 or (got == after and sw == proto.SW_REPLAY)
        assert fact(select(pair.pos)) == after
        pair.link.tap()
        r = pair.pos.take_payment(AMOUNT)
        assert r.approved if command == "ack" else r.reason == "revoked"
        audit.pos(pair.pos)


class _Fault(Exception):
    """A bug injected into the wallet (not a refusal: the wallet answers 6F00)."""


@pytest.mark.parametrize("where", ["before_commit", "after_commit"])
def test_a_wallet_failing_in_pay_is_recovered_by_the_next_tap(
    pair: Pair, audit, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """6F00 to PAY: the card may have committed the payment before failing (its signature comes
    after the commit, PROTOCOL.md §4.1). The POS keeps its torn entry; the next tap recovers the
    committed payment, or finds INFO's challenge not the entry's and pays afresh. Either way the
    card's one counter is the POS's one journaled payment."""
    wallet = pair.wallet
    name = "owe" if where == "before_commit" else "sign_payment"
    real = getattr(wallet, name)
    calls = []

    def failing(*args, **kw):  # noqa: ANN002, ANN003, ANN202
        calls.append(1)
        if len(calls) == 1:
            raise _Fault(name)
        return real(*args, **kw)

    monkeypatch.setattr(wallet, name, failing)
    first = pair.pos.take_payment(AMOUNT)
    assert not first.approved and first.sw == 0x6F00, first
    pair.link.tap()
    second = pair.pos.take_payment(AMOUNT)
    assert second.approved and second.counter == 1, second
    assert second.recovered == (where == "after_commit"), second
    books = audit.books(pair)
    assert books.wallet.counter == 1
    assert [e.payment.amount for e in books.pos] == [AMOUNT]
    assert books.wallet_log_only == []

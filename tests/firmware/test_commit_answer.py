"""A command that committed answers 9000 (PROTOCOL.md §3.1, issue #14): LOAD and APPLY on the
wallet, APPLY on the POS. Whatever fails after the commit (the screen text, the journal record
the command owes, releasing its modules; a bug or out of RAM) used to turn the answer into
6F00 / 6F01 although the card had taken the voucher, and a sync host stopped on it. Now the
answer is the committed one; a tear right after the commit (the answer lost, or the power cut
during the journal append) leaves INFO / the signed status showing the committed state, and
the retry is 6916 with nothing changed. The balance is recomputed from the exported journal
(vouchers minus payments), independently of the card's own arithmetic: no money is created.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tapcash.firmware.core import cbor, proto
from tapcash.firmware.core import units as core_units
from tapcash.firmware.core.hal import Hal, PowerCut
from tapcash.firmware.wallet import app as wallet_app_mod
from tapcash.firmware.wallet import load as load_mod
from tapcash.firmware.wallet.app import WalletApp
from tapcash.sim.device import provision as pv

BALANCE = 10_000
TOPUP = 2_500


class Trap:
    """Raises `exc` from the trapped call once armed (right after the command's commit)."""

    def __init__(self, exc: type[BaseException]) -> None:
        self.exc = exc
        self.armed = False
        self.fired = 0

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def trapped(*a: Any, **k: Any) -> Any:
            if self.armed:
                self.fired += 1
                raise self.exc("injected after the commit")
            return fn(*a, **k)

        return trapped


def _wallet() -> tuple[Any, WalletApp, Any]:
    issuer = pv.issuer_from_seed(41)
    app, flash = pv.make_wallet(issuer, 1, seed=41, balance=BALANCE)
    return issuer, app, flash


def _arm_after_commit(app: Any, trap: Trap, commit: str = "commit") -> None:
    real = getattr(app, commit)

    def commit_then_arm(*a: Any, **k: Any) -> Any:
        out = real(*a, **k)
        trap.armed = True
        return out

    setattr(app, commit, commit_then_arm)


def _send(app: Any, ins: int, data: bytes) -> tuple[bytes, int]:
    return proto.split_response(app.process(proto.build_command(proto.CLA_PROP, ins, 0, 0, data)))


def _books(app: WalletApp) -> dict[str, int]:
    """The card's signed status next to what its journal says, recomputed here."""
    records, status = pv.export_all(app)
    _b, st, _s = proto.open_envelope(status)
    loaded = paid = loads = 0
    for _seq, rec in records:
        if rec[proto.REC_TYPE] == proto.RT_LOAD:
            loads += 1
            loaded += proto.open_envelope(rec[proto.REC_SIGNED])[1][proto.VCH_AMOUNT]
        elif rec[proto.REC_TYPE] == proto.RT_PAYMENT:
            paid += proto.open_envelope(rec[proto.REC_SIGNED])[1][proto.PAY_AMOUNT]
    return {
        "status_balance": st[proto.ST_BALANCE],
        "journal_balance": loaded - paid,
        "status_loads": st[proto.ST_LOADS],
        "journal_loads": loads,
    }


def _info(app: WalletApp) -> dict[int, Any]:
    return pv.select(app)


def _trap_point(monkeypatch: pytest.MonkeyPatch, app: WalletApp, where: str, trap: Trap) -> None:
    if where == "screen":  # the screen text (LOAD's money(), APPLY's import and money())
        monkeypatch.setattr(load_mod, "money", trap.wrap(load_mod.money))
        monkeypatch.setattr(core_units, "money", trap.wrap(core_units.money))
        monkeypatch.setattr(app, "offline_left", trap.wrap(app.offline_left))
    elif where == "journal":  # appending the record the commit owes
        monkeypatch.setattr(app, "catch_up", trap.wrap(app.catch_up))
    elif where == "release":  # releasing the command's modules after it ran
        monkeypatch.setattr(wallet_app_mod, "release", trap.wrap(wallet_app_mod.release))


WHERE = ["screen", "journal", "release"]
EXC = [MemoryError, RuntimeError]


@pytest.mark.parametrize("exc", EXC, ids=lambda e: e.__name__)
@pytest.mark.parametrize("where", WHERE)
def test_load_that_committed_answers_its_balance(monkeypatch, where: str, exc) -> None:
    issuer, app, _flash = _wallet()
    wid = pv.device_id("wallet", 1)
    voucher = issuer.voucher(wid, 2, TOPUP)
    trap = Trap(exc)
    _trap_point(monkeypatch, app, where, trap)
    _arm_after_commit(app, trap)
    pv.select(app)
    data, sw = _send(app, proto.INS_LOAD, voucher)
    assert trap.fired >= 1, "the fault was not injected"
    assert (sw, cbor.decode(data) if data else None) == (proto.SW_OK, {0: BALANCE + TOPUP})
    trap.armed = False
    app.power_on()  # a new session: the record the commit owes is appended by now
    books = _books(app)
    assert books["status_balance"] == books["journal_balance"] == BALANCE + TOPUP, books
    assert books["status_loads"] == books["journal_loads"] == 2, books
    pv.select(app)
    assert _send(app, proto.INS_LOAD, voucher) == (b"", proto.SW_REPLAY)  # the retry
    assert _books(app) == books


@pytest.mark.parametrize("exc", EXC, ids=lambda e: e.__name__)
@pytest.mark.parametrize("where", ["screen", "release"])
def test_apply_that_committed_answers_9000(monkeypatch, where: str, exc) -> None:
    issuer, app, _flash = _wallet()
    wid = pv.device_id("wallet", 1)
    update = issuer.update(wid, 1, {proto.UPD_SYNCED_COUNTER: 0, proto.UPD_SYNCED_SPENT: 0})
    trap = Trap(exc)
    _trap_point(monkeypatch, app, where, trap)
    _arm_after_commit(app, trap)
    pv.select(app)
    assert _send(app, proto.INS_APPLY, update) == (b"", proto.SW_OK)
    assert trap.fired >= 1, "the fault was not injected"
    trap.armed = False
    app.power_on()
    pv.select(app)
    assert _send(app, proto.INS_APPLY, update) == (b"", proto.SW_REPLAY)  # applied, once


def test_pos_apply_that_committed_answers_9000(monkeypatch) -> None:
    """The POS adopts a committed config in RAM after the write (_derive): a failure there is
    9000 too, and RAM falls back to flash, which holds the new hot list."""
    pair = pv.make_pair(42)
    pos = pair.pos
    before = cbor.decode(pv.call(pos, proto.INS_GET_INFO, what="GET INFO"))
    version = before[proto.INFO_HOT_VERSION] + 1
    update = pair.issuer.update(
        pair.pos_id, before[proto.INFO_UPDATE] + 1,
        {proto.UPD_HOTLIST: pair.issuer.hotlist(version, pair.clock.now(), [])},
    )
    trap = Trap(MemoryError)
    monkeypatch.setattr(pos, "_derive", trap.wrap(pos._derive))
    _arm_after_commit(pos, trap, "_commit")
    assert _send(pos, proto.INS_APPLY, update) == (b"", proto.SW_OK)
    assert trap.fired >= 1  # and again in the reload that follows: flash is read again later
    trap.armed = False
    after = cbor.decode(pv.call(pos, proto.INS_GET_INFO, what="GET INFO"))
    assert after[proto.INFO_HOT_VERSION] == version
    assert after[proto.INFO_UPDATE] == before[proto.INFO_UPDATE] + 1
    assert _send(pos, proto.INS_APPLY, update) == (b"", proto.SW_REPLAY)


@pytest.mark.parametrize("keep", [0, None], ids=["nothing", "prefix"])
def test_power_cut_right_after_load_commit(keep: int | None) -> None:
    """The state commit is the LOAD's first write, the journal record its second: the power
    goes during the second. After power-on the status shows the voucher taken (its record
    appended from what the state owes) and the retry takes nothing more."""
    issuer, app, flash = _wallet()
    wid = pv.device_id("wallet", 1)
    voucher = issuer.voucher(wid, 2, TOPUP)
    pv.select(app)
    flash.cut_after(2, keep)
    with pytest.raises(PowerCut):
        app.process(proto.build_command(proto.CLA_PROP, proto.INS_LOAD, 0, 0, voucher))
    flash.power_on()
    app = WalletApp(Hal(flash=flash, clock=None, rng=app.hal.rng))
    books = _books(app)
    assert books["status_balance"] == books["journal_balance"] == BALANCE + TOPUP, books
    assert books["status_loads"] == books["journal_loads"] == 2, books
    pv.select(app)
    assert _send(app, proto.INS_LOAD, voucher) == (b"", proto.SW_REPLAY)
    assert _books(app) == books


@pytest.mark.parametrize("command", ["load", "apply"])
def test_tear_right_after_the_commit_then_retry(command: str) -> None:
    """The card leaves the field as it answers (the answer is lost): the next tap's INFO shows
    the committed state (the offline count reset by the update; the balance by the status),
    and the same command again changes nothing."""
    issuer, app, _flash = _wallet()
    wid = pv.device_id("wallet", 1)
    pv.select(app)
    assert pv.call(app, proto.INS_PAY, _pay(wid), what="PAY")  # one offline payment made
    left = _info(app)[proto.INFO_OFFLINE_LEFT]
    if command == "load":
        ins, env = proto.INS_LOAD, issuer.voucher(wid, 2, TOPUP)
    else:
        ins, env = proto.INS_APPLY, issuer.update(
            wid, 1, {proto.UPD_SYNCED_COUNTER: 1, proto.UPD_SYNCED_SPENT: 100}
        )
    pv.select(app)
    app.process(proto.build_command(proto.CLA_PROP, ins, 0, 0, env))  # answer lost: a tear
    app.power_on()  # the next tap
    info = _info(app)
    books = _books(app)
    if command == "load":
        assert books["status_balance"] == books["journal_balance"] == BALANCE + TOPUP - 100
        assert info[proto.INFO_OFFLINE_LEFT] == left
    else:
        assert books["status_balance"] == books["journal_balance"] == BALANCE - 100
        assert info[proto.INFO_OFFLINE_LEFT] == left + 1  # the synced payment no longer counts
    pv.select(app)
    assert _send(app, ins, env) == (b"", proto.SW_REPLAY)
    assert _books(app) == books and _info(app) == info


def _pay(wid: bytes) -> bytes:
    return cbor.encode(
        {
            proto.REQ_CHALLENGE: bytes(range(16)),
            proto.REQ_AMOUNT: 100,
            proto.REQ_PAYEE: b"POS-0001",
            proto.REQ_TIME: 0,
            proto.REQ_KIND: proto.PAYKIND_POS,
        }
    )


def test_pay_out_of_ram_while_signing_is_6f00_and_the_retry_pays_once(monkeypatch) -> None:
    """PAY commits before it signs: out of RAM while signing is 6F00, never 6F01 ("nothing
    decided"), so the POS keeps its torn entry (§4.1); the retry returns the payment, one
    counter; out of RAM after the signature (the screen) answers the payment."""
    _issuer, app, _flash = _wallet()
    wid = pv.device_id("wallet", 1)
    trap = Trap(MemoryError)
    monkeypatch.setattr(app, "sign_payment", trap.wrap(app.sign_payment))
    _arm_after_commit(app, trap)
    pv.select(app)
    assert _send(app, proto.INS_PAY, _pay(wid)) == (b"", proto.SW_INTERNAL)
    trap.armed = False
    info = _info(app)
    assert info[proto.INFO_COUNTER] == 1 and info[proto.INFO_LAST_CHALLENGE] == bytes(range(16))
    env, sw = _send(app, proto.INS_PAY, _pay(wid))  # the POS's recovery: the same PAY
    assert sw == proto.SW_OK and proto.open_envelope(env)[1][proto.PAY_COUNTER] == 1
    assert _books(app)["status_balance"] == _books(app)["journal_balance"] == BALANCE - 100


@pytest.mark.parametrize("where", WHERE)
def test_pay_failing_after_its_signature_answers_the_payment(monkeypatch, where: str) -> None:
    _issuer, app, _flash = _wallet()
    wid = pv.device_id("wallet", 1)
    trap = Trap(MemoryError)
    _trap_point(monkeypatch, app, where, trap)
    monkeypatch.setattr(app, "sign_payment", _signed_then_arm(app.sign_payment, trap))
    pv.select(app)
    env, sw = _send(app, proto.INS_PAY, _pay(wid))
    assert trap.fired >= 1, "the fault was not injected"
    assert sw == proto.SW_OK and proto.open_envelope(env)[1][proto.PAY_COUNTER] == 1
    trap.armed = False
    app.power_on()
    assert _books(app)["status_balance"] == _books(app)["journal_balance"] == BALANCE - 100


def _signed_then_arm(sign: Callable[..., Any], trap: Trap) -> Callable[..., Any]:
    once = [True]

    def signed(*a: Any) -> Any:
        out = sign(*a)
        trap.armed, once[0] = once[0], False  # the PAY's own signature only
        return out

    return signed

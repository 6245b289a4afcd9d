"""The POS app against the real wallet app, through real APDUs: a payment end to end, the
serial side (INFO, EXPORT, ACK, APPLY, PERSO), keypad entry, a staged wallet-to-wallet
transfer and a load, seeded determinism of the whole APDU transcript, and a fuzz of
PosApp.process()."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as stg

from tapcash.firmware.core import cbor, ed25519, proto
from tapcash.firmware.core.hal import Hal
from tapcash.firmware.pos.app import PosApp
from tapcash.host.device.errors import DeviceRefused
from tapcash.host.issuer import Issuer
from tapcash.sim.device.flash import SimFlash
from tapcash.sim.device.hal import (
    CountingSignal,
    RecordingDisplay,
    ScriptedKeys,
    SeededRng,
    SimClock,
)
from tapcash.sim.device.provision import (
    PIN,
    T0,
    Pair,
    ack_for,
    call,
    device_id,
    journal_digest,
    load,
    make_pair,
    make_wallet,
    provision_pos,
    select,
    transfer,
)
from tapcash.sim.nfc.field import DirectLink

pytest_plugins = ["protocol_fixtures"]

TRANSCRIPT = Path(__file__).parents[1] / "support" / "vectors" / "pos_payment_transcript.json"


def sw_of(resp: bytes) -> int:
    return resp[-2] << 8 | resp[-1]


def cmd(ins: int, data: bytes = b"", cla: int = proto.CLA_PROP, p1: int = 0, p2: int = 0) -> bytes:
    return proto.build_command(cla, ins, p1, p2, data)


# ---- the payment ---------------------------------------------------------------------------
def test_payment_end_to_end(audit) -> None:
    display, signal = RecordingDisplay(), CountingSignal()
    pair = make_pair(0, display=display, signal=signal)
    r = pair.pos.take_payment(1234)
    assert r.approved and r.reason == "ok" and not r.recovered
    assert (r.wallet, r.counter, r.amount, r.seq) == (pair.wallet_id, 1, 1234, 1)
    assert r.balance == pair.initial - 1234
    assert r.receipt_sent
    assert signal.oks == 1 and signal.fails == 0
    assert display.lines[:2] == ["Approved", "12.34"]

    # three round trips; what crossed the air
    cmds = [c[:2] for c, _ in pair.link.transcript]
    assert cmds == [b"\x00\xa4", b"\x80\x50", b"\x80\x52"]
    assert all(rsp[-2:] == b"\x90\x00" for _, rsp in pair.link.transcript)
    assert pair.link.bytes_on_air < 700

    books = audit.books(pair)
    assert [e.payment.envelope for e in books.pos] == [r.payment]
    body = books.pos[0].payment.body
    assert body[proto.PAY_PAYEE] == pair.pos_id
    assert body[proto.PAY_KIND] == proto.PAYKIND_POS
    assert body[proto.PAY_TIME] == T0
    # the wallet logged the POS receipt too, byte for byte
    assert books.wallet.receipts == [r.receipt]
    # the POS journal names the wallet certificate by its body hash
    cert_body = proto.open_envelope(select(pair.wallet)[proto.INFO_CERT])[0]
    assert books.pos[0].cert_hash == hashlib.sha256(cert_body).digest()


def test_many_payments_and_day_rollover(audit) -> None:
    pair = make_pair(
        1, balance=100_000, limits={proto.LIM_OFFLINE_COUNT: 100, proto.LIM_OFFLINE_AMOUNT: 100_000}
    )
    for i in range(25):
        if i == 20:  # velocity: 20 payments per wallet per POS day
            assert pair.pos.take_payment(100).reason == "velocity"
            pair.clock.advance(86_400)
        r = pair.pos.take_payment(100)
        assert r.approved and r.counter == i + 1, r
    books = audit.books(pair)
    assert len(books.pos) == 25 and books.wallet.balance == 100_000 - 2500


def test_pin_from_keypad_and_amount_entry() -> None:
    keys = ScriptedKeys()
    display = RecordingDisplay()
    pair = make_pair(2, keys=keys, display=display)
    keys.type("12*7000#")  # '*' clears the 12
    assert pair.pos.read_amount() == 7000
    assert ["Amount", "70.00"] in display.history
    keys.type(list("1234#"))
    r = pair.pos.take_payment(7000)  # above no-CVM: the PIN comes from the keypad
    assert r.approved, r
    assert ["PIN", "****"] in display.history
    r = pair.pos.take_payment(7000)  # no keys left: the PIN entry times out
    assert (r.status, r.reason) == ("declined", "pin_required")
    keys.type("*")
    assert pair.pos.read_amount() is None  # '*' on nothing cancels
    keys.type("250#")
    keys.type("1234#")  # not needed: 2.50 is below no-CVM
    r = pair.pos.sale()
    assert r is not None and r.approved and r.amount == 250


def test_precheck_declines_without_a_card() -> None:
    pair = make_pair(3)
    assert pair.pos.precheck(1000) is None
    assert pair.pos.precheck(0) == "amount"
    assert pair.pos.precheck(20_001) == "floor_limit"
    pair.clock.advance(604_801)
    assert pair.pos.precheck(1000) == "hotlist_stale"


def test_declined_card_answers_leave_nothing_behind(audit) -> None:
    pair = make_pair(4, balance=1000)
    r = pair.pos.take_payment(1500)
    assert (r.status, r.reason, r.sw) == ("declined", "funds", proto.SW_FUNDS)
    r = pair.pos.take_payment(1000)
    assert r.approved and r.balance == 0
    info = select(pair.pos)
    assert info[proto.INFO_TORN] == 0 and info[proto.INFO_SEQ] == 1
    audit.books(pair)


# ---- serial side -----------------------------------------------------------------------------
def test_info_export_ack(audit) -> None:
    pair = make_pair(5)
    pos = pair.pos
    for _ in range(5):
        assert pos.take_payment(300).approved
    info = cbor.decode(call(pos, proto.INS_GET_INFO))
    assert info[proto.INFO_ID] == pair.pos_id
    assert (info[proto.INFO_SEQ], info[proto.INFO_RECORDS]) == (5, 5)
    assert info[proto.INFO_HOT_VERSION] == 1 and info[proto.INFO_FLAGS] == 0
    assert select(pos) == info

    out = cbor.decode(call(pos, proto.INS_EXPORT, cbor.encode({0: 1, 1: 2})))
    assert [s for s, _ in out[proto.EXP_RECORDS]] == [2, 3] and out[proto.EXP_MORE] is True
    assert proto.EXP_STATUS not in out and out[proto.EXP_LAST] == 5  # signed on the last page
    last = cbor.decode(call(pos, proto.INS_EXPORT, cbor.encode({0: 3, 1: 16})))
    assert [s for s, _ in last[proto.EXP_RECORDS]] == [4, 5] and last[proto.EXP_MORE] is False
    _b, status, _s = proto.open_envelope(last[proto.EXP_STATUS])
    assert status == {proto.ST_DEVICE: pair.pos_id, proto.ST_SEQ: 5,
                      proto.ST_DIGEST: journal_digest(pos, 5)}
    assert all(isinstance(r, bytes) for _s, r in out[proto.EXP_RECORDS])  # as journaled
    assert len(audit.pos(pos)) == 5

    issuer = pair.issuer
    d3 = journal_digest(pos, 3)
    ack = issuer.ack(pair.pos_id, 3, T0, d3)
    assert sw_of(pos.process(cmd(proto.INS_ACK, issuer.ack(pair.pos_id, 6, T0, d3)))) == 0x6984
    assert sw_of(pos.process(cmd(proto.INS_ACK, issuer.ack(b"other id", 3, T0, d3)))) == 0x6984
    # the ledger holds other records than these at 3: nothing is pruned
    other = issuer.ack(pair.pos_id, 3, T0, journal_digest(pos, 2))
    assert sw_of(pos.process(cmd(proto.INS_ACK, other))) == 0x6984
    rogue = Issuer(hashlib.sha256(b"rogue").digest())
    assert sw_of(pos.process(cmd(proto.INS_ACK, rogue.ack(pair.pos_id, 3, T0, d3)))) == 0x6988
    call(pos, proto.INS_ACK, ack)
    call(pos, proto.INS_ACK, ack)  # an ack already applied: accepted, nothing more happens
    info = select(pos)
    assert (info[proto.INFO_SEQ], info[proto.INFO_RECORDS]) == (5, 2)
    assert [e.seq for e in audit.pos(pos)] == [4, 5]

    # the last-counter table outlives the prune, and seqs keep growing after a reboot
    pair.reboot_pos()
    r = pair.pos.take_payment(300)
    assert r.approved and r.seq == 6 and r.counter == 6


def test_apply_hotlist_and_renewed_cert() -> None:
    pair = make_pair(6)
    pos, issuer = pair.pos, pair.issuer
    assert pos.take_payment(100).approved

    hot2 = issuer.hotlist(2, T0 + 10, [pair.wallet_id])
    assert (
        sw_of(pos.process(cmd(proto.INS_APPLY, issuer.update(b"other id", 1, {6: hot2})))) == 0x6984
    )
    call(pos, proto.INS_APPLY, issuer.update(pair.pos_id, 1, {proto.UPD_HOTLIST: hot2}))
    assert select(pos)[proto.INFO_HOT_VERSION] == 2
    r = pos.take_payment(100)
    assert (r.status, r.reason) == ("declined", "revoked")

    # the same update again, or an older hot list: replay
    same = issuer.update(pair.pos_id, 1, {proto.UPD_HOTLIST: hot2})
    assert sw_of(pos.process(cmd(proto.INS_APPLY, same))) == proto.SW_REPLAY
    old = issuer.update(pair.pos_id, 2, {proto.UPD_HOTLIST: issuer.hotlist(1, T0, [])})
    assert sw_of(pos.process(cmd(proto.INS_APPLY, old))) == proto.SW_REPLAY
    # a hot list signed by someone else
    rogue = Issuer(hashlib.sha256(b"rogue").digest())
    forged = issuer.update(pair.pos_id, 2, {proto.UPD_HOTLIST: rogue.hotlist(3, T0, [])})
    assert sw_of(pos.process(cmd(proto.INS_APPLY, forged))) == proto.SW_BAD_SIGNATURE
    call(pos, proto.INS_APPLY, issuer.update(pair.pos_id, 2, {6: issuer.hotlist(3, T0, [])}))
    assert pos.take_payment(100).approved

    # renewed certificate: same id and key, higher serial
    pub = proto.open_envelope(select(pos)[proto.INFO_CERT])[1][proto.CERT_KEY]
    renewed = issuer.certify_pos(
        pair.pos_id, pub, device_id("merchant", 1), expires=T0 + 10**8, serial=2
    )
    call(pos, proto.INS_APPLY, issuer.update(pair.pos_id, 3, {proto.UPD_CERT: renewed}))
    assert select(pos)[proto.INFO_CERT] == renewed
    wrong_key = issuer.certify_pos(
        pair.pos_id, bytes(32), device_id("merchant", 1), expires=T0 + 10**8, serial=3
    )
    upd = issuer.update(pair.pos_id, 4, {proto.UPD_CERT: wrong_key})
    assert sw_of(pos.process(cmd(proto.INS_APPLY, upd))) == 0x6984
    expired = issuer.certify_pos(
        pair.pos_id, pub, device_id("merchant", 1), expires=T0 - 1, serial=3
    )
    upd = issuer.update(pair.pos_id, 4, {proto.UPD_CERT: expired})
    assert sw_of(pos.process(cmd(proto.INS_APPLY, upd))) == 0x6984
    pair.reboot_pos()
    assert select(pair.pos)[proto.INFO_CERT] == renewed
    assert pair.pos.take_payment(100).approved


def test_perso_rules() -> None:
    issuer = Issuer(hashlib.sha256(b"perso").digest())
    clock = SimClock(T0)
    hal = Hal(flash=SimFlash(), clock=clock, rng=SeededRng(9), link=DirectLink())
    pos = PosApp(hal)
    pos.power_on()
    assert cbor.decode(call(pos, proto.INS_GET_INFO)) == {0: proto.VERSION, 6: 0x80}
    assert pos.take_payment(100).reason == "pos_blank"
    for ins in (proto.INS_EXPORT, proto.INS_ACK, proto.INS_APPLY, proto.INS_PERSO_FINISH):
        assert sw_of(pos.process(cmd(ins, b"\xa0"))) == proto.SW_CONDITIONS
    pub = call(pos, proto.INS_PERSO_KEYGEN)
    assert call(pos, proto.INS_PERSO_KEYGEN) == pub  # a retried KEYGEN: the same key

    def finish(cert: bytes) -> int:
        m = {proto.PF_CERT: cert, proto.PF_ISSUERS: [issuer.public_key]}
        return sw_of(pos.process(cmd(proto.INS_PERSO_FINISH, cbor.encode(m))))

    pid, mid = device_id("pos", 9), device_id("merchant", 9)
    assert finish(issuer.certify_wallet(pid, pub, expires=T0 + 100)) == proto.SW_DATA_INVALID
    assert finish(issuer.certify_pos(pid, bytes(32), mid, expires=T0 + 100)) == 0x6984
    assert finish(issuer.certify_pos(pid, pub, mid, expires=T0 - 1)) == proto.SW_EXPIRED
    rogue = Issuer(hashlib.sha256(b"rogue").digest())
    assert finish(rogue.certify_pos(pid, pub, mid, expires=T0 + 100)) == proto.SW_BAD_SIGNATURE
    good = issuer.certify_pos(pid, pub, mid, expires=T0 + 100)
    m = {proto.PF_CERT: good, proto.PF_ISSUERS: [issuer.public_key], proto.PF_CONFIG: 5}
    assert sw_of(pos.process(cmd(proto.INS_PERSO_FINISH, cbor.encode(m)))) == proto.SW_WRONG_DATA
    m[proto.PF_CONFIG] = {proto.CFG_FLOOR: 500, 99: 1}
    m[proto.PF_HOTLIST] = issuer.hotlist(1, T0, [])
    call(pos, proto.INS_PERSO_FINISH, cbor.encode(m))
    assert sw_of(pos.process(cmd(proto.INS_PERSO_FINISH, cbor.encode(m)))) == proto.SW_CONDITIONS
    assert sw_of(pos.process(cmd(proto.INS_PERSO_KEYGEN))) == proto.SW_CONDITIONS
    assert pos.config[proto.CFG_FLOOR] == 500
    assert pos.precheck(501) == "floor_limit"
    info = select(pos)
    assert info[proto.INFO_ID] == pid and info[proto.INFO_FLAGS] == 0


def test_no_hotlist_means_no_offline_acceptance() -> None:
    issuer = Issuer(hashlib.sha256(b"nohot").digest())
    clock = SimClock(T0)
    wallet, _ = make_wallet(issuer, 1, balance=1000, clock=clock)
    link = DirectLink(wallet)
    hal = Hal(flash=SimFlash(), clock=clock, rng=SeededRng(1), link=link)
    pos = provision_pos(issuer, device_id("pos", 1), device_id("merchant", 1), hal, hotlist=b"")
    assert select(pos)[proto.INFO_FLAGS] & proto.FLAG_HOT_STALE
    assert pos.take_payment(100).reason == "hotlist_stale"
    call(
        pos,
        proto.INS_APPLY,
        issuer.update(device_id("pos", 1), 1, {proto.UPD_HOTLIST: issuer.hotlist(1, T0, [])}),
    )
    assert pos.take_payment(100).approved


# ---- wallet to wallet, load ------------------------------------------------------------------
def test_staged_transfer_and_release(audit) -> None:
    pair = make_pair(10, balance=5000)
    receiver, _rflash = make_wallet(pair.issuer, 2, seed=10, balance=0, clock=pair.clock)
    payer_link = DirectLink(pair.wallet)
    receiver_link = DirectLink(receiver)
    payment = transfer(payer_link, receiver_link, 2000, time=T0)
    p = audit.open_payment(payment)
    assert p.body[proto.PAY_KIND] == proto.PAYKIND_TRANSFER
    assert p.body[proto.PAY_PAYEE] == device_id("wallet", 2)

    rx = audit.wallet(receiver)
    assert rx.balance == 0 and rx.status[proto.ST_PENDING] == 2000
    assert [r[proto.REC_TYPE] for _, r in rx.records] == [proto.RT_TRANSFER_IN]
    assert rx.records[0][1][proto.REC_SIGNED] == payment
    # staged value cannot be spent offline (e-CNY default): the receiver pays nothing
    pos_link_pair = make_pair(10)
    pos_link_pair.link.tap(receiver)
    pos_link_pair.wallet = receiver
    r = pos_link_pair.pos.take_payment(500)
    assert (r.status, r.reason) == ("declined", "funds")
    # the same payment offered twice is taken once
    call(receiver, proto.INS_RECEIVE, cbor.encode([payment, select(pair.wallet)[2]]))
    assert audit.wallet(receiver).status[proto.ST_PENDING] == 2000
    # the ledger releases it with a voucher of source 2: now it is spendable
    assert (
        load(receiver, pair.issuer, device_id("wallet", 2), 1, 2000, source=proto.VSRC_TRANSFER)
        == 2000
    )
    pos_link_pair.link.tap(receiver)
    assert pos_link_pair.pos.take_payment(500).approved

    payer = audit.wallet(pair.wallet)
    assert payer.balance == 3000 and payer.counter == 1
    audit.chain(payer.payments, audit.wallet_key(pair.wallet))
    # the payer still pays a POS with the next counter
    assert pair.pos.take_payment(1000).counter == 2


def test_load_voucher_once() -> None:
    pair = make_pair(11, balance=1000)
    assert load(pair.wallet, pair.issuer, pair.wallet_id, 2, 500) == 1500
    with pytest.raises(DeviceRefused) as e:
        load(pair.wallet, pair.issuer, pair.wallet_id, 2, 500)
    assert e.value.sw == proto.SW_REPLAY
    pair.link.tap()
    assert pair.pos.take_payment(1500).balance == 0


# ---- determinism -----------------------------------------------------------------------------
def _seeded_run(seed: int) -> list[tuple[bytes, bytes]]:
    pair = make_pair(seed)
    pair.link.clear_records()
    assert pair.pos.take_payment(1234).approved
    pair.link.tap()
    assert pair.pos.take_payment(7000, pin=PIN).approved
    return pair.link.transcript


def test_same_seed_same_transcript() -> None:
    a, b = _seeded_run(42), _seeded_run(42)
    assert a == b
    assert _seeded_run(43) != a
    fixture = {
        "seed": 42,
        "what": "make_pair(42); take_payment(1234); tap; take_payment(7000, pin=1234)",
        "apdus": [[c.hex(), r.hex()] for c, r in a],
    }
    if os.environ.get("TAPCASH_REGEN_VECTORS"):  # only on purpose, never to pass a test
        TRANSCRIPT.parent.mkdir(exist_ok=True)
        TRANSCRIPT.write_text(json.dumps(fixture, indent=1) + "\n")
    assert TRANSCRIPT.exists(), (
        f"{TRANSCRIPT} is missing: the golden vector is part of the repository (a test that "
        "writes its own expectation checks nothing); restore it, or regenerate it on purpose "
        "with TAPCASH_REGEN_VECTORS=1 and review the diff"
    )
    stored = json.loads(TRANSCRIPT.read_text())
    assert stored == fixture, (
        f"{TRANSCRIPT} no longer matches the seeded run: if the protocol change is intended, "
        "regenerate it with TAPCASH_REGEN_VECTORS=1"
    )


def test_transcript_is_backend_independent() -> None:
    """Ed25519 is deterministic: the pure-Python signer gives the same bytes as PyNaCl."""
    if ed25519.backend() != "nacl":
        pytest.skip("needs the PyNaCl backend for the comparison")
    a = _seeded_run(44)
    ed25519.set_backend("pure")
    try:
        b = _seeded_run(44)
    finally:
        ed25519.set_backend("nacl")
    assert a == b


def test_receipts_are_signed_with_the_kept_key_and_rfc8032_bytes() -> None:
    """The POS expands its key once (RFC 8032's a, prefix, A, kept on the app) and signs every
    receipt with it: PyNaCl's signature of the same bytes, on both backends."""
    import nacl.signing

    from tapcash.firmware.pos import state as pst

    old = ed25519.backend()
    for backend in ("pure", "nacl"):
        ed25519.set_backend(backend)
        try:
            pair = make_pair(45)
            seed = pair.pos.cf[pst.C_SEED]
            receipts = []
            for amount in (1234, 99):
                r = pair.pos.take_payment(amount)
                assert r.approved
                receipts.append(r.receipt)
                pair.link.tap()
            key = pair.pos._key
            assert key is not None and key[0] == seed
            for env in receipts:
                body_bytes, sig = cbor.decode(env)
                want = nacl.signing.SigningKey(seed).sign(proto.TAG_RECEIPT + body_bytes)
                assert sig == want.signature, backend
            assert pair.pos._key is key  # kept: one expansion for both
        finally:
            ed25519.set_backend(old)


# ---- fuzz --------------------------------------------------------------------------------
_FUZZ: dict[str, Pair] = {}


def _fuzz_pair() -> Pair:
    if "pair" not in _FUZZ:
        pair = make_pair(12)
        assert pair.pos.take_payment(100).approved
        _FUZZ["pair"] = pair
    return _FUZZ["pair"]


def _assert_unchanged(pos: PosApp, flash: SimFlash, apdu: bytes) -> None:
    before = flash.snapshot()
    resp = pos.process(apdu)
    assert isinstance(resp, (bytes, bytearray)) and len(resp) >= 2  # EXPORT: built in place
    sw = sw_of(resp)
    assert sw == 0x9000 or (sw >> 8) in (0x63, 0x65, 0x67, 0x69, 0x6A, 0x6B, 0x6D, 0x6E, 0x6F)
    assert flash.snapshot() == before


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stg.binary(max_size=300))
def test_fuzz_process_any_bytes(data: bytes) -> None:
    pair = _fuzz_pair()
    _assert_unchanged(pair.pos, pair.pos_flash, data)


_INS = [
    proto.INS_SELECT,
    proto.INS_GET_INFO,
    proto.INS_EXPORT,
    proto.INS_ACK,
    proto.INS_APPLY,
    proto.INS_PERSO_KEYGEN,
    proto.INS_PERSO_FINISH,
    proto.INS_PAY,
    0x00,
    0xFF,
]
_cbor_leaf = stg.one_of(
    stg.integers(-(2**64), 2**64 - 1),
    stg.binary(max_size=40),
    stg.text(max_size=10),
    stg.booleans(),
    stg.none(),
)
_cbor = stg.recursive(
    _cbor_leaf,
    lambda inner: stg.one_of(
        stg.lists(inner, max_size=4), stg.dictionaries(stg.integers(0, 12), inner, max_size=5)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    stg.sampled_from([0x00, 0x80, 0x84]),
    stg.sampled_from(_INS),
    stg.integers(0, 255),
    stg.integers(0, 255),
    _cbor,
    stg.booleans(),
)
def test_fuzz_process_structured(
    cla: int, ins: int, p1: int, p2: int, value: object, le: bool
) -> None:
    pair = _fuzz_pair()
    _assert_unchanged(
        pair.pos, pair.pos_flash, proto.build_command(cla, ins, p1, p2, cbor.encode(value), le)
    )


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stg.sampled_from(["ack", "apply", "export"]), stg.integers(2, 10), stg.integers(0, 10))
def test_fuzz_signed_commands(kind: str, a: int, b: int) -> None:
    """Well-signed but wrong commands: refused with the state unchanged, or accepted."""
    pair = _fuzz_pair()
    issuer = pair.issuer
    if kind == "ack":
        data = issuer.ack(pair.pos_id, a + 100, T0, bytes(32))  # beyond the journal: refused
    elif kind == "apply":
        data = issuer.update(pair.pos_id if b else b"x" * 8, 0, {a: b})  # number 0: replay
    else:
        data = cbor.encode({proto.EXP_SINCE: a, proto.EXP_MAX: b + 1})
    _assert_unchanged(
        pair.pos,
        pair.pos_flash,
        cmd(
            {"ack": proto.INS_ACK, "apply": proto.INS_APPLY, "export": proto.INS_EXPORT}[kind], data
        ),
    )


def test_pos_without_a_clock() -> None:
    """Clock unset (0): expiry, hot list age and the velocity day are not judged; the payment
    count under the hot list, the floor and the card's own limits still are."""
    pair = make_pair(30, now=0, config={proto.CFG_VELOCITY_COUNT: 1, proto.CFG_HOT_MAX_PAYMENTS: 3})
    for _ in range(3):
        r = pair.pos.take_payment(100)
        assert r.approved, r
    assert pair.pos.take_payment(100).reason == "hotlist_stale"
    assert pair.pos.precheck(20_001) == "floor_limit"


def test_the_ledgers_ack_sets_an_unset_or_late_clock_forward_only() -> None:
    """An ESP32 RTC loses the time at power-off: the next sync's ACK (issuer-signed, with the
    ledger's time) sets it, so hot-list age, expiry and daily limits are judged again."""
    pair = make_pair(31, now=0)
    assert pair.pos.take_payment(100).approved
    issuer, pos = pair.issuer, pair.pos
    call(pos, proto.INS_ACK, ack_for(issuer, pos, pair.pos_id, 1, T0))
    assert pair.clock.now() == T0
    # an old ack replayed later cannot turn the clock back
    pair.clock.set(T0 + 3600)
    call(pos, proto.INS_ACK, ack_for(issuer, pos, pair.pos_id, 1, T0))
    assert pair.clock.now() == T0 + 3600
    # small drift is left alone; a clock well behind is brought forward
    call(pos, proto.INS_ACK, ack_for(issuer, pos, pair.pos_id, 1, T0 + 3600 + 60))
    assert pair.clock.now() == T0 + 3600
    call(pos, proto.INS_ACK, ack_for(issuer, pos, pair.pos_id, 1, T0 + 7200))
    assert pair.clock.now() == T0 + 7200
    # an ack the POS refuses (another device's) sets nothing
    other = issuer.ack(b"other id", 1, T0 + 10**6, journal_digest(pos, 1))
    assert sw_of(pos.process(cmd(proto.INS_ACK, other))) == 0x6984
    assert pair.clock.now() == T0 + 7200


def test_every_decline_reason_has_a_message_that_fits_the_screen() -> None:
    import re

    from tapcash.firmware.pos import pay

    assert all(len(m) <= 16 for m in pay._MESSAGES.values())  # 128-px SSD1306, 8-px font
    source = Path(pay.__file__).read_text()
    reasons = set(re.findall(r'(?:return|reason =|result\([A-Z]+,)\s*"([a-z_]+)"', source))
    reasons |= {pay._card_reason(sw) for sw in range(0x6000, 0x7000)}
    reasons -= {"ok", "recovered"}  # approved
    assert reasons and not reasons - set(pay._MESSAGES), reasons - set(pay._MESSAGES)


# ---- INFO as PROTOCOL.md 2 rev 1.1 settles it (issue #14) -----------------------------------
def _rewrite_info(pair: Pair, change) -> None:
    """Let the POS see the card's INFO changed by `change(info)` (another implementation's card)."""

    def alter(k: int, apdu: bytes, resp: bytes) -> bytes:
        if apdu[:2] != b"\x00\xa4" or resp[-2:] != b"\x90\x00":
            return resp
        info = cbor.decode(resp[:-2])
        change(info)
        return cbor.encode(info) + resp[-2:]

    pair.link.alter_response = alter


@pytest.mark.parametrize(
    "change",
    [
        lambda i: i.__setitem__(proto.INFO_VERSION, 1),  # another protocol version
        lambda i: i.pop(proto.INFO_VERSION),
        lambda i: i.pop(proto.INFO_FLAGS),  # flags are required
        lambda i: i.pop(proto.INFO_COUNTER),
        lambda i: i.__setitem__(proto.INFO_CERT, "text"),
        # §1.1: an envelope field is a byte string; the POS takes no array form
        lambda i: i.__setitem__(proto.INFO_CERT, cbor.decode(i[proto.INFO_CERT])),
        lambda i: i.__setitem__(proto.INFO_ID, b"short"),
    ],
)
def test_info_without_its_required_fields_is_bad_info(change) -> None:
    pair = make_pair(41)
    _rewrite_info(pair, change)
    r = pair.pos.take_payment(700)
    assert (r.status, r.reason) == ("declined", "bad_info")
    assert pair.link.transcript[-1][0][:2] == b"\x00\xa4"  # nothing after SELECT was sent


def test_pos_sends_a_pin_only_when_the_amount_needs_one() -> None:
    pair = make_pair(42)
    r = pair.pos.take_payment(700, pin=b"0000")  # below no-CVM: the (wrong) PIN stays here
    assert r.approved, r
    pay_cmd = next(c for c, _ in pair.link.transcript if c[:2] == b"\x80\x50")
    assert proto.REQ_PIN not in cbor.decode(pay_cmd[5:-1])
    r = pair.pos.take_payment(7000, pin=b"0000")  # above: sent, and the card says how many left
    assert (r.reason, r.sw, r.tries_left) == ("pin_wrong", 0x63C2, 2)


def test_missing_limits_take_the_defaults_on_card_and_pos() -> None:
    # §6: a limit absent from the certificate is the default, for the card and the POS alike
    # (our issuer always writes all six; another issuer may not)
    from tapcash.firmware.wallet.app import WalletApp

    pair = make_pair(43)
    wid = device_id("wallet", 43)
    wallet = WalletApp(Hal(flash=SimFlash(), rng=SeededRng(43), clock=pair.clock))
    select(wallet)
    pub = call(wallet, proto.INS_PERSO_KEYGEN)
    body = {
        proto.CERT_KIND: proto.KIND_WALLET,
        proto.CERT_ID: wid,
        proto.CERT_KEY: pub,
        proto.CERT_ISSUER: pair.issuer.key_id,
        proto.CERT_EXPIRES: T0 + 10**6,
        proto.CERT_LIMITS: {proto.LIM_PAYMENT_MAX: 15_000, 99: "ignored"},
    }
    cert = pair.issuer._seal(proto.TAG_CERT, body)
    finish = {proto.PF_CERT: cert, proto.PF_ISSUERS: [pair.issuer.public_key],
              proto.PF_PIN: PIN, proto.PF_PUK: b"12345678"}
    call(wallet, proto.INS_PERSO_FINISH, cbor.encode(finish))
    load(wallet, pair.issuer, wid, 1, 40_000)
    pair.link.tap(wallet)
    r = pair.pos.take_payment(5001)  # default no-CVM 5000: the PIN is asked for
    assert r.reason == "pin_required"
    pair.link.tap()
    assert pair.pos.take_payment(5000).approved  # at the limit: no PIN
    pair.link.tap()
    r = pair.pos.take_payment(15_001, pin=PIN)  # the certificate's own payment max
    assert r.reason == "over_payment_max"

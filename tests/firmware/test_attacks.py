"""Attacks on the offline payment, each refused or leaving signed evidence: replays, reused
challenges, cloned cards, flash rollback, forged / expired / revoked certificates, tampering
in transit, PIN guessing, every limit, a stale hot list, and the torn log's bounds.

The wallet, the POS, the storage and the crypto are the real ones; an attacker is a
`DirectLink` that alters bytes on the air, a copied or restored flash image, or a rogue issuer.
"""

from __future__ import annotations

import hashlib

from tapcash.firmware.core import cbor, ed25519, proto
from tapcash.firmware.core.hal import Hal
from tapcash.firmware.pos.app import PosApp
from tapcash.firmware.wallet.app import WalletApp
from tapcash.host.issuer import Issuer
from tapcash.sim.device.flash import SimFlash
from tapcash.sim.device.hal import SeededRng
from tapcash.sim.device.provision import (
    T0,
    Pair,
    device_id,
    export_all,
    make_pair,
    make_pos,
    make_wallet,
    provision_wallet,
    select,
)
from tapcash.sim.nfc.field import DirectLink

pytest_plugins = ["protocol_fixtures"]

PAY = 1  # command index of PAY within a tap (SELECT 0, PAY 1, RECEIPT 2)


def declined(r, reason: str) -> bool:
    return r.status == "declined" and r.reason == reason


def pos_entries(pos: PosApp) -> list[dict]:
    return [rec for _seq, rec in export_all(pos)[0]]


def payment_of(rec: dict) -> tuple[bytes, dict]:
    body_bytes, body, _sig = proto.open_envelope(rec[proto.REC_SIGNED])
    return body_bytes, body


def assert_fraud_proof(rec_a: dict, rec_b: dict, wallet_key: bytes) -> None:
    """Two payments signed by the same wallet with the same counter and different content."""
    for rec in (rec_a, rec_b):
        body_bytes, _b, sig = proto.open_envelope(rec[proto.REC_SIGNED])
        assert ed25519.verify(wallet_key, proto.TAG_PAYMENT + body_bytes, sig)
    (ba, a), (bb, b) = payment_of(rec_a), payment_of(rec_b)
    assert (a[proto.PAY_WALLET], a[proto.PAY_COUNTER]) == (
        b[proto.PAY_WALLET],
        b[proto.PAY_COUNTER],
    )
    assert ba != bb
    assert a[proto.PAY_PREV] == b[proto.PAY_PREV]  # a fork of the hash chain, too


def second_pos(pair: Pair, n: int = 2) -> tuple[PosApp, DirectLink]:
    link = DirectLink(pair.wallet)
    pos, _flash = make_pos(pair.issuer, n, pair.clock, link)
    return pos, link


# ---- replay -------------------------------------------------------------------------------
def test_replayed_payment_envelope_is_refused(pair: Pair, audit) -> None:
    first = pair.pos.take_payment(1000)
    assert first.approved
    old = first.payment

    def replay(k: int, apdu: bytes, resp: bytes) -> bytes:
        return old + b"\x90\x00" if k == PAY else resp

    pair.link.alter_response = replay
    pair.link.tap()  # command indexes count from the tap
    r = pair.pos.take_payment(1000)
    assert declined(r, "bad_payment")
    assert len(pos_entries(pair.pos)) == 1
    # the genuine answer to that PAY was committed by the card: a clean re-tap recovers it
    pair.link.alter_response = None
    pair.link.tap()
    r = pair.pos.take_payment(1000)
    assert r.approved and r.recovered and r.counter == 2
    # the old envelope offered to another POS is not its payment either
    pos2, link2 = second_pos(pair)
    link2.alter_response = replay
    assert declined(pos2.take_payment(1000), "bad_payment")
    books = audit.books(pair, extra_pos=(pos2,))
    assert len(books.pos) == 2 and books.wallet_log_only != []  # the one pos2 never took


class ConstantRng:
    """A broken (or malicious) POS random source: the same challenge every time."""

    def random(self, n: int) -> bytes:
        return b"\x07" * n


def test_reused_challenge_gets_no_second_payment(audit) -> None:
    pair = make_pair(20)
    pair.pos.hal.rng = ConstantRng()
    assert pair.pos.take_payment(1000).approved
    # same challenge, same content: the card answers with the payment it already made
    assert declined(pair.pos.take_payment(1000), "bad_payment")
    # same challenge, other content: the card refuses outright
    pair.link.tap()
    r = pair.pos.take_payment(1500)
    assert declined(r, "card_refused") and r.sw == proto.SW_CONDITIONS
    books = audit.books(pair)
    assert books.wallet.counter == 1 and len(books.pos) == 1


def test_same_challenge_same_content_is_idempotent_on_the_card(pair: Pair) -> None:
    """What a reader retrying a PAY sees: the identical envelope, no second counter."""
    select(pair.wallet)
    req = {
        proto.REQ_CHALLENGE: b"\x01" * 16,
        proto.REQ_AMOUNT: 500,
        proto.REQ_PAYEE: pair.pos_id,
        proto.REQ_TIME: T0,
        proto.REQ_KIND: proto.PAYKIND_POS,
    }
    apdu = proto.build_command(0x80, proto.INS_PAY, 0, 0, cbor.encode(req))
    a, b = pair.wallet.process(apdu), pair.wallet.process(apdu)
    assert a == b and a.endswith(b"\x90\x00")
    req[proto.REQ_AMOUNT] = 501
    c = pair.wallet.process(proto.build_command(0x80, proto.INS_PAY, 0, 0, cbor.encode(req)))
    assert c == b"\x69\x85"
    assert select(pair.wallet)[proto.INFO_COUNTER] == 1


# ---- clones and rollback ----------------------------------------------------------------------
def clone_of(pair: Pair, image: dict[str, bytes]) -> WalletApp:
    flash = SimFlash()
    flash.restore(image)
    return WalletApp(Hal(flash=flash, rng=SeededRng(99)))


def test_cloned_wallet_two_pos_leaves_fraud_proof(pair: Pair, audit) -> None:
    clone = clone_of(pair, pair.wallet_flash.snapshot())  # same key, same counter
    pos2, link2 = second_pos(pair)
    assert pair.pos.take_payment(1000).approved
    # the same POS catches the clone with its last-counter table
    pair.link.tap(clone)
    assert declined(pair.pos.take_payment(500), "counter")
    assert len(pos_entries(pair.pos)) == 1
    # another POS, offline, cannot know: it takes the clone's payment with the same counter
    link2.tap(clone)
    r = pos2.take_payment(2000)
    assert r.approved and r.counter == 1
    a, b = pos_entries(pair.pos)[0], pos_entries(pos2)[0]
    assert_fraud_proof(a, b, audit.wallet_key(pair.wallet))
    assert payment_of(a)[1][proto.PAY_CHALLENGE] != payment_of(b)[1][proto.PAY_CHALLENGE]


def test_counter_rollback_by_restoring_flash(pair: Pair, audit) -> None:
    image = pair.wallet_flash.snapshot()
    assert pair.pos.take_payment(3000).approved
    pair.wallet_flash.restore(image)  # the attacker writes the old image back
    pair.reboot_wallet()
    assert select(pair.wallet)[proto.INFO_COUNTER] == 0
    assert declined(pair.pos.take_payment(3000), "counter")  # same POS: refused
    pos2, link2 = second_pos(pair)
    link2.tap(pair.wallet)
    assert pos2.take_payment(3000).approved  # another POS, offline: signed evidence
    assert_fraud_proof(
        pos_entries(pair.pos)[0], pos_entries(pos2)[0], audit.wallet_key(pair.wallet)
    )


# ---- certificates ---------------------------------------------------------------------------
def test_forged_certificate(pair: Pair) -> None:
    rogue = Issuer(hashlib.sha256(b"rogue issuer").digest())
    fake, _ = make_wallet(rogue, 5, balance=5000, clock=pair.clock)
    pair.link.tap(fake)
    r = pair.pos.take_payment(100)
    assert declined(r, "cert_invalid") and r.sw == proto.SW_BAD_SIGNATURE
    assert pos_entries(pair.pos) == []


def test_certificate_altered_in_transit(pair: Pair) -> None:
    def raise_limit(k: int, apdu: bytes, resp: bytes) -> bytes:
        if k != 0:
            return resp
        info = cbor.decode(resp[:-2])
        body_bytes, sig = cbor.decode(info[proto.INFO_CERT])
        body = cbor.decode(body_bytes)
        body[proto.CERT_LIMITS][proto.LIM_PAYMENT_MAX] = 10**9
        info[proto.INFO_CERT] = cbor.encode([cbor.encode(body), sig])
        return cbor.encode(info) + resp[-2:]

    pair.link.alter_response = raise_limit
    r = pair.pos.take_payment(100)
    assert declined(r, "cert_invalid") and r.sw == proto.SW_BAD_SIGNATURE


def test_expired_certificate(pair: Pair) -> None:
    flash = SimFlash()
    wallet = provision_wallet(
        pair.issuer,
        device_id("wallet", 6),
        Hal(flash=flash, rng=SeededRng(6)),
        balance=5000,
        expires=T0 + 100,
    )
    pair.link.tap(wallet)
    assert pair.pos.take_payment(100).approved
    pair.clock.advance(101)
    pair.link.tap()
    r = pair.pos.take_payment(100)
    assert declined(r, "cert_expired") and r.sw == proto.SW_EXPIRED


def test_pos_certificate_is_not_a_wallet_certificate(pair: Pair) -> None:
    pos_cert = select(pair.pos)[proto.INFO_CERT]

    def swap(k: int, apdu: bytes, resp: bytes) -> bytes:
        if k != 0:
            return resp
        info = cbor.decode(resp[:-2])
        info[proto.INFO_CERT] = pos_cert
        return cbor.encode(info) + resp[-2:]

    pair.link.alter_response = swap
    assert declined(pair.pos.take_payment(100), "cert_invalid")


def test_revoked_wallet_via_hot_list(pair: Pair, audit) -> None:
    assert pair.pos.take_payment(100).approved
    hot = pair.issuer.hotlist(2, T0 + 5, [device_id("wallet", 9), pair.wallet_id])
    upd = pair.issuer.update(pair.pos_id, 1, {proto.UPD_HOTLIST: hot})
    assert pair.pos.process(proto.build_command(0x80, proto.INS_APPLY, 0, 0, upd)) == b"\x90\x00"
    assert declined(pair.pos.take_payment(100), "revoked")
    assert len(audit.books(pair).pos) == 1


# ---- tampering in transit ---------------------------------------------------------------------
def _alter_pay_amount(delta: int):
    def alter(k: int, apdu: bytes) -> bytes:
        if k != PAY:
            return apdu
        _c, _i, _p1, _p2, data, _le = proto.parse_command(apdu)
        req = cbor.decode(data)
        req[proto.REQ_AMOUNT] += delta
        return proto.build_command(0x80, proto.INS_PAY, 0, 0, cbor.encode(req))

    return alter


def test_amount_changed_in_transit(pair: Pair, audit) -> None:
    pair.link.alter_command = _alter_pay_amount(+2000)
    r = pair.pos.take_payment(1000)
    assert declined(r, "bad_payment")
    assert pos_entries(pair.pos) == []
    # honest re-tap: the card committed 3000 under that challenge, not the 1000 asked for
    pair.link.alter_command = None
    pair.link.tap()
    r = pair.pos.take_payment(1000)
    assert r.status == "declined" and r.sw == proto.SW_CONDITIONS
    r = pair.pos.take_payment(1000)
    assert r.approved and r.counter == 2
    books = audit.books(pair)
    # the altered payment names this POS and is signed: the ledger credits it from the
    # wallet's log; nothing is lost or counted twice
    assert [p.amount for p in books.wallet_log_only] == [3000]
    assert [e.payment.amount for e in books.pos] == [1000]


def test_payment_altered_on_the_way_back(pair: Pair, audit) -> None:
    def alter(k: int, apdu: bytes, resp: bytes) -> bytes:
        if k != PAY:
            return resp
        body_bytes, sig = cbor.decode(resp[:-2])
        body = cbor.decode(body_bytes)
        body[proto.PAY_BALANCE] += 1
        return cbor.encode([cbor.encode(body), sig]) + resp[-2:]

    pair.link.alter_response = alter
    r = pair.pos.take_payment(1000)
    assert declined(r, "bad_payment") and r.sw == proto.SW_BAD_SIGNATURE
    pair.link.alter_response = None
    pair.link.tap()
    assert pair.pos.take_payment(1000).recovered
    assert audit.books(pair).wallet_log_only == []


def test_card_signing_with_another_key(pair: Pair) -> None:
    other, _ = make_wallet(pair.issuer, 7, balance=5000, clock=pair.clock)
    other_link = DirectLink(other)
    # INFO from the genuine wallet, the payment from another card: a spliced answer
    select(other)

    def splice(k: int, apdu: bytes, resp: bytes) -> bytes:
        return other_link.transceive(apdu) if k == PAY else resp

    select(pair.wallet)
    pair.link.alter_response = splice
    assert declined(pair.pos.take_payment(100), "bad_payment")


# ---- PIN ----------------------------------------------------------------------------------
def test_wrong_pins_until_blocked(pair: Pair, audit) -> None:
    tries = []
    for _ in range(3):
        pair.link.tap()
        r = pair.pos.take_payment(7000, pin="0000")
        assert declined(r, "pin_wrong")
        tries.append(r.tries_left)
    assert tries == [2, 1, 0]
    assert select(pair.wallet)[proto.INFO_FLAGS] & proto.FLAG_PIN_BLOCKED
    pair.link.tap()
    assert declined(pair.pos.take_payment(7000, pin="1234"), "pin_blocked")
    assert pair.pos.take_payment(100).approved  # below the no-CVM limit: still pays
    assert [e.payment.amount for e in audit.books(pair).pos] == [100]


def test_pin_required_above_no_cvm(pair: Pair) -> None:
    assert declined(pair.pos.take_payment(5001), "pin_required")  # no keypad input
    assert pair.pos.take_payment(5000).approved  # at the limit: no PIN


# ---- limits ------------------------------------------------------------------------------
def test_card_limits(audit) -> None:
    pair = make_pair(
        21,
        balance=9000,
        limits={
            proto.LIM_PAYMENT_MAX: 3000,
            proto.LIM_OFFLINE_COUNT: 3,
            proto.LIM_OFFLINE_AMOUNT: 5000,
        },
    )
    assert declined(pair.pos.take_payment(3001), "over_payment_max")
    assert pair.pos.take_payment(3000).approved
    r = pair.pos.take_payment(2500)  # 5500 offline > 5000: the card refuses
    assert declined(r, "offline_amount") and r.sw == proto.SW_OFFLINE_AMOUNT
    assert pair.pos.take_payment(1000).approved
    assert pair.pos.take_payment(1000).approved
    assert declined(pair.pos.take_payment(100), "offline_count")  # 3 offline payments made
    books = audit.books(pair)
    assert [e.payment.amount for e in books.pos] == [3000, 1000, 1000]


def test_insufficient_funds(audit) -> None:
    pair = make_pair(22, balance=500)
    r = pair.pos.take_payment(501)
    assert declined(r, "funds") and r.sw == proto.SW_FUNDS
    assert audit.books(pair).wallet.counter == 0


def test_pos_floor_and_velocity_limits(audit) -> None:
    cfg = {proto.CFG_FLOOR: 3000, proto.CFG_VELOCITY_COUNT: 3, proto.CFG_VELOCITY_AMOUNT: 5000}
    pair = make_pair(23, config=cfg)
    assert declined(pair.pos.take_payment(3001), "floor_limit")
    assert pair.pos.take_payment(3000).approved
    assert declined(pair.pos.take_payment(2001), "velocity")  # 5001 today
    assert pair.pos.take_payment(1000).approved
    assert pair.pos.take_payment(1000).approved
    assert declined(pair.pos.take_payment(1), "velocity")  # a 4th payment today
    pair.clock.advance(86_400)
    assert pair.pos.take_payment(3000).approved
    # velocity is per wallet: another card is not affected
    other, _ = make_wallet(pair.issuer, 2, seed=23, balance=5000, clock=pair.clock)
    pair.link.tap(other)
    assert pair.pos.take_payment(3000).approved


def test_stale_hot_list(audit) -> None:
    pair = make_pair(24, config={proto.CFG_HOT_MAX_PAYMENTS: 2})
    assert pair.pos.take_payment(100).approved
    assert pair.pos.take_payment(100).approved
    assert declined(pair.pos.take_payment(100), "hotlist_stale")  # 2 payments on it
    issuer = pair.issuer
    upd = issuer.update(pair.pos_id, 1, {proto.UPD_HOTLIST: issuer.hotlist(2, T0, [])})
    assert pair.pos.process(proto.build_command(0x80, proto.INS_APPLY, 0, 0, upd)) == b"\x90\x00"
    assert pair.pos.take_payment(100).approved
    pair.clock.advance(604_801)  # older than a week by the POS clock
    assert declined(pair.pos.take_payment(100), "hotlist_stale")
    assert select(pair.pos)[proto.INFO_FLAGS] & proto.FLAG_HOT_STALE
    fresh = issuer.hotlist(3, pair.clock.now(), [])
    upd = issuer.update(pair.pos_id, 2, {proto.UPD_HOTLIST: fresh})
    assert pair.pos.process(proto.build_command(0x80, proto.INS_APPLY, 0, 0, upd)) == b"\x90\x00"
    assert pair.pos.take_payment(100).approved
    assert len(audit.books(pair).pos) == 4


# ---- torn log bounds --------------------------------------------------------------------------
def test_torn_log_is_bounded_and_ages_out() -> None:
    """Torn payments beyond the log's size or lifetime are not recovered at the POS; they stay
    signed in the wallet's log, where the ledger credits them once."""
    pair = make_pair(25, config={proto.CFG_TORN_MAX: 2, proto.CFG_TORN_LIFE_S: 600})
    wallets = [pair.wallet] + [
        make_wallet(pair.issuer, n, seed=25, balance=5000, clock=pair.clock)[0] for n in (2, 3, 4)
    ]
    for w in wallets[:3]:
        pair.link.tap(w)
        pair.link.tear_at("response", PAY, 0)
        assert pair.pos.take_payment(1000).status == "torn"
    assert select(pair.pos)[proto.INFO_TORN] == 2  # the first entry was evicted
    outcomes = []
    for w in reversed(wallets[:3]):  # (a fresh torn entry would evict an older one)
        pair.link.tap(w)
        r = pair.pos.take_payment(1000)
        assert r.approved
        outcomes.append((r.recovered, r.counter))
    assert outcomes == [(True, 1), (True, 1), (False, 2)]

    pair.link.tap(wallets[3])
    pair.link.tear_at("response", PAY, 0)
    assert pair.pos.take_payment(1000).status == "torn"
    pair.clock.advance(601)
    pair.link.tap(wallets[3])
    r = pair.pos.take_payment(1000)
    assert r.approved and not r.recovered and r.counter == 2
    journaled = {
        (payment_of(rec)[1][proto.PAY_WALLET], payment_of(rec)[1][proto.PAY_COUNTER])
        for rec in pos_entries(pair.pos)
    }
    log_only = []
    for w in wallets:
        records, _status = export_all(w)
        for _seq, rec in records:
            if rec[proto.REC_TYPE] == proto.RT_PAYMENT:
                body = payment_of(rec)[1]
                key = (body[proto.PAY_WALLET], body[proto.PAY_COUNTER])
                if key not in journaled:
                    log_only.append(key)
    assert sorted(log_only) == sorted([(device_id("wallet", 1), 1), (device_id("wallet", 4), 1)])
    assert len(journaled) == 4

"""The wallet (card) app, driven with real APDUs on real storage (SimFlash) and real crypto."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs
from wallet_helpers import (
    ISSUER,
    NOW,
    PIN,
    POS_ID,
    PUK,
    Card,
    Screen,
    SetClock,
    apdu,
    open_payment,
    receipt_for,
)

from tapcash.firmware.core import cbor, proto
from tapcash.firmware.core.hal import Flash, PowerCut
from tapcash.firmware.wallet import state as st
from tapcash.host.issuer import Issuer
from tapcash.sim.device.flash import SimFlash

P = proto
CHAL = bytes(range(16))


def funded(amount: int = 20000, **kw) -> Card:
    card = Card(**kw)
    assert card.load(1, amount)[1] == P.SW_OK
    return card


def assert_refused(card: Card, sw_expected: int, cla: int, ins: int, p1=0, p2=0, data=b""):
    before = card.snapshot()
    out, sw = card.send(cla, ins, p1, p2, data)
    assert sw == sw_expected, f"{sw:04x} != {sw_expected:04x}"
    assert out == b""
    assert card.snapshot() == before
    card.boot()  # and what the flash holds after a reboot is the same
    assert card.snapshot() == before
    card.select()


# ---- personalisation ---------------------------------------------------------------------


def test_blank_card_info_and_personalisation():
    card = Card(personalise=False)
    info = card.select()
    assert info == {P.INFO_VERSION: P.VERSION, P.INFO_FLAGS: P.FLAG_BLANK}
    for ins in (P.INS_PAY, P.INS_LOAD, P.INS_GET_LAST, P.INS_EXPORT, P.INS_APPLY):
        assert card.send(0x80, ins, data=b"\xa0")[1] == P.SW_CONDITIONS
    assert card.send(0x80, P.INS_PERSO_FINISH, data=b"\xa0")[1] == P.SW_CONDITIONS  # no key yet

    pk = card.ok(0x80, P.INS_PERSO_KEYGEN)
    assert len(pk) == 32
    assert card.ok(0x80, P.INS_PERSO_KEYGEN) == pk  # a lost response can be retried
    seed = card.state()[st.S_SEED]
    assert card.state()[st.S_PUB] == pk and len(seed) == 32

    wid = b"WALLET77"
    good = ISSUER.certify_wallet(wid, pk, expires=NOW + 1000, limits={P.LIM_NO_CVM: 777})
    other_key = ISSUER.certify_wallet(wid, bytes(32), expires=NOW + 1000)
    expired = ISSUER.certify_wallet(wid, pk, expires=NOW - 1)
    stranger = Issuer(b"\x07" * 32).certify_wallet(wid, pk, expires=NOW + 1000)
    pos_cert = ISSUER.certify_pos(wid, pk, b"MERCHANT", expires=NOW + 1000)
    refusals = [
        (Card.perso_data(other_key), P.SW_DATA_INVALID),
        (Card.perso_data(expired), P.SW_EXPIRED),
        (Card.perso_data(stranger), P.SW_BAD_SIGNATURE),
        (Card.perso_data(pos_cert), P.SW_DATA_INVALID),
        (Card.perso_data(good, pin=b"12a4"), P.SW_WRONG_DATA),
        (Card.perso_data(good, pin=b"123"), P.SW_WRONG_DATA),
        (Card.perso_data(good, puk=b"1234567"), P.SW_WRONG_DATA),
        (Card.perso_data(good, keys=[]), P.SW_WRONG_DATA),
        (Card.perso_data(good, keys=[b"x" * 31]), P.SW_WRONG_DATA),
        (b"\xff", P.SW_WRONG_DATA),
    ]
    for data, sw in refusals:
        assert_refused(card, sw, 0x80, P.INS_PERSO_FINISH, data=data)

    card.ok(0x80, P.INS_PERSO_FINISH, data=Card.perso_data(good))
    info = card.info()
    assert info[P.INFO_ID] == wid and info[P.INFO_CERT] == good
    assert info[P.INFO_COUNTER] == 0 and P.INFO_LAST_CHALLENGE not in info
    assert card.state()[st.S_LIMITS][P.LIM_NO_CVM] == 777  # limits come from the certificate
    assert card.state()[st.S_LIMITS][P.LIM_PAYMENT_MAX] == 50000  # the rest are defaults
    # personalised: no second personalisation, no new key
    assert_refused(card, P.SW_CONDITIONS, 0x80, P.INS_PERSO_KEYGEN)
    assert_refused(card, P.SW_CONDITIONS, 0x80, P.INS_PERSO_FINISH, data=Card.perso_data(good))
    # the private seed never appears in a response
    env = card.pay(100)[0]  # refused (no funds), still a response
    assert seed not in env and seed not in card.ok(0x80, P.INS_GET_INFO)


# ---- dispatcher and session --------------------------------------------------------------


def test_dispatcher_status_words():
    card = Card()
    assert card.app.process(b"\x80\x50") == b"\x67\x00"
    assert card.app.process(b"\x80\x50\x00\x00\x05\x01") == b"\x67\x00"  # Lc says 5, 1 byte
    assert card.send(0x90, P.INS_GET_INFO)[1] == P.SW_CLA
    assert card.send(0x80, 0x99)[1] == P.SW_INS
    assert card.send(0x00, P.INS_PAY)[1] == P.SW_INS  # right INS, wrong class
    assert card.send(0x80, P.INS_GET_INFO, 1, 0)[1] == P.SW_WRONG_P1P2
    assert card.send(0x00, P.INS_VERIFY_PIN, 0, 0, PIN)[1] == P.SW_WRONG_P1P2
    assert card.send(0x80, P.INS_GET_INFO, data=b"x")[1] == P.SW_WRONG_LENGTH
    # a new session needs a SELECT; another AID deselects
    card.boot()
    assert card.send(0x80, P.INS_GET_INFO)[1] == P.SW_CONDITIONS
    card.select()
    assert card.send(0x00, P.INS_SELECT, 4, 0, b"\xa0\x00\x00\x00\x03")[1] == P.SW_NOT_FOUND
    assert card.send(0x80, P.INS_GET_INFO)[1] == P.SW_CONDITIONS
    card.select()
    card.app.power_on()  # field off and on
    assert card.send(0x80, P.INS_GET_INFO)[1] == P.SW_CONDITIONS


def test_info_fields_and_balance_visibility():
    card = funded(5000)
    info = card.select()
    assert P.INFO_BALANCE not in info  # PIN not verified, not a visual card
    assert info[P.INFO_OFFLINE_LEFT] == 10 and info[P.INFO_FLAGS] == 0
    env = card.ok(0x80, P.INS_PAY, data=card.pay_request(100, challenge=CHAL))
    info = card.info()
    assert info[P.INFO_COUNTER] == 1 and info[P.INFO_LAST_CHALLENGE] == CHAL
    assert info[P.INFO_OFFLINE_LEFT] == 9
    assert card.verify_pin() == P.SW_OK
    assert card.info()[P.INFO_BALANCE] == 4900
    assert len(card.ok(0x80, P.INS_GET_INFO)) <= 255  # fits a short APDU response
    assert len(env) <= 255
    visual = Card(display=Screen(), config={"visual": True})
    assert visual.info()[P.INFO_BALANCE] == 0
    # a screen alone does not make a visual card: the capability is configured (main.py takes it
    # from the board profile's "capabilities"), never guessed from the display
    assert P.INFO_BALANCE not in Card(display=Screen()).info()


# ---- PIN -----------------------------------------------------------------------------------


def test_pin_try_counter_blocks_and_puk_unblocks():
    card = funded()
    assert card.send(0x00, P.INS_VERIFY_PIN, 0, 0x80)[1] == 0x63C3  # query, no try used
    assert card.verify_pin(b"0000") == 0x63C2
    assert card.verify_pin(PIN) == P.SW_OK  # a right PIN resets the counter
    assert card.state()[st.S_PIN_TRIES] == 3
    assert card.send(0x00, P.INS_VERIFY_PIN, 0, 0x80)[1] == P.SW_OK
    card.boot()
    card.select()
    assert [card.verify_pin(b"9999") for _ in range(4)] == [0x63C2, 0x63C1, 0x63C0, 0x6983]
    assert card.verify_pin(PIN) == P.SW_PIN_BLOCKED  # blocked: even the right PIN
    assert card.info()[P.INFO_FLAGS] & P.FLAG_PIN_BLOCKED
    assert_refused(card, P.SW_PIN_BLOCKED, 0x80, P.INS_PAY, data=card.pay_request(6000, pin=PIN))
    assert card.pay(100)[1] == P.SW_OK  # below the no-CVM limit: no PIN needed
    assert card.verify_pin(b"12345") == P.SW_PIN_BLOCKED

    assert_refused(card, P.SW_WRONG_DATA, 0x00, P.INS_RESET_RETRY, 0, 0x80, cbor.encode([PUK]))
    wrong = cbor.encode([b"87654321", b"5678"])
    assert card.send(0x00, P.INS_RESET_RETRY, 0, 0x80, wrong)[1] == 0x63C9
    card.ok(0x00, P.INS_RESET_RETRY, 0, 0x80, cbor.encode([PUK, b"5678"]))
    assert card.state()[st.S_PUK_TRIES] == 10
    assert card.info()[P.INFO_FLAGS] == 0
    assert card.verify_pin(PIN) == 0x63C2  # the old PIN is gone
    assert card.verify_pin(b"5678") == P.SW_OK
    assert card.pay(6000)[1] == P.SW_OK  # verified in this session: PIN-level payment

    # the PUK has its own 10 tries
    for left in range(9, -1, -1):
        assert card.send(0x00, P.INS_RESET_RETRY, 0, 0x80, wrong)[1] == 0x63C0 | left
    blocked = cbor.encode([PUK, b"1111"])
    assert_refused(card, P.SW_PIN_BLOCKED, 0x00, P.INS_RESET_RETRY, 0, 0x80, blocked)


def test_pin_decrement_is_committed_before_the_comparison():
    # cut the power during the first write of a VERIFY with the right PIN: the try is spent
    card = Card()
    card.flash.cut_after(1, keep=10**9)
    with pytest.raises(PowerCut):
        card.verify_pin(PIN)
    card.boot()
    assert card.state()[st.S_PIN_TRIES] == 2
    card.select()
    assert card.verify_pin(PIN) == P.SW_OK and card.state()[st.S_PIN_TRIES] == 3


def test_issuer_unblocks_pin_with_apply():
    card = funded()
    for _ in range(3):
        card.verify_pin(b"0000")
    for _ in range(10):
        card.send(0x00, P.INS_RESET_RETRY, 0, 0x80, cbor.encode([b"00000000", b"1111"]))
    assert card.state()[st.S_PIN_TRIES] == 0 and card.state()[st.S_PUK_TRIES] == 0
    assert card.apply(1, {P.UPD_UNBLOCK_PIN: True}) == P.SW_OK
    assert card.state()[st.S_PIN_TRIES] == 3 and card.state()[st.S_PUK_TRIES] == 10
    assert card.verify_pin(PIN) == P.SW_OK
    # a new PIN from the issuer
    assert card.apply(2, {P.UPD_NEW_PIN: b"24680"}) == P.SW_OK
    assert card.verify_pin(PIN) == 0x63C2
    assert card.verify_pin(b"24680") == P.SW_OK


# ---- PAY -------------------------------------------------------------------------------------


def test_pay_signs_commits_and_journals():
    card = funded(20000)
    env = card.ok(0x80, P.INS_PAY, data=card.pay_request(1250, challenge=CHAL))
    body_bytes, body = open_payment(env, card.public_key)
    assert body == {
        P.PAY_WALLET: card.id,
        P.PAY_COUNTER: 1,
        P.PAY_AMOUNT: 1250,
        P.PAY_PAYEE: POS_ID,
        P.PAY_CHALLENGE: CHAL,
        P.PAY_PREV: bytes(32),
        P.PAY_PURSE: 0,
        P.PAY_TIME: NOW,
        P.PAY_BALANCE: 18750,
        P.PAY_KIND: P.PAYKIND_POS,
    }
    s = card.state()
    assert s[st.S_COUNTER] == 1 and s[st.S_BALANCE] == 18750 and s[st.S_SPENT] == 1250
    assert s[st.S_PREV] == hashlib.sha256(body_bytes).digest()
    assert s[st.S_LAST_BODY] == body_bytes and s[st.S_LAST_CHAL] == CHAL
    seq, rec = card.journal()[-1]
    assert rec == {P.REC_TYPE: P.RT_PAYMENT, P.REC_SIGNED: env}
    assert card.ok(0x80, P.INS_GET_LAST) == env


def test_pay_flash_writes():
    """One state write and one journal append per PAY (no PIN)."""
    card = funded()
    card.flash.reset_stats()
    before = card.flash.write_count
    env = card.ok(0x80, P.INS_PAY, data=card.pay_request(100))
    assert card.flash.write_count - before == 2
    stats = card.flash.stats
    assert sum(s.writes for s in stats.values()) == 1
    assert sum(s.writes for n, s in stats.items() if n.startswith("wallet.")) == 1
    assert sum(s.appends for s in stats.values()) == 1
    state_len = len(card.state_bytes())
    record_len = len(card.app.payment_record(env))
    assert card.flash.bytes_written == state_len + 48 + record_len + 14


def test_hash_chain_over_payments():
    card = funded()
    prev = bytes(32)
    for n in range(1, 6):
        env = card.ok(0x80, P.INS_PAY, data=card.pay_request(100 * n))
        body_bytes, body = open_payment(env, card.public_key)
        assert body[P.PAY_COUNTER] == n and body[P.PAY_PREV] == prev
        prev = hashlib.sha256(body_bytes).digest()
    assert card.state()[st.S_PREV] == prev
    payments = [r for _s, r in card.journal() if r[P.REC_TYPE] == P.RT_PAYMENT]
    assert len(payments) == 5


def test_pay_refusals_leave_state_unchanged():
    card = funded(60000, limits={P.LIM_OFFLINE_AMOUNT: 52000, P.LIM_OFFLINE_COUNT: 3})
    pay = card.pay_request
    ins = P.INS_PAY
    cases = [
        (P.SW_WRONG_DATA, b"\xff"),
        (P.SW_WRONG_DATA, cbor.encode([1, 2])),
        (P.SW_WRONG_DATA, pay(100, challenge=b"short")),
        (P.SW_WRONG_DATA, pay(100, payee=b"1234567")),
        (P.SW_WRONG_DATA, pay(100, kind=3)),
        (P.SW_PURSE, pay(100, purse=1)),  # no earmarked purse 1 on this card
        (P.SW_WRONG_DATA, pay(100, purse=P.MAX_PURSES + 1)),
        (P.SW_WRONG_DATA, pay(0)),
        (P.SW_WRONG_DATA, pay(-5)),
        (P.SW_WRONG_DATA, cbor.encode({P.REQ_CHALLENGE: CHAL, P.REQ_AMOUNT: 5})),
        (P.SW_OVER_PAYMENT_MAX, pay(50001)),
        (P.SW_SECURITY, pay(5001)),
        (P.SW_WRONG_DATA, pay(5001, pin=b"12")),
    ]
    for sw, data in cases:
        assert_refused(card, sw, 0x80, ins, data=data)
    # offline amount: 52000 before a sync
    card.ok(0x80, ins, data=pay(50000, pin=PIN))
    assert_refused(card, P.SW_OFFLINE_AMOUNT, 0x80, ins, data=pay(2001))
    # the same challenge with other content
    card.ok(0x80, ins, data=pay(100, challenge=CHAL))
    for other in (
        pay(101, challenge=CHAL),
        pay(100, challenge=CHAL, payee=b"OTHERPOS"),
        pay(100, challenge=CHAL, kind=2),
    ):
        assert_refused(card, P.SW_CONDITIONS, 0x80, ins, data=other)
    # offline count: 3 before a sync
    card.ok(0x80, ins, data=pay(100))
    assert_refused(card, P.SW_OFFLINE_COUNT, 0x80, ins, data=pay(100))
    # funds
    card2 = funded(300)
    assert_refused(card2, P.SW_FUNDS, 0x80, ins, data=card2.pay_request(301))
    # not selected
    card2.boot()
    assert_refused(card2, P.SW_CONDITIONS, 0x80, ins, data=card2.pay_request(1))


def test_pay_wrong_pin_in_request_spends_a_try_and_nothing_else():
    card = funded()
    before = card.state()
    assert card.pay(6000, pin=b"0000")[1] == 0x63C2
    after = card.state()
    assert after[st.S_PIN_TRIES] == 2
    after[st.S_PIN_TRIES] = 3
    assert after == before
    assert card.pay(6000)[1] == P.SW_SECURITY


def test_a_right_pin_in_a_pay_refused_for_another_reason_is_a_verify_pin():
    # PROTOCOL.md 2 rev 1.1 §5.1 (issue #14: "the try counter is restored" was undefined):
    # a PIN in PAY is VERIFY PIN with it. Right: the counter is reset and the session is
    # verified, even when the PAY is then refused (funds here); nothing else changes.
    card = funded(20000)
    assert card.verify_pin(b"0000") == 0x63C2
    before = card.state()
    assert card.pay(25000, pin=PIN)[1] == P.SW_FUNDS
    after = card.state()
    assert after[st.S_PIN_TRIES] == 3
    after[st.S_PIN_TRIES] = 2
    assert after == before  # no payment, no counter, no balance moved
    assert card.send(0x00, P.INS_VERIFY_PIN, 0, 0x80)[1] == P.SW_OK  # verified session
    assert card.pay(6000)[1] == P.SW_OK  # above no-CVM, no PIN needed any more
    # a wrong PIN (in PAY or VERIFY) ends the verified session
    assert card.pay(6000, pin=b"9999")[1] == 0x63C2
    assert card.pay(6000)[1] == P.SW_SECURITY


def test_a_pin_in_pay_below_the_no_cvm_limit_is_checked_too():
    # was silently ignored: a wrong PIN sent with a small payment passed unnoticed
    card = funded()
    before = card.state()
    assert card.pay(100, pin=b"0000")[1] == 0x63C2  # refused, a try spent
    assert card.state()[st.S_COUNTER] == before[st.S_COUNTER]
    assert card.pay(100, pin=PIN)[1] == P.SW_OK  # right: pays, counter reset
    assert card.state()[st.S_PIN_TRIES] == 3
    assert card.pay(100)[1] == P.SW_OK  # and none needed below no-CVM


def test_the_guess_that_uses_the_last_try_is_63c0_then_6983():
    card = funded()
    assert [card.pay(6000, pin=b"9999")[1] for _ in range(4)] == [0x63C2, 0x63C1, 0x63C0, 0x6983]
    assert card.pay(100, pin=PIN)[1] == P.SW_PIN_BLOCKED  # blocked: a PIN is never tried
    assert card.pay(100)[1] == P.SW_OK  # below no-CVM without a PIN: still pays


def test_journal_full_refuses_pay():
    card = funded(config={"journal_records": 3})
    card.ok(0x80, P.INS_PAY, data=card.pay_request(10))
    card.ok(0x80, P.INS_PAY, data=card.pay_request(10))
    assert_refused(card, P.SW_FULL, 0x80, P.INS_PAY, data=card.pay_request(10))
    assert_refused(card, P.SW_FULL, 0x80, P.INS_LOAD, data=ISSUER.voucher(card.id, 2, 5))
    seq = card.export()[P.EXP_RECORDS][-1][0]
    card.ok(0x80, P.INS_ACK, data=card.ack(seq))
    card.ok(0x80, P.INS_PAY, data=card.pay_request(10))


# ---- idempotent retry and tears ---------------------------------------------------------------


def test_idempotent_retry_returns_identical_envelope():
    card = funded()
    req = card.pay_request(700, challenge=CHAL, time=NOW)
    env = card.ok(0x80, P.INS_PAY, data=req)
    snap = card.snapshot()
    # same challenge, amount, payee, kind (another time is fine): the same bytes again
    assert card.ok(0x80, P.INS_PAY, data=req) == env
    assert card.ok(0x80, P.INS_PAY, data=card.pay_request(700, challenge=CHAL, time=5)) == env
    assert card.snapshot() == snap
    card.boot()
    card.select()
    assert card.ok(0x80, P.INS_PAY, data=req) == env
    assert card.snapshot() == snap


@pytest.mark.parametrize("keep", [0, 1, 60, 10**9])
def test_power_cut_during_pay(keep):
    """Cut at the state write or at the journal append, any number of bytes kept."""
    for nth in (1, 2):
        card = funded()
        snap = card.snapshot()
        req = card.pay_request(500, challenge=CHAL)
        card.flash.cut_after(nth, keep=keep)
        with pytest.raises(PowerCut):
            card.send(0x80, P.INS_PAY, data=req)
        card.boot()
        info = card.select()
        committed = info[P.INFO_COUNTER] == 1
        if not committed:  # the card never committed it: nothing changed at all
            assert nth == 1 and card.snapshot() == snap
            continue
        assert info[P.INFO_LAST_CHALLENGE] == CHAL  # a POS sees it and re-sends the same PAY
        env = card.ok(0x80, P.INS_PAY, data=req)
        open_payment(env, card.public_key)
        recs = [r for _s, r in card.journal() if r[P.REC_TYPE] == P.RT_PAYMENT]
        assert recs == [{P.REC_TYPE: P.RT_PAYMENT, P.REC_SIGNED: env}]  # rebuilt once
        assert card.state()[st.S_COUNTER] == 1


def _cut_everywhere(make_card, command, check):
    """Run `command` with a power cut at each of its writes in turn (every keep choice the
    seeded SimFlash makes), reboot, and `check(card, committed)`."""
    nth = 1
    while True:
        card = make_card()
        card.flash.cut_after(nth)
        try:
            command(card)
        except PowerCut:
            card.boot()
            card.select()
            check(card)
            nth += 1
            continue
        card.flash.cancel_cut()
        check(card)
        return nth


def test_power_cut_everywhere_load_receive_verify():
    def journal_matches_state(card):
        s = card.state()
        assert card.app.journal.last_seq == s.get(st.S_OUT_SEQ, 0) or st.S_OUT_SEQ not in s
        loads = [r for _s, r in card.journal() if r[P.REC_TYPE] == P.RT_LOAD]
        assert len(loads) == s[st.S_LOADS]
        rx = [r for _s, r in card.journal() if r[P.REC_TYPE] == P.RT_TRANSFER_IN]
        assert (
            sum(cbor.decode(cbor.decode(r[P.REC_SIGNED])[0])[P.PAY_AMOUNT] for r in rx)
            == (s[st.S_STAGED_IN])
        )

    assert (
        _cut_everywhere(lambda: funded(1000), lambda c: c.load(2, 500), journal_matches_state) >= 2
    )

    payer = funded(9000, wallet_id=b"PAYER001", seed=9)

    def receive(card):
        chal = card.ok(0x00, P.INS_CHALLENGE)
        env = payer.ok(
            0x80,
            P.INS_PAY,
            data=payer.pay_request(300, challenge=chal, payee=card.id, kind=P.PAYKIND_TRANSFER),
        )
        card.ok(0x80, P.INS_RECEIVE, data=cbor.encode([env, payer.cert]))

    assert _cut_everywhere(lambda: Card(seed=3), receive, journal_matches_state) >= 3

    def tries_sane(card):
        assert card.state()[st.S_PIN_TRIES] in (2, 3)

    assert _cut_everywhere(Card, lambda c: c.verify_pin(PIN), tries_sane) == 3


def _paid_card():
    card = funded(5000, seed=11)
    card.ok(0x80, P.INS_PAY, data=card.pay_request(100, challenge=CHAL))
    return card


def test_power_cut_everywhere_receipt_and_ack():
    def receipt(card):
        card.ok(0x80, P.INS_RECEIPT, data=receipt_for(card.ok(0x80, P.INS_GET_LAST)))

    def receipt_once(card):
        env = card.ok(0x80, P.INS_GET_LAST)
        receipt(card)  # again after the reboot (or a second time): stored once
        recs = [r for _s, r in card.journal() if r[P.REC_TYPE] == P.RT_RECEIPT]
        assert recs == [{P.REC_TYPE: P.RT_RECEIPT, P.REC_RECEIPT: receipt_for(env)}]

    assert _cut_everywhere(_paid_card, receipt, receipt_once) == 2

    def ack(card):
        card.ok(0x80, P.INS_ACK, data=card.ack(1))

    def pruned_or_not(card):
        seqs = [s for s, _r in card.journal()]
        assert seqs in ([1, 2], [2])
        assert card.state()[st.S_COUNTER] == 1

    assert _cut_everywhere(_paid_card, ack, pruned_or_not) >= 2


def test_flash_failure_is_6581_and_changes_nothing(tmp_path):
    class FailingFlash(Flash):
        """A flash whose writes fail (worn out / write-protected) once `broken` is set."""

        def __init__(self, inner):
            self.inner = inner
            self.broken = False

        def read(self, name):
            return self.inner.read(name)

        def size(self, name):
            return self.inner.size(name)

        def remove(self, name):
            self.inner.remove(name)

        def write(self, name, data):
            if self.broken:
                raise OSError(5, "EIO")
            self.inner.write(name, data)

        def append(self, name, data):
            if self.broken:
                raise OSError(5, "EIO")
            self.inner.append(name, data)

    card = funded()
    flash = FailingFlash(card.flash)
    card.app.hal.flash = flash
    card.app.power_on()
    card.select()
    flash.broken = True
    before = card.snapshot()
    assert card.pay(100)[1] == P.SW_MEMORY
    assert card.load(2, 100)[1] == P.SW_MEMORY
    assert card.verify_pin(PIN) == P.SW_MEMORY
    assert card.snapshot() == before
    flash.broken = False
    assert card.pay(100)[1] == P.SW_OK


def test_journal_append_failure_after_commit_is_recovered():
    """The state committed, the journal append failed (not a power cut): the command
    succeeded and the record is appended later."""
    card = funded()

    class AppendFails(Flash):
        def __init__(self, inner):
            self.inner = inner

        def read(self, name):
            return self.inner.read(name)

        def size(self, name):
            return self.inner.size(name)

        def write(self, name, data):
            self.inner.write(name, data)

        def append(self, name, data):
            raise OSError(28, "ENOSPC")

    card.app.hal.flash = AppendFails(card.flash)
    card.app.power_on()
    card.select()
    env = card.ok(0x80, P.INS_PAY, data=card.pay_request(100, challenge=CHAL))
    assert not any(r[P.REC_TYPE] == P.RT_PAYMENT for _s, r in card.journal())
    card.boot()  # a real flash again
    card.select()
    assert card.journal()[-1][1] == {P.REC_TYPE: P.RT_PAYMENT, P.REC_SIGNED: env}


# ---- a tap on a card that kept its RAM ---------------------------------------------------


def _fresh_view(card: Card) -> tuple:
    """(state, journal records, last seq) as a new app on the same flash reads them (a boot)."""
    from tapcash.firmware.wallet.app import WalletApp

    other = WalletApp(card.app.hal, card.config)
    return other.state, list(other.journal.records(0)), other.journal.last_seq


def _ram_view(card: Card) -> tuple:
    return card.app.state, list(card.app.journal.records(0)), card.app.journal.last_seq


def test_a_tap_reads_the_state_but_does_not_reopen_the_journal(monkeypatch):
    """power_on on the app that served the last tap (a board's loop: RAM kept) reads the
    state's two slots and nothing else: its Journal, the only writer of its blobs, knows them."""
    card = funded()
    env = card.ok(0x80, P.INS_PAY, data=card.pay_request(100))
    card.ok(0x80, P.INS_RECEIPT, data=receipt_for(env))
    reads = []
    for name in ("read", "read_at", "size"):
        f = getattr(card.flash, name)
        monkeypatch.setattr(card.flash, name, lambda b, *a, _f=f: reads.append(b) or _f(b, *a))
    journal = card.app.journal
    card.app.power_on()
    assert sorted(reads) == ["wallet.a", "wallet.b"]
    monkeypatch.undo()
    assert card.app.journal is journal
    assert _ram_view(card) == _fresh_view(card)
    assert card.app.selected is False and card.app.pin_ok is False  # still a new session
    card.select()
    assert card.pay(100)[1] == P.SW_OK
    assert _ram_view(card) == _fresh_view(card)


def test_a_tap_after_a_failed_journal_write_opens_the_journal_again():
    """An append that reported an error, whether its bytes landed or not (the command answered
    9000 and owes the record), leaves the Journal not current: the next tap opens it again and
    appends what is owed, as a boot would."""

    class AppendFails(Flash):
        def __init__(self, inner, lands):
            self.inner = inner
            self.lands = lands
            self.fail = False

        def read(self, name):
            return self.inner.read(name)

        def read_at(self, name, offset, n):
            return self.inner.read_at(name, offset, n)

        def size(self, name):
            return self.inner.size(name)

        def remove(self, name):
            self.inner.remove(name)

        def write(self, name, data):
            self.inner.write(name, data)

        def append(self, name, data):
            if self.fail:
                if self.lands:
                    self.inner.append(name, data)
                raise OSError(5, "EIO")
            self.inner.append(name, data)

    for lands in (False, True):
        card = funded()
        flash = AppendFails(card.flash, lands)
        card.app.hal.flash = flash
        card.app.power_on()
        card.select()
        flash.fail = True
        env = card.ok(0x80, P.INS_PAY, data=card.pay_request(100))
        journal = card.app.journal
        assert not journal.current()
        flash.fail = False
        card.app.power_on()
        assert card.app.journal is not journal
        assert card.app.journal.last_seq == card.app.state[st.S_OUT_SEQ]
        assert card.journal()[-1][1] == {P.REC_TYPE: P.RT_PAYMENT, P.REC_SIGNED: env}
        assert _ram_view(card) == _fresh_view(card)


def test_an_append_that_landed_but_failed_is_not_journaled_twice():
    """The PAY's record landed but the flash reported an error (PAY answered 9000, the record
    owed as far as RAM knows): the next PAY in the same session reads the journal again
    before it catches up, so the first payment's record is in the journal once."""
    card = funded()

    class LandsThenFails(Flash):
        def __init__(self, inner):
            self.inner = inner
            self.fail = False

        def read(self, name):
            return self.inner.read(name)

        def read_at(self, name, offset, n):
            return self.inner.read_at(name, offset, n)

        def size(self, name):
            return self.inner.size(name)

        def remove(self, name):
            self.inner.remove(name)

        def write(self, name, data):
            self.inner.write(name, data)

        def append(self, name, data):
            self.inner.append(name, data)
            if self.fail:
                raise OSError(5, "EIO")

    flash = LandsThenFails(card.flash)
    card.app.hal.flash = flash
    card.app.power_on()
    card.select()
    flash.fail = True
    first = card.ok(0x80, P.INS_PAY, data=card.pay_request(100))
    flash.fail = False
    second = card.ok(0x80, P.INS_PAY, data=card.pay_request(100))  # the same session
    pays = [r[P.REC_SIGNED] for _s, r in card.journal() if r[P.REC_TYPE] == P.RT_PAYMENT]
    assert pays == [first, second]
    assert _ram_view(card) == _fresh_view(card)


def test_power_cut_everywhere_then_the_same_app_tapped_reads_the_flash_again():
    """A cut at each write of a payment and its receipt, the flash powered again and the same
    app object tapped (RAM kept, which a board's cut would not): it holds what a boot reads."""
    nth = 1
    while True:
        card = funded()
        card.flash.cut_after(nth)
        try:
            env = card.ok(0x80, P.INS_PAY, data=card.pay_request(100))
            card.ok(0x80, P.INS_RECEIPT, data=receipt_for(env))
        except PowerCut:
            card.flash.power_on()
            card.app.power_on()
            assert _ram_view(card) == _fresh_view(card), nth
            nth += 1
            continue
        card.flash.cancel_cut()
        break
    assert nth >= 3  # PAY's commit and journal append, RECEIPT's append


# ---- RECEIPT --------------------------------------------------------------------------------


def test_receipt_is_journaled_when_it_matches_the_last_payment():
    card = funded()
    assert_refused(
        card, P.SW_DATA_INVALID, 0x80, P.INS_RECEIPT, data=receipt_for(_fake_payment(card))
    )  # no payment yet
    env = card.ok(0x80, P.INS_PAY, data=card.pay_request(800))
    bad = [
        receipt_for(env, {P.RCPT_COUNTER: 2}),
        receipt_for(env, {P.RCPT_AMOUNT: 801}),
        receipt_for(env, {P.RCPT_WALLET: b"ANOTHER1"}),
        receipt_for(env, {P.RCPT_POS: b"OTHERPOS"}),
        receipt_for(env, {P.RCPT_PAYMENT_HASH: bytes(32)}),
    ]
    for r in bad:
        assert_refused(card, P.SW_DATA_INVALID, 0x80, P.INS_RECEIPT, data=r)
    assert_refused(card, P.SW_WRONG_DATA, 0x80, P.INS_RECEIPT, data=b"\x82\x01\x02")
    r = receipt_for(env)
    state = card.state_bytes()
    card.ok(0x80, P.INS_RECEIPT, data=r)
    card.ok(0x80, P.INS_RECEIPT, data=r)  # sent twice, stored once
    assert card.state_bytes() == state  # a receipt changes no state
    recs = [rec for _s, rec in card.journal() if rec[P.REC_TYPE] == P.RT_RECEIPT]
    assert recs == [{P.REC_TYPE: P.RT_RECEIPT, P.REC_RECEIPT: r}]
    other = receipt_for(env, {P.RCPT_SEQ: 99})  # another receipt for the same payment
    assert_refused(card, P.SW_CONDITIONS, 0x80, P.INS_RECEIPT, data=other)


def test_receipt_only_right_after_its_payment_record():
    # The usual RECEIPT reads nothing back (the newest record is the one its payment owed);
    # once another record follows the payment, the receipt has no place: 6985.
    card = funded()
    env = card.ok(0x80, P.INS_PAY, data=card.pay_request(800))
    card.load(2, 100)  # a LOAD record after the payment's
    assert_refused(card, P.SW_CONDITIONS, 0x80, P.INS_RECEIPT, data=receipt_for(env))
    assert [r[P.REC_TYPE] for _s, r in card.journal()][-2:] == [P.RT_PAYMENT, P.RT_LOAD]


def _fake_payment(card):
    body = {
        P.PAY_WALLET: card.id,
        P.PAY_COUNTER: 1,
        P.PAY_AMOUNT: 1,
        P.PAY_PAYEE: POS_ID,
        P.PAY_KIND: 1,
    }
    return proto.seal(P.TAG_PAYMENT, body, b"\x01" * 32)


# ---- LOAD -----------------------------------------------------------------------------------


def test_load_exactly_once_and_balance_cap():
    card = Card(limits={P.LIM_BALANCE_MAX: 10000})
    out, sw = card.load(1, 4000)
    assert sw == P.SW_OK and cbor.decode(out) == {0: 4000}
    assert_refused(card, P.SW_REPLAY, 0x80, P.INS_LOAD, data=ISSUER.voucher(card.id, 1, 4000))
    assert_refused(card, P.SW_REPLAY, 0x80, P.INS_LOAD, data=ISSUER.voucher(card.id, 3, 1))
    assert_refused(
        card, P.SW_DATA_INVALID, 0x80, P.INS_LOAD, data=ISSUER.voucher(b"SOMEONE1", 2, 1)
    )
    forged = Issuer(b"\x09" * 32).voucher(card.id, 2, 1)
    assert_refused(card, P.SW_BAD_SIGNATURE, 0x80, P.INS_LOAD, data=forged)
    assert_refused(card, P.SW_WRONG_DATA, 0x80, P.INS_LOAD, data=ISSUER.voucher(card.id, 2, 0))
    assert_refused(card, P.SW_BALANCE_CAP, 0x80, P.INS_LOAD, data=ISSUER.voucher(card.id, 2, 6001))
    assert cbor.decode(card.load(2, 6000)[0]) == {0: 10000}
    loads = [r for _s, r in card.journal() if r[P.REC_TYPE] == P.RT_LOAD]
    assert [cbor.decode(cbor.decode(r[P.REC_SIGNED])[0])[P.VCH_NUMBER] for r in loads] == [1, 2]


def test_visual_card_shows_amount_balance_and_offline_uses():
    screen = Screen()
    card = Card(display=screen, config={"visual": True})
    card.load(1, 2500)
    assert screen.shown[-1] == ["Loaded 25.00", "Balance 25.00", "Offline left 10"]
    card.pay(105)
    assert screen.shown[-1] == ["Paid 1.05", "Balance 23.95", "Offline left 9"]


# ---- transfers (wallet to wallet, staged) ------------------------------------------------


def transfer(payer: Card, payee: Card, amount: int) -> bytes:
    chal = payee.ok(0x00, P.INS_CHALLENGE)
    assert len(chal) == 16
    env = payer.ok(
        0x80,
        P.INS_PAY,
        data=payer.pay_request(amount, challenge=chal, payee=payee.id, kind=P.PAYKIND_TRANSFER),
    )
    payee.ok(0x80, P.INS_RECEIVE, data=cbor.encode([env, payer.cert]))
    return env


def test_transfer_is_staged_until_released():
    payer = funded(9000, wallet_id=b"PAYER001", seed=2)
    payee = Card(wallet_id=b"PAYEE001", seed=3, limits={P.LIM_BALANCE_MAX: 5000})
    env = transfer(payer, payee, 3000)
    _b, body = open_payment(env, payer.public_key)
    assert body[P.PAY_KIND] == P.PAYKIND_TRANSFER and body[P.PAY_PAYEE] == payee.id
    assert payer.state()[st.S_BALANCE] == 6000
    s = payee.state()
    assert s[st.S_BALANCE] == 0 and s[st.S_PENDING] == 3000
    rec = payee.journal()[-1][1]
    assert rec == {P.REC_TYPE: P.RT_TRANSFER_IN, P.REC_SIGNED: env, P.REC_CERT: payer.cert}
    # pending is not spendable
    assert_refused(payee, P.SW_FUNDS, 0x80, P.INS_PAY, data=payee.pay_request(1))
    # the same transfer again: taken once (9000, nothing changes)
    snap = payee.snapshot()
    payee.ok(0x80, P.INS_RECEIVE, data=cbor.encode([env, payer.cert]))
    assert payee.snapshot() == snap
    # the balance cap counts pending value
    assert_refused(
        payee, P.SW_BALANCE_CAP, 0x80, P.INS_LOAD, data=ISSUER.voucher(payee.id, 1, 2001)
    )
    chal = payee.ok(0x00, P.INS_CHALLENGE)
    env2 = payer.ok(
        0x80,
        P.INS_PAY,
        data=payer.pay_request(2001, challenge=chal, payee=payee.id, kind=P.PAYKIND_TRANSFER),
    )
    assert_refused(
        payee, P.SW_BALANCE_CAP, 0x80, P.INS_RECEIVE, data=cbor.encode([env2, payer.cert])
    )
    # release by the ledger: voucher source 2
    out, sw = payee.load(1, 3000, source=P.VSRC_TRANSFER)
    assert sw == P.SW_OK and cbor.decode(out) == {0: 3000}
    s = payee.state()
    assert s[st.S_PENDING] == 0 and s[st.S_BALANCE] == 3000
    assert payee.pay(2500)[1] == P.SW_OK


def test_receive_refusals():
    payer = funded(9000, wallet_id=b"PAYER001", seed=2)
    payee = Card(wallet_id=b"PAYEE001", seed=3)
    third = funded(1000, wallet_id=b"THIRD001", seed=4)
    chal = payee.ok(0x00, P.INS_CHALLENGE)

    def pay(**kw):
        args = {"challenge": chal, "payee": payee.id, "kind": P.PAYKIND_TRANSFER}
        args.update(kw)
        return payer.ok(0x80, P.INS_PAY, data=payer.pay_request(100, **args))

    rx = P.INS_RECEIVE
    to_pos = pay(kind=P.PAYKIND_POS, challenge=bytes(16))
    assert_refused(payee, P.SW_DATA_INVALID, 0x80, rx, data=cbor.encode([to_pos, payer.cert]))
    to_third = pay(payee=third.id, challenge=b"\x01" * 16)
    assert_refused(payee, P.SW_DATA_INVALID, 0x80, rx, data=cbor.encode([to_third, payer.cert]))
    stale = pay(challenge=b"\x02" * 16)
    assert_refused(payee, P.SW_CONDITIONS, 0x80, rx, data=cbor.encode([stale, payer.cert]))
    good = pay()
    assert_refused(payee, P.SW_BAD_SIGNATURE, 0x80, rx, data=cbor.encode([good, third.cert]))
    forged_cert = Issuer(b"\x05" * 32).certify_wallet(payer.id, payer.public_key, expires=NOW + 9)
    assert_refused(payee, P.SW_BAD_SIGNATURE, 0x80, rx, data=cbor.encode([good, forged_cert]))
    old_cert = ISSUER.certify_wallet(payer.id, payer.public_key, expires=NOW - 9)
    assert_refused(payee, P.SW_EXPIRED, 0x80, rx, data=cbor.encode([good, old_cert]))
    assert_refused(payee, P.SW_WRONG_DATA, 0x80, rx, data=cbor.encode([good]))
    body_bytes, sig = cbor.decode(good)
    flipped = cbor.encode([body_bytes, bytes([sig[0] ^ 1]) + sig[1:]])
    assert_refused(payee, P.SW_BAD_SIGNATURE, 0x80, rx, data=cbor.encode([flipped, payer.cert]))
    # the array form of nested envelopes is accepted too
    payee.ok(0x80, rx, data=cbor.encode([cbor.decode(good), cbor.decode(payer.cert)]))
    assert payee.state()[st.S_PENDING] == 100
    # the same transfer again is idempotent; the challenge is consumed: another wallet's
    # transfer with it is refused
    assert pay(time=1) == good
    payee.ok(0x80, rx, data=cbor.encode([good, payer.cert]))
    again = third.ok(
        0x80,
        P.INS_PAY,
        data=third.pay_request(100, challenge=chal, payee=payee.id, kind=P.PAYKIND_TRANSFER),
    )
    assert_refused(payee, P.SW_CONDITIONS, 0x80, rx, data=cbor.encode([again, third.cert]))


def test_staged_spend_cap_and_release_accounting():
    payer = funded(9000, wallet_id=b"PAYER001", seed=2)
    payee = Card(wallet_id=b"PAYEE001", seed=3, limits={P.LIM_STAGED_SPEND: 1000})
    payee.load(1, 200)
    transfer(payer, payee, 3000)
    # spendable: balance 200 + min(pending, cap 1000)
    assert_refused(payee, P.SW_FUNDS, 0x80, P.INS_PAY, data=payee.pay_request(1201))
    env = payee.ok(0x80, P.INS_PAY, data=payee.pay_request(700))
    assert open_payment(env, payee.public_key)[1][P.PAY_BALANCE] == 0
    s = payee.state()
    assert (s[st.S_BALANCE], s[st.S_PENDING], s[st.S_STAGED_USED]) == (0, 2500, 500)
    payee.ok(0x80, P.INS_PAY, data=payee.pay_request(500))  # the cap is reached
    assert_refused(payee, P.SW_FUNDS, 0x80, P.INS_PAY, data=payee.pay_request(1))
    # release of the 3000: 2000 still pending, 1000 already spent -> credited once
    assert cbor.decode(payee.load(2, 3000, source=P.VSRC_TRANSFER)[0]) == {0: 2000}
    s = payee.state()
    assert (s[st.S_BALANCE], s[st.S_PENDING], s[st.S_STAGED_USED]) == (2000, 0, 0)
    # value conservation: received 200 + 3000, paid 1200
    assert s[st.S_BALANCE] + s[st.S_PENDING] == 200 + 3000 - 1200


# ---- EXPORT / ACK -------------------------------------------------------------------------------


def test_export_ack_prune():
    card = funded(9000)
    envs = [card.ok(0x80, P.INS_PAY, data=card.pay_request(100 + i)) for i in range(5)]
    card.ok(0x80, P.INS_RECEIPT, data=receipt_for(envs[-1]))
    ex = card.export()
    seqs = [s for s, _r in ex[P.EXP_RECORDS]]
    assert seqs == list(range(1, 8)) and ex[P.EXP_MORE] is False
    # records travel as the bytes journaled, exactly
    assert [(s, r) for s, r in ex[P.EXP_RECORDS]] == list(card.app.journal.records(0))
    recs = [cbor.decode(r) for _s, r in ex[P.EXP_RECORDS]]
    assert [r[P.REC_TYPE] for r in recs] == [3, 1, 1, 1, 1, 1, 4]
    assert [r[P.REC_SIGNED] for r in recs[1:6]] == envs
    status = proto.verify_envelope(P.TAG_STATUS, ex[P.EXP_STATUS], card.public_key)
    digest = bytes(32)  # the chain, recomputed here from the exported bytes
    for seq, rec in ex[P.EXP_RECORDS]:
        h = hashlib.sha256(P.TAG_JOURNAL + digest + seq.to_bytes(4, "big"))
        h.update(hashlib.sha256(rec).digest())
        digest = h.digest()
    s = card.state()
    assert status == {
        P.ST_DEVICE: card.id,
        P.ST_SEQ: 7,
        P.ST_COUNTER: 5,
        P.ST_BALANCE: s[st.S_BALANCE],
        P.ST_PREV: s[st.S_PREV],
        P.ST_PENDING: 0,
        P.ST_LOADS: 1,
        P.ST_DIGEST: digest,
    }
    page = card.export(since=2, most=2)
    assert [s for s, _r in page[P.EXP_RECORDS]] == [3, 4] and page[P.EXP_MORE] is True
    # only the last page is signed (a signature per page would cost seconds on an ESP32);
    # every page says where the journal ends, for the sync tool's progress
    assert P.EXP_STATUS not in page and page[P.EXP_LAST] == 7 and ex[P.EXP_LAST] == 7
    tail = card.export(since=4, most=10)
    assert tail[P.EXP_MORE] is False
    assert proto.verify_envelope(P.TAG_STATUS, tail[P.EXP_STATUS], card.public_key) == status
    small = Card(config={"export_bytes": 10})
    small.load(1, 5)
    small.load(2, 5)
    assert len(small.export()[P.EXP_RECORDS]) == 1  # at least one record, even if large

    ack = P.INS_ACK
    assert_refused(card, P.SW_DATA_INVALID, 0x80, ack, data=ISSUER.ack(card.id, 8, NOW, digest))
    assert_refused(card, P.SW_DATA_INVALID, 0x80, ack, data=card.ack(3, device=b"OTHER001"))
    forged = card.ack(3, issuer=Issuer(b"\x03" * 32))
    assert_refused(card, P.SW_BAD_SIGNATURE, 0x80, ack, data=forged)
    # an ack whose digest is not the card's chain there covers other records: refused
    assert_refused(card, P.SW_DATA_INVALID, 0x80, ack, data=ISSUER.ack(card.id, 7, NOW, bytes(32)))
    assert_refused(card, P.SW_DATA_INVALID, 0x80, ack, data=ISSUER.ack(card.id, 4, NOW, digest))
    no_digest = proto.seal(P.TAG_ACK, {P.ACK_DEVICE: card.id, P.ACK_UPTO: 4, P.ACK_TIME: NOW},
                           bytes(range(32)))  # the ISSUER seed
    assert_refused(card, P.SW_WRONG_DATA, 0x80, ack, data=no_digest)
    state = card.state_bytes()
    at4, at2 = card.digest(4), card.digest(2)
    card.ok(0x80, ack, data=ISSUER.ack(card.id, 4, NOW, at4))
    assert [s for s, _r in card.export()[P.EXP_RECORDS]] == [5, 6, 7]
    assert card.app.journal.floor_digest == at4
    card.ok(0x80, ack, data=ISSUER.ack(card.id, 4, NOW, at4))  # idempotent
    card.ok(0x80, ack, data=ISSUER.ack(card.id, 2, NOW, at2))  # older: no-op
    card.ok(0x80, ack, data=ISSUER.ack(card.id, 7, NOW, digest))
    assert card.export()[P.EXP_RECORDS] == []
    assert card.state_bytes() == state  # the state is untouched by export and ack
    env = card.ok(0x80, P.INS_PAY, data=card.pay_request(10))
    rec = cbor.encode({P.REC_TYPE: P.RT_PAYMENT, P.REC_SIGNED: env})
    assert card.export()[P.EXP_RECORDS] == [[8, rec]]
    # the chain goes on from the pruned floor's value, across a reboot too
    card.boot()
    assert card.app.journal.digest == P.journal_link(digest, 8, rec)


# ---- APPLY ------------------------------------------------------------------------------------


def test_apply_resets_offline_counters_and_renews_certificate():
    card = funded(30000, limits={P.LIM_OFFLINE_COUNT: 2})
    card.pay(100)
    card.pay(200)
    assert card.pay(300)[1] == P.SW_OFFLINE_COUNT
    sync = {P.UPD_SYNCED_COUNTER: 2, P.UPD_SYNCED_SPENT: 300}
    for fields, sw in [
        ({P.UPD_SYNCED_COUNTER: 2}, P.SW_WRONG_DATA),
        ({P.UPD_SYNCED_COUNTER: 3, P.UPD_SYNCED_SPENT: 300}, P.SW_DATA_INVALID),
        ({P.UPD_SYNCED_COUNTER: 2, P.UPD_SYNCED_SPENT: 299}, P.SW_DATA_INVALID),
        ({P.UPD_UNBLOCK_PIN: 1}, P.SW_WRONG_DATA),
        ({P.UPD_NEW_PIN: b"12"}, P.SW_WRONG_DATA),
    ]:
        assert_refused(card, sw, 0x80, P.INS_APPLY, data=ISSUER.update(card.id, 1, fields))
    assert_refused(
        card, P.SW_DATA_INVALID, 0x80, P.INS_APPLY, data=ISSUER.update(b"OTHER001", 1, sync)
    )
    assert_refused(
        card,
        P.SW_BAD_SIGNATURE,
        0x80,
        P.INS_APPLY,
        data=Issuer(b"\x04" * 32).update(card.id, 1, sync),
    )
    assert card.apply(1, sync) == P.SW_OK
    assert card.info()[P.INFO_OFFLINE_LEFT] == 2
    assert card.pay(300)[1] == P.SW_OK
    assert_refused(card, P.SW_REPLAY, 0x80, P.INS_APPLY, data=ISSUER.update(card.id, 1, {}))

    renewed = ISSUER.certify_wallet(
        card.id, card.public_key, expires=NOW + 999, serial=2, limits={P.LIM_OFFLINE_COUNT: 5}
    )
    wrong_key = ISSUER.certify_wallet(card.id, bytes(32), expires=NOW + 999, serial=3)
    wrong_id = ISSUER.certify_wallet(b"OTHER001", card.public_key, expires=NOW + 999, serial=3)
    stale = ISSUER.certify_wallet(card.id, card.public_key, expires=NOW + 999, serial=1)
    expired = ISSUER.certify_wallet(card.id, card.public_key, expires=NOW - 1, serial=3)
    for cert in (wrong_key, wrong_id, stale, expired):
        assert_refused(
            card,
            P.SW_DATA_INVALID,
            0x80,
            P.INS_APPLY,
            data=ISSUER.update(card.id, 2, {P.UPD_CERT: cert}),
        )
    assert card.apply(2, {P.UPD_CERT: renewed}) == P.SW_OK
    assert card.info()[P.INFO_CERT] == renewed
    assert card.state()[st.S_LIMITS][P.LIM_OFFLINE_COUNT] == 5
    assert card.info()[P.INFO_OFFLINE_LEFT] == 4


# ---- fuzz -------------------------------------------------------------------------------------

# (CLA, INS, P1, P2) of every wallet command, as routed by the app
_HEADERS = [
    (0x00, 0xA4, 4, 0),
    (0x80, 0xCA, 0, 0),
    (0x00, 0x20, 0, 0x80),
    (0x00, 0x2C, 0, 0x80),
    (0x80, 0x50, 0, 0),
    (0x80, 0x52, 0, 0),
    (0x80, 0x54, 0, 0),
    (0x00, 0x84, 0, 0),
    (0x80, 0x56, 0, 0),
    (0x80, 0x58, 0, 0),
    (0x80, 0x60, 0, 0),
    (0x80, 0x62, 0, 0),
    (0x80, 0x64, 0, 0),
    (0x80, 0xE0, 0, 0),
    (0x80, 0xE2, 0, 0),
]
_ANY_HEADER = hs.tuples(
    hs.sampled_from([0x00, 0x80, 0x84, 0xFF]),
    hs.sampled_from(sorted({h[1] for h in _HEADERS} | {0x00, 0xFF})),
    hs.sampled_from([0, 4, 0x80, 0xFF]),
    hs.sampled_from([0, 0x80, 1]),
)


def _cbor_values():
    leaf = hs.one_of(
        hs.integers(-3, 2**64 - 1),
        hs.binary(max_size=40),
        hs.booleans(),
        hs.none(),
        hs.text(max_size=5),
    )
    return hs.recursive(
        leaf,
        lambda kids: hs.one_of(
            hs.lists(kids, max_size=4), hs.dictionaries(hs.integers(0, 9), kids, max_size=6)
        ),
        max_leaves=12,
    )


def _issuer_signed():
    """Envelopes the issuer really signed, over arbitrary maps (reach the field checks)."""
    tags = [P.TAG_VOUCHER, P.TAG_UPDATE, P.TAG_ACK, P.TAG_CERT]
    fields = hs.dictionaries(hs.integers(0, 8), _cbor_values(), max_size=8)
    return hs.builds(
        lambda tag, m: proto.seal(tag, m, bytes(range(32))), hs.sampled_from(tags), fields
    )


def _data():
    return hs.one_of(
        hs.binary(max_size=300),
        _cbor_values().map(cbor.encode),
        _issuer_signed(),
        hs.lists(_issuer_signed(), min_size=1, max_size=2).map(cbor.encode),
    )


_BASE = {}


def _base_card():
    if "card" not in _BASE:
        card = funded(9000, wallet_id=b"FUZZ0001", seed=5)
        card.ok(0x80, P.INS_PAY, data=card.pay_request(100, challenge=CHAL))
        _BASE["card"] = card
        _BASE["image"] = card.flash.snapshot()
    return _BASE["card"], _BASE["image"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    header=hs.one_of(*[hs.sampled_from(_HEADERS)] * 4, _ANY_HEADER),
    data=_data(),
    raw=hs.one_of(*[hs.none()] * 9, hs.binary(max_size=12)),
    selected=hs.integers(0, 9),
)
def test_fuzz_process(header, data, raw, selected):
    """Arbitrary APDUs (mostly well-routed, arbitrary data) at a funded card that has paid:
    always a status word, never 6F00, and the state changes only when the command succeeded
    (or spent a PIN/PUK try)."""
    card, image = _base_card()
    card.flash.restore(image)
    card.boot()
    if selected:
        card.select()
    before = card.snapshot()
    msg = raw if raw is not None else apdu(*header, data)
    resp = card.app.process(msg)
    assert isinstance(resp, (bytes, bytearray)) and len(resp) >= 2  # EXPORT: built in place
    sw = resp[-2] << 8 | resp[-1]
    assert sw != P.SW_INTERNAL
    if sw == P.SW_OK or (sw & 0xFFF0) == 0x63C0:
        return  # a command that succeeded (or spent a PIN try) may change the state
    assert resp == resp[-2:]  # errors carry no data
    assert card.snapshot() == before


_JUNK = (None, True, -1, b"", "x", [1], {1: 2}, 2**64 - 1)


def _each_field_garbled(card, base, ins, make_data):
    """Each field of a valid request replaced by each wrong type: never 6F00, and the state
    is unchanged unless the command succeeded (a field it ignores)."""
    for key in list(base):
        for junk in _JUNK:
            m = dict(base)
            m[key] = junk
            before = card.snapshot()
            _out, sw = card.send(0x80, ins, data=make_data(m))
            assert sw != P.SW_INTERNAL, (key, junk)
            if sw != P.SW_OK:
                assert card.snapshot() == before, (key, junk)


def test_garbled_fields_pay():
    card = funded(5000, wallet_id=b"FIELDS01", seed=6)
    base = cbor.decode(card.pay_request(6000))
    base[P.REQ_PIN] = PIN
    base[P.REQ_PURSE] = 0
    _each_field_garbled(card, base, P.INS_PAY, cbor.encode)


def test_garbled_fields_load():
    card = funded(5000, wallet_id=b"FIELDS01", seed=6)
    base = {
        P.VCH_WALLET: card.id,
        P.VCH_NUMBER: 2,
        P.VCH_AMOUNT: 5,
        P.VCH_SOURCE: 1,
        P.VCH_REF: b"",
        P.VCH_PURSE: 0,
    }
    _each_field_garbled(
        card, base, P.INS_LOAD, lambda m: proto.seal(P.TAG_VOUCHER, m, bytes(range(32)))
    )


def test_garbled_fields_receive():
    card = Card(wallet_id=b"FIELDS01", seed=6)
    payer = funded(5000, wallet_id=b"PAYER009", seed=7)
    chal = card.ok(0x00, P.INS_CHALLENGE)
    env = payer.ok(
        0x80,
        P.INS_PAY,
        data=payer.pay_request(5, challenge=chal, payee=card.id, kind=P.PAYKIND_TRANSFER),
    )
    base = cbor.decode(cbor.decode(env)[0])
    seed = payer.state()[st.S_SEED]  # test only: sign variants as the payer would
    _each_field_garbled(
        card,
        base,
        P.INS_RECEIVE,
        lambda m: cbor.encode([proto.seal(P.TAG_PAYMENT, m, seed), payer.cert]),
    )


def test_garbled_fields_apply():
    card = funded(5000, wallet_id=b"FIELDS01", seed=6)
    base = {
        P.UPD_DEVICE: card.id,
        P.UPD_NUMBER: 1,
        P.UPD_CERT: card.cert,
        P.UPD_SYNCED_COUNTER: 0,
        P.UPD_SYNCED_SPENT: 0,
        P.UPD_UNBLOCK_PIN: True,
        P.UPD_NEW_PIN: b"1234",
    }
    _each_field_garbled(
        card, base, P.INS_APPLY, lambda m: proto.seal(P.TAG_UPDATE, m, bytes(range(32)))
    )


def test_clockless_card_skips_expiry():
    card = Card(clockless=True)
    assert card.info()[P.INFO_ID] == card.id
    card2 = Card(clock=SetClock(NOW + 10 * 365 * 86400), personalise=False)
    card2.select()
    pk = card2.ok(0x80, P.INS_PERSO_KEYGEN)
    cert = ISSUER.certify_wallet(card2.id, pk, expires=NOW)
    assert card2.send(0x80, P.INS_PERSO_FINISH, data=Card.perso_data(cert))[1] == P.SW_EXPIRED


def test_blank_flash_directory(tmp_path):
    """The wallet on a directory-backed SimFlash (firmware FileFlash underneath)."""
    card = Card(flash=SimFlash(tmp_path / "flash"))
    card.load(1, 1000)
    env = card.ok(0x80, P.INS_PAY, data=card.pay_request(10))
    card.boot()
    card.select()
    assert card.ok(0x80, P.INS_GET_LAST) == env


def test_a_board_profile_with_the_visual_capability_makes_a_visual_card() -> None:
    from tapcash.boards.profile import load_profile
    from tapcash.firmware.main import wallet_config

    visual = {"role": "wallet", "profile": load_profile("devkitc-pn532-visual-wallet")}
    plain = {"role": "wallet", "profile": load_profile("devkitc-pn532-wallet"), "config": {"x": 1}}
    assert wallet_config(visual) == {"visual": True}
    assert wallet_config(plain) == {"x": 1}
    assert wallet_config({**visual, "config": {"visual": False}}) == {"visual": False}


def test_export_built_in_place_is_the_encoding_of_its_map():
    """EXPORT writes its response into one buffer (#16): the bytes are cbor.encode of the
    response map, on a middle page and on the last page (with the status envelope)."""
    card = funded(9000)
    for i in range(6):
        card.ok(0x80, P.INS_PAY, data=card.pay_request(100 + i))
    for since, most in ((0, 64), (2, 3), (0, 1), (7, 64), (99, 64)):
        req = cbor.encode({P.EXP_SINCE: since, P.EXP_MAX: most})
        raw = card.ok(0x80, P.INS_EXPORT, data=req)
        assert bytes(raw) == cbor.encode(cbor.decode(raw))
        ex = cbor.decode(raw)
        want = [(s, r) for s, r in card.app.journal.records(since)][:most]
        assert [(s, r) for s, r in ex[P.EXP_RECORDS]] == want[: len(ex[P.EXP_RECORDS])]
        assert (P.EXP_STATUS in ex) == (ex[P.EXP_MORE] is False)

"""The ledger against a real attacker (issue #10, ledger side): a card whose flash was rolled back
or rewritten, a key extracted from a provisioned card, a colluding receiver or merchant.

Everything is real: the firmware wallet and POS on simulated flash, the ledger over HTTP on
SQLite and PostgreSQL. An attack is what an attacker can do with the card they hold: write an old
flash image back (rollback), rewrite fields of its state (balance, offline counters), or sign
with the seed read out of it. The oracles here never take the ledger's word: every proof is
checked from the signed bodies with the firmware's own Ed25519, released value is summed from
issuer-signed vouchers, and what merchants are owed is recomputed from the bodies and the rules.
"""

from __future__ import annotations

import base64
import os

import httpx
import ledger_world as lw
import pytest
from ledger_world import World

from tapcash.firmware.core import cbor, ed25519, proto
from tapcash.firmware.core.hal import Hal
from tapcash.firmware.pos import state as pst
from tapcash.firmware.wallet import state as wst
from tapcash.firmware.wallet.app import WalletApp
from tapcash.host.ledger.chain import records_digest
from tapcash.host.ledger.client import LedgerHTTPError
from tapcash.sim.device import provision as pv
from tapcash.sim.nfc.field import DirectLink

DAY_S = 86_400
N_OFF = proto.DEFAULT_LIMITS[proto.LIM_OFFLINE_COUNT]
PMAX = proto.DEFAULT_LIMITS[proto.LIM_PAYMENT_MAX]
FLOOR = proto.DEFAULT_POS_CONFIG[proto.CFG_FLOOR]


# ---- the oracle: signatures and sums, never the ledger's labels ------------------------------
def opened(env: bytes, key: bytes, tag: bytes) -> tuple[bytes, dict]:
    """(body bytes, body) of an envelope whose signature verifies under `key` (else fail)."""
    body_bytes, body, sig = proto.open_envelope(env)
    assert ed25519.verify(key, tag + body_bytes, sig), "signature does not verify"
    return body_bytes, body


def wallet_key(dev: lw.Dev) -> bytes:
    cert = pv.select(dev.app)[proto.INFO_CERT]
    return proto.open_envelope(cert)[1][proto.CERT_KEY]


def check_double_spend_proof(case: dict, key: bytes) -> None:
    """A counter_conflict / fork case proves itself: two distinct bodies signed by the wallet,
    same counter (conflict) or same prev (fork)."""
    a_bytes, a = opened(base64.b64decode(case["proof_a"]), key, proto.TAG_PAYMENT)
    b_bytes, b = opened(base64.b64decode(case["proof_b"]), key, proto.TAG_PAYMENT)
    assert a_bytes != b_bytes
    assert a[proto.PAY_WALLET] == b[proto.PAY_WALLET] == bytes.fromhex(case["wallet"])
    if case["kind"] == "counter_conflict":
        assert a[proto.PAY_COUNTER] == b[proto.PAY_COUNTER] == case["counter"]
    else:
        assert case["kind"] == "fork" and a[proto.PAY_PREV] == b[proto.PAY_PREV]


def released_vouchers(world: World, results: list) -> list[dict]:
    """Bodies of the issuer-signed release vouchers (source 2) among sync answers."""
    out = {}
    for res in results:
        for v in res.vouchers:
            _b, body = opened(v, world.issuer.public_key, proto.TAG_VOUCHER)
            if body[proto.VCH_SOURCE] == proto.VSRC_TRANSFER:
                out[body[proto.VCH_NUMBER]] = body
    return list(out.values())


def hotlist_revokes(world: World, device: bytes) -> bool:
    """The latest hot list, checked under the issuer key, names the device."""
    h = world.client.hotlist()
    _b, body = opened(h.envelope, world.issuer.public_key, proto.TAG_HOTLIST)
    return device in body[proto.HOT_REVOKED]


def updates_synced_counter(world: World, res) -> list[int]:
    """Synced counters carried by the (issuer-signed) updates of a sync answer."""
    out = []
    for u in res.updates:
        _b, body = opened(u, world.issuer.public_key, proto.TAG_UPDATE)
        if proto.UPD_SYNCED_COUNTER in body:
            out.append(body[proto.UPD_SYNCED_COUNTER])
    return out


# ---- what the attacker does to the card they hold ----------------------------------------------
def reboot(dev: lw.Dev) -> WalletApp:
    dev.flash.power_on()
    dev.app = WalletApp(Hal(flash=dev.flash, clock=None, rng=dev.app.hal.rng))
    return dev.app


def roll_back(dev: lw.Dev, image: dict[str, bytes]) -> None:
    """Write an earlier flash image back (a flash programmer does it in seconds)."""
    dev.flash.restore(image)
    reboot(dev)


def rewrite_state(dev: lw.Dev, **fields: int) -> None:
    """Rewrite fields of the card's state on its flash (S_* names without the prefix)."""
    new = dict(dev.app.state)
    for name, value in fields.items():
        new[getattr(wst, "S_" + name.upper())] = value
    dev.app.commit(new)
    reboot(dev)


def transfer(payer: lw.Dev, receiver: lw.Dev, amount: int, time: int = 0) -> bytes:
    return pv.transfer(DirectLink(payer.app), DirectLink(receiver.app), amount, time=time)


# ---- 1. value created through wallet-to-wallet transfers ---------------------------------------
def test_rolled_back_payer_resending_counter_1_is_released_once(world: World) -> None:
    """Audit 1: a payer holding 5,000 rolls its card back and sends counter 1 four times to a
    colluding receiver. Of the conflicting bodies at most one is released."""
    a = world.wallet(1, load=5000)
    b = world.wallet(2, owner="bob")
    image = a.flash.snapshot()
    sent = []
    for i in range(4):
        if i:
            roll_back(a, image)
        sent.append(transfer(a, b, 5000))
    key = wallet_key(a)
    bodies = [opened(e, key, proto.TAG_PAYMENT) for e in sent]
    assert len({bb for bb, _ in bodies}) == 4
    assert {body[proto.PAY_COUNTER] for _, body in bodies} == {1}
    res = world.sync(b)
    released = released_vouchers(world, [res])
    by_hash = {proto.body_hash(bb).hex(): body for bb, body in bodies}
    released_counters = [by_hash[v[proto.VCH_REF].decode().split(":", 1)[1]][proto.PAY_COUNTER]
                         for v in released]
    assert len(released_counters) == len(set(released_counters)) <= 1
    assert sum(v[proto.VCH_AMOUNT] for v in released) <= 5000
    assert lw.balance_of(b.app) <= 5000  # what the receiver can spend
    cases = world.client.report("fraud")
    assert cases and all(c["wallet"] == a.id.hex() for c in cases)
    for c in cases:
        check_double_spend_proof(c, key)
    assert hotlist_revokes(world, a.id)
    # Uploading the same receiver journal again (or the payer's) releases nothing more.
    res2 = world.sync(a)
    assert released_vouchers(world, [res2]) == []
    assert world.client.invariant()["fraud_loss"] == 0  # no transfer is ever guaranteed


def test_revoked_payer_transfers_are_not_released_whatever_their_time(world: World) -> None:
    """Audit 1, after the revocation: a transfer whose time is 0 (or any time the payer signs)
    proves nothing; only counters the ledger had synced before the revocation are released."""
    a = world.wallet(1, load=5000)
    b = world.wallet(2, owner="bob")
    first = transfer(a, b, 1000, time=world.clock.now())
    r1 = world.sync(b)
    assert [v[proto.VCH_AMOUNT] for v in released_vouchers(world, [r1])] == [1000]
    world.sync(a)  # the ledger now holds a's counter 1: synced
    image = a.flash.snapshot()
    world.client.revoke(a.id, "stolen")
    revoked_at = world.client.device(a.id)["revoked_at"]
    after = [transfer(a, b, 1000, time=0), transfer(a, b, 1000, time=revoked_at - 100)]
    roll_back(a, image)
    after.append(transfer(a, b, 1000, time=0))  # counter 2 again, another body
    r2 = world.sync(b)
    assert released_vouchers(world, [r2]) == []
    assert lw.balance_of(b.app) == 1000
    key = wallet_key(a)
    counters = [opened(e, key, proto.TAG_PAYMENT)[1][proto.PAY_COUNTER] for e in [first, *after]]
    assert counters == [1, 2, 3, 2]
    # The value stays on the books (staged at the receiver), nothing came from issuer:loss.
    inv = world.client.invariant()
    assert inv["fraud_loss"] == 0


def test_transfer_beyond_the_payers_books_is_refused_and_is_fraud(world: World) -> None:
    """A payer whose flash says 50,000 but whose books hold 1,000 sends 4,000: no issuer
    guarantee for a wallet receiver; the overspend is a case and the payer is revoked."""
    a = world.wallet(1, load=1000)
    b = world.wallet(2, owner="bob")
    rewrite_state(a, balance=50_000)
    env = transfer(a, b, 4000)
    res = world.sync(b)
    assert released_vouchers(world, [res]) == []
    cases = world.client.report("fraud")
    assert [c["kind"] for c in cases] == ["overspend"]
    _bb, body = opened(base64.b64decode(cases[0]["proof_b"]), wallet_key(a), proto.TAG_PAYMENT)
    assert body == opened(env, wallet_key(a), proto.TAG_PAYMENT)[1]
    assert body[proto.PAY_AMOUNT] > 1000  # the books: one voucher of 1,000
    assert hotlist_revokes(world, a.id)
    assert world.client.invariant()["fraud_loss"] == 0


# ---- 2. overspending with an extracted key / rewritten flash -----------------------------------
def test_rewritten_balance_overspend_is_fraud_and_gets_no_second_allowance(world: World) -> None:
    """Audit 2: a card loaded with 1,000 whose flash is rewritten to 100,000 pays a POS ten
    times, syncs, rewrites its offline counters, pays again, three cycles. The first sync that
    brings the overspend opens a case with proof, revokes, and the synced counter never rises
    again: the later cycles are refused and the loss stays within N x min(pmax, floor)."""
    a = world.wallet(1, load=1000)
    loaded = 1000
    poses = [world.pos(n) for n in (1, 2, 3)]
    amount = 4900  # below the no-CVM limit, 10 x 4900 within the offline amount limit
    bodies: list[dict] = []
    key = wallet_key(a)
    for cycle, p in enumerate(poses):
        s = a.app.state
        rewrite_state(a, balance=100_000, sync_counter=s[wst.S_COUNTER],
                      sync_spent=s[wst.S_SPENT])
        for _ in range(N_OFF):
            r = world.pay(a, p, amount)
            assert r.approved, r.reason
            bodies.append(opened(r.payment, key, proto.TAG_PAYMENT)[1])
        res_pos = world.sync(p)
        res_wallet = world.sync(a)
        if cycle == 0:
            assert res_pos.revoked == [a.id.hex()]
        assert updates_synced_counter(world, res_wallet) == []  # no fresh allowance, ever
        if cycle:  # the ledger refuses what the next POS (no hot list yet) took
            assert (res_pos.accepted, res_pos.loss) == (0, 0) and res_pos.refused == N_OFF
    for q in poses:
        world.sync(q)
        pv.select(a.app)
        assert world.pay(a, q, amount).reason == "revoked"  # the hot list reached every POS
    assert hotlist_revokes(world, a.id)
    assert world.client.device(a.id)["synced_counter"] == 0
    # The case proves itself: its body verifies, and what the chain spent up to it exceeds what
    # the issuer-signed vouchers gave the card.
    cases = [c for c in world.client.report("fraud") if c["kind"] == "overspend"]
    assert cases
    _bb, proof = opened(base64.b64decode(cases[0]["proof_b"]), key, proto.TAG_PAYMENT)
    spent = sum(b[proto.PAY_AMOUNT] for b in bodies if b[proto.PAY_COUNTER] <= proof[
        proto.PAY_COUNTER])
    assert spent > loaded
    # Recomputed without the ledger: guaranteed are the bodies within the rules (counter <=
    # synced 0 + N, amount <= pmax, taken before the hot list), each once.
    owed = sum(b[proto.PAY_AMOUNT] for b in bodies
               if b[proto.PAY_COUNTER] <= N_OFF and b[proto.PAY_AMOUNT] <= PMAX)
    merchants = world.client.report("merchants")
    assert sum(m["credited"] for m in merchants) == owed
    loss = owed - loaded
    assert world.client.invariant()["fraud_loss"] == loss
    assert loss <= 1 * N_OFF * min(PMAX, FLOOR)  # one POS reached before detection


def test_extracted_key_balance_field_disagreeing_with_the_books_is_fraud(world: World) -> None:
    """A clean chain within the funds whose signed balance fields say more than the card can
    hold (an extracted key signs anything) is a `balance` case: revoked, on the hot list."""
    a = world.wallet(1, load=10_000)
    p = world.pos(1)
    seed = a.app.state[wst.S_SEED]  # read out of the card's flash
    prev, envs = bytes(32), []
    for c in (1, 2, 3):
        body = {proto.PAY_WALLET: a.id, proto.PAY_COUNTER: c, proto.PAY_AMOUNT: 100,
                proto.PAY_PAYEE: p.id, proto.PAY_CHALLENGE: os.urandom(16), proto.PAY_PREV: prev,
                proto.PAY_PURSE: 0, proto.PAY_TIME: 0, proto.PAY_KIND: proto.PAYKIND_POS,
                proto.PAY_BALANCE: 10_000 - 100 * c + (90_000 if c == 3 else 0)}
        envs.append(proto.seal(proto.TAG_PAYMENT, body, seed))
        prev = proto.body_hash(cbor.encode(body))
    records = [(i + 1, cbor.encode({proto.REC_TYPE: proto.RT_PAYMENT, proto.REC_SIGNED: e}))
               for i, e in enumerate(envs)]
    status = proto.seal(proto.TAG_STATUS, {proto.ST_DEVICE: a.id, proto.ST_SEQ: 3,
                                           proto.ST_DIGEST: records_digest(records)}, seed)
    res = world.client.ingest(a.id, records, status)
    assert res.revoked == [a.id.hex()] and updates_synced_counter(world, res) == []
    [case] = world.client.report("fraud")
    assert (case["kind"], case["counter"]) == ("balance", 3)
    # The proof, checked independently: balance + spent at counter 3 is no prefix sum of the
    # issuer-signed vouchers the card was given.
    _bb, body = opened(base64.b64decode(case["proof_b"]), wallet_key(a), proto.TAG_PAYMENT)
    assert body[proto.PAY_COUNTER] == 3
    assert body[proto.PAY_BALANCE] + 300 not in (0, 10_000)
    assert hotlist_revokes(world, a.id)


def test_honest_card_with_loads_between_payments_is_never_a_case(world: World) -> None:
    """The balance check against the books holds for honest cards: loads applied between
    payments, a voucher issued but not yet applied, a transfer released."""
    a = world.wallet(1, load=3000)
    b = world.wallet(2, owner="bob", load=500)
    p = world.pos(1)
    world.client.deposit("alice", 10_000)
    assert world.pay(a, p, 1000).approved
    world.top_up(a, 2000)
    assert world.pay(a, p, 2500).approved
    world.client.load(a.id, 700)  # issued, not applied yet
    transfer(a, b, 400)
    assert world.pay(a, p, 100).approved
    for d in (p, a, b, a, b):
        world.sync(d)
    assert world.pay(b, p, 900).approved  # 500 loaded + 400 released
    world.sync(p)
    world.sync(b)
    assert world.client.report("fraud") == []
    assert world.client.device(a.id)["synced_counter"] == 4


def test_honest_re_spend_of_staged_value_within_its_limit_is_no_case(world: World) -> None:
    """With re-spendable staged value (limit 6 > 0) an honest card pays with value the ledger
    has not seen yet: a shortfall up to that limit is guaranteed as before, never a case."""
    a = world.wallet(1, load=2000)
    b = world.wallet(2, owner="bob", limits={proto.LIM_STAGED_SPEND: 1000})
    p = world.pos(1)
    transfer(a, b, 800)
    assert world.pay(b, p, 500).approved  # all of it from pending value
    for d in (p, b, a, b):
        world.sync(d)
    assert world.client.report("fraud") == []
    assert not world.client.device(b.id)["revoked"]


def test_revoked_wallet_time_zero_payment_needs_the_pos_receipt(world: World) -> None:
    """A revoked wallet's payment brought only by its own log (time 0 or any time it signs) is
    not guaranteed: the POS's signed receipt time decides. The POS's upload then credits the
    honest merchant; a colluding merchant with no POS receipt gets nothing."""
    a = world.wallet(1, load=10_000)
    p = world.pos(1)
    world.client.revoke(a.id, "stolen")
    r = world.pay(a, p, 300)  # p does not know yet: takes it, receipt time = its clock
    assert r.approved
    res = world.sync(a)
    assert (res.accepted, res.refused) == (0, 1)
    world.sync(p)
    merchants = {m["merchant"]: m for m in world.client.report("merchants")}
    assert merchants[p.merchant.hex()]["credited"] == 300
    # With the extracted key, a body naming p with time 0 from the wallet's own log only.
    seed = a.app.state[wst.S_SEED]
    body = {proto.PAY_WALLET: a.id, proto.PAY_COUNTER: 2, proto.PAY_AMOUNT: 5000,
            proto.PAY_PAYEE: p.id, proto.PAY_CHALLENGE: os.urandom(16),
            proto.PAY_PREV: proto.body_hash(proto.open_envelope(r.payment)[0]),
            proto.PAY_PURSE: 0, proto.PAY_TIME: 0, proto.PAY_KIND: proto.PAYKIND_POS,
            proto.PAY_BALANCE: 10_000 - 5300}
    env = proto.seal(proto.TAG_PAYMENT, body, seed)
    rec = cbor.encode({proto.REC_TYPE: proto.RT_PAYMENT, proto.REC_SIGNED: env})
    status = proto.seal(proto.TAG_STATUS, {proto.ST_DEVICE: a.id, proto.ST_SEQ: 99,
                                           proto.ST_DIGEST: records_digest([(99, rec)])}, seed)
    res = world.client.ingest(a.id, [(99, rec)], status)
    assert (res.accepted, res.refused, res.loss) == (0, 1, 0)
    merchants = {m["merchant"]: m for m in world.client.report("merchants")}
    assert merchants[p.merchant.hex()]["credited"] == 300


def test_a_pos_that_forgot_the_card_is_guaranteed_each_counter_once(world: World) -> None:
    """A rolled-back card pays counter 1 again at the same POS after another card pushed it out
    of the POS's last-counter table (1 entry here, 128 by default): the POS is guaranteed the
    first body only, so the loss per POS stays within (S + N) x min(pmax, floor)."""
    a = world.wallet(1, load=3000)
    other = world.wallet(2, owner="bob", load=1000)
    p = world.pos(1, config={proto.CFG_TABLE_MAX: 1})
    image = a.flash.snapshot()
    bodies = []
    for i in range(3):
        if i:
            roll_back(a, image)
            assert world.pay(other, p, 10).approved  # evicts a from the table
        r = world.pay(a, p, 3000)
        assert r.approved and r.counter == 1
        bodies.append(opened(r.payment, wallet_key(a), proto.TAG_PAYMENT))
    assert len({bb for bb, _ in bodies}) == 3
    res = world.sync(p)
    assert res.revoked == [a.id.hex()]
    cases = world.client.report("fraud")
    assert [(c["kind"], c["credited_b"]) for c in cases] == [("counter_conflict", None)] * 2
    for c in cases:
        check_double_spend_proof(c, wallet_key(a))
    merchants = {m["merchant"]: m for m in world.client.report("merchants")}
    assert merchants[p.merchant.hex()]["credited"] == 3000 + 20  # a's counter 1 once, b's two
    assert world.client.invariant()["fraud_loss"] == 0


# ---- 5. a POS that syncs is always fresh --------------------------------------------------------
@pytest.fixture
def world_on_sim_clock(db_url: str):
    w = World(db_url, ledger_on_sim_clock=True)
    try:
        yield w
    finally:
        w.close()


def pos_hotlist(world: World, p: lw.Dev) -> dict:
    _b, body = opened(p.app.cf[pst.C_HOTLIST], world.issuer.public_key, proto.TAG_HOTLIST)
    return body


def test_pos_syncing_daily_never_goes_hotlist_stale(world_on_sim_clock: World) -> None:
    """Audit 5: nothing is revoked for nine days; the POS syncs every day and must take
    payments every day (the hot list max age is seven days)."""
    world = world_on_sim_clock
    a = world.wallet(1, load=10_000)
    p = world.pos(1)
    for day in range(9):
        r = world.pay(a, p, 100)
        assert r.approved, (day, r.reason)
        world.sync(p)
        world.sync(a)
        hot = pos_hotlist(world, p)
        assert hot[proto.HOT_ISSUED] >= world.clock.now() - 60
        assert not pv.select(p.app)[proto.INFO_FLAGS] & proto.FLAG_HOT_STALE
        world.clock.advance(DAY_S)


def test_pos_hotlist_payment_count_restarts_at_each_sync(db_url: str) -> None:
    """Audit 5: hot list max payments reached; a sync (nothing revoked) must bring a new
    version so the POS takes payments again."""
    world = World(db_url, ledger_on_sim_clock=True)
    try:
        a = world.wallet(1, load=10_000)
        p = world.pos(1, config={proto.CFG_HOT_MAX_PAYMENTS: 2})
        world.sync(p)
        versions = [pos_hotlist(world, p)[proto.HOT_VERSION]]
        for _ in range(3):
            assert world.pay(a, p, 100).approved and world.pay(a, p, 100).approved
            assert world.pay(a, p, 100).reason == "hotlist_stale"
            world.clock.advance(61)
            world.sync(p)
            world.sync(a)
            versions.append(pos_hotlist(world, p)[proto.HOT_VERSION])
        assert versions == sorted(set(versions))  # a new version at every sync
    finally:
        world.close()


# ---- 6. strict types -----------------------------------------------------------------------------
def test_pos_refuses_a_renewed_certificate_with_the_serial_it_has() -> None:
    pair = pv.make_pair(61)
    pub = proto.open_envelope(pv.select(pair.pos)[proto.INFO_CERT])[1][proto.CERT_KEY]
    same = pair.issuer.certify_pos(pair.pos_id, pub, pv.device_id("merchant", 1),
                                   expires=pv.T0 + 10**8, serial=1)
    upd = pair.issuer.update(pair.pos_id, 1, {proto.UPD_CERT: same})
    resp = pair.pos.process(proto.build_command(0x80, proto.INS_APPLY, 0, 0, upd))
    assert resp[-2:] == b"\x69\x84"
    assert pv.select(pair.pos)[proto.INFO_CERT] != same


def test_ingest_seq_true_is_not_seq_1(world: World) -> None:
    """JSON `seq: true` is a bool, not the integer 1: 4xx and nothing stored or acked."""
    a = world.wallet(1, load=1000)  # its journal: the voucher applied, seq 1
    records, status = world.export(a)
    assert [s for s, _ in records] == [1]
    body = {"device": a.id.hex(), "status": base64.b64encode(status).decode(),
            "records": [{"seq": True, "record": base64.b64encode(records[0][1]).decode()}]}
    r = httpx.post(world.server.url + "/v1/ingest", json=body)
    assert 400 <= r.status_code < 500, r.text
    assert world.client.device(a.id)["acked_upto"] == 0


def test_pos_receipt_counter_true_is_refused(world: World) -> None:
    """A receipt whose counter is CBOR `true` does not match counter 1 (bool is not int)."""
    a = world.wallet(1, load=1000)
    p = world.pos(1)
    assert world.pay(a, p, 100).approved
    records, _status = world.export(p)
    rec = cbor.decode(records[0][1])
    _rb, rbody, _s = proto.open_envelope(rec[proto.REC_RECEIPT])
    pseed = p.app.cf[pst.C_SEED]
    rbody[proto.RCPT_COUNTER] = True
    rec[proto.REC_RECEIPT] = proto.seal(proto.TAG_RECEIPT, rbody, pseed)
    forged = [(1, cbor.encode(rec))]
    status = proto.seal(proto.TAG_STATUS, {proto.ST_DEVICE: p.id, proto.ST_SEQ: 1,
                                           proto.ST_DIGEST: records_digest(forged)}, pseed)
    with pytest.raises(LedgerHTTPError) as e:
        world.client.ingest(p.id, forged, status)
    assert e.value.status == 400 and "receipt" in str(e.value.detail)
    assert world.client.report("merchants")[0]["credited"] == 0

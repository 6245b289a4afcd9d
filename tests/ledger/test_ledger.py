"""The ledger over real HTTP, on SQLite and PostgreSQL, fed by the real firmware.

Every test runs against both back ends (the `db_url` fixture); after each one the books'
invariant must hold (autouse fixture in ledger_world)."""

from __future__ import annotations

import base64
import threading

import httpx
import pytest
from ledger_world import TOKEN, World, apdu, balance_of

from tapcash.firmware.core import cbor, proto
from tapcash.host.ledger.client import LedgerClient, LedgerHTTPError
from tapcash.sim.device import provision as pv

# Fixtures shared with the other ledger test modules.


def test_payments_credit_the_merchant_and_reset_offline_counters(world: World) -> None:
    w = world.wallet(1, load=20000)
    p = world.pos(1)
    for amount in (1200, 300, 4500):
        assert world.pay(w, p, amount).approved
    assert balance_of(w.app) == 14000

    pos_sync = world.sync(p)
    assert pos_sync.accepted == 3 and pos_sync.upto == 3 and pos_sync.conflicts == 0
    merchants = world.client.report("merchants")
    assert merchants == [
        {
            "merchant": p.merchant.hex(),
            "credited": 6000,
            "settled": 0,
            "owed": 6000,
            "of_which_guaranteed": 0,
            "payments": 3,
        }
    ]

    # The wallet's own log brings the same three payments: credited once, not twice.
    ws = world.sync(w)
    assert ws.accepted == 0 and ws.duplicates == 3
    assert world.client.report("merchants")[0]["owed"] == 6000
    # ... and its offline counters are reset by the update (synced counter 3, spent 6000).
    from tapcash.firmware.wallet import state as wst

    assert w.app.state[wst.S_SYNC_COUNTER] == 3
    assert w.app.state[wst.S_SYNC_SPENT] == 6000
    # The device pruned what the ledger acked.
    assert w.app.journal.count() == 0 and p.app.journal.count() == 0

    st = world.client.wallet_statement(w.id)
    assert st["balance"] == 14000 and st["reported"]["balance"] == 14000
    assert st["expected_device_balance"] == 14000
    assert [(x["kind"], x["amount"], x["balance"]) for x in st["lines"]] == [
        ("load", 20000, 20000), ("payment", -1200, 18800), ("payment", -300, 18500),
        ("payment", -4500, 14000)]
    statement_csv = world.client.wallet_statement(w.id, "csv")
    assert statement_csv.splitlines()[0] == "posting,kind,ref,counterparty,amount,balance,at"
    assert len(statement_csv.splitlines()) == 5
    inv = world.client.invariant()
    assert inv["ok"] and inv["issued"] == 20000
    assert inv["by_kind"] == {"owner": 0, "wallet": 14000, "staged": 0, "merchant": 6000}

    settled = world.client.settle(p.merchant, "week 1")
    assert settled["amount"] == 6000
    assert world.client.report("merchants")[0]["owed"] == 0
    assert world.client.invariant()["issued"] == 14000
    csv_text = world.client.report("settlements", "csv")
    assert csv_text.splitlines()[0] == "settlement,merchant,amount,reference,at"
    assert f"{p.merchant.hex()},6000,week 1" in csv_text


def test_wallet_log_only_payment_credits_the_merchant_once(world: World) -> None:
    """The POS never journals a payment (lost), the wallet's log still brings it."""
    w = world.wallet(1, load=10000)
    p = world.pos(1)
    assert world.pay(w, p, 700).approved
    assert world.pay(w, p, 800).approved
    # The POS loses its journal (never synced); only the wallet syncs, twice.
    r1 = world.sync(w)
    assert r1.accepted == 2
    records, status = world.export(w, since=0)  # nothing left after the ack
    r2 = world.client.ingest(w.id, records, status)
    assert r2.accepted == 0
    m = world.client.report("merchants")
    assert m[0]["owed"] == 1500 and m[0]["payments"] == 2
    # When the POS journal shows up later, nothing is credited again.
    r3 = world.sync(p)
    assert r3.accepted == 0 and r3.duplicates == 2
    assert world.client.report("merchants")[0]["owed"] == 1500


def test_staged_transfer_released_to_the_receiver(world: World) -> None:
    a = world.wallet(1, load=10000)
    b = world.wallet(2, owner="bob")
    world.transfer(a, b, 2500)
    assert balance_of(a.app) == 7500
    assert balance_of(b.app) == 0  # staged: not spendable yet

    # Payer syncs first: the value is in flight.
    ra = world.sync(a)
    assert ra.accepted == 1 and ra.released == 0
    inv = world.client.invariant()
    assert inv["by_kind"]["staged"] == 2500

    # Receiver syncs: released by a voucher of source 2, which the sync loads.
    rb = world.sync(b)
    assert rb.released == 1 and rb.duplicates == 1
    assert len(rb.vouchers) == 1
    _b, vbody, _s = proto.open_envelope(rb.vouchers[0])
    assert vbody[proto.VCH_SOURCE] == proto.VSRC_TRANSFER and vbody[proto.VCH_AMOUNT] == 2500
    assert balance_of(b.app) == 2500
    inv = world.client.invariant()
    assert inv["by_kind"] == {"owner": 0, "wallet": 10000, "staged": 0, "merchant": 0}

    # A second sync releases nothing more; b can spend the value at a POS now.
    assert world.sync(b).released == 0
    p = world.pos(1)
    assert world.pay(b, p, 2000).approved
    assert world.sync(p).accepted == 1
    assert world.client.wallet_statement(b.id)["balance"] == 500


def test_receiver_syncing_first_gets_the_release(world: World) -> None:
    a = world.wallet(1, load=10000)
    b = world.wallet(2, owner="bob")
    world.transfer(a, b, 1000)
    rb = world.sync(b)  # the payment comes from the receiver's log
    assert rb.accepted == 1 and rb.released == 1
    assert balance_of(b.app) == 1000
    ra = world.sync(a)
    assert ra.accepted == 0 and ra.duplicates == 1


def test_conflicting_counter_is_a_fraud_case_with_both_proofs(world: World) -> None:
    """A cloned card: the same state pays at two terminals with counter 1."""
    w = world.wallet(1, load=10000)
    p1, p2 = world.pos(1), world.pos(2)
    snap = {k: v for k, v in w.app.hal.flash.snapshot().items()}
    assert world.pay(w, p1, 3000).approved
    world.reflash(w, snap)  # flash rollback = the clone
    assert world.pay(w, p2, 4000).approved

    before = world.client.hotlist()
    assert w.id not in before.revoked
    r1 = world.sync(p1)
    assert r1.accepted == 1 and r1.conflicts == 0
    r2 = world.sync(p2)
    assert r2.conflicts == 1 and r2.revoked == [w.id.hex()]
    hot = world.client.hotlist()
    assert hot.version == before.version + 1 and w.id in hot.revoked
    # The POS got the new hot list in its update.
    info = cbor.decode(pv.call(p1.app, proto.INS_GET_INFO))
    assert info[proto.INFO_HOT_VERSION] < hot.version
    world.sync(p1)
    info = cbor.decode(pv.call(p1.app, proto.INS_GET_INFO))
    assert info[proto.INFO_HOT_VERSION] == hot.version
    # ... and refuses the revoked card now.
    r = world.pay(w, p1, 100)
    assert not r.approved and r.reason == "revoked"

    cases = world.client.report("fraud")
    assert len(cases) == 1
    case = cases[0]
    assert case["kind"] == "counter_conflict" and case["counter"] == 1
    proofs = [base64.b64decode(case["proof_a"]), base64.b64decode(case["proof_b"])]
    wpk = world.client.device(w.id)["public_key"]
    bodies = [proto.verify_envelope(proto.TAG_PAYMENT, e, bytes.fromhex(wpk)) for e in proofs]
    assert {b[proto.PAY_COUNTER] for b in bodies} == {1}
    assert {b[proto.PAY_AMOUNT] for b in bodies} == {3000, 4000}
    # Both merchants are credited (the issuer's guarantee); the wallet covered 7000 of 10000.
    owed = {m["merchant"]: m["owed"] for m in world.client.report("merchants")}
    assert owed == {p1.merchant.hex(): 3000, p2.merchant.hex(): 4000}
    assert world.client.invariant()["fraud_loss"] == 0
    # Re-uploading the conflicting journal adds no second case.
    records, status = world.export(p2, since=0)
    assert world.client.ingest(p2.id, records, status).conflicts == 0
    assert len(world.client.report("fraud")) == 1
    csv_text = world.client.report("fraud", "csv")
    assert csv_text.splitlines()[0].startswith("case,wallet,kind,counter,proof_a,proof_b")


def test_clone_spending_beyond_the_funds_is_a_bounded_reported_loss(world: World) -> None:
    w = world.wallet(1, load=6000)
    p1, p2 = world.pos(1), world.pos(2)
    snap = w.app.hal.flash.snapshot()
    assert world.pay(w, p1, 5000).approved
    world.reflash(w, snap)
    assert world.pay(w, p2, 4000).approved
    world.sync(p1)
    r = world.sync(p2)
    assert r.conflicts == 1 and r.loss == 3000
    inv = world.client.invariant()
    assert inv["fraud_loss"] == 3000 and inv["ok"]
    case = world.client.report("fraud")[0]
    assert case["loss"] == 3000 and case["amount_b"] == 4000
    m = {x["merchant"]: x for x in world.client.report("merchants")}
    assert m[p2.merchant.hex()]["of_which_guaranteed"] == 3000
    # The wallet's own log with its branch: no new case, no new credit.
    ws = world.sync(w)
    assert ws.accepted == 0 and ws.conflicts == 0
    # A revoked wallet gets no update resetting its offline counters.
    assert ws.updates == []


def test_same_batch_twice_reordered_split_and_concurrent_give_one_ledger(
    world: World, db_url_factory
) -> None:
    w1 = world.wallet(1, load=30000)
    w2 = world.wallet(2, owner="bob", load=30000)
    p = world.pos(1)
    for i in range(6):
        assert world.pay(w1 if i % 2 else w2, p, 100 + i).approved
    world.transfer(w1, w2, 900)
    pos_batch = world.export(p)
    w1_batch = world.export(w1)
    w2_batch = world.export(w2)

    def fresh() -> World:
        other = World(db_url_factory())
        # Same devices, registered and loaded the same way (voucher numbers match).
        for dev, owner in ((w1, "alice"), (w2, "bob")):
            other.client.register(pv.select(dev.app)[proto.INFO_CERT], owner)
            other.client.deposit(owner, 30000)
            other.client.load(dev.id, 30000)
        other.client.register(cbor.decode(pv.call(p.app, proto.INS_GET_INFO))[proto.INFO_CERT])
        return other

    def upload(c: LedgerClient, dev, batch, order=None, split=None) -> None:
        records, status = batch
        if order is not None:
            records = [records[i] for i in order]
        if split:
            c.ingest(dev.id, records[:split], status)
            c.ingest(dev.id, records[split:], status)
        else:
            c.ingest(dev.id, records, status)

    worlds = []
    try:
        a = fresh()
        worlds.append(a)
        upload(a.client, p, pos_batch)
        upload(a.client, w1, w1_batch)
        upload(a.client, w2, w2_batch)
        reference = a.client.books()

        b = fresh()  # everything twice, reversed device order, records reversed
        worlds.append(b)
        for _ in range(2):
            upload(b.client, w2, w2_batch, order=list(range(len(w2_batch[0])))[::-1])
            upload(b.client, w1, w1_batch)
            upload(b.client, p, pos_batch, order=list(range(len(pos_batch[0])))[::-1])
        assert b.client.books() == reference

        c = fresh()  # split batches, second half first
        worlds.append(c)
        n = len(pos_batch[0])
        recs, st = pos_batch
        c.client.ingest(p.id, recs[n // 2 :], st)
        assert c.client.ingest(p.id, [], st).upto == 0  # a gap: nothing acked yet
        c.client.ingest(p.id, recs[: n // 2], st)
        upload(c.client, w1, w1_batch, split=1)
        upload(c.client, w2, w2_batch, split=2)
        assert c.client.books() == reference

        d = fresh()  # concurrently, by two clients
        worlds.append(d)
        errors: list[BaseException] = []

        def run() -> None:
            try:
                with LedgerClient(d.server.url, TOKEN) as cl:
                    upload(cl, p, pos_batch)
                    upload(cl, w1, w1_batch)
                    upload(cl, w2, w2_batch)
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert errors == []
        assert d.client.books() == reference
    finally:
        for x in worlds:
            x.close()


def test_payroll_is_all_or_nothing(world: World) -> None:
    w1 = world.wallet(1, owner="w1")
    w2 = world.wallet(2, owner="w2")
    world.client.deposit("acme", 100000)
    bad = f"wallet,amount\n{w1.id.hex()},1000\nzz,5\n{w2.id.hex()},-3\n{w2.id.hex()}\n"
    with pytest.raises(LedgerHTTPError) as e:
        world.client.payroll("acme", bad, "nov")
    assert e.value.status == 400
    assert [x["line"] for x in e.value.problem["lines"]] == [3, 4, 5]
    # An unknown wallet and one over its balance max are refused too, with nothing loaded.
    over = f"{w1.id.hex()},1000\n{'00' * 8},5\n{w2.id.hex()},100001\n"
    with pytest.raises(LedgerHTTPError) as e:
        world.client.payroll("acme", over, "nov")
    assert e.value.status == 409
    assert [x["line"] for x in e.value.problem["lines"]] == [2, 3]
    assert world.client.owner("acme")["balance"] == 100000
    assert world.client.device(w1.id)["next_voucher"] == 1

    good = f"# November\n{w1.id.hex()},1500\n{w2.id.hex()},2500\n"
    res = world.client.payroll("acme", good, "nov")
    assert res["total"] == 4000 and res["payer_balance"] == 96000
    for item, dev in zip(res["vouchers"], (w1, w2), strict=True):
        _d, sw = apdu(dev.app, proto.INS_LOAD, base64.b64decode(item["voucher"]))
        assert sw == proto.SW_OK
    assert balance_of(w1.app) == 1500 and balance_of(w2.app) == 2500
    with pytest.raises(LedgerHTTPError) as e:
        world.client.payroll("acme", good, "nov")
    assert e.value.status == 409
    # More than the payer holds: refused whole.
    with pytest.raises(LedgerHTTPError) as e:
        world.client.payroll("acme", f"{w1.id.hex()},50000\n{w2.id.hex()},50000\n", "dec")
    assert e.value.status == 409
    assert world.client.owner("acme")["balance"] == 96000


def test_operator_routes_need_the_token(world: World) -> None:
    url = world.server.url
    w = world.wallet(1)
    with httpx.Client(base_url=url) as h:
        for method, path, body in (
            ("POST", "/v1/owners/x/deposit", {"amount": 5}),
            ("POST", f"/v1/wallets/{w.id.hex()}/load", {"amount": 5}),
            ("POST", f"/v1/devices/{w.id.hex()}/revoke", {"reason": "x"}),
            ("GET", "/v1/invariant", None),
            ("GET", "/v1/reports/fraud", None),
        ):
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
                r = h.request(method, path, json=body, headers=headers)
                assert r.status_code == 401, (path, headers)
                assert "token" in r.json()["detail"]
        # Public routes.
        assert h.get("/v1/hotlist").status_code == 200
        assert h.get("/v1/health").json()["ok"] is True
        spec = h.get("/openapi.json").json()
        assert "/v1/ingest" in spec["paths"] and "/v1/payroll" in spec["paths"]
    assert world.client.device(w.id)["revoked"] is False
    assert world.client.owner("alice")["balance"] == 0


def test_bad_inputs_are_refused_and_change_nothing(world: World) -> None:
    w = world.wallet(1, load=5000)
    p = world.pos(1)
    assert world.pay(w, p, 1000).approved
    records, status = world.export(p)
    before = world.client.books()
    h = httpx.Client(base_url=world.server.url)
    good = {
        "device": p.id.hex(),
        "status": base64.b64encode(status).decode(),
        "records": [{"seq": s, "record": base64.b64encode(r).decode()} for s, r in records],
    }

    def post(body: dict) -> httpx.Response:
        return h.post("/v1/ingest", json=body)

    # bad base64
    r = post({**good, "records": [{"seq": 1, "record": "!!notbase64"}]})
    assert r.status_code == 400 and "base64" in r.json()["detail"]
    # the status authenticates the device: unreadable, forged or for an unknown device, the
    # same 403 (a stranger learns nothing, not even whether the id exists)
    r = post({**good, "status": "%%%"})
    assert r.status_code == 403 and r.json()["detail"] == "device authentication failed"
    # bad CBOR
    r = post({**good, "records": [{"seq": 1, "record": base64.b64encode(b"\xff\x00").decode()}]})
    assert r.status_code == 400 and "CBOR" in r.json()["detail"]
    # bad signature: flip one byte of the wallet's payment signature inside the record
    rec = cbor.decode(records[0][1])
    body_bytes, sig = cbor.decode(rec[proto.REC_SIGNED])
    rec[proto.REC_SIGNED] = cbor.encode([body_bytes, sig[:-1] + bytes([sig[-1] ^ 1])])
    bad = {**good, "records": [{"seq": 1, "record": base64.b64encode(cbor.encode(rec)).decode()}]}
    r = post(bad)
    assert r.status_code == 400 and "signature" in r.json()["detail"]
    # status not signed by the device
    forged = proto.seal(proto.TAG_STATUS, {proto.ST_DEVICE: p.id, proto.ST_SEQ: 1}, b"\x01" * 32)
    r = post({**good, "status": base64.b64encode(forged).decode()})
    assert r.status_code == 403 and r.json()["detail"] == "device authentication failed"
    r = post({**good, "device": "00" * 8})
    assert r.status_code == 403 and r.json()["detail"] == "device authentication failed"
    # malformed id, seq beyond the status
    assert post({**good, "device": "xyz"}).status_code == 422  # the schema says 16 hex
    r = post({**good, "records": [{"seq": 99, "record": good["records"][0]["record"]}]})
    assert r.status_code == 400
    # a journal naming a wallet the ledger does not know (certified, never registered)
    stranger = pv.make_wallet(world.issuer, 9, seed=world.seed, balance=900, clock=world.clock)[0]
    p.link.tap(stranger)
    assert p.app.take_payment(900).approved
    s_records, s_status = world.export(p)
    r = post({**good, "status": base64.b64encode(s_status).decode(),
              "records": [{"seq": s, "record": base64.b64encode(r).decode()}
                          for s, r in s_records]})
    assert r.status_code == 422 and "unknown device" in r.json()["detail"]
    # schema errors from FastAPI are 422 with a detail
    r = post({"device": p.id.hex()})
    assert r.status_code == 422 and "detail" in r.json()
    # operator routes
    for path, body in (
        ("/v1/devices", {"cert": "@@"}),
        ("/v1/devices", {"cert": base64.b64encode(b"\x80").decode()}),
        ("/v1/owners/a b/deposit", {"amount": 5}),
        ("/v1/owners/x/deposit", {"amount": 0}),
        (f"/v1/wallets/{w.id.hex()}/load", {"amount": 10**6}),
        (f"/v1/wallets/{'00' * 8}/load", {"amount": 5}),
    ):
        r = h.post(path, json=body, headers={"Authorization": f"Bearer {TOKEN}"})
        assert 400 <= r.status_code < 500, (path, r.status_code)
        assert "detail" in r.json()
    # a certificate from another issuer
    other = pv.issuer_from_seed(99)
    cert = other.certify_wallet(b"\x07" * 8, b"\x01" * 32, expires=2**31)
    with pytest.raises(LedgerHTTPError) as e:
        world.client.register(cert, "eve")
    assert e.value.status == 400
    h.close()
    assert world.client.books() == before
    # and the good records still go through
    assert world.client.ingest(p.id, records, status).accepted == 1


def test_renewal_reaches_the_wallet_and_later_updates_still_apply(world: World) -> None:
    from tapcash.firmware.wallet import state as wst

    w = world.wallet(1, load=20000)
    p = world.pos(1)
    res = world.client.renew(w.id, limits={proto.LIM_PAYMENT_MAX: 3000})
    assert res["serial"] == 2
    assert world.pay(w, p, 1000).approved
    r = world.sync(w)  # renewal update, then the sync update
    assert len(r.updates) == 2
    assert w.app.state[wst.S_SERIAL] == 2
    assert w.app.state[wst.S_LIMITS][proto.LIM_PAYMENT_MAX] == 3000
    assert w.app.state[wst.S_SYNC_COUNTER] == 1
    r = world.pay(w, p, 4000)
    assert not r.approved
    # A second sync: the already-applied updates answer 6916, which is fine.
    assert world.pay(w, p, 500).approved
    world.sync(w)
    assert w.app.state[wst.S_SYNC_COUNTER] == 2


def test_operator_revocation_publishes_a_new_hot_list(world: World) -> None:
    w = world.wallet(1, load=5000)
    p = world.pos(1)
    v0 = world.client.hotlist().version
    res = world.client.revoke(w.id, "lost card")
    assert res["changed"] and res["hotlist_version"] == v0 + 1
    assert world.client.revoke(w.id, "again")["changed"] is False
    hot = world.client.hotlist()
    body = proto.verify_envelope(proto.TAG_HOTLIST, hot.envelope, world.issuer.public_key)
    assert body[proto.HOT_REVOKED] == [w.id] and body[proto.HOT_VERSION] == hot.version
    # The POS's next sync brings the new hot list (pending is read only: it mints nothing).
    assert world.sync(p).updates
    r = world.pay(w, p, 100)
    assert not r.approved and r.reason == "revoked"
    with pytest.raises(LedgerHTTPError) as e:
        world.client.load(w.id, 100)
    assert e.value.status == 409

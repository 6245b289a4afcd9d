"""Programmes of earmarked purses in the ledger, fed by the real firmware over real HTTP, on
SQLite and PostgreSQL: bulk load exactly once, a split payment credited once per part, per-use
release of a prepaid package, refusal and a case for a purse payment at a merchant the rule does
not allow (a tampered card with a colluding POS), expiry in the books and at the card's next
sync, cancellation, a cloned card spending a purse twice, the CLI. After every test the books
balance, and per programme funded = spent + refunded + outstanding (an independent recount of
the postings, not the report's figures)."""

from __future__ import annotations

import json
import re

import ledger_world as lw
import pytest
from click.testing import CliRunner
from ledger_world import World, apdu

from tapcash.firmware.core import cbor, proto
from tapcash.firmware.wallet import state as wst
from tapcash.host.ledger import programs
from tapcash.host.ledger.client import LedgerHTTPError
from tapcash.sim.device import provision as pv
from tapcash.sim.device.hal import SimClock
from tapcash.sim.nfc.field import DirectLink

TRANSPORT = 4111
DAY = 86400


class PWorld(World):
    """A World whose ledger runs on the simulated clock (expiry is judged by it)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.clock = SimClock(self.clock.now())
        self.ledger.clock = self.clock.now

    def pos_cat(self, n: int, category: int) -> lw.Dev:
        from tapcash.firmware.core.hal import Hal
        from tapcash.sim.device.flash import SimFlash
        from tapcash.sim.device.hal import SeededRng

        link = DirectLink(None)
        hal = Hal(flash=SimFlash(seed=900 + n), clock=self.clock,
                  rng=SeededRng(b"ppos" + n.to_bytes(4, "big")), link=link)
        merchant = pv.device_id("merchant", n)
        app = pv.provision_pos(self.issuer, pv.device_id("pos", n), merchant, hal,
                               category=category)
        info = cbor.decode(pv.call(app, proto.INS_GET_INFO, what="GET INFO"))
        self.client.register(info[proto.INFO_CERT])
        dev = lw.Dev(app, pv.device_id("pos", n), "pos", link=link, merchant=merchant)
        self.poses[n] = dev
        return dev


@pytest.fixture
def world(db_url: str):
    w = PWorld(db_url)
    try:
        yield w
    finally:
        assert w.ledger.invariant()["ok"], w.ledger.invariant()
        w.close()


def recount(w: World, name: str) -> dict[str, int]:
    """Per programme from the raw postings (not programs.report): the oracle."""
    pid = programs.program_id(name).hex()

    def fn(tx):
        rows = tx.all("SELECT src, dst, amount, kind FROM postings")
        acc = {"funded": 0, "to_merchants": 0, "refunded": 0}
        for src, dst, amount, kind in rows:
            src_p = src.startswith(f"purse:{pid}:")
            dst_p = dst.startswith(f"purse:{pid}:")
            if dst_p and src == f"program:{pid}" and kind == "purse_load":
                acc["funded"] += amount
            elif src_p and dst.startswith("merchant:"):
                acc["to_merchants"] += amount
            elif src_p and dst == f"program:{pid}":
                acc["refunded"] += amount
            elif dst_p and src == f"program:{pid}":
                acc["refunded"] -= amount  # reopened for a late payment
        acc["outstanding"] = sum(int(b) for (b,) in tx.all(
            "SELECT balance FROM accounts WHERE name LIKE ?", (f"purse:{pid}:%",)))
        return acc

    return w.ledger.db.read(fn)


def purses_on(dev: lw.Dev) -> list[tuple[bytes, int]]:
    return [(p[0], p[1]) for p in dev.app.state.get(wst.S_PURSES) or []]


def subsidy(w: PWorld, **kw) -> dict:
    w.client.deposit("city", 100_000)
    args = dict(kind="subsidy", expires=w.clock.now() + 30 * DAY, categories=[TRANSPORT])
    args.update(kw)
    return w.client.program_create("bus-2026", "city", **args)


def test_subsidy_load_pay_split_report(world: PWorld) -> None:
    w = world
    a, b = w.wallet(1, load=5000), w.wallet(2, load=5000)
    bus, shop = w.pos_cat(1, TRANSPORT), w.pos_cat(2, 5411)
    prog = subsidy(w)
    csv_text = f"wallet,amount\n{a.id.hex()},3000\n# comment\n{b.id.hex()},2000\n"
    out = w.client.program_load("bus-2026", csv_text, "jan")
    assert out["total"] == 5000 and len(out["vouchers"]) == 2
    # exactly once: the same reference again is refused, nothing loaded
    with pytest.raises(LedgerHTTPError) as e:
        w.client.program_load("bus-2026", csv_text, "jan")
    assert e.value.status == 409
    # a bad line refuses the whole load
    with pytest.raises(LedgerHTTPError) as e:
        w.client.program_load("bus-2026", f"{a.id.hex()},10\nzz,5\n", "feb")
    assert e.value.status == 400 and e.value.problem["lines"][0]["line"] == 2
    w.sync(a)  # the card gets its purse voucher at its sync
    w.sync(b)
    assert purses_on(a) == [(bytes.fromhex(prog["id"]), 3000)]
    # the voucher applies once: again is 6916
    _d, sw = apdu(a.app, proto.INS_LOAD, bytes(__import__("base64").b64decode(
        out["vouchers"][0]["voucher"])))
    assert sw == proto.SW_REPLAY

    r = w.pay(a, bus, 4000)  # purse 3000 + main 1000
    assert r.approved and r.earmarked == 3000 and r.balance == 4000
    r = w.pay(b, shop, 500)  # a shop: the purse does not pay
    assert r.approved and r.earmarked == 0
    w.sync(bus)
    w.sync(shop)
    rep = w.client.programs("bus-2026")
    assert (rep["funded"], rep["spent"], rep["refunded"], rep["outstanding"]) == (5000, 3000, 0,
                                                                                  2000)
    assert rep["by_merchant"] == [{"merchant": bus.merchant.hex(), "category": TRANSPORT,
                                   "payments": 1, "amount": 3000}]
    assert rep["balanced"]
    merchants = {m["merchant"]: m["credited"] for m in w.client.report("merchants")}
    assert merchants[bus.merchant.hex()] == 4000 and merchants[shop.merchant.hex()] == 500
    assert recount(w, "bus-2026") == {"funded": 5000, "to_merchants": 3000, "refunded": 0,
                                      "outstanding": 2000}
    # the wallet's own log brings the same payment: nothing is credited twice
    ws = w.sync(a)
    assert ws.duplicates == 1 and recount(w, "bus-2026")["to_merchants"] == 3000
    assert w.client.invariant()["programs"]["ok"]


def test_prepaid_lessons_released_per_use_then_expiry_refunds(world: PWorld) -> None:
    w = world
    a = w.wallet(1, load=2000)
    school = w.pos_cat(1, 8299)
    w.client.deposit("parents", 50_000)
    w.client.program_create("piano", "parents", kind="prepaid", expires=w.clock.now() + 10 * DAY,
                            merchants=[school.merchant], unit=2500)
    w.client.program_load("piano", f"{a.id.hex()},10000\n", "term-1")
    w.sync(a)
    for _ in range(2):
        r = w.pay(a, school, 2500)  # one lesson each
        assert r.approved and r.earmarked == 2500 and r.balance == 2000
    r = w.pay(a, school, 3000)  # a lesson and 500 of something else
    assert r.earmarked == 2500 and r.balance == 1500
    w.sync(school)
    rep = w.client.programs("piano")
    assert (rep["released"], rep["outstanding"]) == (7500, 2500)
    # expiry: the books refund at expiry (sweep), the card's purse clears at its next sync
    w.clock.advance(11 * DAY)
    assert w.client.program_sweep() == {"closed": 1, "refunded": 2500, "returned": 0}
    rep = w.client.programs("piano")
    assert (rep["refunded"], rep["outstanding"], rep["state"]) == (2500, 0, "expired")
    w.sync(a)
    assert purses_on(a) == []
    w.sync(a)  # the status without the purse confirms it
    assert rep["balanced"] and recount(w, "piano") == {
        "funded": 10000, "to_merchants": 7500, "refunded": 2500, "outstanding": 0}


def _day_subsidy(w: PWorld) -> tuple[lw.Dev, lw.Dev, dict]:
    """Wallet 1 (10.00 loaded) with 30.00 of a bus subsidy that expires in a day, synced, and
    a bus POS: (wallet, bus POS, programme)."""
    a = w.wallet(1, load=1000)
    bus = w.pos_cat(1, TRANSPORT)
    prog = subsidy(w, expires=w.clock.now() + DAY)
    w.client.program_load("bus-2026", f"{a.id.hex()},3000\n", "jan")
    w.sync(a)
    return a, bus, prog


def _forge_at(w: PWorld, wallet: lw.Dev, pos: lw.Dev, amount: int, program: bytes,
              time: int) -> None:
    """A tampered card (key extracted) with a colluding POS (key extracted): a purse payment
    the rule does not allow, journaled and uploaded by the POS as its own."""
    s = wallet.app.state
    body = {
        proto.PAY_WALLET: wallet.id, proto.PAY_COUNTER: s[wst.S_COUNTER] + 1,
        proto.PAY_AMOUNT: amount, proto.PAY_PAYEE: pos.id, proto.PAY_CHALLENGE: b"\x07" * 16,
        proto.PAY_PREV: s[wst.S_PREV], proto.PAY_PURSE: 1, proto.PAY_TIME: time,
        proto.PAY_BALANCE: s[wst.S_BALANCE], proto.PAY_KIND: proto.PAYKIND_POS,
        proto.PAY_PROGRAM: program, proto.PAY_EARMARKED: amount, proto.PAY_PURSE_BALANCE: 0,
    }
    env = proto.seal(proto.TAG_PAYMENT, body, s[wst.S_SEED])
    seq = pos.app.journal.last_seq + 1
    pos_seed = pos.app.cf[1]  # pos state C_SEED
    receipt = proto.seal(proto.TAG_RECEIPT, {
        proto.RCPT_POS: pos.id, proto.RCPT_WALLET: wallet.id,
        proto.RCPT_COUNTER: body[proto.PAY_COUNTER], proto.RCPT_AMOUNT: amount,
        proto.RCPT_PAYMENT_HASH: proto.body_hash(proto.open_envelope(env)[0]),
        proto.RCPT_SEQ: seq, proto.RCPT_TIME: time}, pos_seed)
    rec = cbor.encode({proto.REC_TYPE: proto.RT_PAYMENT, proto.REC_SIGNED: env,
                       proto.REC_RECEIPT: receipt, proto.REC_CERT_HASH: b"\x00" * 32})
    digest = proto.journal_link(pos.app.journal.digest, seq, rec)  # the chain, extended
    status = proto.seal(proto.TAG_STATUS, {proto.ST_DEVICE: pos.id, proto.ST_SEQ: seq,
                                           proto.ST_DIGEST: digest}, pos_seed)
    return w.client.ingest(pos.id, [(seq, rec)], status)


def test_wrong_merchant_through_a_colluding_pos_is_not_credited(world: PWorld) -> None:
    w = world
    a = w.wallet(1, load=1000)
    shop = w.pos_cat(2, 5411)
    w.pos_cat(1, TRANSPORT)
    prog = subsidy(w)
    w.client.program_load("bus-2026", f"{a.id.hex()},3000\n", "jan")
    w.sync(a)
    res = _forge_at(w, a, shop, 3000, bytes.fromhex(prog["id"]), w.clock.now())
    assert res.refused == 1 and res.conflicts == 1 and a.id.hex() in res.revoked
    assert all(m["credited"] == 0 for m in w.client.report("merchants")
               if m["merchant"] == shop.merchant.hex())
    cases = w.client.report("fraud")
    assert [c["kind"] for c in cases] == ["purse_rule"]
    rc = recount(w, "bus-2026")
    assert (rc["to_merchants"], rc["outstanding"]) == (0, 3000)
    assert w.client.programs("bus-2026")["refused_payments"] == 1


def test_expired_purse_at_a_pos_with_a_wrong_clock(world: PWorld) -> None:
    w = world
    a, bus, prog = _day_subsidy(w)
    # a tampered card signs a purse payment with a time after expiry: refused, case opened
    res = _forge_at(w, a, bus, 500, bytes.fromhex(prog["id"]), w.clock.now() + 2 * DAY)
    assert res.refused == 1 and [c["kind"] for c in w.client.report("fraud")] == [
        "purse_expired"]
    assert recount(w, "bus-2026")["to_merchants"] == 0


def test_honest_card_at_a_slow_clock_pos_is_bounded_to_allowed_merchants(world: PWorld) -> None:
    w = world
    a, bus, _prog = _day_subsidy(w)
    w.clock.advance(2 * DAY)
    assert w.client.program_sweep()["refunded"] == 3000  # refunded in the books at expiry
    bus.app.hal.clock = SimClock(w.clock.now() - 36 * 3600)  # the POS clock is 36 h behind
    r = w.pay(a, bus, 800)
    assert r.approved and r.earmarked == 800  # neither card nor POS can tell offline
    w.sync(bus)
    # credited to the allowed merchant, reopened from the refund: value stays within the rule
    rc = recount(w, "bus-2026")
    assert rc == {"funded": 3000, "to_merchants": 800, "refunded": 2200, "outstanding": 0}
    w.sync(a)  # the card's next sync clears the purse
    assert purses_on(a) == []


def test_a_pos_clock_set_back_after_its_sync_takes_no_expired_purse(world: PWorld) -> None:
    """The merchant turns the terminal's clock back after a sync past the expiry (the ack set
    it right): it reads before the issue of the hot list the sync gave it, so the terminal
    sends no certificate and the card pays from its main purse."""
    w = world
    a, bus, _prog = _day_subsidy(w)
    w.clock.advance(2 * DAY)
    w.sync(bus)  # a fresh hot list, issued after the expiry
    bus.app.hal.clock = SimClock(w.clock.now() - 36 * 3600)  # back inside the programme
    r = w.pay(a, bus, 800)
    assert r.approved and r.earmarked == 0 and r.purse == 0  # the main purse paid it all
    w.sync(bus)
    w.sync(a)
    rc = recount(w, "bus-2026")
    assert rc == {"funded": 3000, "to_merchants": 0, "refunded": 3000, "outstanding": 0}
    assert purses_on(a) == []


def test_cancel_refunds_and_clears_at_next_sync(world: PWorld) -> None:
    w = world
    a = w.wallet(1, load=1000)
    subsidy(w)
    w.client.program_load("bus-2026", f"{a.id.hex()},3000\n", "jan")
    w.sync(a)
    out = w.client.program_cancel("bus-2026")
    assert (out["closed"], out["refunded"]) == (1, 3000)
    assert w.client.program_cancel("bus-2026")["refunded"] == 0  # idempotent
    with pytest.raises(LedgerHTTPError) as e:
        w.client.program_load("bus-2026", f"{a.id.hex()},10\n", "feb")
    assert e.value.status == 409
    w.sync(a)
    assert purses_on(a) == []
    rep = w.client.programs("bus-2026")
    assert (rep["state"], rep["refunded"], rep["outstanding"]) == ("cancelled", 3000, 0)


def test_cancel_clears_an_idle_card_whose_sync_has_nothing_to_upload(world: PWorld) -> None:
    """A card with no new records since its purse was loaded: the sync tool only asks what
    waits for it (GET /pending, as `tapcash sync` does). That answer carries an update clearing
    the cancelled purse, so the card is cleared at its next sync, as docs/PROGRAMMES.md says."""
    w = world
    a = w.wallet(1, load=1000)
    subsidy(w)
    w.client.program_load("bus-2026", f"{a.id.hex()},3000\n", "jan")
    w.sync(a)
    w.sync(a)  # ships the LOAD's record: the card's journal is empty after the ack
    assert purses_on(a) and purses_on(a)[0][1] == 3000
    w.client.program_cancel("bus-2026")
    records, status = w.export(a)
    assert records == []
    got = w.client.pending(a.id, status)
    for u in got.updates:
        _d, sw = apdu(a.app, proto.INS_APPLY, u)
        assert sw in (proto.SW_OK, proto.SW_REPLAY), hex(sw)
    assert purses_on(a) == []
    again = w.client.pending(a.id, status)  # no new update for a clear already sent
    assert again.update_number == got.update_number
    w.sync(a)  # the card's status shows the purse gone
    rep = w.client.programs("bus-2026")
    assert (rep["purses_closed"], rep["purses_cleared_on_card"]) == (1, 1)


def test_a_load_beyond_the_purses_a_card_holds_is_refused(world: PWorld) -> None:
    """A card holds MAX_PURSES earmarked purses (LOAD of another: 6919). A load that would be
    a card's 4th open purse is refused at the ledger, line by line: its voucher would stop at
    the card and hold back every voucher after it in the wallet's one sequence (payroll,
    top-ups). A closed purse frees its slot: the sync clears it before it loads the new one."""
    w = world
    a = w.wallet(1, load=1000)
    w.client.deposit("city", 100_000)
    names = [f"bus-{n}" for n in range(proto.MAX_PURSES + 1)]
    for name in names:
        w.client.program_create(name, "city", kind="subsidy", expires=w.clock.now() + 30 * DAY,
                                categories=[TRANSPORT])
    for name in names[:-1]:
        w.client.program_load(name, f"{a.id.hex()},100\n", f"{name}-r1")
    w.sync(a)
    w.sync(a)
    assert len(purses_on(a)) == proto.MAX_PURSES
    with pytest.raises(LedgerHTTPError) as e:
        w.client.program_load(names[-1], f"wallet,amount\n{a.id.hex()},100\n", "x-r1")
    ((line,),) = [e.value.problem["lines"]]
    assert e.value.status == 409 and line["line"] == 2, e.value.problem
    assert f"holds {proto.MAX_PURSES} open purses" in line["error"], line
    with pytest.raises(LedgerHTTPError, match="for programme bus-0: a reference is unique"):
        w.client.program_load(names[1], f"{a.id.hex()},50\n", "bus-0-r1")
    w.client.program_load(names[0], f"{a.id.hex()},50\n", "r2")  # a purse it holds: fine
    w.client.program_cancel(names[1])
    w.client.program_load(names[-1], f"{a.id.hex()},100\n", "r3")  # the freed slot
    w.client.deposit("alice", 700)
    w.client.load(a.id, 700, "top-up after")  # a main-purse voucher behind the purse ones
    w.sync(a)  # as the sync tool delivers: the updates (the clear) before the vouchers
    w.sync(a)
    assert sorted(b for _p, b in purses_on(a)) == [100, 100, 150]
    assert a.app.state[wst.S_BALANCE] == 1700  # the top-up behind them reached the card


def test_a_purse_cancelled_before_its_card_collected_it_is_cleared_once_loaded(
        world: PWorld) -> None:
    """Load, then cancel before the card's sync: that sync APPLYs the clearing update first (the
    card holds no such purse yet), then LOADs the purse voucher (a voucher cannot be skipped in
    the wallet's sequence). The next round's status shows the cancelled purse on the card: the
    ledger clears it again, and counts it cleared only once the card shows it gone after
    holding it. Before, the card kept the cancelled purse and could spend it (credited)."""
    w = world
    a = w.wallet(1, load=1000)
    subsidy(w)
    w.client.program_load("bus-2026", f"{a.id.hex()},3000\n", "jan")
    w.client.program_cancel("bus-2026")
    w.sync(a)  # APPLY the clear, LOAD the voucher
    assert purses_on(a) and purses_on(a)[0][1] == 3000
    assert w.client.programs("bus-2026")["purses_cleared_on_card"] == 0
    w.sync(a)  # the round that ships the LOAD's record
    assert purses_on(a) == []
    w.sync(a)
    rep = w.client.programs("bus-2026")
    assert (rep["refunded"], rep["outstanding"], rep["purses_cleared_on_card"]) == (3000, 0, 1)


def test_a_clear_sent_before_the_cards_purse_voucher_is_not_taken_for_its_clearing(
        world: PWorld) -> None:
    """A sync that APPLYs the clear and stops before the LOAD (cut off): the card's next status
    lacks the purse because it never loaded it, not because it cleared it. The ledger must not
    record it cleared then (a purse payment above that counter would be refused as expired and
    the honest card revoked); the purse is cleared after the card loads it."""
    w = world
    a = w.wallet(1, load=1000)
    bus = w.pos_cat(1, TRANSPORT)
    subsidy(w)
    w.client.program_load("bus-2026", f"{a.id.hex()},3000\n", "jan")
    w.client.program_cancel("bus-2026")
    records, status = w.export(a)
    res = w.client.ingest(a.id, records, status)
    for u in res.updates:  # the sync is cut off after the APPLY: no LOAD, no ACK
        assert apdu(a.app, proto.INS_APPLY, u)[1] == proto.SW_OK
    assert w.pay(a, bus, 500).approved  # a main-purse payment: the card has no purse yet
    w.sync(a)  # uploads the payment (status without the purse), then LOADs the voucher
    assert w.client.programs("bus-2026")["purses_cleared_on_card"] == 0
    w.sync(a)
    assert purses_on(a) == []
    w.sync(a)
    assert w.client.programs("bus-2026")["purses_cleared_on_card"] == 1


def test_clone_spending_a_purse_twice(world: PWorld, db_url: str) -> None:
    w = world
    a = w.wallet(1, load=1000)
    bus1, bus2 = w.pos_cat(1, TRANSPORT), w.pos_cat(2, TRANSPORT)
    subsidy(w)
    w.client.program_load("bus-2026", f"{a.id.hex()},3000\n", "jan")
    w.sync(a)
    flash = a.app.hal.flash
    image = flash.snapshot()
    assert w.pay(a, bus1, 3000).earmarked == 3000
    w.reflash(a, image)  # the clone: the same card state again
    assert w.pay(a, bus2, 3000).earmarked == 3000
    w.sync(bus1)
    res = w.sync(bus2)
    assert res.conflicts == 1 and res.loss == 3000
    rc = recount(w, "bus-2026")
    assert (rc["funded"], rc["to_merchants"], rc["outstanding"]) == (3000, 3000, 0)
    inv = w.client.invariant()
    assert inv["ok"] and inv["fraud_loss"] == 3000
    # the report's text: the merchants' lines add up to spent + what the issuer guaranteed
    from tapcash.host.cli import cli

    r = CliRunner().invoke(cli, ["ledger", "program", "report", "bus-2026", "--db", db_url])
    assert r.exit_code == 0, r.output
    assert "funded 30.00 = spent 30.00 + refunded 0.00 + outstanding 0.00" in r.output
    assert re.findall(r"category 4111: 1 payments, 30\.00", r.output) == [
        "category 4111: 1 payments, 30.00"] * 2
    assert "of which guaranteed beyond the purses: 30.00" in r.output, r.output
    assert "purses: 1, closed 0, cleared on the card 0" in r.output


def test_report_judges_the_state_by_the_ledgers_time_not_todays(db_url: str) -> None:
    """On a ledger whose clock runs ahead of today's (a simulated one: `tapcash sim run`
    starts in 2027), a programme the ledger expired and refunded reads `expired` in `tapcash
    ledger program report`, as its books (and `ledger check`) say; it read `active` by the
    wall clock. --at judges the state at a given time (#13)."""
    from tapcash.host.cli import cli
    from tapcash.host.output import iso

    w = PWorld(db_url)
    try:
        w.clock.advance(400 * DAY)  # the ledger's clock over a year ahead of the wall clock
        a = w.wallet(1)
        subsidy(w, expires=w.clock.now() + DAY)
        w.client.program_load("bus-2026", f"{a.id.hex()},3000\n", "jan")
        loaded = w.clock.now()
        run = CliRunner().invoke
        report = ["ledger", "program", "report", "--db", db_url]
        r = run(cli, report)
        assert r.exit_code == 0 and "bus-2026 (subsidy, active, funder city)" in r.output
        w.clock.advance(2 * DAY)
        assert w.client.program_sweep() == {"closed": 1, "refunded": 3000, "returned": 0}
        books = "funded 30.00 = spent 0.00 + refunded 30.00 + outstanding 0.00"
        r = run(cli, report)
        assert r.exit_code == 0, r.output
        assert f"bus-2026 (subsidy, expired, funder city): {books}" in r.output, r.output
        assert f"state as of {iso(w.clock.now())} (the books' latest time)" in r.output
        r = run(cli, ["ledger", "check", "--db", db_url])
        assert r.exit_code == 0 and f"programme bus-2026: {books}" in r.output, r.output
        # --at: the state at a given time, unix seconds or an ISO date (its end)
        r = run(cli, [*report, "--at", str(loaded), "--json"])
        row = json.loads(r.output)[0]
        assert (row["state"], row["as_of"], row["refunded"]) == ("active", iso(loaded), 3000)
        r = run(cli, [*report, "--at", "2999-12-31"])
        assert "expired" in r.output and "state as of 2999-12-31T23:59:59Z (--at)" in r.output
        r = run(cli, [*report, "--at", "soon"])
        assert r.exit_code == 2 and "unix seconds or an ISO date" in r.output
    finally:
        w.close()


def test_cli_create_load_report_check(db_url: str, tmp_path) -> None:
    from tapcash.host.cli import cli

    w = PWorld(db_url)
    try:
        a = w.wallet(1)
        w.client.deposit("city", 10_000)
        key = tmp_path / "issuer.key"
        w.issuer.save(key)
        run = CliRunner().invoke
        base = ["--db", db_url, "--issuer-key", str(key)]
        r = run(cli, ["ledger", "program", "create", "bus", "--funder", "city", "--kind",
                      "subsidy", "--expires", "2099-12-31", "--category", str(TRANSPORT), *base])
        assert r.exit_code == 0, r.output
        f = tmp_path / "purses.csv"
        f.write_text(f"wallet,amount\n{a.id.hex()},1500\n")
        r = run(cli, ["ledger", "program", "load", "bus", str(f), "--reference", "r1", *base])
        assert r.exit_code == 0 and "1 purses, total 15.00" in r.output, r.output
        r = run(cli, ["ledger", "program", "load", "bus", str(f), "--reference", "r1", *base])
        assert r.exit_code == 1 and "already" in r.output and "Traceback" not in r.output
        f.write_text(f"wallet,amount\n{a.id.hex()},abc\n")
        r = run(cli, ["ledger", "program", "load", "bus", str(f), "--reference", "r2", *base])
        assert r.exit_code == 1 and "line 2" in r.output and "nothing was loaded" in r.output
        f.write_bytes(b"\xff\xfe" + a.id.hex().encode() + b",10\n")  # not UTF-8: one line
        r = run(cli, ["ledger", "program", "load", "bus", str(f), "--reference", "r3", *base])
        assert r.exit_code == 1 and "not UTF-8 text" in r.output, r.output
        assert r.exception is None or isinstance(r.exception, SystemExit)
        # a prepaid package is loaded in whole units: a remainder could never be paid
        r = run(cli, ["ledger", "program", "create", "piano", "--funder", "city", "--kind",
                      "prepaid", "--expires", "2099-12-31", "--merchant", "5343484f4f4c3031",
                      "--unit", "25.00", *base])
        assert r.exit_code == 0, r.output
        f.write_text(f"wallet,amount\n{a.id.hex()},2600\n")
        r = run(cli, ["ledger", "program", "load", "piano", str(f), "--reference", "p1", *base])
        assert r.exit_code == 1 and "line 2: 26.00 is not a whole number of units of 25.00" in (
            r.output), r.output
        f.write_text(f"wallet,amount\n{a.id.hex()},1000000\n")  # more than the funder has
        r = run(cli, ["ledger", "program", "load", "piano", str(f), "--reference", "p2", *base])
        assert r.exit_code == 1 and "the load needs 10,000.00 more, 85.00 there" in r.output, (
            r.output)
        r = run(cli, ["ledger", "program", "report", "bus", "--db", db_url])
        assert r.exit_code == 0 and (
            "funded 15.00 = spent 0.00 + refunded 0.00 + outstanding 15.00" in r.output)
        r = run(cli, ["ledger", "program", "report", "--db", db_url, "--json"])
        assert r.exit_code == 0 and json.loads(r.output)[0]["funded"] == 1500
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", json.loads(r.output)[0]["expires"])
        r = run(cli, ["ledger", "check", "--db", db_url, "--json"])
        assert r.exit_code == 0 and '"programs"' in r.output
        # the check's table adds up to what is held (the purses too), and each programme's
        # books are a line of their own (#13)
        r = run(cli, ["ledger", "check", "--db", db_url])
        assert r.exit_code == 0, r.output
        assert re.search(r"purse\s+│\s+15\.00", r.output), r.output
        assert ("programme bus: funded 15.00 = spent 0.00 + refunded 0.00 + outstanding 15.00"
                in r.output)
        r = run(cli, ["ledger", "program", "cancel", "bus", *base])
        assert r.exit_code == 0 and "cancelled: 1 purses closed" in r.output, r.output
        r = run(cli, ["ledger", "check", "--db", db_url])
        assert r.exit_code == 0, r.output
        assert ("programme bus: funded 15.00 = spent 0.00 + refunded 15.00 + outstanding 0.00"
                in r.output)
        assert re.search(r"program\s+│\s+15\.00", r.output), r.output
    finally:
        w.close()


def test_ledger_check_fails_when_a_programme_does_not_balance(world: PWorld, db_url: str) -> None:
    """Value moved off a purse by a posting no programme rule makes (the global books still
    balance): `tapcash ledger check` names the programme and exits 1; put back, it passes."""
    from tapcash.host.cli import cli

    w = world
    a = w.wallet(1)
    subsidy(w)
    w.client.program_load("bus-2026", f"{a.id.hex()},1500\n", "jan")
    pid = programs.program_id("bus-2026")
    purse, prog = programs.purse_acct(pid, a.id), programs.program_acct(pid)

    def move(src: str, dst: str, amount: int, ref: str):
        def fn(tx):
            tx.execute("INSERT INTO postings (src, dst, amount, kind, ref, at) VALUES "
                       "(?, ?, ?, 'adjust', ?, 0)", (src, dst, amount, ref))
            tx.execute("UPDATE accounts SET balance = balance - ? WHERE name = ?", (amount, src))
            tx.execute("UPDATE accounts SET balance = balance + ? WHERE name = ?", (amount, dst))
        w.ledger.db.write(fn)

    run = CliRunner().invoke
    move(purse, prog, 500, "tamper")
    r = run(cli, ["ledger", "check", "--db", db_url])
    assert r.exit_code == 1, r.output
    assert "THE BOOKS DO NOT BALANCE" in r.output
    assert ("programme bus-2026: funded 15.00 != spent 0.00 + refunded 0.00 + outstanding "
            "10.00") in r.output
    assert "funded != spent + refunded + outstanding" in r.output
    move(prog, purse, 500, "untamper")
    r = run(cli, ["ledger", "check", "--db", db_url])
    assert r.exit_code == 0 and "programme bus-2026: funded 15.00 = spent 0.00" in r.output


def _simulated_books_without_their_last_sweep(out) -> tuple[str, object]:
    """A simulated district's ledger database (the simulator's own ledger, clock and devices:
    sim/scenario/builtin/programmes.toml made small, set in 2033), as a run stopped before its
    final syncs and report leaves it: the transport subsidy expired at the end of day 0 by the
    simulation's clock, day 1 booked after it, and the purses of the cards that did not sync
    since still open (the run's report would have swept them). (ledger.db, the issuer)."""
    import tomllib
    from pathlib import Path

    from tapcash.sim.run.runner import ScenarioRun
    from tapcash.sim.scenario import parse_scenario

    path = Path(programs.__file__).parents[2] / "sim/scenario/builtin/programmes.toml"
    data = tomllib.loads(path.read_text())
    data["scenario"]["start"] = 2_000_000_000 - 2_000_000_000 % DAY  # ahead of any wall clock
    data["wallets"]["count"] = 6
    data["payments"]["count"] = 12
    data["programs"][0]["payments"] = 6
    data["programs"][1].update(wallets=2, payments=2)
    data.pop("clones")
    run = ScenarioRun(parse_scenario(data), out)
    try:
        run.start_ledger()
        run.provision()
        run.simulate_days()  # not the final syncs, not collect() (the run's own sweep)
    finally:
        run.close()
    return str(out / "ledger.db"), run.issuer


def test_sweep_judges_expiry_by_the_ledgers_time_as_report_does(tmp_path) -> None:
    """`tapcash ledger program sweep` on a simulated district's database judged expiry by the
    wall clock: a programme `program report` (by the books' time) called expired kept its
    purses' value outstanding, and the sweep refunded nothing. Now sweep runs on the ledger's
    time for the database as report does (`--at` earlier, never later than it), and the two
    agree: what report had outstanding is refunded."""
    from tapcash.host.cli import cli
    from tapcash.host.output import iso

    db, issuer = _simulated_books_without_their_last_sweep(tmp_path / "district")
    key = tmp_path / "issuer.key"
    issuer.save(key)
    run = CliRunner().invoke

    def transport() -> dict:
        r = run(cli, ["ledger", "program", "report", "transport", "--db", db, "--json"])
        assert r.exit_code == 0, r.output
        return json.loads(r.output)[0]

    before = transport()
    assert before["state"] == "expired" and before["outstanding"] > 0, before
    books_t = json.loads(run(cli, ["ledger", "program", "report", "--db", db, "--json"]
                             ).output)[0]["as_of"]
    sweep = ["ledger", "program", "sweep", "--db", db, "--issuer-key", str(key)]
    r = run(cli, [*sweep, "--at", before["expires"]])  # its last moment: nothing to refund
    assert r.exit_code == 0 and ": 0 purses closed, 0.00 refunded" in r.output, r.output
    assert "(--at)" in r.output
    r = run(cli, [*sweep, "--at", "2999-12-31"])  # a refund before expiry: refused
    assert r.exit_code == 2 and "later than the ledger's time for this database" in r.output
    assert transport() == before
    r = run(cli, sweep)
    assert r.exit_code == 0, r.output
    assert f"swept as of {books_t} (the books' latest time):" in r.output, r.output
    assert f"{before['outstanding'] / 100:.2f} refunded" in r.output, r.output
    after = transport()
    assert after["outstanding"] == 0 and after["state"] == "expired"
    assert after["refunded"] == before["refunded"] + before["outstanding"]
    assert after["balanced"] and iso(0) != books_t
    r = run(cli, ["ledger", "check", "--db", db])
    assert r.exit_code == 0, r.output


# ---- the return to the funder (program_return) and late payments after it ----------------
def _balance(w: World, name: str) -> int:
    return w.ledger.db.read(lambda tx: int(tx.scalar(
        "SELECT balance FROM accounts WHERE name = ?", (name,), default=0) or 0))


def _returns(w: World, pid: bytes) -> list[tuple[str, int]]:
    return w.ledger.db.read(lambda tx: [(r[0], int(r[1])) for r in tx.all(
        "SELECT dst, amount FROM postings WHERE kind = 'program_return' AND src = ?",
        (programs.program_acct(pid),))])


def _split(w: World, name: str) -> tuple[int, int, int, int]:
    """(refunded, returned, held, late) recounted from the raw postings and the stored
    programme account (not the report's figures)."""
    pid = programs.program_id(name).hex()
    prog, purse = f"program:{pid}", f"purse:{pid}:"

    def fn(tx):
        refunded = returned = late = 0
        for src, dst, amount, kind in tx.all("SELECT src, dst, amount, kind FROM postings"):
            if src.startswith(purse) and dst == prog:
                refunded += amount
            elif src == prog and dst.startswith(purse) and kind != "purse_load":
                refunded -= amount
            elif src == "issuer:loss" and dst.startswith(purse):
                late += amount
            elif src == prog and dst.startswith("owner:"):
                returned += amount
        held = int(tx.scalar("SELECT balance FROM accounts WHERE name = ?", (prog,)))
        return refunded - late, returned, held, late

    return w.ledger.db.read(fn)


def test_the_refund_returns_to_the_funder_after_the_settling_window_once(
        world: PWorld, db_url: str) -> None:
    """An expired programme's refunded value is held in program:P through the settling window
    (the hot-list age: late honest payments reopen from it), then a sweep returns it to
    owner:F, exactly once however often the sweep runs."""
    from tapcash.host.cli import cli

    w = world
    a, bus, prog = _day_subsidy(w)
    pid = bytes.fromhex(prog["id"])
    assert w.pay(a, bus, 500).earmarked == 500
    w.sync(bus)
    funder0 = _balance(w, "owner:city")
    w.clock.advance(2 * DAY)
    assert w.client.program_sweep() == {"closed": 1, "refunded": 2500, "returned": 0}
    rep = w.client.programs("bus-2026")
    window = w.ledger.hotlist_max_age_s
    assert rep["returns_at"] == prog["expires"] + window
    assert (rep["refunded"], rep["returned"], rep["held"]) == (2500, 0, 2500)
    w.clock.advance(rep["returns_at"] - 1 - w.clock.now())  # the window not yet passed
    assert w.client.program_sweep()["returned"] == 0
    assert _balance(w, "owner:city") == funder0 and _returns(w, pid) == []
    w.clock.advance(1)
    assert w.client.program_sweep() == {"closed": 0, "refunded": 0, "returned": 2500}
    assert _balance(w, "owner:city") == funder0 + 2500
    for _ in range(2):  # again: nothing more
        assert w.client.program_sweep()["returned"] == 0
    assert _returns(w, pid) == [("owner:city", 2500)]
    rep = w.client.programs("bus-2026")
    assert (rep["refunded"], rep["returned"], rep["held"], rep["balanced"]) == (
        2500, 2500, 0, True)
    assert _split(w, "bus-2026") == (2500, 2500, 0, 0)
    r = CliRunner().invoke(cli, ["ledger", "program", "report", "bus-2026", "--db", db_url])
    assert "refunded: returned to the funder 25.00, held 0.00" in r.output, r.output
    r = CliRunner().invoke(cli, ["ledger", "check", "--db", db_url])
    assert r.exit_code == 0 and "(refunded: returned 25.00, held 0.00)" in r.output, r.output


def test_concurrent_sweeps_return_once(world: PWorld) -> None:
    import threading

    w = world
    a, _bus, prog = _day_subsidy(w)
    w.clock.advance(2 * DAY + w.ledger.hotlist_max_age_s)
    gate = threading.Barrier(4)
    outs: list[dict] = []

    def run() -> None:
        gate.wait()
        outs.append(programs.sweep(w.ledger))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(o["returned"] for o in outs) == [0, 0, 0, 3000]
    assert sum(o["refunded"] for o in outs) == 3000
    assert _returns(w, bytes.fromhex(prog["id"])) == [("owner:city", 3000)]
    assert w.ledger.invariant()["ok"]


def test_a_late_payment_after_the_return_is_credited_from_issuer_loss(world: PWorld) -> None:
    """A payment signed offline inside the programme, uploaded by a POS that stayed offline
    past the settling window, after the value went back to the funder: credited to the
    merchant all the same, covered by issuer:loss (`purse_late`), at most what that purse had
    refunded; the funder keeps its return; the books balance."""
    w = world
    a, bus, prog = _day_subsidy(w)
    r = w.pay(a, bus, 800)  # offline, inside the window; the POS does not sync
    assert r.approved and r.earmarked == 800
    w.clock.advance(2 * DAY + w.ledger.hotlist_max_age_s)
    assert w.client.program_sweep() == {"closed": 1, "refunded": 3000, "returned": 3000}
    funder = _balance(w, "owner:city")
    merchant = f"merchant:{bus.merchant.hex()}"
    before = _balance(w, merchant)
    res = w.sync(bus)  # the late upload
    assert res.refused == 0
    assert _balance(w, merchant) == before + 800  # credited, never refused
    assert _balance(w, "owner:city") == funder
    late = w.ledger.db.read(lambda tx: tx.all(
        "SELECT src, dst, amount FROM postings WHERE kind = 'purse_late'"))
    assert [tuple(x) for x in late] == [
        ("issuer:loss", programs.purse_acct(bytes.fromhex(prog["id"]), a.id), 800)]
    rep = w.client.programs("bus-2026")
    assert (rep["spent"], rep["refunded"], rep["returned"], rep["held"],
            rep["late_after_return"], rep["outstanding"]) == (800, 2200, 3000, 0, 800, 0)
    assert rep["balanced"] and _split(w, "bus-2026") == (2200, 3000, 0, 800)
    inv = w.client.invariant()
    assert inv["ok"] and inv["fraud_loss"] == 800 and inv["programs"]["ok"]
    w.sync(a)  # the card's purse clears; nothing else moves
    assert purses_on(a) == [] and w.client.programs("bus-2026")["returned"] == 3000


def test_ledger_check_fails_on_a_hand_broken_return(world: PWorld, db_url: str) -> None:
    from tapcash.host.cli import cli

    w = world
    a, _bus, prog = _day_subsidy(w)
    w.client.deposit("mallory", 100)
    pid = bytes.fromhex(prog["id"])
    acct = programs.program_acct(pid)
    w.clock.advance(2 * DAY)
    w.client.program_sweep()  # refunded, held in the programme account

    def sql(*stmts):
        def fn(tx):
            for s, args in stmts:
                tx.execute(s, args)
        w.ledger.db.write(fn)

    def check() -> tuple[int, str]:
        r = CliRunner().invoke(cli, ["ledger", "check", "--db", db_url])
        return r.exit_code, r.output

    assert check()[0] == 0
    # a "return" to another account than the funder's (the global books still balance)
    move = ("INSERT INTO postings (src, dst, amount, kind, ref, at) VALUES (?, ?, 1000, "
            "'program_return', 'tamper', ?)", (acct, "owner:mallory", w.clock.now()))
    sql(move, ("UPDATE accounts SET balance = balance - 1000 WHERE name = ?", (acct,)),
        ("UPDATE accounts SET balance = balance + 1000 WHERE name = 'owner:mallory'", ()))
    code, out = check()
    assert code == 1 and "returned other than to its funder" in out, out
    sql(("DELETE FROM postings WHERE ref = 'tamper'", ()),
        ("UPDATE accounts SET balance = balance + 1000 WHERE name = ?", (acct,)),
        ("UPDATE accounts SET balance = balance - 1000 WHERE name = 'owner:mallory'", ()))
    assert check()[0] == 0
    # the real return, then its posting lost (the balances kept)
    w.clock.advance(w.ledger.hotlist_max_age_s)
    assert w.client.program_sweep()["returned"] == 3000
    assert check()[0] == 0
    sql(("DELETE FROM postings WHERE kind = 'program_return'", ()))
    code, out = check()
    assert code == 1 and "refunded + late != returned + held" in out, out
    sql(("INSERT INTO postings (src, dst, amount, kind, ref, at) VALUES (?, 'owner:city', 3000, "
         "'program_return', ?, ?)", (acct, pid.hex(), w.clock.now())))
    assert check()[0] == 0


def test_the_settling_window_is_the_programmes_whoever_reads_the_database(
        world: PWorld, db_url: str, tmp_path) -> None:
    """A ledger served with another hot-list age (here 1 h) states returns_at by it, and the CLI
    on its database (`program report`, `program sweep --db`, a ledger of the default 7 days)
    stated and swept by 7 days. Now the window is recorded with the programme when it is
    created (programs.return_window): every reader states one returns_at and the CLI's sweep
    returns the value when the server's would, whatever age a later ledger runs with."""
    from tapcash.host.cli import cli

    w = world
    w.ledger.hotlist_max_age_s = 3600  # the server's configured hot-list age
    _a, _bus, prog = _day_subsidy(w)
    pid = bytes.fromhex(prog["id"])
    w.clock.advance(DAY + 1800)  # expired half an hour ago
    assert w.client.program_sweep() == {"closed": 1, "refunded": 3000, "returned": 0}
    want = prog["expires"] + 3600
    rep = w.client.programs("bus-2026")
    assert (rep["returns_at"], rep["return_window"]) == (want, 3600), rep
    run = CliRunner().invoke
    r = run(cli, ["ledger", "program", "report", "bus-2026", "--db", db_url, "--json"])
    assert r.exit_code == 0, r.output
    assert (json.loads(r.output)[0]["returns_at"], json.loads(r.output)[0]["return_window"]) == (
        want, 3600)
    w.ledger.hotlist_max_age_s = 7 * DAY  # restarted with another age: the programme keeps its
    assert w.client.programs("bus-2026")["returns_at"] == want
    w.clock.advance(1800)
    w.client.deposit("city", 1, "a stamp at returns_at")  # the books' time reaches it
    key = tmp_path / "issuer.key"
    w.issuer.save(key)
    funder0 = _balance(w, "owner:city")
    r = run(cli, ["ledger", "program", "sweep", "--db", db_url, "--issuer-key", str(key)])
    assert r.exit_code == 0 and "0.00 refunded, 30.00 returned to funders" in r.output, r.output
    assert _balance(w, "owner:city") == funder0 + 3000 and _returns(w, pid) == [
        ("owner:city", 3000)]
    # a programme created before the window was recorded (NULL): the default age, 7 days
    w.ledger.db.write(lambda tx: tx.execute("UPDATE programs SET return_window = NULL"))
    rep = w.client.programs("bus-2026")
    assert (rep["returns_at"], rep["return_window"]) == (prog["expires"] + 7 * DAY, 7 * DAY)


def test_a_purse_payment_racing_the_sweep_that_refunds_its_purse_is_spent_once(
        world: PWorld, monkeypatch) -> None:
    """A POS uploads a purse payment taken before the expiry while a sweep refunds that purse:
    the payment's spend and the refund must not both take the purse's value. Before, the
    ingest read the purse's balance without the programme's lock and the sweep read it under
    that lock: both moved value out of the same 30.00 (8.00 to the merchant, 30.00 refunded),
    and only the accounts' CHECK constraint (purse at -8.00) stopped it, failing the sweep
    with an unhandled error (a 500; in the other order the upload). The sweep is held after it
    read the purse (a pause, nothing replaced) while the POS uploads."""
    import threading

    w = world
    a, bus, prog = _day_subsidy(w)
    pid = bytes.fromhex(prog["id"])
    assert w.pay(a, bus, 800).earmarked == 800  # offline, inside the programme; no sync yet
    w.clock.advance(2 * DAY)
    read, go = threading.Event(), threading.Event()
    real = programs._close_purses

    def held(*args, **kw):
        out = real(*args, **kw)
        read.set()
        go.wait(20)
        return out

    monkeypatch.setattr(programs, "_close_purses", held)
    outs: list = []
    sweep = threading.Thread(target=lambda: outs.append(programs.sweep(w.ledger)))
    sweep.start()
    assert read.wait(20)
    upload = threading.Thread(target=lambda: outs.append(w.sync(bus)))
    upload.start()
    upload.join(3)  # a correct ingest waits here for the sweep's programme lock
    go.set()
    sweep.join(30)
    upload.join(30)
    assert len(outs) == 2
    purse = programs.purse_acct(pid, a.id)
    assert _balance(w, purse) == 0
    assert _balance(w, f"merchant:{bus.merchant.hex()}") == 800
    refunded, returned, held_, late = _split(w, "bus-2026")
    assert (refunded, returned, held_, late) == (2200, 0, 2200, 0)
    assert w.ledger.invariant()["ok"], w.ledger.invariant()


def _hold_the_first_cancel(monkeypatch) -> tuple:
    """Pause the first cancel right after it closed the purses (nothing replaced) until `go`."""
    import threading

    held, go = threading.Event(), threading.Event()
    real = programs._close_purses

    def pause(*args, **kw):
        out = real(*args, **kw)
        if not held.is_set():
            held.set()
            go.wait(20)
        return out

    monkeypatch.setattr(programs, "_close_purses", pause)
    return held, go


def test_two_cancels_at_once_state_one_cancellation(world: PWorld, monkeypatch) -> None:
    """A cancel answered while another was applying it: one cancellation time, the first's
    (before, the second read the programme before the lock and wrote its own time over it,
    moving the programme's end and returns_at). The first is held after it closed the purses
    (a pause, nothing replaced) while the second starts."""
    import threading

    w = world
    _a, _bus, prog = _day_subsidy(w)
    held, go = _hold_the_first_cancel(monkeypatch)
    outs: list[dict] = []
    first = threading.Thread(target=lambda: outs.append(programs.cancel(w.ledger, "bus-2026")))
    first.start()
    assert held.wait(20)
    w.clock.advance(5)
    second = threading.Thread(target=lambda: outs.append(programs.cancel(w.ledger, "bus-2026")))
    second.start()
    second.join(2)  # it waits for the programme's lock
    go.set()
    first.join(30)
    second.join(30)
    assert len(outs) == 2
    stored = w.client.programs("bus-2026")
    assert outs[0]["cancelled_at"] == outs[1]["cancelled_at"], outs
    assert sorted(o["refunded"] for o in outs) == [0, 3000]
    assert stored["returns_at"] == outs[0]["returns_at"] == outs[1]["returns_at"]
    _ = prog


def test_a_load_racing_a_cancel_is_refused(world: PWorld, monkeypatch) -> None:
    """A programme load that started while a cancel was applying it is refused (409) once the
    cancel has committed. Before, the load had read the programme before its lock and loaded a
    new purse into the cancelled programme: funder value on a card the cancel never refunded.
    The cancel is held after it closed the purses (a pause, nothing replaced)."""
    import threading

    w = world
    _a, _bus, _prog = _day_subsidy(w)
    b = w.wallet(2, owner="bob")
    held, go = _hold_the_first_cancel(monkeypatch)
    outs: list = []

    def load() -> None:
        try:
            outs.append(programs.load(w.ledger, "bus-2026", f"{b.id.hex()},1000\n", "feb"))
        except Exception as e:  # noqa: BLE001 - the outcome is the test's
            outs.append(e)

    cancel = threading.Thread(target=lambda: programs.cancel(w.ledger, "bus-2026"))
    cancel.start()
    assert held.wait(20)
    loader = threading.Thread(target=load)
    loader.start()
    loader.join(2)  # it waits for the programme's lock
    go.set()
    cancel.join(30)
    loader.join(30)
    assert len(outs) == 1
    assert getattr(outs[0], "status", None) == 409, outs
    pid = programs.program_id("bus-2026")
    assert _balance(w, programs.purse_acct(pid, b.id)) == 0
    rep = w.client.programs("bus-2026")
    assert rep["outstanding"] == 0 and rep["balanced"], rep

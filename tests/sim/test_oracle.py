"""The oracle judges without trusting the system under test: a fraud proof is verified from
its two signed bodies alone (PyNaCl, the wallet's certified key, a real conflict), whatever
the ledger calls it."""

from __future__ import annotations

from tapcash.firmware.core import cbor, proto
from tapcash.firmware.core.hal import Hal
from tapcash.firmware.wallet.app import WalletApp
from tapcash.host.issuer import Issuer
from tapcash.sim.device.flash import SimFlash
from tapcash.sim.device.hal import SeededRng
from tapcash.sim.device.provision import make_pair, make_pos, select
from tapcash.sim.nfc.field import DirectLink
from tapcash.sim.run.oracle import Certs, Signed, conflict, verify_proof


def _certs(pair) -> Certs:
    certs = Certs(pair.issuer.public_key)
    certs.add(select(pair.wallet)[proto.INFO_CERT])
    return certs


def test_a_clone_double_spend_is_a_proof():
    pair = make_pair(31)
    clone_flash = SimFlash()
    clone_flash.restore(pair.wallet_flash.snapshot())
    clone = WalletApp(Hal(flash=clone_flash, rng=SeededRng(5)))
    a = pair.pos.take_payment(1000)
    link2 = DirectLink(clone)
    pos2, _ = make_pos(pair.issuer, 2, pair.clock, link2)
    b = pos2.take_payment(700)
    assert a.approved and b.approved and a.counter == b.counter == 1
    ok, why = verify_proof(a.payment, b.payment, _certs(pair))
    assert ok and why == "same counter"


def test_two_honest_payments_are_no_proof_whatever_the_label():
    """Consecutive payments of an honest card: what a ledger mislabelled `chain_break` would
    hand over. The oracle finds the link intact and refuses it."""
    pair = make_pair(32)
    a = pair.pos.take_payment(1000)
    b = pair.pos.take_payment(500)
    certs = _certs(pair)
    assert (Signed.verify(a.payment, certs).counter, Signed.verify(b.payment, certs).counter) \
        == (1, 2)
    ok, why = verify_proof(a.payment, b.payment, certs)
    assert not ok and why == "the two bodies do not conflict"
    assert not verify_proof(a.payment, a.payment, certs)[0]  # one body twice


def test_a_body_not_signed_by_the_certified_key_is_no_proof():
    pair = make_pair(33)
    a = pair.pos.take_payment(1000)
    certs = _certs(pair)
    body_bytes, _sig = cbor.decode(a.payment)
    body = cbor.decode(body_bytes)
    body[proto.PAY_AMOUNT] = 999
    rogue = Issuer(b"\x01" * 32)
    forged = proto.seal(proto.TAG_PAYMENT, body, b"\x02" * 32)  # not the wallet's key
    ok, why = verify_proof(a.payment, forged, certs)
    assert not ok and "does not verify" in why
    # a certificate from another issuer is not believed at all
    other = Certs(rogue.public_key)
    try:
        other.add(select(pair.wallet)[proto.INFO_CERT])
    except ValueError:
        pass
    else:
        raise AssertionError("a certificate of another issuer was accepted")


def test_conflict_kinds():
    pair = make_pair(34)
    certs = _certs(pair)
    image = pair.wallet_flash.snapshot()
    a = Signed.verify(pair.pos.take_payment(1000).payment, certs)
    b = Signed.verify(pair.pos.take_payment(400).payment, certs)
    pair.wallet_flash.restore(image)
    pair.reboot_wallet()
    pos2, _ = make_pos(pair.issuer, 2, pair.clock, DirectLink(pair.wallet))
    c = Signed.verify(pos2.take_payment(300).payment, certs)  # counter 1 again
    d = Signed.verify(pos2.take_payment(200).payment, certs)  # counter 2, after c
    assert conflict(a, c) == "same counter"
    assert conflict(b, d) == "same counter"
    assert conflict(a, d) == "broken link"  # d follows c, not a
    assert conflict(a, b) is None and conflict(c, d) is None


def test_an_overspend_case_is_verified_against_value_recomputed():
    """No two bodies conflict in a clean chain signed with an extracted key; the oracle
    verifies such a case from the signed chain against the vouchers the wallet was given."""
    import base64

    from tapcash.sim.attacks.base import card_state
    from tapcash.sim.attacks.extracted import RogueCard
    from tapcash.sim.run.oracle import Oracle

    pair = make_pair(35, balance=1000)
    oracle = Oracle(pair.issuer.public_key)
    oracle.register(select(pair.wallet)[proto.INFO_CERT])
    rogue = RogueCard(card_state(pair.wallet_flash.snapshot()))
    pair.link.tap(rogue)
    envs = []
    for amount in (800, 900):  # 1,700 from a card given 1,000
        r = pair.pos.take_payment(amount)
        assert r.approved
        envs.append(r.payment)
        oracle.signed_by_card(r.payment, "rogue")
    books = {"vouchers": [[pair.wallet_id.hex(), 1000, proto.VSRC_TOPUP, "first", 1]]}
    case = {"proof_a": base64.b64encode(envs[0]).decode(),
            "proof_b": base64.b64encode(envs[1]).decode()}
    ok, why = oracle.judge_case(case, books)
    assert ok and "spends 1700 of 1000" in why
    # the same two bodies from a wallet that was given enough are no proof of anything
    books["vouchers"][0][1] = 5000
    assert oracle.judge_case(case, books) == (False, "the two bodies do not conflict; nor does "
                                                     "the chain overspend what the wallet was "
                                                     "given")


def test_an_overspend_named_at_an_early_counter_is_verified_from_every_body_held():
    """Bodies reach the ledger in any order: the one found uncovered may be an early counter
    whose own chain is covered. The oracle then counts every body of the wallet the ledger
    holds (each verified under the wallet's key), not the two in the case alone."""
    import base64
    import hashlib

    from tapcash.sim.attacks.base import card_state
    from tapcash.sim.attacks.extracted import RogueCard
    from tapcash.sim.run.oracle import Oracle

    pair = make_pair(36, balance=1000)
    oracle = Oracle(pair.issuer.public_key)
    oracle.register(select(pair.wallet)[proto.INFO_CERT])
    pair.link.tap(RogueCard(card_state(pair.wallet_flash.snapshot())))
    envs = [pair.pos.take_payment(a).payment for a in (600, 700)]
    for e in envs:
        oracle.signed_by_card(e, "rogue")
    first = base64.b64encode(envs[0]).decode()
    books = {"vouchers": [[pair.wallet_id.hex(), 1000, proto.VSRC_TOPUP, "first", 1]],
             "payments": []}
    case = {"proof_a": first, "proof_b": first}
    assert not oracle.judge_case(case, books)[0]  # nothing else held: no proof
    books["payments"] = [[pair.wallet_id.hex(), n + 1,
                          hashlib.sha256(cbor.decode(e)[0]).hexdigest(), "posted", "m"]
                         for n, e in enumerate(envs)]
    ok, why = oracle.judge_case(case, books)
    assert ok and "spend 1300 of 1000" in why


def test_a_balance_case_is_verified_against_the_vouchers_in_number_order():
    """A signed balance field that no count of the wallet's vouchers explains (an extracted
    key signing its own balance) is fraud; an honest balance is not."""
    import base64

    from tapcash.sim.attacks.base import card_state
    from tapcash.sim.attacks.extracted import RogueCard
    from tapcash.sim.run.oracle import Oracle

    pair = make_pair(37, balance=1000)
    oracle = Oracle(pair.issuer.public_key)
    oracle.register(select(pair.wallet)[proto.INFO_CERT])
    oracle.voucher_seen(pair.issuer.voucher(pair.wallet_id, 1, 1000))  # the first load
    assert oracle.prefix_sums(pair.wallet_id) == {0, 1000}
    honest = pair.pos.take_payment(300).payment  # balance 700: 700 + 300 = 1000
    oracle.signed_by_card(honest, "card")
    rogue = RogueCard(card_state(pair.wallet_flash.snapshot()))
    rogue.balance = 300  # signs balances as if it had been given 600
    pos2, _ = make_pos(pair.issuer, 2, pair.clock, DirectLink(rogue))
    forged = pos2.take_payment(100).payment  # counter 2, balance 200: 200 + 400 = 600
    oracle.signed_by_card(forged, "rogue")
    books = {"vouchers": [[pair.wallet_id.hex(), 1000, proto.VSRC_TOPUP, "first", 1]],
             "payments": []}
    b64 = lambda e: base64.b64encode(e).decode()  # noqa: E731
    ok, why = oracle.judge_case({"proof_a": b64(honest), "proof_b": b64(forged)}, books)
    assert ok and "no count of the vouchers" in why
    assert not oracle.judge_case({"proof_a": b64(honest), "proof_b": b64(honest)}, books)[0]


def test_earmarked_value_is_judged_by_the_accounts_a_posting_joins_not_its_label():
    """Postings the oracle reads from a ledger's purse and programme accounts: the moves a
    programme makes pass; the same value sent elsewhere fails, whatever kind the ledger calls
    the posting (a refunded purse's value paid out of the programme account to a merchant, a
    purse loaded from the float, a spend labelled a refund)."""
    from tapcash.sim.run.oracle import Oracle, programme_flow

    issuer = Issuer(b"\x07" * 32)
    pid, wallet = b"PROGRAM1", b"\x11" * 8
    o = Oracle(issuer.public_key)
    o.rule_seen(issuer.rule(pid, kind=proto.PROG_SUBSIDY, expires=2_000_000_000,
                            categories=[4111], funder="city"))
    o.purse_load(pid, wallet, 1000)
    prog, purse = f"program:{pid.hex()}", f"purse:{pid.hex()}:{wallet.hex()}"
    honest = [["owner:city", prog, 1000, "program_fund", "r"],
              [prog, purse, 1000, "purse_load", "w:1"],
              [purse, prog, 1000, "purse_refund", "refund"]]

    def judged(extra: list[list[object]], purse_balance: int = 0) -> list[str]:
        o.violations.clear()
        o.check_purses({"invariant": {}, "purse_postings": honest + extra,
                        "books": {"balances": {purse: purse_balance}, "payments": []}}, False)
        return [v.detail for v in o.violations]

    assert judged([]) == []
    for bad in ([prog, "merchant:" + "ab" * 8, 400, "purse_reopen", "x"],
                [prog, "merchant:" + "ab" * 8, 400, "settle", "x"],
                [purse, "merchant:" + "ab" * 8, 400, "purse_refund", "x"],
                [purse, "wallet:" + "22" * 8, 400, "transfer", "x"],
                ["issuer:float", purse, 400, "purse_load", "x"]):
        problems = judged([bad])
        assert problems and any("from " + str(bad[0]) in p for p in problems), (bad, problems)
    assert programme_flow(prog, purse, "purse_reopen") is None
    assert programme_flow(f"program:{'00' * 8}", purse, "purse_load") is not None  # other one


def test_a_category_rule_and_a_prepaid_package_are_judged_from_the_signed_bodies():
    """purse_merchant's category and prepaid shapes, as the oracle judges them: from the
    card-signed body, the payee's issuer-signed certificate (its category) and the
    issuer-signed rule (PyNaCl), whatever the ledger labels the case or the posting."""
    import base64

    from nacl.signing import SigningKey

    from tapcash.sim.run.oracle import Oracle

    issuer = Issuer(b"\x07" * 32)
    o = Oracle(issuer.public_key)
    seed, wid = b"\x21" * 32, b"\x11" * 8
    o.register(issuer.certify_wallet(wid, bytes(SigningKey(seed).verify_key),
                                     expires=2_000_000_000))
    bus, school = b"P" * 8, b"S" * 8  # a transport terminal (4111), a school's (8299)
    for pos, merchant, cat in ((bus, b"M" * 8, 4111), (school, b"N" * 8, 8299)):
        o.register(issuer.certify_pos(pos, b"\x05" * 32, merchant, expires=2_000_000_000,
                                      category=cat))
    ride, lessons = b"RIDES001", b"LESSONS1"
    o.rule_seen(issuer.rule(ride, kind=proto.PROG_SUBSIDY, expires=2_000_000_000,
                            categories=[4111], funder="city"))
    o.rule_seen(issuer.rule(lessons, kind=proto.PROG_PREPAID, expires=2_000_000_000,
                            merchants=[b"N" * 8], cap=1000, unit=250, funder="parents"))
    o.purse_load(ride, wid, 2000)
    o.purse_load(lessons, wid, 2000)

    def signed(program: bytes, payee: bytes, amount: int, earmarked: int, counter: int):
        env = proto.seal(proto.TAG_PAYMENT, {
            proto.PAY_WALLET: wid, proto.PAY_COUNTER: counter, proto.PAY_AMOUNT: amount,
            proto.PAY_PAYEE: payee, proto.PAY_CHALLENGE: bytes(16), proto.PAY_PREV: bytes(32),
            proto.PAY_PURSE: 1, proto.PAY_TIME: 1_800_000_000, proto.PAY_BALANCE: 0,
            proto.PAY_KIND: proto.PAYKIND_POS, proto.PAY_PROGRAM: program,
            proto.PAY_EARMARKED: earmarked}, seed)
        return env, o.signed_by_card(env, "card")

    cases = {
        "ride on the bus": (ride, bus, 500, 500, None),
        "ride at a school": (ride, school, 500, 500, "category 8299"),
        "two lessons": (lessons, school, 600, 500, None),
        "at another school": (lessons, bus, 500, 500, "does not allow merchant"),
        "a broken lesson": (lessons, school, 260, 260, "cap or unit"),
        "above the cap": (lessons, school, 1250, 1250, "cap or unit"),
    }
    b64 = lambda e: base64.b64encode(e).decode()  # noqa: E731
    for n, (name, (prog, payee, amount, earmarked, want)) in enumerate(cases.items(), 1):
        env, s = signed(prog, payee, amount, earmarked, n)
        why = o.purse_refusal(s)
        assert (why is None) if want is None else (want in why), (name, why)
        ok, _ = o.judge_case({"kind": "purse_rule", "proof_a": b64(env), "proof_b": b64(env)},
                             {})
        assert ok == (want is not None), name  # a purse_rule label proves nothing by itself
        # a release from escrow to the payee's merchant is judged the same way
        merchant = o.certs.merchant[payee]
        posts = []
        for p in (ride, lessons):
            acct, spent = f"purse:{p.hex()}:{wid.hex()}", earmarked if p == prog else 0
            posts += [[f"program:{p.hex()}", acct, 2000, "purse_load", "l"],
                      [acct, f"program:{p.hex()}", 2000 - spent, "purse_refund", "r"]]
            if spent:
                posts.append([acct, f"merchant:{merchant.hex()}", spent,
                              "purse_release" if p == lessons else "purse_spend",
                              f"{wid.hex()}:{n}:{s.hash.hex()[:16]}"])
        o.violations.clear()
        o.check_purses({"invariant": {}, "books": {"balances": {}, "payments": []},
                        "purse_postings": posts}, False)
        assert bool(o.violations) == (want is not None), (name, o.violations)


def test_an_expired_category_subsidy_and_prepaid_package_are_judged_from_the_signed_bodies():
    """purse_clock's category and prepaid shapes, as the oracle judges them: a body whose signed
    time is past the rule's expiry (late_card) is a verified purse_expired case, one in the
    window is not (the label proves nothing); a spend or release from escrow of a body the run's
    clock saw signed after the expiry is a violation once the payee POS had synced since the
    expiry (clock_back), and within the bound when neither side had (stale_pos), whatever the
    time the POS wrote in the body."""
    import base64

    from nacl.signing import SigningKey

    from tapcash.sim.run.oracle import Oracle

    issuer = Issuer(b"\x07" * 32)
    o = Oracle(issuer.public_key)
    o.start, end = 1_800_000_000, 1_800_001_200  # the run's t = 0; the programmes' expiry
    seed, wid = b"\x22" * 32, b"\x12" * 8
    o.register(issuer.certify_wallet(wid, bytes(SigningKey(seed).verify_key),
                                     expires=2_000_000_000))
    bus, school = b"P" * 8, b"S" * 8
    for pos, merchant, cat in ((bus, b"M" * 8, 4111), (school, b"N" * 8, 8299)):
        o.register(issuer.certify_pos(pos, b"\x05" * 32, merchant, expires=2_000_000_000,
                                      category=cat))
    ride, lessons = b"RIDESEXP", b"LESSONSX"
    o.rule_seen(issuer.rule(ride, kind=proto.PROG_SUBSIDY, valid_from=o.start, expires=end,
                            categories=[4111], funder="city"))
    o.rule_seen(issuer.rule(lessons, kind=proto.PROG_PREPAID, valid_from=o.start, expires=end,
                            merchants=[b"N" * 8], cap=1000, unit=250, funder="parents"))
    o.purse_load(ride, wid, 2000)
    o.purse_load(lessons, wid, 2000)
    b64 = lambda e: base64.b64encode(e).decode()  # noqa: E731

    def signed(program: bytes, payee: bytes, earmarked: int, counter: int, pos_time: int,
               run_t: int):
        env = proto.seal(proto.TAG_PAYMENT, {
            proto.PAY_WALLET: wid, proto.PAY_COUNTER: counter, proto.PAY_AMOUNT: earmarked,
            proto.PAY_PAYEE: payee, proto.PAY_CHALLENGE: bytes(16), proto.PAY_PREV: bytes(32),
            proto.PAY_PURSE: 1, proto.PAY_TIME: pos_time, proto.PAY_BALANCE: 0,
            proto.PAY_KIND: proto.PAYKIND_POS, proto.PAY_PROGRAM: program,
            proto.PAY_EARMARKED: earmarked}, seed)
        o.now = run_t
        return env, o.signed_by_card(env, "card")

    def flagged(prog: bytes, payee: bytes, s) -> bool:
        acct = f"purse:{prog.hex()}:{wid.hex()}"
        other = lessons if prog == ride else ride
        posts = [[f"program:{prog.hex()}", acct, 2000, "purse_load", "l"],
                 [acct, f"program:{prog.hex()}", 2000 - s.earmarked, "purse_refund", "r"],
                 [acct, f"merchant:{o.certs.merchant[payee].hex()}", s.earmarked,
                  "purse_release" if prog == lessons else "purse_spend",
                  f"{wid.hex()}:{s.counter}:{s.hash.hex()[:16]}"],
                 [f"program:{other.hex()}", f"purse:{other.hex()}:{wid.hex()}", 2000,
                  "purse_load", "l"],
                 [f"purse:{other.hex()}:{wid.hex()}", f"program:{other.hex()}", 2000,
                  "purse_refund", "r"]]
        o.violations.clear()
        o.check_purses({"invariant": {}, "books": {"balances": {}, "payments": []},
                        "purse_postings": posts}, False)
        return bool(o.violations)

    counter = 0
    for prog, payee, earmarked in ((ride, bus, 500), (lessons, school, 750)):
        # late_card: the card's copy of the rule rewritten, an honest clock past the expiry
        counter += 1
        env, s = signed(prog, payee, earmarked, counter, end + 120, 1320)
        assert "outside the rule's window" in (o.purse_refusal(s) or ""), prog
        case = {"kind": "purse_expired", "proof_a": b64(env), "proof_b": b64(env)}
        assert o.judge_case(case, {})[0], prog
        # the same label on a body signed in the window proves nothing
        counter += 1
        env, s = signed(prog, payee, earmarked, counter, end - 600, 600)
        assert o.purse_refusal(s) is None
        case = {"kind": "purse_expired", "proof_a": b64(env), "proof_b": b64(env)}
        assert not o.judge_case(case, {})[0], prog
        # a POS clock set back 300 s: the body says before the expiry, the run's clock after it
        counter += 1
        env, s = signed(prog, payee, earmarked, counter, end - 180, 1320)
        assert o.purse_refusal(s) is None  # the body alone cannot tell
        o.synced_at.clear()
        assert not flagged(prog, payee, s), o.violations  # stale_pos: neither side synced
        o.synced_at[payee].append(1260)  # clock_back: the POS synced after the expiry
        assert flagged(prog, payee, s), prog
        assert any("after the POS synced past the expiry" in str(v) for v in o.violations), (
            o.violations)
        o.synced_at.clear()

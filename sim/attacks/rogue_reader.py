"""A rogue reader (a café terminal nobody certified) gets an honest card into its field and
sends what it likes: receipts naming the card's last payment with signatures of its own (as
many as the journal holds), and garbage commands. Nothing it sends may block the card's next
sync, fill its journal, or change any money."""

from __future__ import annotations

import hashlib
import random
from typing import Any

import cbor2

from tapcash.firmware.core import proto
from tapcash.sim.run.oracle import Attack

from .base import AttackKind

FUZZ_INS = (proto.INS_RECEIPT, proto.INS_LOAD, proto.INS_APPLY, proto.INS_ACK, proto.INS_RECEIVE,
            proto.INS_GET_LAST, proto.INS_EXPORT, 0x00, 0xFF)


class RogueReader(AttackKind):
    name = "rogue_reader"
    expect = "harmless"

    def plan(self, rng, targets, t, tag, sc) -> list[dict[str, Any]]:
        return [self.ev(t, tag, self.name, 0, targets.victim(), "", rng.randrange(1 << 30))]

    def step(self, run, ev) -> None:
        rng = random.Random(ev.amount)
        card = run.devices[ev.device]
        atk = run.oracle.attack(Attack(ev.tag, self.name, b"", run.now_rel(), expect="harmless",
                                       note=ev.device))
        fld = run.field_for("rogue-reader")
        fld.tap(card)
        sent = refused = 0
        try:
            send = fld.transceive
            send(proto.build_command(proto.CLA_ISO, proto.INS_SELECT, 4, 0, proto.AID))
            last = send(proto.build_command(proto.CLA_PROP, proto.INS_GET_LAST, 0, 0))
            body: dict[int, Any] = {}
            h = b""
            if last[-2:] == b"\x90\x00":
                bb = cbor2.loads(last[:-2])[0]
                body = cbor2.loads(bb)
                h = hashlib.sha256(bb).digest()
            for k in range(80):  # more than the 64-record journal
                if body:
                    rcpt = {0: body[proto.PAY_PAYEE], 1: body[proto.PAY_WALLET],
                            2: body[proto.PAY_COUNTER], 3: body[proto.PAY_AMOUNT], 4: h, 5: k + 1,
                            6: 0}
                    env = cbor2.dumps([cbor2.dumps(rcpt, canonical=True), rng.randbytes(64)])
                    apdu = proto.build_command(proto.CLA_PROP, proto.INS_RECEIPT, 0, 0, env)
                else:
                    ins = rng.choice(FUZZ_INS)
                    apdu = proto.build_command(proto.CLA_PROP, ins, 0, 0,
                                               rng.randbytes(rng.randrange(0, 120)))
                resp = send(apdu)
                sent += 1
                refused += resp[-2:] != b"\x90\x00"
            for _ in range(20):
                ins = rng.choice(FUZZ_INS)
                send(proto.build_command(proto.CLA_PROP, ins, 0, 0,
                                         rng.randbytes(rng.randrange(0, 120))))
                sent += 1
        finally:
            fld.remove()
        atk.note = f"{ev.device}: {sent} commands, {refused} receipts refused"
        run.adv.watch_victim(atk, ev.device)

    def final_check(self, run, atk) -> list[str]:
        return run.adv.victim_problems(atk)


class RoguePayee(AttackKind):
    """A rogue reader asks an honest card for a payment below the no-CVM limit (no PIN) to a
    payee id of its own choosing that is no registered terminal. The card cannot tell (it
    checks no payee certificate on a main-purse payment); the ledger refuses the payment
    (`refused:unknown payee`) and credits nobody. The holder must not lose the value."""

    name = "rogue_payee"
    expect = "harmless"

    def plan(self, rng, targets, t, tag, sc) -> list[dict[str, Any]]:
        lim = {**proto.DEFAULT_LIMITS, **dict(sc.wallets.limits)}
        amount = rng.randrange(10, max(20, min(lim[proto.LIM_NO_CVM], 2000)), 10)
        return [self.ev(t, tag, self.name, 0, targets.victim(), "", amount)]

    def step(self, run, ev) -> None:
        card = run.devices[ev.device]
        atk = run.oracle.attack(Attack(ev.tag, self.name, b"", run.now_rel(), expect="harmless",
                                       note=ev.device))
        fld = run.field_for("rogue-reader")
        from tapcash.sim.run.oracle import CardTap

        fld.tap(CardTap(card, run.oracle, ev.device))
        try:
            fld.transceive(proto.build_command(proto.CLA_ISO, proto.INS_SELECT, 4, 0, proto.AID))
            req = {proto.REQ_CHALLENGE: hashlib.sha256(ev.tag.encode()).digest()[:16],
                   proto.REQ_AMOUNT: ev.amount, proto.REQ_PAYEE: b"\xee" * 8,
                   proto.REQ_TIME: run.clock.now(), proto.REQ_KIND: proto.PAYKIND_POS}
            resp = fld.transceive(proto.build_command(proto.CLA_PROP, proto.INS_PAY, 0, 0,
                                                      cbor2.dumps(req, canonical=True)))
        finally:
            fld.remove()
        atk.note = f"{ev.device} paid {ev.amount} to a stranger: {resp[-2:].hex()}"

"""Key extraction: the attacker reads the device key seed out of a card's flash and from then
on answers readers with a card of their own making (`RogueCard`): the genuine certificate, an
INFO that lies (counter of its own chain, offline payments left always 10), and any payment
body the protocol allows, signed with the real key. Variants (seeded):

- `overspend`: a clean chain (no counter reused, every link right) continuing the card's own,
  spending far beyond its balance at several terminals: only the ledger's books (what the
  wallet was given against what it signed) can tell;
- `conflict`: a counter the genuine card already used, signed again with other content;
- `transfer`: the clean chain spent as transfers to a colluding card, which syncs to get the
  value released.
The genuine card stays with the attacker, unused, and syncs at the end like any card."""

from __future__ import annotations

import hashlib
from typing import Any

import cbor2

from tapcash.firmware.core import proto
from tapcash.firmware.wallet import state as st
from tapcash.sim.run.oracle import Attack

from .base import AttackKind, card_state, key_bound, limits_of

VARIANTS = ("overspend", "conflict", "transfer")


class RogueCard:
    """A card answering with an extracted key. Implements the field's Card protocol."""

    def __init__(self, state: dict[int, Any], *, offline_left: int = 10) -> None:
        self.seed = state[st.S_SEED]
        self.id = state[st.S_ID]
        self.cert = state[st.S_CERT]
        self.counter = state[st.S_COUNTER]
        self.prev = state[st.S_PREV]
        self.balance = state[st.S_BALANCE]
        self.offline_left = offline_left
        self.last_challenge: bytes | None = state.get(st.S_LAST_CHAL)
        self.last: bytes | None = None

    def power_on(self) -> None:
        pass

    def rewind(self, counter: int, prev: bytes) -> None:
        self.counter, self.prev = counter, prev

    def process(self, apdu: bytes) -> bytes:
        ins = apdu[1] if len(apdu) > 1 else 0
        if ins in (proto.INS_SELECT, proto.INS_GET_INFO):
            info = {proto.INFO_VERSION: proto.VERSION, proto.INFO_ID: self.id,
                    proto.INFO_CERT: self.cert, proto.INFO_COUNTER: self.counter,
                    proto.INFO_OFFLINE_LEFT: self.offline_left, proto.INFO_FLAGS: 0}
            if self.last_challenge is not None:
                info[proto.INFO_LAST_CHALLENGE] = self.last_challenge
            return cbor2.dumps(info, canonical=True) + b"\x90\x00"
        if ins == proto.INS_VERIFY_PIN or ins == proto.INS_RECEIPT:
            return b"\x90\x00"
        if ins == proto.INS_PAY:
            _c, _i, _p1, _p2, data, _le = proto.parse_command(apdu)
            req = cbor2.loads(data)
            self.balance = max(0, self.balance - req[proto.REQ_AMOUNT])
            body = {
                proto.PAY_WALLET: self.id, proto.PAY_COUNTER: self.counter + 1,
                proto.PAY_AMOUNT: req[proto.REQ_AMOUNT], proto.PAY_PAYEE: req[proto.REQ_PAYEE],
                proto.PAY_CHALLENGE: req[proto.REQ_CHALLENGE], proto.PAY_PREV: self.prev,
                proto.PAY_PURSE: 0, proto.PAY_TIME: req.get(proto.REQ_TIME, 0),
                proto.PAY_BALANCE: self.balance,
                proto.PAY_KIND: req.get(proto.REQ_KIND, proto.PAYKIND_POS),
            }
            env = proto.seal(proto.TAG_PAYMENT, body, self.seed)
            body_bytes = cbor2.loads(env)[0]
            self.counter += 1
            self.prev = hashlib.sha256(body_bytes).digest()
            self.last_challenge = req[proto.REQ_CHALLENGE]
            self.last = env
            return env + b"\x90\x00"
        return b"\x6d\x00"


class ExtractedKey(AttackKind):
    name = "extracted_key"

    def plan(self, rng, targets, t, tag, sc) -> list[dict[str, Any]]:
        w = targets.attacker()
        variant = rng.choice(VARIANTS)
        colluder = targets.attacker() if variant == "transfer" else ""
        lim = {**proto.DEFAULT_LIMITS, **dict(sc.wallets.limits)}
        top = max(100, min(lim[proto.LIM_NO_CVM], lim[proto.LIM_PAYMENT_MAX]))
        n = rng.randint(3, 6)
        out = [self.ev(t, tag, self.name, 0, w, f"{variant}:{colluder}")]
        for k in range(1, n + 1):
            where = colluder if variant == "transfer" else targets.any_pos()
            out.append(self.ev(t + 120 * k, tag, self.name, k, w, where,
                               rng.randrange(top // 2, top + 1, 10)))
        return out

    def step(self, run, ev) -> None:
        rogue_name = f"{ev.device}-key-{ev.tag}"
        if ev.count == 0:
            variant, _, colluder = ev.wallet.partition(":")
            state = card_state(run.devices[ev.device].snapshot())
            card = RogueCard(state)
            if variant == "conflict" and card.counter >= 1:
                # sign the genuine card's last counter again: rewind one step
                body = cbor2.loads(state[st.S_LAST_BODY])
                card.rewind(card.counter - 1, bytes(body[proto.PAY_PREV]))
            lim = limits_of(run, ev.device)
            floor = run.sc.pos.config.get(proto.CFG_FLOOR,
                                          proto.DEFAULT_POS_CONFIG[proto.CFG_FLOOR])
            payees = 1 if variant == "transfer" else run.sc.pos.count
            run.oracle.attack(Attack(ev.tag, self.name, run.ids[ev.device], run.now_rel(),
                                     bound=key_bound(lim, payees, floor, state[st.S_COUNTER]),
                                     note=variant))
            if colluder:
                run.oracle.attacker_wallets.add(run.ids[colluder])
            run.adv.add_attacker_device(rogue_name, card, run.ids[ev.device])
            run.adv.retire(ev.device)  # the genuine card stays in a drawer until the final sync
            return
        atk = run.adv.attack_of(ev.tag)
        if ev.wallet.startswith("wallet-"):
            run.adv.attack_transfer(atk, rogue_name, ev.wallet, ev.amount)
            run.sync(ev.wallet)
        else:
            run.adv.attack_pay(atk, ev.wallet, rogue_name, ev.amount)

"""Replays: what was valid once, sent again. `pos_envelope`: a card answers a POS's PAY with a
payment envelope it made earlier (another challenge); `batch`: a journal batch the ledger
already took is uploaded again after the device moved on; `device`: the LOAD, APPLY and ACK
commands of an earlier sync are sent to the card again. Each must be refused or be a no-op:
no payment taken, no books changed, no card state changed."""

from __future__ import annotations

from typing import Any

from tapcash.sim.run.oracle import Attack

from .base import AttackKind

VARIANTS = ("pos_envelope", "batch", "device")


class Replay(AttackKind):
    name = "replay"
    expect = "harmless"

    def plan(self, rng, targets, t, tag, sc) -> list[dict[str, Any]]:
        variant = rng.choice(VARIANTS)
        dev = targets.any_pos() if variant == "pos_envelope" else targets.victim()
        if variant == "batch" and rng.random() < 0.5:
            dev = targets.any_pos()
        return [self.ev(t, tag, self.name, 0, dev, variant),
                self.ev(t + rng.randrange(600, 4 * 3600), tag, self.name, 1, dev, variant)]

    def step(self, run, ev) -> None:
        variant = ev.wallet
        if ev.count == 0:
            atk = run.oracle.attack(Attack(ev.tag, self.name, b"", run.now_rel(),
                                           expect="harmless", note=f"{variant} {ev.device}"))
            run.adv.replay_capture(atk, ev.device, variant)
            return
        run.adv.replay_fire(run.adv.attack_of(ev.tag), ev.device, variant)

"""A card holder with a flash programmer copies the card's whole flash into a second card; the
card and its clone pay at two terminals that are offline from each other. Refused offline by
the same POS (its last-counter table); two POS cannot know: the ledger gets two bodies for one
(wallet, counter) at the first sync of the second of them."""

from __future__ import annotations

from typing import Any

from tapcash.sim.run.oracle import Attack

from .base import AttackKind, image_bound, limits_of


class Clone(AttackKind):
    name = "clone"

    def plan(self, rng, targets, t, tag, sc) -> list[dict[str, Any]]:
        w = targets.attacker()
        a, b = targets.two_pos()
        amount = rng.randrange(100, 3000, 10)
        gap = rng.randrange(30, 3 * 3600)
        return [self.ev(t, tag, self.name, 0, w, a, amount),
                self.ev(t + gap, tag, self.name, 1, w, b, rng.randrange(100, 3000, 10))]

    def step(self, run, ev) -> None:
        clone = f"{ev.device}-clone-{ev.tag}"
        if ev.count == 0:
            atk = run.oracle.attack(Attack(ev.tag, self.name, run.ids[ev.device], run.now_rel(),
                                           bound=image_bound(limits_of(run, ev.device))))
            run.adv.make_clone(ev.device, clone, ev.tag)
            run.adv.attack_pay(atk, ev.wallet, ev.device, ev.amount)
        else:
            run.adv.attack_pay(run.adv.attack_of(ev.tag), ev.wallet, clone, ev.amount)

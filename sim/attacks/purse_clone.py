"""A card's flash copied into a second card, both spending the same earmarked purse at two
terminals its rule allows, offline from each other. Each terminal is right to take it; the
ledger gets two bodies for one (wallet, counter): a double-spend case with both bodies as proof,
the second merchant guaranteed (`purse_guarantee` from issuer:loss, within the clone bound),
and the programme's books still balance (funded = spent + refunded + outstanding). Shapes
(seeded): `subsidy`, a subsidy of PURSE naming both merchants; `prepaid`, a prepaid lesson
package of CAP bound to both schools (UNIT a lesson, at most CAP a payment), released from
escrow per use: each copy pays whole lessons from the same package, so the second release finds
the escrow short and the rest is the guarantee's, never more of the funder's escrow than was
loaded; `category`, a subsidy of PURSE naming both terminals' merchant categories (their
certificates', not their ids), each copy spending it at a terminal of an allowed category. The
shapes are `programme.RULE_SHAPES` (`subsidy` is its `merchant`)."""

from __future__ import annotations

from typing import Any

from tapcash.sim.run.oracle import Attack

from .base import AttackKind, image_bound, limits_of
from .programme import CAP, PURSE, UNIT, open_programme

SHAPES = ("subsidy", "prepaid", "category")
RULE = {"subsidy": "merchant", "prepaid": "prepaid", "category": "category"}  # RULE_SHAPES


class PurseClone(AttackKind):
    name = "purse_clone"

    def plan(self, rng, targets, t, tag, sc) -> list[dict[str, Any]]:
        w = targets.attacker()
        a, b = targets.two_pos()
        shape = rng.choice(SHAPES)
        lo = UNIT if shape == "prepaid" else 200  # at least a lesson, so the package pays
        return [
            self.ev(t, tag, self.name, 0, w, f"{shape}:{a}:{b}"),
            self.ev(t + 60, tag, self.name, 1, w, a, rng.randrange(lo, PURSE, 10)),
            self.ev(
                t + 60 + rng.randrange(30, 3600),
                tag,
                self.name,
                2,
                w,
                b,
                rng.randrange(lo, PURSE, 10),
            ),
        ]

    def step(self, run, ev) -> None:
        clone = f"{ev.device}-clone-{ev.tag}"
        if ev.count == 0:
            shape, a, b = ev.wallet.split(":")
            run.oracle.attack(
                Attack(
                    ev.tag,
                    self.name,
                    run.ids[ev.device],
                    run.now_rel(),
                    bound=image_bound(limits_of(run, ev.device)),
                    note=f"{shape}: ",
                )
            )
            open_programme(run, ev.tag, ev.device, [a, b], shape=RULE[shape],
                           amount=CAP if shape == "prepaid" else PURSE)
            return
        atk = run.adv.attack_of(ev.tag)
        if ev.count == 1:
            run.adv.make_clone(ev.device, clone, ev.tag)
            rec = run.adv.attack_pay(atk, ev.wallet, ev.device, ev.amount)
        else:
            rec = run.adv.attack_pay(atk, ev.wallet, clone, ev.amount)
        atk.note += f"{ev.wallet} {rec.status} earmarked {rec.earmarked}; "

"""Earmarked value spent at a merchant its rule does not allow. The holder rewrites the purse
rule in the card's flash (adding merchant B; the issuer's signature no longer fits, and the card
reads the rule back unverified at PAY), then pays B from the purse. Variants (seeded):

- `colluding`: B runs a build that takes any rule the card shows: it approves and journals the
  payment, and uploads it at its sync;
- `honest`: B checks the rule's signature and declines (`purse_rule`), but the card has signed
  and journaled the payment: it reaches the ledger with the card's sync.

Either way the ledger must credit nobody and open a `purse_rule` case holding the body (the
oracle judges it from the signed body and the issuer-signed rule alone)."""

from __future__ import annotations

from typing import Any

from tapcash.firmware.core import proto
from tapcash.sim.run.oracle import Attack

from .base import AttackKind
from .programme import PURSE, LaxRules, local_pos, merchant_of, open_programme, rewrite_rule

VARIANTS = ("colluding", "honest")


class PurseMerchant(AttackKind):
    name = "purse_merchant"

    def plan(self, rng, targets, t, tag, sc) -> list[dict[str, Any]]:
        w = targets.attacker()
        a, b = targets.two_pos()
        variant = rng.choice(VARIANTS)
        amount = rng.randrange(200, PURSE, 10)
        return [
            self.ev(t, tag, self.name, 0, w, f"{variant}:{a}:{b}"),
            self.ev(t + rng.randrange(300, 3600), tag, self.name, 1, w, b, amount),
        ]

    def step(self, run, ev) -> None:
        if ev.count == 0:
            variant, a, b = ev.wallet.split(":")
            atk = run.oracle.attack(
                Attack(ev.tag, self.name, run.ids[ev.device], run.now_rel(), note=f"{variant} {b}")
            )
            run.adv.captured[ev.tag] = {"programme": open_programme(run, ev.tag, ev.device, [a])}
            return
        atk = run.adv.attack_of(ev.tag)
        pos = ev.wallet
        other = merchant_of(run, pos)
        ok = rewrite_rule(
            run,
            ev.device,
            run.adv.captured[ev.tag]["programme"],
            lambda r: r.__setitem__(
                proto.RULE_MERCHANTS, list(r.get(proto.RULE_MERCHANTS, [])) + [other]
            ),
        )
        if not ok:
            atk.note += ": the card holds no purse to rewrite"
        if atk.note.startswith("colluding"):
            local_pos(run, pos).app.rules = LaxRules()  # the merchant's build
        rec = run.adv.attack_pay(atk, pos, ev.device, ev.amount)
        atk.note += f": {pos} {rec.status} ({rec.reason}), earmarked {rec.earmarked}"
        if atk.note.startswith("colluding") and pos in run.devices:
            app = getattr(run.devices[pos], "app", None)
            if app is not None:
                app.rules = None  # back to the honest build

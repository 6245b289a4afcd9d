"""Earmarked value spent where its rule does not allow. The holder rewrites the purse rule in
the card's flash (the issuer's signature no longer fits, and the card reads the rule back
unverified at PAY), then pays from the purse. Which rule and which rewrite (seeded shapes):

- `merchant`: a subsidy naming merchant A's id; the copy adds merchant B; paid at B;
- `category`: a subsidy naming A's merchant category (from A's certificate, e.g. transport
  4111); the copy adds B's category; paid at B, a terminal of another category;
- `prepaid_school`: a prepaid lesson package bound to school A; the copy adds school B; paid
  at B;
- `prepaid_units`: a prepaid package at school A (a lesson UNIT, at most CAP a payment); the
  copy drops the unit and the cap; paid at A an amount that is not whole lessons (and may be
  above the cap), all of it from the purse.

and which terminal takes it (seeded variants):

- `colluding`: the payee runs a build that takes any rule the card shows: it approves and
  journals the payment, and uploads it at its sync;
- `honest`: the payee checks the rule's signature and declines (`purse_rule`), but the card has
  signed and journaled the payment: it reaches the ledger with the card's sync.

Either way the ledger must credit nobody (no spend, no release from escrow) and open a
`purse_rule` case holding the body (the oracle judges it from the card-signed body, the
issuer-signed certificate of the payee with its category and the issuer-signed rule alone)."""

from __future__ import annotations

from typing import Any

from tapcash.firmware.core import proto
from tapcash.sim.run.oracle import Attack

from .base import AttackKind
from .programme import (
    PURSE,
    UNIT,
    LaxRules,
    category_of,
    local_pos,
    merchant_of,
    open_programme,
    rewrite_rule,
)

VARIANTS = ("colluding", "honest")
SHAPES = ("merchant", "category", "prepaid_school", "prepaid_units")


def _widen(rule: dict[int, Any], key: int, value: Any) -> None:
    rule[key] = list(rule.get(key, [])) + [value]


def _unbound(rule: dict[int, Any]) -> None:
    rule.pop(proto.RULE_UNIT, None)
    rule.pop(proto.RULE_CAP, None)


class PurseMerchant(AttackKind):
    name = "purse_merchant"

    def plan(self, rng, targets, t, tag, sc) -> list[dict[str, Any]]:
        w = targets.attacker()
        a, b = targets.two_pos()
        variant = rng.choice(VARIANTS)
        shape = rng.choice(SHAPES)
        amount = rng.randrange(200, PURSE, 10)
        if shape == "prepaid_units":
            b = a  # the school the package is bound to, paid in broken lessons
            amount += 10 if amount % UNIT == 0 else 0
        return [
            self.ev(t, tag, self.name, 0, w, f"{variant}:{shape}:{a}:{b}"),
            self.ev(t + rng.randrange(300, 3600), tag, self.name, 1, w, b, amount),
        ]

    def step(self, run, ev) -> None:
        if ev.count == 0:
            variant, shape, a, b = ev.wallet.split(":")
            run.oracle.attack(
                Attack(ev.tag, self.name, run.ids[ev.device], run.now_rel(),
                       note=f"{variant} {shape} {b}")
            )
            run.adv.captured[ev.tag] = {
                "programme": open_programme(run, ev.tag, ev.device, [a], shape=shape),
                "shape": shape,
            }
            return
        atk = run.adv.attack_of(ev.tag)
        pos = ev.wallet
        shape = run.adv.captured[ev.tag]["shape"]
        change = {
            "merchant": lambda r: _widen(r, proto.RULE_MERCHANTS, merchant_of(run, pos)),
            "prepaid_school": lambda r: _widen(r, proto.RULE_MERCHANTS, merchant_of(run, pos)),
            "category": lambda r: _widen(r, proto.RULE_CATEGORIES, category_of(run, pos)),
            "prepaid_units": _unbound,
        }[shape]
        ok = rewrite_rule(run, ev.device, run.adv.captured[ev.tag]["programme"], change)
        if not ok:
            atk.note += ": the card holds no purse to rewrite"
        colluding = atk.note.startswith("colluding")
        if colluding:
            local_pos(run, pos).app.rules = LaxRules()  # the merchant's build
        rec = run.adv.attack_pay(atk, pos, ev.device, ev.amount)
        atk.note += f": {pos} {rec.status} ({rec.reason}), earmarked {rec.earmarked}"
        signed = [run.oracle.signed[h] for h in atk.hashes if h in run.oracle.signed]
        if not colluding and rec.status == "approved" and any(s.earmarked for s in signed):
            run.adv.captured[ev.tag]["problem"] = (
                f"{atk.id} ({self.name}): honest {pos} approved earmarked value under a rule "
                f"whose issuer's signature does not fit (it must refuse: purse_rule)"
            )
        if colluding and pos in run.devices:
            app = getattr(run.devices[pos], "app", None)
            if app is not None:
                app.rules = None  # back to the honest build

    def final_check(self, run, atk) -> list[str]:
        problem = run.adv.captured.get(atk.id, {}).get("problem")
        return [problem] if problem else []

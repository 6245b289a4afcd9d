"""An expired purse spent at a terminal whose clock is wrong. The programme expires; then
(variants, seeded):

- `clock_back`: the merchant of POS B, which synced after the expiry (its ledger-signed hot
  list was issued then), sets its real-time clock back to before the expiry; an honest card that
  has not synced since taps. B's clock reads before the issue of the hot list it holds, so it is
  provably behind: B does not offer its certificate for a purse (the card then pays from its main
  purse) and no earmarked value moves; the purse goes back to the funder at the card's sync;
- `late_card`: the holder rewrites the expiry of the card's copy of the rule in its flash and
  pays B (an honest clock) after the expiry: B declines (the rule's signature), the card's sync
  brings the body to the ledger, which judges the expiry again (by the time signed, against the
  programme's own rule): credited to nobody, a `purse_expired` case, the value refunded;
- `stale_pos`: B has not synced since before the expiry and its clock is set back to before
  it; an honest card that has not synced since taps. Neither side can tell (nor can the
  ledger later: the time signed is B's): B takes the earmarked part and the ledger credits
  it. This is the documented wrong-clock bound (docs/LEDGER.md §6): the value goes only to the
  merchant the rule allows, at most the purse's balance, and the rest of the purse goes back
  to the funder at the card's sync; the programme's books still balance.

No earmarked value may reach a merchant after the expiry (the oracle judges by the run's own
clock) unless neither the payee POS nor the card synced since the expiry (the bound); the
expired purse is empty once its card synced.

Each variant draws a rule shape too (`programme.RULE_SHAPES`, as `purse_merchant` does):
`merchant`, a subsidy naming B's merchant id; `category`, a subsidy naming B's merchant category
(its certificate's); `prepaid`, a prepaid lesson package bound to B (UNIT a lesson, at most CAP a
payment; the payment at least a lesson, so the package pays). The oracle judges each from the
card-signed body, the time it was signed by the run's clock and the issuer-signed rule (window,
merchants, categories, cap, unit), not from the ledger's label."""

from __future__ import annotations

from typing import Any

from tapcash.firmware.core import proto
from tapcash.sim.run.oracle import Attack

from .base import AttackKind
from .programme import (
    PURSE,
    RULE_SHAPES,
    SkewedClock,
    least_payment,
    local_pos,
    open_programme,
    rewrite_rule,
)

VARIANTS = ("clock_back", "late_card", "stale_pos")
LIFE_S = 1200  # the programme's life
BACK_S = 300  # how far the merchant sets the clock back (to before the expiry)


class PurseClock(AttackKind):
    name = "purse_clock"

    def plan(self, rng, targets, t, tag, sc) -> list[dict[str, Any]]:
        w = targets.attacker()
        b = targets.any_pos()
        variant = rng.choice(VARIANTS)
        amount = rng.randrange(200, PURSE, 10)
        shape = rng.choice(RULE_SHAPES)  # drawn last: a seed's variant and amount as before
        amount = least_payment(shape, amount)
        return [
            self.ev(t, tag, self.name, 0, w, f"{variant}:{shape}:{b}"),
            self.ev(t + LIFE_S + 60, tag, self.name, 1, w, b),
            self.ev(t + LIFE_S + 120, tag, self.name, 2, w, b, amount),
        ]

    def step(self, run, ev) -> None:
        if ev.count == 0:
            variant, shape, b = ev.wallet.split(":")
            honest = variant != "late_card"  # the card is honest, the terminal's clock is not
            atk = run.oracle.attack(
                Attack(
                    ev.tag,
                    self.name,
                    b"" if honest else run.ids[ev.device],
                    run.now_rel(),
                    expect="harmless" if honest else "fraud",
                    note=f"{variant} {shape} {b}",
                )
            )
            pid = open_programme(run, ev.tag, ev.device, [b], expires_in=LIFE_S, shape=shape)
            run.adv.captured[ev.tag] = {"programme": pid}
            return
        atk = run.adv.attack_of(ev.tag)
        pos = ev.wallet
        if ev.count == 1:
            if atk.note.startswith("clock_back"):
                run.sync(pos)  # B's hot list is issued after the expiry
            return
        if not atk.note.startswith("late_card"):
            local_pos(run, pos).hal.clock = SkewedClock(run.clock, -BACK_S)
        else:
            pid = run.adv.captured[ev.tag]["programme"]
            ok = rewrite_rule(
                run,
                ev.device,
                pid,
                lambda r: r.__setitem__(proto.RULE_EXPIRES, r[proto.RULE_EXPIRES] + 86400),
            )
            if not ok:
                atk.note += ": the card holds no purse to rewrite"
        rec = run.adv.attack_pay(atk, pos, ev.device, ev.amount)
        atk.note += f": {pos} {rec.status} ({rec.reason}), earmarked {rec.earmarked}"

"""A card holder writes an older flash image back onto the card (rollback) and spends the same
value again. `rollback`: at another POS (the same POS refuses by its last-counter table).
`rollback_transfer`: as wallet-to-wallet transfers to a colluding card, again and again from
the same image (the audit's value-creation attack: of conflicting bodies for one (payer,
counter) at most one may ever be released)."""

from __future__ import annotations

from typing import Any

from tapcash.sim.run.oracle import Attack

from .base import AttackKind, image_bound, limits_of


class Rollback(AttackKind):
    name = "rollback"

    def plan(self, rng, targets, t, tag, sc) -> list[dict[str, Any]]:
        w = targets.attacker()
        a, b = targets.two_pos()
        amount = rng.randrange(100, 3000, 10)
        g1, g2 = rng.randrange(60, 3600), rng.randrange(60, 3600)
        return [self.ev(t, tag, self.name, 0, w),
                self.ev(t + g1, tag, self.name, 1, w, a, amount),
                self.ev(t + g1 + g2, tag, self.name, 2, w, b, rng.randrange(100, 3000, 10))]

    def step(self, run, ev) -> None:
        if ev.count == 0:
            run.images[ev.tag] = run.devices[ev.device].snapshot()
            run.oracle.attack(Attack(ev.tag, self.name, run.ids[ev.device], run.now_rel(),
                                     bound=image_bound(limits_of(run, ev.device))))
            return
        atk = run.adv.attack_of(ev.tag)
        if ev.count == 2:
            dev = run.devices[ev.device]
            dev.restore(run.images.pop(ev.tag))
            dev.power_on()
            run.log.attacks.append({"t": run.now_rel(), "kind": "rollback", "wallet": ev.device,
                                    "tag": ev.tag})
        run.adv.attack_pay(atk, ev.wallet, ev.device, ev.amount)


class RollbackTransfer(AttackKind):
    name = "rollback_transfer"
    rounds = 3

    def plan(self, rng, targets, t, tag, sc) -> list[dict[str, Any]]:
        payer, receiver = targets.attacker(), targets.attacker()
        amount = min(sc.wallets.balance, 5000) or 1000
        out = [self.ev(t, tag, self.name, 0, payer, receiver)]
        for k in range(1, self.rounds + 1):
            out.append(self.ev(t + 600 * k, tag, self.name, k, payer, receiver, amount))
        return out

    def step(self, run, ev) -> None:
        payer, receiver = ev.device, ev.wallet
        if ev.count == 0:
            run.images[ev.tag] = run.devices[payer].snapshot()
            atk = run.oracle.attack(Attack(ev.tag, self.name, run.ids[payer], run.now_rel(),
                                           bound=0, note=f"colluder {receiver}"))
            run.oracle.attacker_wallets.add(run.ids[receiver])
            return
        atk = run.adv.attack_of(ev.tag)
        if ev.count > 1:  # write the old image back and send the same value again
            dev = run.devices[payer]
            dev.restore(run.images[ev.tag])
            dev.power_on()
        run.adv.attack_transfer(atk, payer, receiver, ev.amount)
        run.sync(receiver)  # the colluder syncs: the ledger releases what it thinks is staged

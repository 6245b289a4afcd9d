"""The seeded adversary: a table of attack kinds, one module each.

    events = plan(scenario, seed)        # attack events mixed into the run's schedule
    KINDS["clone"].step(run, event)      # the runner hands each attack event to its kind

An attack kind (`base.AttackKind`) plans its steps from the adversary's RNG (`plan`), performs
them against the running devices, ledger and sync tool (`step`), tells the oracle what it did
(`sim.run.oracle.Attack`: wallet, counters, body hashes, documented loss bound) and may add checks
of its own at the end (`final_check`). To add an attack: a module with one `AttackKind`
subclass, listed in `KINDS` below. Everything an attack does comes from the run's seed, so a
failing seed replays exactly.
"""

from __future__ import annotations

import random
from typing import Any

from .base import AttackKind, NoTargets, Targets
from .clone import Clone
from .extracted import ExtractedKey
from .purse_clock import PurseClock
from .purse_clone import PurseClone
from .purse_merchant import PurseMerchant
from .replay import Replay
from .rogue_reader import RoguePayee, RogueReader
from .rollback import Rollback, RollbackTransfer
from .sync_host import SyncHost

KINDS: dict[str, AttackKind] = {
    k.name: k
    for k in (Clone(), Rollback(), RollbackTransfer(), ExtractedKey(), RogueReader(),
              RoguePayee(), SyncHost(), Replay(), PurseMerchant(), PurseClone(), PurseClock())
}

__all__ = ["KINDS", "AttackKind", "plan"]


def plan(sc: Any, seed: int) -> list[dict[str, Any]]:
    """The attack events of a run (dicts of `scenario.Event` fields, without `order`): which
    attacks, on which devices, when. A pure function of (scenario, seed)."""
    adv = sc.adversary
    rng = random.Random(f"tapcash/sim/adversary/{seed}")
    names = list(adv.kinds) or sorted(KINDS)
    unknown = [n for n in names if n not in KINDS]
    if unknown:
        raise ValueError(f"unknown attack kind(s) {', '.join(unknown)} (known: "
                         f"{', '.join(sorted(KINDS))})")
    targets = Targets(rng, sc.wallets.count, sc.pos.count)
    chosen = list(names) if adv.count >= len(names) else []  # every kind once, then at random
    while len(chosen) < adv.count:
        chosen.append(rng.choice(names))
    out: list[dict[str, Any]] = []
    pay = sc.payments
    for i, name in enumerate(chosen, 1):
        day = rng.randrange(sc.days)
        t = day * 86400 + pay.open_s + rng.randrange(max(1, (pay.close_s - pay.open_s) * 3 // 4))
        try:
            out += KINDS[name].plan(rng, targets, t, f"{name}-{i}", sc)
        except NoTargets:
            # every wallet left is an honest one the run keeps: attack them harmlessly instead
            harmless = [n for n in names if KINDS[n].expect == "harmless"]
            if not harmless:
                from tapcash.sim.scenario import ScenarioError

                raise ScenarioError(
                    f"[adversary] count = {adv.count} of {', '.join(names)} needs more than "
                    f"the {sc.wallets.count} wallets: raise [wallets] count or lower the "
                    f"count") from None
            other = rng.choice(harmless)
            out += KINDS[other].plan(rng, targets, t, f"{other}-{i}", sc)
    return out

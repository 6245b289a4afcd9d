"""The seeded schedule of a scenario: every event of the run, sorted by time; a pure function of
(scenario, seed)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from .model import DAY_S, Scenario, Tear

__all__ = [
    "Event",
    "build_schedule",
    "pos_name",
    "wallet_name",
]


# ---- the schedule ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Event:
    """One thing that happens at time t (seconds from start). `order` breaks ties in the
    order events were generated, so sorting is total and deterministic."""

    t: int
    order: int
    kind: str  # pay, transfer, load, sync, cut, clone, snapshot, restore, final (reboot: runner)
    device: str = ""  # the acting device (pay: the POS; sync/cut/reboot: that device)
    wallet: str = ""  # pay: the card's device name (a clone: "wallet-7-clone")
    other: str = ""  # transfer: the receiving wallet; clone: the clone's name
    amount: int = 0
    count: int = 0  # load: wallets drawn; rollback restore: follow-up payments
    tear: Tear | None = None
    tag: str = ""  # free label (attack name, load kind)
    keep_permille: int = 0
    down_s: int = 0  # cut: how long a POS stays off once the cut fired


def wallet_name(n: int) -> str:
    return f"wallet-{n}"


def pos_name(n: int) -> str:
    return f"pos-{n}"


def build_schedule(sc: Scenario, seed: int | None = None) -> list[Event]:
    """Every event of the run, sorted by time. Pure function of (scenario, seed)."""
    rng = random.Random(f"tapcash/sim/schedule/{sc.seed if seed is None else seed}")
    evs: list[Event] = []

    def add(**kw: Any) -> None:
        evs.append(Event(order=len(evs), **kw))

    nw, npos = sc.wallets.count, sc.pos.count
    home = {w: rng.randint(1, npos) for w in range(1, nw + 1)}

    # payments
    pay = sc.payments
    window = pay.close_s - pay.open_s
    times: list[int] = []
    if pay.count:
        if pay.arrival == "uniform":
            times = sorted(
                rng.randrange(sc.days) * DAY_S + pay.open_s + rng.randrange(window)
                for _ in range(pay.count)
            )
        else:  # Poisson process over the open hours of every day
            rate = pay.count / (window * sc.days)
            for day in range(sc.days):
                t = 0.0
                while True:
                    t += rng.expovariate(rate)
                    if t >= window:
                        break
                    times.append(day * DAY_S + pay.open_s + int(t))
    pay_events: list[dict[str, Any]] = []
    for t in times:
        w = rng.randint(1, nw)
        p = home[w] if rng.random() < pay.home_pos else rng.randint(1, npos)
        amount = pay.amount.draw(rng)
        pay_events.append(
            {"t": t, "device": pos_name(p), "wallet": wallet_name(w), "amount": amount}
        )
    for tear in sc.tears:
        idx = None
        if tear.payment is not None:
            idx = tear.payment - 1 if tear.payment <= len(pay_events) else None
        else:
            idx = next((i for i, e in enumerate(pay_events) if e["t"] >= (tear.t or 0)), None)
        if idx is not None:
            pay_events[idx]["tear"] = tear
    for e in pay_events:
        add(kind="pay", **e)

    # transfers
    for _ in range(sc.transfers.count if nw > 1 else 0):
        t = rng.randrange(sc.days) * DAY_S + pay.open_s + rng.randrange(window)
        a, b = rng.sample(range(1, nw + 1), 2)
        add(
            t=t,
            kind="transfer",
            device=wallet_name(a),
            other=wallet_name(b),
            amount=sc.transfers.amount.draw(rng),
        )

    # loads and payroll (ledger side; the value reaches a wallet at its next sync)
    for ld in sc.loads:
        add(t=ld.t, kind="load", count=ld.wallets or 0, amount=ld.amount, tag=ld.kind)

    # connectivity windows
    plan = sc.sync
    if plan.pos_every_s > 0:
        for p in range(1, npos + 1):
            offset = rng.randrange(max(1, min(plan.pos_every_s, 1800)))
            for day in range(sc.days):
                t = day * DAY_S + pay.open_s + plan.pos_every_s + offset
                while t < day * DAY_S + pay.close_s + plan.pos_every_s:
                    if t < sc.end:
                        add(t=t, kind="sync", device=pos_name(p))
                    t += plan.pos_every_s
    for day in range(sc.days):
        for w in range(1, nw + 1):
            if rng.random() < plan.wallet_share:
                add(
                    t=day * DAY_S + pay.open_s + rng.randrange(window),
                    kind="sync",
                    device=wallet_name(w),
                )

    # faults
    for cut in sc.power_cuts:
        add(
            t=cut.t,
            kind="cut",
            device=cut.device,
            count=cut.write,
            keep_permille=int(round(cut.keep * 1000)),
            down_s=cut.down_s,
        )

    # attacks
    for i, c in enumerate(sc.clones, 1):
        w = wallet_name(c.wallet)
        clone = f"{w}-clone"
        add(t=c.t, kind="clone", device=w, other=clone, tag=f"clone-{i}")
        add(
            t=c.t + 1,
            kind="pay",
            device=pos_name(c.pos[0]),
            wallet=w,
            amount=c.amount,
            tag=f"clone-{i}",
        )
        add(
            t=c.t + 1 + c.gap_s,
            kind="pay",
            device=pos_name(c.pos[1]),
            wallet=clone,
            amount=c.amount,
            tag=f"clone-{i}",
        )
    for i, r in enumerate(sc.rollbacks, 1):
        w = wallet_name(r.wallet)
        add(t=r.snapshot_t, kind="snapshot", device=w, tag=f"rollback-{i}")
        add(t=r.restore_t, kind="restore", device=w, tag=f"rollback-{i}")
        for k in range(r.payments):
            add(
                t=r.restore_t + 60 * (k + 1),
                kind="pay",
                device=pos_name(rng.randint(1, npos)),
                wallet=w,
                amount=r.amount,
                tag=f"rollback-{i}",
            )

    # programmes: their own random stream, so a scenario without any keeps its schedule
    prng = random.Random(f"tapcash/sim/programs/{sc.seed if seed is None else seed}")
    for pr in sc.programs:
        holders = list(range(1, nw + 1))
        if pr.wallets is not None:
            holders = sorted(prng.sample(holders, pr.wallets))
        add(
            t=pr.t,
            kind="program",
            tag=pr.name,
            count=len(holders),
            other=",".join(str(w) for w in holders),
            amount=pr.amount,
        )
        for w in holders:  # each holder collects the purse at a sync soon after
            add(
                t=min(sc.end - 1, pr.t + 60 + prng.randrange(max(1, pr.collect_s))),
                kind="sync",
                device=wallet_name(w),
            )
        amount = pr.payment_amount or pr.unit or pr.cap or 250
        last = min(sc.end, pr.expires or sc.end)
        for _ in range(pr.payments):
            day = prng.randrange(pr.t // DAY_S, max(pr.t // DAY_S + 1, last // DAY_S + 1))
            t = day * DAY_S + pay.open_s + prng.randrange(window)
            if pr.t + pr.collect_s < t < last:
                add(
                    t=t,
                    kind="pay",
                    device=pos_name(prng.choice(pr.pos)),
                    wallet=wallet_name(prng.choice(holders)),
                    amount=amount,
                    tag=f"program:{pr.name}",
                )
    if sc.adversary is not None:
        from tapcash.sim.attacks import plan as attack_plan

        for e in attack_plan(sc, sc.seed if seed is None else seed):
            if e["t"] < sc.end:
                add(**e)

    if plan.final:
        add(t=sc.end, kind="final")
    evs.sort(key=lambda e: (e.t, e.order))
    return evs

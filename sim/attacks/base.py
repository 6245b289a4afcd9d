"""What every attack kind shares: the plan/step interface, target choice, and what an attacker
with a flash programmer reads out of a card."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

import cbor2

from tapcash.firmware.core import proto
from tapcash.firmware.core.storage import StateStore
from tapcash.firmware.wallet import state as st
from tapcash.sim.device.flash import SimFlash

if TYPE_CHECKING:
    from tapcash.sim.run.runner import ScenarioRun
    from tapcash.sim.scenario import Event


class NoTargets(ValueError):
    """No wallet left for one more attacker."""


class Targets:
    """Devices for attacks, drawn from the adversary's RNG. A wallet the attacker owns
    (`attacker`) is used by one attack only; an honest victim (`victim`) may be shared."""

    def __init__(self, rng: random.Random, wallets: int, pos: int) -> None:
        self.rng = rng
        self.free = list(range(1, wallets + 1))
        rng.shuffle(self.free)
        self.victims = list(self.free)
        self.pos = pos

    def attacker(self) -> str:
        if len(self.free) <= 2:  # always keep honest wallets in the run
            raise NoTargets("not enough wallets for the attacks")
        n = self.free.pop()
        if n in self.victims:
            self.victims.remove(n)
        return f"wallet-{n}"

    def victim(self) -> str:
        return f"wallet-{self.rng.choice(self.victims[:max(1, len(self.victims) // 2)])}"

    def two_pos(self) -> tuple[str, str]:
        a, b = self.rng.sample(range(1, self.pos + 1), 2)
        return f"pos-{a}", f"pos-{b}"

    def any_pos(self) -> str:
        return f"pos-{self.rng.randint(1, self.pos)}"


class AttackKind:
    name = ""
    expect = "fraud"  # "fraud": must become a case; "harmless": must change nothing

    def plan(self, rng: random.Random, targets: Targets, t: int, tag: str,
             sc: Any) -> list[dict[str, Any]]:
        """Event dicts (fields of scenario.Event, kind "attack", other = this kind's name,
        count = step number)."""
        raise NotImplementedError

    def step(self, run: ScenarioRun, ev: Event) -> None:
        raise NotImplementedError

    def final_check(self, run: ScenarioRun, atk: Any) -> list[str]:
        return []

    @staticmethod
    def ev(t: int, tag: str, kind: str, step: int, device: str = "", wallet: str = "",
           amount: int = 0) -> dict[str, Any]:
        return {"t": t, "kind": "attack", "other": kind, "tag": tag, "count": step,
                "device": device, "wallet": wallet, "amount": amount}


def limits_of(run: ScenarioRun, wallet: str) -> dict[int, int]:
    return {**proto.DEFAULT_LIMITS, **dict(run.sc.wallets.limits)}


# ---- documented loss bounds (docs/SECURITY.md), per attack -----------------------------------
def image_bound(lim: dict[int, int]) -> int:
    """A card image with intact firmware (a clone, or a card rolled back to an older image)
    spends at most its offline amount limit before it must sync."""
    return lim[proto.LIM_OFFLINE_AMOUNT]


def key_bound(lim: dict[int, int], payees: int, floor: int, counter: int) -> int:
    """With the key extracted the card's limits are gone. The ledger guarantees a body only up
    to counter S + N (S: the highest synced counter it issued the card, at most the card's
    counter `counter` when the key was read), once per payee, each at most min(payment max,
    POS floor limit): docs/LEDGER.md's bound without its velocity and funds terms."""
    return payees * (counter + lim[proto.LIM_OFFLINE_COUNT]) * min(lim[proto.LIM_PAYMENT_MAX],
                                                                 floor)


def card_state(image: dict[str, bytes]) -> dict[int, Any]:
    """The wallet state map in a flash image, as an attacker with a flash programmer reads it
    (the device key seed included)."""
    flash = SimFlash()
    flash.restore(image)
    data = StateStore(flash, "wallet").load()
    if data is None:
        raise ValueError("no wallet state in this image")
    state = cbor2.loads(data)
    if st.S_SEED not in state:
        raise ValueError("no key in this image")
    return state


def pay_tagged(run: ScenarioRun, pos: str, card: str, amount: int, tag: str) -> Any:
    """A payment at `pos` by `card` (a device name) now, recorded with the attack's tag."""
    from tapcash.sim.scenario import Event

    ev = Event(t=run.now_rel(), order=-1, kind="pay", device=pos, wallet=card, amount=amount,
               tag=tag)
    run.on_pay(ev)
    return run.log.payments[-1]

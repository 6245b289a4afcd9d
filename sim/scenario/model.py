"""The scenario model: what a TOML scenario says, as frozen dataclasses (fleet, payments,
transfers, loads, programmes, syncs, faults, attacks, the NFC field), and its error type."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from tapcash.firmware.core import proto

__all__ = [
    "DAY_S",
    "DEFAULT_START",
    "LIMIT_NAMES",
    "POS_CONFIG_NAMES",
    "AdversaryPlan",
    "Amounts",
    "Clone",
    "Load",
    "NfcField",
    "Payments",
    "PosFleet",
    "PowerCut",
    "Program",
    "Rollback",
    "Scenario",
    "ScenarioError",
    "SyncPlan",
    "Tear",
    "Transfers",
    "Wallets",
]

DAY_S = 86400
DEFAULT_START = 1_800_000_000 - 1_800_000_000 % DAY_S  # 2027-01-15 00:00 UTC

LIMIT_NAMES = {
    "balance_max": proto.LIM_BALANCE_MAX,
    "payment_max": proto.LIM_PAYMENT_MAX,
    "offline_count": proto.LIM_OFFLINE_COUNT,
    "offline_amount": proto.LIM_OFFLINE_AMOUNT,
    "no_cvm": proto.LIM_NO_CVM,
    "staged_spend": proto.LIM_STAGED_SPEND,
}
POS_CONFIG_NAMES = {
    "floor": proto.CFG_FLOOR,
    "velocity_count": proto.CFG_VELOCITY_COUNT,
    "velocity_amount": proto.CFG_VELOCITY_AMOUNT,
    "torn_max": proto.CFG_TORN_MAX,
    "torn_life_s": proto.CFG_TORN_LIFE_S,
    "table_max": proto.CFG_TABLE_MAX,
    "hotlist_max_age_s": proto.CFG_HOT_MAX_AGE_S,
    "hotlist_max_payments": proto.CFG_HOT_MAX_PAYMENTS,
    "journal_max": proto.CFG_JOURNAL_MAX,
}


class ScenarioError(ValueError):
    """The scenario file is wrong; the message says where."""


# ---- model ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Amounts:
    """An amount distribution: lognormal (median, sigma), uniform (min..max) or choice."""

    dist: str = "lognormal"
    median: int = 500
    sigma: float = 0.8
    min: int = 1
    max: int = 20000
    round: int = 1  # amounts are multiples of this
    values: tuple[int, ...] = ()
    weights: tuple[float, ...] = ()

    def draw(self, rng: random.Random) -> int:
        if self.dist == "lognormal":
            x = self.median * math.exp(self.sigma * rng.gauss(0.0, 1.0))
        elif self.dist == "uniform":
            x = rng.uniform(self.min, self.max)
        elif self.dist == "choice":
            return int(rng.choices(self.values, self.weights or None)[0])
        else:
            raise ScenarioError(f"unknown amount dist {self.dist!r}")
        step = max(1, self.round)
        amount = int(round(x / step)) * step
        return max(self.min, min(self.max, amount))


@dataclass(frozen=True)
class Wallets:
    count: int = 10
    balance: int = 20000  # initial load of every wallet, through the ledger
    pin: str = "1234"
    limits: dict[int, int] = field(default_factory=dict)  # certificate limits (LIM_*)


@dataclass(frozen=True)
class PosFleet:
    count: int = 2
    config: dict[int, int] = field(default_factory=dict)  # POS config (CFG_*)


@dataclass(frozen=True)
class Payments:
    count: int = 100  # expected payments over the whole run
    arrival: str = "poisson"  # poisson | uniform
    open_s: int = 8 * 3600  # shop hours, seconds into each day
    close_s: int = 20 * 3600
    amount: Amounts = field(default_factory=Amounts)
    home_pos: float = 0.0  # share of a wallet's payments at its "home" POS (the rest: any)


@dataclass(frozen=True)
class Transfers:
    count: int = 0
    amount: Amounts = field(default_factory=lambda: Amounts("uniform", min=100, max=2000))


@dataclass(frozen=True)
class Load:
    t: int  # seconds from start
    kind: str = "topup"  # topup | payroll
    wallets: int | None = None  # None: every wallet; else this many, drawn at random
    amount: int = 1000


@dataclass(frozen=True)
class Program:
    """A programme of earmarked purses (docs/PROGRAMMES.md): created at the start, its purses
    loaded at `t` (each holder syncs within `collect_s` to fetch it), spendable at POS `pos`."""

    name: str
    t: int  # load time, seconds from start
    kind: str = "subsidy"  # subsidy | prepaid
    funder: str = "city"
    amount: int = 1000  # per purse
    wallets: int | None = None  # None: every wallet; else this many, drawn at random
    pos: tuple[int, ...] = (1,)  # POS numbers the rule allows (by category if set, else merchant)
    category: int = 0  # merchant category of those POS; 0: the rule names their merchant ids
    expires: int = 0  # seconds from start (inclusive); 0: the end of the scenario
    cap: int = 0
    unit: int = 0
    payments: int = 0  # extra payments by holders at these POS (a lesson, a ride)
    payment_amount: int = 0  # their amount; 0: the unit, else the cap, else 250
    collect_s: int = 7200


@dataclass(frozen=True)
class SyncPlan:
    pos_every_s: int = 4 * 3600  # POS connectivity windows from shop open, per POS
    wallet_share: float = 0.3  # share of wallets syncing once per day (random time)
    final: bool = True  # every device syncs at the end
    serial: int = 2  # devices whose final sync goes over a real serial pty (a sample)


@dataclass(frozen=True)
class Tear:
    payment: int | None = None  # the n-th payment of the schedule (1-based)
    t: int | None = None  # or: the first payment at or after this time
    where: str = "response"  # command | response
    command: int = 1  # command index within the tap (0 SELECT, 1 PAY, 2 RECEIPT)
    byte: int = 10
    retap_s: int | None = 5  # the customer taps again after this many seconds (None: leaves)


@dataclass(frozen=True)
class PowerCut:
    device: str  # "pos-2", "wallet-7"
    t: int
    write: int = 1  # the k-th flash write from then
    keep: float = 0.5  # share of that write's bytes that reach the flash
    down_s: int = 120  # a POS is off this long (payments meanwhile go elsewhere)


@dataclass(frozen=True)
class Clone:
    wallet: int
    t: int
    pos: tuple[int, int] = (1, 2)  # the card pays at the first, its clone at the second
    amount: int = 2500
    gap_s: int = 60  # the clone pays this long after the card


@dataclass(frozen=True)
class Rollback:
    wallet: int
    snapshot_t: int
    restore_t: int
    payments: int = 2  # payments the rolled-back card makes right after the restore
    amount: int = 1500


@dataclass(frozen=True)
class AdversaryPlan:
    """The seeded adversary (sim/attacks/): `count` attacks drawn from `kinds` (empty: all),
    every one of them at least once when count allows. The oracle then judges the ledger
    after every sync (sim/run/oracle.py)."""

    kinds: tuple[str, ...] = ()
    count: int = 7


@dataclass(frozen=True)
class NfcField:
    kbps: int = 106
    fsc: int = 256
    card_ms: dict[int, float] | None = None
    reader_ms: dict[int, float] | None = None
    scale: float = 1.0
    measured: bool = False


@dataclass(frozen=True)
class Scenario:
    name: str = "scenario"
    description: str = ""
    seed: int = 1
    start: int = DEFAULT_START
    days: int = 1
    wallets: Wallets = field(default_factory=Wallets)
    pos: PosFleet = field(default_factory=PosFleet)
    payments: Payments = field(default_factory=Payments)
    transfers: Transfers = field(default_factory=Transfers)
    loads: tuple[Load, ...] = ()
    programs: tuple[Program, ...] = ()
    sync: SyncPlan = field(default_factory=SyncPlan)
    tears: tuple[Tear, ...] = ()
    power_cuts: tuple[PowerCut, ...] = ()
    clones: tuple[Clone, ...] = ()
    rollbacks: tuple[Rollback, ...] = ()
    nfc: NfcField = field(default_factory=NfcField)
    adversary: AdversaryPlan | None = None
    flash: str = "files"  # files (under the run folder) | memory
    source: str = ""  # where it was loaded from

    @property
    def end(self) -> int:
        return self.days * DAY_S

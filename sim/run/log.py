"""What happened in a run, as the runner records it: a row per payment, the run's log (what the
report, the plots and the oracle read)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tapcash.sim.scenario import Scenario


@dataclass
class PayRecord:
    t: int
    pos: str
    card: str  # device name of the card (a clone: "wallet-7-clone")
    amount: int
    status: str
    reason: str
    wallet: str = ""  # wallet id hex (from INFO)
    counter: int = 0
    hash: str = ""  # SHA-256 of the payment body (approved)
    recovered: bool = False
    in_field_ms: float = 0.0
    bytes_on_air: int = 0
    torn: str = ""
    tag: str = ""  # attack / fault label
    at_ledger: int | None = None  # time the ledger first held it
    purse: int = 0  # earmarked purse that paid part (0: main purse only)
    earmarked: int = 0  # the part it paid


@dataclass
class RunLog:
    scenario: Scenario
    seed: int
    runtime: str
    isolation: str
    payments: list[PayRecord] = field(default_factory=list)
    transfers: list[dict[str, Any]] = field(default_factory=list)
    loads: list[dict[str, Any]] = field(default_factory=list)
    syncs: list[dict[str, Any]] = field(default_factory=list)
    faults: list[dict[str, Any]] = field(default_factory=list)
    attacks: list[dict[str, Any]] = field(default_factory=list)
    wallets: dict[str, dict[str, Any]] = field(default_factory=dict)  # final device state
    ledger: dict[str, Any] = field(default_factory=dict)  # final ledger view
    digests: dict[str, str] = field(default_factory=dict)  # device / field transcripts
    attacker_devices: list[str] = field(default_factory=list)  # clones, attackers' own cards
    oracle: Any = None  # sim.run.oracle.Oracle: what the run did, judged independently
    issued_initial: int = 0
    wall: dict[str, float] = field(default_factory=dict)  # wall-clock figures (not seeded)

"""Scenarios: a TOML file describing a rollout, and its seeded schedule of events.

    model.py     what a scenario says (frozen dataclasses) and ScenarioError
    parse.py     TOML -> model, every key checked; the built-in scenarios (builtin/*.toml)
    schedule.py  (scenario, seed) -> the sorted list of events the runner plays

    sc = load_scenario("district.toml")      # or builtin_scenario("demo")
    events = build_schedule(sc, seed=7)      # deterministic: same seed, same list

A scenario has N wallets and M POS terminals, a day window, and what happens in it: payments
(Poisson or uniform arrivals, amounts from a distribution), wallet-to-wallet transfers, loads
and payroll, connectivity windows (when POS terminals and wallets sync), faults (torn taps,
power cuts) and attacks (a cloned card double-spending at two POS, a flash rollback). The
schema is documented in `sim/scenario/builtin/demo.toml`, which is also the `tapcash demo` default.

Times in the file are "HH:MM" within a day (`day = N` picks the day, 0-based) or seconds from
the scenario start. Money is in minor units (cents), always integers.
"""

from .model import (
    DAY_S,
    DEFAULT_START,
    LIMIT_NAMES,
    POS_CONFIG_NAMES,
    AdversaryPlan,
    Amounts,
    Clone,
    Load,
    NfcField,
    Payments,
    PosFleet,
    PowerCut,
    Program,
    Rollback,
    Scenario,
    ScenarioError,
    SyncPlan,
    Tear,
    Transfers,
    Wallets,
)
from .parse import (
    COMMAND_NAMES,
    builtin_names,
    builtin_scenario,
    builtin_source,
    load_scenario,
    parse_clock,
    parse_scenario,
    resolve,
    unknown_key,
)
from .schedule import (
    Event,
    build_schedule,
    pos_name,
    wallet_name,
)

__all__ = [
    "AdversaryPlan",
    "Amounts",
    "COMMAND_NAMES",
    "Clone",
    "DAY_S",
    "DEFAULT_START",
    "Event",
    "LIMIT_NAMES",
    "Load",
    "NfcField",
    "POS_CONFIG_NAMES",
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
    "build_schedule",
    "builtin_names",
    "builtin_scenario",
    "builtin_source",
    "load_scenario",
    "parse_clock",
    "parse_scenario",
    "pos_name",
    "resolve",
    "unknown_key",
    "wallet_name",
]

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

from . import model, parse, schedule
from .model import *  # noqa: F403  (each module's __all__ is the package's)
from .parse import *  # noqa: F403
from .schedule import *  # noqa: F403

__all__ = [*model.__all__, *parse.__all__, *schedule.__all__]

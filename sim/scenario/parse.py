"""Reading a scenario: TOML (a file or a built-in) into the model, every key checked, an
unknown one named with its nearest known key."""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

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

__all__ = [
    "COMMAND_NAMES",
    "builtin_names",
    "builtin_scenario",
    "builtin_source",
    "load_scenario",
    "parse_clock",
    "parse_scenario",
    "resolve",
    "unknown_key",
]


# ---- parsing --------------------------------------------------------------------------------
class _Table:
    """A TOML table read key by key; leftover keys are an error (typos must not pass)."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise ScenarioError(f"{where}: expected a table")
        self.data = dict(data)
        self.where = where
        self.asked: list[str] = []  # every key the schema reads here: the known ones

    def take(self, key: str, kind: type | tuple[type, ...], default: Any) -> Any:
        self.asked.append(key)
        if key not in self.data:
            return default
        v = self.data.pop(key)
        if kind is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if not isinstance(v, kind) or (isinstance(v, bool) and kind is not bool):
            raise ScenarioError(f"{self.where}.{key}: wrong type {type(v).__name__}")
        return v

    def int(self, key: str, default: int, lo: int = 0) -> int:
        v = self.take(key, int, default)
        if v < lo:
            raise ScenarioError(f"{self.where}.{key}: must be >= {lo}")
        return v

    def time(self, key: str, default: int | None, day: int = 0) -> int | None:
        v = self.take(key, (int, str), default)
        if v is None or isinstance(v, int):
            return v
        return day * DAY_S + parse_clock(v, f"{self.where}.{key}")

    def at(self, key: str = "at") -> int:
        """A required time of the entry's `day` (0 unless given)."""
        day = self.int("day", 0)
        at = self.time(key, None, day)
        if at is None:
            raise ScenarioError(f"{self.where}: {key!r} is required")
        return at

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        v = self.take(key, str, default)
        if v not in choices:
            said = f"{', '.join(choices[:-1])} or {choices[-1]}"
            raise ScenarioError(f"{self.where}.{key}: {said}")
        return v

    def wallet_count(self, key: str = "wallets") -> int | None:
        """'all' (None) or a number of wallets."""
        n = self.take(key, (int, str), "all")
        if isinstance(n, str) and n != "all":
            raise ScenarioError(f"{self.where}.{key}: 'all' or a count")
        return None if n == "all" else int(n)

    def table(self, key: str) -> _Table:
        return _Table(self.take(key, dict, {}), f"{self.where}.{key}")

    def done(self) -> None:
        if self.data:
            raise ScenarioError(
                f"{self.where}: " + "; ".join(unknown_key(k, self.asked) for k in sorted(self.data))
            )


def unknown_key(key: str, known: list[str]) -> str:
    """'unknown key 'walets' (did you mean 'wallets'?)', or the known keys when none is close."""
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"unknown key {key!r} (did you mean {close[0]!r}?)"
    return f"unknown key {key!r} (known: {', '.join(sorted(set(known)))})"


def parse_clock(text: str, where: str = "time") -> int:
    """'HH:MM' or 'HH:MM:SS' -> seconds into the day."""
    parts = text.split(":")
    try:
        nums = [int(p) for p in parts]
    except ValueError:
        raise ScenarioError(f"{where}: {text!r} is not HH:MM") from None
    if len(nums) not in (2, 3) or not 0 <= nums[0] <= 24 or not 0 <= nums[1] < 60:
        raise ScenarioError(f"{where}: {text!r} is not HH:MM")
    return nums[0] * 3600 + nums[1] * 60 + (nums[2] if len(nums) == 3 else 0)


def _named_map(t: _Table, key: str, names: dict[str, int]) -> dict[int, int]:
    sub = t.table(key)
    out = {}
    for name in list(sub.data):
        if name not in names:
            raise ScenarioError(f"{sub.where}: {unknown_key(name, list(names))}")
        out[names[name]] = sub.int(name, 0)
    return out


def _amounts(t: _Table, key: str, default: Amounts) -> Amounts:
    if key not in t.data:
        return default
    a = t.table(key)
    dist = a.take("dist", str, default.dist)
    values = tuple(a.take("values", list, list(default.values)))
    weights = tuple(float(w) for w in a.take("weights", list, list(default.weights)))
    out = Amounts(
        dist=dist,
        median=a.int("median", default.median, 1),
        sigma=a.take("sigma", float, default.sigma),
        min=a.int("min", default.min, 1),
        max=a.int("max", default.max, 1),
        round=a.int("round", default.round, 1),
        values=tuple(int(v) for v in values),
        weights=weights,
    )
    a.done()
    if dist not in ("lognormal", "uniform", "choice"):
        raise ScenarioError(f"{a.where}.dist: lognormal, uniform or choice")
    if dist == "choice" and not values:
        raise ScenarioError(f"{a.where}: choice needs values")
    if out.min > out.max:
        raise ScenarioError(f"{a.where}: min > max")
    return out


def _list(t: _Table, key: str) -> list[_Table]:
    items = t.take(key, list, [])
    return [_Table(x, f"{t.where}.{key}[{i}]") for i, x in enumerate(items)]


def _device_name(text: str, where: str) -> str:
    role, _, num = text.partition("-")
    if role not in ("wallet", "pos") or not num.isdigit():
        raise ScenarioError(f"{where}: device is 'wallet-N' or 'pos-N', not {text!r}")
    return text


def parse_scenario(data: dict[str, Any], source: str = "") -> Scenario:
    root = _Table(data, "scenario file")
    top = root.table("scenario")
    sc = Scenario(
        name=top.take("name", str, "scenario"),
        description=top.take("description", str, ""),
        seed=top.int("seed", 1),
        start=top.int("start", DEFAULT_START),
        days=top.int("days", 1, 1),
        flash=top.take("flash", str, "files"),
        source=source,
    )
    top.done()
    if sc.flash not in ("files", "memory"):
        raise ScenarioError("scenario.flash: files or memory")

    w = root.table("wallets")
    wallets = Wallets(
        count=w.int("count", 10, 1),
        balance=w.int("balance", 20000),
        pin=w.take("pin", str, "1234"),
        limits=_named_map(w, "limits", LIMIT_NAMES),
    )
    w.done()
    p = root.table("pos")
    pos = PosFleet(count=p.int("count", 2, 1), config=_named_map(p, "config", POS_CONFIG_NAMES))
    p.done()

    pay = root.table("payments")
    payments = Payments(
        count=pay.int("count", 100),
        arrival=pay.take("arrival", str, "poisson"),
        open_s=pay.time("open", 8 * 3600) or 0,
        close_s=pay.time("close", 20 * 3600) or 0,
        amount=_amounts(pay, "amount", Amounts()),
        home_pos=pay.take("home_pos", float, 0.0),
    )
    pay.done()
    if payments.arrival not in ("poisson", "uniform"):
        raise ScenarioError("payments.arrival: poisson or uniform")
    if not 0 <= payments.open_s < payments.close_s <= DAY_S:
        raise ScenarioError("payments: open must be before close, within the day")

    tr = root.table("transfers")
    transfers = Transfers(
        count=tr.int("count", 0), amount=_amounts(tr, "amount", Transfers().amount)
    )
    tr.done()

    s = root.table("sync")
    pos_every_h = s.take("pos_every_hours", float, 4.0)
    sync = SyncPlan(
        pos_every_s=int(pos_every_h * 3600),
        wallet_share=s.take("wallet_share", float, 0.3),
        final=s.take("final", bool, True),
        serial=s.int("serial", 2),
    )
    s.done()

    lists = {key: tuple(_items(root, key, build)) for key, build in _LISTS.items()}
    if len({p.name for p in lists["programs"]}) != len(lists["programs"]):
        raise ScenarioError("programs: names must differ")

    adversary = None
    if "adversary" in root.data:
        a = root.table("adversary")
        kinds = a.take("attacks", list, [])
        if not all(isinstance(k, str) for k in kinds):
            raise ScenarioError(f"{a.where}.attacks: a list of attack kind names")
        from tapcash.sim.attacks import KINDS

        unknown = sorted(set(kinds) - set(KINDS))
        if unknown:
            raise ScenarioError(
                f"{a.where}.attacks: unknown {', '.join(unknown)} (known: "
                f"{', '.join(sorted(KINDS))})"
            )
        adversary = AdversaryPlan(tuple(kinds), a.int("count", 7, 1))
        a.done()
        if adversary.count > 100:
            raise ScenarioError(f"{a.where}.count: at most 100 attacks per run")

    f = root.table("nfc")
    card_ms = f.take("card_ms", dict, None)
    reader_ms = f.take("reader_ms", dict, None)
    fld = NfcField(
        kbps=f.int("kbps", 106, 106),
        fsc=f.int("fsc", 256, 16),
        card_ms=_ms_table(card_ms, f.where + ".card_ms"),
        reader_ms=_ms_table(reader_ms, f.where + ".reader_ms"),
        scale=f.take("scale", float, 1.0),
        measured=f.take("measured", bool, False),
    )
    f.done()
    if fld.kbps not in (106, 212, 424, 848):
        raise ScenarioError("nfc.kbps: 106, 212, 424 or 848")
    root.done()

    sc = replace(
        sc,
        wallets=wallets,
        pos=pos,
        payments=payments,
        transfers=transfers,
        sync=sync,
        **lists,
        nfc=fld,
        adversary=adversary,
    )
    _check_refs(sc)
    if sc.adversary is not None:  # the plan must fit the fleet (ScenarioError otherwise)
        from tapcash.sim.attacks import plan as attack_plan

        attack_plan(sc, sc.seed)
    return sc


# ---- the lists of events: one builder per [[list]], each entry checked and closed -------------
def _items(root: _Table, key: str, build: Any) -> list[Any]:
    out = []
    for t in _list(root, key):
        out.append(build(t))
        t.done()
    return out


def _load(t: _Table) -> Load:
    at = t.at()
    kind = t.choice("kind", "topup", ("topup", "payroll"))
    return Load(at, kind, t.wallet_count(), t.int("amount", 1000, 1))


def _program(t: _Table) -> Program:
    at = t.at()
    name = t.take("name", str, "")
    if not name or not all(c.isalnum() or c in "-_." for c in name):
        raise ScenarioError(f"{t.where}.name: letters, digits and -_.")
    kind = t.choice("kind", "subsidy", ("subsidy", "prepaid"))
    wallets = t.wallet_count()
    pos_list = t.take("pos", list, [1])
    if not pos_list or not all(isinstance(x, int) and x >= 1 for x in pos_list):
        raise ScenarioError(f"{t.where}.pos: a list of POS numbers")
    exp_day = t.take("expires_day", int, -1)
    amount, unit = t.int("amount", 1000, 1), t.int("unit", 0)
    if unit and amount % unit:
        raise ScenarioError(f"{t.where}.amount: {amount} is not a whole number of units of "
                            f"{unit} (the card pays whole units)")
    return Program(
        name,
        at,
        kind,
        t.take("funder", str, "city"),
        amount,
        wallets,
        tuple(int(x) for x in pos_list),
        t.int("category", 0),
        (exp_day + 1) * DAY_S - 1 if exp_day >= 0 else 0,
        t.int("cap", 0),
        unit,
        t.int("payments", 0),
        t.int("payment_amount", 0),
        t.int("collect_s", 7200),
    )


def _tear(t: _Table) -> Tear:
    day = t.int("day", 0)
    tear = Tear(
        payment=t.take("payment", int, None),
        t=t.time("at", None, day),
        where=t.choice("where", "response", ("command", "response")),
        command=t.int("command", 1),
        byte=t.int("byte", 10),
        retap_s=t.take("retap_s", int, 5),
    )
    if tear.payment is None and tear.t is None:
        raise ScenarioError(f"{t.where}: give 'payment' (n-th payment) or 'at'")
    if t.take("retap", bool, True) is False:
        tear = replace(tear, retap_s=None)
    return tear


def _power_cut(t: _Table) -> PowerCut:
    at = t.at()
    keep = t.take("keep", float, 0.5)
    if not 0.0 <= keep <= 1.0:
        raise ScenarioError(f"{t.where}.keep: a share between 0 and 1")
    device = _device_name(t.take("device", str, ""), t.where)
    return PowerCut(device, at, t.int("write", 1, 1), keep, t.int("down_s", 120))


def _clone(t: _Table) -> Clone:
    at = t.at()
    pos_pair = t.take("pos", list, [1, 2])
    if len(pos_pair) != 2 or pos_pair[0] == pos_pair[1]:
        raise ScenarioError(f"{t.where}.pos: two different POS numbers")
    pos = (int(pos_pair[0]), int(pos_pair[1]))
    return Clone(t.int("wallet", 1, 1), at, pos, t.int("amount", 2500, 1), t.int("gap_s", 60))


def _rollback(t: _Table) -> Rollback:
    day = t.int("day", 0)
    snap = t.time("snapshot", None, day)
    rest = t.time("restore", None, day)
    if snap is None or rest is None or rest <= snap:
        raise ScenarioError(f"{t.where}: 'snapshot' before 'restore', both required")
    return Rollback(
        t.int("wallet", 1, 1), snap, rest, t.int("payments", 2, 1), t.int("amount", 1500, 1)
    )


# Scenario field (and [[list]] name) -> its entry's builder
_LISTS = {
    "loads": _load,
    "programs": _program,
    "tears": _tear,
    "power_cuts": _power_cut,
    "clones": _clone,
    "rollbacks": _rollback,
}


COMMAND_NAMES = {"select": 0xA4, "pay": 0x50, "receipt": 0x52, "challenge": 0x84, "receive": 0x56}


def _ms_table(m: dict[str, Any] | None, where: str) -> dict[int, float] | None:
    if m is None:
        return None
    out = {}
    for k, v in m.items():
        if k not in COMMAND_NAMES:
            raise ScenarioError(f"{where}: unknown command {k!r} ({', '.join(COMMAND_NAMES)})")
        if not isinstance(v, int | float) or isinstance(v, bool) or v < 0:
            raise ScenarioError(f"{where}.{k}: milliseconds")
        out[COMMAND_NAMES[k]] = float(v)
    return out


def _check_refs(sc: Scenario) -> None:
    nw, npos = sc.wallets.count, sc.pos.count
    for c in sc.clones:
        if c.wallet > nw or max(c.pos) > npos:
            raise ScenarioError(f"clone of wallet-{c.wallet} at POS {c.pos}: no such device")
    for r in sc.rollbacks:
        if r.wallet > nw:
            raise ScenarioError(f"rollback of wallet-{r.wallet}: no such wallet")
    for cut in sc.power_cuts:
        role, _, num = cut.device.partition("-")
        if int(num) < 1 or int(num) > (nw if role == "wallet" else npos):
            raise ScenarioError(f"power cut of {cut.device}: no such device")
    for pr in sc.programs:
        if max(pr.pos) > npos or (pr.wallets or 0) > nw:
            raise ScenarioError(f"programme {pr.name}: no such POS or too many wallets")
        if pr.expires and pr.expires <= pr.t:
            raise ScenarioError(f"programme {pr.name}: expires before its load")
    for ev in (*sc.clones, *sc.rollbacks, *sc.power_cuts, *sc.loads, *sc.programs):
        t = getattr(ev, "t", None) or getattr(ev, "restore_t", 0)
        if t >= sc.end:
            raise ScenarioError(f"{ev} happens after the end of the scenario")


def load_scenario(path: str | Path) -> Scenario:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{path}: {e}") from None
    try:
        return parse_scenario(data, str(path))
    except ScenarioError as e:  # "my.toml: wallets: unknown key ...": the file, then the table
        raise ScenarioError(f"{path}: {str(e).removeprefix('scenario file.')}") from None


def builtin_names() -> list[str]:
    return sorted(
        p.name[: -len(".toml")]
        for p in resources.files("tapcash.sim.scenario").joinpath("builtin").iterdir()
        if p.name.endswith(".toml")
    )


def builtin_source(name: str) -> str:
    """The TOML text of a built-in scenario (demo.toml documents every key of the schema)."""
    res = resources.files("tapcash.sim.scenario").joinpath("builtin").joinpath(f"{name}.toml")
    if not res.is_file():
        raise ScenarioError(f"no built-in scenario {name!r} (have: {', '.join(builtin_names())})")
    return res.read_text()


def builtin_scenario(name: str) -> Scenario:
    return parse_scenario(tomllib.loads(builtin_source(name)), f"builtin:{name}")


def resolve(name_or_path: str) -> Scenario:
    """A file path, or the name of a built-in scenario."""
    p = Path(name_or_path)
    if p.is_file():
        return load_scenario(p)
    if name_or_path in builtin_names():
        return builtin_scenario(name_or_path)
    raise ScenarioError(
        f"{name_or_path}: no such file, and no built-in scenario of that name "
        f"(built-in: {', '.join(builtin_names())})"
    )

"""What the purse attacks share (docs/PROGRAMMES.md, PROTOCOL.md §2.9, §4.2): the programme the
operator sets up for the attacked card, a purse rule rewritten in a card's flash, a merchant's
tampered POS build and its real-time clock set back.

Each purse attack opens a programme of its own (`open_programme`), so it runs in any scenario:
the city funds it, the ledger loads the holder's purse, the card collects it at a sync. The
oracle is told what it may believe (the issuer-signed rule, the load the operator asked for)."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

import cbor2

from tapcash.firmware.core import proto
from tapcash.firmware.core.storage import StateStore
from tapcash.firmware.wallet import state as st
from tapcash.sim.device.flash import SimFlash

if TYPE_CHECKING:
    from tapcash.sim.run.runner import ScenarioRun

FUNDER = "adversary-city"  # the owner account that funds the attacked programmes
PURSE = 2000  # each attacked card's purse (minor units)
UNIT, CAP = 250, 1000  # an attacked prepaid package's lesson price and per-payment cap
# Merchant categories of an adversarial run's POS (ISO 18245: transport, schools, grocery), so a
# category rule has a terminal of its category and terminals of others; pos_category(n).
CATEGORIES = (4111, 8299, 5411)
# The rule shapes a purse attack draws (`open_programme`'s `shape`): a subsidy naming the
# terminals' merchant ids, a subsidy naming their merchant categories (their certificates'), a
# prepaid lesson package bound to their merchant ids (schools). An attack may name a variant of
# a shape after it (`purse_merchant`'s `prepaid_school`, `prepaid_units`): `rule_shape`.
RULE_SHAPES = ("merchant", "category", "prepaid")


def rule_shape(shape: str) -> str:
    """The rule shape of an attack's shape name (`prepaid_units` -> `prepaid`)."""
    for s in RULE_SHAPES:
        if shape == s or shape.startswith(s + "_"):
            return s
    raise ValueError(f"unknown rule shape {shape!r} (one of {', '.join(RULE_SHAPES)})")


def least_payment(shape: str, amount: int) -> int:
    """`amount`, raised to at least a lesson for a prepaid shape (so the package pays from the
    purse: a card pays a package whole lessons only), unchanged for a subsidy."""
    return amount + UNIT if rule_shape(shape) == "prepaid" and amount < UNIT else amount


def pos_category(n: int) -> int:
    """The merchant category of POS n in an adversarial run (distinct for every POS)."""
    return CATEGORIES[n - 1] if n <= len(CATEGORIES) else 9000 + n


def merchant_of(run: ScenarioRun, pos: str) -> bytes:
    return run.oracle.certs.merchant[run.ids[pos]]


def category_of(run: ScenarioRun, pos: str) -> int:
    """The category in the POS's issuer-signed certificate (as the oracle read it)."""
    return run.oracle.certs.category.get(run.ids[pos], 0)


def open_programme(
    run: ScenarioRun,
    tag: str,
    holder: str,
    pos: list[str],
    *,
    expires_in: int = 0,
    amount: int = PURSE,
    shape: str = "merchant",
) -> bytes:
    """A programme spendable at the terminals of `pos`, loaded onto `holder`'s card (collected
    at a sync now). Expires `expires_in` s from now (0: at the end of the run). `shape` (one of
    RULE_SHAPES, or a variant named after one): "merchant", a subsidy naming their merchant ids;
    "category", a subsidy naming their categories (from their certificates); "prepaid", a
    prepaid package bound to their merchant ids (schools), released per use, UNIT a lesson, at
    most CAP a payment. Returns its id."""
    shape = rule_shape(shape)
    c = run.client
    if c is None:
        raise ValueError("the purse attacks need the ledger")
    now = run.clock.now()
    name = f"adv-{tag}"
    c.deposit(FUNDER, amount, f"programme {name} funds")
    run.oracle.deposit(amount)
    made = c.program_create(
        name,
        FUNDER,
        "prepaid" if shape == "prepaid" else "subsidy",
        valid_from=now - 60,
        expires=now + expires_in if expires_in else run.sc.start + run.sc.end + 86400,
        merchants=[] if shape == "category" else [merchant_of(run, p) for p in pos],
        categories=sorted({category_of(run, p) for p in pos}) if shape == "category" else None,
        cap=CAP if shape == "prepaid" else 0,
        unit=UNIT if shape == "prepaid" else 0,
    )
    pid = run.oracle.rule_seen(base64.b64decode(made["rule"]))
    if pid is None:
        raise ValueError(f"programme {name}: its rule is not signed by the issuer")
    wid = run.ids[holder]
    c.program_load(name, f"{wid.hex()},{amount}\n", f"{name}-load")
    run.oracle.purse_load(pid, wid, amount)
    run.sync(holder)  # the card collects its purse
    return pid


def rewrite_rule(run: ScenarioRun, holder: str, pid: bytes, change: Any) -> bool:
    """With a flash programmer: rewrite the body of the card's copy of a purse rule
    (`change(body)` edits it in place), keeping the issuer's signature, which no longer fits.
    The card verified the rule when it loaded it and reads it back unverified at PAY. Returns
    False when the card holds no purse of that programme (it synced it away)."""
    dev = run.devices[holder]
    flash = SimFlash()
    flash.restore(dev.snapshot())
    store = StateStore(flash, "wallet")
    data = store.load()
    if data is None:
        return False
    state = cbor2.loads(data)
    done = False
    for p in state.get(st.S_PURSES) or []:
        if bytes(p[st.P_PROGRAM]) == pid:
            body_bytes, sig = cbor2.loads(p[st.P_RULE])
            body = cbor2.loads(body_bytes)
            change(body)
            p[st.P_RULE] = cbor2.dumps([cbor2.dumps(body, canonical=True), sig])
            done = True
    if not done:
        return False
    store.commit(cbor2.dumps(state, canonical=True))
    dev.restore(flash.snapshot())
    dev.power_on()
    return True


class LaxRules:
    """A colluding merchant's POS build: takes whatever purse rule the card shows, unverified
    (in place of the firmware's RuleCache, `firmware/pos/rules.py`)."""

    def verify(self, rule_env: bytes, issuer_keys: Any) -> dict[int, Any]:
        return proto.open_envelope(rule_env)[1]


class SkewedClock:
    """A terminal's real-time clock, `offset` seconds off the run's clock. An ack sets it the
    way a real RTC is set (PROTOCOL.md §2.7)."""

    def __init__(self, base: Any, offset: int) -> None:
        self.base, self.offset = base, int(offset)

    def now(self) -> int:
        t = self.base.now()
        return t + self.offset if t else 0

    def set(self, unix: int) -> None:
        self.offset = int(unix) - self.base.now()


def local_pos(run: ScenarioRun, name: str) -> Any:
    """The POS `name` as a firmware app object in this process (the merchant's terminal, whose
    build or clock the attack changes). A POS in another runtime is moved here from its flash
    image first."""
    from tapcash.sim.device.build import POS, DeviceSpec, LocalDevice, spec_seed

    dev = run.devices[name]
    if isinstance(dev, LocalDevice):
        return dev
    n = int(name.split("-")[1])
    spec = DeviceSpec(
        POS,
        n,
        spec_seed(run.seed, POS, n, "tampered"),
        run.flash_dir(f"{name}-tampered"),
        label=name,
    )
    local = LocalDevice(spec, run.clock)
    local.restore(dev.snapshot())
    local.power_on()
    local.field = dev.field
    run.devices[name] = local
    dev.close()
    return local

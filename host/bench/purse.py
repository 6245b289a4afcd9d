"""`tapcash bench purse`: a payment from an earmarked purse against one from the main purse, in
the real MicroPython VM (WebAssembly under Node.js), the firmware compiled to .mpy.

Both devices run in the VM on FileFlash: a wallet holding an earmarked purse (a one-merchant
rule, the shape of a prepaid package) and two POS terminals, one of the rule's merchant (the purse
pays part of every payment: split with the main purse) and one of another merchant (the main purse
pays, but the card still flags its purse, so the POS sends its certificate and the card checks it);
and a card without purses at a third POS, for comparison. "split, new POS" is the split payment
with the card's cache of verified POS certificates emptied before each tap (a first tap at a POS:
one issuer signature check more). Per kind of payment: the APDU round
trips and bytes on air of one tap, and the wallet's in-field time: the time spent inside the
wallet's process() for SELECT, PAY and RECEIPT, summed per tap (the VM's ticks_us steps in 1 ms:
per-call times are summed over a batch of taps and divided, which is unbiased; medians over
batches, with min and max). The kinds take turns batch by batch, so they share the load of
the moment; `--profile` times the parts of the wallet's work as well.

Benchmarks only: nothing here asserts a time. Targets (issue 13): <= 3 round trips, <= 1 KB on
air, wallet in-field <= 8 ms in the VM.
"""

from __future__ import annotations

import json
from typing import Any

import click

SETUP = r'''
import time, os
from firmware.core import cbor, ed25519, fileflash, hal, proto
from firmware.core.runtime import urandom
from firmware.pos.app import PosApp
from firmware.wallet.app import WalletApp

SEED = b"\x5a" * 32
PK = ed25519.public_key(SEED)
NOW = 1800000000
WID = b"BENCHW01"

def seal(tag, body):
    return proto.seal(tag, body, SEED)

class Rng(hal.Rng):
    def random(self, n):
        return urandom(n)

class Clock(hal.Clock):
    def now(self):
        return NOW

class Link(hal.Link):
    def __init__(self, card):
        self.card = card
        self.us = 0
        self.air = 0
        self.trips = 0
    def transceive(self, apdu):
        t = time.ticks_us()
        resp = self.card.process(apdu)
        self.us += time.ticks_diff(time.ticks_us(), t)
        self.air += len(apdu) + len(resp)
        self.trips += 1
        return resp

def ok(app, ins, data=b"", cla=0x80, p1=0):
    r = app.process(proto.build_command(cla, ins, p1, 0, data))
    assert r[-2:] == b"\x90\x00", r[-2:]
    return r[:-2]

def fresh(name):
    path = "/tmp/bench_purse_" + name + "_" + urandom(3).hex()
    return fileflash.FileFlash(path)

lim = dict(proto.DEFAULT_LIMITS)
lim[proto.LIM_OFFLINE_COUNT] = 100000
lim[proto.LIM_OFFLINE_AMOUNT] = 10 ** 9
lim[proto.LIM_BALANCE_MAX] = 10 ** 9

def new_wallet():
    w = WalletApp(hal.Hal(flash=fresh("w"), rng=Rng()), {"journal_records": 4000})
    ok(w, proto.INS_SELECT, proto.AID, 0x00, 4)
    pk = ok(w, proto.INS_PERSO_KEYGEN)
    cert = seal(proto.TAG_CERT, {proto.CERT_KIND: proto.KIND_WALLET, proto.CERT_ID: WID,
        proto.CERT_KEY: pk, proto.CERT_ISSUER: proto.key_id(PK),
        proto.CERT_EXPIRES: NOW + 10 ** 7, proto.CERT_LIMITS: lim, proto.CERT_SERIAL: 1})
    ok(w, proto.INS_PERSO_FINISH, cbor.encode({proto.PF_CERT: cert, proto.PF_ISSUERS: [PK],
        proto.PF_PIN: b"1234", proto.PF_PUK: b"12345678"}))
    return w
SCHOOL = b"SCHOOL01"
rule = seal(proto.TAG_RULE, {proto.RULE_PROGRAM: b"LESSONS1", proto.RULE_KIND: proto.PROG_PREPAID,
    proto.RULE_MERCHANTS: [SCHOOL], proto.RULE_FROM: NOW - 1000, proto.RULE_EXPIRES: NOW + 10 ** 6,
    proto.RULE_CAP: 2000, proto.RULE_FUNDER: "parents"})
def voucher(n, amount, rule=None):
    b = {proto.VCH_WALLET: WID, proto.VCH_NUMBER: n, proto.VCH_AMOUNT: amount,
         proto.VCH_SOURCE: proto.VSRC_TOPUP if rule is None else proto.VSRC_PROGRAM,
         proto.VCH_REF: b"", proto.VCH_PURSE: 0 if rule is None else 1}
    if rule is not None:
        b[proto.VCH_RULE] = rule
    return seal(proto.TAG_VOUCHER, b)
wallet = new_wallet()  # a card with an earmarked purse
ok(wallet, proto.INS_LOAD, voucher(1, 10 ** 8))
ok(wallet, proto.INS_LOAD, voucher(2, 10 ** 8, rule))
plain = new_wallet()  # a card with the main purse only
ok(plain, proto.INS_LOAD, voucher(1, 10 ** 8))

def pos_of(pid, merchant, link):
    app = PosApp(hal.Hal(flash=fresh("p"), clock=Clock(), rng=Rng(), link=link))
    app.power_on()
    ppk = ok(app, proto.INS_PERSO_KEYGEN)
    c = seal(proto.TAG_CERT, {proto.CERT_KIND: proto.KIND_POS, proto.CERT_ID: pid,
        proto.CERT_KEY: ppk, proto.CERT_ISSUER: proto.key_id(PK), proto.CERT_EXPIRES: NOW + 10 ** 7,
        proto.CERT_MERCHANT: merchant, proto.CERT_SERIAL: 1, proto.CERT_CATEGORY: 8299})
    hot = seal(proto.TAG_HOTLIST, {proto.HOT_VERSION: 1, proto.HOT_ISSUED: NOW,
        proto.HOT_REVOKED: []})
    cfg = {proto.CFG_VELOCITY_COUNT: 100000, proto.CFG_VELOCITY_AMOUNT: 10 ** 9}
    ok(app, proto.INS_PERSO_FINISH, cbor.encode({proto.PF_CERT: c, proto.PF_ISSUERS: [PK],
        proto.PF_HOTLIST: hot, proto.PF_CONFIG: cfg}))
    return app

link = Link(wallet)
link2 = Link(plain)
poses = {"purse": (pos_of(b"SCHPOS01", SCHOOL, link), link),
         "main": (pos_of(b"SHOPPOS1", b"SHOP0001", link), link),
         "plain": (pos_of(b"SHOPPOS2", b"SHOP0002", link2), link2)}

def batch(kind, n, amount):
    """n taps at that POS: [wallet us in process() in total, trips, air, earmarked, wallet us
    in power_on() in total] of the batch. Each tap starts with the card's power_on(), as a
    board's does (firmware/hal/pn532_card.py serve_session: a new session, the state read
    from flash)."""
    pos, link = poses["purse" if kind == "cold" else kind]
    card = link.card
    us = trips = air = boot = 0
    earmarked = []
    known = card.state.get(30)  # wallet.state.S_PAYEES: "cold" puts it back after
    for _ in range(n):
        t = time.ticks_us()
        card.power_on()
        boot += time.ticks_diff(time.ticks_us(), t)
        if kind == "cold":  # forget the POS certificates verified: a first tap at a new POS
            card.state = dict(card.state)
            card.state.pop(30, None)  # wallet.state.S_PAYEES
        link.us = link.air = link.trips = 0
        r = pos.take_payment(amount)
        assert r.status == "approved", r.reason
        us += link.us
        trips = link.trips
        air = link.air
        earmarked.append(r.earmarked)
    if kind == "cold" and known is not None:  # the other kinds keep their repeat POS
        card.power_on()
        s = dict(card.state)
        s[30] = known
        card.commit(s)  # in flash: the next tap's power_on reads it
    return [us, trips, air, earmarked[-1], boot]
'''


# `--profile`: where the wallet's in-field time goes. Timers around firmware functions count
# only while the wallet's process() runs (the POS shares the VM), summed over a batch; a part
# nested in another is shown indented. The timers cost a little: the parts come from batches of
# their own, after the plain measurement.
PROFILE = r'''
import time
import firmware.core.ed25519 as _ed
import firmware.core.sha512 as _sh
import firmware.core.storage as _sto
import firmware.wallet.app as _wa
import firmware.wallet.purse_pay as _pp
import firmware.wallet.state as _wst
PT = {}
_on = [0]
_signing = [0]
def _timed(f, label, gate=_on):
    def w(*a):
        if not gate[0]:
            return f(*a)
        t = time.ticks_us()
        try:
            return f(*a)
        finally:
            PT[label] = PT.get(label, 0) + time.ticks_diff(time.ticks_us(), t)
    return w
def _wrap(obj, name, label, gate=_on):
    setattr(obj, name, _timed(getattr(obj, name), label, gate))
_sign = _ed.sign
def _sign_timed(*a):
    if not _on[0]:
        return _sign(*a)
    _signing[0] = 1
    t = time.ticks_us()
    try:
        return _sign(*a)
    finally:
        _signing[0] = 0
        PT["PAY/sign"] = PT.get("PAY/sign", 0) + time.ticks_diff(time.ticks_us(), t)
_ed.sign = _sign_timed
_proc = _wa.WalletApp.process
def _process(self, apdu):
    _on[0] = 1
    ins = apdu[1]
    t = time.ticks_us()
    try:
        return _proc(self, apdu)
    finally:
        _on[0] = 0
        label = {0xA4: "SELECT", 0x50: "PAY", 0x52: "RECEIPT"}.get(ins, "other")
        PT[label] = PT.get(label, 0) + time.ticks_diff(time.ticks_us(), t)
_wa.WalletApp.process = _process
_wrap(_sh, "sha512", "PAY/sign/SHA-512", _signing)
_bm = _ed._base_mul_with  # k*B; timed from its outer call (no table given), not its inner one
_bm_timed = _timed(_bm, "PAY/sign/base point multiply", _signing)
def _base_mul_timed(k, tb=None, *a):
    return _bm_timed(k) if tb is None else _bm(k, tb, *a)
_ed._base_mul_with = _base_mul_timed
_wrap(_pp, "choose", "PAY/purse choice")
_wrap(_pp, "payee", "PAY/purse choice/POS certificate")
_wrap(_wst, "encode", "PAY/state encode")
VERIFIED = [0]  # POS certificates verified: a count, so a test can check it, not a time
_verify_cert = _pp.verify_cert
def _verify_counted(*a):
    VERIFIED[0] += 1
    return _verify_cert(*a)
_pp.verify_cert = _verify_counted
_wrap(_sto.StateStore, "commit", "PAY/state write")
_wrap(_sto.Journal, "append", "journal appends (PAY, RECEIPT)")
'''

PARTS = ("power-on", "SELECT", "PAY", "PAY/sign", "PAY/sign/SHA-512",
         "PAY/sign/base point multiply", "PAY/purse choice", "PAY/purse choice/POS certificate",
         "PAY/state encode", "PAY/state write", "RECEIPT", "journal appends (PAY, RECEIPT)")

TAP = ("power-on", "SELECT", "PAY", "RECEIPT")  # a tap's parts, the others are inside them
KINDS = (("purse", "split: purse 20.00 (its cap) + main 5.00, repeat POS"),
         ("cold", "split, first tap at a POS (its certificate verified)"),
         ("main", "card with a purse, at a POS its rule does not allow"),
         ("plain", "card without purses"))


def run(batches: int = 5, taps: int = 8, amount: int = 2500,
        profile: bool = False) -> dict[str, Any]:
    """One run: per kind, round trips, bytes on air, earmarked part and the per-batch wallet
    in-field times (ms per tap); with `profile`, per kind and part of the wallet's work the
    per-batch ms per tap (`PARTS`)."""
    from tapcash.sim.vm.mpvm import MicroPythonVM

    out: dict[str, Any] = {}
    with MicroPythonVM() as vm:
        vm.install_firmware(compiled=True)
        out["vm_version"] = vm.version()
        vm.exec(SETUP, timeout_s=300)
        for kind, _label in KINDS:
            vm.exec(f"batch({kind!r}, 2, {amount})", timeout_s=120)  # imports, caches: warm
            out[kind] = {"in_field_ms": [], "power_on_ms": []}
        # Round-robin: one batch of each kind in turn, so every kind sees the same load (the
        # machine is shared: measured kind after kind, a busy minute lands on one of them).
        for _ in range(batches):
            for kind, _label in KINDS:
                us, trips, air, earmarked, boot = vm.eval_json(
                    f"batch({kind!r}, {taps}, {amount})")
                out[kind].update(round_trips=trips, bytes_on_air=air, earmarked=earmarked)
                out[kind]["in_field_ms"].append((boot + us) / taps / 1000)
                out[kind]["power_on_ms"].append(boot / taps / 1000)
        if profile:
            vm.exec(PROFILE, timeout_s=60)
            parts = {k: {p: [] for p in PARTS} for k, _label in KINDS}
            verified = dict.fromkeys((k for k, _label in KINDS), 0)
            for _ in range(batches):
                for kind, _label in KINDS:
                    vm.exec("PT.clear(); VERIFIED[0] = 0")
                    boot = vm.eval_json(f"batch({kind!r}, {taps}, {amount})")[4]
                    got = dict(vm.eval_json("PT"), **{"power-on": boot})
                    verified[kind] += vm.eval_json("VERIFIED[0]")
                    for p in PARTS:
                        parts[kind][p].append(got.get(p, 0) / taps / 1000)
            for kind, _label in KINDS:
                out[kind]["parts_ms"] = parts[kind]
                out[kind]["pos_certificates_verified"] = verified[kind]
    return out


def section(batches: int = 7, taps: int = 8, quick: bool = False,
            profile: bool = True) -> dict[str, Any]:
    from . import report

    if quick:
        batches, taps, profile = 2, 4, False
    opts = {"batches": (batches, 7), "taps": (taps, 8)}
    cmd = "tapcash bench purse" + "".join(f" --{k} {v}" for k, (v, d) in opts.items() if v != d)
    sec = report.new_section("purse", cmd)
    sec["title"] = "Earmarked purse payment"
    if profile:
        sec["command"] = cmd + " --profile"
    r = run(batches, taps, profile=profile)
    sec["vm_version"] = r["vm_version"]
    sec["batches"], sec["taps_per_batch"], sec["amount"] = batches, taps, 2500
    sec["rows"] = [
        {"kind": kind, "what": label, "round_trips": r[kind]["round_trips"],
         "bytes_on_air": r[kind]["bytes_on_air"], "earmarked": r[kind]["earmarked"],
         "wallet_in_field_ms": report.spread(r[kind]["in_field_ms"], 2),
         "power_on_ms": report.spread(r[kind]["power_on_ms"], 2)}
        for kind, label in KINDS
    ]
    if profile:
        sec["profile"] = {kind: {p: report.spread(v, 2) for p, v in r[kind]["parts_ms"].items()}
                          for kind, _label in KINDS}
        sec["pos_certificates_verified"] = {kind: r[kind]["pos_certificates_verified"]
                                            for kind, _label in KINDS}
    return report.finish(sec)


def render(sec: dict[str, Any]) -> str:
    from . import report

    boot = all("power_on_ms" in row for row in sec["rows"])  # older sections: not timed
    what = ("the wallet's time per tap in its power_on() (a new session at every tap, its state "
            "read from flash; a board that loses its RAM between taps also boots and imports, "
            "not measured here) and in its process() for SELECT + PAY + RECEIPT; power-on: the "
            "first part alone" if boot else "time inside the wallet's process() for SELECT + "
            "PAY + RECEIPT per tap (its power_on() at the tap not included)")
    out = [f"MicroPython {sec['vm_version']} VM, firmware .mpy, wallet and POS both in the VM on "
           f"FileFlash; {sec['batches']} batches x {sec['taps_per_batch']} taps of 25.00. Wallet "
           f"in field: {what}; median of the batches (min-max). Targets (issue 13): <= 3 round "
           "trips, <= 1 KB on air (bytes on air: the APDUs both ways, no ISO-DEP framing), "
           "wallet in field <= 8 ms.", "",
           "| payment | round trips | bytes on air | earmarked | wallet in field |"
           + (" power-on |" if boot else ""), "|---|---|---|---|---|" + ("---|" if boot else "")]
    for row in sec["rows"]:
        ms = report.fmt_spread(row["wallet_in_field_ms"], " ms", fmt=lambda v: f"{v:.1f}")
        on = report.fmt_spread(row["power_on_ms"], " ms", fmt=lambda v: f"{v:.1f}") if boot else ""
        out.append(f"| {row['what']} | {row['round_trips']} | {row['bytes_on_air']} | "
                   f"{row['earmarked']} | {ms} |" + (f" {on} |" if boot else ""))
    out += ["", "The first tap at a POS verifies its certificate: one issuer signature, checked "
            "with the issuer key's table that the card wrote to its flash at the purse's LOAD "
            "(firmware/core/comb.py: S*B - h*A as one walk over both tables, as for the base "
            "point alone, instead of a doubling chain). The card then remembers the "
            "certificate (4 entries, written with the PAY commit), so repeat taps check none."]
    if sec.get("profile"):
        out += ["", "Where the wallet's time goes (`--profile`; ms per tap, median of the batches; "
                "an indented part is inside the one above it):", "",
                "| part | " + " | ".join(k for k, _l in KINDS) + " |",
                "|---|" + "---|" * len(KINDS)]
        for part in (p for p in PARTS if p in sec["profile"]["purse"]):
            depth = part.count("/")
            name = "&nbsp;&nbsp;" * depth + part.rsplit("/", 1)[-1]
            cells = [f"{sec['profile'][k][part]['median']:.2f}" for k, _l in KINDS]
            out.append(f"| {name} | " + " | ".join(cells) + " |")
        pr = sec["profile"]
        share = {k: pr[k]["PAY/sign"]["median"] / max(1e-9, sum(
            pr[k][p]["median"] for p in TAP if p in pr[k])) for k in ("purse", "plain")}
        extra = sum(pr["purse"][p]["median"] - pr["plain"][p]["median"]
                    for p in TAP if p in pr["purse"]) - (
            pr["purse"]["PAY/sign"]["median"] - pr["plain"]["PAY/sign"]["median"])
        out += ["", f"The payment's Ed25519 signature is {share['purse']:.0%} of a repeat purse "
                f"tap and {share['plain']:.0%} of a main-purse one in this run; what the purse "
                f"adds besides it (choosing the purse, the larger state, the rule in the "
                f"answer) is {extra:.2f} ms. Absolute times move with the load (this section's is "
                "in its heading)."]
    return "\n".join(out) + "\n"


@click.command()
@click.option("--batches", default=7, show_default=True, help="batches per kind of payment")
@click.option("--taps", default=8, show_default=True, help="taps per batch")
@click.option("--profile", is_flag=True,
              help="also time the parts of the wallet's work (sign, purse choice, state, ...)")
@click.option("--json", "as_json", is_flag=True, help="print the section as JSON")
def command(batches: int, taps: int, profile: bool, as_json: bool) -> None:
    """Earmarked-purse payment vs main-purse payment in the MicroPython VM: round trips, bytes
    on air, wallet in-field time."""
    from . import report

    sec = section(batches, taps, profile=profile)
    if as_json:
        click.echo(json.dumps(sec, indent=2))
        return
    click.echo(render(sec).rstrip())
    report.echo_provenance(sec)

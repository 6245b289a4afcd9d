"""`tapcash bench sim`: simulated payments per second, end to end through the firmware.

One payment here is the whole NFC flow of docs/PROTOCOL.md §4 between two simulated
devices running the unchanged firmware: the POS app's take_payment over the virtual field
(`sim.nfc.field`, air-time model and transcript hash on), the wallet app powered up by the tap
(state and journal read from its flash), SELECT / PAY / RECEIPT, every flash commit and
journal append on SimFlash, every signature and verification (PyNaCl on CPython, pure
Python in the MicroPython VM). Provisioning (key generation, certificates, first load) is
timed apart; syncing to the ledger is `tapcash bench ingest`'s subject.

Rows:
- cpython: --wallets x --pos (default 10,000 x 1,000), --payments payments (default 30,000)
  spread uniformly over the fleet, all devices in this process;
- micropython: a smaller fleet (--mp-wallets x --mp-pos, --mp-payments) with every device
  inside the real MicroPython VM (one VM for the wallets, one for the terminals), once per
  --mp-crypto: "host" (the simulator's default: the firmware's Ed25519 backend "host", each
  signature and verification answered by this process's PyNaCl through the VM's host-call
  bridge) and "pure" (the firmware's own pure-Python Ed25519 in the VM, as on a board). The
  crypto limit of each row is the backend it ran with, timed in the VM (bridge round trips
  included for "host").

CPython rows also say what bounds their ratio, from the same run: one slice of the payments
in PROBE_EVERY runs with a stopwatch switched at the device boundaries (_Split: the firmware's
Python, its CBOR, the signatures, the flash HAL, the simulator); payments/s and the ratios
count the other slices. The oracle's own check of each payment is queued during the day and
run in one batch after it (sim.run.oracle.Oracle.flush), timed apart: `ratio` is the day's,
`ratio_all` the day's and the batch's together.

`--calibrate` instead measures the card's and the reader's compute per command inside the
MicroPython VM (wall time around each call, host round trip included): the source of the
defaults in `sim.nfc.field.DEFAULT_CARD_MS` / `DEFAULT_READER_MS`. Figures only, no assertions.
"""

from __future__ import annotations

import gc
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from . import report

INS_NAMES = {0xA4: "select", 0x50: "pay", 0x52: "receipt"}


def bench_scenario(wallets: int, pos: int, payments: int, *, measured: bool = False) -> Any:
    from tapcash.sim.scenario import parse_scenario

    return parse_scenario(
        {
            "scenario": {"name": "bench", "flash": "memory", "seed": 1},
            "wallets": {
                "count": wallets,
                "balance": 100000,
                # wide limits: the benchmark measures payments, not refusals
                "limits": {"offline_count": 1000, "offline_amount": 10**9, "balance_max": 10**9},
            },
            "pos": {
                "count": pos,
                "config": {
                    "hotlist_max_payments": 10**7,
                    "velocity_count": 10**6,
                    "velocity_amount": 2**32 - 1,
                },
            },
            "payments": {
                "count": payments,
                "arrival": "uniform",
                "amount": {
                    "dist": "lognormal",
                    "median": 500,
                    "sigma": 0.7,
                    "min": 10,
                    "max": 4900,
                },
            },
            "sync": {"pos_every_hours": 0, "wallet_share": 0.0, "final": False},
            "nfc": {"measured": measured},
        },
        "bench",
    )


class _CryptoCount:
    """Counts the firmware's signatures and verifications during a CPython run, and apart
    the oracle's own check of what the cards signed (the wrappers cost well under 1% of a
    PyNaCl call)."""

    def __init__(self) -> None:
        from tapcash.firmware.core import ed25519
        from tapcash.sim.run import oracle

        self.ed = ed25519
        self.oracle = oracle
        self.sign0, self.verify0 = ed25519.sign, ed25519.verify
        self.open0 = oracle.crypto_sign_open
        self.signs = self.verifies = self.oracle_verifies = 0

    def __enter__(self) -> _CryptoCount:
        sign0, verify0, open0 = self.sign0, self.verify0, self.open0

        def sign(seed: bytes, msg: bytes, key: Any = None) -> bytes:
            self.signs += 1
            return sign0(seed, msg, key)

        def verify(pk: bytes, msg: bytes, sig: bytes, table: Any = None) -> bool:
            self.verifies += 1
            return verify0(pk, msg, sig, table)

        def sign_open(signed: bytes, pk: bytes) -> bytes:
            self.oracle_verifies += 1
            return open0(signed, pk)

        self.ed.sign, self.ed.verify = sign, verify
        self.oracle.crypto_sign_open = sign_open
        return self

    def __exit__(self, *exc: object) -> None:
        self.ed.sign, self.ed.verify = self.sign0, self.verify0
        self.oracle.crypto_sign_open = self.open0


class _Split:
    """Where a CPython payment's time goes, by part, from a stopwatch switched at the
    boundaries between them (perf_counter at each crossing, no profiler): "firmware" (the
    unchanged firmware's Python of both devices: POS take_payment, the card's power-up and
    commands), "cbor" (their cbor.encode / encode_into / decode: cbor_cpython's fast path on
    cbor2), "signatures" (ed25519.sign and verify, PyNaCl in place), "flash" (the simulated
    flash HAL the firmware calls) and "simulator" (the rest: the run's events, the NFC field,
    the oracle's tap, the records). Each part's own time, nested parts taken out. Installed
    only for the probe slices of a run."""

    PARTS = ("firmware", "cbor", "signatures", "flash", "simulator")

    def __init__(self) -> None:
        self.t = dict.fromkeys(self.PARTS, 0.0)
        self.cur = "simulator"
        self.last = 0.0
        self._saved: list[tuple[Any, str, Any]] = []

    def _wrap(self, fn: Any, part: str) -> Any:
        clock = time.perf_counter
        t = self.t

        def timed(*args: Any, **kw: Any) -> Any:
            now = clock()
            prev = self.cur
            t[prev] += now - self.last
            self.cur, self.last = part, now
            try:
                return fn(*args, **kw)
            finally:
                now = clock()
                t[part] += now - self.last
                self.cur, self.last = prev, now

        return timed

    def __enter__(self) -> _Split:
        from tapcash.firmware.core import cbor, ed25519
        from tapcash.firmware.pos.app import PosApp
        from tapcash.firmware.wallet.app import WalletApp
        from tapcash.sim.device.cutflash import CutFlash

        targets = [
            (WalletApp, "power_on", "firmware"),
            (WalletApp, "process", "firmware"),
            (PosApp, "take_payment", "firmware"),
            (cbor, "encode", "cbor"),
            (cbor, "encode_into", "cbor"),
            (cbor, "decode", "cbor"),
            (ed25519, "sign", "signatures"),
            (ed25519, "verify", "signatures"),
        ] + [
            (CutFlash, m, "flash")
            for m in ("read", "read_at", "size", "open_blob", "remove", "write", "append")
        ]
        for obj, name, part in targets:
            fn = getattr(obj, name)
            self._saved.append((obj, name, fn))
            setattr(obj, name, self._wrap(fn, part))
        self.cur, self.last = "simulator", time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.t[self.cur] += time.perf_counter() - self.last
        for obj, name, fn in reversed(self._saved):
            setattr(obj, name, fn)
        self._saved.clear()


PROBE_EVERY = 4  # one slice of the payments in this many runs with _Split's stopwatch

_LIMIT_KEYS: list[tuple[bytes, bytes]] = []


def pynacl_limit(n: int = 2000, msg_len: int = 200) -> dict[str, float]:
    """Raw PyNaCl: us per signature (expanded key, as a device signing with its one key) and
    per verification (a different key each time), on messages of a payment's size."""
    from nacl.bindings import crypto_sign, crypto_sign_open, crypto_sign_seed_keypair

    keys = _LIMIT_KEYS or [crypto_sign_seed_keypair(bytes([i + 1, 7]) * 16) for i in range(64)]
    _LIMIT_KEYS[:] = keys
    msgs = [bytes((i * 7 + j) & 255 for j in range(msg_len)) for i in range(64)]
    signed = [crypto_sign(msgs[i], keys[i][1]) for i in range(64)]
    t, c = time.perf_counter(), time.process_time()
    for i in range(n):
        crypto_sign(msgs[i & 63], keys[i & 63][1])
    sign_us = (time.perf_counter() - t) / n * 1e6
    sign_cpu_us = (time.process_time() - c) / n * 1e6
    t, c = time.perf_counter(), time.process_time()
    for i in range(n):
        crypto_sign_open(signed[i & 63], keys[i & 63][0])
    verify_us = (time.perf_counter() - t) / n * 1e6
    verify_cpu_us = (time.process_time() - c) / n * 1e6
    # (the CPU-time figures: this process's own CPU seconds, as approved_per_cpu_s counts them)
    return {
        "sign_us": sign_us,
        "verify_us": verify_us,
        "sign_cpu_us": sign_cpu_us,
        "verify_cpu_us": verify_cpu_us,
    }


_VM_COUNT = (  # exec'd in each device VM: the firmware's signatures and verifications counted
    "from firmware.core import ed25519 as _bc_ed\n"
    "_bc_n = [0, 0]\n"
    "_bc_s0, _bc_v0 = _bc_ed.sign, _bc_ed.verify\n"
    "def _bc_s(seed, msg, key=None):\n"
    "    _bc_n[0] += 1\n"
    "    return _bc_s0(seed, msg, key)\n"
    "def _bc_v(pk, msg, sig, table=None):\n"
    "    _bc_n[1] += 1\n"
    "    return _bc_v0(pk, msg, sig, table)\n"
    "_bc_ed.sign, _bc_ed.verify = _bc_s, _bc_v\n"
)


def _vm_counts(vms: list[Any]) -> tuple[int, int]:
    signs = verifies = 0
    for vm in vms:
        got = vm.exec_result("_bc_r = '%d %d' % tuple(_bc_n)", "_bc_r")[0].split()
        signs += int(got[0])
        verifies += int(got[1])
    return signs, verifies


def vm_limit(vm: Any) -> dict[str, float]:
    """The firmware's Ed25519 inside this device VM, with the backend its devices use ("pure":
    the firmware's own code; "host": the host's PyNaCl, each call's round trip through the
    bridge included): us per signature and per verification (a different key each time), as
    `tapcash bench crypto` times them."""
    from .crypto import _fixtures, _vm_setup

    msg, pairs = _fixtures()
    setup = _vm_setup(msg, pairs)
    verify = "pk, sig = pairs[state[0] % len(pairs)]\nstate[0] += 1\nassert ed.verify(pk, msg, sig)"
    serve = vm.serve_call
    return {
        "sign_us": vm.time_us("ed.sign(seed, msg)", setup, repeat=3, batch_ms=40, serve=serve),
        "verify_us": vm.time_us(verify, setup, repeat=3, batch_ms=40, serve=serve),
    }


def run_bench(
    wallets: int,
    pos: int,
    payments: int,
    runtime: str,
    measured: bool = False,
    barrier: Any = None,
    seed: int = 1,
    crypto: str | None = None,
) -> dict[str, Any]:
    """Provision the fleet, then time the payments (after `barrier`, when sharded). On CPython
    the PyNaCl limit is measured in the same process right after the payments, and the
    signatures and verifications of the run are counted: limit = 1 / (signs per approved
    payment x sign time + verifies per approved payment x verify time)."""
    from contextlib import nullcontext
    from dataclasses import replace

    from tapcash.sim.run.runner import ScenarioRun
    from tapcash.sim.scenario import build_schedule

    sc = replace(bench_scenario(wallets, pos, payments, measured=measured), seed=seed)
    count = _CryptoCount() if runtime == "cpython" else None
    with tempfile.TemporaryDirectory(prefix="tapcash-bench-sim-") as tmp:
        run = ScenarioRun(sc, Path(tmp), runtime=runtime, ledger=False, crypto=crypto)
        try:
            t0 = time.perf_counter()
            run.provision()
            t_prov = time.perf_counter() - t0
            events = build_schedule(sc)
            vms = list(run.factory._mp.vms) if runtime == "micropython" else []
            # MicroPython: the VM's own Ed25519 timed before and after the payments (the
            # wallets' VM: both VMs run the same code on the same machine), the firmware's
            # signatures and verifications counted in between
            vm_lim = [vm_limit(vms[0])] if vms else []
            for vm in vms:
                vm.exec(_VM_COUNT)
            gc.collect()
            if barrier is not None:
                barrier.wait()
            # the limit is measured in slices between slices of the payments, so both see the
            # same machine (a shared machine's load moves within seconds)
            # CPython: every PROBE_EVERY-th slice runs with _Split's stopwatch (where the time
            # goes, in the same run); payments/s and the ratios count the other slices only
            step = max(1, len(events) // 20)
            limit_s = {"sign_us": 0.0, "verify_us": 0.0, "sign_cpu_us": 0.0, "verify_cpu_us": 0.0}
            wall = cpu = probe_wall = oracle_wall = 0.0
            ok_timed = ok_probe = 0
            split = _Split() if count is not None else None
            pays = run.log.payments
            with count if count is not None else nullcontext():
                for j, i in enumerate(range(0, len(events), step)):
                    probe = split is not None and j % PROBE_EVERY == PROBE_EVERY - 1
                    n0 = len(pays)
                    with split if probe and split is not None else nullcontext():
                        t1, c1 = time.perf_counter(), time.process_time()
                        for ev in events[i : i + step]:
                            run.clock.set(sc.start + ev.t)
                            run.dispatch(ev)
                        dt, dc = time.perf_counter() - t1, time.process_time() - c1
                    n_ok = sum(1 for p in pays[n0:] if p.status == "approved")
                    if probe:
                        probe_wall += dt
                        ok_probe += n_ok
                    else:
                        wall += dt
                        cpu += dc
                        ok_timed += n_ok
                    if count is not None:
                        for k, v in pynacl_limit(200).items():
                            limit_s[k] += v
                # the oracle's own check of every payment a card signed: queued during the day
                # (sim.run.oracle.card_signed), checked here in one batch, timed apart
                t1 = time.perf_counter()
                run.oracle.flush()
                oracle_wall = time.perf_counter() - t1
            if vms:
                vm_signs, vm_verifies = _vm_counts(vms)
                vm_lim.append(vm_limit(vms[0]))
            slices = -(-len(events) // step)
            limit = {k: v / slices for k, v in limit_s.items()} if count is not None else None
            approved = [p for p in pays if p.status == "approved"]
            if split is None:
                ok_timed = len(approved)
            per_ins: dict[int, list[float]] = {}
            for f in run.fields.values():
                for ins, (n, card, reader) in f.per_ins.items():
                    acc = per_ins.setdefault(ins, [0, 0.0, 0.0])
                    acc[0] += n
                    acc[1] += card
                    acc[2] += reader
        finally:
            run.close()
    in_field = [p.in_field_ms for p in approved]
    ok = len(approved)
    row: dict[str, Any] = {
        "runtime": runtime,
        "wallets": wallets,
        "pos": pos,
        "payments": len(pays),
        "approved": ok,
        "declined": len(pays) - ok,
        "wall_s": round(wall, 3),
        "timed_approved": ok_timed,
        "provision_s": round(t_prov, 2),
        "devices_per_s": round((wallets + pos) / t_prov, 1),
        "approved_per_s": round(ok_timed / wall, 1),
        "declined_per_s": round((len(pays) - ok) / (wall + probe_wall), 1),
        "in_field_ms_p50": round(statistics.median(in_field), 1) if in_field else 0.0,
        "per_ins_ms": {
            INS_NAMES.get(ins, f"{ins:02X}"): {
                "card": round(card / n / 1000, 3) if n else 0.0,
                "reader_after": round(reader / n / 1000, 3) if n else 0.0,
            }
            for ins, (n, card, reader) in sorted(per_ins.items())
        },
    }
    if vms:
        row["crypto"] = vms[0].crypto
        if ok:
            row["oracle_us"] = round(oracle_wall / ok * 1e6, 1)
    if vms and ok:
        sp, vp = vm_signs / ok, vm_verifies / ok
        sign_us = sum(v["sign_us"] for v in vm_lim) / len(vm_lim)
        verify_us = sum(v["verify_us"] for v in vm_lim) / len(vm_lim)
        vm_limit_per_s = 1e6 / (sp * sign_us + vp * verify_us)
        row.update(
            signs_per_payment=round(sp, 3),
            verifies_per_payment=round(vp, 3),
            vm_sign_us=round(sign_us, 1),
            vm_verify_us=round(verify_us, 1),
            limit_per_s=round(vm_limit_per_s, 1),
            ratio=round(ok_timed / wall / vm_limit_per_s, 3),
        )
    if runtime == "cpython" and cpu:  # (the MicroPython VMs' CPU is not this process's)
        row["approved_per_cpu_s"] = round(ok_timed / cpu, 1)
    if count is not None and limit is not None and ok and ok_timed:
        sp, vp = count.signs / ok, count.verifies / ok
        op = count.oracle_verifies / ok
        sig_us = sp * limit["sign_us"] + vp * limit["verify_us"]
        limit_per_s = 1e6 / sig_us
        # the oracle checks every payment a card signs on its own (PyNaCl): signature work of
        # this process too, but not the firmware's; it runs in one batch after the day, and
        # ratio_all counts it: (the day's time + the batch's) against the limit with its checks
        limit_all = 1e6 / (sp * limit["sign_us"] + (vp + op) * limit["verify_us"])
        pay_us = wall / ok_timed * 1e6
        oracle_us = oracle_wall / ok * 1e6
        # both sides in this process's CPU seconds: on a shared machine the time the process
        # waited for a core counts on neither side
        limit_cpu = 1e6 / (sp * limit["sign_cpu_us"] + vp * limit["verify_cpu_us"])
        row.update(
            signs_per_payment=round(sp, 3),
            verifies_per_payment=round(vp, 3),
            oracle_verifies_per_payment=round(op, 3),
            pynacl_sign_us=round(limit["sign_us"], 2),
            pynacl_verify_us=round(limit["verify_us"], 2),
            limit_per_s=round(limit_per_s, 1),
            ratio=round(ok_timed / wall / limit_per_s, 3),
            limit_all_per_s=round(limit_all, 1),
            ratio_all=round(1e6 / (pay_us + oracle_us) / limit_all, 3),
            oracle_us=round(oracle_us, 1),
            # what bounds the ratio: a payment's signature work (the limit's) and what is
            # left for everything else at ratio 0.75 (sig_us / 0.75 - sig_us), beside where
            # the probe slices' time went (us per approved payment, stopwatch included)
            sig_us=round(sig_us, 1),
            pay_us=round(pay_us, 1),
            budget_075_us=round(sig_us / 0.75 - sig_us, 1),
            # a payment doing nothing but this signature work (firmware and oracle) reaches
            # ratio limit_all / limit: the oracle's check alone keeps the ratio below it
            ratio_ceiling=round(limit_all / limit_per_s, 3),
            pynacl_sign_cpu_us=round(limit["sign_cpu_us"], 2),
            pynacl_verify_cpu_us=round(limit["verify_cpu_us"], 2),
            limit_cpu_per_s=round(limit_cpu, 1),
            ratio_cpu=round(ok_timed / cpu / limit_cpu, 3),
        )
        if ok_probe and split is not None:
            row["probe_approved"] = ok_probe
            row["probe_us"] = round(probe_wall / ok_probe * 1e6, 1)
            for part, v in split.t.items():
                row[f"split_{part}_us"] = round(v / ok_probe * 1e6, 1)
    return row


def _shard(args: tuple[int, int, int, int], barrier: Any, results: Any) -> None:
    wallets, pos, payments, seed = args
    results.put(run_bench(wallets, pos, payments, "cpython", barrier=barrier, seed=seed))


def run_sharded(wallets: int, pos: int, payments: int, shards: int) -> dict[str, Any]:
    """The fleet split into `shards` independent districts (wallets pay only at terminals of
    their own district), one process each, their payment phases started together."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(shards)
    results = ctx.Queue()
    workers = [
        ctx.Process(
            target=_shard,
            args=((wallets // shards, pos // shards, payments // shards, 1 + i), barrier, results),
        )
        for i in range(shards)
    ]
    for w in workers:
        w.start()
    procs = [results.get() for _ in workers]
    for w in workers:
        w.join()
    wall = max(r["wall_s"] for r in procs)
    ok = sum(r["approved"] for r in procs)
    row = dict(procs[0])
    one_process = (
        "limit_per_s",
        "ratio",
        "limit_all_per_s",
        "ratio_all",
        "ratio_ceiling",
        "limit_cpu_per_s",
        "ratio_cpu",
        "oracle_us",
        "sig_us",
        "pay_us",
        "budget_075_us",
        "probe_us",
    ) + tuple(f"split_{p}_us" for p in _Split.PARTS)
    for k in one_process:  # one process's limit
        row.pop(k, None)
    row.update(
        runtime=f"cpython x{shards}",
        wallets=sum(r["wallets"] for r in procs),
        pos=sum(r["pos"] for r in procs),
        payments=sum(r["payments"] for r in procs),
        approved=ok,
        declined=sum(r["declined"] for r in procs),
        wall_s=wall,
        approved_per_s=round(sum(r["timed_approved"] for r in procs) / wall, 1),
        declined_per_s=round(sum(r["declined"] for r in procs) / wall, 1),
        approved_per_cpu_s=round(sum(r["approved_per_cpu_s"] for r in procs) / shards, 1),
        provision_s=max(r["provision_s"] for r in procs),
    )
    row["devices_per_s"] = round((row["wallets"] + row["pos"]) / row["provision_s"], 1)
    return row


_CATEGORIES = (  # (category, path fragments), first match wins; others inherit the caller's
    ("crypto", ("/nacl/", "core/ed25519.py", "core/sha512.py")),
    ("CBOR", ("core/cbor.py", "core/cbor_cpython.py", "/cbor2/")),
    ("flash storage", ("core/storage.py", "core/fileflash.py", "sim/device/flash.py")),
    ("firmware logic", ("/firmware/",)),
    ("simulator", ("/sim/",)),
)


def _category(path: str | None) -> str | None:
    if not path:
        return None
    path = path.replace("\\", "/")
    for name, parts in _CATEGORIES:
        if any(p in path for p in parts):
            return name
    return None


def profile_shares(wallets: int = 1000, pos: int = 100, payments: int = 3000) -> dict[str, Any]:
    """Where a CPython payment's time goes: pyinstrument over the payment phase, each sample's
    time given to the innermost frame of a known category (crypto, CBOR, flash storage,
    firmware logic, simulator). A sampling profiler inflates pure-Python parts less than
    cProfile, but still some: shares, not times. Needs pyinstrument."""
    from dataclasses import replace

    from pyinstrument import Profiler

    from tapcash.sim.run.runner import ScenarioRun
    from tapcash.sim.scenario import build_schedule

    sc = replace(bench_scenario(wallets, pos, payments), seed=1)
    with tempfile.TemporaryDirectory(prefix="tapcash-bench-sim-") as tmp:
        run = ScenarioRun(sc, Path(tmp), runtime="cpython", ledger=False)
        try:
            run.provision()
            events = build_schedule(sc)
            prof = Profiler(interval=0.0005)
            prof.start()
            for ev in events:
                run.clock.set(sc.start + ev.t)
                run.dispatch(ev)
            prof.stop()
        finally:
            run.close()
    totals: dict[str, float] = {}

    def walk(frame: Any, cat: str) -> None:
        cat = _category(frame.file_path) or cat
        own = frame.time - sum(c.time for c in frame.children)
        totals[cat] = totals.get(cat, 0.0) + own
        for c in frame.children:
            walk(c, cat)

    root = prof.last_session.root_frame()
    if root is not None:
        walk(root, "other")
    whole = sum(totals.values()) or 1.0
    return {
        "command": f"tapcash bench sim --profile --wallets {wallets} --pos {pos} "
        f"--payments {payments}",
        "shares": {
            k: round(v / whole, 3) for k, v in sorted(totals.items(), key=lambda kv: -kv[1])
        },
    }


SPREAD_KEYS = (
    "approved_per_s",
    "declined_per_s",
    "approved_per_cpu_s",
    "provision_s",
    "devices_per_s",
    "in_field_ms_p50",
    "limit_per_s",
    "ratio",
    "pynacl_sign_us",
    "pynacl_verify_us",
    "signs_per_payment",
    "verifies_per_payment",
    "oracle_verifies_per_payment",
    "limit_all_per_s",
    "ratio_all",
    "ratio_ceiling",
    "vm_sign_us",
    "vm_verify_us",
    "pynacl_sign_cpu_us",
    "pynacl_verify_cpu_us",
    "limit_cpu_per_s",
    "ratio_cpu",
    "oracle_us",
    "sig_us",
    "pay_us",
    "budget_075_us",
    "probe_us",
) + tuple(f"split_{p}_us" for p in _Split.PARTS)


def _aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from repeated runs: the spread keys as min/median/max, the rest from the last."""
    row = dict(runs[-1])
    for k in SPREAD_KEYS:
        if all(k in r for r in runs):
            row[k] = report.spread([r[k] for r in runs], 3 if k.startswith("ratio") else 1)
    row["repeats"] = len(runs)
    return row


def section(
    wallets: int = 10_000,
    pos: int = 1_000,
    payments: int = 30_000,
    mp_wallets: int = 100,
    mp_pos: int = 10,
    mp_payments: int = 300,
    runtime: str = "both",
    shards: int = 1,
    repeat: int = 3,
    profile: bool | None = None,
    quick: bool = False,
    mp_crypto: str = "both",
) -> dict[str, Any]:
    """`repeat` runs of each row (fresh fleet each time); with `profile` (default: when
    pyinstrument is installed) the CPython profile shares too."""
    if quick:
        wallets, pos, payments, mp_wallets, mp_pos, mp_payments, repeat = (
            200,
            20,
            600,
            10,
            2,
            20,
            1,
        )
    defaults = {
        "wallets": (wallets, 10_000),
        "pos": (pos, 1_000),
        "payments": (payments, 30_000),
        "mp-wallets": (mp_wallets, 100),
        "mp-pos": (mp_pos, 10),
        "mp-payments": (mp_payments, 300),
        "runtime": (runtime, "both"),
        "shards": (shards, 1),
        "repeat": (repeat, 3),
        "mp-crypto": (mp_crypto, "both"),
    }
    cmd = "tapcash bench sim" + "".join(f" --{k} {v}" for k, (v, d) in defaults.items() if v != d)
    sec = report.new_section("sim", cmd)
    sec["title"] = "Simulator"
    rows = []
    if runtime in ("both", "cpython"):
        rows.append(
            _aggregate(
                [run_bench(wallets, pos, payments, "cpython", seed=1 + i) for i in range(repeat)]
            )
        )
        if shards > 1:
            rows.append(
                _aggregate([run_sharded(wallets, pos, payments, shards) for _ in range(repeat)])
            )
    if runtime in ("both", "micropython"):
        for crypto in ("host", "pure") if mp_crypto == "both" else (mp_crypto,):
            rows.append(
                _aggregate(
                    [
                        run_bench(
                            mp_wallets, mp_pos, mp_payments, "micropython", seed=1 + i,
                            crypto=crypto,
                        )
                        for i in range(repeat)
                    ]
                )
            )
    sec["rows"] = rows
    if profile is None:
        from importlib.util import find_spec

        profile = find_spec("pyinstrument") is not None and runtime != "micropython"
        if not profile and runtime != "micropython":
            report.not_measured(sec, "where a CPython payment's time goes (--profile)",
                                "pyinstrument is not installed (pip install 'tapcash[bench]')")
    if profile:
        sec["profile"] = profile_shares(200, 20, 600) if quick else profile_shares()
    return report.finish(sec)


def _two(v: float) -> str:
    return f"{v:.2f}"


def _line(r: dict[str, Any]) -> str:
    f = report.fmt_spread
    runtime = r["runtime"] + (f" (crypto {r['crypto']})" if r.get("crypto") else "")
    text = (
        f"{runtime}, {r['wallets']:,} wallets x {r['pos']:,} POS, {r['payments']:,} "
        f"payments a run: **{f(r['approved_per_s'], '/s')} approved** "
        f"(declined {f(r['declined_per_s'], '/s')}); "
    )
    if "approved_per_cpu_s" in r:
        text += f"{f(r['approved_per_cpu_s'], '/s')} per CPU second; "
    text += (
        f"provisioning {f(r['devices_per_s'], ' devices/s')}; card in field "
        f"p50 {f(r['in_field_ms_p50'], ' ms')} (simulated time: sim/nfc/field.py's air and "
        "compute model, not a measurement)"
    )
    if "ratio" in r and "vm_sign_us" in r:
        backend = (
            "the firmware's Ed25519 backend \"host\" (PyNaCl in this process, each call a "
            "round trip through the VM's host-call bridge)"
            if r.get("crypto") == "host"
            else "the firmware's own Ed25519 in the VM"
        )
        text += (
            f". Crypto limit in the same run, {backend}: "
            f"{r['signs_per_payment']['median']:.2f} signatures x "
            f"{f(r['vm_sign_us'], ' us')} + {r['verifies_per_payment']['median']:.2f} "
            f"verifications x {f(r['vm_verify_us'], ' us')} per approved payment = "
            f"{f(r['limit_per_s'], '/s')}; **ratio {f(r['ratio'], fmt=_two)}**"
        )
        if "oracle_us" in r:
            text += (
                f"; the oracle's own check of each payment (PyNaCl, in this process) runs in "
                f"one batch after the day, {f(r['oracle_us'], ' us')} per payment"
            )
    elif "ratio" in r:
        text += (
            f". Crypto limit in the same process: {r['signs_per_payment']['median']:.2f} "
            f"signatures x {f(r['pynacl_sign_us'], ' us')} + "
            f"{r['verifies_per_payment']['median']:.2f} verifications x "
            f"{f(r['pynacl_verify_us'], ' us')} per approved payment (raw PyNaCl) = "
            f"{f(r['limit_per_s'], '/s')}; **ratio {f(r['ratio'], fmt=_two)}**"
        )
        if "ratio_all" in r and "oracle_us" not in r:  # (a row from before the batch)
            text += (
                f"; with the oracle's own check of each payment "
                f"({r['oracle_verifies_per_payment']['median']:.2f} verifications more, "
                f"PyNaCl) the process's limit is {f(r['limit_all_per_s'], '/s')}, "
                f"ratio {f(r['ratio_all'], fmt=_two)}"
            )
            if "ratio_ceiling" in r:
                text += (
                    f" (a payment doing nothing but this signature work, the firmware's and "
                    f"the oracle's, would reach ratio {f(r['ratio_ceiling'], fmt=_two)}: the "
                    f"ceiling here while the oracle checks every payment)"
                )
        elif "ratio_all" in r:
            batch = f" runs in one batch after the day, {f(r['oracle_us'], ' us')} per payment"
            text += (
                f"; the oracle's own check of each payment "
                f"({r['oracle_verifies_per_payment']['median']:.2f} verifications more, "
                f"PyNaCl){batch}: with it the process's limit is "
                f"{f(r['limit_all_per_s'], '/s')}, and the day with the oracle's check reaches "
                f"ratio {f(r['ratio_all'], fmt=_two)}"
            )
            if "ratio_ceiling" in r:
                text += (
                    f" (a payment doing nothing but this signature work, the firmware's and "
                    f"the oracle's, would reach {f(r['ratio_ceiling'], fmt=_two)} of the "
                    f"firmware's limit)"
                )
        if "ratio_cpu" in r:
            text += (
                f"; in this process's CPU seconds on both sides (the time it waited for a core "
                f"left out): limit {f(r['limit_cpu_per_s'], '/s')}, "
                f"ratio {f(r['ratio_cpu'], fmt=_two)}"
            )
    if "budget_075_us" in r:
        text += (
            f". What bounds the ratio: a payment's signature work is {f(r['sig_us'], ' us')} "
            f"(the limit's), so at ratio 0.75 everything else must fit in "
            f"{f(r['budget_075_us'], ' us')} per payment; a payment took "
            f"{f(r['pay_us'], ' us')}"
        )
        if "split_firmware_us" in r:
            text += (
                f", and in the same run's probe slices (one in {PROBE_EVERY}, a stopwatch "
                f"switched at the device boundaries: {f(r['probe_us'], ' us')} a payment with "
                f"it) the unchanged firmware's Python for both devices took "
                f"{f(r['split_firmware_us'], ' us')} and its CBOR (on cbor2) "
                f"{f(r['split_cbor_us'], ' us')}, the signatures in place "
                f"{f(r['split_signatures_us'], ' us')}, the simulated flash HAL "
                f"{f(r['split_flash_us'], ' us')} and the simulator (events, NFC field, "
                f"oracle's tap, records) {f(r['split_simulator_us'], ' us')}"
            )
    return text + "."


def render(sec: dict[str, Any]) -> str:
    out = [
        "One payment is the whole NFC flow (SELECT / PAY / RECEIPT) between two simulated "
        "devices running the unchanged firmware, flash commits included; payments/s count "
        "approved payments only. Each run provisions a fresh fleet."
    ]
    out += [f"- {_line(r)}" for r in sec["rows"]]
    if any(r.get("crypto") for r in sec["rows"]):
        out += [
            "",
            "The MicroPython rows run the same firmware in the VM twice: *crypto host* (the "
            "simulator's default) with the firmware's Ed25519 backend \"host\" "
            "(firmware/core/ed25519_vmhost.py: the five libsodium calls of its PyNaCl path "
            "answered by this process through the VM's host-call bridge, SHA-512 by Node), "
            "which measures the firmware's protocol, storage and CBOR work in MicroPython plus "
            "the simulator's bridge, not the cost of a signature on a board; "
            "*crypto pure* (`tapcash sim run --crypto pure`) with the firmware's own "
            "pure-Python Ed25519 in the VM, as a board runs it, whose limit is that code's "
            "speed. Both produce the same transcripts.",
        ]
    if sec.get("profile"):
        p = sec["profile"]
        shares = ", ".join(f"{k} {v:.0%}" for k, v in p["shares"].items())
        out += [
            "",
            f"Where a CPython payment's time goes (`{p['command']}`, pyinstrument "
            f"sampling of one run, same revision): {shares}.",
        ]
    return "\n".join(out) + "\n"


@click.command()
@click.option("--wallets", default=10_000, show_default=True)
@click.option("--pos", "pos_count", default=1_000, show_default=True)
@click.option("--payments", default=30_000, show_default=True)
@click.option("--mp-wallets", default=100, show_default=True)
@click.option("--mp-pos", default=10, show_default=True)
@click.option("--mp-payments", default=300, show_default=True)
@click.option(
    "--runtime",
    type=click.Choice(["both", "cpython", "micropython"]),
    default="both",
    show_default=True,
)
@click.option(
    "--shards",
    default=1,
    show_default=True,
    help="CPython: split the fleet into this many districts, one process each",
)
@click.option("--repeat", default=3, show_default=True, help="runs per row (min/median/max)")
@click.option(
    "--mp-crypto",
    type=click.Choice(["both", "host", "pure"]),
    default="both",
    show_default=True,
    help="MicroPython rows: Ed25519 by the host through the VM's bridge, the firmware's own "
    "pure code in the VM, or a row of each",
)
@click.option(
    "--calibrate",
    is_flag=True,
    help="measure card/reader compute per command in the MicroPython VM",
)
@click.option(
    "--profile",
    is_flag=True,
    help="only where a CPython payment's time goes (pyinstrument), as shares",
)
@click.option("--json", "as_json", is_flag=True)
def command(
    wallets: int,
    pos_count: int,
    payments: int,
    mp_wallets: int,
    mp_pos: int,
    mp_payments: int,
    runtime: str,
    shards: int,
    repeat: int,
    mp_crypto: str,
    calibrate: bool,
    profile: bool,
    as_json: bool,
) -> None:
    """Simulated payments per second, end to end through the firmware (CPython, MicroPython)."""
    # --profile, --calibrate: their load and revision, as every bench command prints
    head = report.new_section("sim", "") if profile or calibrate else {}
    if profile:
        try:
            p = profile_shares(wallets, pos_count, payments)
        except ImportError:
            raise click.ClickException(
                "--profile needs pyinstrument (pip install 'tapcash[bench]')"
            ) from None
        if as_json:
            click.echo(json.dumps(p, indent=2))
        else:
            for k, v in p["shares"].items():
                click.echo(f"{k:<16} {v:6.1%}")
            click.echo("(shares of the samples of one profiled run)")
            report.echo_provenance(report.finish({**head, "command": p["command"]}))
        return
    if calibrate:
        crypto = None if mp_crypto == "both" else mp_crypto
        r = run_bench(mp_wallets, mp_pos, mp_payments, "micropython", measured=True, crypto=crypto)
        if as_json:
            click.echo(json.dumps(r, indent=2))
            return
        click.echo(f"{r['approved']} approved of {r['payments']} payments")
        for name, v in r["per_ins_ms"].items():
            click.echo(
                f"  {name:<8} card {v['card']:.3f} ms, reader after {v['reader_after']:.3f} ms"
            )
        click.echo("(means over the commands of one run)")
        cmd = (f"tapcash bench sim --calibrate --mp-wallets {mp_wallets} --mp-pos {mp_pos} "
               f"--mp-payments {mp_payments} --mp-crypto {mp_crypto}")
        report.echo_provenance(report.finish({**head, "command": cmd}))
        return
    sec = section(
        wallets,
        pos_count,
        payments,
        mp_wallets,
        mp_pos,
        mp_payments,
        runtime,
        shards,
        repeat,
        profile=False,
        mp_crypto=mp_crypto,
    )
    if as_json:
        click.echo(json.dumps(sec, indent=2))
        return
    for r in sec["rows"]:
        click.echo(_line(r).replace("**", ""))
    report.echo_provenance(sec)


sim_command = command  # the name it had

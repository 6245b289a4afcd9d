"""`tapcash bench crypto`: Ed25519 and SHA-512 speed, three ways, plus the table's RAM cost.

Rows (medians, microseconds, 150-byte message, SHA-512 over 200 bytes):

* ``pynacl``: the CPython backend (libsodium through PyNaCl; SHA-512 from hashlib);
* ``pure-cpython``: the firmware's pure-Python code on CPython (both ed25519 and sha512
  forced to their pure backends);
* ``micropython-vm``: the same firmware compiled to .mpy by mpy-cross, inside the real
  MicroPython 1.27 VM (WebAssembly under Node.js) through :mod:`tapcash.sim.vm.mpvm`.

Columns: ``keygen`` (seed -> public key, nothing cached), ``sign`` (the key's expansion
cached, as on a wallet signing with its one key), ``sign_cold`` (caches cleared first),
``verify`` (a public key not seen before: decoded and tabulated every time),
``verify_warm`` (the same public key again, e.g. the issuer's), ``sha512_200``.
The VM row adds the heap retained by importing the fixed-base table and the whole module,
and the bytes allocated by one sign / verify (gc disabled while measuring).
Benchmarks only: nothing here asserts a time.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import click

from . import report

Tick = Callable[[str], None]  # called once per measurement done, with what comes next


def _no_tick(what: str) -> None:
    pass


MSG_LEN = 150
SHA_LEN = 200
SEED = bytes(range(32))
COLUMNS = ("keygen_us", "sign_us", "sign_cold_us", "verify_us", "verify_warm_us", "sha512_200_us")


def _median_us(fn: Callable[[], object], min_batch_s: float = 0.03, repeat: int = 7) -> float:
    """Median over `repeat` batches of the time of one call, batches >= min_batch_s long."""
    n = 1
    while True:
        t = time.perf_counter()
        for _ in range(n):
            fn()
        if time.perf_counter() - t >= min_batch_s:
            break
        n *= 2
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        times.append((time.perf_counter() - t) / n)
    return statistics.median(times) * 1e6


def _fixtures(count: int = 8) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """The message and `count` (public key, signature) pairs, made with PyNaCl."""
    import nacl.signing

    msg = bytes((i * 7 + 1) & 255 for i in range(MSG_LEN))
    pairs = []
    for i in range(count):
        sk = nacl.signing.SigningKey(bytes([i + 1]) * 32)
        pairs.append((bytes(sk.verify_key), sk.sign(msg).signature))
    return msg, pairs


def measure_cpython(backend: str, tick: Tick = _no_tick, reverse: bool = False) -> dict[str, Any]:
    """One row on this CPython: backend "nacl" or "pure"; `tick` after each column; the
    columns in reverse order with `reverse` (runs alternate it)."""
    from tapcash.firmware.core import ed25519, sha512

    old = (ed25519.backend(), sha512.backend())
    ed25519.set_backend(backend)
    sha512.set_backend("pure" if backend == "pure" else "auto")
    try:
        msg, pairs = _fixtures()
        sha_data = bytes(SHA_LEN)
        ed25519.sign(SEED, msg)
        state = {"i": 0}

        def keygen() -> None:
            ed25519.clear_caches()
            ed25519.public_key(SEED)

        def sign_cold() -> None:
            ed25519.clear_caches()
            ed25519.sign(SEED, msg)

        def verify_cold() -> None:  # more distinct keys than the cache holds
            pk, sig = pairs[state["i"] % len(pairs)]
            state["i"] += 1
            assert ed25519.verify(pk, msg, sig)

        pk0, sig0 = pairs[0]
        fns: dict[str, Callable[[], object]] = {
            "keygen_us": keygen,
            "sign_us": lambda: ed25519.sign(SEED, msg),
            "sign_cold_us": sign_cold,
            "verify_us": verify_cold,
            "verify_warm_us": lambda: ed25519.verify(pk0, msg, sig0),
            "sha512_200_us": lambda: sha512.sha512(sha_data),
        }
        row: dict[str, Any] = {"implementation": "pynacl" if backend == "nacl" else "pure-cpython"}
        for key in _order(reverse):
            row[key] = _median_us(fns[key])
            tick(key)
    finally:
        ed25519.set_backend(old[0])
        sha512.set_backend(old[1])
        ed25519.clear_caches()
    return row


def _vm_setup(msg: bytes, pairs: list[tuple[bytes, bytes]]) -> str:
    return (
        "from firmware.core import ed25519 as ed, sha512\n"
        f"seed = {SEED!r}\nmsg = {msg!r}\npairs = {pairs!r}\n"
        f"sha_data = bytes({SHA_LEN})\n"
        "pk0, sig0 = pairs[0]\nstate = [0]\n"
        "ed.sign(seed, msg)\n"
    )


def measure_vm(compiled: bool = True, tick: Tick = _no_tick,
               reverse: bool = False) -> dict[str, Any]:
    """The MicroPython VM row (firmware as .mpy unless compiled=False); `tick` after the VM
    started, after each column and after the heap figures."""
    from tapcash.sim.vm.mpvm import MicroPythonVM

    msg, pairs = _fixtures()
    setup = _vm_setup(msg, pairs)
    stmts = {
        "keygen_us": "ed.clear_caches()\ned.public_key(seed)",
        "sign_us": "ed.sign(seed, msg)",
        "sign_cold_us": "ed.clear_caches()\ned.sign(seed, msg)",
        "verify_us": (
            "pk, sig = pairs[state[0] % len(pairs)]\nstate[0] += 1\nassert ed.verify(pk, msg, sig)"
        ),
        "verify_warm_us": "ed.verify(pk0, msg, sig0)",
        "sha512_200_us": "sha512.sha512(sha_data)",
    }
    row: dict[str, Any] = {"implementation": "micropython-vm" + ("" if compiled else " (.py)")}
    with MicroPythonVM() as vm:
        vm.install_firmware(compiled=compiled)
        row["vm_version"] = vm.version()
        tick("vm started")
        for key in _order(reverse):
            row[key] = vm.time_us(stmts[key], setup, repeat=7, batch_ms=40)
            tick(key)
        row["heap_sign_bytes"] = vm.heap("ed.sign(seed, msg)", setup, warmup=True)
        row["heap_verify_bytes"] = vm.heap(
            "ed.clear_caches()\ned.verify(pk0, msg, sig0)", setup, warmup=True
        )
        table = vm.import_heap("firmware.core._ed25519_table")
        row["table_ram_bytes"] = table.retained
        vm.exec("from firmware.core import _ed25519_table as _t")
        row["table_data_bytes"] = vm.eval_json("len(_t.COMB) + len(_t.ODD)")
        module = vm.import_heap("firmware.core.ed25519")
        row["module_ram_bytes"] = module.retained
        tick("heap")
    return row


def _order(reverse: bool) -> tuple[str, ...]:
    return COLUMNS[::-1] if reverse else COLUMNS


def run(vm: bool = True, compiled: bool = True, tick: Tick = _no_tick,
        reverse: bool = False) -> list[dict[str, Any]]:
    """All rows: PyNaCl, pure Python on CPython and (unless vm=False) the MicroPython VM;
    each row's columns in reverse order with `reverse`."""
    rows = [measure_cpython("nacl", tick, reverse), measure_cpython("pure", tick, reverse)]
    if vm:
        rows.append(measure_vm(compiled=compiled, tick=tick, reverse=reverse))
    return rows


def section(
    repeat: int = 3,
    vm: bool = True,
    compiled: bool = True,
    quick: bool = False,
    tick: Tick = _no_tick,
) -> dict[str, Any]:
    """`repeat` whole runs (each a median per column); per row and column min/median/max.
    `tick` is called once per entry of labels(repeat, vm) (the command's progress bar)."""
    if quick:
        repeat = 1
    cmd = "tapcash bench crypto" + (f" --repeat {repeat}" if repeat != 3 else "")
    cmd += "" if vm else " --no-vm"
    cmd += "" if compiled else " --source"
    sec = report.new_section("crypto", cmd)
    sec["title"] = "Crypto"
    # the columns' order reverses every other run: no column always follows the same one
    runs = [run(vm=vm, compiled=compiled, tick=tick, reverse=bool(i % 2)) for i in range(repeat)]
    rows = []
    for i, first in enumerate(runs[0]):
        row: dict[str, Any] = {"implementation": first["implementation"]}
        for c in COLUMNS:
            row[c] = report.spread([r[i][c] for r in runs], 2)
        row.update({k: v for k, v in runs[-1][i].items() if k not in row})  # VM heap figures
        rows.append(row)
    sec["rows"] = rows
    sec["alternated"] = True  # the columns' order, run by run (older sections: not)
    sec["message_bytes"] = MSG_LEN
    sec["sha_bytes"] = SHA_LEN
    return report.finish(sec)


def _fmt_us(v: float) -> str:
    return f"{v / 1000:.2f} ms" if v >= 1000 else f"{v:.1f} us"


def _fmt_spread_us(s: dict[str, Any]) -> str:
    return report.fmt_spread(s, fmt=_fmt_us)


HEADS = {
    "keygen_us": "keygen",
    "sign_us": "sign",
    "sign_cold_us": "sign, caches cleared",
    "verify_us": "verify, new key",
    "verify_warm_us": "verify, same key",
    "sha512_200_us": f"SHA-512 {SHA_LEN} B",
}
EXPLAIN = (
    "sign: the key's expansion cached (a device signing with its one key); sign, caches "
    "cleared and keygen: every cache cleared first (`ed25519.clear_caches()`, PyNaCl's "
    "expanded-key cache included); verify, new key: a public key not seen before; "
    "verify, same key: the same key again (e.g. the issuer's)."
)


def _vm_note(r: dict[str, Any]) -> str:
    return (
        f"MicroPython {r.get('vm_version', '')}: fixed-base table "
        f"{r['table_data_bytes']:,} B of data, {r['table_ram_bytes']:,} B of heap retained by "
        f"its import; ed25519 + sha512 + runtime code {r['module_ram_bytes']:,} B; allocated "
        f"per sign {r['heap_sign_bytes']:,} B, per cold verify {r['heap_verify_bytes']:,} B "
        "(garbage, collected)."
    )


def render(sec: dict[str, Any]) -> str:
    """Markdown for docs/PERFORMANCE.md."""
    out = [
        f"Ed25519 over a {sec['message_bytes']}-byte message, SHA-512 over "
        f"{sec['sha_bytes']} bytes; per operation.",
        "",
        "| | " + " | ".join(HEADS.values()) + " |",
        "|---|" + "---|" * len(HEADS),
    ]
    for r in sec["rows"]:
        out.append(
            f"| {r['implementation']} | " + " | ".join(_fmt_spread_us(r[c]) for c in HEADS) + " |"
        )
    out += ["", EXPLAIN + (" The columns are measured in turn, in the reverse order every other "
                           "run." if sec.get("alternated") else "")]
    out += ["", *(_vm_note(r) for r in sec["rows"] if "table_ram_bytes" in r)]
    return "\n".join(out) + "\n"


def _print(sec: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"Ed25519 ({MSG_LEN}-byte message) and SHA-512 ({SHA_LEN} bytes): "
        f"median (min-max) of {len(sec['rows'][0][COLUMNS[0]]['runs'])} runs"
    )
    table.add_column("implementation", no_wrap=True, min_width=14)
    for c in COLUMNS:
        table.add_column(HEADS[c], justify="right")
    for r in sec["rows"]:
        table.add_row(r["implementation"], *(_fmt_spread_us(r[c]) for c in COLUMNS))
    console = Console()
    if console.width < 130:  # a pipe or a narrow terminal: do not truncate the numbers
        console = Console(width=130)
    console.print(table)
    for r in sec["rows"]:
        if "table_ram_bytes" in r:
            console.print(_vm_note(r))
    console.print(EXPLAIN)
    report.echo_provenance(sec)


def labels(repeat: int, vm: bool = True) -> list[str]:
    """What each step of `section` measures, in order (one tick each)."""
    def one(cols: tuple[str, ...]) -> list[str]:
        out = [f"pynacl {HEADS[c]}" for c in cols] + [f"pure-cpython {HEADS[c]}" for c in cols]
        if vm:
            out += ["micropython-vm: starting", *(f"micropython-vm {HEADS[c]}" for c in cols),
                    "micropython-vm: heap figures"]
        return out

    return [f"run {i + 1}/{repeat}: {what}" for i in range(repeat) for what in one(_order(i % 2))]


@contextlib.contextmanager
def _progress(steps_: list[str]) -> Iterator[Tick]:
    """A Rich progress bar on stderr (nothing when stderr is not a terminal), ticked once per
    measurement: what is running, how many are done, elapsed time and ETA."""
    from rich.console import Console

    from tapcash.host.output import progress_bar

    console = Console(stderr=True)
    with progress_bar(console, 44, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task(steps_[0] if steps_ else "", total=len(steps_))
        done = [0]

        def tick(what: str) -> None:
            done[0] += 1
            n = done[0]
            bar.update(task, completed=n, description=steps_[n] if n < len(steps_) else "done")

        yield tick


@click.command()
@click.option("--json", "as_json", is_flag=True, help="print the section as JSON")
@click.option("--repeat", default=3, show_default=True, help="whole runs (min/median/max)")
@click.option("--no-vm", is_flag=True, help="skip the MicroPython VM row")
@click.option("--source", is_flag=True, help="VM runs the .py sources instead of .mpy")
def command(as_json: bool, repeat: int, no_vm: bool, source: bool) -> None:
    """Ed25519 keygen/sign/verify and SHA-512: PyNaCl, pure Python, MicroPython VM.

    Progress (a bar with its ETA) goes to stderr; stdout carries only the table or the JSON."""
    with _progress(labels(repeat, not no_vm)) as tick:
        sec = section(repeat=repeat, vm=not no_vm, compiled=not source, tick=tick)
    if as_json:
        click.echo(json.dumps(sec, indent=2))
    else:
        _print(sec)


crypto_command = command  # the name it had

if __name__ == "__main__":  # pragma: no cover
    command()

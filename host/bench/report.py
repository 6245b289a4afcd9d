"""What every benchmark reports besides its figures: repeated runs as min/median/max, the
machine's load average, the source revision and the command line that reproduces it.

A bench module's `section(...)` returns one JSON-able dict (see `new_section`); its command
prints it (or `--json` dumps it), `tapcash bench all --json FILE` collects every registered
bench's section into one file, and `tapcash bench render FILE` turns that file into
docs/PERFORMANCE.md (host/bench/render.py).
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any


def spread(values: Iterable[float], digits: int = 1) -> dict[str, Any]:
    """{"min", "median", "max", "runs"} of repeated measurements."""
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("no measurements")
    r = (lambda v: round(v, digits)) if digits else (lambda v: round(v))
    return {
        "min": r(min(vals)),
        "median": r(statistics.median(vals)),
        "max": r(max(vals)),
        "runs": [r(v) for v in vals],
    }


def fmt_spread(s: dict[str, Any], unit: str = "", fmt: Callable[[float], str] | None = None) -> str:
    """"median (min-max)" with a unit, e.g. "2,356/s (2,301-2,384)"."""
    f = fmt or (lambda v: f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.3g}")
    if s["min"] == s["max"]:
        return f"{f(s['median'])}{unit}"
    return f"{f(s['median'])}{unit} ({f(s['min'])}–{f(s['max'])})"


def loadavg() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover - no /proc/loadavg
        return []


def _root() -> Path:
    import tapcash.host as host

    return Path(host.__file__).resolve().parent.parent


def revision() -> str:
    """The source tree's git revision (short), "+dirty" when it has uncommitted changes."""
    git = ["git", "-C", str(_root())]
    try:
        rev = subprocess.run([*git, "rev-parse", "--short=10", "HEAD"], capture_output=True,
                             text=True, check=True, timeout=10).stdout.strip()
        # the benches' own output files do not make the source dirty
        dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no", "--",
                                ".", ":!docs/performance.json", ":!docs/PERFORMANCE.md",
                                ":!boards/heap_needs.json"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return rev + ("+dirty" if dirty else "")


def reset_peak_rss() -> None:
    """Start this process's RSS high-water mark afresh (Linux: /proc/self/clear_refs 5, which
    ru_maxrss follows), so a peak read after a run is the run's, not the process's lifetime's
    (the benches before it, the imports)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:  # pragma: no cover - not Linux: the lifetime's peak
        pass


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }


def cpu_times() -> list[float]:
    """[wall s, the machine's busy CPU s (/proc/stat), this process's and its waited-for
    children's CPU s]: `cpu_use` of two of these says who kept the CPUs busy in between."""
    busy = float("nan")
    try:
        with open("/proc/stat") as f:
            j = [int(v) for v in f.readline().split()[1:]]
        busy = (sum(j[:8]) - j[3] - j[4]) / os.sysconf("SC_CLK_TCK")  # all but idle, iowait
    except (OSError, ValueError, IndexError):  # pragma: no cover - not Linux
        pass
    t = os.times()
    return [time.monotonic(), busy, t.user + t.system + t.children_user + t.children_system]


def cpu_use(start: list[float], end: list[float]) -> dict[str, Any]:
    """Mean CPUs busy between two `cpu_times()`: the machine's, the bench's own processes'
    (those it waited for), the other processes' (the rest: a database server's work for the
    bench is counted there)."""
    wall = max(end[0] - start[0], 1e-9)
    busy, ours = (end[1] - start[1]) / wall, (end[2] - start[2]) / wall
    if busy != busy:  # no /proc/stat
        return {"wall_s": round(wall, 1), "bench_cpus": round(ours, 2)}
    return {"wall_s": round(wall, 1), "busy_cpus": round(busy, 2), "bench_cpus": round(ours, 2),
            "other_cpus": round(max(0.0, busy - ours), 2)}


def new_section(bench: str, command: str) -> dict[str, Any]:
    """The head of a bench's JSON section; the bench adds its figures and calls `finish`."""
    return {
        "bench": bench,
        "command": command,
        "revision": revision(),
        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "loadavg_before": loadavg(),
        "machine": machine(),
        "_cpu_times": cpu_times(),
    }


def finish(section: dict[str, Any]) -> dict[str, Any]:
    section["loadavg_after"] = loadavg()
    if "_cpu_times" in section:
        section["cpu"] = cpu_use(section.pop("_cpu_times"), cpu_times())
    return section


def not_measured(section: dict[str, Any], what: str, why: str) -> None:
    """Say in the section (the doc, the command's output) that a part of it was not measured:
    a benchmark never disappears without a word."""
    line = f"{what}: {why}"
    if line not in section.setdefault("not_measured", []):
        section["not_measured"].append(line)


def provenance(section: dict[str, Any]) -> str:
    """One line naming the command, revision, time and load of a section."""
    la = section.get("loadavg_before") or []
    lb = section.get("loadavg_after") or []
    load = ""
    if la:
        load = f"; load average {la[0]:.2f}" + (f" -> {lb[0]:.2f}" if lb else "")
    return (f"`{section['command']}` at revision `{section.get('revision', '?')}`, "
            f"{section.get('started', '?')}{load} ({context(section)})")


def context(section: dict[str, Any]) -> str:
    """The machine as measured: its CPUs and, where recorded, who kept them busy in the run."""
    out = f"{section.get('machine', {}).get('cpus', '?')} CPUs"
    c = section.get("cpu") or {}
    if "busy_cpus" in c:
        out += (f"; over the run's {c['wall_s']:,.0f} s, {c['busy_cpus']:.2f} CPUs busy on "
                f"average: {c['bench_cpus']:.2f} this bench's processes, {c['other_cpus']:.2f} "
                "other processes")
    return out


def echo_provenance(section: dict[str, Any]) -> None:
    import click

    for line in section.get("not_measured", []):
        click.echo(f"-- not measured in this run: {line}")
    click.echo(f"-- {provenance(section).replace('`', '')}")

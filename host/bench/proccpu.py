"""CPU time of the processes of a benchmark run, by kind, from /proc (Linux).

`tapcash bench servers` runs ledger servers, PostgreSQL backends and its own load client on the
same cores; the time each of them spends per payment says what bounds the rate. A process's
utime + stime (/proc/PID/stat: every thread's, the exited ones' included) is read before and
after the measured part; a process that appeared in between counts from zero (a new process
starts at zero), one that exited in between is lost (none should: servers keep their pools).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses
    return raw[raw.rindex(")") + 2:].split()


def cpu_s(pid: int) -> float | None:
    """utime + stime of process `pid` in seconds; None when it is gone."""
    f = _stat(pid)
    return None if f is None else (int(f[11]) + int(f[12])) / _TICK


def group(pgid: int) -> list[int]:
    """Every process of process group `pgid` (a server and its signature helpers)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            f = _stat(int(d))
            if f is not None and int(f[2]) == pgid:
                out.append(int(d))
    return out


def machine_busy_s() -> float:
    """CPU seconds the whole machine has been busy (/proc/stat: all but idle and iowait)."""
    with open("/proc/stat") as f:
        j = [int(v) for v in f.readline().split()[1:]]
    return (sum(j[:8]) - j[3] - j[4]) / _TICK


class Meter:
    """CPU seconds per kind between `start()` and `stop()`. `kinds` maps a kind's name to a
    function listing its pids now (called at both ends: pids that appear in between count).
    Also the span's wall seconds (`wall_s`) and the machine's busy CPU seconds (`busy_s`), so
    that what the kinds did not use splits into other processes' work and idle time."""

    def __init__(self, kinds: dict[str, Callable[[], Iterable[int]]]) -> None:
        self.kinds = kinds
        self._before: dict[str, dict[int, float]] = {}
        self.seconds: dict[str, float] = {}
        self.wall_s = self.busy_s = 0.0
        self._t0 = self._busy0 = 0.0

    def _snap(self) -> dict[str, dict[int, float]]:
        snap: dict[str, dict[int, float]] = {}
        for kind, pids in self.kinds.items():
            snap[kind] = {}
            for pid in pids():
                s = cpu_s(pid)
                if s is not None:
                    snap[kind][pid] = s
        return snap

    def start(self) -> None:
        self._before = self._snap()
        self._t0, self._busy0 = time.monotonic(), machine_busy_s()

    def stop(self) -> dict[str, float]:
        self.wall_s = time.monotonic() - self._t0
        self.busy_s = machine_busy_s() - self._busy0
        after = self._snap()
        self.seconds = {kind: sum(s - self._before.get(kind, {}).get(pid, 0.0)
                                  for pid, s in after[kind].items())
                        for kind in self.kinds}
        return self.seconds


def pg_pids(admin_url: str, application_name: str) -> tuple[list[int], list[int]]:
    """([client backends whose application_name is `application_name`], [PostgreSQL's own
    background processes: WAL writer, checkpointer, ...]) from pg_stat_activity, those running
    on this machine (both empty for a PostgreSQL elsewhere: its CPU is not metered here)."""
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as c:
        rows = c.execute("SELECT pid, backend_type, application_name FROM pg_stat_activity"
                         ).fetchall()
    # a server on another machine reports its own pids: only local postgres processes count
    local = [(pid, kind, app) for pid, kind, app in rows if _is_postgres(pid)]
    mine = [pid for pid, kind, app in local if kind == "client backend" and app == application_name]
    background = [pid for pid, kind, _app in local if kind != "client backend"]
    return mine, background


def _is_postgres(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "postgres"
    except OSError:
        return False

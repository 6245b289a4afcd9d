"""`tapcash bench servers` (issue #15 items 1-2): several real `tapcash ledger serve` processes on
one real PostgreSQL, the books checked against what the bench recomputes from the records it
signed, and every process of the run metered (us of CPU per payment by kind). Nothing here
asserts a time: the CPU meter is checked on work that must cost CPU, the books check on books
that are wrong."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import click
import pytest
from click.testing import CliRunner
from ledger_world import pg_schema

from tapcash.host.bench import bench, proccpu, servers


def test_cpu_of_a_live_group_counts_every_member() -> None:
    # a process and its child in one process group, each hashing once told to go, then waiting
    burn = ("import hashlib, os, sys, time\nos.read(0, 3)\nh = b''\n"
            "for _ in range(200000): h = hashlib.sha256(h).digest()\n"
            "sys.stdout.write('done\\n'); sys.stdout.flush(); time.sleep(60)\n")
    lead = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys\n"
         f"k = subprocess.Popen([sys.executable, '-c', {burn!r}])\n{burn}"],
        start_new_session=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        for _ in range(600):  # until the child is there (both then wait on stdin)
            if len(proccpu.group(lead.pid)) == 2:
                break
            time.sleep(0.05)
        members = proccpu.group(lead.pid)
        meter = proccpu.Meter({"lead": lambda: [lead.pid],
                               "child": lambda: [p for p in proccpu.group(lead.pid)
                                                 if p != lead.pid]})
        meter.start()
        assert lead.stdin is not None and lead.stdout is not None
        lead.stdin.write("go\ngo\n")
        lead.stdin.flush()
        assert lead.stdout.readline() == "done\n" and lead.stdout.readline() == "done\n"
        cpu = meter.stop()
    finally:
        os.killpg(lead.pid, signal.SIGKILL)  # the group this test started
        lead.wait()
    assert len(members) == 2 and lead.pid in members
    assert cpu["lead"] > 0 and cpu["child"] > 0  # each hashed inside the metered span
    assert meter.wall_s > 0 and meter.busy_s > 0


def _books(want: dict) -> dict:
    pays = [[w, c, h, "posted", "merchant:00"] for w, c, h in sorted(want["payments"])]
    bal = {"merchant:00": want["total"]}
    bal |= {f"wallet:{w}": loaded - want["paid"].get(w, 0) for w, loaded in want["loaded"].items()}
    return {"payments": pays, "balances": bal}


def test_the_books_check_refuses_every_kind_of_wrong_books() -> None:
    want = {"payments": {("aa", 1, "h1"), ("aa", 2, "h2"), ("bb", 1, "h3")},
            "paid": {"aa": 5, "bb": 2}, "total": 7, "loaded": {"aa": 10, "bb": 10, "cc": 3}}
    servers.check_books(_books(want), want)
    wrong = []
    b = _books(want)
    b["payments"].pop()  # a payment lost
    wrong.append(b)
    b = _books(want)
    b["payments"].append(list(b["payments"][0]))  # one posted twice
    wrong.append(b)
    b = _books(want)
    b["payments"][0][3] = "refused"
    wrong.append(b)
    b = _books(want)
    b["balances"]["merchant:00"] += 1  # value created
    wrong.append(b)
    b = _books(want)
    b["balances"]["wallet:cc"] -= 1  # a wallet that paid nothing lost value
    wrong.append(b)
    b = _books(want)
    b["payments"][0][4] = "merchant:01"  # credited to another account
    wrong.append(b)
    for books in wrong:
        with pytest.raises(click.ClickException):
            servers.check_books(books, want)


def test_bench_servers_meters_every_process_and_checks_the_books(pg_admin: str) -> None:
    with pg_schema(pg_admin) as url:
        res = CliRunner().invoke(bench, ["servers", "--db", url, "--servers", "2", "--entries",
                                         "1200", "--batch", "200", "--repeat", "1", "--json"])
    assert res.exit_code == 0, res.output
    sec = json.loads(res.output)
    cpu = {k: v["median"] for k, v in sec["cpu_per_payment"].items()}
    # the servers verify every payment: at least one raw verify's CPU each; the others cost some
    assert cpu["cpu_us:server"] > cpu["verify_us"] > 0
    assert cpu["cpu_us:postgresql"] > 0 and cpu["cpu_us:client"] >= 0
    parts = sum(cpu[f"cpu_us:{k}"] for k in servers.KINDS)
    assert cpu["cpu_us:total"] == pytest.approx(parts, abs=0.2)
    assert 0 < cpu["bound_ratio"] < cpu["bound_ratio_servers"] < 1
    assert cpu["cpu_us:others"] >= 0 and cpu["cpu_us:idle"] >= 0  # the rest of the cores' time
    text = servers.render(sec)
    assert "CPU per payment" in text and "payments/s" in text


def test_a_postgresql_on_another_machine_is_said_not_metered(
    pg_admin: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # pg_stat_activity's pids are another machine's then: never read as local processes
    monkeypatch.setattr(proccpu, "_is_postgres", lambda pid: False)
    with pg_schema(pg_admin) as url:
        sec = servers.section(url, servers=2, entries=600, batch=200, repeat=1)
    assert sec["rows"] and sec["cpu_per_payment"] == {}
    assert sec["not_measured"] == ["CPU per payment by process: the servers' PostgreSQL runs on "
                                   "another machine"]
    assert "CPU per payment" not in servers.render(sec)

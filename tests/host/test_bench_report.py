"""The benchmarks report honestly (issue #15 item 4): repeated runs as min/median/max with the
load average and the revision, one JSON file from `tapcash bench all`, docs/PERFORMANCE.md
generated from it, no benchmark silently dropped, "cold" rows really cold, approved payments
counted apart from declined ones. Nothing here asserts a time."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from tapcash.firmware.core import ed25519
from tapcash.host import bench as bench_pkg
from tapcash.host.bench import BENCHES, bench, render, report

ROOT = Path(__file__).resolve().parents[2]


def test_spread_is_min_median_max_of_the_runs() -> None:
    s = report.spread([3.0, 1.0, 2.0, 10.0])
    assert (s["min"], s["median"], s["max"], s["runs"]) == (1.0, 2.5, 10.0, [3.0, 1.0, 2.0, 10.0])
    assert report.fmt_spread(report.spread([2356, 2301, 2384]), "/s") == "2,356/s (2,301–2,384)"
    assert report.fmt_spread(report.spread([5.0]), " ms") == "5 ms"
    with pytest.raises(ValueError):
        report.spread([])


def test_a_bench_that_does_not_import_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # every registered bench is a command of `tapcash bench`
    assert set(BENCHES) | {"all", "render"} <= set(bench.commands)
    monkeypatch.setitem(BENCHES, "broken", "tapcash.host.bench.no_such_module")
    with pytest.raises(ModuleNotFoundError):
        bench_pkg.bench_module("broken")


def test_cold_means_every_cache_cleared() -> None:
    # keygen and "sign, caches cleared" used to hit PyNaCl's per-seed cache of expanded keys
    if ed25519.backend() != "nacl":
        pytest.skip("PyNaCl backend not active")
    ed25519.sign(bytes(range(32)), b"m")
    assert ed25519._nacl_keys
    ed25519.clear_caches()
    assert not ed25519._nacl_keys and ed25519._key_cache is None and not ed25519._a_cache


def test_ingest_alternates_which_side_is_measured_first(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from tapcash.host.bench import ingest as ib
    from tapcash.host.ledger import ingest as ledger_ingest

    order: list[str] = []
    real_verify, real_ingest = ib.raw_verify_rate, ledger_ingest.ingest

    def verify(*a: object) -> float:
        order.append("verify")
        return real_verify(*a)  # type: ignore[arg-type]

    def ingest(*a: object, **kw: object) -> dict:
        order.append("ingest")
        return real_ingest(*a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(ib, "raw_verify_rate", verify)
    monkeypatch.setattr(ledger_ingest, "ingest", ingest)
    r = ib.run(str(tmp_path / "b.db"), entries=40, batch=10, wallets=2)
    assert r["entries"] == 40
    # per batch: fresh ingest and raw verify in alternating order, then the re-ingest of the
    # same batch (a retried upload), measured after both
    triples = [tuple(order[i : i + 3]) for i in range(0, len(order), 3)]
    assert triples == [("ingest", "verify", "ingest"), ("verify", "ingest", "ingest")] * 2


def test_bench_sim_counts_approved_and_declined_apart_and_measures_its_limit() -> None:
    from tapcash.host.bench.sim import run_bench

    r = run_bench(12, 3, 30, "cpython")
    assert r["approved"] + r["declined"] == r["payments"] == 30
    # the bench's fleet has the funds and limits for every payment: a decline is a broken run
    assert r["approved"] == 30, r
    # payments/s from the slices timed without the stopwatch (one slice in PROBE_EVERY has it)
    assert 0 < r["timed_approved"] < r["approved"]
    assert r["approved_per_s"] == pytest.approx(r["timed_approved"] / r["wall_s"], rel=0.05)
    # the firmware signs and verifies through ed25519: counted, and the limit follows from them
    assert r["signs_per_payment"] >= 1 and r["verifies_per_payment"] >= 1
    limit = 1e6 / (r["signs_per_payment"] * r["pynacl_sign_us"]
                   + r["verifies_per_payment"] * r["pynacl_verify_us"])  # fmt: skip
    assert r["limit_per_s"] == pytest.approx(limit, rel=0.01)
    assert r["ratio"] == pytest.approx(r["approved_per_s"] / r["limit_per_s"], rel=0.02)
    # the oracle checked every payment, in one batch after the day, counted in ratio_all
    assert r["oracle_verifies_per_payment"] == 1 and r["oracle_us"] > 0
    day_and_batch = 1e6 / (r["pay_us"] + r["oracle_us"])
    assert r["ratio_all"] == pytest.approx(day_and_batch / r["limit_all_per_s"], rel=0.02)
    # what bounds the ratio: the budget at 0.75, and the probe slices' parts adding up
    assert r["budget_075_us"] == pytest.approx(r["sig_us"] / 3, rel=0.01)
    parts = [r[f"split_{p}_us"] for p in ("firmware", "cbor", "signatures", "flash", "simulator")]
    assert all(v > 0 for v in parts) and r["probe_approved"] > 0
    assert sum(parts) == pytest.approx(r["probe_us"], rel=0.1)


def test_bench_all_writes_one_file_and_render_makes_the_doc(tmp_path: Path) -> None:
    out = tmp_path / "perf.json"
    res = CliRunner().invoke(bench, ["all", "--json", str(out), "--only", "ingest", "--quick"])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    sec = doc["benches"]["ingest"]
    assert sec["command"].startswith("tapcash bench ingest") and sec["revision"]
    assert len(sec["loadavg_before"]) == 3 and sec["rows"]
    assert {"min", "median", "max", "runs"} <= set(sec["rows"][0]["ratio"])
    # a bench without a render of its own (or not registered here) renders from its JSON alone
    doc["benches"]["later"] = {
        **{k: sec[k] for k in render._META if k in sec},
        "bench": "later",
        "command": "tapcash bench later",
        "rows": [{"role": "wallet", "pay_ms": report.spread([3.8, 4.0])}],
    }
    out.write_text(json.dumps(doc))
    md = tmp_path / "PERFORMANCE.md"
    res = CliRunner().invoke(bench, ["render", str(out), "-o", str(md)])
    assert res.exit_code == 0, res.output
    text = md.read_text()
    assert "`tapcash bench ingest --entries 2000 --batch 500 --repeat 1 --profile`" in text
    # where a payment's CPU goes: every part per database, adding up to the total
    prof = sec["profile"][0]
    parts = [prof[p]["median"] for p in ("signatures", "decode and checks", "apply: SQL",
                                          "apply: Python", "digest, commit, rest")]
    assert all(v > 0 for v in parts[:4]) and prof["total"]["median"] > prof["signatures"]["median"]
    assert 0 < prof["bound"]["median"] < 1.5
    assert "| apply: SQL |" in text and "| bound |" in text
    assert "Peak RSS: the process's high-water mark over the run's ingest." in text
    assert f"`{sec['revision']}`" in text
    assert "| wallet | 3.9 (3.8–4) |" in text
    res = CliRunner().invoke(bench, ["render", str(tmp_path / "missing.json")])
    assert res.exit_code != 0 and "no such file" in res.output


def test_performance_doc_is_generated_from_the_committed_json() -> None:
    doc = render.load(ROOT / render.DEFAULT_JSON)
    assert (ROOT / render.DEFAULT_DOC).read_text() == render.render(doc, render.DEFAULT_JSON), (
        "docs/PERFORMANCE.md differs from `tapcash bench render docs/performance.json`"
    )
    for name, sec in doc["benches"].items():
        assert sec["command"].startswith(f"tapcash bench {name}") and sec["revision"], name


def test_profile_shares_name_where_the_time_goes() -> None:
    pytest.importorskip("pyinstrument")
    from tapcash.host.bench.sim import _category, profile_shares

    assert _category("/x/site-packages/nacl/bindings/crypto_sign.py") == "crypto"
    assert _category("/repo/firmware/core/cbor_cpython.py") == "CBOR"
    assert _category("/repo/firmware/core/storage.py") == "flash storage"
    assert _category("/repo/firmware/pos/pay.py") == "firmware logic"
    assert _category("/repo/sim/nfc/field.py") == "simulator"
    p = profile_shares(20, 4, 40)
    assert p["command"].startswith("tapcash bench sim --profile")
    assert sum(p["shares"].values()) == pytest.approx(1.0, abs=0.01)
    assert {"crypto", "CBOR", "firmware logic"} <= set(p["shares"])
    # the command prints what it ran, the revision and the load, as every bench command does
    res = CliRunner().invoke(bench, ["sim", "--profile", "--wallets", "20", "--pos", "4",
                                     "--payments", "40"])  # fmt: skip
    assert res.exit_code == 0, res.output
    last = res.output.splitlines()[-1]
    assert last.startswith("-- tapcash bench sim --profile --wallets 20 --pos 4 --payments 40 ")
    assert "load average" in last and "one profiled run" in res.output


def test_bench_crypto_shows_progress_on_stderr_and_keeps_its_json(tmp_path: Path) -> None:
    # issue #14: `bench crypto` ran for minutes with no sign of life. The bar goes to stderr
    # (a terminal here: a pty), stdout keeps exactly the JSON section.
    import os
    import pty
    import subprocess
    import sys

    from tapcash.host.bench import crypto

    assert len(crypto.labels(2, vm=True)) == 2 * (3 * len(crypto.COLUMNS) + 2)
    ticks: list[str] = []
    sec = crypto.section(repeat=1, vm=False, tick=ticks.append)
    assert len(ticks) == len(crypto.labels(1, vm=False))
    assert [r["implementation"] for r in sec["rows"]] == ["pynacl", "pure-cpython"]
    # the columns' order reverses every other run, and the progress bar's labels follow it
    ticks.clear()
    crypto.measure_cpython("nacl", ticks.append, reverse=True)
    assert ticks == list(crypto.COLUMNS[::-1])
    two = crypto.labels(2, vm=False)
    assert two[0] == "run 1/2: pynacl keygen"
    assert two[len(two) // 2] == "run 2/2: pynacl SHA-512 200 B"

    master, slave = pty.openpty()
    env = dict(os.environ, COLUMNS="160")
    cmd = [
        str(Path(sys.executable).parent / "tapcash"),
        "bench",
        "crypto",
        "--no-vm",
        "--repeat",
        "1",
        "--json",
    ]
    proc = subprocess.run(
        cmd, stdout=subprocess.PIPE, stderr=slave, env=env, timeout=300, check=False
    )
    os.close(slave)
    err = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        err += chunk
    os.close(master)
    assert proc.returncode == 0, err
    out = json.loads(proc.stdout)  # stdout is the JSON alone
    assert out["bench"] == "crypto" and len(out["rows"]) == 2
    text = err.decode(errors="replace")
    assert "run 1/1: pynacl keygen" in text and "ETA" in text


def test_bench_firmware_says_which_targets_are_met_and_by_how_much_not() -> None:
    from tapcash.host.bench import firmware

    spread = report.spread([1.0, 2.0, 3.0], 2)
    rows = [
        {"role": "wallet", "form": "mpy", "min_heap_kb32": 90.0, "target_kb32": 96,
         "import_heap_kb32": 40.0, "flash_kb": 98.7, "flash_files": 48,
         "alloc_per_payment_kb64": 900.0, "native_pay_ms": spread, "vm_pay_ms": spread},
        {"role": "pos", "form": "romfs", "min_heap_kb32": 81.7, "target_kb32": 64,
         "import_heap_kb32": 31.5, "flash_kb": 98.7, "flash_files": 40,
         "alloc_per_payment_kb64": 2389.0, "native_pay_ms": spread},
    ]  # fmt: skip
    sec = {"rows": rows, "word_factor": 1.2, "vm_version": "1.27.0", "payments": 5,
           "bytes_on_air_per_payment": 571}  # fmt: skip
    note = firmware.closing_note(sec)
    assert note == (
        "Targets met: wallet mpy (90.0 <= 96 KB). Targets not met: pos romfs by 17.7 KB "
        "(81.7 > 64)."
    )
    text = firmware.render(sec)
    assert (
        "| payment | pos | romfs | 81.7 KB | 64 KB | 31.5 KB | 98.7 KB image (40 files) |" in text
    )
    assert "firmware" in BENCHES
    # the purse day's rows are measured against the same targets, and named so
    purse = {**rows[0], "day": "purse", "min_heap_kb32": 97.5}
    sec["rows"] = [{**rows[0], "day": "payment"}, purse]
    sec["bytes_on_air_per_purse_payment"] = 880
    assert firmware.closing_note(sec) == (
        "Targets met: wallet mpy (90.0 <= 96 KB). Targets not met: wallet mpy (purse day) by "
        "1.5 KB (97.5 > 96)."
    )
    text = firmware.render(sec)
    assert "| purse | wallet | mpy | 97.5 KB | 96 KB |" in text
    assert "Bytes on air per payment: 571, 880 on the purse day" in text


def test_bench_purse_profile_names_where_a_purse_tap_goes() -> None:
    """`tapcash bench purse --profile` (the real MicroPython VM): every kind and part measured
    in every round, the first tap at a POS is the one that checks its certificate. Structure
    only: no time is asserted."""
    pytest.importorskip("tapcash.sim.vm.mpvm")
    from tapcash.host.bench import purse

    try:
        sec = purse.section(batches=2, taps=2, profile=True)
    except (FileNotFoundError, RuntimeError) as e:  # no Node.js / VM on this machine
        pytest.skip(f"MicroPython VM unavailable: {e}")
    assert sec["command"] == "tapcash bench purse --batches 2 --taps 2 --profile"
    rows = {r["kind"]: r for r in sec["rows"]}
    assert {k for k, _ in purse.KINDS} == set(rows) == set(sec["profile"])
    assert rows["purse"]["earmarked"] == 2000 and rows["plain"]["earmarked"] == 0
    assert all(r["round_trips"] == 3 and r["bytes_on_air"] <= 1024 for r in rows.values())
    for parts in sec["profile"].values():
        assert set(parts) == set(purse.PARTS)
        assert all(len(p["runs"]) == 2 for p in parts.values())
        for name in purse.PARTS:  # a nested part is shown under its parent
            assert "/" not in name or name.rsplit("/", 1)[0] in purse.PARTS
    # Counted, not timed (the VM's clock steps in 1 ms): a repeat POS is known to the card, so
    # none of its taps verifies a certificate; every cold tap verifies one (2 batches x 2 taps).
    # A card without a purse never looks at the certificate.
    assert sec["pos_certificates_verified"] == {"purse": 0, "cold": 4, "main": 0, "plain": 0}
    text = purse.render(sec)
    assert "Where the wallet's time goes" in text
    # every tap starts with the card's power_on(), as on a board: timed, in the in-field time
    for r in rows.values():
        assert len(r["power_on_ms"]["runs"]) == len(r["wallet_in_field_ms"]["runs"]) == 2
        runs = zip(r["power_on_ms"]["runs"], r["wallet_in_field_ms"]["runs"], strict=True)
        assert all(boot <= tap for boot, tap in runs)
    assert "| wallet in field | power-on |" in text and "| power-on |" in text
    assert "not included" not in text
    # a section measured before power_on was timed says so, and shows no power-on column
    old = {**sec, "rows": [{k: v for k, v in r.items() if k != "power_on_ms"}
                           for r in sec["rows"]]}  # fmt: skip
    old["profile"] = {k: {p: v for p, v in parts.items() if p != "power-on"}
                      for k, parts in sec["profile"].items()}  # fmt: skip
    text = purse.render(old)
    assert "(its power_on() at the tap not included)" in text and "power-on" not in text


def test_bench_ingest_offline_uploads_prints_first_and_last_with_the_load(tmp_path: Path) -> None:
    """`tapcash bench ingest --offline-uploads`: a wallet that never syncs, paying POS after
    POS; the first uploads against the last (median (min-max)), the command and the load."""
    res = CliRunner().invoke(bench, ["ingest", "--offline-uploads", "10", "--batch", "5",
                                     "--repeat", "1", "--db", str(tmp_path / "o.db")])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert "uploads 1-5" in lines[1] and "uploads 6-10" in lines[1] and "last/first" in lines[1]
    assert lines[-1].startswith("-- tapcash bench ingest --offline-uploads 10 --batch 5")
    assert "load average" in lines[-1]
    bad = CliRunner().invoke(bench, ["ingest", "--offline-uploads", "3"])
    assert bad.exit_code != 0 and "at least 10" in bad.output


def test_a_sections_context_is_what_was_measured_not_a_story() -> None:
    """The machine's context in the doc comes from the section's JSON: its CPUs, the load
    average before and after, and who kept the CPUs busy during the run (issue #15)."""
    sec = {"bench": "later", "command": "tapcash bench later", "revision": "abc1234567",
           "started": "2026-12-06 21:00 UTC", "loadavg_before": [1.5, 1.0, 0.5],
           "loadavg_after": [2.25, 1.0, 0.5],
           "machine": {"cpus": 2, "note": "a story nobody measured"},
           "cpu": {"wall_s": 30.0, "busy_cpus": 1.8, "bench_cpus": 1.0, "other_cpus": 0.8},
           "rows": [{"x": 1}]}  # fmt: skip
    text = render.render({"benches": {"later": sec}})
    assert "a story nobody measured" not in text and "engineers" not in text
    assert ("Measured by `tapcash bench later` at revision `abc1234567`, 2026-12-06 21:00 UTC; "
            "load average 1.50 -> 2.25 (2 CPUs; over the run's 30 s, 1.80 CPUs busy on average: "
            "1.00 this bench's processes, 0.80 other processes).") in text
    # every registered bench the file has no section for is named as not measured
    assert ("## servers\n\nNot measured: docs/performance.json has no section for it (`tapcash "
            "bench all --json docs/performance.json --only servers` measures it).") in text
    assert text.count("Not measured: docs/performance.json has no section") == len(BENCHES)
    del sec["cpu"]  # a section measured before the CPU use was recorded: its CPUs alone
    assert "load average 1.50 -> 2.25 (2 CPUs)." in render.render({"benches": {"later": sec}})
    # the figures themselves: mean CPUs busy between two samples of (wall, machine, bench)
    use = report.cpu_use([100.0, 50.0, 10.0], [110.0, 68.0, 20.0])
    assert use == {"wall_s": 10.0, "busy_cpus": 1.8, "bench_cpus": 1.0, "other_cpus": 0.8}
    # a real section records them, and keeps no sample of its own in the JSON
    live = report.finish(report.new_section("later", "tapcash bench later"))
    assert set(live["cpu"]) == {"wall_s", "busy_cpus", "bench_cpus", "other_cpus"}
    assert "_cpu_times" not in live and live["machine"]["cpus"] == os.cpu_count()


def test_a_database_the_bench_cannot_reach_is_named_in_the_doc(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No PostgreSQL: the ingest bench measures SQLite and says, in its section and its output,
    that the PostgreSQL rows were not measured (they used to vanish without a word)."""
    import psycopg

    from tapcash.host.bench import ingest as ib

    def refused(*a: object, **k: object) -> None:
        raise psycopg.OperationalError("connection refused\n\tIs the server running?")

    monkeypatch.setattr(psycopg, "connect", refused)
    sec = ib.section(entries=40, batch=10, wallets=2, repeat=1, verify_procs="0", profile=True)
    assert [r["database"] for r in sec["rows"]] == ["sqlite"]
    why = f"{ib.NO_PG} (OperationalError: connection refused)"
    assert sec["not_measured"] == [f"postgresql: {why}"]
    text = render.render_section("ingest", sec)
    assert f"Not measured in this run: postgresql: {why}." in text
    res = CliRunner().invoke(bench, ["ingest", "--entries", "40", "--batch", "10", "--wallets",
                                     "2", "--repeat", "1", "--verify-procs", "0"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert f"-- not measured in this run: postgresql: {why}" in res.output


def test_bench_sim_says_when_its_profile_is_not_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    """`tapcash bench all`'s sim section profiles when pyinstrument is installed; without it the
    doc says the profile was not measured (it used to drop the line without a word), and the
    modelled time in the field is called what it is."""
    import importlib.util

    from tapcash.host.bench import sim

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "pyinstrument" else real(name, *a))
    sec = sim.section(12, 3, 30, runtime="cpython", repeat=1)
    assert "profile" not in sec
    assert [n.split(":")[0] for n in sec["not_measured"]] == [
        "where a CPython payment's time goes (--profile)"]
    text = render.render_section("sim", sec)
    assert "Not measured in this run: where a CPython payment's time goes" in text
    assert "(simulated time: sim/nfc/field.py's air and compute model, not a measurement)" in text


def test_bench_pcsc_alternates_the_order_of_its_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The four TCP settings are measured in turn, in the reverse order every other run, and
    each row still names its own setting (the reader itself is replaced: order only)."""
    from tapcash.host.bench import pcsc
    from tapcash.host.pcsc import bench as pb

    order: list[tuple[bool, bool]] = []

    def measure(reader: str, port: int, nodelay: bool, quickack: bool, apdus: int,
                payments: int) -> pb.Row:
        order.append((nodelay, quickack))
        ms = 0.1 if quickack else 44.0 + nodelay
        return pb.Row(nodelay, quickack, ms, ms, ms, ms, apdus, payments)

    monkeypatch.setattr(pb, "measure", measure)
    monkeypatch.setattr(pb, "list_readers", lambda: ["Virtual PCD 00 00"])
    monkeypatch.setattr(pb, "in_process_apdu_ms", lambda: 0.005)
    sec = pcsc.section(repeat=3, apdus=5, payments=1)
    assert order == pb.SETTINGS + pb.SETTINGS[::-1] + pb.SETTINGS
    assert [(r["nodelay"], r["quickack"]) for r in sec["rows"]] == pb.SETTINGS
    assert [r["apdu_ms"]["median"] for r in sec["rows"]] == [0.1, 0.1, 45.0, 44.0]
    assert "in the reverse order every other run" in pcsc.render(sec)


def test_bench_sync_alternates_its_round_trips_and_names_them_in_order() -> None:
    """`tapcash bench sync`'s two framed exchanges (real pty): measured in the reverse order
    every other run, reported in one order, the render saying so."""
    from tapcash.host.bench import sync

    for reverse in (False, True):
        rows = sync._round_trips(None, scale=200, reverse=reverse)
        assert [r["what"] for r in rows] == ["GET INFO (50 B answer)", "4 KB answer"]
        assert all(r["n"] >= 5 and r["per_s"] > 0 for r in rows)
    sec = {"line": "unpaced pty", "alternated": True, "round_trips": [], "rows": []}
    assert "the two in the reverse order every other run" in sync.render(sec)
    assert "reverse order" not in sync.render({**sec, "alternated": False})


def test_bench_ingest_peak_rss_is_the_runs_own(tmp_path: Path) -> None:
    """Peak RSS is the high-water mark over the run, not the process's lifetime (the benches
    and the allocations before it): it was ru_maxrss alone, which only ever grows."""
    import resource

    from tapcash.host.bench import ingest as ib

    def resident_mb() -> float:  # what the process holds now (a long test session holds a lot)
        status = Path("/proc/self/status").read_text()
        return int(status.split("VmRSS:")[1].split()[0]) / 1024

    before = resident_mb()
    blob = bytearray(200 * 1024 * 1024)
    blob[:: 4096] = b"\1" * len(range(0, len(blob), 4096))  # touched: resident
    del blob
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 > before + 150
    r = ib.run(str(tmp_path / "rss.db"), entries=40, batch=10, wallets=2)
    assert 0 < r["peak_rss_mb"] < resident_mb() + 100


def test_bench_all_keeps_a_measured_section_over_a_run_that_could_not_measure(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`tapcash bench all --only pcsc` without pcscd: the file keeps its measured section (and
    says so on stderr); a file without one gets the 'not measured' section, which the doc shows."""
    skipped = {"bench": "pcsc", "command": "tapcash bench pcsc", "revision": "new", "rows": [],
               "skipped": "cannot reach pcscd"}  # fmt: skip
    monkeypatch.setattr(render, "_in_child", lambda name, quick: dict(skipped))
    out = tmp_path / "perf.json"
    measured = {"bench": "pcsc", "command": "tapcash bench pcsc", "revision": "old", "rows": [{}]}
    out.write_text(json.dumps({"benches": {"pcsc": measured}}))
    res = CliRunner().invoke(bench, ["all", "--json", str(out), "--only", "pcsc"])
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["benches"]["pcsc"] == measured
    assert "pcsc not measured in this run (cannot reach pcscd): the file keeps its section of " \
           "revision old" in res.output
    out.unlink()
    res = CliRunner().invoke(bench, ["all", "--json", str(out), "--only", "pcsc"])
    assert res.exit_code == 0, res.output
    sec = json.loads(out.read_text())["benches"]["pcsc"]
    assert sec["skipped"] == "cannot reach pcscd"
    assert "Not measured in this run: cannot reach pcscd" in render.render_section("pcsc", sec)

"""docs/LEDGER.md is true to the code: its route table is the app's routes, and its operator
walk-through (§1a, "A day of the pilot") runs as written.

The walk-through's ```sh blocks are taken from the document itself and run in one bash (set -eu,
pipefail) in an empty folder, with the real CLI on PATH: a live `tapcash ledger serve` on SQLite,
the simulator's fleet on pseudo-terminals, `tapcash sync` for each device. Then the books are
checked here, from the database the walk-through left, not from what its commands printed: double
entry adds up, every stored balance is the sum of its postings, the owner's money is what was
deposited less the payroll and the top-up (recomputed from the walk-through's own CSV), every
payroll voucher reached its card, the merchants were paid exactly what they were credited, the
fraud proofs verify under the cards' certified keys, and the lost card is back off the hot list.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import cbor2
import pytest
from ledger_process import LedgerServe
from nacl.signing import VerifyKey

from tapcash.firmware.core import proto
from tapcash.host.ledger.loopback import free_port

DOC = Path(__file__).parents[2] / "docs" / "LEDGER.md"
WALKTHROUGH = "## 1a. A day of the pilot"


def section(heading: str) -> str:
    text = DOC.read_text()
    start = text.index(heading)
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def sh_blocks(text: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```$", text, flags=re.S | re.M)


# ---- the route table -----------------------------------------------------------------------
def _app() -> Any:
    from tapcash.host.issuer import Issuer
    from tapcash.host.ledger.app import create_app
    from tapcash.host.ledger.db import Database
    from tapcash.host.ledger.migrations import migrate
    from tapcash.host.ledger.service import Ledger

    db = Database(":memory:", pool_size=1)
    migrate(db)
    return create_app(Ledger(db, Issuer.generate()), "t")


def _app_routes() -> dict[str, str]:
    """'METHOD /path' -> operator | device | public, from the app's own OpenAPI document."""
    from tapcash.host.ledger.auth import PUBLIC_PATHS

    app = _app()
    out = {}
    for path, ops in app.openapi()["paths"].items():
        for method, op in ops.items():
            concrete = re.sub(r"\{[^}]+\}", "0011223344556677", path)
            kind = "operator" if op.get("security") else (
                "device" if path in ("/v1/ingest", "/v1/devices/{device_id}/pending")
                else "public")
            assert (kind == "operator") != bool(PUBLIC_PATHS.match(concrete)), path
            out[f"{method.upper()} {path}"] = kind
    return out


def _doc_routes() -> dict[str, str]:
    rows = re.findall(r"^\| `(GET|POST) (/[^` ?]*)[^`]*` \| ([a-z]+)", section("## 4. HTTP API"),
                      flags=re.M)
    return {f"{m} {p}": auth for m, p, auth in rows}


def test_the_route_table_is_the_apps_routes() -> None:
    assert _doc_routes() == _app_routes()


def test_the_documented_problem_body_is_the_apis() -> None:
    from fastapi.testclient import TestClient

    (example,) = re.findall(r"^```json\n(.*?)^```$", section("## 4. HTTP API"),
                            flags=re.S | re.M)
    with TestClient(_app()) as api:
        r = api.get("/v1/owners/nobody", headers={"Authorization": "Bearer t"})
    assert r.headers["content-type"] == "application/problem+json"
    assert (r.status_code, r.json()) == (404, json.loads(example))


# ---- the walk-through ----------------------------------------------------------------------
def _kill(folder: Path) -> None:
    for name in ("fleet.pid", "ledger.pid"):
        try:
            os.kill(int((folder / name).read_text()), signal.SIGTERM)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            pass


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the walk-through's blocks as written (the port made free); its folder and output."""
    missing = [t for t in ("bash", "jq", "curl") if shutil.which(t) is None]
    if missing:  # the README's Quick start installs them; CI must have them
        pytest.fail(f"{', '.join(missing)} missing: apt-get install -y jq curl", pytrace=False)
    folder = tmp_path_factory.mktemp("pilot-day")
    blocks = sh_blocks(section(WALKTHROUGH))
    assert len(blocks) >= 8, "the walk-through lost its commands"
    script = "\n".join(blocks).replace("8700", str(free_port()))
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "tapcash"  # the CLI of the code under test, whatever PATH holds
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -c '
                    f'"from tapcash.host.cli import main; main()" "$@"\n')
    shim.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAPCASH_LEDGER")}
    env.update(PATH=f"{bin_dir}:{env.get('PATH', '')}", COLUMNS="160")
    try:
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=folder, env=env,
                              capture_output=True, text=True, timeout=900)
    finally:
        _kill(folder)
    logs = "".join(f"\n--- {p.name}\n{p.read_text()[-3000:]}" for p in
                   (folder / "ledger.log", folder / "fleet.log") if p.exists())
    assert done.returncode == 0, f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}{logs}"
    assert "Traceback" not in done.stdout + done.stderr + logs
    return {"folder": folder, "out": done.stdout, "err": done.stderr}


def _db(day: dict[str, Any]) -> sqlite3.Connection:
    return sqlite3.connect(day["folder"] / "pilot.db")


def _fleet(day: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {d["name"]: d for d in json.loads((day["folder"] / "fleet.json").read_text())["devices"]}


def test_the_books_balance_by_double_entry(day: dict[str, Any]) -> None:
    with _db(day) as db:
        balances = dict(db.execute("SELECT name, balance FROM accounts"))
        moved: dict[str, int] = {}
        for src, dst, amount in db.execute("SELECT src, dst, amount FROM postings"):
            moved[src] = moved.get(src, 0) - amount
            moved[dst] = moved.get(dst, 0) + amount
    assert sum(balances.values()) == 0
    assert all(balances[a] == moved.get(a, 0) for a in balances)
    assert all(b >= 0 for a, b in balances.items() if not a.startswith("issuer:"))
    assert day["out"].count("the books balance: issued") == 2  # both `tapcash ledger check`s


def test_the_owner_paid_exactly_the_payroll_and_the_top_up(day: dict[str, Any]) -> None:
    lines = [ln.split(",") for ln in (day["folder"] / "payroll.csv").read_text().splitlines()]
    assert len(lines) >= 5 and all(amount == "2500" for _w, amount in lines)
    with _db(day) as db:
        acme = db.execute("SELECT balance FROM accounts WHERE name = 'owner:acme'").fetchone()[0]
        vouchers = db.execute("SELECT wallet, amount, number FROM vouchers WHERE source = ?",
                              (proto.VSRC_PAYROLL,)).fetchall()
        applied = {bytes(i).hex(): n for i, n in
                   db.execute("SELECT id, vouchers_applied FROM devices WHERE kind = ?",
                              (proto.KIND_WALLET,))}
    assert acme == 100000 - 2500 * len(lines) - 2000  # 1000.00 - the payroll - 20.00
    assert sorted((bytes(w).hex(), a) for w, a, _n in vouchers) == sorted(
        (w, 2500) for w, _a in lines)
    # The sync delivered each payroll voucher: the card reported it applied.
    assert all(applied[bytes(w).hex()] >= n for w, _a, n in vouchers)


def test_the_merchants_were_paid_what_they_were_credited(day: dict[str, Any]) -> None:
    with _db(day) as db:
        owed = dict(db.execute("SELECT name, balance FROM accounts WHERE kind = 'merchant'"))
        credited = db.execute("SELECT COALESCE(SUM(amount), 0) FROM postings WHERE dst LIKE "
                              "'merchant:%'").fetchone()[0]
        paid = db.execute("SELECT COALESCE(SUM(amount), 0), COUNT(*) FROM settlements").fetchone()
        refs = {r for (r,) in db.execute("SELECT reference FROM settlements")}
    assert credited > 0 and paid == (credited, len(owed)) and set(owed.values()) == {0}
    assert refs == {"payout-2026-12-03"}


def test_the_fraud_cases_are_proven_by_the_signed_bytes(day: dict[str, Any]) -> None:
    with _db(day) as db:
        cases = db.execute("SELECT f.kind, f.counter, f.proof_a, f.proof_b, d.pubkey, d.revoked "
                           "FROM fraud_cases f JOIN devices d ON d.id = f.wallet").fetchall()
    kinds = {k for k, *_ in cases}
    assert "counter_conflict" in kinds and "rollback" in kinds
    for kind, counter, a, b, pubkey, revoked in cases:
        assert revoked == 1
        tag = proto.TAG_STATUS if kind == "rollback" else proto.TAG_PAYMENT
        bodies = []
        for env in (bytes(a), bytes(b)):
            body, sig = cbor2.loads(env)
            VerifyKey(bytes(pubkey)).verify(tag + body, sig)  # raises unless the card signed it
            bodies.append(cbor2.loads(body))
        if kind == "counter_conflict":
            assert bodies[0] != bodies[1]
            assert bodies[0][proto.PAY_COUNTER] == bodies[1][proto.PAY_COUNTER] == counter
    assert "PROVEN from the signed bodies" in day["out"]  # what `fraud show 1` concluded
    assert "the card should show" in day["out"]  # the cloned card's statement


def test_the_lost_card_was_revoked_then_reinstated(day: dict[str, Any]) -> None:
    lost = _fleet(day)["wallet-2"]["id"]
    assert f"revoked {lost}: hot list version" in day["out"]
    assert f"reinstated {lost}: hot list version" in day["out"]
    # `tapcash ledger hotlist` checked the issuer's signature and the signed list named it
    assert re.search(r"signature +│ valid \(issuer key [0-9a-f]{16}\)", day["out"])
    assert re.search(rf"revoked +│ [0-9a-f, ]*{lost}", day["out"])
    with _db(day) as db:
        revoked = db.execute("SELECT revoked FROM devices WHERE id = ?",
                             (bytes.fromhex(lost),)).fetchone()[0]
    assert revoked == 0


def test_fraud_show_json_and_list_csv_on_the_days_books(day: dict[str, Any]) -> None:
    """The day's cases through `fraud show --json` / `fraud list --csv`, on a ledger served again
    from the walk-through's database: the decoded fields are the signed bodies' own."""
    folder, token = day["folder"], "again"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAPCASH_LEDGER")}
    server = LedgerServe("pilot.db", Path("issuer.key"), token, folder / "again.log",
                         access_log=True, environ=env, cwd=folder)
    env.update(TAPCASH_LEDGER_URL=server.url, TAPCASH_LEDGER_TOKEN=token)
    cli = [sys.executable, "-c", "from tapcash.host.cli import main; main()"]
    try:

        def run(*args: str) -> str:
            done = subprocess.run([*cli, "ledger", *args], env=env, capture_output=True,
                                  text=True, timeout=120)
            assert done.returncode == 0 and not done.stderr, done.stderr
            return done.stdout

        rows = run("fraud", "list", "--csv").splitlines()
        assert rows[0] == "case,kind,wallet,counter,amount_b,credited_b,loss,detected_at,via"
        with _db(day) as db:
            n = db.execute("SELECT COUNT(*) FROM fraud_cases").fetchone()[0]
        assert len(rows) == 1 + n and all(re.search(r",\d{4}-\d\d-\d\dT[\d:]+Z,", r)
                                          for r in rows[1:])
        for number in range(1, n + 1):
            case = json.loads(run("fraud", "show", str(number), "--json"))
            assert case["verdict"]["proven"] is True, case["verdict"]
            name, key = (("journal seq", proto.ST_SEQ) if case["kind"] == "rollback"
                         else ("counter", proto.PAY_COUNTER))
            for side in ("a", "b"):
                body = cbor2.loads(cbor2.loads(base64.b64decode(case[f"proof_{side}"]))[0])
                assert case[side]["fields"][name] == str(body[key])
                assert case[side]["signature_ok"] is True
    finally:
        server.stop()

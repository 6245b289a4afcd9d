"""`tapcash ledger owner|device|deposit|load|payroll|settle|revoke|...` as an operator runs them:
subprocesses of the real CLI against a live `tapcash ledger serve` on SQLite. Checked against
the ledger itself (its HTTP API and its database), not against the commands' own output only;
bad input is one line on stderr and a non-zero exit, never a traceback, and changes nothing."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import ledger_world as lw
import pytest
from cli_run import TAPCASH
from ledger_process import LedgerServe
from nacl.signing import SigningKey

from tapcash.firmware.core import proto
from tapcash.host.issuer import Issuer
from tapcash.host.ledger.loopback import free_port

TOKEN = "ledger-cli-test-token"
pg_admin = lw.pg_admin  # the PostgreSQL the suite uses (skipped outside CI when unreachable)
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


class Ledger:
    def __init__(self, tmp: Path, db: str) -> None:
        self.tmp = tmp
        self.key = tmp / "issuer.key"
        Issuer.generate().save(self.key)
        self.db = db
        self.url = f"http://127.0.0.1:{free_port()}"
        self.env = dict(os.environ, TAPCASH_LEDGER_URL=self.url, TAPCASH_LEDGER_TOKEN=TOKEN)
        self.api = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {TOKEN}"},
                                timeout=30)

    def run(self, *args: str, code: int = 0, env: dict[str, str] | None = None) -> Any:
        done = subprocess.run([*TAPCASH, *args], capture_output=True, text=True, timeout=120,
                              env=env or self.env, cwd=self.tmp)
        assert "Traceback" not in done.stderr, done.stderr
        assert done.returncode == code, (args, done.returncode, done.stdout, done.stderr)
        return done

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--json").stdout)

    def wallet(self, n: int, owner: str | None = None) -> str:
        """Certify a wallet key with the issuer key (`tapcash issuer certify`), register it."""
        wid = f"{n:016x}"
        pub = SigningKey.generate().verify_key.encode().hex()
        cert = self.tmp / f"wallet-{n}.cert"
        self.run("issuer", "certify", "wallet", "--issuer-key", str(self.key), "--id", wid,
                 "--public-key", pub, "--out", str(cert))
        args = ["ledger", "device", "register", str(cert)]
        out = self.run(*args, *(["--owner", owner] if owner else [])).stdout
        assert out.strip() == f"registered wallet {wid}" + (f", owner {owner}" if owner else "")
        return wid

    def balance(self, account: str) -> int:
        """Read from the database itself (SQLite or PostgreSQL), not through the API."""
        from tapcash.host.ledger.db import Database

        db = Database(self.db, pool_size=1)
        try:
            return int(db.read(lambda tx: tx.scalar(
                "SELECT balance FROM accounts WHERE name = ?", (account,))))
        finally:
            db.close()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[str]:
    """A new ledger database: a SQLite file, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        yield str(tmp_path_factory.mktemp("sqlite") / "pilot.db")
        return
    with lw.pg_schema(request.getfixturevalue("pg_admin"), "tapcash_cli_") as url:
        yield url


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory, database: str) -> Iterator[Ledger]:
    lg = Ledger(tmp_path_factory.mktemp("ledger-cli"), database)
    port = int(lg.url.rsplit(":", 1)[1])
    server = LedgerServe(str(lg.db), lg.key, TOKEN, lg.tmp / "serve.log", access_log=True,
                         port=port, cwd=lg.tmp)
    try:
        yield lg
    finally:
        server.stop()
        lg.api.close()


def cli_side_only(ledger: Ledger) -> None:
    """Checks of the command line itself (parsing, messages): run once, on SQLite."""
    if ledger.db.startswith("postgresql"):
        pytest.skip("a check of the CLI itself: run on SQLite only")


def test_owners_open_deposit_and_list_in_one_money_format(ledger: Ledger) -> None:
    assert ledger.run("ledger", "owner", "add", "acme").stdout.strip() == \
        "owner acme opened: balance 0.00, 0 wallets"
    assert ledger.json("ledger", "owner", "add", "acme")["created"] is False
    out = ledger.run("ledger", "deposit", "acme", "1000.50", "--reference", "bank 4711").stdout
    assert out.strip() == "deposited 1,000.50 to acme: balance 1,000.50"
    dep = ledger.json("ledger", "deposit", "acme", "9.5")
    assert (dep["owner"], dep["balance"], dep["amount"]) == ("acme", 101000, 950)
    assert ledger.balance("owner:acme") == 101000  # 1,000.50 + 9.50, in minor units
    rows = ledger.json("ledger", "owner", "list")
    acme = next(r for r in rows if r["owner"] == "acme")
    assert acme["balance"] == 101000 and ISO.match(acme["created_at"])
    csv = ledger.run("ledger", "owner", "list", "--csv").stdout.splitlines()
    assert csv[0] == "owner,balance,wallets,created_at"
    assert f"acme,101000,0,{acme['created_at']}" in csv
    table = ledger.run("ledger", "owner", "list").stdout
    assert "1,010.00" in table and acme["created_at"] in table


def test_register_load_and_payroll_all_or_nothing(ledger: Ledger) -> None:
    ledger.run("ledger", "deposit", "payco", "300")
    w1, w2 = ledger.wallet(1, "payco"), ledger.wallet(2)
    devices = {d["id"]: d for d in ledger.json("ledger", "device", "list", "--kind", "wallet")}
    assert devices[w1]["owner"] == "payco" and ISO.match(devices[w1]["expires"])
    assert ledger.json("ledger", "device", "show", w2)["owner"] is None
    listed = ledger.run("ledger", "device", "list", "--kind", "wallet", "--csv").stdout
    assert f"{w2},wallet,,,false," in listed  # CSV booleans as scripts read them
    out = ledger.run("ledger", "load", w1, "12.50", "--reference", "desk").stdout.strip()
    assert out == f"voucher 1 for wallet {w1}: 12.50; payer balance 287.50"
    csv = ledger.tmp / "payroll.csv"
    csv.write_text(f"wallet,amount\n{w1},2500\n{w2},1000\n")
    done = ledger.json("ledger", "payroll", str(csv), "--payer", "payco", "--reference", "p-1")
    assert done["total"] == 3500 and [v["number"] for v in done["vouchers"]] == [2, 1]
    assert ledger.balance("owner:payco") == 30000 - 1250 - 3500
    assert ledger.balance(f"wallet:{w1}") == 1250 + 2500
    st = ledger.json("ledger", "statement", w1)
    assert [(ln["kind"], ln["amount"], ln["balance"]) for ln in st["lines"]] == [
        ("load", 1250, 1250), ("payroll", 2500, 3750)]
    assert st["vouchers_unapplied"] == 3750 and ISO.match(st["lines"][0]["at"])
    table = ledger.run("ledger", "statement", w1).stdout
    assert "37.50" in table and "the card should show" in table
    assert ledger.run("ledger", "statement", w1, "--csv").stdout.splitlines()[1:] == [
        f"{ln['posting']},{ln['at']},{ln['kind']},{ln['counterparty']},{ln['amount']},"
        f"{ln['balance']},{ln['ref']}" for ln in st["lines"]]
    # The same reference again, and a file with one bad line: refused whole, nothing posted.
    again = ledger.run("ledger", "payroll", str(csv), "--payer", "payco", "--reference", "p-1",
                       code=1)
    assert again.stderr.count("\n") == 1 and "p-1" in again.stderr
    csv.write_text(f"{w1},2500\nnot-a-wallet,5\n")
    bad = ledger.run("ledger", "payroll", str(csv), "--payer", "payco", "--reference", "p-2",
                     code=1)
    assert "line 2:" in bad.stderr and bad.stderr.rstrip().splitlines()[-1].startswith("error:")
    assert ledger.balance("owner:payco") == 30000 - 1250 - 3500
    table = ledger.run("ledger", "payroll", str(csv.with_name("ok.csv")), "--payer", "payco",
                       "--reference", "p-3", code=2)  # no such file: Click's usage error
    assert "No such file" in table.stderr


def test_a_deposit_or_load_run_again_under_its_reference_is_applied_once(ledger: Ledger
                                                                          ) -> None:
    """A script retrying after a timeout: 'already applied', exit 0, nothing applied twice;
    the reference reused for another deposit or load: one line, exit 1, nothing applied."""
    first = ledger.run("ledger", "deposit", "retry", "40", "--reference", "wire 77").stdout
    assert first.strip() == "deposited 40.00 to retry: balance 40.00"
    again = ledger.run("ledger", "deposit", "retry", "40", "--reference", "wire 77").stdout
    assert again.strip() == ("already applied: reference wire 77 deposited 40.00 to retry "
                             "(balance then 40.00); nothing deposited now")
    assert ledger.json("ledger", "deposit", "retry", "40", "--reference", "wire 77")[
        "replayed"] is True
    other = ledger.run("ledger", "deposit", "retry", "41", "--reference", "wire 77", code=1)
    assert other.stderr.count("\n") == 1 and other.stderr.startswith("error: deposit reference")
    assert "amount 40.00 then, 41.00 now" in other.stderr and "(HTTP 409)" in other.stderr
    assert ledger.balance("owner:retry") == 4000
    w = ledger.wallet(9, "retry")
    out = ledger.run("ledger", "load", w, "15", "--reference", "desk 5").stdout.strip()
    assert out == f"voucher 1 for wallet {w}: 15.00; payer balance 25.00"
    out = ledger.run("ledger", "load", w, "15", "--reference", "desk 5").stdout.strip()
    assert out == (f"already applied: reference desk 5 is voucher 1 for wallet {w}: 15.00 "
                   "(payer balance then 25.00); nothing loaded now")
    other = ledger.run("ledger", "load", w, "16", "--reference", "desk 5", code=1)
    assert other.stderr.count("\n") == 1 and "load reference 'desk 5'" in other.stderr
    assert ledger.balance("owner:retry") == 2500 and ledger.balance(f"wallet:{w}") == 1500


def test_revoke_and_reinstate_reach_the_signed_hot_list(ledger: Ledger) -> None:
    w = ledger.wallet(3, "acme")
    out = ledger.run("ledger", "revoke", w, "--reason", "reported lost").stdout
    version = int(out.rsplit(" ", 1)[1])
    hot = ledger.api.get("/v1/hotlist").json()
    assert hot["version"] == version and w in hot["revoked"]
    signed = ledger.json("ledger", "hotlist")  # no token needed: the hot list is public
    assert signed["version"] == version and w in signed["revoked"]
    assert signed["signature"].startswith("valid (issuer key ") and ISO.match(signed["issued"])
    no_token = {k: v for k, v in ledger.env.items() if k != "TAPCASH_LEDGER_TOKEN"}
    assert w in ledger.run("ledger", "hotlist", env=no_token).stdout
    assert "revoked already" in ledger.run("ledger", "revoke", w).stdout
    dev = ledger.json("ledger", "device", "show", w)
    assert dev["revoked"] is True and ISO.match(dev["revoked_at"])
    assert dev["revoke_reason"] == "reported lost"
    assert ledger.run("ledger", "reinstate", w, "--reason", "found").stdout.startswith(
        f"reinstated {w}")
    out = ledger.run("ledger", "device", "renew", w, "--expires-days", "30", "--limit",
                     "payment_max=40.00").stdout
    assert out.startswith(f"renewed {w}: certificate serial 2, expires ")
    dev = ledger.json("ledger", "device", "show", w)
    assert dev["serial"] == 2 and dev["limits"][str(proto.LIM_PAYMENT_MAX)] == 4000
    days = (datetime.fromisoformat(dev["expires"]) - datetime.now(UTC)).total_seconds() / 86400
    assert 29.9 < days <= 30
    bad = ledger.run("ledger", "device", "renew", w, "--limit", "paymnt_max=1", code=2)
    assert "did you mean 'payment_max'?" in bad.stderr
    assert ledger.json("ledger", "device", "show", w)["serial"] == 2  # nothing changed
    assert w not in ledger.api.get("/v1/hotlist").json()["revoked"]


def test_settle_pays_what_is_owed_and_lists_it(ledger: Ledger) -> None:
    assert ledger.json("ledger", "settle", "--all") == []  # nobody is owed anything yet
    ledger.run("ledger", "settle", code=2)
    out = ledger.run("ledger", "settle", "00000000000000aa", code=1)
    assert out.stderr.strip() == "error: unknown merchant 00000000000000aa (HTTP 404)"
    assert ledger.json("ledger", "settlements") == []
    assert ledger.run("ledger", "settlements", "--csv").stdout == \
        "settlement,merchant,amount,reference,at\n"


def test_reports_print_major_units_in_tables_and_iso_times(ledger: Ledger) -> None:
    db = ledger.db
    rows = json.loads(ledger.run("ledger", "report", "accounts", "--db", db, "--json").stdout)
    float_ = next(r for r in rows if r["account"] == "issuer:float")
    assert float_["balance"] == -sum(r["balance"] for r in rows if r["kind"] != "issuer")
    table = ledger.run("ledger", "report", "accounts", "--db", db).stdout
    assert "owner:acme" in table and "1,010.00" in table
    csv = ledger.run("ledger", "report", "accounts", "--db", db, "--csv").stdout
    assert "owner:acme,owner,101000" in csv.splitlines()
    legacy = ledger.run("ledger", "report", "accounts", "--db", db, "--format", "csv").stdout
    assert legacy == csv


BAD = [
    (["deposit", "acme", "--", "-5"], 2, "is not an amount"),
    (["deposit", "acme", "1e3"], 2, "is not an amount"),
    (["deposit", "acme", "²"], 2, "is not an amount"),
    (["deposit", "acme", "12.345"], 2, "at most 2 decimals"),
    (["deposit", "acme", "0"], 2, "more than zero"),
    (["deposit", "acme", "90071992547409.92"], 2, "at most 90,071,992,547,409.91"),
    (["load", "00000000000000ff", "1" + "0" * 15], 2, "at most 90,071,992,547,409.91"),
    (["deposit", "bad name!", "5"], 1, "HTTP 4"),
    (["load", "zz", "5"], 2, "16 hex digits"),
    (["load", "00000000000000ff", "5", "--owner", "acme"], 1, "HTTP 404"),
    (["owner", "show", "nobody"], 1, "unknown owner nobody (HTTP 404)"),
    (["owner", "show", "../invariant"], 1, "HTTP 4"),
    (["device", "show", "00000000000000ff"], 1, "HTTP 404"),
    (["fraud", "show", "99"], 1, "no fraud case 99"),
    (["fraud", "show", "0"], 2, "0"),
    (["revoke", "00000000000000ff"], 1, "HTTP 404"),
    (["statement", "00000000000000ff"], 1, "HTTP 404"),
    (["reinstate", "00000000000000ff"], 1, "HTTP 404"),
]


@pytest.mark.parametrize("args, code, says", BAD, ids=[" ".join(a) for a, _, _ in BAD])
def test_bad_input_is_one_line_and_changes_nothing(ledger: Ledger, args: list[str], code: int,
                                                   says: str) -> None:
    cli_side_only(ledger)
    before = ledger.api.get("/v1/reports/books").json()
    done = ledger.run("ledger", *args, code=code)
    assert says in done.stderr and done.stdout == ""
    if code == 1:
        assert done.stderr.count("\n") == 1, done.stderr
    assert ledger.api.get("/v1/reports/books").json() == before


def test_a_garbage_certificate_a_wrong_token_and_no_ledger(ledger: Ledger) -> None:
    cli_side_only(ledger)
    junk = ledger.tmp / "junk.cert"
    junk.write_bytes(b"\xa1\x00\x00")
    done = ledger.run("ledger", "device", "register", str(junk), code=1)
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1
    wrong = dict(ledger.env, TAPCASH_LEDGER_TOKEN="not-the-token")
    done = ledger.run("ledger", "owner", "list", code=1, env=wrong)
    assert "operator token" in done.stderr and "HTTP 401" in done.stderr
    gone = dict(ledger.env, TAPCASH_LEDGER_URL=f"http://127.0.0.1:{free_port()}")
    done = ledger.run("ledger", "owner", "list", code=5, env=gone)
    assert done.stderr.startswith("error: ledger unreachable at http://127.0.0.1:")
    done = ledger.run("ledger", "owner", "list", "--url", "ftp://x", code=2)
    assert "--url" in done.stderr


def test_sim_serve_refuses_a_ledger_with_another_key_or_token(ledger: Ledger) -> None:
    cli_side_only(ledger)
    other = ledger.tmp / "other.key"
    Issuer.generate().save(other)
    args = ["sim", "serve", "smoke", "--ledger", ledger.url, "--out", str(ledger.tmp / "fleet")]
    done = ledger.run(*args, "--issuer-key", str(other), code=1)
    assert done.stderr.rstrip().endswith(
        f"the ledger at {ledger.url} signs with another issuer key")
    wrong = dict(ledger.env, TAPCASH_LEDGER_TOKEN="not-the-token")
    done = ledger.run(*args, "--issuer-key", str(ledger.key), code=1, env=wrong)
    assert done.stderr.splitlines()[-1].endswith("401: operator token is wrong")
    done = ledger.run("sim", "serve", "smoke", "--ledger", ledger.url, code=2)
    assert "--issuer-key" in done.stderr
    assert ledger.json("ledger", "device", "list", "--kind", "pos") == []  # nothing registered


def test_a_url_that_is_no_ledger_is_one_line(ledger: Ledger, tmp_path: Path) -> None:
    cli_side_only(ledger)
    (tmp_path / "v1").mkdir()
    (tmp_path / "v1" / "owners").write_text("<html><body>a web site</body></html>\n")
    port = free_port()
    site = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind",
                             "127.0.0.1"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        other = dict(ledger.env, TAPCASH_LEDGER_URL=f"http://127.0.0.1:{port}")
        for _ in range(200):
            try:
                httpx.get(other["TAPCASH_LEDGER_URL"], timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        done = ledger.run("ledger", "owner", "list", code=1, env=other)  # 200, not JSON
        assert "does not answer as a tapcash ledger" in done.stderr
        assert done.stderr.count("\n") == 1
        done = ledger.run("ledger", "device", "list", code=1, env=other)  # its HTML 404 page
        assert done.stderr.count("\n") == 1 and done.stderr.rstrip().endswith("(HTTP 404)")
    finally:
        site.terminate()
        site.wait(timeout=10)

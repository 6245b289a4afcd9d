"""The operator console in a real browser: Debian's chromium driven by Playwright.

A simulated morning (the smoke scenario plus a payroll and an earmarked-purse programme: fraud
cases of both kinds, a revocation, settlements) leaves a real ledger database; `tapcash ledger
serve` serves it; chromium logs in with the operator token and reads every page. The oracles
are the CLI (`tapcash ledger report / check / program report` on the same database), the JSON
API, and the signed bytes themselves (PyNaCl, the issuer key derived here, not asked for).

Needs /usr/bin/chromium (apt-get install chromium chromium-driver: README Quick start) and the
Python package playwright (the [test] extra); never `playwright install`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cbor2
import httpx
import pytest
from cli_run import TAPCASH
from ledger_process import LedgerServe
from nacl.signing import VerifyKey

from tapcash.firmware.core import proto
from tapcash.sim.device.provision import issuer_from_seed as issuer_for

CHROMIUM = "/usr/bin/chromium"
TOKEN = "console-test-token"
SEED = 11  # the scenario's seed: the sim's issuer key is derived from it
SCENARIO_EXTRA = """
[[loads]]
at = "09:00"
kind = "payroll"
wallets = 4
amount = 3000

[[programs]]
name = "transport"
kind = "subsidy"
funder = "city"
at = "08:10"
wallets = 4
amount = 1500
pos = [1, 2]
category = 0
cap = 300
payments = 6
payment_amount = 240
"""

playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
if not Path(CHROMIUM).exists():  # the README's Quick start installs it; CI must have it
    pytest.fail(f"{CHROMIUM} missing: apt-get install -y chromium chromium-driver",
                pytrace=False)


def tapcash(*args: str) -> str:
    out = subprocess.run([*TAPCASH, *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("console")
    smoke = Path(__file__).parents[2] / "sim" / "scenario" / "builtin" / "smoke.toml"
    scenario = tmp / "console.toml"
    scenario.write_text(smoke.read_text().replace('name = "smoke"', 'name = "console"')
                        + SCENARIO_EXTRA)
    tapcash("sim", "run", str(scenario), "--out", str(tmp / "run"), "--no-plots")
    db = tmp / "ledger.db"
    shutil.copy(tmp / "run" / "ledger.db", db)
    issuer = issuer_for(SEED)
    key = tmp / "issuer.key"
    issuer.save(key)
    server = LedgerServe(str(db), key, TOKEN, log=tmp / "serve.log", access_log=True)
    url = server.url
    try:
        api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"},
                           timeout=30)
        # Pay one merchant out, so the settlements table has a row.
        merchant = api.get("/v1/reports/merchants").json()[0]["merchant"]
        assert api.post(f"/v1/merchants/{merchant}/settle",
                        json={"reference": "console-test"}).status_code == 200
        yield {"url": url, "db": str(db), "api": api, "issuer": issuer}
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser(world: dict[str, Any]) -> Iterator[Any]:
    with playwright_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                               args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


def _logged_in(browser: Any, url: str) -> tuple[Any, Any]:
    """A new browser context and its page, past the console's login."""
    ctx = browser.new_context()
    pg = ctx.new_page()
    pg.goto(url + "/console/login")
    pg.fill("#token", TOKEN)
    pg.click("#login")
    pg.wait_for_url(url + "/console/")
    return ctx, pg


@pytest.fixture(scope="module")
def page(browser: Any, world: dict[str, Any]) -> Iterator[Any]:
    """A logged-in page (one browser context for the module)."""
    ctx, pg = _logged_in(browser, world["url"])
    yield pg
    ctx.close()


def amounts(page: Any, selector: str) -> list[int]:
    return [int(v) for v in page.eval_on_selector_all(
        selector, "els => els.map(e => e.dataset.amount)")]


def money(v: int) -> str:
    whole, cents = divmod(abs(v), 100)
    return f"{'-' if v < 0 else ''}{whole:,}.{cents:02d}"


# ---- access -------------------------------------------------------------------------------
def test_console_is_closed_without_the_operator_token(browser: Any, world: dict[str, Any]):
    ctx = browser.new_context()
    pg = ctx.new_page()
    pg.goto(world["url"] + "/console/fraud")
    assert pg.url == world["url"] + "/console/login"  # a browser is sent to log in
    pg.fill("#token", "not-the-token")
    pg.click("#login")
    assert "not the operator token" in pg.text_content("#login-error")
    assert pg.url.endswith("/console/login")
    for path in ("/console/", "/console/fraud/1", "/console/devices", "/console/hotlist"):
        r = httpx.get(world["url"] + path)
        assert r.status_code == 401, path
        assert "proof" not in r.text
        r = httpx.get(world["url"] + path, headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401, path
    # A forged cookie is no session.
    r = httpx.get(world["url"] + "/console/", cookies={"tapcash_console": "v1.9999999999.00"})
    assert r.status_code == 401
    ctx.close()


def test_login_sets_an_httponly_strict_session_cookie(page: Any):
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "tapcash_console"]
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/console"
    assert page.evaluate("document.cookie") == ""  # no script can read it


# ---- numbers against the CLI and the API --------------------------------------------------
def test_books_match_ledger_check(page: Any, world: dict[str, Any]):
    out = subprocess.run([*TAPCASH, "ledger", "check", "--db", world["db"], "--json"],
                         capture_output=True, text=True, timeout=60)
    inv = json.loads(out.stdout)
    assert inv["ok"] and out.returncode == 0
    page.goto(world["url"] + "/console/")
    for key in ("issued", "backed", "fraud_loss"):
        cell = page.locator(f'[data-key="{key}"]')
        assert int(cell.get_attribute("data-amount")) == inv[key], key
        assert cell.text_content().strip() == money(inv[key])
    assert "The books balance" in page.text_content("#invariant")
    for kind in ("wallet", "merchant", "staged", "owner"):
        cell = page.locator(f'#held [data-kind="{kind}"]')
        assert int(cell.get_attribute("data-amount")) == inv["by_kind"][kind], kind
    # The chart's bars are drawn from the same figures.
    bars = {g.get_attribute("data-label"): int(g.get_attribute("data-value"))
            for g in page.locator("svg.chart g.bar").all()}
    assert bars["wallet"] == inv["by_kind"]["wallet"]
    fraud = json.loads(tapcash("ledger", "report", "fraud", "--db", world["db"], "--format",
                               "json"))
    assert int(page.text_content('[data-count="fraud_cases"]')) == len(fraud)


def test_broken_books_name_what_ledger_check_names(page: Any, world: dict[str, Any]):
    """The Books page reads the invariant through the check `tapcash ledger check` and
    `GET /v1/invariant` run (host/ledger/invariant.py): on books put out of balance it lists the
    same violations (it counted mismatches only, and left the programmes out of its verdict)."""
    import sqlite3

    def shift(by: int) -> None:
        with sqlite3.connect(world["db"]) as c:
            c.execute("UPDATE accounts SET balance = balance + ? WHERE kind = 'owner' AND name ="
                      " (SELECT MIN(name) FROM accounts WHERE kind = 'owner')", (by,))

    shift(1)
    try:
        out = subprocess.run([*TAPCASH, "ledger", "check", "--db", world["db"]],
                             capture_output=True, text=True, timeout=60)
        page.goto(world["url"] + "/console/")
        shown = [li.text_content().strip() for li in page.locator("#violations li").all()]
        api = world["api"].get("/v1/invariant")
    finally:
        shift(-1)
    assert out.returncode == 1 and "THE BOOKS DO NOT BALANCE" in page.text_content("#invariant")
    assert len(shown) == 2 and all(f"  {line}\n" in out.stdout for line in shown), (shown, out)
    assert api.status_code == 409 and len(api.json()["violations"]) == 2


def test_merchants_and_settlements_match_the_reports(page: Any, world: dict[str, Any]):
    rows = json.loads(tapcash("ledger", "report", "merchants", "--db", world["db"],
                              "--format", "json"))
    settled = json.loads(tapcash("ledger", "report", "settlements", "--db", world["db"],
                                 "--format", "json"))
    assert rows and settled
    page.goto(world["url"] + "/console/merchants")
    for r in rows:
        tr = page.locator(f'#merchants tr[data-merchant="{r["merchant"]}"]')
        for key in ("payments", "credited", "settled", "owed", "of_which_guaranteed"):
            assert int(tr.locator(f'[data-field="{key}"]').get_attribute("data-amount")) \
                == r[key], (r["merchant"], key)
    assert amounts(page, "#settlements td[data-amount]") == [s["amount"] for s in settled]
    assert any(r["settled"] > 0 for r in rows)


def _verify(env: bytes, tag: bytes, key: bytes) -> dict:
    body_bytes, sig = cbor2.loads(env)
    VerifyKey(key).verify(tag + body_bytes, sig)  # raises when the signature is wrong
    return cbor2.loads(body_bytes)


def test_fraud_cases_show_both_proofs_decoded_and_a_verified_verdict(page: Any,
                                                                    world: dict[str, Any]):
    cases = json.loads(tapcash("ledger", "report", "fraud", "--db", world["db"], "--format",
                               "json"))
    kinds = {c["kind"] for c in cases}
    assert {"counter_conflict", "rollback"} <= kinds
    issuer_pk = world["issuer"].public_key
    page.goto(world["url"] + "/console/fraud")
    assert page.locator("#cases tr[data-case]").count() == len(cases)
    for c in cases:
        # The test's own judgement, from the signed bytes: the certificate under the issuer
        # key derived from the seed, both proofs under the certified key.
        dev = world["api"].get(f"/v1/devices/{c['wallet']}").json()
        cert = _verify(base64.b64decode(dev["cert"]), proto.TAG_CERT, issuer_pk)
        key = cert[proto.CERT_KEY]
        tag = proto.TAG_STATUS if c["kind"] == "rollback" else proto.TAG_PAYMENT
        a_env, b_env = base64.b64decode(c["proof_a"]), base64.b64decode(c["proof_b"])
        a, b = _verify(a_env, tag, key), _verify(b_env, tag, key)
        page.goto(f"{world['url']}/console/fraud/{c['case']}")
        assert page.get_attribute("#verdict", "data-proven") == "yes", c
        assert page.locator('#checks [data-check="fail"]').count() == 0
        assert [s.get_attribute("data-signature") for s in
                page.locator("[data-signature]").all()] == ["valid", "valid"]
        hashes = [h.text_content() for h in page.locator("code[data-hash]").all()]
        assert hashes == [hashlib.sha256(cbor2.loads(e)[0]).hexdigest()
                          for e in (a_env, b_env)]
        if c["kind"] == "counter_conflict":
            assert a[proto.PAY_COUNTER] == b[proto.PAY_COUNTER] == c["counter"] and a != b
            shown = page.locator('#proof-1 tr[data-field="amount"] td').text_content()
            assert shown == str(a[proto.PAY_AMOUNT])
            assert page.locator('#proof-2 tr[data-field="counter"] td').text_content() \
                == str(c["counter"])
        else:
            assert a[proto.ST_SEQ] == c["counter"] < b[proto.ST_SEQ]


def test_a_forged_proof_is_not_proven(world: dict[str, Any]):
    """The verdict is the page's own check, not the ledger's label: a case whose proof does
    not verify under the certified key is shown NOT PROVEN."""
    from tapcash.host.ledger import proofs

    cases = json.loads(tapcash("ledger", "report", "fraud", "--db", world["db"], "--format",
                               "json"))
    c = next(c for c in cases if c["kind"] == "counter_conflict")
    dev = world["api"].get(f"/v1/devices/{c['wallet']}").json()
    body_bytes, sig = cbor2.loads(base64.b64decode(c["proof_b"]))
    forged = cbor2.dumps([body_bytes, bytes([sig[0] ^ 1]) + sig[1:]])
    case = {"wallet": bytes.fromhex(c["wallet"]), "kind": c["kind"], "counter": c["counter"],
            "proof_a": base64.b64decode(c["proof_a"]), "proof_b": forged, "evidence": None}
    _a, b, verdict = proofs.judge(case, base64.b64decode(dev["cert"]),
                                  world["issuer"].public_key)
    assert not b.signature_ok and not verdict.proven
    same = dict(case, proof_b=case["proof_a"])  # one body twice is no conflict
    assert not proofs.judge(same, base64.b64decode(dev["cert"]),
                            world["issuer"].public_key)[2].proven


def test_device_history_matches_the_statement_api(page: Any, world: dict[str, Any]):
    api = world["api"]
    wallet = next(d for d in api.get("/v1/devices", params={"kind": "wallet"}).json()
                  if not d["revoked"])
    st = api.get(f"/v1/reports/wallets/{wallet['id']}").json()
    page.goto(f"{world['url']}/console/devices/{wallet['id']}")
    assert amounts(page, "#wallet-books td[data-amount]")[:4] == [
        st["balance"], st["staged"], st["vouchers_unapplied"], st["expected_device_balance"]]
    assert amounts(page, "#statement td[data-amount]") == [ln["amount"] for ln in st["lines"]]
    pos = api.get("/v1/devices", params={"kind": "pos"}).json()[0]
    page.goto(f"{world['url']}/console/devices/{pos['id']}")
    assert page.locator("#cert").text_content().count(pos["merchant"]) == 1
    assert int(page.get_attribute("#taken-total", "data-amount")) > 0


def test_payroll_and_programmes_match_the_ledger(page: Any, world: dict[str, Any]):
    owners = world["api"].get("/v1/owners").json()
    page.goto(world["url"] + "/console/payroll")
    assert page.locator("#payroll tr[data-reference]").count() == 1
    for o in owners:
        cell = page.locator(f'#owners tr[data-owner="{o["owner"]}"] td[data-amount]')
        assert int(cell.get_attribute("data-amount")) == o["balance"]
    progs = json.loads(tapcash("ledger", "program", "report", "--db", world["db"], "--format",
                               "json"))
    page.goto(world["url"] + "/console/programmes")
    assert progs
    for p in progs:
        sec = page.locator(f'section[data-programme="{p["program"]}"]')
        for key in ("funded", "spent", "refunded", "outstanding"):
            assert int(sec.locator(f'[data-field="{key}"]').get_attribute("data-amount")) \
                == p[key], key
        assert sec.locator("[data-balanced]").get_attribute("data-balanced") == (
            "yes" if p["balanced"] else "no")


# ---- a revocation made in the page reaches the next hot list ------------------------------
def _hotlist(world: dict[str, Any]) -> tuple[int, list[str]]:
    """The public hot list, its issuer signature checked here."""
    hot = httpx.get(world["url"] + "/v1/hotlist").json()
    body = _verify(base64.b64decode(hot["envelope"]), proto.TAG_HOTLIST,
                   world["issuer"].public_key)
    assert body[proto.HOT_VERSION] == hot["version"]
    return hot["version"], [d.hex() for d in body[proto.HOT_REVOKED]]


def test_a_revocation_made_in_the_page_reaches_the_next_hot_list(page: Any,
                                                                 world: dict[str, Any]):
    api = world["api"]
    victim = next(d["id"] for d in api.get("/v1/devices", params={"kind": "wallet"}).json()
                  if not d["revoked"])
    version, listed = _hotlist(world)
    assert victim not in listed
    page.goto(world["url"] + "/console/hotlist")
    assert int(page.get_attribute("#hotlist [data-version]", "data-version")) == version
    page.fill("#revoke-device", victim)
    page.fill("#revoke-reason", "card reported stolen")
    page.click("#revoke-submit")
    page.wait_for_url(re.compile(r".*/console/hotlist\?revoked=.*"))
    assert victim in page.text_content("#revoked-notice")
    new_version, new_listed = _hotlist(world)
    assert new_version == version + 1 and victim in new_listed
    assert set(listed) < set(new_listed)
    row = page.locator(f'#revoked tr[data-device="{victim}"]')
    assert "card reported stolen" in row.text_content()
    assert api.get(f"/v1/devices/{victim}").json()["revoked"] is True


def test_a_post_without_the_csrf_token_or_from_another_origin_changes_nothing(
        page: Any, world: dict[str, Any]):
    api = world["api"]
    victim = next(d["id"] for d in api.get("/v1/devices", params={"kind": "wallet"}).json()
                  if not d["revoked"])
    version, _ = _hotlist(world)
    url = world["url"] + "/console/revoke"
    # The browser's own cookie, but no CSRF token in the form.
    r = page.request.post(url, form={"device": victim, "reason": "forged"})
    assert r.status == 403
    r = page.request.post(url, form={"device": victim, "reason": "forged", "csrf": "0" * 64})
    assert r.status == 403
    # A valid form from another origin.
    csrf = page.goto(world["url"] + "/console/hotlist") and page.get_attribute(
        'input[name="csrf"]', "value")
    r = page.request.post(url, form={"device": victim, "reason": "forged", "csrf": csrf},
                          headers={"Origin": "http://evil.example"})
    assert r.status == 403
    # Bad input is a clear 400, not a revocation.
    r = page.request.post(url, form={"device": "xyz", "reason": "r", "csrf": csrf})
    assert r.status == 400 and "16 hex digits" in r.text()
    r = page.request.post(url, form={"device": "00" * 8, "reason": "r", "csrf": csrf})
    assert r.status == 404
    assert _hotlist(world)[0] == version
    assert api.get(f"/v1/devices/{victim}").json()["revoked"] is False


def test_every_page_renders_without_a_server_error(page: Any, world: dict[str, Any]):
    for path in ("/", "/merchants", "/fraud", "/hotlist", "/devices", "/payroll",
                 "/programmes"):
        r = page.goto(world["url"] + "/console" + path)
        assert r.status == 200, path
        assert page.locator("main h1").count() == 1
    r = page.goto(world["url"] + "/console/fraud/999999")
    assert r.status == 404 and "no fraud case" in page.text_content("#error")
    r = page.goto(world["url"] + "/console/devices/zz")
    assert r.status == 404


def test_logout_ends_the_session(browser: Any, world: dict[str, Any]):
    ctx, pg = _logged_in(browser, world["url"])
    pg.click("header button")
    pg.wait_for_url(world["url"] + "/console/login")
    pg.goto(world["url"] + "/console/merchants")
    assert pg.url.endswith("/console/login")
    ctx.close()


if os.environ.get("TAPCASH_CONSOLE_SCREENSHOTS"):
    def test_screenshots(page: Any, world: dict[str, Any]):
        out = Path(os.environ["TAPCASH_CONSOLE_SCREENSHOTS"])
        out.mkdir(parents=True, exist_ok=True)
        for name, path in [("overview", "/"), ("merchants", "/merchants"), ("fraud", "/fraud/1"),
                           ("rollback", "/fraud/4"), ("hotlist", "/hotlist"),
                           ("programmes", "/programmes")]:
            page.goto(world["url"] + "/console" + path)
            page.screenshot(path=str(out / f"{name}.png"), full_page=True)

"""The ledger's HTTP API as an outsider meets it (issue #11): strict input, no 500 for any
input, RFC 9457 problem details, a size limit and the operator token checked before a body is
read, `pending` authenticated by the device itself, and an OpenAPI document that tells the truth.
Both back ends, real uvicorn on loopback."""

from __future__ import annotations

import base64
import json
import socket
import time
from typing import Any

import httpx
from ledger_world import TOKEN, World

from tapcash.firmware.core import proto

OP = {"Authorization": f"Bearer {TOKEN}"}


def _client(world: World) -> httpx.Client:
    return httpx.Client(base_url=world.server.url, timeout=30)


def _problem(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body = r.json()
    assert body["status"] == status and body["title"] and isinstance(body["detail"], str)
    assert body["type"] == "about:blank"
    return body


def test_lax_types_are_refused_and_change_nothing(world: World) -> None:
    """Found: {"amount": "7"} deposited 7, {"amount": true} deposited 1, seq true was seq 1."""
    w = world.wallet(1, load=1000)
    p = world.pos(1)
    assert world.pay(w, p, 100).approved
    records, status = world.export(p)
    before = world.client.books()
    with _client(world) as h:
        for amount in ("7", True, 7.5, "1e3", None, [7]):  # (7.0 is the integer 7)
            r = h.post("/v1/owners/alice/deposit", json={"amount": amount}, headers=OP)
            _problem(r, 422)
            r = h.post(f"/v1/wallets/{w.id.hex()}/load", json={"amount": amount}, headers=OP)
            _problem(r, 422)
        rec = base64.b64encode(records[0][1]).decode()
        st = base64.b64encode(status).decode()
        for seq in (True, "1", 1.5):
            r = h.post("/v1/ingest", json={"device": p.id.hex(), "status": st,
                                           "records": [{"seq": seq, "record": rec}]})
            _problem(r, 422)
        r = h.post("/v1/owners/alice/deposit", json={"amount": 5, "extra": 1}, headers=OP)
        _problem(r, 422)
    assert world.client.books() == before
    assert world.client.ingest(p.id, records, status).accepted == 1


def test_no_input_makes_a_500(world: World) -> None:
    """Found: 500s on a payroll CSV with a bare CR, a Unicode digit amount, a renewal limit or
    expiry of 2^64, and every validation error whose input cannot be rendered back (a CBOR body,
    a lone surrogate, NaN)."""
    w = world.wallet(1)
    world.client.deposit("acme", 5000)
    before = world.client.books()
    wid = w.id.hex()
    raw = {"Content-Type": "application/json", **OP}
    with _client(world) as h:
        cases = [
            ("/v1/payroll", {"payer": "acme", "reference": "cr", "csv": f"{wid},5\r{wid},6\n"},
             400),
            ("/v1/payroll", {"payer": "acme", "reference": "u", "csv": f"{wid},\u00b2\n"}, 400),
            ("/v1/payroll", {"payer": "acme", "reference": "u2", "csv": f"{wid},\u0663\n"}, 400),
            (f"/v1/devices/{wid}/renew", {"limits": {"2": 2**64}}, 422),
            (f"/v1/devices/{wid}/renew", {"expires": 2**64}, 422),
            (f"/v1/devices/{wid}/renew", {"limits": {"x": 5}}, 422),
            (f"/v1/devices/{wid}/renew", {"limits": {"999": 5}}, 400),
        ]
        for path, body, status in cases:
            _problem(h.post(path, json=body, headers=OP), status)
        for content, ctype in (
            (b"\xa1\x66amount\x05", "application/cbor"),
            (b'{"amount": 5, "reference": "\\ud800"}', "application/json"),
            (b'{"amount": NaN}', "application/json"),
            (b'{"amount": Infinity}', "application/json"),
            (b'{"amount": 5', "application/json"),
            (b"\xff\xfe\x00", "application/json"),
            (b"", "application/json"),
            (b'{"amount": 5}', "text/plain"),
        ):
            r = h.post("/v1/owners/acme/deposit", content=content,
                       headers={**raw, "Content-Type": ctype})
            assert 400 <= r.status_code < 500, (content, r.status_code, r.text)
            _problem(r, r.status_code)
        _problem(h.post("/v1/owners/acme/deposit", content=b'{"amount": 5}',
                        headers={**OP, "Content-Type": "application/cbor"}), 415)
        # a lone surrogate in a path, a path nobody serves, a method nobody serves
        assert h.get("/v1/owners/%ED%A0%80", headers=OP).status_code < 500
        _problem(h.get("/v1/nothing", headers=OP), 404)
        _problem(h.get("/v1/nothing"), 401)  # default deny: a stranger learns no route
        _problem(h.delete("/v1/health"), 405)
    assert world.client.books() == before


def test_no_programme_input_makes_a_500(world: World) -> None:
    """Found by the live schemathesis run once the programme routes got real ids (ledger-ops):
    500s on a programme with an expiry, category or cap beyond what a rule can carry, and on a
    programme load with a Unicode digit amount or a bare CR; the programme schema also let
    through names, kinds and references the ledger then refused (400 for schema-valid bodies)."""
    w = world.wallet(1)
    wid = w.id.hex()
    world.client.deposit("acme", 5000)
    world.client.program_create("meals", "acme", "subsidy", expires=2**32 - 1, categories=[7])
    before = world.client.books()
    good = {"name": "p1", "funder": "acme", "kind": "subsidy", "expires": 2**32 - 1,
            "categories": [1]}
    with _client(world) as h:
        for change in ({"expires": 10**23}, {"expires": 2**32}, {"valid_from": 2**64},
                       {"categories": [10**23]}, {"categories": [-1]}, {"cap": 10**23},
                       {"unit": 2**63}, {"name": ""}, {"name": "a b"}, {"name": "x" * 65},
                       {"kind": "gift"}, {"funder": ""}, {"merchants": ["xyz"]}):
            _problem(h.post("/v1/programs", json=good | change, headers=OP), 422)
        for body, status in (
            ({"reference": "u", "csv": f"{wid},\u00b2\n"}, 400),
            ({"reference": "u", "csv": f"{wid},\u0663\n"}, 400),
            ({"reference": "cr", "csv": f"{wid},5\r{wid},6\n"}, 400),
            ({"reference": "big", "csv": f"{wid},{2**62}\n"}, 400),
            ({"reference": "", "csv": f"{wid},5\n"}, 422),
            ({"reference": "r" * 65, "csv": f"{wid},5\n"}, 422),
        ):
            _problem(h.post("/v1/programs/meals/load", json=body, headers=OP), status)
    assert world.client.books() == before


def test_a_nul_character_is_refused_on_both_back_ends(world: World) -> None:
    """Found by the schemathesis sweep on PostgreSQL (--schemathesis-examples 200): a reason or
    reference with U+0000 was a 500 there (PostgreSQL text cannot hold NUL); SQLite stored it.
    Now 422 on both, the API's description says so, and nothing changes."""
    w = world.wallet(1)
    wid = w.id.hex()
    world.client.deposit("acme", 5000)
    world.client.program_create("meals", "acme", "subsidy", expires=2**32 - 1, categories=[7])
    before = world.client.books()
    with _client(world) as h:
        for path, body in (
            ("/v1/owners/acme/deposit", {"amount": 5, "reference": "a\u0000b"}),
            (f"/v1/wallets/{wid}/load", {"amount": 5, "reference": "\u0000"}),
            (f"/v1/devices/{wid}/revoke", {"reason": "lost\u0000"}),
            (f"/v1/devices/{wid}/reinstate", {"reason": "\u0000found"}),
            ("/v1/payroll", {"payer": "acme", "reference": "p\u0000", "csv": f"{wid},5\n"}),
            ("/v1/payroll", {"payer": "acme", "reference": "p", "csv": f"{wid},5\u0000\n"}),
            ("/v1/programs/meals/load", {"reference": "r\u0000", "csv": f"{wid},5\n"}),
        ):
            body = _problem(h.post(path, json=body, headers=OP), 422)
            assert "NUL" in body["detail"], body
        _problem(h.get("/v1/programs/me%00als", headers=OP), 422)
        _problem(h.post("/v1/programs/me%00als/cancel", headers=OP), 422)
    assert world.client.books() == before
    assert not world.client.device(w.id)["revoked"]
    spec = world.client._http.get("/openapi.json").json()
    assert "without U+0000 (NUL): 422" in spec["info"]["description"]


def test_body_limit_and_token_are_checked_before_the_body_is_read(world: World) -> None:
    """Found: a 50 MB body was read and parsed in full before the token was even checked."""
    host, port = "127.0.0.1", world.server.port

    def raw(headers: str) -> tuple[int, float]:
        """Send only the head of a request announcing 50 MB: the answer must come without the
        body ever being sent."""
        t0 = time.monotonic()
        with socket.create_connection((host, port), timeout=10) as s:
            s.sendall(headers.encode())
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        return int(data.split(b" ", 2)[1]), time.monotonic() - t0

    head = ("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 50000000\r\n{auth}\r\n")
    assert raw(head.format(path="/v1/owners/x/deposit", auth=f"Authorization: Bearer "
                           f"{TOKEN}\r\n"))[0] == 413
    assert raw(head.format(path="/v1/ingest", auth=""))[0] == 413
    assert raw(head.format(path="/v1/owners/x/deposit", auth=""))[0] == 401
    assert raw(head.format(path="/v1/owners/x/deposit", auth="Authorization: Bearer no\r\n"))[
        0] == 401
    with _client(world) as h:
        # a chunked body (no Content-Length) is cut at the limit
        r = h.post("/v1/owners/x/deposit", content=(b"x" * 65536 for _ in range(64)),
                   headers={**OP, "Content-Type": "application/json"})
        _problem(r, 413)
        # the token before the body: a wrong token with a malformed body is 401, not 422
        body = _problem(h.post("/v1/owners/x/deposit", content=b"{", headers={
            "Authorization": "Bearer wrong", "Content-Type": "application/json"}), 401)
        assert body["detail"] == "operator token is wrong"
        body = _problem(h.post("/v1/owners/x/deposit", content=b"{"), 401)
        assert "required" in body["detail"]
        assert h.post("/v1/owners/x/deposit", content=b"{", headers=OP).status_code == 422
        # every route that is not public or a device's needs the token, those added by other
        # modules too (programmes)
        spec = h.get("/openapi.json").json()
        public = {"/v1/health", "/v1/issuer", "/v1/hotlist", "/v1/ingest",
                  "/v1/devices/{device_id}/pending"}
        for path, ops in spec["paths"].items():
            if path in public:
                continue
            url = path.replace("{device_id}", "00" * 8).replace("{wallet_id}", "00" * 8)
            url = url.replace("{merchant_id}", "00" * 8).replace("{owner}", "x")
            url = url.replace("{name}", "x")
            for method in ops:
                r = h.request(method.upper(), url, json={})
                assert r.status_code == 401, (method, path, r.status_code)
    assert world.client.owners() == []


def test_pending_is_authenticated_by_the_device_read_only_and_tells_a_stranger_nothing(
    world: World,
) -> None:
    """Found: GET /v1/devices/{id}/pending needed no token, told anyone whether a device id
    exists, listed a wallet's voucher amounts, and wrote a row."""
    w = world.wallet(1)
    world.client.deposit("alice", 3000)
    world.client.load(w.id, 1200)  # a voucher waiting for the wallet
    _records, status = world.export(w)
    stranger_id = "00" * 8
    with _client(world) as h:
        url = f"/v1/devices/{w.id.hex()}/pending"
        a = _problem(h.get(url), 401)
        b = _problem(h.get(f"/v1/devices/{stranger_id}/pending"), 401)
        assert a == b
        # a status of another device, a forged one, garbage: one answer, also for an unknown id
        other = world.wallet(2, owner="bob")
        _r2, other_status = world.export(other)
        forged = proto.seal(proto.TAG_STATUS, {proto.ST_DEVICE: w.id, proto.ST_SEQ: 9},
                            b"\x01" * 32)
        answers = []
        for dev, st in ((w.id.hex(), other_status), (w.id.hex(), forged),
                        (stranger_id, status), (w.id.hex(), b"junk")):
            r = h.get(f"/v1/devices/{dev}/pending",
                      headers={"X-Tapcash-Status": base64.b64encode(st).decode()})
            answers.append(_problem(r, 403))
        assert all(x == answers[0] for x in answers)
        # an operator token is not a device's signature
        _problem(h.get(url, headers=OP), 401)

        books = world.client.books()
        ok = h.get(url, headers={"X-Tapcash-Status": base64.b64encode(status).decode()})
        assert ok.status_code == 200, ok.text
        assert [v["amount"] for v in ok.json()["vouchers"]] == [1200]
        assert world.client.books() == books  # read only
    # The client and the device: the voucher loads.
    pend = world.client.pending(w.id, status)
    assert len(pend.vouchers) == 1
    # After a newer sync (the LOAD journals a record: the second sync uploads it), the old
    # status no longer opens it.
    world.sync(w)
    world.sync(w)
    with _client(world) as h:
        r = h.get(url, headers={"X-Tapcash-Status": base64.b64encode(status).decode()})
        _problem(r, 403)


def test_openapi_document_tells_the_truth(world: World) -> None:
    """Found: only 200/422 declared while routes answer 400/401/404/409; no security scheme;
    every response an untyped object."""
    with _client(world) as h:
        spec = h.get("/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["operatorToken"] == {"type": "http", "scheme": "bearer",
                                        "description": "the operator token"}
    paths = spec["paths"]
    deposit = paths["/v1/owners/{owner}/deposit"]["post"]
    assert deposit["security"] == [{"operatorToken": []}]
    assert {"200", "400", "401", "409", "413", "415", "422"} <= set(deposit["responses"])
    assert {"200", "401", "403"} <= set(paths["/v1/devices/{device_id}/pending"]["get"][
        "responses"])
    assert "security" not in paths["/v1/ingest"]["post"]
    assert "403" in paths["/v1/ingest"]["post"]["responses"]
    # each route declares what it can answer, no blanket list (found in the audit of #11: every
    # programme route declared 400..422, a GET 413 and 415, and answered untyped objects)
    for path, method, codes in (
        ("/v1/programs", "get", {"200", "401"}),
        ("/v1/programs", "post", {"200", "400", "401", "404", "409", "413", "415", "422"}),
        ("/v1/programs/{name}", "get", {"200", "401", "404", "422"}),
        ("/v1/programs/sweep", "post", {"200", "401", "413"}),
        ("/v1/programs/{name}/cancel", "post", {"200", "401", "404", "413", "422"}),
    ):
        assert set(paths[path][method]["responses"]) == codes, (method, path)
    schemas = spec["components"]["schemas"]
    for path, ops in paths.items():
        for method, op in ops.items():
            for code, resp in op["responses"].items():
                content = resp.get("content", {})
                if int(code) >= 400:
                    assert list(content) == ["application/problem+json"], (path, code)
                    continue
                schema = content["application/json"]["schema"]
                ref = schema.get("$ref") or schema.get("items", {}).get("$ref")
                assert ref, (method, path, schema)  # typed, not {}
                name = ref.rsplit("/", 1)[1]
                assert schemas[name]["properties"], name
            if op.get("tags") in (["operator"], ["reports"], ["programmes"]):
                assert op["security"] == [{"operatorToken": []}], path
    json.dumps(spec)


def test_a_payroll_line_is_never_taken_for_a_header(world: World) -> None:
    """Found in the audit of #11: the first line of a payroll or programme load was skipped as
    a header whenever its amount was not ASCII digits, even with a wallet id in front: `ID,²`
    or `ID,25.00` (major units, as the CLI takes amounts) on line 1 paid that wallet nothing
    while the other lines went through ("all lines or none" broken), and alone it was
    "payroll: no lines". Now only a line 1 with neither a wallet id nor an amount is a header;
    a major-unit amount is named as such."""
    w1, w2 = world.wallet(1), world.wallet(2, owner="bob")
    a, b = w1.id.hex(), w2.id.hex()
    world.client.deposit("acme", 5000)
    world.client.program_create("meals", "acme", "subsidy", expires=2**32 - 1, categories=[7])
    before = world.client.books()
    with _client(world) as h:
        for path, extra in (("/v1/payroll", {"payer": "acme"}), ("/v1/programs/meals/load", {})):
            for csv_text, says in (
                (f"{a},\u00b2\n{b},5\n", "is not a positive integer of minor units"),
                (f"{a},25.00\n{b},5\n", "without a decimal point"),
                (f"{a},25.00\n", "without a decimal point"),
                (f"{a},\n{b},5\n", "is not a positive integer"),
            ):
                body = {"reference": "r1", "csv": csv_text, **extra}
                problem = _problem(h.post(path, json=body, headers=OP), 400)
                assert problem["lines"][0]["line"] == 1, (path, csv_text, problem)
                assert says in problem["lines"][0]["error"], problem
    assert world.client.books() == before
    # a real header line is still skipped
    done = world.client.payroll("acme", f"wallet,amount\n{a},5\n{b},6\n", "r2")
    assert [v["line"] for v in done["vouchers"]] == [2, 3] and done["total"] == 11


def test_the_bearer_scheme_is_case_insensitive(world: World) -> None:
    """Found in the audit of #11: `Authorization: bearer <token>` (the scheme is
    case-insensitive, RFC 9110 11.1; some HTTP clients send it lower case) was a 401 "use the
    scheme" on the API and on the console."""
    with _client(world) as h:
        for scheme in ("Bearer", "bearer", "BEARER"):
            r = h.get("/v1/whoami", headers={"Authorization": f"{scheme} {TOKEN}"})
            assert r.status_code == 200, (scheme, r.text)
            r = h.get("/console/", headers={"Authorization": f"{scheme} {TOKEN}"})
            assert r.status_code == 200, (scheme, r.status_code)
        body = _problem(h.get("/v1/whoami", headers={"Authorization": f"Basic {TOKEN}"}), 401)
        assert "use the scheme" in body["detail"]
        body = _problem(h.get("/v1/whoami", headers={"Authorization": "bearer wrong"}), 401)
        assert body["detail"] == "operator token is wrong"
        body = _problem(h.get("/v1/whoami", headers={"Authorization": f"Bearer{TOKEN}"}), 401)
        assert "use the scheme" in body["detail"]


def _every_row(world: World) -> dict[str, list[Any]]:
    """Every row of every table of the ledger's database (SQLite or PostgreSQL)."""
    db = world.ledger.db
    sql = ("SELECT name FROM sqlite_master WHERE type = 'table'" if db.dialect == "sqlite" else
           "SELECT table_name FROM information_schema.tables WHERE table_schema = "
           "current_schema()")

    def dump(tx: Any) -> dict[str, list[Any]]:
        names = sorted(r[0] for r in tx.all(sql))
        return {n: sorted(repr(tuple(r)) for r in tx.all(f"SELECT * FROM {n}")) for n in names}

    return db.read(dump)


def test_pending_writes_no_row_for_a_wallet_or_a_pos(world: World) -> None:
    """The audit of #11: "a GET that writes" checked on the whole database, not the books only:
    pending for a wallet with a voucher waiting and for a POS (whose update the old pending
    minted on the spot) leaves every table as it was."""
    w, p = world.wallet(1, load=1000), world.pos(1)
    world.client.deposit("alice", 3000)
    world.client.load(w.id, 1200)
    assert world.pay(w, p, 100).approved
    world.sync(p)
    world.client.revoke(world.wallet(2).id, "lost")  # a newer hot list than the POS holds
    statuses = {dev.id: world.export(dev)[1] for dev in (w, p)}
    before = _every_row(world)
    with _client(world) as h:
        for dev_id, status in statuses.items():
            r = h.get(f"/v1/devices/{dev_id.hex()}/pending",
                      headers={"X-Tapcash-Status": base64.b64encode(status).decode()})
            assert r.status_code == 200, r.text
    assert _every_row(world) == before


def test_a_csv_report_without_rows_still_has_its_header(world: World) -> None:
    """The audit of #11: `GET /v1/reports/settlements?format=csv` on a ledger with no
    settlement answered an empty body, not even the header a script reads its columns from."""
    with _client(world) as h:
        for name, header in (("settlements", "settlement,merchant,amount,reference,at"),
                             ("fraud", "case,wallet,kind,counter,proof_a,proof_b,amount_b,"
                              "credited_b,loss,detected_at,via,evidence"),
                             ("merchants", "merchant,credited,settled,owed,"
                              "of_which_guaranteed,payments")):
            r = h.get(f"/v1/reports/{name}", params={"format": "csv"}, headers=OP)
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
            assert r.text == header + "\n", (name, r.text)

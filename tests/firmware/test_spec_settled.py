"""What a fresh reading of docs/PROTOCOL.md found left open (issue #14), now stated there; each
statement checked against the code here: strict CBOR in command data (§1), time 0 and inclusive
expiry (§1, §2.1), a hot list's version and order (§2.6), Le neither required nor enforced (§3),
the recovery PAY repeats every field but the PIN (§4.1). Every refusal changes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from tapcash.firmware.core import cbor, proto
from tapcash.sim.device import provision as pv

PAYEE = b"POS-0001"


def _req(amount: int = 100, **extra: Any) -> dict[int, Any]:
    req = {
        proto.REQ_CHALLENGE: bytes(range(16)),
        proto.REQ_AMOUNT: amount,
        proto.REQ_PAYEE: PAYEE,
        proto.REQ_TIME: 0,
        proto.REQ_KIND: proto.PAYKIND_POS,
    }
    req.update(extra)
    return req


def _wallet() -> Any:
    app, _flash = pv.make_wallet(pv.issuer_from_seed(51), 1, seed=51, balance=10_000)
    pv.select(app)
    return app


def _info(app: Any) -> bytes:
    return app.process(proto.build_command(proto.CLA_PROP, proto.INS_GET_INFO, 0, 0))


@pytest.mark.parametrize(
    "data",
    [
        # amount 100 as a 2-byte integer (19 0064) instead of 18 64: not the shortest form
        bytes.fromhex("a5") + cbor.encode(0)[:1] + cbor.encode(bytes(range(16)))
        + b"\x01\x19\x00\x64" + b"\x02" + cbor.encode(PAYEE) + b"\x03\x00\x04\x01",
        # keys 1 and 0 swapped: unsorted
        bytes.fromhex("a5") + b"\x01\x18\x64" + b"\x00" + cbor.encode(bytes(range(16)))
        + b"\x02" + cbor.encode(PAYEE) + b"\x03\x00\x04\x01",
        cbor.encode(_req()) + b"\x00",  # trailing byte
        bytes.fromhex("bf") + cbor.encode(_req())[1:] + b"\xff",  # indefinite-length map
        cbor.encode(_req())[:-1] + b"\xf9\x3c\x00",  # kind as the float 1.0
    ],
    ids=["not-shortest", "unsorted", "trailing", "indefinite", "float"],
)
def test_pay_with_data_that_is_not_strict_cbor_is_6a80_and_changes_nothing(data: bytes) -> None:
    app = _wallet()
    before = _info(app)
    resp = app.process(proto.build_command(proto.CLA_PROP, proto.INS_PAY, 0, 0, data))
    assert resp == b"\x6a\x80"
    assert _info(app) == before


def test_le_is_neither_required_nor_enforced() -> None:
    """PAY with no Le, Le 00 and Le 01: each answers the whole payment envelope (never 61xx /
    6Cxx); the last two are the idempotent retry of the first."""
    app = _wallet()
    body = cbor.encode(_req())
    head = bytes((proto.CLA_PROP, proto.INS_PAY, 0, 0, len(body))) + body
    answers = [app.process(head + le) for le in (b"", b"\x00", b"\x01")]
    assert all(a[-2:] == b"\x90\x00" and len(a) > 100 for a in answers), answers
    assert answers[0] == answers[1] == answers[2]
    bad = app.process(head[:-1])  # Lc says one byte more than there is
    assert bad == b"\x67\x00"


def test_certificate_expiry_is_inclusive_and_time_0_judges_nothing() -> None:
    issuer = pv.issuer_from_seed(52)
    cert_env = issuer.certify_wallet(b"W" * 8, bytes(32), expires=1_000)
    keys = issuer.trusted_keys
    for now in (0, 999, 1_000):
        assert proto.verify_cert(cert_env, keys, proto.KIND_WALLET, now)[proto.CERT_ID] == b"W" * 8
    with pytest.raises(proto.ApduError) as e:
        proto.verify_cert(cert_env, keys, proto.KIND_WALLET, 1_001)
    assert e.value.sw == proto.SW_EXPIRED


@pytest.mark.parametrize(
    ("version", "revoked"),
    [(0, []), (5, [b"B" * 8, b"A" * 8]), (5, [b"A" * 8, b"A" * 8]), (5, [b"A" * 7])],
    ids=["version-0", "unsorted", "duplicate", "short-id"],
)
def test_a_malformed_hot_list_is_6a80_and_nothing_applied(version: int, revoked: list) -> None:
    pair = pv.make_pair(53)
    info = cbor.decode(pv.call(pair.pos, proto.INS_GET_INFO, what="GET INFO"))
    update = pair.issuer.update(
        pair.pos_id, info[proto.INFO_UPDATE] + 1,
        {proto.UPD_HOTLIST: _hotlist(pair.issuer, version, pair.clock.now(), revoked)},
    )
    resp = pair.pos.process(proto.build_command(proto.CLA_PROP, proto.INS_APPLY, 0, 0, update))
    assert resp == b"\x6a\x80"
    assert cbor.decode(pv.call(pair.pos, proto.INS_GET_INFO, what="GET INFO")) == info


def _hotlist(issuer: Any, version: int, issued: int, revoked: list) -> bytes:
    """Signed by the issuer as given (Issuer.hotlist sorts and checks: a faulty issuer's)."""
    body = {proto.HOT_VERSION: version, proto.HOT_ISSUED: issued, proto.HOT_REVOKED: revoked}
    return issuer._seal(proto.TAG_HOTLIST, body)


def test_the_recovery_pay_repeats_every_field_but_the_pin() -> None:
    """A payment above no-CVM with the PIN, torn as the card answers PAY; the re-tap's PAY is
    the first one without field 5, and the card pays once."""
    pair = pv.make_pair(54)
    sent: list[bytes] = []
    pair.link.alter_command = lambda _k, apdu: (sent.append(bytes(apdu)), apdu)[1]
    pair.link.tear("response", 1, 0)  # command 1 of the tap is PAY: its answer is lost
    amount = proto.DEFAULT_LIMITS[proto.LIM_NO_CVM] + 100
    first = pair.pos.take_payment(amount, b"1234")
    assert first.status == "torn", first
    pair.link.tap(pair.wallet)
    again = pair.pos.take_payment(1, None)  # another sale: the torn one completes first
    assert again.approved and again.recovered and again.amount == amount, again
    pays = [cbor.decode(proto.parse_command(c)[4]) for c in sent if c[1] == proto.INS_PAY]
    assert len(pays) == 2 and pays[0][proto.REQ_PIN] == b"1234"
    assert proto.REQ_PIN not in pays[1]
    pays[0].pop(proto.REQ_PIN)
    assert pays[1] == pays[0]
    assert again.counter == 1


@pytest.mark.parametrize("most", [0, 65_536])
def test_export_max_records_out_of_range_is_6a80_on_both(most: int) -> None:
    """0 used to answer an empty page with `more` true on the card (a host would page forever);
    the POS took any size. Both: 1..65535, else 6A80, nothing changed."""
    pair = pv.make_pair(55)
    assert pair.pos.take_payment(100).approved
    req = cbor.encode({proto.EXP_SINCE: 0, proto.EXP_MAX: most})
    export = proto.build_command(proto.CLA_PROP, proto.INS_EXPORT, 0, 0, req)
    pv.select(pair.wallet)
    for app in (pair.wallet, pair.pos):
        assert app.process(export) == b"\x6a\x80", app
    _records, status = pv.export_all(pair.wallet)
    assert proto.open_envelope(status)[1][proto.ST_COUNTER] == 1
    one = cbor.encode({proto.EXP_SINCE: 0, proto.EXP_MAX: 1})
    for app in (pair.wallet, pair.pos):
        out = cbor.decode(pv.call(app, proto.INS_EXPORT, one, what="EXPORT"))
        assert len(out[proto.EXP_RECORDS]) == 1


def test_pin_and_puk_are_byte_strings() -> None:
    """RESET RETRY with the right PUK and a new PIN as text strings: 6A80, no PUK try spent."""
    app = _wallet()
    before = _info(app)
    data = cbor.encode(["12345678", "4321"])
    resp = app.process(proto.build_command(proto.CLA_ISO, proto.INS_RESET_RETRY, 0, 0x80, data))
    assert resp == b"\x6a\x80"
    assert _info(app) == before
    ok = cbor.encode([b"12345678", b"4321"])
    assert app.process(
        proto.build_command(proto.CLA_ISO, proto.INS_RESET_RETRY, 0, 0x80, ok)
    ) == b"\x90\x00"

"""PC/SC end to end against a REAL pcscd with vsmartcard's vpcd driver
(tests/support/pcsc_fixtures.py): the simulated wallet is a card that pcsc_scan, scriptor and
pyscard see; the POS pays over PcscLink. Needs: apt-get install -y pcscd vsmartcard-vpcd pcsc-tools
libpcsclite-dev swig, pip install pyscard (missing pieces fail the tests).
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pcsc_fixtures import (  # noqa: F401 - the *_fixture names register the fixtures
    CARD_WAIT_S,
    Bench,
    ForeignCard,
    Pcscd,
    bench_fixture,
    env_with_path,
    pcscd_fixture,
    pos_info,
    serve,
    stop,
)

from tapcash.firmware.core import cbor, proto
from tapcash.firmware.core.hal import LinkError
from tapcash.firmware.wallet import state as wst
from tapcash.host.pcsc.reader_link import PcscLink, ReaderError, resolve_reader
from tapcash.host.pcsc.vpcd_card import ATR, GetResponseCard, pseudo_atr
from tapcash.sim.device import provision as pv
from tapcash.sim.device.hal import SimClock

TOOL_TIMEOUT_S = 30


def _spaced(data: bytes) -> str:
    return data.hex(" ").upper()


def _payments(records: list) -> list[bytes]:
    return [rec[proto.REC_SIGNED] for _seq, rec in records
            if rec[proto.REC_TYPE] == proto.RT_PAYMENT]


def _books_agree(b: Bench, amounts: list[int]) -> None:
    """Wallet balance, wallet journal and POS journal all tell the same story."""
    with b.card.lock:
        s = b.wallet.state
        assert s[wst.S_BALANCE] == b.initial - sum(amounts)
        assert s[wst.S_COUNTER] == len(amounts)
        wallet_records, _ = pv.export_all(b.wallet)
    pos_records, _ = pv.export_all(b.pos)
    wallet_payments = _payments(wallet_records)
    pos_payments = _payments(pos_records)
    assert wallet_payments == pos_payments  # the same signed envelopes, byte for byte
    bodies = [proto.open_envelope(p)[1] for p in pos_payments]
    assert [body[proto.PAY_AMOUNT] for body in bodies] == amounts
    assert [body[proto.PAY_COUNTER] for body in bodies] == list(range(1, len(amounts) + 1))
    receipts = [rec for _seq, rec in wallet_records if rec[proto.REC_TYPE] == proto.RT_RECEIPT]
    assert len(receipts) == len(amounts)  # every RECEIPT reached the card


# ---- the card as PC/SC tools see it ---------------------------------------------------------
def test_pseudo_atr_is_pcsc_part3_contactless() -> None:
    assert pseudo_atr(b"") == bytes.fromhex("3B80800101")  # the PC/SC part 3 example
    assert ATR[:4] == bytes.fromhex("3B878001") and ATR[4:-1] == b"tapcash"
    tck = 0
    for byte in ATR[1:]:
        tck ^= byte
    assert tck == 0


def test_pcsc_scan_sees_the_card(bench: Bench) -> None:
    """pcsc_scan (pcsc-tools) lists the vpcd reader with a card inserted and our ATR. -n: no
    ATR analysis (it would try to download the ATR list)."""
    proc = subprocess.Popen(["pcsc_scan", "-n"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=env_with_path())
    out = b""
    want = re.compile(
        rb"Reader \d+: " + re.escape(bench.reader.encode()) + rb"\s+Event number: \d+\s+"
        rb"Card state: Card inserted,\s*\n\s*ATR: " + re.escape(_spaced(ATR).encode())
    )
    deadline = time.monotonic() + TOOL_TIMEOUT_S
    try:
        while not want.search(out) and time.monotonic() < deadline:
            ready, _w, _x = select.select([proc.stdout], [], [], 0.5)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                out += chunk
    finally:
        proc.terminate()
        proc.wait(10)
    text = out.decode(errors="replace")
    assert want.search(out), text


def test_scriptor_selects_the_wallet(bench: Bench, tmp_path: Path) -> None:
    """scriptor sends SELECT of the tapcash AID and GET INFO; both are 9000 with INFO naming
    the wallet."""
    script = tmp_path / "select.apdu"
    select_apdu = proto.build_command(proto.CLA_ISO, proto.INS_SELECT, 4, 0, proto.AID)
    info_apdu = proto.build_command(proto.CLA_PROP, proto.INS_GET_INFO, 0, 0)
    script.write_text(f"{_spaced(select_apdu)}\n{_spaced(info_apdu)}\n")
    run = subprocess.run(["scriptor", "-r", bench.reader, str(script)], capture_output=True,
                         timeout=TOOL_TIMEOUT_S, env=env_with_path())
    text = run.stdout.decode(errors="replace")
    assert run.returncode == 0, text + run.stderr.decode(errors="replace")
    answers = re.findall(r"^< ([0-9A-F \n]+?) : (.+)$", text, re.MULTILINE)
    assert len(answers) == 2, text
    for hexbytes, meaning in answers:
        resp = bytes.fromhex(hexbytes.replace("\n", " "))
        data, sw = proto.split_response(resp)
        assert sw == proto.SW_OK and meaning == "Normal processing.", text
        info = cbor.decode(data)
        assert info[proto.INFO_ID] == bench.wallet_id
        assert info[proto.INFO_COUNTER] == 0
        assert proto.open_envelope(info[proto.INFO_CERT])[1][proto.CERT_ID] == bench.wallet_id


# ---- payments over PcscLink -------------------------------------------------------------------
def test_payments_over_pcsc_books_agree(bench: Bench) -> None:
    amounts = [1250, 700, 49]
    for amount in amounts:
        result = bench.pos.take_payment(amount)
        bench.link.disconnect()  # end of the tap: pcscd resets the card
        assert result.approved and result.reason == "ok", result
        assert result.receipt_sent
        assert result.wallet == bench.wallet_id
    assert result.balance == bench.initial - sum(amounts)
    assert bench.link.protocol in (1, 2)  # T=0 or T=1, as pcscd negotiated from the ATR
    assert bench.card.power_ons >= len(amounts)  # every tap was a new card session
    _books_agree(bench, amounts)
    assert pos_info(bench.pos)[proto.INFO_TORN] == 0


def test_pin_payment_over_pcsc(bench: Bench) -> None:
    """Above the card's no-CVM limit (50.00 by default) the PIN travels in PAY; a wrong one
    costs a try and is a decline, the right one pays."""
    amount = 6_000
    missing = bench.pos.take_payment(amount)
    bench.link.disconnect()
    assert missing.status == "declined" and missing.reason == "pin_required", missing
    wrong = bench.pos.take_payment(amount, b"0000")
    bench.link.disconnect()
    assert wrong.status == "declined" and wrong.reason == "pin_wrong", wrong
    assert wrong.tries_left == 2
    right = bench.pos.take_payment(amount, pv.PIN)
    bench.link.disconnect()
    assert right.approved and right.balance == bench.initial - amount, right
    _books_agree(bench, [amount])


def test_reset_starts_a_new_card_session(bench: Bench) -> None:
    """pcscd's reset / power-on reach the wallet as power_on(): the SELECT is forgotten."""
    select_apdu = proto.build_command(proto.CLA_ISO, proto.INS_SELECT, 4, 0, proto.AID)
    info_apdu = proto.build_command(proto.CLA_PROP, proto.INS_GET_INFO, 0, 0)
    assert proto.split_response(bench.link.transceive(select_apdu))[1] == proto.SW_OK
    assert proto.split_response(bench.link.transceive(info_apdu))[1] == proto.SW_OK
    sessions = bench.card.power_ons
    bench.link.disconnect(reset=True)
    resp = bench.link.transceive(info_apdu)  # connects again: a new session, nothing selected
    assert proto.split_response(resp)[1] == proto.SW_CONDITIONS
    assert bench.card.power_ons > sessions


def test_card_removed_after_pay_is_recovered_on_retap(bench: Bench) -> None:
    """The card commits PAY and leaves the field before its answer (vpcd connection closed):
    the POS has a torn entry and nothing journaled; on the re-tap it gets the same payment
    again, whatever the new amount, and the books agree."""
    bench.card.remove_on(proto.INS_PAY, processed=True)
    torn = bench.pos.take_payment(1500)
    assert torn.status == "torn" and torn.reason == "link", torn
    with bench.card.lock:
        assert bench.wallet.state[wst.S_COUNTER] == 1  # the card did commit it
    assert pos_info(bench.pos)[proto.INFO_TORN] == 1
    assert pv.export_all(bench.pos)[0] == []
    assert bench.link.wait_for_removal(10)
    with pytest.raises(LinkError):  # no card in the reader: a LinkError, not a crash
        bench.link.transceive(proto.build_command(proto.CLA_PROP, proto.INS_GET_INFO, 0, 0))

    bench.tap()
    again = bench.pos.take_payment(99)
    bench.link.disconnect()
    assert again.approved and again.recovered and again.reason == "recovered", again
    assert again.amount == 1500 and again.counter == 1
    assert pos_info(bench.pos)[proto.INFO_TORN] == 0
    _books_agree(bench, [1500])


def test_card_removed_before_pay_reaches_it(bench: Bench) -> None:
    """The card leaves before PAY arrives: it committed nothing; the re-tap drops the torn
    entry and takes a fresh payment."""
    bench.card.remove_on(proto.INS_PAY, processed=False)
    torn = bench.pos.take_payment(1500)
    assert torn.status == "torn", torn
    with bench.card.lock:
        assert bench.wallet.state[wst.S_COUNTER] == 0
    assert bench.link.wait_for_removal(10)
    bench.tap()
    fresh = bench.pos.take_payment(300)
    bench.link.disconnect()
    assert fresh.approved and not fresh.recovered and fresh.amount == 300, fresh
    _books_agree(bench, [300])


def test_non_tapcash_card_is_declined(bench: Bench, pcscd: Pcscd) -> None:
    """Another card in the second vpcd reader: SELECT of our AID is 6A82, a clean decline with
    nothing written at the POS."""
    foreign = ForeignCard()
    card, link = serve(foreign, pcscd, 1)
    try:
        bench.pos.hal.link = link
        result = bench.pos.take_payment(500)
        assert result.status == "declined" and result.reason == "no_app", result
        assert result.sw == 0x6A82
        assert len(foreign.commands) == 1 and foreign.commands[0][1] == proto.INS_SELECT
        info = pos_info(bench.pos)
        assert info[proto.INFO_TORN] == 0 and info[proto.INFO_SEQ] == 0
    finally:
        stop(card, link)
    assert card.error is None


def test_get_response_chaining(pcscd: Pcscd) -> None:
    """A card answering T=0 style (61xx + GET RESPONSE) pays as well through PcscLink;
    without GET RESPONSE handling the POS only gets the first chunk of INFO."""
    issuer = pv.issuer_from_seed(7)
    clock = SimClock(pv.T0)
    wallet, _f = pv.make_wallet(issuer, 1, seed=7, balance=2_000, clock=clock)
    card, link = serve(GetResponseCard(wallet, 64), pcscd)
    try:
        pos, _pf = pv.make_pos(issuer, 1, clock, link, seed=7)
        result = pos.take_payment(250)
        link.disconnect()
        assert result.approved, result
        assert link.exchanges > 3  # SELECT, PAY and RECEIPT, plus GET RESPONSE rounds
        raw = PcscLink(link.reader, get_response=False)
        try:
            resp = raw.transceive(proto.build_command(proto.CLA_ISO, proto.INS_SELECT, 4, 0,
                                                      proto.AID))
            assert len(resp) == 66 and resp[-2] == 0x61
        finally:
            raw.close()
    finally:
        stop(card, link)


def test_resolve_reader(pcscd: Pcscd) -> None:
    first = pcscd.readers[0]
    names = [first, "ACS ACR122U PICC Interface 00 00"]
    assert resolve_reader("0", names) == first
    assert resolve_reader(first, names) == first
    assert resolve_reader("acr122", names) == names[1]
    assert resolve_reader(None, names) == first
    with pytest.raises(ReaderError):
        resolve_reader("5", names)
    with pytest.raises(ReaderError):
        resolve_reader("00 00", names)  # both match
    assert resolve_reader(first) == first  # from pcscd's own list
    link = PcscLink("No Such Reader 00 00")
    try:
        with pytest.raises(ReaderError):
            link.connect()
    finally:
        link.close()


# ---- the command line ------------------------------------------------------------------------
def test_cli_serve_card_and_pay(pcscd: Pcscd, tmp_path: Path) -> None:
    """`tapcash pcsc serve-card` in one process, `readers` and `pay` in others, one work folder."""
    work = tmp_path / "work"
    env = env_with_path()
    reader = pcscd.readers[0]
    waiter = PcscLink(reader)
    try:
        assert waiter.wait_for_removal(CARD_WAIT_S)
    finally:
        waiter.close()
    tapcash = [str(Path(sys.executable).with_name("tapcash"))]
    server = subprocess.Popen(
        tapcash + ["pcsc", "serve-card", "--workdir", str(work), "--balance", "100.00",
                   "--port", str(pcscd.ports[0])],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
    )
    try:
        waiter = PcscLink(reader)
        try:
            assert waiter.wait_for_card(CARD_WAIT_S), "serve-card did not insert its card"
        finally:
            waiter.close()
        listed = subprocess.run(tapcash + ["pcsc", "readers", "--json"], capture_output=True,
                                timeout=TOOL_TIMEOUT_S, env=env, check=True)
        rows = {row["reader"]: row for row in json.loads(listed.stdout)}
        assert rows[reader]["card"] and rows[reader]["atr"] == ATR.hex()

        paid = subprocess.run(
            tapcash + ["pcsc", "pay", "12.50", "--reader", reader, "--workdir", str(work),
                       "--json", "--wait", "10"],
            capture_output=True, timeout=TOOL_TIMEOUT_S, env=env,
        )
        assert paid.returncode == 0, paid.stdout + paid.stderr
        result = json.loads(paid.stdout)
        assert result["status"] == "approved" and result["amount"] == 1250
        assert result["balance"] == 10000 - 1250 and result["counter"] == 1
        declined = subprocess.run(
            tapcash + ["pcsc", "pay", "90.00", "--reader", "0", "--workdir", str(work), "--wait",
                       "10"],
            capture_output=True, timeout=TOOL_TIMEOUT_S, env=env,
        )
        assert declined.returncode == 1
        assert b"declined: pin_required" in declined.stdout, declined.stdout
    finally:
        server.send_signal(signal.SIGINT)
        out, _ = server.communicate(timeout=TOOL_TIMEOUT_S)
    text = out.decode(errors="replace")
    assert server.returncode == 0, text
    assert "payment 1 signed, balance 87.50" in text, text
    assert (work / "issuer.key").stat().st_mode & 0o077 == 0
    # state is in files: the card keeps its payment for the next run
    from tapcash.host.pcsc.workdir import load_issuer, open_wallet, wallet_summary

    wallet, created = open_wallet(work, load_issuer(work))
    assert not created and wallet_summary(wallet)[1:] == (1, 10000 - 1250)


def test_cli_pay_asks_for_a_retap_and_recovers(pcscd: Pcscd, tmp_path: Path) -> None:
    """The card leaves between PAY and its answer; `pay` says so, waits for the card to come
    back and completes the same payment (recovered)."""
    from tapcash.host.pcsc.vpcd_card import VpcdCard
    from tapcash.host.pcsc.workdir import load_issuer, open_wallet, wallet_summary

    work = tmp_path / "work"
    wallet, _created = open_wallet(work, load_issuer(work), 1, 3_000)
    reader = pcscd.readers[0]
    waiter = PcscLink(reader)
    assert waiter.wait_for_removal(CARD_WAIT_S)
    events: list[str] = []
    card = VpcdCard(wallet, port=pcscd.ports[0], on_event=events.append)
    card.remove_on(proto.INS_PAY, processed=True)
    card.start()
    try:
        assert waiter.wait_for_card(CARD_WAIT_S)
        paying = subprocess.Popen(
            [str(Path(sys.executable).with_name("tapcash")), "pcsc", "pay", "10.00", "--reader",
             reader, "--workdir", str(work), "--wait", "20"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env_with_path(),
        )
        deadline = time.monotonic() + TOOL_TIMEOUT_S
        while "removed before answer" not in events and time.monotonic() < deadline:
            time.sleep(0.05)
        assert waiter.wait_for_removal(CARD_WAIT_S)
        card.insert()  # the customer taps again
        out, _ = paying.communicate(timeout=TOOL_TIMEOUT_S)
    finally:
        waiter.close()
        card.stop()
    text = out.decode(errors="replace")
    assert paying.returncode == 0, text
    assert "card removed before the payment completed" in text and "tap again" in text, text
    assert "recovered the torn payment of 10.00" in text, text
    assert wallet_summary(wallet)[1:] == (1, 2_000)

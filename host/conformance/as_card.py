"""`tapcash conformance pos --as-card`: the kit is the card, the terminal under test the reader.

A terminal's reader side can only be tested by something it reads. The kit serves virtual cards in
a vsmartcard vpcd reader (pcscd with `vsmartcard-vpcd`; `tapcash.host.pcsc.vpcd_card`): the
terminal under test reaches them through PC/SC as it would reach a tapped card. Each card is our
reference wallet (`firmware/wallet/`), personalised by the issuer the terminal trusts
(`--issuer-key`), behind a layer that records every command and answer and injects the faults of
docs/PROTOCOL.md §4.1. The operator takes one payment per tap (any amount up to the no-CVM limit;
PIN 1234 if the terminal asks); the kit changes the card between taps by itself:

    tap 1  payment         a clean payment: SELECT first, a well-formed PAY, the receipt that
                           names exactly that payment
    tap 2  tear-recovery   the card commits the PAY and leaves the field before answering, then
                           comes back: the terminal must re-send the same PAY (same challenge,
                           amount, payee, kind) and send the receipt; the card paid once
    tap 3  forged-payment  another card answers PAY with a broken signature: no RECEIPT
    tap 4  card-refusal    a card with nothing on it answers PAY 6910: no RECEIPT, no second PAY
    tap 5  untrusted-card  a card certified by an issuer the terminal does not trust: no PAY

A tap ends when the terminal resets or powers the card off after commands (or after `idle_s`
without one); the kit then takes the card out, waits until pcscd shows the reader empty, and puts
the next card in.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tapcash.firmware.core import cbor, proto

from .checks import Outcome

NO_CVM = proto.DEFAULT_LIMITS[proto.LIM_NO_CVM]
BALANCE = 50_000  # each trusted kit card holds 500.00
VPCD_BASE_PORT = 0x8C7B  # reader "Virtual PCD 00 00"; port + i is reader i
EMPTY_WAIT_S = 10.0  # how long the kit waits for pcscd to see its card gone
GAP_S = 1.0  # a card out of the field stays out this long at least


@dataclass
class Tap:
    """What one tap carried: (command, answer) in order; `lost` the index whose answer the card
    never sent (it left the field)."""

    log: list[tuple[bytes, bytes]] = field(default_factory=list)
    lost: int | None = None
    ended: str = ""

    def commands(self, ins: int) -> list[tuple[int, bytes, bytes]]:
        return [
            (i, c, r) for i, (c, r) in enumerate(self.log) if len(c) >= 4 and c[1] == ins
        ]


class _Field:
    """The CardApp VpcdCard serves: whichever kit card is in the field, with a recorder."""

    def __init__(self) -> None:
        self.card: Any = None
        self.tamper: Callable[[bytes, bytes], bytes] | None = None
        self.tap = Tap()
        self.last = 0.0
        self.changed = threading.Condition()

    def power_on(self) -> None:
        if self.card is not None:
            self.card.power_on()

    def process(self, apdu: bytes) -> bytes:
        resp = bytes(self.card.process(apdu))
        if self.tamper is not None:
            resp = self.tamper(apdu, resp)
        with self.changed:
            self.tap.log.append((bytes(apdu), resp))
            self.last = time.monotonic()
            self.changed.notify_all()
        return resp

    def event(self, what: str) -> None:
        with self.changed:
            if what in ("reset", "power off") and self.tap.log and not self.tap.ended:
                self.tap.ended = what
            elif what == "removed before answer":
                self.tap.lost = len(self.tap.log) - 1
                self.tap.ended = "torn"
            self.changed.notify_all()


def forge_signature(apdu: bytes, resp: bytes) -> bytes:
    """A PAY answer whose signature has one bit flipped (the card still committed it)."""
    if len(apdu) < 2 or apdu[1] != proto.INS_PAY or resp[-2:] != b"\x90\x00":
        return resp
    data = bytearray(resp[:-2])
    data[-1] ^= 0x01  # the last byte of the 64-byte signature, the envelope's last element
    return bytes(data) + resp[-2:]


class Kit:
    """The cards, the vpcd link and the taps. `say` tells the operator what to do."""

    def __init__(
        self,
        issuer: Any,
        *,
        host: str,
        port: int,
        say: Callable[[str], None],
        wait_s: float,
        idle_s: float,
    ) -> None:
        self.issuer = issuer
        self.host = host
        self.port = port
        self.say = say
        self.wait_s = wait_s
        self.idle_s = idle_s
        self.field = _Field()
        self.vcard: Any = None
        self.reader: str | None = None
        self.cards: dict[str, Any] = {}
        self.ids: dict[str, bytes] = {}

    # ---- cards -------------------------------------------------------------------------------
    def make_card(self, name: str, issuer: Any, balance: int) -> Any:
        from tapcash.firmware.core.hal import Hal
        from tapcash.host.issuer import CERT_DAYS, DAY_S
        from tapcash.host.pcsc.workdir import OsRng
        from tapcash.sim.device import provision as pv
        from tapcash.sim.device.flash import SimFlash

        wid = os.urandom(8)
        hal = Hal(flash=SimFlash(), clock=None, rng=OsRng())
        card = pv.provision_wallet(
            issuer, wid, hal, balance=balance, expires=int(time.time()) + CERT_DAYS * DAY_S
        )
        self.cards[name] = card
        self.ids[name] = wid
        return card

    def counter(self, name: str) -> int:
        from tapcash.firmware.wallet import state as wst

        with self.vcard.lock:
            return int(self.cards[name].state[wst.S_COUNTER])

    # ---- the field -----------------------------------------------------------------------------
    def start(self) -> None:
        from tapcash.host.pcsc.vpcd_card import VpcdCard

        self.reader = self._local_reader()
        self.vcard = VpcdCard(
            self.field, host=self.host, port=self.port, on_event=lambda w: self.field.event(w)
        )
        self.vcard.remove()  # no card until the first tap is set up
        self.vcard.start()

    def stop(self) -> None:
        if self.vcard is not None:
            self.vcard.stop()

    def _local_reader(self) -> str | None:
        """The pcscd reader name of our vpcd port, when pcscd runs here (to see it empty)."""
        if self.host not in ("127.0.0.1", "localhost", "::1"):
            return None
        try:
            from tapcash.host.pcsc.reader_link import list_readers

            vpcd = sorted(r for r in list_readers() if r.startswith("Virtual PCD"))
        except Exception:  # noqa: BLE001 - no pcscd or pyscard here: fall back to the gap
            return None
        i = self.port - VPCD_BASE_PORT
        return vpcd[i] if 0 <= i < len(vpcd) else None

    def take_out(self) -> None:
        """The card leaves the field; back only once pcscd (and so the terminal) saw it go."""
        self.vcard.remove()
        end = time.monotonic() + EMPTY_WAIT_S
        while self.vcard.connected.is_set() and time.monotonic() < end:
            time.sleep(0.05)
        if self.reader is not None:
            from tapcash.host.pcsc.reader_link import PcscLink

            try:
                with PcscLink(self.reader) as watch:
                    watch.wait_for_removal(EMPTY_WAIT_S)
            except Exception:  # noqa: BLE001 - watching is a courtesy; the gap still holds
                pass
        time.sleep(GAP_S)

    def put_in(self, name: str, tamper: Callable[[bytes, bytes], bytes] | None = None) -> None:
        self.field.card = self.cards[name]
        self.field.tamper = tamper
        self.field.tap = Tap()
        self.vcard.insert()

    def wait_tap(self) -> Tap | None:
        """The tap in progress once it ended; None when no command came within `wait_s`."""
        f = self.field
        deadline = time.monotonic() + self.wait_s
        with f.changed:
            while not f.tap.log:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                f.changed.wait(min(left, 0.5))
            while not f.tap.ended:
                idle = time.monotonic() - f.last
                if idle >= self.idle_s:
                    f.tap.ended = "idle"
                    break
                f.changed.wait(min(self.idle_s - idle, 0.5))
            return f.tap


class Bad(Exception):
    """One thing the terminal did against the spec (a line of a check's detail)."""


def _decode(data: bytes, what: str) -> Any:
    try:
        return cbor.decode(data)
    except Exception as e:  # noqa: BLE001 - any decoder complaint is the terminal's fault
        raise Bad(f"{what}: not deterministic CBOR ({e})") from None


def check_select(tap: Tap) -> None:
    """§3.2, §4: the first command of a tap is SELECT of the tapcash AID."""
    apdu = tap.log[0][0]
    head = bytes((proto.CLA_ISO, proto.INS_SELECT, 4, 0, len(proto.AID))) + proto.AID
    if apdu not in (head, head + b"\x00"):
        raise Bad(f"first command {apdu.hex()}: expected SELECT {head.hex()} (Le 00 optional)")


def check_pay_request(apdu: bytes, seen: set[bytes]) -> dict[int, Any]:
    """§3.2 PAY request: CLA 80 INS 50 P1 P2 00 00, a map with a fresh 16-byte challenge,
    amount > 0, payee bstr 8, time uint, kind 1; a PIN (4-8 ASCII digits) only above no-CVM."""
    if apdu[:4] != bytes((proto.CLA_PROP, proto.INS_PAY, 0, 0)):
        raise Bad(f"PAY header {apdu[:4].hex()}: expected 80500000")
    try:
        _cla, _ins, _p1, _p2, data, _le = proto.parse_command(apdu)
    except Exception:  # noqa: BLE001
        raise Bad("PAY: not a well-formed APDU (Lc / Le)") from None
    req = _decode(bytes(data), "PAY request")
    if not isinstance(req, dict):
        raise Bad("PAY request: not a CBOR map")
    chal = req.get(proto.REQ_CHALLENGE)
    if not isinstance(chal, bytes) or len(chal) != 16:
        raise Bad("PAY request field 0 (challenge) must be 16 bytes")
    amount = req.get(proto.REQ_AMOUNT)
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise Bad(f"PAY request field 1 (amount) must be an integer > 0, got {amount!r}")
    payee = req.get(proto.REQ_PAYEE)
    if not isinstance(payee, bytes) or len(payee) != 8:
        raise Bad("PAY request field 2 (payee) must be 8 bytes: the POS id")
    t = req.get(proto.REQ_TIME)
    if not isinstance(t, int) or isinstance(t, bool) or t < 0:
        raise Bad(f"PAY request field 3 (time) must be an unsigned integer, got {t!r}")
    if req.get(proto.REQ_KIND) != proto.PAYKIND_POS:
        raise Bad(f"PAY request field 4 (kind) must be 1, got {req.get(proto.REQ_KIND)!r}")
    pin = req.get(proto.REQ_PIN)
    if pin is not None:
        if amount <= NO_CVM:
            raise Bad(f"PAY of {amount} carries a PIN: a POS sends one only above no-CVM {NO_CVM}")
        if not isinstance(pin, bytes) or not 4 <= len(pin) <= 8 or not pin.isdigit():
            raise Bad("PAY request field 5 (PIN) must be 4-8 ASCII digits")
    if chal in seen:
        raise Bad("PAY request: a challenge of an earlier payment (it must be fresh random)")
    return req


def check_receipt(apdu: bytes, req: dict, payment: bytes, wallet: bytes) -> None:
    """§2.3: RECEIPT 80 52 00 00 with an envelope naming the payee, this wallet, the payment's
    counter, amount and hash, a journal seq >= 1 and a time."""
    if apdu[:4] != bytes((proto.CLA_PROP, proto.INS_RECEIPT, 0, 0)):
        raise Bad(f"RECEIPT header {apdu[:4].hex()}: expected 80520000")
    _c, _i, _p1, _p2, data, _le = proto.parse_command(apdu)
    try:
        _rb, body, _sig = proto.open_envelope(bytes(data))
    except proto.ApduError:
        raise Bad("RECEIPT: not a [body, sig] envelope (§1.1)") from None
    pb, pbody, _psig = proto.open_envelope(payment)
    want = {
        proto.RCPT_POS: req[proto.REQ_PAYEE],
        proto.RCPT_WALLET: wallet,
        proto.RCPT_COUNTER: pbody[proto.PAY_COUNTER],
        proto.RCPT_AMOUNT: pbody[proto.PAY_AMOUNT],
        proto.RCPT_PAYMENT_HASH: proto.body_hash(pb),
    }
    for k, v in want.items():
        if body.get(k) != v:
            raise Bad(f"receipt field {k} must be {v!r}, got {body.get(k)!r}")
    seq = body.get(proto.RCPT_SEQ)
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise Bad(f"receipt field 5 (POS journal seq) must be an integer >= 1, got {seq!r}")
    t = body.get(proto.RCPT_TIME)
    if not isinstance(t, int) or isinstance(t, bool) or t < 0:
        raise Bad(f"receipt field 6 (time) must be an unsigned integer, got {t!r}")


@dataclass
class _Result:
    outcomes: list[Outcome] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


DOCS = {
    "select": "Every tap starts with SELECT of the tapcash AID (§4).",
    "pay-request": "Every PAY is well formed: fresh 16-byte challenge, amount, payee, time, kind "
    "1, a PIN only above no-CVM (§3.2).",
    "receipt": "A clean payment ends with the RECEIPT naming exactly that payment (§2.3, §4).",
    "tear-recovery": "A tear after the card's commit: the re-tap re-sends the same PAY and the "
    "receipt; the card pays once (§4.1).",
    "forged-payment": "A payment that does not verify gets no RECEIPT (§5.2 bad_payment).",
    "card-refusal": "A PAY the card refuses (6910) gets no RECEIPT and no second PAY (§4.1).",
    "untrusted-card": "A card certified by an unknown issuer gets no PAY (§5.2 cert_invalid).",
}


def _payments(tap: Tap, seen: set[bytes], bad: list[str]) -> list[tuple[int, dict, bytes, int]]:
    """[(index, request, answer data, sw)] of the tap's PAYs, each request checked."""
    out = []
    for i, c, r in tap.commands(proto.INS_PAY):
        try:
            req = check_pay_request(c, seen)
        except Bad as e:
            bad.append(str(e))
            continue
        data, sw = proto.split_response(r)
        out.append((i, req, data, sw))
    for _i, req, _d, _sw in out:
        seen.add(req[proto.REQ_CHALLENGE])
    return out


def run_kit(kit: Kit) -> _Result:
    """Every tap in order (module docstring); outcomes in the order of DOCS."""
    res = _Result()
    status: dict[str, tuple[str, str]] = {}
    select_bad: list[str] = []
    pay_bad: list[str] = []
    seen: set[bytes] = set()
    untrusted = _stranger_issuer()
    kit.make_card("A", kit.issuer, BALANCE)
    kit.make_card("B", kit.issuer, BALANCE)
    kit.make_card("D", kit.issuer, 0)
    kit.make_card("C", untrusted, BALANCE)
    taps = 0

    def tap(name: str, what: str, tamper: Any = None, torn_pay: bool = False) -> Tap | None:
        nonlocal taps
        taps += 1
        kit.say(f"tap {taps} ({what}): take a payment of at most {NO_CVM / 100:.2f}")
        kit.put_in(name, tamper)
        if torn_pay:
            kit.vcard.remove_on(proto.INS_PAY, processed=True)
        t = kit.wait_tap()
        if t is not None:
            try:
                check_select(t)
            except Bad as e:
                select_bad.append(f"tap {taps}: {e}")
        return t

    def done(name: str, ok: bool, detail: str = "") -> None:
        status[name] = ("pass" if ok else "FAIL", detail)

    try:
        kit.start()
        # ---- tap 1: a clean payment ----------------------------------------------------------
        t1 = tap("A", "a clean payment")
        if t1 is None:
            res.outcomes.append(
                Outcome("select", "skip", DOCS["select"], f"no terminal in {kit.wait_s:g} s")
            )
            for n in list(DOCS)[1:]:
                res.outcomes.append(Outcome(n, "not run", DOCS[n]))
            return res
        pays = _payments(t1, seen, pay_bad)
        ok_pays = [p for p in pays if p[3] == proto.SW_OK]
        receipts = t1.commands(proto.INS_RECEIPT)
        if len(ok_pays) != 1:
            done("receipt", False, f"expected one PAY answered 9000, the tap had {len(ok_pays)}")
        elif len(receipts) != 1:
            done("receipt", False, f"expected one RECEIPT after the payment, got {len(receipts)}")
        else:
            i, req, data, _sw = ok_pays[0]
            j, c, r = receipts[0]
            try:
                if j < i:
                    raise Bad("the RECEIPT came before the PAY")
                check_receipt(c, req, _envelope(data), kit.ids["A"])
                if r[-2:] != b"\x90\x00":
                    raise Bad(f"the card refused the receipt ({r[-2:].hex().upper()})")
                done("receipt", True)
            except Bad as e:
                done("receipt", False, str(e))
        kit.take_out()

        # ---- tap 2: a tear right after the card's commit, then the re-tap ----------------------
        before = kit.counter("A")
        t2 = tap("A", "the card leaves during PAY, then comes back", torn_pay=True)
        if t2 is None or t2.lost is None:
            done("tear-recovery", False, "the terminal sent no PAY to the card on this tap")
        else:
            torn_req = _payments(t2, seen, pay_bad)
            kit.take_out()
            kit.say("  the card left the field after its commit; it comes back now (re-tap)")
            kit.put_in("A")
            t2b = kit.wait_tap()
            try:
                if t2b is None:
                    raise Bad("the terminal did not read the card again after the tear")
                try:
                    check_select(t2b)
                except Bad as e:
                    select_bad.append(f"tap {taps} (re-tap): {e}")
                again = [c for _i, c, _r in t2b.commands(proto.INS_PAY)]
                if not torn_req or not again:
                    raise Bad("no PAY on the re-tap: the torn payment was not recovered")
                first = _pay_fields(t2.log[t2.lost][0])
                if _pay_fields(again[0]) != first:
                    raise Bad(
                        "the re-tap's PAY is not the torn one (§4.1: same challenge, amount, "
                        "payee, time, kind; the PIN is not sent again)"
                    )
                for c in again:  # still checked for form, but its challenge is not new
                    check_pay_request(c, set())
                rc = t2b.commands(proto.INS_RECEIPT)
                pays2 = [(i, r) for i, _c, r in t2b.commands(proto.INS_PAY)]
                if not rc:
                    raise Bad("no RECEIPT for the recovered payment")
                data, sw = proto.split_response(pays2[0][1])
                if sw != proto.SW_OK:
                    raise Bad(f"the card answered the re-sent PAY {sw:04X}")
                check_receipt(rc[0][1], torn_req[0][1], _envelope(data), kit.ids["A"])
                if kit.counter("A") != before + 1:
                    raise Bad(
                        f"the card paid {kit.counter('A') - before} times over the two taps"
                    )
                done("tear-recovery", True)
            except Bad as e:
                done("tear-recovery", False, str(e))
        kit.take_out()

        # ---- tap 3: a payment whose signature does not verify ---------------------------------
        t3 = tap("B", "a card whose payment does not verify", tamper=forge_signature)
        if t3 is None or not t3.commands(proto.INS_PAY):
            done("forged-payment", False, "the terminal sent no PAY to the card on this tap")
        else:
            _payments(t3, seen, pay_bad)
            n = len(t3.commands(proto.INS_RECEIPT))
            done("forged-payment", n == 0, f"{n} RECEIPT sent for a forged payment" if n else "")
        kit.take_out()

        # ---- tap 4: the card refuses the PAY ----------------------------------------------------
        t4 = tap("D", "a card with no money on it")
        if t4 is None or not t4.commands(proto.INS_PAY):
            done("card-refusal", False, "the terminal sent no PAY to the card on this tap")
        else:
            p4 = _payments(t4, seen, pay_bad)
            n_rc = len(t4.commands(proto.INS_RECEIPT))
            if n_rc:
                done("card-refusal", False, f"{n_rc} RECEIPT sent after a refused PAY")
            elif len(p4) > 1:
                done("card-refusal", False, f"{len(p4)} PAYs in one tap after a refusal")
            else:
                done("card-refusal", True)
        kit.take_out()

        # ---- tap 5: a card from another issuer ---------------------------------------------------
        t5 = tap("C", "a card of an issuer the terminal does not trust")
        if t5 is None:
            done("untrusted-card", False, "the terminal did not read the card")
        else:
            n = len(t5.commands(proto.INS_PAY))
            done("untrusted-card", n == 0, f"{n} PAY sent to an untrusted card" if n else "")
        kit.take_out()
    finally:
        kit.stop()

    status["select"] = ("FAIL", "; ".join(select_bad)) if select_bad else ("pass", "")
    status["pay-request"] = ("FAIL", "; ".join(pay_bad)) if pay_bad else ("pass", "")
    for name, doc in DOCS.items():
        st, detail = status.get(name, ("not run", ""))
        res.outcomes.append(Outcome(name, st, doc, detail))
    res.notes.append(
        "receipt signatures are not checked here (a card holds no POS key, §3.2.1); "
        "`tapcash conformance pos --port` checks them in the terminal's EXPORT"
    )
    return res


def _envelope(data: bytes) -> bytes:
    """The two-element payment envelope of a PAY answer (a third element is a purse rule)."""
    v = cbor.decode(data)
    return cbor.encode(v[:2]) if isinstance(v, list) and len(v) == 3 else data


def _pay_fields(apdu: bytes) -> Any:
    """A PAY request as the retry must repeat it: every field but the PIN (field 5)."""
    req = cbor.decode(bytes(proto.parse_command(apdu)[4]))
    if isinstance(req, dict):
        req.pop(proto.REQ_PIN, None)
    return req


def _stranger_issuer() -> Any:
    from tapcash.host.issuer import Issuer

    return Issuer(os.urandom(32))


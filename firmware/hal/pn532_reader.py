# PN532 as a reader (ISO/IEC 14443 type A initiator, 106 kbps) and the POS's hal.Link over it.
#
#   pn532 = PN532Reader(PN532_SPI(spi, cs))
#   link = PN532ReaderLink(pn532)
#   pn532.begin(); link.setup()
#   if link.wait_card(500):              # InListPassiveTarget: an ISO-DEP card (SAK bit 0x20)
#       link.transceive(apdu)            # InDataExchange, chained beyond 262 bytes (MI bit)
#       link.release()                   # InRelease: DESELECT
#
# The chip runs ISO-DEP itself (RATS/ATS, I-blocks, chaining, WTX) once fAutomaticRATS is set.
from ..core.hal import Link, LinkError
from ..core.runtime import const, ticks_diff
from .pn532 import (
    ERR_FRAME,
    ERR_TOO_LONG,
    MAX_APDU,
    MAX_DATA,
    MAX_PARTS,
    PN532,
    STATUS_MASK,
    STATUS_MI,
    PN532Error,
    PN532Timeout,
)

_CMD_IN_DATA_EXCHANGE = const(0x40)
_CMD_IN_LIST_PASSIVE_TARGET = const(0x4A)
_CMD_IN_RELEASE = const(0x52)
_PARAM_AUTO_RATS = const(0x10)  # SetParameters fAutomaticRATS (7.2.9)


class Target:
    """A type A target found by InListPassiveTarget (106 kbps)."""

    def __init__(self, tg, atqa, sak, uid, ats):
        self.tg = tg  # logical number the chip gave it (1)
        self.atqa = atqa  # SENS_RES, 2 bytes as sent by the chip
        self.sak = sak  # SEL_RES; bit 0x20: ISO/IEC 14443-4 compliant
        self.uid = uid  # NFCID1, 4, 7 or 10 bytes
        self.ats = ats  # ATS including its length byte TL, or b"" when there is none

    @property
    def iso_dep(self):
        return bool(self.sak & 0x20)

    def __repr__(self):
        return (
            f"Target(tg={self.tg}, atqa={self.atqa.hex()}, sak={self.sak:#04x}, "
            f"uid={self.uid.hex()}, ats={self.ats.hex()})"
        )


def parse_target_a(r):
    """Target from an InListPassiveTarget response (after the command code), or None for NbTg=0.

    106 kbps type A target data: Tg, SENS_RES (2), SEL_RES, NFCIDLength, NFCID1, [ATS] where
    the ATS starts with its own length byte TL (UM0701-02 7.3.5)."""
    if len(r) < 1:
        raise PN532Error(ERR_FRAME, "short target list")
    if r[0] == 0:
        return None
    if len(r) < 6:
        raise PN532Error(ERR_FRAME, "short target data")
    n = r[5]
    end = 6 + n
    if len(r) < end or n not in (4, 7, 10):
        raise PN532Error(ERR_FRAME, "bad NFCID1")
    ats = b""
    if len(r) > end:
        tl = r[end]
        if tl < 1 or len(r) < end + tl:
            raise PN532Error(ERR_FRAME, "bad ATS")
        ats = bytes(r[end : end + tl])
    return Target(r[1], bytes(r[2:4]), r[4], bytes(r[6:end]), ats)


class PN532Reader(PN532):
    """A PN532 used as a reader (the POS)."""

    def set_passive_retries(self, retries):
        """RFConfiguration item 5 (MaxRetries): MxRtyATR 0xFF, MxRtyPSL 1, MxRtyPassiveActivation
        = retries (0xFF: wait for a card forever, 0: one try)."""
        self.rf_configuration(0x05, bytes((0xFF, 0x01, retries)))

    def list_passive_target(self, timeout_ms=None):
        """InListPassiveTarget, one target, 106 kbps type A. Returns a Target or None (no card
        within the timeout, or the chip's retries ran out)."""
        self.send(_CMD_IN_LIST_PASSIVE_TARGET, b"\x01\x00")
        try:
            r = self.receive(timeout_ms)
        except PN532Timeout:
            return None
        return parse_target_a(r)

    def _exchange_frame(self, tg, data, timeout_ms):
        r = self.call(_CMD_IN_DATA_EXCHANGE, bytes((tg,)), data, timeout_ms)
        if len(r) < 1:
            raise PN532Error(ERR_FRAME, "no status")
        st = r[0] & STATUS_MASK
        if st:
            raise PN532Error(st, "InDataExchange")
        return r

    def exchange(self, tg, data, timeout_ms=None):
        """InDataExchange: send `data` (an APDU) to target tg, return its answer (bytes).

        More than 262 bytes go in several frames with the MI bit set in Tg for all but the last;
        an answer whose status has MI set is fetched with further InDataExchange frames carrying
        no data (UM0701-02 7.3.8). Raises PN532Error(status) when the card does not answer."""
        mv = memoryview(data)
        while len(mv) > MAX_DATA:
            self._exchange_frame(tg | STATUS_MI, mv[:MAX_DATA], timeout_ms)
            mv = mv[MAX_DATA:]
        r = self._exchange_frame(tg, mv, timeout_ms)
        if not r[0] & STATUS_MI:
            return bytes(r[1:])
        out = bytearray(r[1:])
        for _ in range(MAX_PARTS - 1):
            r = self._exchange_frame(tg, b"", timeout_ms)
            if len(r) < 2 and r[0] & STATUS_MI:  # an empty part would chain for ever
                raise PN532Error(ERR_FRAME, "empty chained part")
            if len(out) + len(r) - 1 > MAX_APDU:
                raise PN532Error(ERR_TOO_LONG, "answer too long")
            out += r[1:]
            if not r[0] & STATUS_MI:
                return bytes(out)
        raise PN532Error(ERR_TOO_LONG, "answer in too many parts")

    def release(self, tg=0):
        """InRelease (0: all targets); ISO-DEP targets get a DESELECT. Returns the status byte."""
        r = self.call(_CMD_IN_RELEASE, bytes((tg,)))
        return r[0] & STATUS_MASK if len(r) else 0


class PN532ReaderLink(Link):
    """hal.Link over a PN532 in reader mode. The POS loop calls `wait_card`, runs the payment
    (`transceive` per APDU), then `release`. Any failure is a hal.LinkError and forgets the card."""

    def __init__(self, pn532, timeout_ms=1000):
        self.pn532 = pn532
        self.timeout_ms = timeout_ms
        self.target = None

    def setup(self, passive_retries=0xFF):
        """Reader configuration: automatic RATS (the chip runs ISO-DEP for InDataExchange) and
        how often InListPassiveTarget polls before it answers "no card"."""
        self.pn532.set_parameters(_PARAM_AUTO_RATS)
        self.pn532.set_passive_retries(passive_retries)

    def wait_card(self, timeout_ms):
        """The ISO-DEP card in the field, or None within timeout_ms. Cards that are not
        ISO/IEC 14443-4 (SAK bit 0x20 clear) are released and ignored."""
        self.target = None
        clock = self.pn532.t  # the driver's clock
        deadline = clock.deadline(timeout_ms)
        while True:
            left = ticks_diff(deadline, clock.ticks_ms())
            if left <= 0:
                return None
            try:
                t = self.pn532.list_passive_target(left)
            except PN532Error:
                t = None
            if t is not None:
                if t.iso_dep:
                    self.target = t
                    return t
                self._release(t.tg)
            clock.sleep_ms(5)  # the chip's retries ran out (or a card we ignore): poll again

    def transceive(self, apdu):
        t = self.target
        if t is None:
            raise LinkError("no card")
        try:
            resp = self.pn532.exchange(t.tg, apdu, self.timeout_ms)
        except PN532Error as e:
            self.target = None
            raise LinkError(f"nfc: {e.code}") from None
        if len(resp) < 2:
            self.target = None
            raise LinkError("nfc: short response")
        return resp

    def release(self):
        t = self.target
        self.target = None
        self._release(t.tg if t is not None else 0)

    def _release(self, tg):
        try:
            self.pn532.release(tg)
        except PN532Error:
            pass

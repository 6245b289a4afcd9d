# NXP PN532 NFC controller: host frames, commands, a reader-side hal.Link and a card-emulation loop.
#
# Reference: NXP UM0701-02 "PN532 User Manual" rev. 02 (firmware v1.6), section 6.2 (host
# controller communication: frames, ACK/NACK, error frame, I2C/SPI/HSU) and section 7 (commands).
#
#   pn532 = PN532(PN532_I2C(i2c))            # a transport from pn532_transport.py
#   pn532.begin()                            # reset, wake-up, SAMConfiguration(normal)
#   pn532.firmware_version()                 # (0x32, 1, 6, 7) on a PN532 v1.6
#
# Reader (POS):  link = PN532ReaderLink(pn532); link.setup(); link.wait_card(500);
#                link.transceive(apdu) -> response APDU (hal.LinkError on any failure);
#                link.release()
# Card (wallet): serve_card(pn532, app) emulates an ISO/IEC 14443-4 type A card (SAK 0x20):
#                TgInitAsTarget -> (TgGetData -> app.process -> TgSetData)* until released.
#
# Frames (UM0701-02 6.2.1), host -> chip TFI D4, chip -> host TFI D5:
#   normal     00 00 FF LEN LCS TFI PD0..PDn DCS 00        LEN = bytes of TFI+PD (<= 255)
#   extended   00 00 FF FF FF LENM LENL LCS TFI PD.. DCS 00  (<= 265 bytes of TFI+PD)
#   ACK        00 00 FF 00 FF 00      NACK  00 00 FF FF 00 00
#   error      00 00 FF 01 FF 7F 81 00   (syntax error at application level)
#   LEN + LCS == 0 (mod 256); TFI + PD0 + .. + PDn + DCS == 0 (mod 256).
# Dialogue: host sends a command, the chip answers ACK (command taken), then the response frame
# (command code + 1). A host ACK aborts the command in progress; a host NACK asks the chip to send
# its last response again. This driver resends a command whose ACK does not come (bounded), NACKs
# a response with a bad checksum (bounded), aborts with an ACK on a timeout, and never waits
# longer than the timeout it was given.
#
# Memory: one transmit and one receive buffer (275 bytes each) per chip, allocated once; the
# responses handed back are memoryviews into the receive buffer (valid until the next command)
# except the APDUs, which are copied.
from ..core.hal import Link, LinkError
from ..core.runtime import const, ticks_diff, ticks_ms
from . import sleep_ms, ticks_add

# --- frames ----------------------------------------------------------------------------------
TFI_HOST = const(0xD4)
TFI_CHIP = const(0xD5)
TFI_ERROR = const(0x7F)
ACK = b"\x00\x00\xff\x00\xff\x00"
NACK = b"\x00\x00\xff\xff\x00\x00"

MAX_BODY = const(265)  # TFI + PD0..PDn in one (extended) frame
MAX_NORMAL_BODY = const(255)
FRAME_MAX = const(275)  # 00 00 FF FF FF LM LL LCS + 265 + DCS 00
MAX_DATA = const(262)  # DataOut / DataIn of InDataExchange, TgGetData, TgSetData per frame
MAX_APDU = const(4096)  # bound on a chained (MI) message assembled here

# --- commands (UM0701-02 section 7) ------------------------------------------------------
CMD_DIAGNOSE = const(0x00)
CMD_GET_FIRMWARE_VERSION = const(0x02)
CMD_SET_PARAMETERS = const(0x12)
CMD_SAM_CONFIGURATION = const(0x14)
CMD_RF_CONFIGURATION = const(0x32)
CMD_IN_DATA_EXCHANGE = const(0x40)
CMD_IN_LIST_PASSIVE_TARGET = const(0x4A)
CMD_IN_RELEASE = const(0x52)
CMD_TG_GET_DATA = const(0x86)
CMD_TG_INIT_AS_TARGET = const(0x8C)
CMD_TG_SET_DATA = const(0x8E)
CMD_TG_SET_META_DATA = const(0x94)

# SetParameters flags (7.2.9)
PARAM_AUTO_RATS = const(0x10)  # fAutomaticRATS: InListPassiveTarget sends RATS, gets the ATS
PARAM_ISO14443_4_PICC = const(0x20)  # fISO14443-4_PICC: the chip runs ISO-DEP as a card

# TgInitAsTarget mode bits (7.3.14)
MODE_PASSIVE_ONLY = const(0x01)
MODE_PICC_ONLY = const(0x04)
ACTIVATED_PICC = const(0x08)  # bit 3 of the activated mode byte: ISO/IEC 14443-4 PICC

# Status byte of InDataExchange / TgGetData / TgSetData / InRelease (7.1, table "error codes")
STATUS_MASK = const(0x3F)
STATUS_MI = const(0x40)  # more information: the message continues in the next frame
ST_TIMEOUT = const(0x01)  # the target has not answered
ST_CRC = const(0x02)
ST_PARITY = const(0x03)
ST_PROTOCOL = const(0x0B)  # RF protocol error
ST_BAD_PARAMETER = const(0x10)
ST_INVALID_STATE = const(0x25)  # DEP protocol: invalid device state
ST_NOT_ALLOWED = const(0x26)
ST_BAD_CONTEXT = const(0x27)  # command not acceptable in context (e.g. unknown target)
ST_RELEASED = const(0x29)  # the chip as target was released by its initiator
ST_CARD_EXCHANGED = const(0x2A)
ST_CARD_GONE = const(0x2B)  # the card disappeared
# Codes this driver uses for failures of the host link itself (not chip status bytes)
ERR_NO_ACK = const(0x100)
ERR_NO_RESPONSE = const(0x101)
ERR_FRAME = const(0x102)  # repeated bad checksums / malformed response
ERR_SYNTAX = const(0x103)  # the chip sent the error frame
ERR_TOO_LONG = const(0x104)


class PN532Error(Exception):
    """A PN532 command failed. `code` is the chip's status byte (0x01..0x3F) or an ERR_* value."""

    def __init__(self, code, msg=""):
        super().__init__(code, msg)
        self.code = code


class PN532Timeout(PN532Error):
    """No ACK or no response within the timeout (the command was aborted)."""


class TargetReleased(PN532Error):
    """As a target: the reader released (DESELECT) or left; the session is over."""


def frame_length(buf, n):
    """Total bytes of the frame starting at buf[0], from its first n bytes.

    Returns the length through the postamble, 0 when more bytes are needed to tell, or -1 when
    the bytes are not a frame header or the length checksum (LCS) fails.
    """
    i = 0
    while i < n and buf[i] == 0:  # preamble and the 00 of the start code
        i += 1
    if i > 4:
        return -1
    if i >= n:
        return 0
    if i == 0 or buf[i] != 0xFF:
        return -1
    p = i + 1  # LEN
    if n < p + 2:
        return 0
    ln = buf[p]
    lcs = buf[p + 1]
    if (ln == 0x00 and lcs == 0xFF) or (ln == 0xFF and lcs == 0x00):
        return p + 3  # ACK / NACK: LEN, LCS, postamble
    if ln == 0xFF and lcs == 0xFF:  # extended frame
        if n < p + 5:
            return 0
        ln = buf[p + 2] << 8 | buf[p + 3]
        if (buf[p + 2] + buf[p + 3] + buf[p + 4]) & 0xFF or ln == 0 or ln > MAX_BODY:
            return -1
        return p + 5 + ln + 2
    if (ln + lcs) & 0xFF or ln == 0:
        return -1
    return p + 2 + ln + 2


def frame_body(buf, total):
    """(start, length) of TFI..PDn in a complete frame of `total` bytes, or None when it is not
    an information frame or its data checksum (DCS) fails. The postamble is not checked: no
    checksum covers it and it carries nothing."""
    i = 0
    while buf[i] == 0:
        i += 1
    p = i + 1
    ln = buf[p]
    if buf[p + 1] == 0xFF and ln in (0x00, 0xFF):
        if ln == 0x00:
            return None  # ACK
        start = p + 5
        ln = buf[p + 2] << 8 | buf[p + 3]
    else:
        start = p + 2
    if start + ln + 1 > total:
        return None
    s = 0
    for k in range(start, start + ln + 1):
        s += buf[k]
    if s & 0xFF:
        return None
    return start, ln


def is_ack(buf, n):
    return n >= 6 and bytes(buf[:6]) == ACK


def build_frame(out, cmd, data=b"", data2=b""):
    """Write the host frame D4 cmd data data2 into `out` (>= FRAME_MAX bytes); return its length."""
    n = 2 + len(data) + len(data2)  # TFI + command code + parameters
    if n > MAX_BODY:
        raise PN532Error(ERR_TOO_LONG, "frame too long")
    out[0] = 0
    out[1] = 0
    out[2] = 0xFF
    if n <= MAX_NORMAL_BODY:
        out[3] = n
        out[4] = -n & 0xFF
        p = 5
    else:
        out[3] = 0xFF
        out[4] = 0xFF
        out[5] = n >> 8
        out[6] = n & 0xFF
        out[7] = -(out[5] + out[6]) & 0xFF
        p = 8
    out[p] = TFI_HOST
    out[p + 1] = cmd
    q = p + 2
    out[q : q + len(data)] = data
    q += len(data)
    out[q : q + len(data2)] = data2
    q += len(data2)
    s = 0
    for k in range(p, q):
        s += out[k]
    out[q] = -s & 0xFF
    out[q + 1] = 0
    return q + 2


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


class PN532:
    """One PN532 behind a transport (pn532_transport.PN532_I2C / _SPI / _UART).

    timeout_ms: default wait for a response; ack_timeout_ms: wait for the ACK of a command;
    retries: command resends without ACK and NACKs for bad responses, each bounded by this.
    """

    def __init__(self, transport, timeout_ms=1000, ack_timeout_ms=100, retries=2):
        self.t = transport
        self.timeout_ms = timeout_ms
        self.ack_timeout_ms = ack_timeout_ms
        self.retries = retries
        self._tx = bytearray(FRAME_MAX)
        self._rx = bytearray(FRAME_MAX)
        self._rxv = memoryview(self._rx)
        self.pending = -1  # command code whose response is still due, or -1
        # counters, for tests and diagnostics
        self.resends = 0
        self.nacks = 0
        self.aborts = 0

    # ---- link level -------------------------------------------------------------------------
    def begin(self):
        """Hardware reset (if wired), wake-up, SAMConfiguration normal mode: the chip is ready."""
        self.t.reset()
        self.t.wakeup()
        self.pending = -1
        self.sam_configuration()

    def send(self, cmd, data=b"", data2=b""):
        """Send a command and wait for its ACK; resends (bounded) when the ACK does not come."""
        n = build_frame(self._tx, cmd, data, data2)
        frame = memoryview(self._tx)[:n]
        rx = self._rxv
        self.t.discard()  # HSU: late bytes of an aborted exchange are not our answer
        for attempt in range(self.retries + 1):
            if attempt:
                self.resends += 1
            self.t.write(frame)
            deadline = ticks_add(ticks_ms(), self.ack_timeout_ms)
            try:
                got = self.t.read_frame(rx, deadline)
            except PN532Timeout:
                self._abort()
                continue
            if got == 6 and is_ack(rx, got):
                self.pending = cmd
                return
            # not an ACK (noise, a stale answer): abort whatever runs and send again
            self._abort()
        raise PN532Timeout(ERR_NO_ACK, "no ACK")

    def ready(self):
        """True when the chip has a frame for us (non-blocking)."""
        return self.t.ready()

    def receive(self, timeout_ms=None):
        """The response to the pending command: its parameters (a memoryview valid until the
        next command). Raises PN532Timeout (after aborting the command) or PN532Error."""
        cmd = self.pending
        if cmd < 0:
            raise PN532Error(ERR_NO_RESPONSE, "no command pending")
        deadline = ticks_add(ticks_ms(), self.timeout_ms if timeout_ms is None else timeout_ms)
        rx = self._rxv
        bad = 0
        while True:
            try:
                got = self.t.read_frame(rx, deadline)
            except PN532Timeout:
                self._abort()
                raise PN532Timeout(ERR_NO_RESPONSE, "no response") from None
            body = frame_body(rx, got) if got > 0 else None
            if body is None:
                if got == 6 and is_ack(rx, got):
                    continue  # a repeated ACK: the response follows
                bad += 1
                if bad > self.retries:
                    self._abort()
                    raise PN532Error(ERR_FRAME, "bad response frames")
                self.nacks += 1
                self.t.write(NACK)  # send the last response again
                continue
            start, ln = body
            tfi = rx[start]
            if tfi == TFI_ERROR and ln == 1:
                self.pending = -1
                raise PN532Error(ERR_SYNTAX, "error frame")
            if tfi != TFI_CHIP or ln < 2 or rx[start + 1] != cmd + 1:
                self._abort()
                raise PN532Error(ERR_FRAME, "unexpected response")
            self.pending = -1
            return rx[start + 2 : start + ln]

    def call(self, cmd, data=b"", data2=b"", timeout_ms=None):
        self.send(cmd, data, data2)
        return self.receive(timeout_ms)

    def abort(self):
        """Abort the pending command (host ACK); safe to call when nothing is pending."""
        if self.pending >= 0:
            self._abort()

    def _abort(self):
        self.aborts += 1
        self.pending = -1
        self.t.write(ACK)
        self.t.discard()

    # ---- general commands --------------------------------------------------------------------
    def firmware_version(self):
        """(IC, Ver, Rev, Support): (0x32, 1, 6, 7) for a PN532 v1.6 (7.2.2)."""
        r = self.call(CMD_GET_FIRMWARE_VERSION)
        if len(r) != 4:
            raise PN532Error(ERR_FRAME, "bad firmware version")
        return r[0], r[1], r[2], r[3]

    def sam_configuration(self, mode=1, timeout=0x14, irq=1):
        """SAMConfiguration (7.2.10): mode 1 = normal (no SAM); leaves LowVbat after power-up."""
        self.call(CMD_SAM_CONFIGURATION, bytes((mode, timeout, irq)))

    def set_parameters(self, flags):
        self.call(CMD_SET_PARAMETERS, bytes((flags,)))

    def rf_configuration(self, item, data):
        self.call(CMD_RF_CONFIGURATION, bytes((item,)), data)

    def set_passive_retries(self, retries):
        """RFConfiguration item 5 (MaxRetries): MxRtyATR 0xFF, MxRtyPSL 1, MxRtyPassiveActivation
        = retries (0xFF: wait for a card forever, 0: one try)."""
        self.rf_configuration(0x05, bytes((0xFF, 0x01, retries)))

    # ---- reader (initiator) -----------------------------------------------------------------
    def list_passive_target(self, timeout_ms=None):
        """InListPassiveTarget, one target, 106 kbps type A. Returns a Target or None (no card
        within the timeout, or the chip's retries ran out)."""
        self.send(CMD_IN_LIST_PASSIVE_TARGET, b"\x01\x00")
        try:
            r = self.receive(timeout_ms)
        except PN532Timeout:
            return None
        return parse_target_a(r)

    def _exchange_frame(self, tg, data, timeout_ms):
        r = self.call(CMD_IN_DATA_EXCHANGE, bytes((tg,)), data, timeout_ms)
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
        while True:
            r = self._exchange_frame(tg, b"", timeout_ms)
            if len(out) + len(r) - 1 > MAX_APDU:
                raise PN532Error(ERR_TOO_LONG, "answer too long")
            out += r[1:]
            if not r[0] & STATUS_MI:
                return bytes(out)

    def release(self, tg=0):
        """InRelease (0: all targets); ISO-DEP targets get a DESELECT. Returns the status byte."""
        r = self.call(CMD_IN_RELEASE, bytes((tg,)))
        return r[0] & STATUS_MASK if len(r) else 0

    # ---- card emulation (target) ------------------------------------------------------------
    def listen_as_target(self, nfcid, historical=b"", sens_res=b"\x04\x00", sel_res=0x20):
        """Send TgInitAsTarget for ISO/IEC 14443-4 PICC emulation and return once it is ACKed;
        the chip answers when a reader has activated it (see `activated`). `nfcid` is 3 bytes:
        the chip fixes the first UID byte to 0x08 (random UID). Run set_parameters(PARAM_AUTO_RATS |
        PARAM_ISO14443_4_PICC) once before (setup_target)."""
        if len(nfcid) != 3 or len(historical) > 48:
            raise ValueError("nfcid is 3 bytes, historical bytes at most 48")
        p = bytearray(37 + len(historical))
        p[0] = MODE_PASSIVE_ONLY | MODE_PICC_ONLY
        p[1:3] = sens_res  # MifareParams: SENS_RES (2), NFCID1t (3), SEL_RES
        p[3:6] = nfcid
        p[6] = sel_res
        # p[7:25] FeliCaParams, p[25:35] NFCID3t, p[35] LEN Gt: all zero
        p[36] = len(historical)
        p[37 : 37 + len(historical)] = historical
        self.send(CMD_TG_INIT_AS_TARGET, p)

    def activated(self, timeout_ms=0):
        """After listen_as_target: None while no reader has activated us, else (mode byte,
        initiator command). With timeout_ms=0 it only looks (non-blocking)."""
        if self.pending != CMD_TG_INIT_AS_TARGET:
            raise PN532Error(ERR_NO_RESPONSE, "not listening")
        if not timeout_ms and not self.t.ready():
            return None
        r = self.receive(timeout_ms or self.timeout_ms)
        if len(r) < 1:
            raise PN532Error(ERR_FRAME, "no mode")
        return r[0], bytes(r[1:])

    def get_data(self, timeout_ms=None):
        """TgGetData: the next command APDU from the reader (bytes), chained frames (MI) joined.
        Raises TargetReleased when the reader released us or left the field."""
        out = None
        while True:
            r = self.call(CMD_TG_GET_DATA, timeout_ms=timeout_ms)
            if len(r) < 1:
                raise PN532Error(ERR_FRAME, "no status")
            st = r[0] & STATUS_MASK
            if st == ST_RELEASED:
                raise TargetReleased(st, "released")
            if st:
                raise PN532Error(st, "TgGetData")
            if out is None:
                if not r[0] & STATUS_MI:
                    return bytes(r[1:])
                out = bytearray(r[1:])
            else:
                if len(out) + len(r) - 1 > MAX_APDU:
                    raise PN532Error(ERR_TOO_LONG, "command too long")
                out += r[1:]
                if not r[0] & STATUS_MI:
                    return bytes(out)

    def set_data(self, data, timeout_ms=None):
        """TgSetData: send our answer; beyond 262 bytes the leading parts go by TgSetMetaData
        (sent with the MI bit). Raises TargetReleased / PN532Error on a bad status."""
        mv = memoryview(data)
        while True:
            last = len(mv) <= MAX_DATA
            cmd = CMD_TG_SET_DATA if last else CMD_TG_SET_META_DATA
            r = self.call(cmd, mv[:MAX_DATA], timeout_ms=timeout_ms)
            st = r[0] & STATUS_MASK if len(r) else ERR_FRAME
            if st == ST_RELEASED:
                raise TargetReleased(st, "released")
            if st:
                raise PN532Error(st, "TgSetData")
            if last:
                return
            mv = mv[MAX_DATA:]


# --- the reader side as a hal.Link ---------------------------------------------------------------
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
        self.pn532.set_parameters(PARAM_AUTO_RATS)
        self.pn532.set_passive_retries(passive_retries)

    def wait_card(self, timeout_ms):
        """The ISO-DEP card in the field, or None within timeout_ms. Cards that are not
        ISO/IEC 14443-4 (SAK bit 0x20 clear) are released and ignored."""
        self.target = None
        deadline = ticks_add(ticks_ms(), timeout_ms)
        while True:
            left = ticks_diff(deadline, ticks_ms())
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
            sleep_ms(5)  # the chip's retries ran out (or a card we ignore): poll again

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


# --- the card side -------------------------------------------------------------------------
def setup_target(pn532):
    """Let the chip run ISO-DEP as a card (RATS/ATS, blocks, chaining) and still answer RATS."""
    pn532.set_parameters(PARAM_AUTO_RATS | PARAM_ISO14443_4_PICC)


def serve_session(pn532, app, timeout_ms=30000):
    """One activated session: TgGetData -> app.process -> TgSetData until the reader releases
    us, leaves, or is silent for timeout_ms. Returns the number of APDUs answered."""
    power_on = getattr(app, "power_on", None)
    if power_on is not None:
        power_on()  # a tap is a new session: nothing selected, PIN not verified
    n = 0
    while True:
        try:
            cmd = pn532.get_data(timeout_ms)
        except PN532Error:
            return n  # released, field gone, timeout (the command was aborted)
        resp = app.process(cmd)
        try:
            pn532.set_data(resp)
        except PN532Error:
            return n
        n += 1


def serve_card(pn532, app, stop=None, idle=None, nfcid=None, rng=None, historical=b"",
               session_timeout_ms=30000, poll_ms=5):  # fmt: skip
    """Card emulation loop for a wallet. Listens (TgInitAsTarget), serves each activation with
    serve_session, listens again. `idle()` runs while no reader is there (e.g. the serial sync
    pump); `stop()` ends the loop. The 3 NFCID bytes are `nfcid`, or fresh per tap from
    `rng(3)` (random UIDs: a tap cannot be linked to the last one by its UID), or 12 34 56.
    Returns the number of sessions served."""
    setup_target(pn532)
    sessions = 0
    while stop is None or not stop():
        uid = nfcid if nfcid is not None else (rng(3) if rng is not None else b"\x12\x34\x56")
        pn532.listen_as_target(uid, historical)
        got = None
        while got is None:
            if stop is not None and stop():
                pn532.abort()
                return sessions
            try:
                got = pn532.activated()
            except PN532Error:
                break  # aborted or garbled: listen again
            if got is None:
                if idle is not None:
                    idle()
                sleep_ms(poll_ms)
        if got is None:
            continue
        sessions += 1
        serve_session(pn532, app, session_timeout_ms)
    return sessions

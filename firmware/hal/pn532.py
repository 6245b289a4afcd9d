# NXP PN532 NFC controller: host frames and the command/response dialogue shared by both roles.
#
# Reference: NXP UM0701-02 "PN532 User Manual" rev. 02 (firmware v1.6), section 6.2 (host
# controller communication: frames, ACK/NACK, error frame, I2C/SPI/HSU) and section 7 (commands).
#
#   from .pn532_transport import PN532_I2C
#   from .pn532_reader import PN532Reader        # the POS: reader, PN532ReaderLink (hal.Link)
#   from .pn532_card import PN532Card, serve_card  # the wallet: ISO/IEC 14443-4 card emulation
#   pn532 = PN532Reader(PN532_I2C(i2c))
#   pn532.begin()                            # reset, wake-up, SAMConfiguration(normal)
#   pn532.firmware_version()                 # (0x32, 1, 6, 7) on a PN532 v1.6
#
# The roles live in their own modules so a board imports only its half (heap: bytecode loaded
# from .mpy sits in RAM unless frozen, see firmware/manifest.py).
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
# a response with a bad checksum (bounded), tolerates a few repeated ACKs (bounded), aborts with
# an ACK on a timeout, and never waits longer than the timeout it was given.
#
# Contract (tests/firmware/test_pn532_robust.py, fuzzed in tests/firmware/test_pn532_fuzz.py):
# whatever the chip or the line sends, every call returns or raises PN532Error within its timeout on
# the transport's clock (plus at most one frame in flight), with a bounded number of bus reads:
# every loop here either waits (and then looks at the deadline) or counts towards a fixed bound.
#
# Memory: one transmit and one receive buffer (277 bytes each) per chip, allocated once; the
# responses handed back are memoryviews into the receive buffer (valid until the next command)
# except the APDUs, which are copied.
from ..core.runtime import const

# --- frames ----------------------------------------------------------------------------------
_TFI_HOST = const(0xD4)
_TFI_CHIP = const(0xD5)
_TFI_ERROR = const(0x7F)
ACK = b"\x00\x00\xff\x00\xff\x00"
NACK = b"\x00\x00\xff\xff\x00\x00"

MAX_BODY = const(265)  # TFI + PD0..PDn in one (extended) frame
_MAX_NORMAL_BODY = const(255)
_MAX_ZEROS = const(4)  # leading zeros frame_length accepts: 00 00 FF, or up to 00 00 00 00 FF
FRAME_MAX = const(277)  # 00 00 00 00 FF FF FF LM LL LCS + 265 + DCS 00: the longest frame taken
MAX_DATA = const(262)  # DataOut / DataIn of InDataExchange, TgGetData, TgSetData per frame
MAX_APDU = const(4096)  # bound on a chained (MI) message assembled here
# and on its parts: 4096 bytes in parts of 16 (ISO-DEP's smallest frame) - a peer answering
# in 1-byte parts would otherwise hold the other side for 4096 exchanges
MAX_PARTS = const(257)

# --- commands (UM0701-02 section 7) ------------------------------------------------------
_CMD_DIAGNOSE = const(0x00)
_CMD_GET_FIRMWARE_VERSION = const(0x02)
_CMD_SET_PARAMETERS = const(0x12)
_CMD_SAM_CONFIGURATION = const(0x14)
_CMD_RF_CONFIGURATION = const(0x32)

# Status byte of InDataExchange / TgGetData / TgSetData / InRelease (7.1, error codes): bits 0-5
# the error (0 = fine), bit 6 MI (the message continues in the next frame), bit 7 NAD. Errors
# seen here: 01 target not answering, 02 CRC, 03 parity, 0B RF protocol, 10 bad parameter,
# 25 invalid DEP state, 26 not allowed, 27 not acceptable in context (e.g. no such target),
# 29 target released by its initiator, 2A card exchanged, 2B card gone.
STATUS_MASK = const(0x3F)
STATUS_MI = const(0x40)
ST_TIMEOUT = const(0x01)
ST_BAD_CONTEXT = const(0x27)
ST_RELEASED = const(0x29)
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


def frame_length(buf, n):
    """Total bytes of the frame starting at buf[0], from its first n bytes.

    Returns the length through the postamble, 0 when more bytes are needed to tell, or -1 when
    the bytes are not a frame header or the length checksum (LCS) fails.
    """
    i = 0
    while i < n and buf[i] == 0:  # preamble and the 00 of the start code
        i += 1
    if i > _MAX_ZEROS:
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
    if n <= _MAX_NORMAL_BODY:
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
    out[p] = _TFI_HOST
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
            deadline = self.t.deadline(self.ack_timeout_ms)
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
        t = self.t
        deadline = t.deadline(self.timeout_ms if timeout_ms is None else timeout_ms)
        rx = self._rxv
        bad = 0
        acks = 0
        while True:
            try:
                got = t.read_frame(rx, deadline)
            except PN532Timeout:
                self._abort()
                raise PN532Timeout(ERR_NO_RESPONSE, "no response") from None
            body = frame_body(rx, got) if got > 0 else None
            if body is None:
                if got == 6 and is_ack(rx, got):
                    acks += 1  # a repeated ACK: the response follows, but not after many
                    if acks > self.retries + 1:
                        self._abort()
                        raise PN532Error(ERR_FRAME, "repeated ACKs")
                else:
                    bad += 1
                    if bad > self.retries:
                        self._abort()
                        raise PN532Error(ERR_FRAME, "bad response frames")
                    self.nacks += 1
                    t.write(NACK)  # send the last response again
                if t.expired(deadline):  # a chip that keeps talking never makes us wait
                    self._abort()
                    raise PN532Timeout(ERR_NO_RESPONSE, "no response")
                continue
            start, ln = body
            tfi = rx[start]
            if tfi == _TFI_ERROR and ln == 1:
                self.pending = -1
                raise PN532Error(ERR_SYNTAX, "error frame")
            if tfi != _TFI_CHIP or ln < 2 or rx[start + 1] != cmd + 1:
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
        r = self.call(_CMD_GET_FIRMWARE_VERSION)
        if len(r) != 4:
            raise PN532Error(ERR_FRAME, "bad firmware version")
        return r[0], r[1], r[2], r[3]

    def sam_configuration(self, mode=1, timeout=0x14, irq=1):
        """SAMConfiguration (7.2.10): mode 1 = normal (no SAM); leaves LowVbat after power-up."""
        self.call(_CMD_SAM_CONFIGURATION, bytes((mode, timeout, irq)))

    def set_parameters(self, flags):
        self.call(_CMD_SET_PARAMETERS, bytes((flags,)))

    def rf_configuration(self, item, data):
        self.call(_CMD_RF_CONFIGURATION, bytes((item,)), data)

# Serial framing between the sync tool and a device (docs/PROTOCOL.md section 3.3).
#
# One frame on the wire:
#
#     0x54 0x43  magic "TC"        lets a receiver tell frames from REPL / log text on the same UART
#     0x01       version           a header with another version is treated as noise
#     LL LL      payload length    big endian, 0 .. MAX_PAYLOAD, checked before anything is buffered
#     ...        payload           deterministic CBOR: request {0: id, 1: command APDU},
#                                  answer {0: id, 2: response APDU}
#     CC CC CC CC  CRC-32 (ISO-HDLC, as zlib/binascii) of version + length + payload, big endian
#
# CRC-32 rather than CRC-16: binascii.crc32 is in C on MicroPython (ESP32 included), so it is
# also the faster one on a board, and a random candidate (REPL text that happens to contain
# the magic and a plausible header) is accepted with odds of 2**-32 instead of 2**-16.
#
# The receiver (`Decoder`) scans for the magic, so it resynchronises after any garbage; a
# candidate whose CRC fails is dropped and the scan restarts one byte after its magic, so a real
# frame hidden inside a bogus candidate is still found. A device answers every good request
# frame with exactly one response frame carrying the same request id; a bad frame gets no
# answer: the host times out and resends. Requests and answers use different keys for the APDU,
# so a line that echoes (a board sitting at the REPL prompt) never answers a request with
# itself. The server remembers its last answer, so a resent request (same id, same APDU) gets
# the same bytes back without running the APDU twice.
#
# Everything here is pure (bytes in, bytes out) except `serve`, the loop for boards.
from . import cbor
from .runtime import const, ticks_diff, ticks_ms

try:
    from binascii import crc32 as _crc32
except ImportError:  # a port built without it: the pure version below
    _crc32 = None

MAGIC = b"TC"
VERSION = const(1)
HEADER_LEN = const(5)  # magic, version, length
CRC_LEN = const(4)
OVERHEAD = const(9)  # header + CRC
MAX_FRAME = const(4096)  # bytes on the wire, the largest frame either side sends or accepts
MAX_PAYLOAD = const(4087)  # MAX_FRAME - OVERHEAD

F_ID = const(0)  # payload key: request id (uint, < 2**32), repeated in the answer
F_COMMAND = const(1)  # payload key of a request: the command APDU
F_RESPONSE = const(2)  # payload key of an answer: the response APDU

ID_MAX = const(0xFFFFFFFF)

# Status words the frame server itself answers with (same meaning as in proto.py; not imported
# from there so the framing does not pull in Ed25519).
_SW_WRONG_LENGTH = b"\x67\x00"  # the response APDU would not fit a frame: ask for less
_SW_WRONG_DATA = b"\x6a\x80"  # CRC fine but the payload is not a request map
_SW_INTERNAL = b"\x6f\x00"  # the app raised instead of answering


class FrameError(ValueError):
    """A payload is too large to frame."""


_NIBBLE = (
    0x00000000, 0x1DB71064, 0x3B6E20C8, 0x26D930AC, 0x76DC4190, 0x6B6B51F4, 0x4DB26158, 0x5005713C,
    0xEDB88320, 0xF00F9344, 0xD6D6A3E8, 0xCB61B38C, 0x9B64C2B0, 0x86D3D2D4, 0xA00AE278, 0xBDBDF21C,
)  # fmt: skip


def crc32_py(data, crc=0):
    """CRC-32/ISO-HDLC in Python, four bits at a time (fallback; slow on a board)."""
    crc ^= 0xFFFFFFFF
    for b in data:
        crc ^= b
        crc = (crc >> 4) ^ _NIBBLE[crc & 15]
        crc = (crc >> 4) ^ _NIBBLE[crc & 15]
    return crc ^ 0xFFFFFFFF


def crc32(data, crc=0):
    """CRC-32/ISO-HDLC, incremental like binascii.crc32: check("123456789") == 0xCBF43926."""
    if _crc32 is None:
        return crc32_py(data, crc)
    return _crc32(data, crc) & 0xFFFFFFFF


def _frame(n):
    """A frame buffer for an n-byte payload with its header filled in (payload and CRC not)."""
    if n > MAX_PAYLOAD:
        raise FrameError("payload too long")
    out = bytearray(n + OVERHEAD)
    out[0] = MAGIC[0]
    out[1] = MAGIC[1]
    out[2] = VERSION
    out[3] = n >> 8
    out[4] = n & 0xFF
    return out


def _seal(out):
    n = len(out) - OVERHEAD
    crc = crc32(memoryview(out)[2 : HEADER_LEN + n])
    out[HEADER_LEN + n :] = crc.to_bytes(CRC_LEN, "big")
    return out


def encode(payload):
    """Wrap payload bytes in a frame (a bytearray). FrameError when longer than MAX_PAYLOAD."""
    out = _frame(len(payload))
    out[HEADER_LEN : HEADER_LEN + len(payload)] = payload
    return _seal(out)


def _message(key, req_id, apdu):
    # The payload {0: req_id, key: apdu} in deterministic CBOR, written straight into the frame
    # so the APDU (up to 4 KB on a device) is copied once. Same bytes as cbor.encode of the map.
    if not isinstance(req_id, int) or isinstance(req_id, bool) or not 0 <= req_id <= ID_MAX:
        raise FrameError("request id")
    head = b"\xa2\x00" + cbor.encode(req_id) + bytes((key,))
    n = len(apdu)
    if n < 24:
        head += bytes((0x40 | n,))
    elif n < 0x100:
        head += bytes((0x58, n))
    else:
        head += bytes((0x59, n >> 8, n & 0xFF))  # n <= MAX_PAYLOAD < 2**16
    out = _frame(len(head) + n)
    start = HEADER_LEN + len(head)
    out[HEADER_LEN:start] = head
    out[start : start + n] = apdu
    return _seal(out)


def encode_request(req_id, apdu):
    """Frame the request payload {0: req_id, 1: command APDU}."""
    return _message(F_COMMAND, req_id, apdu)


def encode_answer(req_id, apdu):
    """Frame the answer payload {0: req_id, 2: response APDU}."""
    return _message(F_RESPONSE, req_id, apdu)


def _decode(payload, key):
    try:
        m = cbor.decode(payload)
    except ValueError:
        return None
    if not isinstance(m, dict) or key not in m:
        return None
    rid = m.get(F_ID)
    apdu = m[key]
    if not isinstance(rid, int) or isinstance(rid, bool) or rid < 0 or rid > ID_MAX:
        return None
    if not isinstance(apdu, bytes):
        return None
    return rid, apdu


def decode_request(payload):
    """(req_id, command APDU) from a frame payload, or None when it is not a request."""
    return _decode(payload, F_COMMAND)


def decode_answer(payload):
    """(req_id, response APDU) from a frame payload, or None when it is not an answer."""
    return _decode(payload, F_RESPONSE)


class Decoder:
    """Incremental frame receiver: feed it any bytes, get back the payloads of good frames.

    Between calls it holds at most one incomplete candidate frame (< MAX_FRAME bytes); bytes
    already consumed are dropped once they are at least half of the buffer, so a `feed` of c
    bytes needs at most about 2 * (MAX_FRAME + c) of buffer. Feed small chunks on a device.
    Counters: `frames` good frames, `bad_crc` candidates dropped for their CRC, `noise` bytes
    skipped while looking for a magic.
    """

    def __init__(self, max_payload=MAX_PAYLOAD):
        self.max_payload = max_payload
        self._buf = bytearray()
        self._pos = 0  # bytes of _buf already consumed
        self.frames = 0
        self.bad_crc = 0
        self.noise = 0

    def reset(self):
        """Forget any partial frame (the host does this before resending a request)."""
        self.noise += len(self._buf) - self._pos
        self._buf = bytearray()
        self._pos = 0

    def pending(self):
        """Bytes held: a partial frame or a lone trailing 'T'."""
        return len(self._buf) - self._pos

    def feed(self, data):
        if data:
            self._buf += data
        return self._scan()

    def idle(self):
        """The line went quiet with a candidate still incomplete: it was noise that looked like a
        header (a long bogus length would otherwise hold back the real frames behind it).
        Drop that candidate's magic and rescan what follows. Returns any payloads found."""
        buf = self._buf
        p = self._pos
        if len(buf) - p >= 2 and buf[p] == MAGIC[0] and buf[p + 1] == MAGIC[1]:
            self._pos += 1
            self.noise += 1
            return self._scan()
        return []

    def _scan(self):
        out = []
        buf = self._buf
        while True:
            p = self._pos
            n = len(buf)
            i = buf.find(MAGIC, p)
            if i < 0:
                # keep a trailing 'T': it may be the first half of a magic
                keep = 1 if n > p and buf[n - 1] == MAGIC[0] else 0
                self.noise += n - keep - p
                self._pos = n - keep
                break
            self.noise += i - p
            self._pos = p = i
            if n - p < HEADER_LEN:
                break
            length = buf[p + 3] << 8 | buf[p + 4]
            if buf[p + 2] != VERSION or length > self.max_payload:
                self._pos += 1  # not a header we accept: look for the next magic
                self.noise += 1
                continue
            end = p + HEADER_LEN + length + CRC_LEN
            if n < end:
                break  # wait for the rest
            mv = memoryview(buf)
            if crc32(mv[p + 2 : end - CRC_LEN]) == int.from_bytes(mv[end - CRC_LEN : end], "big"):
                out.append(bytes(mv[p + HEADER_LEN : end - CRC_LEN]))
                self.frames += 1
                self._pos = end
            else:
                self.bad_crc += 1
                self._pos += 1  # a real frame may start inside the bogus candidate
                self.noise += 1
            mv = None
        self._compact()
        return out

    def _compact(self):
        p = self._pos
        if p and p == len(self._buf):
            self._buf = bytearray()
            self._pos = 0
        elif p and p * 2 >= len(self._buf):
            self._buf = self._buf[p:]
            self._pos = 0


class FrameServer:
    """Device side: turns request frames into response frames using `app.process(apdu)`.

    `feed(bytes)` returns the list of response frames to write, in order. Answer frames (our own
    output echoed back) are ignored; other payloads that are not a request get a 6A80 answer
    (id 0 when no id could be read); a response
    APDU too long for a frame is replaced by 6700 (the host asks for fewer records); an app that
    raises gets 6F00, except for the exception classes in `passthrough` (the simulator's power cut).
    """

    def __init__(self, app, max_payload=MAX_PAYLOAD, passthrough=()):
        self.app = app
        self.decoder = Decoder(max_payload)
        self.passthrough = tuple(passthrough)
        self.requests = 0
        self.replays = 0
        self._last_id = -1
        self._last_apdu = None
        self._last_frame = None

    def feed(self, data):
        return self._all(self.decoder.feed(data))

    def idle(self):
        return self._all(self.decoder.idle())

    def _all(self, payloads):
        out = []
        for p in payloads:
            f = self.handle(p)
            if f is not None:
                out.append(f)
        return out

    def handle(self, payload):
        """One good frame's payload in, its answer frame out (None: nothing to answer)."""
        msg = decode_request(payload)
        if msg is None:
            if decode_answer(payload) is not None:
                return None  # an answer, not a request: our own output echoed by the line
            return encode_answer(0, _SW_WRONG_DATA)
        rid, apdu = msg
        if rid == self._last_id and apdu == self._last_apdu:
            self.replays += 1
            return self._last_frame
        self.requests += 1
        try:
            resp = self.app.process(apdu)
        except Exception as e:  # a board must keep serving
            if self.passthrough and isinstance(e, self.passthrough):
                raise
            resp = _SW_INTERNAL
        try:
            frame = encode_answer(rid, resp)
        except FrameError:
            frame = encode_answer(rid, _SW_WRONG_LENGTH)
        self._last_id = rid
        self._last_apdu = apdu
        self._last_frame = frame
        return frame


def serve(port, app, chunk=256, idle_ms=200, stop=None):
    """Serve frames on a serial object until `stop()` returns true (forever by default).

    `port` needs `read(n)` returning up to n bytes, or None / b"" when nothing arrived within
    its own timeout (machine.UART with a timeout, or a HAL serial in the simulator), and
    `write(bytes)`. After `idle_ms` without a byte, an incomplete candidate is given up.
    When serving on the REPL's UART, disable Ctrl-C first (micropython.kbd_intr(-1)):
    frame bytes may contain 0x03.
    """
    server = FrameServer(app)
    last = ticks_ms()
    while stop is None or not stop():
        data = port.read(chunk)
        if data:
            last = ticks_ms()
            frames = server.feed(data)
        elif server.decoder.pending() and ticks_diff(ticks_ms(), last) >= idle_ms:
            last = ticks_ms()
            frames = server.idle()
        else:
            frames = ()
        for f in frames:
            port.write(f)
    return server

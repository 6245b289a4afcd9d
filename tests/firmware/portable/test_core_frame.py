# Portable tests for firmware/core/frame.py: run by pytest on CPython and, unchanged, inside
# the MicroPython VM (plain asserts, no pytest features, no CPython-only modules).
try:
    from tapcash.firmware.core import frame
except ImportError:
    from firmware.core import frame

# Known-answer frames, computed once with zlib.crc32 on CPython: (payload hex, frame hex).
VECTORS = [
    ("", "5443010000" + "fe83b325"),
    ("a0", "5443010001a0" + "56352ad0"),
]


def _vector_frames():
    out = []
    for payload_hex, frame_hex in VECTORS:
        out.append((bytes.fromhex(payload_hex), bytes.fromhex(frame_hex)))
    return out


def _drain(dec):
    out = []
    while True:
        before = dec.pending()
        out += dec.idle()
        if dec.pending() == before:
            return out


def test_crc32_check_values():
    assert frame.crc32(b"123456789") == 0xCBF43926
    assert frame.crc32_py(b"123456789") == 0xCBF43926
    assert frame.crc32(b"") == 0
    assert frame.crc32(b"56789", frame.crc32(b"1234")) == 0xCBF43926
    assert frame.crc32_py(b"56789", frame.crc32_py(b"1234")) == 0xCBF43926
    data = bytes(range(256)) * 3
    assert frame.crc32(data) == frame.crc32_py(data)


def test_known_frames():
    for payload, wire in _vector_frames():
        assert frame.encode(payload) == wire
        assert frame.Decoder().feed(wire) == [payload]


def test_message_round_trip():
    f = frame.encode_request(0xFFFFFFFF, b"\x80\xca\x00\x00")
    (payload,) = frame.Decoder().feed(f)
    assert frame.decode_request(payload) == (0xFFFFFFFF, b"\x80\xca\x00\x00")
    assert frame.decode_answer(payload) is None
    (payload,) = frame.Decoder().feed(frame.encode_answer(7, b"\x90\x00"))
    assert frame.decode_answer(payload) == (7, b"\x90\x00")
    assert frame.decode_request(payload) is None
    assert frame.decode_request(b"\xff") is None
    assert frame.decode_request(b"\xa1\x00\x01") is None  # {0: 1}, no APDU


def test_byte_at_a_time_with_noise():
    frames = [frame.encode(b"one"), frame.encode(b""), frame.encode(bytes(range(200)))]
    stream = (
        b"MicroPython v1.27\r\n>>> T" + frames[0] + b"TC" + frames[1] + b"\x00TC\x01" + frames[2]
    )
    dec = frame.Decoder()
    out = []
    for i in range(len(stream)):
        out += dec.feed(stream[i : i + 1])
    out += _drain(dec)
    assert out == [b"one", b"", bytes(range(200))]


def test_every_single_byte_corruption_is_dropped():
    good = frame.encode(b"\xa2\x00\x01\x01\x42\x90\x00")
    for pos in range(len(good)):
        if pos in (3, 4):
            continue  # a changed length is covered by the CPython property test
        bad = bytearray(good)
        bad[pos] ^= 0x20
        dec = frame.Decoder()
        assert dec.feed(bytes(bad)) + _drain(dec) == []
        assert dec.feed(good) == [good[frame.HEADER_LEN : -frame.CRC_LEN]]


def test_size_bounds():
    assert frame.MAX_FRAME == 4096
    assert frame.MAX_PAYLOAD + frame.OVERHEAD == frame.MAX_FRAME
    try:
        frame.encode(bytes(frame.MAX_PAYLOAD + 1))
        raise AssertionError("oversized payload was framed")
    except frame.FrameError:
        pass
    dec = frame.Decoder()
    assert dec.feed(b"TC\x01\xff\xff") == []
    assert dec.pending() == 0  # refused from the header alone
    assert frame.Decoder(max_payload=4).feed(frame.encode(b"12345") + frame.encode(b"1234")) == [
        b"1234"
    ]


def test_bogus_header_released_by_idle():
    dec = frame.Decoder()
    assert dec.feed(b"TC\x01\x01\x00" + frame.encode(b"x")) == []
    assert dec.idle() == [b"x"]


class _App:
    def __init__(self):
        self.calls = 0

    def process(self, apdu):
        self.calls += 1
        return apdu + b"\x90\x00"


def test_server_round_trip_and_replay():
    app = _App()
    srv = frame.FrameServer(app)
    req = frame.encode_request(41, b"\x80\xca\x00\x00")
    out = srv.feed(b"noise" + req[:7]) + srv.feed(req[7:])
    assert len(out) == 1
    (payload,) = frame.Decoder().feed(out[0])
    assert frame.decode_answer(payload) == (41, b"\x80\xca\x00\x00\x90\x00")
    assert srv.feed(req) == out  # a resent request: same answer, not run again
    assert app.calls == 1
    bad = bytearray(req)
    bad[-1] ^= 1
    assert srv.feed(bytes(bad)) == []


def test_serve_loop_over_a_port():
    class Port:
        def __init__(self, chunks):
            self.chunks = chunks
            self.out = b""

        def read(self, n):
            return self.chunks.pop(0) if self.chunks else None

        def write(self, b):
            self.out += b

    app = _App()
    req = frame.encode_request(1, b"abc")
    port = Port([req[:3], None, req[3:]])
    frame.serve(port, app, stop=lambda: not port.chunks)
    (payload,) = frame.Decoder().feed(port.out)
    assert frame.decode_answer(payload) == (1, b"abc\x90\x00")

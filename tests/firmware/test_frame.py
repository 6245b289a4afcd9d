"""Serial framing (firmware/core/frame.py): CRC, encoder, resynchronising decoder, frame server."""

from __future__ import annotations

import zlib

import cbor2
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tapcash.firmware.core import frame

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _payloads(max_size: int = 300) -> st.SearchStrategy[bytes]:
    return st.binary(max_size=max_size)


def _drain(dec: frame.Decoder) -> list[bytes]:
    """Line went quiet: give up stalled candidates until the decoder holds nothing useful."""
    out: list[bytes] = []
    while True:
        before = dec.pending()
        out += dec.idle()
        if dec.pending() == before:
            return out


# ---- CRC ------------------------------------------------------------------------------------


def test_crc_check_value() -> None:
    assert frame.crc32(b"123456789") == 0xCBF43926  # CRC-32/ISO-HDLC catalogue check value
    assert frame.crc32_py(b"123456789") == 0xCBF43926
    assert frame.crc32(b"") == 0


@SETTINGS
@given(st.binary(max_size=2000), st.integers(0, 2**32 - 1))
def test_crc_matches_zlib(data: bytes, start: int) -> None:
    assert frame.crc32(data) == zlib.crc32(data)
    assert frame.crc32_py(data, start) == zlib.crc32(data, start) == frame.crc32(data, start)


@SETTINGS
@given(st.binary(max_size=500), st.binary(max_size=500))
def test_crc_is_incremental(a: bytes, b: bytes) -> None:
    assert frame.crc32(b, frame.crc32(a)) == frame.crc32(a + b)


# ---- encoding -------------------------------------------------------------------------------


def test_layout() -> None:
    f = frame.encode(b"\xa0")
    assert f[:2] == b"TC" and f[2] == 1 and f[3:5] == b"\x00\x01" and f[5:6] == b"\xa0"
    assert int.from_bytes(f[-4:], "big") == zlib.crc32(f[2:-4])
    assert len(f) == 1 + frame.OVERHEAD


def test_message_payloads_are_cbor2_compatible() -> None:
    apdu = b"\x80\xca\x00\x00"
    req = frame.encode_request(0xDEADBEEF, apdu)[frame.HEADER_LEN : -4]
    ans = frame.encode_answer(0xDEADBEEF, apdu)[frame.HEADER_LEN : -4]
    assert req == cbor2.dumps({0: 0xDEADBEEF, 1: apdu}, canonical=True)
    assert ans == cbor2.dumps({0: 0xDEADBEEF, 2: apdu}, canonical=True)
    assert frame.decode_request(req) == (0xDEADBEEF, apdu) == frame.decode_answer(ans)
    # a request is never read as an answer and vice versa (an echoing line answers nothing)
    assert frame.decode_answer(req) is None and frame.decode_request(ans) is None


@SETTINGS
@given(
    st.integers(0, 2**32 - 1),
    st.one_of(
        st.binary(max_size=300),
        st.sampled_from([0, 23, 24, 255, 256, 1000, frame.MAX_PAYLOAD - 20]).map(bytes),
    ),
)
def test_message_encoding_is_the_deterministic_cbor_map(rid: int, apdu: bytes) -> None:
    """The hand-built payload equals the canonical CBOR map at every length boundary."""
    for key, enc in ((1, frame.encode_request), (2, frame.encode_answer)):
        f = enc(rid, apdu)
        assert bytes(f[frame.HEADER_LEN : -4]) == cbor2.dumps({0: rid, key: apdu}, canonical=True)
        assert frame.Decoder().feed(f) == [bytes(f[frame.HEADER_LEN : -4])]


@pytest.mark.parametrize("rid", [-1, 2**32, True, None])
def test_bad_request_ids_are_refused(rid: object) -> None:
    with pytest.raises(frame.FrameError):
        frame.encode_request(rid, b"")


def test_oversized_apdu_is_refused() -> None:
    with pytest.raises(frame.FrameError):
        frame.encode_answer(1, bytes(frame.MAX_PAYLOAD))


@pytest.mark.parametrize(
    "obj",
    [[0, b""], {0: -1, 1: b""}, {0: 2**32, 1: b""}, {0: True, 1: b""}, {0: 1}, {0: 1, 1: "x"}, 5],
)
def test_decode_request_rejects(obj: object) -> None:
    assert frame.decode_request(cbor2.dumps(obj, canonical=True)) is None


def test_decode_rejects_non_cbor() -> None:
    assert frame.decode_request(b"\xff\x00") is None
    assert frame.decode_answer(b"\xff\x00") is None


def test_size_bounds() -> None:
    assert frame.MAX_FRAME == frame.MAX_PAYLOAD + frame.OVERHEAD == 4096
    big = frame.encode(bytes(frame.MAX_PAYLOAD))
    assert len(big) == frame.MAX_FRAME
    assert frame.Decoder().feed(big) == [bytes(frame.MAX_PAYLOAD)]
    with pytest.raises(frame.FrameError):
        frame.encode(bytes(frame.MAX_PAYLOAD + 1))


def test_oversized_length_is_rejected_before_buffering() -> None:
    dec = frame.Decoder()
    # a header announcing 4088 bytes: refused at once, nothing is held for it
    assert dec.feed(b"TC\x01\x0f\xf8") == []
    assert dec.pending() == 0
    # a decoder with a smaller bound drops an otherwise perfect frame above it
    small = frame.Decoder(max_payload=16)
    assert small.feed(frame.encode(bytes(17)) + frame.encode(b"ok")) == [b"ok"]


def test_unknown_version_is_noise() -> None:
    f = bytearray(frame.encode(b"abc"))
    f[2] = 2
    dec = frame.Decoder()
    assert dec.feed(bytes(f) + frame.encode(b"next")) == [b"next"]


# ---- decoding -------------------------------------------------------------------------------


@SETTINGS
@given(st.lists(_payloads(), max_size=8), st.integers(1, 64))
def test_round_trip_any_chunking(payloads: list[bytes], chunk: int) -> None:
    stream = b"".join(frame.encode(p) for p in payloads)
    dec = frame.Decoder()
    out: list[bytes] = []
    for i in range(0, len(stream), chunk):
        out += dec.feed(stream[i : i + chunk])
    assert out == payloads
    assert dec.pending() == 0 and dec.bad_crc == 0 and dec.noise == 0


def _truncated(payload: bytes, k: int) -> bytes:
    f = frame.encode(payload)
    return f[: min(k, len(f) - 1)]


_garbage = st.one_of(
    st.binary(max_size=200),
    # garbage that is made to look like frames: magics, headers with random lengths, truncations
    st.lists(
        st.one_of(
            st.just(b"TC"),
            st.just(b"T"),
            st.just(b"TC\x01"),
            st.builds(lambda n: b"TC\x01" + n.to_bytes(2, "big"), st.integers(0, 5000)),
            st.builds(_truncated, _payloads(40), st.integers(0, 48)),
            st.binary(max_size=20),
            st.just(b">>> print('TC')\r\nTC\r\n"),
        ),
        max_size=8,
    ).map(b"".join),
)


@SETTINGS
@given(st.lists(st.tuples(_garbage, _payloads()), max_size=6), _garbage, st.integers(1, 97))
def test_garbage_interleaved_gives_exactly_the_frames(
    segments: list[tuple[bytes, bytes]], tail: bytes, chunk: int
) -> None:
    """Noise and truncated frames before every good frame: each good frame comes out once, in
    order, by the time the line goes quiet after it; nothing else ever comes out."""
    for garbage in [g for g, _ in segments] + [tail]:
        # the generator can splice a truncated frame and its missing bytes back together
        probe = frame.Decoder()
        assume(probe.feed(garbage) + _drain(probe) == [])
    for garbage, payload in segments:
        # ... also with the first bytes of the good frame after it: a frame truncated one CRC
        # byte short whose missing byte is 'T' (0x54) is completed by the next frame's magic,
        # and then it is a real frame on the wire, not noise
        probe = frame.Decoder()
        assume(probe.feed(garbage + frame.encode(payload)) + _drain(probe) == [payload])
    dec = frame.Decoder()
    out: list[bytes] = []
    expected: list[bytes] = []
    for garbage, payload in segments:
        stream = garbage + frame.encode(payload)
        for i in range(0, len(stream), chunk):
            out += dec.feed(stream[i : i + chunk])
            assert dec.pending() < frame.MAX_FRAME
        out += _drain(dec)
        expected.append(payload)
        assert out == expected
    dec.feed(tail)
    assert _drain(dec) == []
    assert out == expected


@SETTINGS
@given(_payloads(200), st.data())
def test_corruption_is_detected(payload: bytes, data: st.DataObject) -> None:
    good = frame.encode(payload)
    pos = data.draw(st.integers(0, len(good) - 1), label="pos")
    delta = data.draw(st.integers(1, 255), label="xor")
    bad = bytearray(good)
    bad[pos] ^= delta
    dec = frame.Decoder()
    out = dec.feed(bytes(bad)) + _drain(dec)
    if pos in (3, 4):
        # a changed length moves where the CRC is read: it can only ever yield a different
        # payload (a 2**-32 chance of a CRC match on the shorter candidate), never this one
        assert payload not in out
    else:
        assert out == []
    # the decoder recovers: a good frame sent after is received
    after = dec.feed(frame.encode(b"after")) + _drain(dec)
    assert after[-1:] == [b"after"]


@SETTINGS
@given(st.binary(min_size=1, max_size=300), _payloads(100))
def test_truncated_frame_then_good_frame(prefix_src: bytes, payload: bytes) -> None:
    """A frame cut short (link dropped mid-frame) is followed by a resent good frame."""
    cut = frame.encode(prefix_src)[: len(prefix_src) // 2 + 3]
    dec = frame.Decoder()
    out = dec.feed(cut) + dec.feed(frame.encode(payload)) + _drain(dec)
    assert out == [payload]


def test_bogus_long_header_then_idle_releases_the_frame() -> None:
    dec = frame.Decoder()
    good = frame.encode(b"hello")
    # REPL noise that happens to read as a header announcing 3000 bytes swallows the good frame
    assert dec.feed(b"TC\x01\x0b\xb8" + good) == []
    assert dec.idle() == [b"hello"]
    assert dec.pending() == 0


def test_counters() -> None:
    dec = frame.Decoder()
    bad = bytearray(frame.encode(b"x"))
    bad[-1] ^= 1
    dec.feed(b"noise" + bytes(bad) + frame.encode(b"y"))
    assert dec.frames == 1 and dec.bad_crc == 1 and dec.noise == len(b"noise") + len(bad)


# ---- frame server ---------------------------------------------------------------------------


class CountingApp:
    """A minimal APDU app: answers with the command's data reversed and counts executions."""

    def __init__(self) -> None:
        self.calls = 0

    def process(self, apdu: bytes) -> bytes:
        self.calls += 1
        if apdu == b"boom":
            raise RuntimeError("bug")
        if apdu == b"big":
            return bytes(frame.MAX_PAYLOAD) + b"\x90\x00"
        return apdu[::-1] + bytes((self.calls,)) + b"\x90\x00"


def _answers(frames: list[bytes]) -> list[tuple[int, bytes]]:
    dec = frame.Decoder()
    out = []
    for f in frames:
        (p,) = dec.feed(f)
        msg = frame.decode_answer(p)
        assert msg is not None
        out.append(msg)
    return out


def test_server_answers_each_request_once_with_its_id() -> None:
    app = CountingApp()
    srv = frame.FrameServer(app)
    stream = frame.encode_request(1, b"ab") + b"REPL>" + frame.encode_request(2, b"cd")
    assert _answers(srv.feed(stream)) == [(1, b"ba\x01\x90\x00"), (2, b"dc\x02\x90\x00")]
    assert app.calls == 2


def test_server_replays_the_last_answer_without_running_twice() -> None:
    app = CountingApp()
    srv = frame.FrameServer(app)
    first = srv.feed(frame.encode_request(9, b"ab"))
    again = srv.feed(frame.encode_request(9, b"ab"))
    assert first == again and app.calls == 1 and srv.replays == 1
    # same id, other APDU (a new session that happened to pick the same id): executed
    assert _answers(srv.feed(frame.encode_request(9, b"xy"))) == [(9, b"yx\x02\x90\x00")]
    assert app.calls == 2


def test_server_ignores_echoed_answers() -> None:
    app = CountingApp()
    srv = frame.FrameServer(app)
    out = srv.feed(frame.encode_request(1, b"ab"))
    assert srv.feed(out[0]) == [] and app.calls == 1  # its own answer, echoed by the line


def test_server_bad_crc_gets_no_answer() -> None:
    app = CountingApp()
    srv = frame.FrameServer(app)
    bad = bytearray(frame.encode_request(1, b"ab"))
    bad[8] ^= 0x40
    assert srv.feed(bytes(bad)) == [] and srv.idle() == []
    assert app.calls == 0


def test_server_malformed_payload_oversize_and_crash() -> None:
    app = CountingApp()
    srv = frame.FrameServer(app)
    (r,) = _answers(srv.feed(frame.encode(cbor2.dumps([1, 2]))))
    assert r == (0, b"\x6a\x80")
    (r,) = _answers(srv.feed(frame.encode_request(5, b"big")))
    assert r == (5, b"\x67\x00")
    (r,) = _answers(srv.feed(frame.encode_request(6, b"boom")))
    assert r == (6, b"\x6f\x00")


def test_server_passthrough_exception() -> None:
    class Cut(Exception):
        pass

    class Dying:
        def process(self, apdu: bytes) -> bytes:
            raise Cut()

    srv = frame.FrameServer(Dying(), passthrough=(Cut,))
    with pytest.raises(Cut):
        srv.feed(frame.encode_request(1, b"x"))


class Pipe:
    """A serial object for `serve`: reads from a script of chunks, collects what is written."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = list(chunks)
        self.written = b""

    def read(self, n: int) -> bytes | None:
        if not self.chunks:
            return None
        c = self.chunks.pop(0)
        if len(c) > n:
            self.chunks.insert(0, c[n:])
            c = c[:n]
        return c

    def write(self, b: bytes) -> int:
        self.written += b
        return len(b)


def test_serve_loop() -> None:
    app = CountingApp()
    req = frame.encode_request(3, b"hi")
    port = Pipe([b"boot log\r\n", req[:4], req[4:], frame.encode_request(4, b"yo" * 300)])
    srv = frame.serve(port, app, chunk=64, stop=lambda: not port.chunks)
    assert _answers(_split(port.written)) == [
        (3, b"ih\x01\x90\x00"),
        (4, b"oy" * 300 + b"\x02\x90\x00"),
    ]
    assert srv.requests == 2


def _split(stream: bytes) -> list[bytes]:
    out = []
    while stream:
        n = int.from_bytes(stream[3:5], "big") + frame.OVERHEAD
        out.append(stream[:n])
        stream = stream[n:]
    return out

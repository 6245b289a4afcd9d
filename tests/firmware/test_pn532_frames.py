"""PN532 host frames: the driver's bytes against the manual and against captures from real chips.

Sources of the vectors: NXP UM0701-02 6.2.1 (frame layouts, ACK, NACK, error frame), the
GetFirmwareVersion frame drawn in libnfc's pn53x-internal.h, an HSU capture of SAMConfiguration
from node-pn532 (issue #12), and a card-emulation trace of a PN532 (SetParameters 0x30,
TgInitAsTarget PICC, its D5 8D 08 E0 80 answer) from a Stack Overflow question (24777810).
The emulator's frame code (sim/nfc/pn532/frames.py) is written separately; the two are
cross-checked.
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pn532_helpers import wire

from tapcash.firmware.hal import pn532 as drv
from tapcash.firmware.hal.pn532 import (
    ACK,
    NACK,
    PN532Error,
    build_frame,
    frame_body,
    frame_length,
)
from tapcash.firmware.hal.pn532_reader import parse_target_a
from tapcash.sim.nfc import pn532 as emu


def frame(cmd: int, data: bytes = b"") -> bytes:
    out = bytearray(drv.FRAME_MAX)
    return bytes(out[: build_frame(out, cmd, data)])


def test_manual_fixed_frames() -> None:
    assert ACK == bytes.fromhex("0000ff00ff00") == emu.ACK_FRAME
    assert NACK == bytes.fromhex("0000ffff0000") == emu.NACK_FRAME
    assert emu.ERROR_FRAME == bytes.fromhex("0000ff01ff7f8100")
    assert frame_length(ACK, 6) == 6
    assert frame_length(NACK, 6) == 6
    assert frame_body(ACK, 6) is None
    assert frame_length(emu.ERROR_FRAME, 8) == 8
    assert frame_body(emu.ERROR_FRAME, 8) == (5, 1)  # TFI 0x7F, one byte


def test_command_frames_match_captures() -> None:
    assert frame(0x02) == bytes.fromhex("0000ff02fed4022a00")  # GetFirmwareVersion
    assert frame(0x14, b"\x01\x00\x01") == bytes.fromhex("0000ff05fbd414010001" "1600")
    # the card-emulation trace shows bodies only (it went through an ACR122): D4 12 30
    f = frame(0x12, b"\x30")
    assert f[3:8] == bytes.fromhex("03fdd41230") and sum(f[5:9]) & 0xFF == 0


def test_response_frame_from_capture() -> None:
    sam = bytes.fromhex("0000ff02fed5151600")  # D5 15: SAMConfiguration answered
    assert frame_length(sam, 5) == len(sam)
    assert frame_body(sam, len(sam)) == (5, 2)
    # ACK then the answer, as the HSU capture shows them back to back
    stream = ACK + sam
    assert frame_length(stream, len(stream)) == 6


def test_extended_frame_is_accepted_for_short_bodies() -> None:
    # the manual allows the extended form for any length; libnfc draws it for GetFirmwareVersion
    ext = bytes.fromhex("00" "00ffffff0002fe" "d4022a00")
    assert frame_length(ext, len(ext)) == len(ext)
    assert frame_body(ext, len(ext)) == (8, 2)


def test_long_bodies_use_the_extended_frame() -> None:
    data = bytes(range(256)) + b"\x01\x02"  # TFI + cmd + 258 = 260 bytes of body
    f = frame(0x40, data)
    assert f[:5] == b"\x00\x00\xff\xff\xff"
    assert f[5] << 8 | f[6] == 260
    assert (f[5] + f[6] + f[7]) & 0xFF == 0
    assert emu.parse_frame(f) == ("info", bytes((0xD4, 0x40)) + data)
    with pytest.raises(PN532Error):
        frame(0x40, bytes(264))  # 266 bytes of body: over the chip's 265


def test_frame_length_rejects_and_waits() -> None:
    good = frame(0x02)
    assert frame_length(good, 3) == 0  # start code seen, LEN not yet
    assert frame_length(good[:4], 4) == 0
    bad_lcs = bytearray(good)
    bad_lcs[4] ^= 1
    assert frame_length(bad_lcs, len(bad_lcs)) == -1
    assert frame_length(b"\x12\x34\x56\x78\x9a\xbc", 6) == -1
    assert frame_length(bytes(8), 8) == -1  # only zeros: a chip that is not talking
    bad_dcs = bytearray(good)
    bad_dcs[-2] ^= 1
    assert frame_body(bad_dcs, len(bad_dcs)) is None


def test_target_data_106a_layout() -> None:
    # NbTg, Tg, SENS_RES, SEL_RES, NFCIDLength, NFCID1, ATS (TL first)
    r = bytes.fromhex("01" "01" "0044" "20" "07" "04a1b2c3d4e5f6" "0578807002")
    t = parse_target_a(r)
    assert t is not None
    assert (t.tg, t.atqa, t.sak, t.uid, t.ats) == (
        1, b"\x00\x44", 0x20, bytes.fromhex("04a1b2c3d4e5f6"), bytes.fromhex("0578807002"),
    )  # fmt: skip
    assert t.iso_dep
    classic = parse_target_a(bytes.fromhex("01010004080412345678"))
    assert classic is not None and not classic.iso_dep and classic.ats == b""
    assert parse_target_a(b"\x00") is None
    for broken in ("0101", "010100442005aabbccddee", "010100442004aabbccdd09"):
        with pytest.raises(PN532Error):
            parse_target_a(bytes.fromhex(broken))


def test_card_emulation_bytes_match_a_real_chip_trace() -> None:
    w = wire("i2c")
    w.rf.place(w.chip)
    w.pn532.setup_target()
    w.pn532.listen_as_target(b"\x12\x34\x56")
    host = [f for who, f in w.chip.log if who == "host" and f not in (ACK, NACK)]
    assert host[-2] == frame(0x12, b"\x30")
    expected = bytes.fromhex("8c" "05" "0400" "123456" "20") + bytes(28) + b"\x00\x00"
    assert host[-1] == frame(0x8C, expected[1:])
    assert host[-1][3] == 0x27  # LEN in the trace
    w.pn532.abort()


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 255), st.binary(min_size=0, max_size=263))
def test_driver_and_emulator_frames_agree(cmd: int, data: bytes) -> None:
    f = frame(cmd, data)
    assert emu.parse_frame(f) == ("info", bytes((0xD4, cmd)) + data)
    body = bytes((0xD5, cmd)) + data
    g = emu.info_frame(body)
    assert frame_length(g, len(g)) == len(g)
    start, ln = frame_body(g, len(g))
    assert g[start : start + ln] == body


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=40), st.integers(0, 39), st.integers(1, 255))
def test_single_byte_corruption_is_detected(body: bytes, pos: int, flip: int) -> None:
    g = bytearray(emu.info_frame(b"\xd5" + body))
    pos = 3 + pos % (len(g) - 4)  # anywhere from LEN to DCS
    g[pos] ^= flip
    total = frame_length(g, len(g))
    if total == len(g):
        assert frame_body(g, total) is None
    else:
        assert total != len(g)  # length or length checksum broken: not taken as this frame

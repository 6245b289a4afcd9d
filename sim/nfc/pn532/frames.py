"""PN532 frames (UM0701-02 6.2.1), built and parsed independently of the firmware's driver."""

from __future__ import annotations

# --- frames (UM0701-02 6.2.1), built independently of the firmware ---------------------------
ACK_FRAME = bytes.fromhex("0000ff00ff00")
NACK_FRAME = bytes.fromhex("0000ffff0000")
ERROR_FRAME = bytes.fromhex("0000ff01ff7f8100")
TFI_HOST = 0xD4
TFI_CHIP = 0xD5
MAX_DATA = 262  # DataIn / DataOut per frame
FIRMWARE = bytes((0x32, 0x01, 0x06, 0x07))  # IC PN532, version 1.6, supports ISO 14443A/B, 18092

ST_OK = 0x00
ST_TIMEOUT = 0x01
ST_BAD_CONTEXT = 0x27
ST_RELEASED = 0x29
ST_MI = 0x40

PICC_ATS_TAIL = bytes.fromhex("78807002")  # T0 TA TB TC of the emulated card's ATS


def info_frame(body: bytes) -> bytes:
    """A normal (<= 255 bytes of TFI+PD) or extended information frame around body."""
    n = len(body)
    dcs = (-sum(body)) & 0xFF
    if n <= 255:
        head = bytes((0x00, 0x00, 0xFF, n, (-n) & 0xFF))
    else:
        hi, lo = n >> 8, n & 0xFF
        head = bytes((0x00, 0x00, 0xFF, 0xFF, 0xFF, hi, lo, (-(hi + lo)) & 0xFF))
    return head + body + bytes((dcs, 0x00))


def parse_frame(data: bytes) -> tuple[str, bytes]:
    """Classify one complete host frame: ("ack"|"nack"|"info"|"bad", body)."""
    i = 0
    while i < len(data) and data[i] == 0:
        i += 1
    if i == 0 or i >= len(data) or data[i] != 0xFF:
        return "bad", b""
    rest = data[i + 1 :]
    if rest[:3] == b"\x00\xff\x00" or rest[:2] == b"\x00\xff":
        return "ack", b""
    if rest[:2] == b"\xff\x00":
        return "nack", b""
    if len(rest) < 2:
        return "bad", b""
    if rest[0] == 0xFF and rest[1] == 0xFF:
        if len(rest) < 5 or (rest[2] + rest[3] + rest[4]) & 0xFF:
            return "bad", b""
        n = rest[2] << 8 | rest[3]
        start = 5
    else:
        if (rest[0] + rest[1]) & 0xFF:
            return "bad", b""
        n = rest[0]
        start = 2
    body = rest[start : start + n]
    if n == 0 or len(body) != n or len(rest) < start + n + 1:
        return "bad", b""
    if (sum(body) + rest[start + n]) & 0xFF:
        return "bad", b""
    return "info", bytes(body)


def reverse_bits(b: int) -> int:
    return int(f"{b:08b}"[::-1], 2)



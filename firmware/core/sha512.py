# SHA-512 (FIPS 180-4) in pure Python, fast on MicroPython, plus hashlib on CPython.
#
# MicroPython's hashlib has only sha256, and Ed25519 needs SHA-512. On a 32-bit port a small
# int holds 31 bits, so every 64-bit word is a heap big int and every operation on one
# allocates: the cost is the number of big-int operations, not their width. This code is
# shaped to need few of them (about 27 per round, 16 per schedule word):
#   * rotations use a doubled word: for x < 2**64, X = x * _DUP == x | x << 64, so
#     rotr(x, n) is the low 64 bits of X >> n; a Sigma is then 1 multiply, 3 shifts, 2 xors
#     and its bits above 64 are left in place, because it only feeds an addition;
#   * masking to 64 bits happens only where a right shift would pull garbage down: the new
#     a and e of each round and each new schedule word;
#   * Maj(a, b, c) = b ^ ((a ^ b) & (b ^ c)) and the next round's (b ^ c) is this round's
#     (a ^ b), so Maj costs 3 operations;
#   * the 16 rounds of a chunk are unrolled with the 8 working variables renamed rather than
#     moved, and the 16 schedule words live in locals (w0..w15) updated in place;
#   * words come in with struct.unpack_from, no slicing.
# Measured in the MicroPython 1.27 VM (webassembly): see host/bench/crypto.py.
# The unrolled body is generated; edit the generator in tests/firmware/test_sha512.py, not by hand.
import struct

try:  # CPython: the C implementation, used unless the pure backend is forced
    from hashlib import sha512 as _hashlib_sha512
except ImportError:  # MicroPython: hashlib has sha256 only
    _hashlib_sha512 = None

# 2**64 - 1 as bytes, and _DUP = 2**64 + 1 (x * _DUP == x | (x << 64) for 0 <= x < 2**64)
# made from it per block: an int constant is a heap object while the module is imported, a
# bytes constant is read in place from flash (ROMFS, frozen).
_M = b"\xff\xff\xff\xff\xff\xff\xff\xff"

# The initial state and the 80 round constants as big-endian 64-bit words in bytes: a bytes
# constant is read in place from flash (frozen, ROMFS) and is one small object on the heap
# otherwise, where 88 big ints would be 88 heap objects (about 6 KB) for the life of the module.
_IV = (
    b"\x6a\x09\xe6\x67\xf3\xbc\xc9\x08\xbb\x67\xae\x85\x84\xca\xa7\x3b"
    b"\x3c\x6e\xf3\x72\xfe\x94\xf8\x2b\xa5\x4f\xf5\x3a\x5f\x1d\x36\xf1"
    b"\x51\x0e\x52\x7f\xad\xe6\x82\xd1\x9b\x05\x68\x8c\x2b\x3e\x6c\x1f"
    b"\x1f\x83\xd9\xab\xfb\x41\xbd\x6b\x5b\xe0\xcd\x19\x13\x7e\x21\x79"
)
_K = (  # 16 words per chunk of rounds, unpacked one chunk at a time
    b"\x42\x8a\x2f\x98\xd7\x28\xae\x22\x71\x37\x44\x91\x23\xef\x65\xcd"
    b"\xb5\xc0\xfb\xcf\xec\x4d\x3b\x2f\xe9\xb5\xdb\xa5\x81\x89\xdb\xbc"
    b"\x39\x56\xc2\x5b\xf3\x48\xb5\x38\x59\xf1\x11\xf1\xb6\x05\xd0\x19"
    b"\x92\x3f\x82\xa4\xaf\x19\x4f\x9b\xab\x1c\x5e\xd5\xda\x6d\x81\x18"
    b"\xd8\x07\xaa\x98\xa3\x03\x02\x42\x12\x83\x5b\x01\x45\x70\x6f\xbe"
    b"\x24\x31\x85\xbe\x4e\xe4\xb2\x8c\x55\x0c\x7d\xc3\xd5\xff\xb4\xe2"
    b"\x72\xbe\x5d\x74\xf2\x7b\x89\x6f\x80\xde\xb1\xfe\x3b\x16\x96\xb1"
    b"\x9b\xdc\x06\xa7\x25\xc7\x12\x35\xc1\x9b\xf1\x74\xcf\x69\x26\x94"
    b"\xe4\x9b\x69\xc1\x9e\xf1\x4a\xd2\xef\xbe\x47\x86\x38\x4f\x25\xe3"
    b"\x0f\xc1\x9d\xc6\x8b\x8c\xd5\xb5\x24\x0c\xa1\xcc\x77\xac\x9c\x65"
    b"\x2d\xe9\x2c\x6f\x59\x2b\x02\x75\x4a\x74\x84\xaa\x6e\xa6\xe4\x83"
    b"\x5c\xb0\xa9\xdc\xbd\x41\xfb\xd4\x76\xf9\x88\xda\x83\x11\x53\xb5"
    b"\x98\x3e\x51\x52\xee\x66\xdf\xab\xa8\x31\xc6\x6d\x2d\xb4\x32\x10"
    b"\xb0\x03\x27\xc8\x98\xfb\x21\x3f\xbf\x59\x7f\xc7\xbe\xef\x0e\xe4"
    b"\xc6\xe0\x0b\xf3\x3d\xa8\x8f\xc2\xd5\xa7\x91\x47\x93\x0a\xa7\x25"
    b"\x06\xca\x63\x51\xe0\x03\x82\x6f\x14\x29\x29\x67\x0a\x0e\x6e\x70"
    b"\x27\xb7\x0a\x85\x46\xd2\x2f\xfc\x2e\x1b\x21\x38\x5c\x26\xc9\x26"
    b"\x4d\x2c\x6d\xfc\x5a\xc4\x2a\xed\x53\x38\x0d\x13\x9d\x95\xb3\xdf"
    b"\x65\x0a\x73\x54\x8b\xaf\x63\xde\x76\x6a\x0a\xbb\x3c\x77\xb2\xa8"
    b"\x81\xc2\xc9\x2e\x47\xed\xae\xe6\x92\x72\x2c\x85\x14\x82\x35\x3b"
    b"\xa2\xbf\xe8\xa1\x4c\xf1\x03\x64\xa8\x1a\x66\x4b\xbc\x42\x30\x01"
    b"\xc2\x4b\x8b\x70\xd0\xf8\x97\x91\xc7\x6c\x51\xa3\x06\x54\xbe\x30"
    b"\xd1\x92\xe8\x19\xd6\xef\x52\x18\xd6\x99\x06\x24\x55\x65\xa9\x10"
    b"\xf4\x0e\x35\x85\x57\x71\x20\x2a\x10\x6a\xa0\x70\x32\xbb\xd1\xb8"
    b"\x19\xa4\xc1\x16\xb8\xd2\xd0\xc8\x1e\x37\x6c\x08\x51\x41\xab\x53"
    b"\x27\x48\x77\x4c\xdf\x8e\xeb\x99\x34\xb0\xbc\xb5\xe1\x9b\x48\xa8"
    b"\x39\x1c\x0c\xb3\xc5\xc9\x5a\x63\x4e\xd8\xaa\x4a\xe3\x41\x8a\xcb"
    b"\x5b\x9c\xca\x4f\x77\x63\xe3\x73\x68\x2e\x6f\xf3\xd6\xb2\xb8\xa3"
    b"\x74\x8f\x82\xee\x5d\xef\xb2\xfc\x78\xa5\x63\x6f\x43\x17\x2f\x60"
    b"\x84\xc8\x78\x14\xa1\xf0\xab\x72\x8c\xc7\x02\x08\x1a\x64\x39\xec"
    b"\x90\xbe\xff\xfa\x23\x63\x1e\x28\xa4\x50\x6c\xeb\xde\x82\xbd\xe9"
    b"\xbe\xf9\xa3\xf7\xb2\xc6\x79\x15\xc6\x71\x78\xf2\xe3\x72\x53\x2b"
    b"\xca\x27\x3e\xce\xea\x26\x61\x9c\xd1\x86\xb8\xc7\x21\xc0\xc2\x07"
    b"\xea\xda\x7d\xd6\xcd\xe0\xeb\x1e\xf5\x7d\x4f\x7f\xee\x6e\xd1\x78"
    b"\x06\xf0\x67\xaa\x72\x17\x6f\xba\x0a\x63\x7d\xc5\xa2\xc8\x98\xa6"
    b"\x11\x3f\x98\x04\xbe\xf9\x0d\xae\x1b\x71\x0b\x35\x13\x1c\x47\x1b"
    b"\x28\xdb\x77\xf5\x23\x04\x7d\x84\x32\xca\xab\x7b\x40\xc7\x24\x93"
    b"\x3c\x9e\xbe\x0a\x15\xc9\xbe\xbc\x43\x1d\x67\xc4\x9c\x10\x0d\x4c"
    b"\x4c\xc5\xd4\xbe\xcb\x3e\x42\xb6\x59\x7f\x29\x9c\xfc\x65\x7e\x2a"
    b"\x5f\xcb\x6f\xab\x3a\xd6\xfa\xec\x6c\x44\x19\x8c\x4a\x47\x58\x17"
)


def _compress(st, buf, off, K=_K, unpack_from=struct.unpack_from):
    """One 128-byte block at buf[off:]; st is the 8-word state, returns the new one."""
    M = int.from_bytes(_M, "big")  # 2**64 - 1
    D = M + 2  # _DUP
    (
        w0,
        w1,
        w2,
        w3,
        w4,
        w5,
        w6,
        w7,
        w8,
        w9,
        w10,
        w11,
        w12,
        w13,
        w14,
        w15,
    ) = unpack_from(">16Q", buf, off)
    a, b, c, d, e, f, g, h = st
    z = b ^ c  # (b ^ c) for Maj
    for r in range(0, 640, 128):
        (
            k0,
            k1,
            k2,
            k3,
            k4,
            k5,
            k6,
            k7,
            k8,
            k9,
            k10,
            k11,
            k12,
            k13,
            k14,
            k15,
        ) = unpack_from(">16Q", K, r)
        if r:  # the next 16 schedule words, in place
            x = w14 * D
            y = w1 * D
            w0 = (
                ((x >> 19) ^ (x >> 61) ^ (w14 >> 6)) + w9 + ((y >> 1) ^ (y >> 8) ^ (w1 >> 7)) + w0
            ) & M
            x = w15 * D
            y = w2 * D
            w1 = (
                ((x >> 19) ^ (x >> 61) ^ (w15 >> 6)) + w10 + ((y >> 1) ^ (y >> 8) ^ (w2 >> 7)) + w1
            ) & M
            x = w0 * D
            y = w3 * D
            w2 = (
                ((x >> 19) ^ (x >> 61) ^ (w0 >> 6)) + w11 + ((y >> 1) ^ (y >> 8) ^ (w3 >> 7)) + w2
            ) & M
            x = w1 * D
            y = w4 * D
            w3 = (
                ((x >> 19) ^ (x >> 61) ^ (w1 >> 6)) + w12 + ((y >> 1) ^ (y >> 8) ^ (w4 >> 7)) + w3
            ) & M
            x = w2 * D
            y = w5 * D
            w4 = (
                ((x >> 19) ^ (x >> 61) ^ (w2 >> 6)) + w13 + ((y >> 1) ^ (y >> 8) ^ (w5 >> 7)) + w4
            ) & M
            x = w3 * D
            y = w6 * D
            w5 = (
                ((x >> 19) ^ (x >> 61) ^ (w3 >> 6)) + w14 + ((y >> 1) ^ (y >> 8) ^ (w6 >> 7)) + w5
            ) & M
            x = w4 * D
            y = w7 * D
            w6 = (
                ((x >> 19) ^ (x >> 61) ^ (w4 >> 6)) + w15 + ((y >> 1) ^ (y >> 8) ^ (w7 >> 7)) + w6
            ) & M
            x = w5 * D
            y = w8 * D
            w7 = (
                ((x >> 19) ^ (x >> 61) ^ (w5 >> 6)) + w0 + ((y >> 1) ^ (y >> 8) ^ (w8 >> 7)) + w7
            ) & M
            x = w6 * D
            y = w9 * D
            w8 = (
                ((x >> 19) ^ (x >> 61) ^ (w6 >> 6)) + w1 + ((y >> 1) ^ (y >> 8) ^ (w9 >> 7)) + w8
            ) & M
            x = w7 * D
            y = w10 * D
            w9 = (
                ((x >> 19) ^ (x >> 61) ^ (w7 >> 6)) + w2 + ((y >> 1) ^ (y >> 8) ^ (w10 >> 7)) + w9
            ) & M
            x = w8 * D
            y = w11 * D
            w10 = (
                ((x >> 19) ^ (x >> 61) ^ (w8 >> 6)) + w3 + ((y >> 1) ^ (y >> 8) ^ (w11 >> 7)) + w10
            ) & M
            x = w9 * D
            y = w12 * D
            w11 = (
                ((x >> 19) ^ (x >> 61) ^ (w9 >> 6)) + w4 + ((y >> 1) ^ (y >> 8) ^ (w12 >> 7)) + w11
            ) & M
            x = w10 * D
            y = w13 * D
            w12 = (
                ((x >> 19) ^ (x >> 61) ^ (w10 >> 6)) + w5 + ((y >> 1) ^ (y >> 8) ^ (w13 >> 7)) + w12
            ) & M
            x = w11 * D
            y = w14 * D
            w13 = (
                ((x >> 19) ^ (x >> 61) ^ (w11 >> 6)) + w6 + ((y >> 1) ^ (y >> 8) ^ (w14 >> 7)) + w13
            ) & M
            x = w12 * D
            y = w15 * D
            w14 = (
                ((x >> 19) ^ (x >> 61) ^ (w12 >> 6)) + w7 + ((y >> 1) ^ (y >> 8) ^ (w15 >> 7)) + w14
            ) & M
            x = w13 * D
            y = w0 * D
            w15 = (
                ((x >> 19) ^ (x >> 61) ^ (w13 >> 6)) + w8 + ((y >> 1) ^ (y >> 8) ^ (w0 >> 7)) + w15
            ) & M
        # round 16*r+0
        x = e * D
        t = h + ((x >> 14) ^ (x >> 18) ^ (x >> 41)) + (g ^ (e & (f ^ g))) + k0 + w0
        d = (d + t) & M
        x = a * D
        y = a ^ b
        h = (t + ((x >> 28) ^ (x >> 34) ^ (x >> 39)) + (b ^ (y & z))) & M
        z = y
        # round 16*r+1
        x = d * D
        t = g + ((x >> 14) ^ (x >> 18) ^ (x >> 41)) + (f ^ (d & (e ^ f))) + k1 + w1
        c = (c + t) & M
        x = h * D
        y = h ^ a
        g = (t + ((x >> 28) ^ (x >> 34) ^ (x >> 39)) + (a ^ (y & z))) & M
        z = y
        # round 16*r+2
        x = c * D
        t = f + ((x >> 14) ^ (x >> 18) ^ (x >> 41)) + (e ^ (c & (d ^ e))) + k2 + w2
        b = (b + t) & M
        x = g * D
        y = g ^ h
        f = (t + ((x >> 28) ^ (x >> 34) ^ (x >> 39)) + (h ^ (y & z))) & M
        z = y
        # round 16*r+3
        x = b * D
        t = e + ((x >> 14) ^ (x >> 18) ^ (x >> 41)) + (d ^ (b & (c ^ d))) + k3 + w3
        a = (a + t) & M
        x = f * D
        y = f ^ g
        e = (t + ((x >> 28) ^ (x >> 34) ^ (x >> 39)) + (g ^ (y & z))) & M
        z = y
        # round 16*r+4
        x = a * D
        t = d + ((x >> 14) ^ (x >> 18) ^ (x >> 41)) + (c ^ (a & (b ^ c))) + k4 + w4
        h = (h + t) & M
        x = e * D
        y = e ^ f
        d = (t + ((x >> 28) ^ (x >> 34) ^ (x >> 39)) + (f ^ (y & z))) & M
        z = y
        # round 16*r+5
        x = h * D
        t = c + ((x >> 14) ^ (x >> 18) ^ (x >> 41)) + (b ^ (h & (a ^ b))) + k5 + w5
        g = (g + t) & M
        x = d * D
        y = d ^ e
        c = (t + ((x >> 28) ^ (x >> 34) ^ (x >> 39)) + (e ^ (y & z))) & M
        z = y
        # round 16*r+6
        x = g * D
        t = b + ((x >> 14) ^ (x >> 18) ^ (x >> 41)) + (a ^ (g & (h ^ a))) + k6 + w6
        f = (f + t) & M
        x = c * D
        y = c ^ d
        b = (t + ((x >> 28) ^ (x >> 34) ^ (x >> 39)) + (d ^ (y & z))) & M
        z = y
        # round 16*r+7
        x = f * D
        t = a + ((x >> 14) ^ (x >> 18) ^ (x >> 41)) + (h ^ (f & (g ^ h))) + k7 + w7
        e = (e + t) & M
        x = b * D
        y = b ^ c
        a = (t + ((x >> 28) ^ (x >> 34) ^ (x >> 39)) + (c ^ (y & z))) & M
        z = y
        # round 16*r+8
        x = e * D
        t = h + ((x >> 14) ^ (x >> 18) ^ (x >> 41)) + (g ^ (e & (f ^ g))) + k8 + w8
        d = (d + t) & M
        x = a * D
        y = a ^ b
        h = (t + ((x >> 28) ^ (x >> 34) ^ (x >> 39)) + (b ^ (y & z))) & M
        z = y
        # round 16*r+9
        x = d * D
        t = g + ((x >> 14) ^ (x >> 18) ^ (x >> 41)) + (f ^ (d & (e ^ f))) + k9 + w9
        c = (c + t) & M
        x = h * D
        y = h ^ a
        g = (t + ((x >> 28) ^ (x >> 34) ^ (x >> 39)) + (a ^ (y & z))) & M
        z = y
        # round 16*r+10
        x = c * D
        t = f + ((x >> 14) ^ (x >> 18) ^ (x >> 41)) + (e ^ (c & (d ^ e))) + k10 + w10
        b = (b + t) & M
        x = g * D
        y = g ^ h
        f = (t + ((x >> 28) ^ (x >> 34) ^ (x >> 39)) + (h ^ (y & z))) & M
        z = y
        # round 16*r+11
        x = b * D
        t = e + ((x >> 14) ^ (x >> 18) ^ (x >> 41)) + (d ^ (b & (c ^ d))) + k11 + w11
        a = (a + t) & M
        x = f * D
        y = f ^ g
        e = (t + ((x >> 28) ^ (x >> 34) ^ (x >> 39)) + (g ^ (y & z))) & M
        z = y
        # round 16*r+12
        x = a * D
        t = d + ((x >> 14) ^ (x >> 18) ^ (x >> 41)) + (c ^ (a & (b ^ c))) + k12 + w12
        h = (h + t) & M
        x = e * D
        y = e ^ f
        d = (t + ((x >> 28) ^ (x >> 34) ^ (x >> 39)) + (f ^ (y & z))) & M
        z = y
        # round 16*r+13
        x = h * D
        t = c + ((x >> 14) ^ (x >> 18) ^ (x >> 41)) + (b ^ (h & (a ^ b))) + k13 + w13
        g = (g + t) & M
        x = d * D
        y = d ^ e
        c = (t + ((x >> 28) ^ (x >> 34) ^ (x >> 39)) + (e ^ (y & z))) & M
        z = y
        # round 16*r+14
        x = g * D
        t = b + ((x >> 14) ^ (x >> 18) ^ (x >> 41)) + (a ^ (g & (h ^ a))) + k14 + w14
        f = (f + t) & M
        x = c * D
        y = c ^ d
        b = (t + ((x >> 28) ^ (x >> 34) ^ (x >> 39)) + (d ^ (y & z))) & M
        z = y
        # round 16*r+15
        x = f * D
        t = a + ((x >> 14) ^ (x >> 18) ^ (x >> 41)) + (h ^ (f & (g ^ h))) + k15 + w15
        e = (e + t) & M
        x = b * D
        y = b ^ c
        a = (t + ((x >> 28) ^ (x >> 34) ^ (x >> 39)) + (c ^ (y & z))) & M
        z = y
    return (
        (st[0] + a) & M,
        (st[1] + b) & M,
        (st[2] + c) & M,
        (st[3] + d) & M,
        (st[4] + e) & M,
        (st[5] + f) & M,
        (st[6] + g) & M,
        (st[7] + h) & M,
    )


def _pad(tail, total):
    """Final block(s) for a message of `total` bytes whose last partial block is `tail`."""
    return tail + b"\x80" + bytes((111 - total) % 128) + (total << 3).to_bytes(16, "big")


def _digest(st):
    return struct.pack(">8Q", *st)


def sha512_pure(data):
    """SHA-512 digest (64 bytes) of bytes-like data, always the pure-Python code."""
    n = len(data)
    full = n - (n & 127)
    st = struct.unpack(">8Q", _IV)
    compress = _compress
    for off in range(0, full, 128):
        st = compress(st, data, off)
    last = _pad(bytes(data[full:]), n)
    st = compress(st, last, 0)
    if len(last) > 128:
        st = compress(st, last, 128)
    return _digest(st)


# board: omit - the incremental object (new()) and the backend switch are the hosts' (no
# board code uses them): host/device/fold.py leaves them off a board
class SHA512:
    """Incremental pure-Python SHA-512 with the hashlib interface (update/digest/copy)."""

    digest_size = 64
    block_size = 128
    name = "sha512"

    def __init__(self, data=b""):
        self._st = struct.unpack(">8Q", _IV)
        self._buf = b""
        self._len = 0
        if data:
            self.update(data)

    def update(self, data):
        n = len(data)
        if not n:
            return
        self._len += n
        buf = self._buf
        if buf:
            take = 128 - len(buf)
            buf += bytes(data[:take])
            if len(buf) < 128:
                self._buf = buf
                return
            self._st = _compress(self._st, buf, 0)
            data = data[take:]
            n -= take
        full = n - (n & 127)
        st = self._st
        for off in range(0, full, 128):
            st = _compress(st, data, off)
        self._st = st
        self._buf = bytes(data[full:])

    def digest(self):
        last = _pad(self._buf, self._len)
        st = _compress(self._st, last, 0)
        if len(last) > 128:
            st = _compress(st, last, 128)
        return _digest(st)

    def hexdigest(self):
        return self.digest().hex()

    def copy(self):
        other = SHA512()
        other._st = self._st
        other._buf = self._buf
        other._len = self._len
        return other


# board: end


# Backend: "hashlib" (C, CPython only) or "pure". TAPCASH_CRYPTO=pure in the environment
# forces the pure code at import; set_backend() switches at run time.
_use_hashlib = _hashlib_sha512 is not None


# board: omit


def _env_backend():
    try:
        import os

        return os.getenv("TAPCASH_CRYPTO")
    except (ImportError, AttributeError):  # MicroPython: no os.getenv on some ports
        return None


if _env_backend() == "pure":
    _use_hashlib = False


def set_backend(name):
    """Select "pure", "hashlib" or "auto" (hashlib when importable); returns backend()."""
    global _use_hashlib
    if name == "pure":
        _use_hashlib = False
    elif name in ("hashlib", "auto"):
        if _hashlib_sha512 is None:
            if name == "hashlib":
                raise ValueError("hashlib.sha512 is not available here")
            _use_hashlib = False
        else:
            _use_hashlib = True
    else:
        raise ValueError("backend must be 'pure', 'hashlib' or 'auto'")
    return backend()


def backend():
    """The active backend name: "hashlib" or "pure"."""
    return "hashlib" if _use_hashlib else "pure"


# board: end


def sha512(data):
    """SHA-512 digest (64 bytes) of bytes-like data, with the active backend."""
    if _use_hashlib:
        return _hashlib_sha512(data).digest()
    return sha512_pure(data)


# board: omit
def new(data=b""):
    """A hashlib-like SHA-512 object (update/digest/hexdigest/copy), active backend."""
    if _use_hashlib:
        return _hashlib_sha512(data)
    return SHA512(data)


# board: end

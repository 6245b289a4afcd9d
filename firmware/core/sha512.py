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
# The unrolled body is generated; edit the generator in tests/test_sha512.py, not by hand.
import struct

try:  # CPython: the C implementation, used unless the pure backend is forced
    from hashlib import sha512 as _hashlib_sha512
except ImportError:  # MicroPython: hashlib has sha256 only
    _hashlib_sha512 = None

_M = 0xFFFFFFFFFFFFFFFF
_DUP = 0x10000000000000001  # x * _DUP == x | (x << 64) for 0 <= x < 2**64

_IV = (
    0x6A09E667F3BCC908,
    0xBB67AE8584CAA73B,
    0x3C6EF372FE94F82B,
    0xA54FF53A5F1D36F1,
    0x510E527FADE682D1,
    0x9B05688C2B3E6C1F,
    0x1F83D9ABFB41BD6B,
    0x5BE0CD19137E2179,
)

# Round constants, 16 per chunk of rounds.
_K = (
    (
        0x428A2F98D728AE22,
        0x7137449123EF65CD,
        0xB5C0FBCFEC4D3B2F,
        0xE9B5DBA58189DBBC,
        0x3956C25BF348B538,
        0x59F111F1B605D019,
        0x923F82A4AF194F9B,
        0xAB1C5ED5DA6D8118,
        0xD807AA98A3030242,
        0x12835B0145706FBE,
        0x243185BE4EE4B28C,
        0x550C7DC3D5FFB4E2,
        0x72BE5D74F27B896F,
        0x80DEB1FE3B1696B1,
        0x9BDC06A725C71235,
        0xC19BF174CF692694,
    ),
    (
        0xE49B69C19EF14AD2,
        0xEFBE4786384F25E3,
        0x0FC19DC68B8CD5B5,
        0x240CA1CC77AC9C65,
        0x2DE92C6F592B0275,
        0x4A7484AA6EA6E483,
        0x5CB0A9DCBD41FBD4,
        0x76F988DA831153B5,
        0x983E5152EE66DFAB,
        0xA831C66D2DB43210,
        0xB00327C898FB213F,
        0xBF597FC7BEEF0EE4,
        0xC6E00BF33DA88FC2,
        0xD5A79147930AA725,
        0x06CA6351E003826F,
        0x142929670A0E6E70,
    ),
    (
        0x27B70A8546D22FFC,
        0x2E1B21385C26C926,
        0x4D2C6DFC5AC42AED,
        0x53380D139D95B3DF,
        0x650A73548BAF63DE,
        0x766A0ABB3C77B2A8,
        0x81C2C92E47EDAEE6,
        0x92722C851482353B,
        0xA2BFE8A14CF10364,
        0xA81A664BBC423001,
        0xC24B8B70D0F89791,
        0xC76C51A30654BE30,
        0xD192E819D6EF5218,
        0xD69906245565A910,
        0xF40E35855771202A,
        0x106AA07032BBD1B8,
    ),
    (
        0x19A4C116B8D2D0C8,
        0x1E376C085141AB53,
        0x2748774CDF8EEB99,
        0x34B0BCB5E19B48A8,
        0x391C0CB3C5C95A63,
        0x4ED8AA4AE3418ACB,
        0x5B9CCA4F7763E373,
        0x682E6FF3D6B2B8A3,
        0x748F82EE5DEFB2FC,
        0x78A5636F43172F60,
        0x84C87814A1F0AB72,
        0x8CC702081A6439EC,
        0x90BEFFFA23631E28,
        0xA4506CEBDE82BDE9,
        0xBEF9A3F7B2C67915,
        0xC67178F2E372532B,
    ),
    (
        0xCA273ECEEA26619C,
        0xD186B8C721C0C207,
        0xEADA7DD6CDE0EB1E,
        0xF57D4F7FEE6ED178,
        0x06F067AA72176FBA,
        0x0A637DC5A2C898A6,
        0x113F9804BEF90DAE,
        0x1B710B35131C471B,
        0x28DB77F523047D84,
        0x32CAAB7B40C72493,
        0x3C9EBE0A15C9BEBC,
        0x431D67C49C100D4C,
        0x4CC5D4BECB3E42B6,
        0x597F299CFC657E2A,
        0x5FCB6FAB3AD6FAEC,
        0x6C44198C4A475817,
    ),
)


def _compress(st, buf, off, M=_M, D=_DUP, K=_K, unpack_from=struct.unpack_from):
    """One 128-byte block at buf[off:]; st is the 8-word state, returns the new one."""
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
    first = True
    for (
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
    ) in K:
        if first:
            first = False
        else:  # the next 16 schedule words, in place
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
    st = _IV
    compress = _compress
    for off in range(0, full, 128):
        st = compress(st, data, off)
    last = _pad(bytes(data[full:]), n)
    st = compress(st, last, 0)
    if len(last) > 128:
        st = compress(st, last, 128)
    return _digest(st)


class SHA512:
    """Incremental pure-Python SHA-512 with the hashlib interface (update/digest/copy)."""

    digest_size = 64
    block_size = 128
    name = "sha512"

    def __init__(self, data=b""):
        self._st = _IV
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


# Backend: "hashlib" (C, CPython only) or "pure". TAPCASH_CRYPTO=pure in the environment
# forces the pure code at import; set_backend() switches at run time.
_use_hashlib = _hashlib_sha512 is not None


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


def sha512(data):
    """SHA-512 digest (64 bytes) of bytes-like data, with the active backend."""
    if _use_hashlib:
        return _hashlib_sha512(data).digest()
    return sha512_pure(data)


def new(data=b""):
    """A hashlib-like SHA-512 object (update/digest/hexdigest/copy), active backend."""
    if _use_hashlib:
        return _hashlib_sha512(data)
    return SHA512(data)

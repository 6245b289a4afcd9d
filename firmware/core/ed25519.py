# Ed25519 signatures (RFC 8032): pure Python that runs on MicroPython, PyNaCl on CPython.
#
#   public_key(seed32) -> 32 bytes
#   sign(seed32, msg[, key]) -> 64 bytes     key: signing_key(seed32[, public32[, rfc]]), a
#                                               device's kept expansion (nonce from SHA-256, or
#                                               with rfc RFC 8032's and its bytes: see there)
#   verify(public32, msg, sig64) -> bool        False for anything malformed; raises only
#                                               MemoryError (out of RAM is not a bad signature)
#
# Verification is strict and decides every input exactly like libsodium's
# crypto_sign_ed25519_verify_detached (the library PyNaCl bundles), so a device, PyNaCl
# and the ledger accept the same signatures and reject the same ones:
#   1. S (sig[32:]) must be < L;
#   2. R (sig[:32]) must not be one of libsodium's 7 small-order encodings: the y-coordinate
#      (low 255 bits, sign bit ignored) is compared with 0, 1, p-1, the two order-8 y's, p
#      and p+1;
#   3. A (the public key) must be canonical (low 255 bits < p), must not be on the same
#      small-order list, and must decode to a curve point;
#   4. h = SHA-512(R || A || msg) mod L; the check is cofactorless: encode(S*B - h*A) must
#      equal R byte for byte (so a non-canonical or off-curve R never matches, and a
#      public key or R with a small-order component is judged by that exact equation).
#
# Backends: "nacl" (PyNaCl, CPython, chosen automatically when importable), "pure", and
# "host" (the simulator's MicroPython VM only: PyNaCl's calls answered by the VM's host through
# ed25519_vmhost.py, never on a board). TAPCASH_CRYPTO=pure in the environment forces pure at
# import; set_backend() switches.
#
# Speed notes for the pure code (MicroPython has arbitrary-precision ints; field elements
# are plain ints mod p = 2**255 - 19 and a multiplication followed by % p is the unit of
# cost; a product that only feeds additions and one more product is folded once instead:
# (v & M) + (v >> 255) * 19, which is congruent, < 2**262 and cheaper than % p in the VM):
# extended coordinates, formulas of ref10; k*B uses a signed radix-16 comb over a
# precomputed table (_ed25519_table, bytes, 64 mixed additions + 4 doublings);
# verification runs one doubling chain for S*B - h*A (Straus) with width-4 NAF digits
# of h over 4 odd multiples of -A (16 big ints on the heap; width 5 needs 32 of them for
# about 1.5% fewer point operations)
# and width-7 NAF digits of S over 32 odd multiples of B
# from the table; inversion is the extended Euclidean algorithm (cheaper here than a
# power), the square root a fixed addition chain that lets pow() do the long runs of
# squarings in C. The expanded secret key of the last seed and the decoded tables of the
# last two public keys are cached (clear_caches() drops them).
#
# Not constant time: big-int arithmetic in Python is not, so neither is this code. The
# pure signer fits devices whose timing an attacker cannot measure finely; PyNaCl signs
# in constant time on the host.
from . import sha512 as _sha512

# board: omit - a board's compiler folds the private const() names by name alone, and a
# module-level name is a dict entry while the module is imported (#13: the dict is one
# allocation, which PAY must find in one piece)
from .runtime import IS_MICROPYTHON, const

# board: end

# Digit arrays are signed bytes (array "b", made from bytes(n) per call), not lists of ints:
# 264 bytes instead of 264 pointers, which a fixed heap must find in one piece.

# Curve constants, 32-byte little-endian words in one bytes constant (_c(i) -> int): an int
# constant is a heap object for as long as the module is imported (about 160 bytes each on
# the 64-bit port, some 15 here), a bytes constant is read in place from flash (ROMFS,
# frozen). Each function converts the few it uses once per call.
_CP = const(0)  # p = 2**255 - 19
_CL = const(1)  # the group order
_CD = const(2)  # d = -121665/121666
_CD2 = const(3)  # 2*d
_CINV_D = const(4)  # 1/d
_CSQRTM1 = const(5)  # sqrt(-1)
_CY8 = const(6)  # 6, 7: the order-8 points' y (libsodium's small-order list)
_C = (
    b"\xed\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"
    b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f"  # p = 2**255 - 19
    b"\xed\xd3\xf5\x5c\x1a\x63\x12\x58\xd6\x9c\xf7\xa2\xde\xf9\xde\x14"
    b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x10"  # L, the group order
    b"\xa3\x78\x59\x13\xca\x4d\xeb\x75\xab\xd8\x41\x41\x4d\x0a\x70\x00"
    b"\x98\xe8\x79\x77\x79\x40\xc7\x8c\x73\xfe\x6f\x2b\xee\x6c\x03\x52"  # d = -121665/121666
    b"\x59\xf1\xb2\x26\x94\x9b\xd6\xeb\x56\xb1\x83\x82\x9a\x14\xe0\x00"
    b"\x30\xd1\xf3\xee\xf2\x80\x8e\x19\xe7\xfc\xdf\x56\xdc\xd9\x06\x24"  # 2*d
    b"\x43\xf8\xc9\xcd\x76\xf2\xe0\x25\x2e\x54\x79\x42\x98\xd6\x5d\x0b"
    b"\x66\xcf\xb9\xcd\x14\x21\x16\x2b\x43\xce\xd5\x14\xd2\x7e\x90\x40"  # 1/d
    b"\xb0\xa0\x0e\x4a\x27\x1b\xee\xc4\x78\xe4\x2f\xad\x06\x18\x43\x2f"
    b"\xa7\xd7\xfb\x3d\x99\x00\x4d\x2b\x0b\xdf\xc1\x4f\x80\x24\x83\x2b"  # sqrt(-1)
    b"\x26\xe8\x95\x8f\xc2\xb2\x27\xb0\x45\xc3\xf4\x89\xf2\xef\x98\xf0"
    b"\xd5\xdf\xac\x05\xd3\xc6\x33\x39\xb1\x38\x02\x88\x6d\x53\xfc\x05"  # an order-8 point's y
    b"\xc7\x17\x6a\x70\x3d\x4d\xd8\x4f\xba\x3c\x0b\x76\x0d\x10\x67\x0f"
    b"\x2a\x20\x53\xfa\x2c\x39\xcc\xc6\x4e\xc7\xfd\x77\x92\xac\x03\x7a"  # the other one
)


def _c(i):
    return int.from_bytes(_C[i << 5 : (i + 1) << 5], "little")


# Trailing zero bits of each byte value (0 -> 8), for the NAF recoding: a bytes constant, in
# place in flash (tests/firmware/test_ed25519.py checks it).
_TZ = (
    b"\x08\x00\x01\x00\x02\x00\x01\x00\x03\x00\x01\x00\x02\x00\x01\x00\x04\x00\x01\x00"
    b"\x02\x00\x01\x00\x03\x00\x01\x00\x02\x00\x01\x00\x05\x00\x01\x00\x02\x00\x01\x00"
    b"\x03\x00\x01\x00\x02\x00\x01\x00\x04\x00\x01\x00\x02\x00\x01\x00\x03\x00\x01\x00"
    b"\x02\x00\x01\x00\x06\x00\x01\x00\x02\x00\x01\x00\x03\x00\x01\x00\x02\x00\x01\x00"
    b"\x04\x00\x01\x00\x02\x00\x01\x00\x03\x00\x01\x00\x02\x00\x01\x00\x05\x00\x01\x00"
    b"\x02\x00\x01\x00\x03\x00\x01\x00\x02\x00\x01\x00\x04\x00\x01\x00\x02\x00\x01\x00"
    b"\x03\x00\x01\x00\x02\x00\x01\x00\x07\x00\x01\x00\x02\x00\x01\x00\x03\x00\x01\x00"
    b"\x02\x00\x01\x00\x04\x00\x01\x00\x02\x00\x01\x00\x03\x00\x01\x00\x02\x00\x01\x00"
    b"\x05\x00\x01\x00\x02\x00\x01\x00\x03\x00\x01\x00\x02\x00\x01\x00\x04\x00\x01\x00"
    b"\x02\x00\x01\x00\x03\x00\x01\x00\x02\x00\x01\x00\x06\x00\x01\x00\x02\x00\x01\x00"
    b"\x03\x00\x01\x00\x02\x00\x01\x00\x04\x00\x01\x00\x02\x00\x01\x00\x03\x00\x01\x00"
    b"\x02\x00\x01\x00\x05\x00\x01\x00\x02\x00\x01\x00\x03\x00\x01\x00\x02\x00\x01\x00"
    b"\x04\x00\x01\x00\x02\x00\x01\x00\x03\x00\x01\x00\x02\x00\x01\x00"
)

# The base-point tables: the bytes constants of _ed25519_table (frozen or ROMFS: read in
# place from flash; .py/.mpy on a filesystem: on the heap), or - when a deploy put them there
# instead - the file _ed25519_table.bin beside this module (COMB || ODD, 27,648 bytes), read
# one 96-byte entry at a time so the table never enters the heap.
_COMB_BYTES = const(24576)
_table_path = None
try:
    _table_path = __file__[: __file__.rfind("/") + 1] + "_ed25519_table.bin"
    open(_table_path, "rb").close()
except (NameError, OSError, AttributeError):
    _table_path = None


def _table(name):
    """(memoryview to index, open table file or None, offset of `name` in the file)."""
    if _table_path is not None:
        buf = bytearray(96)
        return memoryview(buf), open(_table_path, "rb"), 0 if name == "COMB" else _COMB_BYTES
    from . import _ed25519_table

    return memoryview(getattr(_ed25519_table, name)), None, 0


_A_CACHE_MAX = const(2)
_a_cache = []  # [(public key bytes, table of odd multiples of -A)], most recent first
_key_cache = None  # (seed, a, prefix, public key) of the last seed used


def clear_caches():
    """Forget the cached expanded secret keys (pure and PyNaCl) and decoded public keys."""
    global _key_cache
    # board: omit
    _nacl_keys.clear()
    # board: end
    _key_cache = None
    del _a_cache[:]


# --- field -------------------------------------------------------------------------------


def _inv(z):
    """1/z mod p (z not 0 mod p), extended Euclid: ~150 divisions beat a 255-bit power."""
    P = _c(_CP)
    a, b, u0, u1 = P, z % P, 0, 1
    while b:
        q = a // b
        a, b = b, a - q * b
        u0, u1 = u1, u0 - q * u1
    return u0 % P


# --- points ------------------------------------------------------------------------------


def _encode(X, Y, Z):
    """Canonical 32-byte encoding of the projective point (X : Y : Z)."""
    P = _c(_CP)
    zi = _inv(Z)
    x = X * zi % P
    y = Y * zi % P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _decode_neg(s):
    """-A as extended (X, Y, Z, T) from a canonical encoding s, or None when off the curve.

    Mirrors ge25519_frombytes_negate_vartime: x = u*v^3*(u*v^7)^((p-5)/8) with u = y^2-1,
    v = d*y^2+1, times sqrt(-1) when v*x^2 == -u, none when neither; then the root whose
    parity differs from the sign bit (so -A) is taken; x = 0 with the sign bit set is not
    refused here (those encodings are on the small-order list, checked before).
    """
    P = _c(_CP)
    y = int.from_bytes(s, "little") & (P + 18)
    yy = y * y % P
    u = yy - 1
    v = _c(_CD) * yy + 1
    v3 = v * v % P * v % P
    # x = u*v3 * z**(2**252 - 3), z = u*v^7 (ref10's chain; pow() runs the squaring
    # stretches in C)
    z = u * v3 % P * v3 % P * v % P
    t0 = z * z % P  # 2
    t1 = t0 * t0 % P
    t1 = t1 * t1 % P  # 8
    t1 = z * t1 % P  # 9
    t0 = t0 * t1 % P  # 11
    t0 = t0 * t0 % P  # 22
    t0 = t1 * t0 % P  # 2**5 - 1
    t1 = pow(t0, 32, P)
    t0 = t1 * t0 % P  # 2**10 - 1
    t1 = pow(t0, 1 << 10, P)
    t1 = t1 * t0 % P  # 2**20 - 1
    t2 = pow(t1, 1 << 20, P)
    t1 = t2 * t1 % P  # 2**40 - 1
    t1 = pow(t1, 1 << 10, P)
    t0 = t1 * t0 % P  # 2**50 - 1
    t1 = pow(t0, 1 << 50, P)
    t1 = t1 * t0 % P  # 2**100 - 1
    t2 = pow(t1, 1 << 100, P)
    t1 = t2 * t1 % P  # 2**200 - 1
    t1 = pow(t1, 1 << 50, P)
    t0 = t1 * t0 % P  # 2**250 - 1
    t0 = pow(t0, 4, P)  # 2**252 - 4
    z = t0 * z % P  # 2**252 - 3
    x = u * v3 % P * z % P
    vxx = v * x % P * x % P
    if (vxx - u) % P:
        if (vxx + u) % P:
            return None
        x = x * _c(_CSQRTM1) % P
    if (x & 1) == (s[31] >> 7):
        x = (P - x) % P
    return x, y, 1, x * y % P


def _a_table(pk):
    """Odd multiples 1, 3, 5, 7 of -A in cached form (Y+X, Y-X, 2Z, 2dT), or None."""
    for i in range(len(_a_cache)):
        entry = _a_cache[i]
        if entry[0] == pk:
            if i:
                del _a_cache[i]
                _a_cache.insert(0, entry)
            return entry[1]
    point = _decode_neg(pk)
    if point is None:
        return None
    P = _c(_CP)
    M = P + 18  # 2**255 - 1
    D2 = _c(_CD2)
    X, Y, Z, T = point
    tab = [(Y + X) % P, (Y - X) % P, 2, T * D2 % P]
    # 2*(-A) in extended coordinates (doubling with T)
    xx = X * X % P
    yy = Y * Y % P
    zz2 = Z * Z % P << 1
    s = X + Y
    px = s * s % P - yy - xx
    py = yy + xx
    pz = yy - xx
    pt = zz2 - pz
    X2 = px * pt % P
    Y2 = py * pz % P
    Z2 = pz * pt % P
    T2 = px * py % P
    ypx2 = Y2 + X2
    ymx2 = Y2 - X2
    z22 = Z2 << 1
    t2d2 = T2 * D2 % P
    for _ in range(3):  # next odd multiple = previous + 2*(-A)
        v = (Y - X) * ymx2
        a = (v & M) + (v >> 255) * 19
        v = (Y + X) * ypx2
        b = (v & M) + (v >> 255) * 19
        v = T * t2d2
        c = (v & M) + (v >> 255) * 19
        v = Z * z22
        d = (v & M) + (v >> 255) * 19
        e = b - a
        f = d - c
        g = d + c
        h = b + a
        X = e * f % P
        Y = g * h % P
        Z = f * g % P
        T = e * h % P
        tab.append((Y + X) % P)
        tab.append((Y - X) % P)
        tab.append(Z << 1)
        tab.append(T * D2 % P)
    _a_cache.insert(0, (pk, tab))
    del _a_cache[_A_CACHE_MAX:]
    return tab


def _base_mul_with(k, tb=None, tf=None, more=None):
    """k*B for 0 <= k < 2**255 as extended (X, Y, Z, T): signed radix-16 comb, ref10 style,
    from B's table (tb: a view of it, or the 96 bytes tf, its open file, is read into; None:
    opened here, one function less among the module's names (#13));
    `more`: (h, view, file) of a second product h*Q added in the same walk (comb.py: a key's
    table, the same layout after a 32-byte header in that file), one doubling chain for both."""
    if tb is None:
        tb, tf, _ = _table("COMB")
        try:
            return _base_mul_with(k, tb, tf, more)
        finally:
            if tf is not None:
                tf.close()
    from array import array

    P = _c(_CP)
    M = P + 18  # 2**255 - 1
    frm = int.from_bytes
    n = 64 if more is None else 128
    e = array("b", bytes(n))  # digits in -8..8 with k = sum(e[i] * 16**i), then h's
    for j in range(0, n, 64):
        kb = (more[0] if j else k).to_bytes(32, "little")
        carry = 0
        for i in range(j, j + 64, 2):
            v = kb[(i - j) >> 1]
            lo = (v & 15) + carry
            carry = (lo + 8) >> 4
            e[i] = lo - (carry << 4)
            hi = (v >> 4) + carry
            carry = (hi + 8) >> 4
            e[i + 1] = hi - (carry << 4)
        e[j + 63] += carry << 4
    X = 0
    Y = 1
    Z = 1
    T = 0
    first = True
    for half in (1, 0):
        if not half:  # multiply the odd-digit sum by 16
            for _ in range(4):
                v = X * X
                xx = (v & M) + (v >> 255) * 19
                v = Y * Y
                yy = (v & M) + (v >> 255) * 19
                v = Z * Z
                zz2 = ((v & M) + (v >> 255) * 19) << 1
                v = X + Y
                v = v * v
                py = yy + xx
                pz = yy - xx
                px = (v & M) + (v >> 255) * 19 - py
                pt = zz2 - pz
                X = px * pt % P
                Y = py * pz % P
                Z = pz * pt % P
            T = px * py % P  # only the last doubling's T is used: the next addition needs it
        for i in range(half, 64, 2):
            for j in range(0, n, 64):
                d = e[i + j]
                if not d:
                    continue
                o = ((i >> 1) * 8 + (d if d > 0 else -d) - 1) * 96
                vb = tb
                vf = tf
                if j:
                    vb = more[1]
                    vf = more[2]
                    o += 32
                if vf is not None:
                    vf.seek(o)
                    vf.readinto(vb)
                    o = 0
                if d > 0:
                    ypx = frm(vb[o : o + 32], "little")
                    ymx = frm(vb[o + 32 : o + 64], "little")
                    t2 = frm(vb[o + 64 : o + 96], "little")
                else:
                    ymx = frm(vb[o : o + 32], "little")
                    ypx = frm(vb[o + 32 : o + 64], "little")
                    t2 = -frm(vb[o + 64 : o + 96], "little")
                if first:  # identity + Q: (2x : 2y : 2 : 2xy) straight from the Niels form
                    first = False
                    X = ypx - ymx
                    Y = ypx + ymx
                    Z = 2
                    T = t2 * _c(_CINV_D) % P
                    continue
                v = (Y - X) * ymx
                a = (v & M) + (v >> 255) * 19
                v = (Y + X) * ypx
                b = (v & M) + (v >> 255) * 19
                v = T * t2
                c = (v & M) + (v >> 255) * 19
                dd = Z << 1
                ee = b - a
                f = dd - c
                g = dd + c
                h = b + a
                X = ee * f % P
                Y = g * h % P
                Z = f * g % P
                T = ee * h % P
    return X, Y, Z, T


def _naf(k, w, out):
    """Width-w NAF digits of k >= 0 into out[i] (odd, |d| < 2**(w-1)); returns top index + 1."""
    mask = (1 << w) - 1
    half = 1 << (w - 1)
    tz = _TZ
    i = 0
    while k:
        low = k & 255
        if not low:
            k >>= 8
            i += 8
            continue
        z = tz[low]
        if z:
            k >>= z
            i += z
        d = k & mask
        if d >= half:
            d -= mask + 1
        out[i] = d
        k = (k - d) >> w
        i += w
    return i


def _double_scalarmult_with(h, atab, s, tb, tf, base):
    P = _c(_CP)
    M = P + 18  # 2**255 - 1
    frm = int.from_bytes
    from array import array

    na = array("b", bytes(264))
    nb = array("b", bytes(264))
    top = max(_naf(h, 4, na), _naf(s, 7, nb))
    if top > 263:
        top = 263
    while top >= 0 and not (na[top] or nb[top]):
        top -= 1
    X = 0
    Y = 1
    Z = 1
    T = 0
    for i in range(top, -1, -1):
        # double (X : Y : Z) into the completed point (px, py, pz, pt)
        v = X * X
        xx = (v & M) + (v >> 255) * 19
        v = Y * Y
        yy = (v & M) + (v >> 255) * 19
        v = Z * Z
        zz2 = ((v & M) + (v >> 255) * 19) << 1
        v = X + Y
        v = v * v
        py = yy + xx
        pz = yy - xx
        px = (v & M) + (v >> 255) * 19 - py
        pt = zz2 - pz
        da = na[i]
        if da:
            X = px * pt % P
            Y = py * pz % P
            Z = pz * pt % P
            T = px * py % P
            if da > 0:
                o = (da >> 1) << 2
                ypx = atab[o]
                ymx = atab[o + 1]
                t2 = atab[o + 3]
            else:
                o = (-da >> 1) << 2
                ymx = atab[o]
                ypx = atab[o + 1]
                t2 = -atab[o + 3]
            v = (Y - X) * ymx
            a = (v & M) + (v >> 255) * 19
            v = (Y + X) * ypx
            b = (v & M) + (v >> 255) * 19
            v = T * t2
            c = (v & M) + (v >> 255) * 19
            v = Z * atab[o + 2]
            d = (v & M) + (v >> 255) * 19
            px = b - a
            py = b + a
            pz = d + c
            pt = d - c
        db = nb[i]
        if db:
            X = px * pt % P
            Y = py * pz % P
            Z = pz * pt % P
            T = px * py % P
            o = ((db if db > 0 else -db) >> 1) * 96
            if tf is not None:
                tf.seek(base + o)
                tf.readinto(tb)
                o = 0
            if db > 0:
                ypx = frm(tb[o : o + 32], "little")
                ymx = frm(tb[o + 32 : o + 64], "little")
                t2 = frm(tb[o + 64 : o + 96], "little")
            else:
                ymx = frm(tb[o : o + 32], "little")
                ypx = frm(tb[o + 32 : o + 64], "little")
                t2 = -frm(tb[o + 64 : o + 96], "little")
            v = (Y - X) * ymx
            a = (v & M) + (v >> 255) * 19
            v = (Y + X) * ypx
            b = (v & M) + (v >> 255) * 19
            v = T * t2
            c = (v & M) + (v >> 255) * 19
            d = Z << 1
            px = b - a
            py = b + a
            pz = d + c
            pt = d - c
        X = px * pt % P
        Y = py * pz % P
        Z = pz * pt % P
    return X, Y, Z


# --- the pure scheme ---------------------------------------------------------------------


def _expansion(seed, pk=None, cached=False):
    """(seed, a, prefix, public key) of a 32-byte seed: one SHA-512 block, and a base point
    multiplication unless the caller holds the public key already; `cached`: the last seed's
    is kept (and taken when it is this one)."""
    global _key_cache
    if cached:
        kc = _key_cache
        if kc is not None and kc[0] == seed:
            return kc
        kc = _key_cache = _expansion(seed)
        return kc
    digest = _sha512.sha512(seed)
    top = (_c(_CP) + 19) >> 1  # 2**254 (an expression of constants would be folded into one)
    a = (int.from_bytes(digest[:32], "little") & (top - 8)) | top
    if pk is None:
        X, Y, Z, _ = _base_mul_with(a)
        pk = _encode(X, Y, Z)
    return seed, a, digest[32:], pk


def signing_key(seed, public=None, rfc=False):
    """The expanded key of a seed for sign(seed, msg, key): a device keeps it while it runs, so
    a signature costs no key derivation although this module (and its one-seed cache) may be
    released between commands or shared with another signer; and its nonce takes two SHA-256
    instead of a SHA-512 (_key_nonce: the signature verifies alike, only its bytes are not RFC
    8032's deterministic ones; PyNaCl's backend makes the same bytes). With `rfc` the nonce is
    RFC 8032's, SHA-512(prefix || msg): the signatures are sign(seed, msg)'s, byte for byte
    (the POS's, whose receipts golden transcripts hold). `public`: the seed's public key when
    the caller holds it (a wrong one only makes the signatures invalid)."""
    seed = _as_bytes(seed, True)
    if public is not None and (not isinstance(public, bytes) or len(public) != 32):
        raise ValueError("public key must be 32 bytes")
    # board: omit
    if public is None and _use_nacl:
        public = _nacl_secret(seed)[32:]
    # board: end
    key = _expansion(seed, public)
    return key + (True,) if rfc else key


# board: omit - PyNaCl's (see below)
def _sign_keyed_nacl(key, msg):
    """sign(seed, msg, key) with libsodium's arithmetic: the same bytes as the pure code."""
    nb = _load_nacl()
    _seed_, a, prefix, pk = key
    r = _key_nonce(prefix, msg)
    rb = nb.crypto_scalarmult_ed25519_base_noclamp(r.to_bytes(32, "little"))
    L = _c(_CL)
    k = int.from_bytes((_host_sha512 or _sha512.sha512)(rb + pk + msg), "little") % L
    return rb + ((r + k * a) % L).to_bytes(32, "little")


# board: end


def _key_nonce(prefix, msg):
    """r of a signature with a signing_key: what RFC 8032's SHA-512(prefix || msg) is for, a
    secret function of the key's prefix and the message (one message always gets one r, two
    messages never share one, nothing else can tell it from random), from two SHA-256 (C in
    MicroPython's hashlib) instead of a SHA-512 in Python: 512 bits reduced mod L, as RFC
    8032's. Verification cannot tell: the signature equation is the same."""
    from .runtime import sha256

    h = sha256(prefix)
    h.update(b"\x00")
    h.update(msg)
    lo = h.digest()
    h = sha256(prefix)
    h.update(b"\x01")
    h.update(msg)
    return int.from_bytes(lo + h.digest(), "little") % _c(_CL)


def _sign_pure(seed, msg, key=None):
    L = _c(_CL)
    if key is not None and key[0] == seed:
        a, prefix, pk = key[1], key[2], key[3]
        if len(key) > 4:  # signing_key(..., rfc=True): RFC 8032's nonce
            r = int.from_bytes(_sha512.sha512(prefix + msg), "little") % L
        else:
            r = _key_nonce(prefix, msg)
    else:
        _, a, prefix, pk = _expansion(seed, None, True)
        r = int.from_bytes(_sha512.sha512(prefix + msg), "little") % L
    X, Y, Z, _ = _base_mul_with(r)
    rb = _encode(X, Y, Z)
    k = int.from_bytes(_sha512.sha512(rb + pk + msg), "little") % L
    return rb + ((r + k * a) % L).to_bytes(32, "little")


def _small_order(s, P):
    """Is s (low 255 bits) one of libsodium's small-order y's (ge25519_has_small_order): 0,
    1, the two order-8 points' y, p-1, and the non-canonical p and p+1?"""
    y = int.from_bytes(s, "little") & (P + 18)
    return y < 2 or P - 1 <= y <= P + 1 or y == _c(_CY8) or y == _c(_CY8 + 1)


def _verify_pure(pk, msg, sig, table=None):
    rb = sig[:32]
    s = int.from_bytes(sig[32:], "little")
    P = _c(_CP)
    L = _c(_CL)
    if s >= L or _small_order(rb, P):
        return False
    if (int.from_bytes(pk, "little") & (P + 18)) >= P or _small_order(pk, P):
        return False
    if table is not None:  # the key's table, when the caller keeps one (comb.py)
        from . import comb

        ok = comb.verify(pk, msg, rb, s, table)
        if ok is not None:
            return ok
    atab = _a_table(pk)
    if atab is None:
        return False
    h = int.from_bytes(_sha512.sha512(rb + pk + msg), "little") % L
    tb, tf, base = _table("ODD")  # h*(-A) + s*B, one shared doubling chain
    try:
        X, Y, Z = _double_scalarmult_with(h, atab, s, tb, tf, base)
    finally:
        if tf is not None:
            tf.close()
    return _encode(X, Y, Z) == rb


# --- PyNaCl and the backend switch --------------------------------------------------------

# board: omit - PyNaCl and the switch to it are CPython's; a board runs the pure code and
# host/device/fold.py leaves these lines out of its copy (their functions and names would
# be on the heap of every signature)
_use_nacl = False
# PyNaCl wants the 64-byte expanded secret; deriving it costs about a third of a signature.
# Remember it per seed (CPython only, where a host process may stand in for many devices).
_nacl_keys = {}
_nacl = None  # nacl.bindings once loaded (backend "host": ed25519_vmhost, its stand-in)
_host_sha512 = None  # backend "host": the host's SHA-512 (the VM's own is pure Python)
_NACL_KEYS_MAX = 65536


def _load_nacl():
    global _nacl
    if _nacl is None:
        import nacl.bindings  # noqa: PLC0415 - optional, CPython only

        _nacl = nacl.bindings
    return _nacl


def _nacl_secret(seed):
    sk = _nacl_keys.get(seed)
    if sk is None:
        if len(_nacl_keys) >= _NACL_KEYS_MAX:
            _nacl_keys.clear()
        sk = _load_nacl().crypto_sign_seed_keypair(seed)[1]
        _nacl_keys[seed] = sk
    return sk


def _nacl_available():
    if IS_MICROPYTHON:
        return False
    try:
        _load_nacl()
    except ImportError:
        return False
    return True


def set_backend(name):
    """Select "pure", "nacl", "auto" (PyNaCl when importable) or "host" (a simulator VM's
    host, ed25519_vmhost; ImportError elsewhere); returns backend()."""
    global _use_nacl, _nacl, _host_sha512
    if name == "host":
        from . import ed25519_vmhost as host  # noqa: PLC0415 - only where a VM host serves it

        _nacl, _host_sha512, _use_nacl = host, host.crypto_hash_sha512, True
        _nacl_keys.clear()
        return backend()
    if _host_sha512 is not None:  # leaving "host": PyNaCl's bindings again, when loaded
        _nacl = _host_sha512 = None
        _nacl_keys.clear()
    if name == "pure":
        _use_nacl = False
    elif name == "nacl":
        if not _nacl_available():
            raise ValueError("PyNaCl is not available here")
        _use_nacl = True
    elif name == "auto":
        _use_nacl = _nacl_available()
    else:
        raise ValueError("backend must be 'pure', 'nacl', 'auto' or 'host'")
    return backend()


def backend():
    """The active backend: "nacl", "host" or "pure"."""
    if not _use_nacl:
        return "pure"
    return "host" if _host_sha512 is not None else "nacl"


def _env_backend():
    try:
        import os

        return os.getenv("TAPCASH_CRYPTO")
    except (ImportError, AttributeError):
        return None


set_backend("pure" if _env_backend() == "pure" else "auto")
# board: end


# --- public API --------------------------------------------------------------------------


def _as_bytes(x, seed=False):
    """x as bytes, or None when it is not bytes-like; `seed`: a 32-byte seed, or an error."""
    if isinstance(x, (bytearray, memoryview)):
        x = bytes(x)
    elif not isinstance(x, bytes):
        x = None
    if seed:
        if x is None:
            raise TypeError("seed must be bytes")
        if len(x) != 32:
            raise ValueError("seed must be 32 bytes")
    return x


def public_key(seed):
    """The 32-byte public key of a 32-byte seed (RFC 8032 private key)."""
    seed = _as_bytes(seed, True)
    # board: omit
    if _use_nacl:
        return _nacl_secret(seed)[32:]
    # board: end
    return _expansion(seed, None, True)[3]


def sign(seed, msg, key=None):
    """The 64-byte Ed25519 signature of msg (bytes) under the 32-byte seed; `key`: the seed's
    signing_key(), used when it is that seed's (its nonce is not RFC 8032's, on either backend,
    unless made with rfc: see signing_key)."""
    seed = _as_bytes(seed, True)
    m = _as_bytes(msg)
    if m is None:
        raise TypeError("msg must be bytes")
    # board: omit
    if key is not None and _use_nacl and key[0] == seed:
        if len(key) > 4:  # RFC 8032's nonce: libsodium's own signature, its secret seed || A
            return _load_nacl().crypto_sign(m, seed + key[3])[:64]
        return _sign_keyed_nacl(key, m)
    if _use_nacl:
        return _load_nacl().crypto_sign(m, _nacl_secret(seed))[:64]
    # board: end
    return _sign_pure(seed, m, key)


def verify(public, msg, sig, table=None):
    """True iff sig is a valid signature of msg under public; False for anything else.
    `table`: None, or a function of the public key that opens its key table (comb.py; None
    when there is none): the pure code then multiplies by the key from that table, deciding
    alike (the same strict checks first, the same equation; not the key's whole table: not
    used).
    MemoryError propagates: a verifier out of RAM has not decided anything (envelope.sig_ok
    retries once after a collection, then answers SW_NO_RAM)."""
    try:
        pk = _as_bytes(public)
        m = _as_bytes(msg)
        sg = _as_bytes(sig)
        if pk is None or m is None or sg is None or len(pk) != 32 or len(sg) != 64:
            return False
        # board: omit
        if _use_nacl:
            try:
                _load_nacl().crypto_sign_open(sg + m, pk)
            except Exception:
                return False
            return True
        # board: end
        return _verify_pure(pk, m, sg, table)
    except MemoryError:
        raise
    except Exception:  # belt and braces: nothing else leaves verify
        return False

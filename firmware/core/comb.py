# Key tables: the radix-16 comb of a public key's negation, so that ed25519.verify multiplies
# by a key it knows as it multiplies by the base point: S*B + h*(-A) as one walk over both
# tables sharing 4 doublings (ed25519._base_mul_with, 128 mixed additions), instead of a chain
# of about 253 doublings. A card builds one per issuer key once, outside a payment (combgen.py,
# after the LOAD of an earmarked purse: PAY then checks POS certificates under that key), and
# keeps it in flash, read one 96-byte entry at a time: no heap for it at a verify. Imported
# only where a table is used.
#
#   opener(flash, keys)                    what ed25519.verify takes as `table` for the tables
#                                           of keys (keys[i]: blob PREFIX + str(i))
#   open_blob(flash, name)                 a blob as an open read-only file
#   verify(pk, msg, rb, s, table)          ed25519's tabled path: True / False, None = no table
#
# Blob: the key (32 bytes), then 32 x 8 entries of 96 bytes, entry 8*i + j = (j + 1) *
# 256**i * (-A) as y+x, y-x, 2dxy (affine, mod p, little-endian): _ed25519_table.COMB's layout
# for -A. Written as one write and appends, so a power cut leaves a prefix, which verify does
# not take: it then decides without it. A table is not a secret and decides nothing: verify
# makes the strict checks before it is opened, checks its size, the key it names and its first
# entry (-A on the curve: a key that does not decode never has a table) and computes the same
# equation; the rest is trusted as written (docs/SECURITY.md 3.11).
from . import ed25519 as _ed
from . import sha512 as _sha512
from .runtime import const

TABLE_BYTES = const(24608)  # the key, then 256 entries of 96 bytes
PREFIX = "keytab"  # + the key's index in the device's issuer list: the blob's name


def opener(flash, keys):
    def table(pk):
        for i in range(len(keys)):
            if keys[i] == pk:
                return open_blob(flash, PREFIX + str(i))
        return None

    return table


def open_blob(flash, name):
    """Blob `name` of a hal.Flash as an open read-only file (seek, readinto, close), or None
    when missing: core FileFlash's own file (no heap for the blob, no open per read); a
    flash that wraps another (the simulator's) may offer open_blob(name); any other flash's
    blob is read whole into a BytesIO."""
    path = getattr(flash, "_path", None)  # FileFlash (a method here, not in the resident module)
    if path is not None:
        try:
            return open(path(name), "rb")
        except OSError:
            return None
    f = getattr(flash, "open_blob", None)
    if f is not None:
        return f(name)
    data = flash.read(name)
    if data is None:
        return None
    from io import BytesIO

    return BytesIO(data)


def verify(pk, msg, rb, s, table):
    """encode(s*B - h*A) == rb with A's table (ed25519._verify_pure, after its strict checks
    of s, rb and pk), or None when table(pk) opens no whole table of pk."""
    try:
        tf = table(pk)
    except MemoryError:
        raise
    except Exception:  # no table to read: ed25519 decides without one
        return None
    if tf is None:
        return None
    try:
        buf = bytearray(96)
        if not _is_table_of(pk, tf, buf):
            return None
        L = _ed._c(1)  # ed25519._CL
        h = int.from_bytes(_sha512.sha512(rb + pk + msg), "little") % L
        tb, bf, _ = _ed._table("COMB")
        try:
            X, Y, Z, _ = _ed._base_mul_with(s, tb, bf, (h, memoryview(buf), tf))
        finally:
            if bf is not None:
                bf.close()
        return _ed._encode(X, Y, Z) == rb
    finally:
        tf.close()


def _is_table_of(pk, tf, buf):
    """Is the open file tf a whole table of pk: its size, the key it names, and its first
    entry -A: on the curve (so pk decodes), its y pk's and its x of the opposite sign."""
    if tf.seek(0, 2) != TABLE_BYTES:
        return False
    tf.seek(0)
    tf.readinto(buf)
    if buf[:32] != pk:
        return False
    c = _ed._c
    P = c(0)
    frm = int.from_bytes
    ypx = frm(buf[32:64], "little")
    ymx = frm(buf[64:96], "little")
    tf.readinto(buf)
    t2 = frm(buf[:32], "little")
    x2 = (ypx - ymx) % P  # 2x
    y2 = (ypx + ymx) % P  # 2y
    if y2 != (int.from_bytes(pk, "little") & (P + 18)) * 2 % P:
        return False
    x = x2 >> 1 if not x2 & 1 else (x2 + P) >> 1
    if not x or (x & 1) == (pk[31] >> 7):
        return False
    xx = x2 * x2 % P
    yy = y2 * y2 % P
    d = c(2)  # ed25519._CD
    # on the curve, times 16 for (x2, y2) = (2x, 2y): 4(y^2 - x^2) = 16 + d x^2 y^2; and
    # the entry's 2dxy: 2 * t2 = d * x2 * y2
    if ((yy - xx) * 4 - 16 - d * xx % P * yy) % P:
        return False
    return (2 * t2 - d * x2 % P * y2) % P == 0

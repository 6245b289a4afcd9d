# Building key tables (comb.py): a device's flash gets the table of each of its issuer keys.
#
#   store(flash, name, public) -> bool     build and write the blob; False when public does
#                                           not decode (verify refuses such a key anyway)
#   ok(flash, name, public) -> bool        does the blob hold a whole table of that key
#   build(flash, keys)                     store the table of each key lacking a whole one
#
# About 50 ms a key in the MicroPython VM: 256 points (8 multiples per position, 5 doublings to
# the next), one inversion per position for its 8 points (Montgomery's trick), appended one
# position (768 bytes) at a time (a 3 KB buffer of 4 found no room in a purse card's heap).
from . import ed25519 as _ed
from .comb import PREFIX, TABLE_BYTES
from .runtime import const

_CHUNK = const(1)  # positions per append: 768 bytes of heap at a time


def ok(flash, name, public):
    if flash.size(name) != TABLE_BYTES:
        return False
    return flash.read_at(name, 0, 32) == public


def build(flash, keys):
    for i in range(len(keys)):
        if not ok(flash, PREFIX + str(i), keys[i]):
            store(flash, PREFIX + str(i), keys[i])


def store(flash, name, public):
    point = _ed._decode_neg(public) if len(public) == 32 else None
    if point is None:
        return False
    flash.write(name, public)
    buf = bytearray(96 * 8 * _CHUNK)
    n = 0
    for _ in _positions(point, buf):
        n += 1
        if n == _CHUNK:
            flash.append(name, buf)
            n = 0
    return True


def _fit(v):
    """v (0 <= v < 2**256) as an int of its own size: a remainder mod p keeps the digits of
    the product it came from (about twice as many), and a position's 8 points and their
    products are alive together (#13: the builder ran out of heap on a purse card)."""
    return int.from_bytes(v.to_bytes(32, "little"), "little")


def _positions(point, buf):
    """Fill buf with the comb's positions, _CHUNK at a time; yields after each position."""
    c = _ed._c
    P = c(0)  # ed25519._CP
    D2 = c(3)  # ed25519._CD2: 2*d
    X, Y, Z, T = point
    slot = 0
    for _ in range(32):
        # (j + 1) * Q for j = 0..7, Q = 256**i * (-A): Q, then + Q seven times; each point's
        # (X, Y, Z) is kept, its T only until the next addition
        ypx = (Y + X) % P
        ymx = (Y - X) % P
        z2 = Z << 1
        t2d = T * D2 % P
        pts = [(X, Y, Z)]
        t1 = T
        for _ in range(7):
            x1, y1, z1 = pts[-1]
            a = (y1 - x1) * ymx % P
            b = (y1 + x1) * ypx % P
            cc = t1 * t2d % P
            d = z1 * z2 % P
            e = b - a
            f = d - cc
            g = d + cc
            h = b + a
            t1 = e * h % P
            pts.append((_fit(e * f % P), _fit(g * h % P), _fit(f * g % P)))
        a = b = cc = d = e = f = g = h = t1 = ypx = ymx = z2 = t2d = None  # their heap, below
        # one inversion for the eight Z's (Montgomery's trick)
        acc = [1] * 8
        run = 1
        for j in range(8):
            acc[j] = run
            run = _fit(run * pts[j][2] % P)
        inv = _ed._inv(run)
        X, Y, Z = pts[7]  # the next position starts from the last point
        run = None
        o = slot * 768
        for j in range(7, -1, -1):
            x1, y1, z1 = pts[j]
            pts[j] = None
            zi = inv * acc[j] % P
            acc[j] = None
            inv = inv * z1 % P
            x = x1 * zi % P
            y = y1 * zi % P
            k = o + j * 96
            buf[k : k + 32] = ((y + x) % P).to_bytes(32, "little")
            buf[k + 32 : k + 64] = ((y - x) % P).to_bytes(32, "little")
            buf[k + 64 : k + 96] = (x * y % P * D2 % P).to_bytes(32, "little")
        x = y = zi = inv = x1 = y1 = z1 = None
        # the next Q = 256 * Q = 32 * (8 * Q): five doublings of the last point
        for _ in range(5):
            xx = X * X % P
            yy = Y * Y % P
            zz2 = Z * Z % P << 1
            s = X + Y
            px = s * s % P - yy - xx
            py = yy + xx
            pz = yy - xx
            pt = zz2 - pz
            X = px * pt % P
            Y = py * pz % P
            Z = pz * pt % P
        T = px * py % P
        slot += 1
        if slot == _CHUNK:
            slot = 0
        yield

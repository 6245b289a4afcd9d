"""firmware/core/ed25519.py on CPython, both backends, against PyNaCl (libsodium).

* RFC 8032 vectors (from the portable module) with the pure and the PyNaCl backend;
* random seeds and messages: pure and PyNaCl agree byte for byte, each verifies the other;
* a strictness corpus built here with an independent reference implementation (affine
  big-int arithmetic, nothing shared with the firmware code): S >= L, small-order R and A
  in all 14 encodings with would-be-valid equations, non-canonical and off-curve R and A,
  mixed-order A and R (some that libsodium accepts), flipped bits, wrong lengths, junk
  types, plus the Taming and CCTV vectors; every entry must be decided exactly as PyNaCl
  decides it;
* the fixed-base tables rebuilt from scratch (run this file with `tables` to print them);
* backend switching, caches, errors.
"""

import hashlib
import importlib.util
import math
import os
import pathlib
import random
import subprocess
import sys

import nacl.bindings
import nacl.signing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tapcash.firmware.core import _ed25519_table, comb, combgen, ed25519, hal

_spec = importlib.util.spec_from_file_location(
    "_portable_ed25519", pathlib.Path(__file__).parent / "portable" / "test_core_ed25519.py"
)
assert _spec is not None and _spec.loader is not None
portable = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(portable)

# --- an independent reference: affine Edwards arithmetic with Python ints ---------------

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
SQRTM1 = pow(2, (P - 1) // 4, P)
Point = tuple[int, int]
IDENTITY: Point = (0, 1)


def inv(x: int) -> int:
    return pow(x, P - 2, P)


def add(p: Point, q: Point) -> Point:
    x1, y1 = p
    x2, y2 = q
    t = D * x1 * x2 * y1 * y2 % P
    return ((x1 * y2 + x2 * y1) * inv(1 + t) % P, (y1 * y2 + x1 * x2) * inv(1 - t) % P)


def neg(p: Point) -> Point:
    return ((-p[0]) % P, p[1])


def mul(k: int, p: Point) -> Point:
    """k*p by double-and-add in extended coordinates, one inversion at the end."""
    d2 = 2 * D % P
    x, y = p
    qx, qy, qz, qt = x, y, 1, x * y % P  # the running power of two times p
    rx, ry, rz, rt = 0, 1, 1, 0  # the result
    while k:
        if k & 1:
            a = (ry - rx) * (qy - qx) % P
            b = (ry + rx) * (qy + qx) % P
            c = rt * d2 * qt % P
            dd = 2 * rz * qz % P
            e, f, g, h = b - a, dd - c, dd + c, b + a
            rx, ry, rz, rt = e * f % P, g * h % P, f * g % P, e * h % P
        a = (qy - qx) * (qy - qx) % P
        b = (qy + qx) * (qy + qx) % P
        c = qt * d2 * qt % P
        dd = 2 * qz * qz % P
        e, f, g, h = b - a, dd - c, dd + c, b + a
        qx, qy, qz, qt = e * f % P, g * h % P, f * g % P, e * h % P
        k >>= 1
    zi = inv(rz)
    return (rx * zi % P, ry * zi % P)


def x_from_y(y: int, sign: int) -> int | None:
    """The x with parity `sign` on the curve at y (y < p), or None."""
    x2 = (y * y - 1) * inv(D * y * y + 1) % P
    if x2 == 0:
        return 0 if sign == 0 else None
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P:
        x = x * SQRTM1 % P
    if (x * x - x2) % P:
        return None
    return x if x & 1 == sign else P - x


B: Point = (x_from_y(4 * inv(5) % P, 0) or 0, 4 * inv(5) % P)


def enc(p: Point) -> bytes:
    return (p[1] | (p[0] & 1) << 255).to_bytes(32, "little")


def enc_y(y: int, sign: int) -> bytes:
    """Any 255-bit y with a sign bit, canonical or not."""
    return (y | sign << 255).to_bytes(32, "little")


def hint(*parts: bytes) -> int:
    return int.from_bytes(hashlib.sha512(b"".join(parts)).digest(), "little")


def _order8_point() -> Point:
    # x = sqrt(-1) * y on an order-8 point: d*y^4 + 2*y^2 - 1 = 0
    def sqrt(a: int) -> int:
        r = pow(a, (P + 3) // 8, P)
        if (r * r - a) % P:
            r = r * SQRTM1 % P
        assert (r * r - a) % P == 0
        return r

    disc = sqrt((4 + 4 * D) % P)
    for y2 in ((-2 + disc) * inv(2 * D) % P, (-2 - disc) * inv(2 * D) % P):
        try:
            y = sqrt(y2)
        except AssertionError:
            continue
        x = x_from_y(y, 0)
        if x is not None:
            return (x, y)
    raise AssertionError("no order-8 point")


T8 = _order8_point()
TORSION = [mul(k, T8) for k in range(8)]  # TORSION[k] = k*T8, orders 1, 8, 4, 8, 2, 8, 4, 8
assert mul(8, T8) == IDENTITY and mul(4, T8) != IDENTITY
assert mul(L, B) == IDENTITY


def torsion_order(k: int) -> int:
    return 8 // math.gcd(k, 8)


def small_order_encodings() -> list[bytes]:
    """All 14 encodings libsodium lists: 8 canonical points, x=0 with the sign bit set,
    and the non-canonical y = p, p+1 (both signs)."""
    out = {enc(t) for t in TORSION}
    out.add(enc_y(1, 1))
    out.add(enc_y(P - 1, 1))
    for y in (P, P + 1):
        out.add(enc_y(y, 0))
        out.add(enc_y(y, 1))
    return sorted(out)


def nacl_verify(pk: bytes, msg: bytes, sig: bytes) -> bool:
    try:
        nacl.signing.VerifyKey(pk).verify(msg, sig)
    except Exception:
        return False
    return True


# --- the corpus -----------------------------------------------------------------------

Entry = tuple[str, bytes, bytes, bytes]  # (label, public key, message, signature)


def _sign_with(a: int, r: int, a_point: Point, r_point: Point, msg: bytes) -> bytes:
    """Honest-signer formula S = r + h*a with arbitrary A and R points."""
    rb, ab = enc(r_point), enc(a_point)
    h = hint(rb, ab, msg) % L
    return rb + ((r + h * a) % L).to_bytes(32, "little")


def build_corpus(seed: int = 20261126) -> list[Entry]:
    rng = random.Random(seed)
    out: list[Entry] = []

    def rand_scalar() -> int:
        return rng.randrange(1, L)

    def rand_msg(n: int = 40) -> bytes:
        return rng.randbytes(rng.randrange(0, n))

    # valid signatures and their mutations
    for _ in range(12):
        sk = nacl.signing.SigningKey(rng.randbytes(32))
        pk = bytes(sk.verify_key)
        msg = rand_msg(200)
        sig = sk.sign(msg).signature
        out.append(("valid", pk, msg, sig))
        s = int.from_bytes(sig[32:], "little")
        for k in (1, 2, 3):
            if s + k * L < 2**256:
                out.append((f"S+{k}L", pk, msg, sig[:32] + (s + k * L).to_bytes(32, "little")))
        for bad in (L, L + 1, L - 1, 2**252, 2**253, 2**256 - 1, 0):
            out.append(("S edge", pk, msg, sig[:32] + bad.to_bytes(32, "little")))
        for _ in range(6):
            bit = rng.randrange(512)
            flipped = bytearray(sig)
            flipped[bit >> 3] ^= 1 << (bit & 7)
            out.append(("sig bit flip", pk, msg, bytes(flipped)))
            bit = rng.randrange(256)
            fpk = bytearray(pk)
            fpk[bit >> 3] ^= 1 << (bit & 7)
            out.append(("pk bit flip", bytes(fpk), msg, sig))
            if msg:
                bit = rng.randrange(len(msg) * 8)
                fm = bytearray(msg)
                fm[bit >> 3] ^= 1 << (bit & 7)
                out.append(("msg bit flip", pk, bytes(fm), sig))
        # R's sign bit flipped and R replaced by its non-canonical twin when one exists
        out.append(("R sign flip", pk, msg, bytes([*sig[:31], sig[31] ^ 0x80]) + sig[32:]))

    small = small_order_encodings()
    assert len(small) == 14

    # a prime-order key we can sign for
    a = rand_scalar()
    A = mul(a, B)
    ab = enc(A)

    # small-order R: random S, and S = h*a so that S*B - h*A is the identity
    for rb in small:
        msg = rand_msg()
        out.append(("small R, random S", ab, msg, rb + rand_scalar().to_bytes(32, "little")))
        h = hint(rb, ab, msg) % L
        out.append(("small R, S = h*a", ab, msg, rb + (h * a % L).to_bytes(32, "little")))

    # small-order A (every encoding) with signatures whose equation holds: R = S*B needs
    # h*A = identity, so try messages until h is a multiple of A's order
    for pkb in small:
        y = int.from_bytes(pkb, "little") & ((1 << 255) - 1)
        yr = y % P
        x = x_from_y(yr, pkb[31] >> 7)
        point = (x, yr) if x is not None else (0, yr)
        order = next(n for n in (1, 2, 4, 8) if mul(n, point) == IDENTITY)
        s = rand_scalar()
        rb = enc(mul(s, B))
        for _ in range(200):
            msg = rng.randbytes(16)
            if hint(rb, pkb, msg) % L % order == 0:
                out.append(("small A, equation holds", pkb, msg, rb + s.to_bytes(32, "little")))
                break
        else:  # pragma: no cover - 1/8 per try
            raise AssertionError("no message found")
        out.append(("small A, zero sig", pkb, rand_msg(), bytes(64)))

    # non-canonical encodings y + p (only y < 19 fit) and off-curve y, as A and as R
    for y in range(19):
        for sign in (0, 1):
            b = enc_y(y + P, sign)
            out.append(("non-canonical A", b, b"m", enc(mul(rand_scalar(), B)) + bytes(32)))
            msg = rand_msg()
            out.append(("non-canonical R", ab, msg, b + rand_scalar().to_bytes(32, "little")))
    off = 0
    y = 2
    while off < 6:
        y += 1
        if x_from_y(y, 0) is None:
            off += 1
            out.append(("off-curve A", enc_y(y, 0), b"m", enc(A) + bytes(32)))
            out.append(
                ("off-curve R", ab, b"m", enc_y(y, 1) + rand_scalar().to_bytes(32, "little"))
            )

    # mixed-order A: honest signatures, accepted exactly when h * T = identity
    for k in range(1, 8):
        a2 = rand_scalar()
        A2 = add(mul(a2, B), TORSION[k])
        r = rand_scalar()
        rp = mul(r, B)
        for _ in range(10):
            msg = rng.randbytes(8)
            out.append(("mixed A", enc(A2), msg, _sign_with(a2, r, A2, rp, msg)))
        # search a few that pass (h multiple of T's order)
        found = 0
        r = rand_scalar()
        rp = mul(r, B)
        for _ in range(400):
            msg = rng.randbytes(8)
            if hint(enc(rp), enc(A2), msg) % L % torsion_order(k) == 0:
                out.append(("mixed A, passes", enc(A2), msg, _sign_with(a2, r, A2, rp, msg)))
                found += 1
                if found == 2:
                    break

    # mixed-order R: honest S fails cofactorless; with mixed A, R = rB + T2 passes when
    # T2 == -h*T1
    for k in range(1, 8):
        r = rand_scalar()
        msg = rng.randbytes(8)
        R = add(mul(r, B), TORSION[k])
        out.append(("mixed R", ab, msg, _sign_with(a, r, A, R, msg)))
    for k1 in (1, 2, 4):
        a2 = rand_scalar()
        A2 = add(mul(a2, B), TORSION[k1])
        hits = 0
        r = rand_scalar()
        rp = mul(r, B)
        for _ in range(60):
            msg = rng.randbytes(8)
            for k2 in range(8):
                R = add(rp, TORSION[k2])
                h = hint(enc(R), enc(A2), msg) % L
                if TORSION[h * k1 % 8] == neg(TORSION[k2]):
                    out.append(
                        ("mixed A and R, passes", enc(A2), msg, _sign_with(a2, r, A2, R, msg))
                    )
                    hits += 1
            if hits >= 2:
                break

    # published vectors
    for i, (m, k, s, _) in enumerate(portable.TAMING):
        out.append((f"taming {i}", bytes.fromhex(k), bytes.fromhex(m), bytes.fromhex(s)))
    for number, k, s, m, _ in portable.CCTV:
        out.append((f"cctv {number}", bytes.fromhex(k), m.encode(), bytes.fromhex(s)))
    return out


CORPUS = build_corpus()


@pytest.fixture
def pure():
    old = ed25519.backend()
    ed25519.set_backend("pure")
    yield ed25519
    ed25519.set_backend(old)


@pytest.fixture(params=["pure", "nacl"])
def any_backend(request):
    old = ed25519.backend()
    ed25519.set_backend(request.param)
    yield ed25519
    ed25519.set_backend(old)


# --- tests ----------------------------------------------------------------------------


@pytest.mark.parametrize("vector", portable.RFC8032, ids=[v[0] for v in portable.RFC8032])
def test_rfc8032(any_backend, vector) -> None:
    _, sk, pk, msg, sig = (bytes.fromhex(x) if i else x for i, x in enumerate(vector))
    any_backend.clear_caches()
    assert any_backend.public_key(sk) == pk
    assert any_backend.sign(sk, msg) == sig
    assert any_backend.verify(pk, msg, sig)
    assert not any_backend.verify(pk, msg + b"!", sig)


def test_portable_expectations_are_libsodiums() -> None:
    for msg, pk, sig, expected in portable.TAMING:
        assert nacl_verify(bytes.fromhex(pk), bytes.fromhex(msg), bytes.fromhex(sig)) is expected
    for _, pk, sig, msg, expected in portable.CCTV:
        assert nacl_verify(bytes.fromhex(pk), msg.encode(), bytes.fromhex(sig)) is expected


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.binary(max_size=300))
def test_pure_and_nacl_agree(seed: bytes, msg: bytes) -> None:
    old = ed25519.backend()
    try:
        ed25519.set_backend("pure")
        pk = ed25519.public_key(seed)
        sig = ed25519.sign(seed, msg)
        sk = nacl.signing.SigningKey(seed)
        assert pk == bytes(sk.verify_key)
        assert sig == sk.sign(msg).signature  # deterministic: byte-equal
        nacl.signing.VerifyKey(pk).verify(msg, sig)  # nacl accepts the pure signature
        assert ed25519.verify(pk, msg, sig)
        assert ed25519.verify(pk, msg, sk.sign(msg).signature)  # pure accepts nacl's
        ed25519.set_backend("nacl")
        assert ed25519.sign(seed, msg) == sig
        assert ed25519.public_key(seed) == pk
    finally:
        ed25519.set_backend(old)


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.binary(max_size=300))
def test_keyed_signatures_agree_across_backends(seed: bytes, msg: bytes) -> None:
    """sign(seed, msg, signing_key(seed)) (a device's signer: its nonce from SHA-256) makes
    the same bytes on both backends (the recorded payment day replays byte for byte on
    MicroPython), and libsodium accepts them."""
    old = ed25519.backend()
    try:
        ed25519.set_backend("pure")
        key = ed25519.signing_key(seed)
        sig = ed25519.sign(seed, msg, key)
        ed25519.set_backend("nacl")
        nkey = ed25519.signing_key(seed)
        assert nkey == key
        assert ed25519.sign(seed, msg, nkey) == sig
        nacl.signing.VerifyKey(key[3]).verify(msg, sig)
        assert sig != nacl.signing.SigningKey(seed).sign(msg).signature  # not RFC 8032's nonce
    finally:
        ed25519.set_backend(old)


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.binary(max_size=300))
def test_rfc_keyed_signatures_are_pynacls(seed: bytes, msg: bytes) -> None:
    """sign(seed, msg, signing_key(seed, pk, rfc=True)) (the POS's kept key) is PyNaCl's RFC
    8032 signature byte for byte, on both backends, and sign(seed, msg)'s."""
    old = ed25519.backend()
    want = nacl.signing.SigningKey(seed).sign(msg).signature
    try:
        for name in ("pure", "nacl"):
            ed25519.set_backend(name)
            key = ed25519.signing_key(seed, None, True)
            assert ed25519.sign(seed, msg, key) == want, name
            assert ed25519.sign(seed, msg, ed25519.signing_key(seed, key[3], True)) == want, name
            assert ed25519.sign(seed, msg) == want, name
    finally:
        ed25519.set_backend(old)


@settings(max_examples=200, deadline=None)
@given(
    st.binary(min_size=32, max_size=32), st.binary(max_size=64), st.binary(min_size=64, max_size=64)
)
def test_random_bytes_decided_like_libsodium(pk: bytes, msg: bytes, sig: bytes) -> None:
    old = ed25519.backend()
    try:
        ed25519.set_backend("pure")
        assert ed25519.verify(pk, msg, sig) == nacl_verify(pk, msg, sig)
    finally:
        ed25519.set_backend(old)


def test_corpus_exercises_both_outcomes() -> None:
    verdicts: dict[str, set[bool]] = {}
    for label, pk, msg, sig in CORPUS:
        verdicts.setdefault(label, set()).add(nacl_verify(pk, msg, sig))
    assert verdicts["valid"] == {True}
    assert verdicts["mixed A, passes"] == {True}
    assert verdicts["mixed A and R, passes"] == {True}
    for rejected in (
        "S+1L",
        "S edge",
        "small R, S = h*a",
        "small A, equation holds",
        "non-canonical A",
        "non-canonical R",
        "off-curve A",
        "off-curve R",
        "mixed R",
        "sig bit flip",
        "pk bit flip",
        "R sign flip",
    ):
        assert verdicts[rejected] == {False}, rejected
    assert len(CORPUS) > 600


@pytest.mark.parametrize("backend", ["pure", "nacl"])
def test_corpus_decided_like_libsodium(backend: str) -> None:
    old = ed25519.backend()
    ed25519.set_backend(backend)
    try:
        mismatches = []
        for i, (label, pk, msg, sig) in enumerate(CORPUS):
            if i % 50 == 0:
                ed25519.clear_caches()  # cold and warm key paths both get used
            if ed25519.verify(pk, msg, sig) != nacl_verify(pk, msg, sig):
                mismatches.append((i, label))
        assert not mismatches
    finally:
        ed25519.set_backend(old)


JUNK = [None, 0, 1.5, "x" * 32, ["a"], object(), b"", bytes(31), bytes(33), bytes(65)]


def test_verify_never_raises(any_backend) -> None:
    sk = nacl.signing.SigningKey(bytes(range(32)))
    pk, msg = bytes(sk.verify_key), b"hello"
    sig = sk.sign(msg).signature
    assert any_backend.verify(pk, msg, sig)
    for junk in JUNK:
        assert any_backend.verify(junk, msg, sig) is False
        assert any_backend.verify(pk, junk, sig) is False
        assert any_backend.verify(pk, msg, junk) is False
    for n in (0, 31, 33, 63, 65):
        assert any_backend.verify(pk[:n] + bytes(max(0, n - 32)), msg, sig) is False
        assert any_backend.verify(pk, msg, (sig + bytes(1))[:n]) is False
    # bytes-like inputs are accepted
    assert any_backend.verify(bytearray(pk), memoryview(msg), bytearray(sig))


def test_sign_and_public_key_errors(any_backend) -> None:
    for bad in (b"", bytes(31), bytes(33)):
        with pytest.raises(ValueError):
            any_backend.sign(bad, b"m")
        with pytest.raises(ValueError):
            any_backend.public_key(bad)
    with pytest.raises(TypeError):
        any_backend.sign("s" * 32, b"m")
    with pytest.raises(TypeError):
        any_backend.sign(bytes(32), "text")


def test_caches_follow_the_keys(pure) -> None:
    seeds = [bytes([i]) * 32 for i in range(5)]
    keys = [bytes(nacl.signing.SigningKey(s).verify_key) for s in seeds]
    msg = b"cache"
    sigs = [nacl.signing.SigningKey(s).sign(msg).signature for s in seeds]
    for _ in range(3):  # more keys than cache slots, interleaved
        for s, pk, sig in zip(seeds, keys, sigs, strict=True):
            assert pure.public_key(s) == pk
            assert pure.sign(s, msg) == sig
            assert pure.verify(pk, msg, sig)
        for pk, sig in zip(keys, reversed(sigs), strict=True):
            assert pure.verify(pk, msg, sig) is (pk == keys[2])
    assert len(ed25519._a_cache) <= ed25519._A_CACHE_MAX
    pure.clear_caches()
    assert ed25519._a_cache == [] and ed25519._key_cache is None


def test_backend_switch() -> None:
    old = ed25519.backend()
    try:
        assert ed25519.set_backend("pure") == "pure"
        assert ed25519.set_backend("nacl") == "nacl"
        assert ed25519.set_backend("auto") == "nacl"  # PyNaCl is installed here
        with pytest.raises(ValueError):
            ed25519.set_backend("openssl")
    finally:
        ed25519.set_backend(old)


def test_env_forces_pure_at_import() -> None:
    code = "from tapcash.firmware.core import ed25519; print(ed25519.backend())"
    env = dict(os.environ, TAPCASH_CRYPTO="pure")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "pure", out.stderr
    env.pop("TAPCASH_CRYPTO")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "nacl", out.stderr


def test_nacl_backend_uses_libsodium_sign() -> None:
    seed = bytes(range(32))
    pk, sk = nacl.bindings.crypto_sign_seed_keypair(seed)
    old = ed25519.backend()
    try:
        ed25519.set_backend("nacl")
        assert ed25519.sign(seed, b"x") == nacl.bindings.crypto_sign(b"x", sk)[:64]
    finally:
        ed25519.set_backend(old)


def test_constants() -> None:
    c = ed25519._c
    assert c(ed25519._CP) == P and c(ed25519._CL) == L and c(ed25519._CD) == D
    assert c(ed25519._CD2) == 2 * D % P and c(ed25519._CINV_D) * D % P == 1
    assert c(ed25519._CSQRTM1) == SQRTM1
    assert len(ed25519._C) == 32 * (ed25519._CY8 + 2)
    ys = {int.from_bytes(e, "little") & ((1 << 255) - 1) for e in small_order_encodings()}
    assert {c(ed25519._CY8), c(ed25519._CY8 + 1)} == ys - {0, 1, P - 1, P, P + 1}
    # the small-order check is exactly that set, whatever the sign bit
    for y in sorted(ys) + [2, P - 2, P + 2, P + 18]:
        for sign in (0, 1 << 255):
            enc = (y | sign).to_bytes(32, "little")
            assert ed25519._small_order(enc, P) == (y in ys)
    # trailing zero bits of each byte (the NAF recoding's table)
    tz = [8] + [(v & -v).bit_length() - 1 for v in range(1, 256)]
    assert ed25519._TZ == bytes(tz)


# --- the fixed-base tables ------------------------------------------------------------


def _niels(p: Point) -> bytes:
    x, y = p
    return b"".join(v.to_bytes(32, "little") for v in ((y + x) % P, (y - x) % P, 2 * D * x * y % P))


def build_tables() -> tuple[bytes, bytes]:
    """(COMB, ODD) of firmware/core/_ed25519_table.py from the curve's definition."""
    comb = bytearray()
    base = B
    for _ in range(32):
        q = base
        for _ in range(8):
            comb += _niels(q)
            q = add(q, base)
        for _ in range(8):
            base = add(base, base)
    odd = bytearray()
    q, b2 = B, add(B, B)
    for _ in range(32):
        odd += _niels(q)
        q = add(q, b2)
    return bytes(comb), bytes(odd)


def test_tables_rebuilt_from_scratch() -> None:
    comb, odd = build_tables()
    assert _ed25519_table.COMB == comb
    assert _ed25519_table.ODD == odd


class _MemFlash(hal.Flash):
    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    def read(self, name: str) -> bytes | None:
        return self.blobs.get(name)

    def write(self, name: str, data: bytes) -> None:
        self.blobs[name] = bytes(data)

    def append(self, name: str, data: bytes) -> None:
        self.blobs[name] = self.blobs.get(name, b"") + bytes(data)


def test_key_table_is_the_comb_of_the_negated_key() -> None:
    """combgen.store's table of a key A is COMB's layout for -A: for A = B, COMB itself with
    each entry negated ((y+x, y-x, 2dxy) of -Q is (y-x, y+x, -2dxy) of Q); and for a random
    key, the curve definition's multiples of -A."""
    flash = _MemFlash()
    assert combgen.store(flash, "b", enc(B))
    neg_comb = bytearray()
    for e in range(256):
        entry = _ed25519_table.COMB[e * 96 : (e + 1) * 96]
        t2 = (-int.from_bytes(entry[64:], "little")) % P
        neg_comb += entry[32:64] + entry[:32] + t2.to_bytes(32, "little")
    assert flash.blobs["b"] == enc(B) + bytes(neg_comb)
    a_point = mul(random.Random(7).randrange(1, L), B)
    assert combgen.store(flash, "a", enc(a_point))
    table = flash.blobs["a"][32:]
    for i in (0, 1, 17, 31):
        for j in (0, 3, 7):
            expect = _niels(mul((j + 1) * 256**i, neg(a_point)))
            assert table[(8 * i + j) * 96 : (8 * i + j + 1) * 96] == expect, (i, j)
    assert combgen.ok(flash, "a", enc(a_point)) and not combgen.ok(flash, "a", enc(B))


def test_corpus_decided_like_libsodium_with_key_tables(pure, monkeypatch) -> None:
    """Every corpus entry (strictness edges, small- and mixed-order keys and R, published
    vectors) with a table for its key whenever the key decodes: decided as libsodium does,
    and the table path taken for each of those."""
    flash = _MemFlash()
    keys: list[bytes] = []
    for _label, pk, _msg, _sig in CORPUS:
        if pk not in keys and len(pk) == 32 and combgen.store(flash, "x", pk):
            keys.append(pk)
    assert len(keys) > 90
    combgen.build(flash, keys)
    table = comb.opener(flash, keys)
    used = []
    real = ed25519._base_mul_with

    def counting(k, tb, tf, more=None):
        used.append(more is not None)
        return real(k, tb, tf, more)

    monkeypatch.setattr(ed25519, "_base_mul_with", counting)
    mismatches = []
    tabled = 0
    for i, (label, pk, msg, sig) in enumerate(CORPUS):
        before = len(used)
        if ed25519.verify(pk, msg, sig, table) != nacl_verify(pk, msg, sig):
            mismatches.append((i, label))
        tabled += len(used) > before and used[-1]
    assert not mismatches
    assert tabled > 350  # the rest: keys that do not decode, or refused before the table


def tables_source() -> str:
    comb, odd = build_tables()

    def lines(data: bytes) -> list[str]:
        return [
            '    b"' + "".join(f"\\x{c:02x}" for c in data[i : i + 22]) + '"'
            for i in range(0, len(data), 22)
        ]

    return "\n".join(
        [
            "COMB = (",
            *lines(comb),
            ")",
            "",
            "ODD = (",
            *lines(odd),
            ")",
        ]
    )


if __name__ == "__main__":
    if sys.argv[1:] == ["tables"]:
        print(tables_source())

"""firmware/core/sha512.py on CPython: NIST vectors, the pure code against hashlib across
block boundaries (hypothesis), the incremental object, backend switching, and the unrolled
compression function against its generator (below; run this file to print it).

The MicroPython-compatible subset runs in the VM too: tests/firmware/portable/test_core_ed25519.py.
"""

import ast
import hashlib
import inspect
import os
import struct
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tapcash.firmware.core import sha512

NIST = [
    (b"", "cf83e1357eefb8bd"),
    (b"abc", "ddaf35a193617aba"),
    (b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "204a8fc6dda82f0a"),
    (
        b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
        b"ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
        "8e959b75dae313da",
    ),
]


@pytest.mark.parametrize(("msg", "prefix"), NIST)
def test_nist_vectors(msg: bytes, prefix: str) -> None:
    digest = sha512.sha512_pure(msg)
    assert digest.hex().startswith(prefix)
    assert digest == hashlib.sha512(msg).digest()


def test_one_million_a() -> None:
    msg = b"a" * 1_000_000
    expected = (
        "e718483d0ce769644e2e42c7bc15b4638e1f98b13b2044285632a803afa973eb"
        "de0ff244877ea60a4cb0432ce577c31beb009c5c2c49aa2e4eadb217ad8cc09b"
    )
    assert sha512.sha512_pure(msg).hex() == expected
    h = sha512.SHA512()
    for i in range(0, len(msg), 9999):
        h.update(msg[i : i + 9999])
    assert h.hexdigest() == expected


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=300))
def test_pure_matches_hashlib(data: bytes) -> None:
    assert sha512.sha512_pure(data) == hashlib.sha512(data).digest()


@pytest.mark.parametrize("n", [0, 1, 110, 111, 112, 113, 127, 128, 129, 239, 240, 256, 257])
def test_padding_edges(n: int) -> None:
    data = bytes((i * 31 + 7) & 255 for i in range(n))
    assert sha512.sha512_pure(data) == hashlib.sha512(data).digest()
    assert sha512.sha512_pure(bytearray(data)) == hashlib.sha512(data).digest()
    assert sha512.sha512_pure(memoryview(data)) == hashlib.sha512(data).digest()


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=6))
def test_incremental_any_split(data: bytes, cuts: list[int]) -> None:
    points = sorted({min(c, len(data)) for c in cuts})
    h = sha512.SHA512()
    start = 0
    for p in [*points, len(data)]:
        h.update(data[start:p])
        start = p
    expected = hashlib.sha512(data)
    snapshot = h.copy()
    assert h.digest() == expected.digest()
    assert h.hexdigest() == expected.hexdigest()
    assert h.digest() == expected.digest()  # digest() does not consume the state
    snapshot.update(b"more")
    assert snapshot.digest() == hashlib.sha512(data + b"more").digest()
    assert h.digest() == expected.digest()  # the copy is independent


def test_hashlib_like_attributes() -> None:
    h = sha512.SHA512(b"abc")
    assert (h.digest_size, h.block_size, h.name) == (64, 128, "sha512")
    assert len(h.digest()) == 64


def test_backend_switch() -> None:
    old = sha512.backend()
    try:
        assert sha512.set_backend("pure") == "pure"
        assert isinstance(sha512.new(b"x"), sha512.SHA512)
        assert sha512.sha512(b"x") == hashlib.sha512(b"x").digest()
        assert sha512.set_backend("hashlib") == "hashlib"
        assert not isinstance(sha512.new(b"x"), sha512.SHA512)
        assert sha512.sha512(b"x") == hashlib.sha512(b"x").digest()
        assert sha512.set_backend("auto") == "hashlib"
        with pytest.raises(ValueError):
            sha512.set_backend("openssl")
    finally:
        sha512.set_backend(old)


def test_env_forces_pure_at_import() -> None:
    code = "from tapcash.firmware.core import sha512; print(sha512.backend())"
    env = dict(os.environ, TAPCASH_CRYPTO="pure")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "pure", out.stderr
    env.pop("TAPCASH_CRYPTO")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "hashlib", out.stderr


# --- the generator of sha512._compress -------------------------------------------------


def _round_constants() -> list[int]:
    """SHA-512's K: the first 64 fraction bits of the cube roots of the first 80 primes."""
    primes: list[int] = []
    n = 2
    while len(primes) < 80:
        if all(n % p for p in primes):
            primes.append(n)
        n += 1

    def icbrt(v: int) -> int:  # floor of the cube root
        lo, hi = 0, 1 << (v.bit_length() // 3 + 2)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if mid**3 <= v:
                lo = mid
            else:
                hi = mid - 1
        return lo

    return [icbrt(p << 192) & ((1 << 64) - 1) for p in primes]


def _rounds16(lines: list[str], ind: str) -> None:
    names = "abcdefgh"
    for j in range(16):
        a, b, c, d, e, f, g, h = (names[(k - j % 8) % 8] for k in range(8))
        lines += [
            f"{ind}x = {e} * D",
            f"{ind}t = {h} + ((x >> 14) ^ (x >> 18) ^ (x >> 41)) + ({g} ^ ({e} & ({f} ^ {g})))"
            f" + k{j} + w{j}",
            f"{ind}{d} = ({d} + t) & M",
            f"{ind}x = {a} * D",
            f"{ind}y = {a} ^ {b}",
            f"{ind}{h} = (t + ((x >> 28) ^ (x >> 34) ^ (x >> 39)) + ({b} ^ (y & z))) & M",
            f"{ind}z = y",
        ]


def _schedule16(lines: list[str], ind: str) -> None:
    for j in range(16):
        p2, p7, p15 = (j - 2) % 16, (j - 7) % 16, (j + 1) % 16
        lines += [
            f"{ind}x = w{p2} * D",
            f"{ind}y = w{p15} * D",
            f"{ind}w{j} = (((x >> 19) ^ (x >> 61) ^ (w{p2} >> 6)) + w{p7}"
            f" + ((y >> 1) ^ (y >> 8) ^ (w{p15} >> 7)) + w{j}) & M",
        ]


def generate_compress() -> str:
    """Source of sha512._compress (any formatting; compared by syntax tree)."""
    words = ", ".join(f"w{j}" for j in range(16))
    consts = ", ".join(f"k{j}" for j in range(16))
    lines = [
        "def _compress(st, buf, off, K=_K, unpack_from=struct.unpack_from):",
        '    """One 128-byte block at buf[off:]; st is the 8-word state, returns the new one."""',
        "    M = int.from_bytes(_M, 'big')  # 2**64 - 1",
        "    D = M + 2  # _DUP",
        f"    ({words},) = unpack_from('>16Q', buf, off)",
        "    a, b, c, d, e, f, g, h = st",
        "    z = b ^ c  # (b ^ c) for Maj",
        "    for r in range(0, 640, 128):",
        f"        ({consts},) = unpack_from('>16Q', K, r)",
        "        if r:  # the next 16 schedule words, in place",
    ]
    _schedule16(lines, "            ")
    _rounds16(lines, "        ")
    lines.append(
        "    return ((st[0] + a) & M, (st[1] + b) & M, (st[2] + c) & M, (st[3] + d) & M,"
        " (st[4] + e) & M, (st[5] + f) & M, (st[6] + g) & M, (st[7] + h) & M)"
    )
    return "\n".join(lines) + "\n"


def test_round_constants_in_module() -> None:
    assert list(struct.unpack(">80Q", sha512._K)) == _round_constants()
    square_roots = [
        0x6A09E667F3BCC908,
        0xBB67AE8584CAA73B,
        0x3C6EF372FE94F82B,
        0xA54FF53A5F1D36F1,
        0x510E527FADE682D1,
        0x9B05688C2B3E6C1F,
        0x1F83D9ABFB41BD6B,
        0x5BE0CD19137E2179,
    ]
    assert list(struct.unpack(">8Q", sha512._IV)) == square_roots  # FIPS 180-4 5.3.5


def test_compress_is_the_generated_code() -> None:
    module = ast.parse(inspect.getsource(sha512))
    committed = next(
        n for n in module.body if isinstance(n, ast.FunctionDef) and n.name == "_compress"
    )
    generated = ast.parse(generate_compress()).body[0]
    assert ast.dump(committed) == ast.dump(generated)


if __name__ == "__main__":
    sys.stdout.write(generate_compress())

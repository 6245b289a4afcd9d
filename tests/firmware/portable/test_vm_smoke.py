# Smoke checks of the runtime shim; they also prove the MicroPython harness end to end.
import sys

try:
    from tapcash.firmware.core import runtime
except ImportError:
    from firmware.core import runtime


def test_runtime_knows_the_implementation():
    assert runtime.IS_MICROPYTHON == (sys.implementation.name == "micropython")
    print("IS_MICROPYTHON", runtime.IS_MICROPYTHON)


def test_sha256_known_answer():
    digest = runtime.sha256(b"abc").digest()
    assert digest.hex() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_sha256_incremental_update():
    h = runtime.sha256()
    h.update(b"a")
    h.update(b"bc")
    assert h.digest() == runtime.sha256(b"abc").digest()


def test_urandom_length_and_type():
    a = runtime.urandom(8)
    b = runtime.urandom(8)
    assert isinstance(a, bytes)
    assert len(a) == 8
    assert len(runtime.urandom(0)) == 0
    assert a != b


def test_ticks_move_forward():
    t0 = runtime.ticks_ms()
    t1 = runtime.ticks_ms()
    assert runtime.ticks_diff(t1, t0) >= 0


def test_const_is_identity_on_ints():
    assert runtime.const(0x7F) == 127


def test_int_from_bytes_positional():
    assert int.from_bytes(b"\x01\x00", "big") == 256

"""Portable tests: run by pytest on CPython and again inside MicroPython.

Rules: no pytest import, plain `assert`, top-level `test_*` functions without arguments,
firmware imported as

    try:
        from tapcash.firmware.core import cbor
    except ImportError:
        from firmware.core import cbor

tests/firmware/test_micropython_portable.py runs every such function of every `test_*.py` here
inside the session's MicroPython VM.
"""

"""`tapcash selftest`: prove on this machine that the firmware core signs, verifies and encodes."""

from __future__ import annotations

import hashlib
import os

import click

from tapcash.firmware.core import cbor, ed25519


def run_selftest(echo=click.echo) -> bool:
    """Run the core checks, print one line per step, return True when all pass."""
    ok = True

    def step(name: str, passed: bool, detail: str) -> None:
        nonlocal ok
        ok = ok and passed
        mark = click.style("ok  ", fg="green") if passed else click.style("FAIL", fg="red")
        echo(f"  {mark} {name}: {detail}")

    seed = hashlib.sha256(b"tapcash selftest").digest()
    message = {1: "payment", 2: 1250, 3: b"\x00" * 16, 4: [True, None, -7]}
    encoded = cbor.encode(message)
    detail = f"{len(encoded)} bytes: {encoded.hex()}"
    step("cbor round trip", cbor.decode(encoded) == message, detail)
    try:
        cbor.decode(encoded + b"\x00")
        step("cbor strictness", False, "trailing byte accepted")
    except cbor.DecodeError as exc:
        step("cbor strictness", True, f"trailing byte rejected ({exc})")

    for backend in ("nacl", "pure"):
        try:
            ed25519.set_backend(backend)
        except (ImportError, ValueError) as exc:
            step(f"ed25519 [{backend}]", False, f"backend unavailable: {exc}")
            continue
        public = ed25519.public_key(seed)
        signature = ed25519.sign(seed, encoded)
        tampered = bytearray(signature)
        tampered[0] ^= 1
        step(
            f"ed25519 [{backend}] sign/verify",
            ed25519.verify(public, encoded, signature)
            and not ed25519.verify(public, encoded, bytes(tampered))
            and not ed25519.verify(public, encoded + b"x", signature),
            f"pk {public.hex()[:16]}.., sig {signature.hex()[:16]}.., tampered sig rejected",
        )
    # back to what the rest of the process runs with (the import-time rule: "pure" or auto)
    ed25519.set_backend("pure" if os.environ.get("TAPCASH_CRYPTO") == "pure" else "auto")
    return ok

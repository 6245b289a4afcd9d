# Ed25519 by the host of a simulated device: ed25519.py's backend "host" (set_backend("host")).
#
# Only the simulator's MicroPython VM has this host: a Node.js process whose `hostcrypto` module
# (sim/vm/mpvm_crypto_plugin.mjs) hands each call to the Python host that drives the VM, which
# answers with libsodium (PyNaCl) - the very calls the CPython runtime makes, so a VM device
# signs the same bytes and accepts the same signatures as a CPython one (and as the pure code:
# tests/sim/test_vm_crypto.py holds the two backends to each other in the VM). The protocol,
# storage, CBOR and heap work around the signature stay the firmware's own, in MicroPython; the
# Ed25519 arithmetic is the host's, as it would be with a crypto accelerator.
#
# The functions are the few of nacl.bindings that ed25519.py's PyNaCl path calls, with the
# same arguments and results (crypto_sign_open raises ValueError where PyNaCl raises
# BadSignatureError), so that path runs unchanged on top of them. SHA-512 is answered in the
# Node process itself (its OpenSSL), the others by the Python host.
#
# Never on a board: tapcash deploy leaves *_vmhost.py out as it leaves *_cpython.py out, and
# nothing imports this module unless a simulator selects the backend.
import binascii

import hostcrypto  # type: ignore  # registered by the simulator's VM host, not a Python module

_hex = binascii.hexlify
_unhex = binascii.unhexlify


def _call(op, a, b=b""):
    r = hostcrypto.call(op, _hex(a).decode(), _hex(b).decode())
    if r[:1] == "!":
        raise ValueError(r[1:])
    return _unhex(r)


def crypto_sign_seed_keypair(seed):
    """(public key, 64-byte secret key) of a 32-byte seed."""
    sk = _call("seed_keypair", seed)
    return sk[32:], sk


def crypto_sign(msg, sk):
    """Signature || msg under the 64-byte secret key."""
    return _call("sign", msg, sk) + bytes(msg)


def crypto_sign_open(signed, pk):
    """The message of signature || message when the signature is valid; else ValueError."""
    return _call("open", signed, pk)


def crypto_scalarmult_ed25519_base_noclamp(n):
    """n * B, n a 32-byte little-endian scalar, not clamped."""
    return _call("base_noclamp", n)


def crypto_hash_sha512(data):
    """SHA-512 digest of data."""
    return _call("sha512", data)

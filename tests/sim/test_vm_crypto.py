"""The simulator VM's Ed25519 backend "host" (firmware/core/ed25519_vmhost.py, answered by
sim/vm/runtime.py with PyNaCl and by Node for SHA-512) against the firmware's own pure code in
the same VM: the same public keys, the same signature bytes (keyed or not), the same decision on
every verification, malformed and small-order inputs included; and deploy leaves it off boards."""

import json

import pytest
from nacl.bindings import crypto_sign, crypto_sign_open, crypto_sign_seed_keypair

from tapcash.sim.vm.runtime import DeviceVM

L = 2**252 + 27742317777372353535851937790883648493


def _cases() -> list[tuple[bytes, bytes, bytes]]:
    """(public key, message, signature): valid ones and every kind of bad one."""
    out = []
    for i in range(4):
        pk, sk = crypto_sign_seed_keypair(bytes([i + 1]) * 32)
        msg = bytes(range(i, i + 40 + 30 * i))
        sig = crypto_sign(msg, sk)[:64]
        s = int.from_bytes(sig[32:], "little")
        out += [
            (pk, msg, sig),
            (pk, msg + b"x", sig),  # another message
            (pk, msg, sig[:63] + bytes([sig[63] ^ 1])),  # S changed
            (pk, msg, sig[:32] + (s + L).to_bytes(32, "little")),  # S not reduced
            (pk, msg, b"\x01" + bytes(31) + sig[32:]),  # R the identity (small order)
            (bytes(32), msg, sig),  # a small-order public key
            (b"\xee" + b"\xff" * 30 + b"\x7f", msg, sig),  # non-canonical key (>= p)
            (b"\x02" + bytes(31), msg, sig),  # not a point
            (pk, msg, sig[:63]),  # short signature
        ]
    return out


@pytest.fixture(scope="module")
def vm():
    with DeviceVM("host") as v:
        v.boot()
        yield v


def test_backend_is_chosen_per_vm(vm):
    assert vm.eval_json("__import__('firmware.core.ed25519').core.ed25519.backend()") == "host"
    with DeviceVM("pure") as pure:
        pure.boot()
        assert pure.eval_json("__import__('firmware.core.ed25519').core.ed25519.backend()") == (
            "pure"
        )


def test_host_backend_signs_and_decides_as_the_pure_code(vm):
    cases = [[pk.hex(), m.hex(), s.hex()] for pk, m, s in _cases()]
    seeds = [bytes([7, i]) * 16 for i in range(3)]
    code = (
        "import binascii, json\n"
        "from firmware.core import ed25519 as ed\n"
        "def _run(cases, seeds):\n"
        "    u = binascii.unhexlify\n"
        "    out = []\n"
        "    for name in ('host', 'pure'):\n"
        "        ed.set_backend(name)\n"
        "        v = [ed.verify(u(p), u(m), u(s)) for p, m, s in cases]\n"
        "        k = []\n"
        "        for seed in seeds:\n"
        "            seed = u(seed)\n"
        "            key = ed.signing_key(seed)\n"
        "            rfc = ed.signing_key(seed, None, True)\n"
        "            k.append([binascii.hexlify(x).decode() for x in (ed.public_key(seed),\n"
        "                      ed.sign(seed, b'msg'), ed.sign(seed, b'msg', key),\n"
        "                      ed.sign(seed, b'msg', rfc))])\n"
        "        out.append([v, k])\n"
        "    ed.set_backend('host')\n"
        "    return json.dumps(out)\n"
        f"_r = _run({json.dumps(cases)}, {json.dumps([s.hex() for s in seeds])})\n"
    )
    host, pure = json.loads(vm.exec_serving(code, vm.serve_call, "_r"))
    assert host == pure
    expected = []
    for pk, m, s in _cases():
        try:
            crypto_sign_open(s + m, pk)
            expected.append(len(s) == 64)
        except Exception:
            expected.append(False)
    assert host[0] == expected
    assert sum(expected) == 4
    for (pub, sig, keyed_sig, rfc_sig), seed in zip(host[1], seeds, strict=True):
        pk, sk = crypto_sign_seed_keypair(seed)
        assert pub == pk.hex()
        assert sig == crypto_sign(b"msg", sk)[:64].hex()  # RFC 8032's bytes
        assert rfc_sig == sig  # the POS's kept key (rfc): the same bytes
        crypto_sign_open(bytes.fromhex(keyed_sig) + b"msg", pk)  # its own nonce, valid


def test_boards_never_get_the_host_backend():
    from tapcash.host.device.deploy import firmware_sources

    for role in ("wallet", "pos"):
        names = [rel for _, rel in firmware_sources(role)]
        assert "core/ed25519.py" in names
        assert not [n for n in names if n.endswith("_vmhost.py")]


@pytest.mark.parametrize("crypto", ["host", "pure"])
def test_bench_sim_micropython_rows_time_the_backend_they_ran_with(crypto):
    """`tapcash bench sim`'s MicroPython rows: every payment approved, the backend named, its
    limit from the sign and verify times of that backend in the VM. Structure only."""
    from tapcash.host.bench.sim import run_bench

    r = run_bench(4, 2, 6, "micropython", crypto=crypto)
    assert r["approved"] == 6 and r["crypto"] == crypto
    assert r["signs_per_payment"] >= 1 and r["verifies_per_payment"] >= 1
    limit = 1e6 / (r["signs_per_payment"] * r["vm_sign_us"]
                   + r["verifies_per_payment"] * r["vm_verify_us"])  # fmt: skip
    assert r["limit_per_s"] == pytest.approx(limit, rel=0.01)

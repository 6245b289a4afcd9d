"""`tapcash flash`, `deploy` and `provision` as a user runs them (subprocesses), against
pseudo-terminals: a silent line, a line held by another program, the simulated MicroPython board
(the real VM's REPL, sim/vm/repl_pty.py) and the simulated tapcash device (the real firmware apps
serving the sync frame protocol, sim/device/serial_pty.py). esptool and mpremote are the real tools,
run as subprocesses. No hardware: a pty is never an ESP32 bootloader, so flash is tested up to
the clean "no ESP32 bootloader answered" error."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import tempfile
import tty
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nacl.signing
import pytest
import serial
from cli_run import mpremote, run_cli

from tapcash.firmware.core import cbor, proto
from tapcash.firmware.core.hal import Hal
from tapcash.firmware.pos.app import PosApp
from tapcash.firmware.wallet import state as wst
from tapcash.firmware.wallet.app import WalletApp
from tapcash.host.device.errors import EXIT_DEVICE, EXIT_INPUT, EXIT_LEDGER, EXIT_PORT
from tapcash.host.issuer import Issuer
from tapcash.sim.device.flash import SimFlash
from tapcash.sim.device.hal import SeededRng, SimClock
from tapcash.sim.device.serial_pty import SerialDevice
from tapcash.sim.vm.repl_pty import ReplBoard

WALLET_ID = "00112233445566aa"
POS_ID = "0011223344556677"
MERCHANT = "8899aabbccddeeff"


@pytest.fixture
def silent_port() -> Iterator[str]:
    """A serial line where nothing answers."""
    master, slave = os.openpty()
    tty.setraw(slave)
    yield os.ttyname(slave)
    os.close(master)
    os.close(slave)


@pytest.fixture
def image(tmp_path: Path) -> Path:
    """A file with a valid ESP32 image header (chip id 0: ESP32), 8 KB."""
    return _image(tmp_path / "ESP32_GENERIC-test.bin", chip_id=0)


def _image(path: Path, chip_id: int) -> Path:
    header = bytes([0xE9, 3, 0x02, 0x20]) + struct.pack("<I", 0x40080000)
    header += bytes([0xEE, 0, 0, 0]) + struct.pack("<H", chip_id) + bytes(10)
    path.write_bytes(header + bytes(8192))
    return path


@pytest.fixture
def issuer_key(tmp_path: Path) -> tuple[Issuer, Path]:
    iss = Issuer(bytes(range(32)))
    path = tmp_path / "issuer.key"
    iss.save(path)
    return iss, path


def _blank_wallet() -> WalletApp:
    return WalletApp(Hal(flash=SimFlash(seed=1), clock=None, rng=SeededRng(b"test-wallet")))


def _blank_pos() -> PosApp:
    hal = Hal(flash=SimFlash(seed=2), clock=SimClock(1_795_000_000), rng=SeededRng(b"test-pos"))
    app = PosApp(hal)
    app.power_on()
    return app


def _deploy(port: str, board: str, role: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """`tapcash deploy --port PORT --board BOARD --role ROLE EXTRA...`."""
    return run_cli("deploy", "--port", port, "--board", board, "--role", role, *extra)


def _provision(
    port: str, role: str, key: Path | str, *extra: str
) -> subprocess.CompletedProcess[str]:
    """`tapcash provision --port PORT --role ROLE --issuer-key KEY EXTRA...`."""
    return run_cli("provision", "--port", port, "--role", role, "--issuer-key", key, *extra)


def _provision_wallet(
    port: str, key: Path | str, *extra: str, pin: str = "1234", puk: str = "12345678"
) -> subprocess.CompletedProcess[str]:
    """A wallet provisioning with a PIN and PUK (the usual ones unless told)."""
    return _provision(port, "wallet", key, "--pin", pin, "--puk", puk, *extra)


class Recording:
    """Every response APDU the device sent to the host."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.responses: list[bytes] = []

    def process(self, apdu: bytes) -> bytes:
        resp = self.app.process(apdu)
        self.responses.append(bytes(resp))
        return resp


# ---- flash ------------------------------------------------------------------------------


def test_flash_checks_the_image_before_the_port(tmp_path: Path, silent_port: str) -> None:
    missing = run_cli("flash", "--port", silent_port, "--firmware", str(tmp_path / "no.bin"))
    assert missing.returncode == EXIT_INPUT and "firmware image not found" in missing.stderr
    elf = tmp_path / "firmware.elf"
    elf.write_bytes(b"\x7fELF" + bytes(100))
    done = run_cli("flash", "--port", silent_port, "--firmware", str(elf))
    assert done.returncode == EXIT_INPUT
    assert "not an ESP32 firmware image" in done.stderr and "ELF" in done.stderr
    html = tmp_path / "download.bin"
    html.write_text("<!DOCTYPE html><html>404</html>")
    done = run_cli("flash", "--port", silent_port, "--firmware", str(html))
    assert done.returncode == EXIT_INPUT and "a failed download" in done.stderr
    s3 = _image(tmp_path / "s3.bin", chip_id=9)
    done = run_cli("flash", "--port", silent_port, "--firmware", str(s3))
    assert done.returncode == EXIT_INPUT and "built for esp32s3, not esp32" in done.stderr
    # and the chip asked for makes the same file fine (it then fails at the port: no bootloader)
    done = run_cli(
        "flash",
        "--port",
        silent_port,
        "--firmware",
        str(s3),
        "--chip",
        "esp32s3",
        "--connect-attempts",
        "1",
        "-q",
    )
    assert done.returncode == EXIT_DEVICE


def test_flash_port_errors(image: Path, silent_port: str) -> None:
    done = run_cli("flash", "--firmware", str(image))
    assert done.returncode == EXIT_PORT and "no port given" in done.stderr
    assert "/dev/ttyUSB" in done.stderr  # candidates listed, or where they were looked for
    done = run_cli("flash", "--port", "/dev/ttyUSB-not-there", "--firmware", str(image))
    assert done.returncode == EXIT_PORT and "no such port: /dev/ttyUSB-not-there" in done.stderr
    with serial.Serial(silent_port, exclusive=True):  # another program has it
        done = run_cli("flash", "--port", silent_port, "--firmware", str(image))
    assert done.returncode == EXIT_PORT and "is busy" in done.stderr
    # TAPCASH_PORT is the default port
    done = run_cli(
        "flash",
        "--firmware",
        str(image),
        "--connect-attempts",
        "1",
        "-q",
        env={"TAPCASH_PORT": silent_port},
    )
    assert done.returncode == EXIT_DEVICE


def test_flash_no_bootloader_on_a_silent_line(image: Path, silent_port: str) -> None:
    done = run_cli(
        "flash", "--port", silent_port, "--firmware", str(image), "--connect-attempts", "1"
    )
    assert done.returncode == EXIT_DEVICE
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: no ESP32 bootloader answered on {silent_port} (no reply")
    assert "BOOT" in last
    assert "esptool" in done.stderr  # its progress was shown before the summary


def test_flash_no_bootloader_on_a_micropython_repl(image: Path, board: ReplBoard) -> None:
    done = run_cli(
        "flash", "--port", board.path, "--firmware", str(image), "--connect-attempts", "1", "-q"
    )
    assert done.returncode == EXIT_DEVICE
    assert "no ESP32 bootloader answered" in done.stderr and "something else" in done.stderr
    assert mpremote(board.path, "exec", "print(1+1)").strip() == "2"  # the board is unharmed


@pytest.mark.skipif(not hasattr(os, "setuid"), reason="POSIX only")
def test_flash_permission_denied(image: Path, silent_port: str) -> None:
    script = (  # everything imported first: the unprivileged user may not read site-packages
        "import os, sys\n"
        "from tapcash.host.cli import main\n"
        "import tapcash.host.device.flash, tapcash.host.device.ports\n"
        "if os.getuid() == 0:\n"
        "    os.setgid(65534); os.setuid(65534)\n"
        "sys.argv = ['tapcash', 'flash', '--port', sys.argv[1], '--firmware', sys.argv[2]]\n"
        "main()\n"
    )
    if os.getuid() != 0:
        os.chmod(silent_port, 0)
    with tempfile.TemporaryDirectory() as public:  # readable by the unprivileged user
        os.chmod(public, 0o755)
        readable = Path(public) / image.name
        readable.write_bytes(image.read_bytes())
        os.chmod(readable, 0o644)
        done = subprocess.run(
            [sys.executable, "-c", script, silent_port, str(readable)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=public,
        )
    if done.returncode != EXIT_PORT and "ModuleNotFoundError" in done.stderr:
        pytest.skip("the unprivileged user cannot import the package from here")
    assert done.returncode == EXIT_PORT, done.stderr
    assert "permission denied on" in done.stderr and "group" in done.stderr
    assert "Traceback" not in done.stderr


# ---- deploy -----------------------------------------------------------------------------


def test_deploy_refuses_a_board_profile_wrong_for_the_role(silent_port: str) -> None:
    done = _deploy(silent_port, "devkitc-pn532-wallet", "pos")
    assert done.returncode == EXIT_INPUT
    assert "cannot run the pos role" in done.stderr
    assert "role pos needs a keypad" in done.stderr  # the validator's own messages
    done = _deploy(silent_port, "no-such-board", "pos")
    assert done.returncode == EXIT_INPUT and "no board profile named" in done.stderr
    done = _deploy(silent_port, "devkitc-pn532-wallet", "wallet", "--option", "nfc_bogus")
    assert done.returncode == EXIT_INPUT and "no option 'nfc_bogus'" in done.stderr


def test_deploy_needs_micropython(silent_port: str) -> None:
    done = _deploy(silent_port, "devkitc-pn532-wallet", "wallet")
    assert done.returncode == EXIT_DEVICE
    assert "no MicroPython REPL answered" in done.stderr and "tapcash flash" in done.stderr
    # a board running the tapcash firmware's frame protocol, no REPL: also refused
    with SerialDevice(_blank_wallet()) as dev:
        done = _deploy(dev.path, "devkitc-pn532-wallet", "wallet")
    assert done.returncode == EXIT_DEVICE and "no MicroPython REPL" in done.stderr
    done = run_cli("deploy", "--board", "devkitc-pn532-wallet", "--role", "wallet")
    assert done.returncode == EXIT_PORT and "no port given" in done.stderr


def test_deploy_to_the_simulated_board(board: ReplBoard) -> None:
    done = _deploy(board.path, "devkitc-pn532-wallet", "wallet", "--json")
    assert done.returncode == 0, done.stderr
    assert "of heap" not in done.stderr  # a DevKitC's 108 KB holds the wallet's .mpy day
    doc = json.loads(done.stdout)
    assert doc["role"] == "wallet" and doc["compiled"] is True
    assert "MicroPython 1.27.0 on webassembly" in doc["device"]
    fw = [p for p in doc["files"] if p.startswith("/firmware/")]
    table = "/firmware/core/_ed25519_table.bin"  # raw, read an entry at a time: not heap
    assert fw and all(p.endswith(".mpy") for p in fw if p != table)
    assert doc["files"][table] == 27648 and "/firmware/core/_ed25519_table.mpy" not in fw
    assert "/firmware/wallet/app.mpy" in fw and not any("/pos/" in p for p in fw)
    assert doc["modules"]["firmware.wallet.app"] == "firmware/wallet/app.mpy"
    # what is on the board, seen by mpremote in a new session (after a soft reset)
    out = mpremote(board.path, "exec", "import firmware.wallet.app as a; print(a.__file__)")
    assert out.strip() == "firmware/wallet/app.mpy"
    # the signer reads the table file, and its signatures are libsodium's
    out = mpremote(
        board.path,
        "exec",
        "from firmware.core import ed25519 as e\n"
        "print(e._table_path, e.sign(bytes(32), b'tapcash').hex())",
    )
    path, sig = out.split()
    assert path.endswith("firmware/core/_ed25519_table.bin")
    assert bytes.fromhex(sig) == nacl.signing.SigningKey(bytes(32)).sign(b"tapcash").signature
    on_board = json.loads(mpremote(board.path, "fs", "cat", ":board.json"))
    assert on_board["role"] == "wallet" and on_board["options"] == []
    assert on_board["profile"]["name"] == "devkitc-pn532-wallet"
    assert "firmware.main.run()" in mpremote(board.path, "fs", "cat", ":main.py")
    files = board.list_files()
    assert set(doc["files"]) <= set(files)
    assert not [p for p in files if p.startswith("/firmware/") and p.endswith(".py")]
    # soft reset, then the firmware imports and works on the board
    out = mpremote(
        board.path,
        "soft-reset",
        "exec",
        "import firmware\nfrom firmware.core import cbor\nprint(cbor.encode([1, 2]))",
    )
    assert out.strip() == "b'\\x82\\x01\\x02'"


def test_redeploy_replaces_the_firmware(board: ReplBoard) -> None:
    first = _deploy(board.path, "devkitc-pn532-wallet", "wallet")
    assert first.returncode == 0, first.stderr
    mpremote(board.path, "exec", "import os; os.mkdir('/data'); open('/data/keep', 'w').write('1')")
    done = _deploy(board.path, "devkitc-pn532-pos", "pos", "--no-compile")
    assert done.returncode == 0, done.stderr
    assert "import firmware.pos.app: ok (firmware/pos/app.py)" in done.stdout
    files = board.list_files()
    assert "/firmware/pos/app.py" in files
    assert not [p for p in files if p.endswith(".mpy") or p.startswith("/firmware/wallet")]
    assert "/data/keep" in files  # the board's data is not the firmware's to remove


# ---- provision --------------------------------------------------------------------------


def test_provision_wallet_over_frames(issuer_key: tuple[Issuer, Path], tmp_path: Path) -> None:
    issuer, key = issuer_key
    app = _blank_wallet()
    rec = Recording(app)
    cert_file = tmp_path / "wallet.cert"
    with SerialDevice(rec) as dev:
        done = _provision(
            dev.path,
            "wallet",
            key,
            "--id",
            WALLET_ID,
            "--pin",
            "2468",
            "--puk",
            "1357913579",
            "--limit",
            "payment_max=200.00",
            "--limit",
            "3=7",
            "--json",
            "--cert-out",
            str(cert_file),
        )
        assert done.returncode == 0, done.stderr
        again = _provision_wallet(dev.path, key, pin="2468", puk="1357913579")
    doc = json.loads(done.stdout)
    assert doc["id"] == WALLET_ID and doc["role"] == "wallet"
    cert = bytes.fromhex(doc["cert"])
    assert cert_file.read_bytes() == cert
    body = proto.verify_cert(cert, issuer.trusted_keys, proto.KIND_WALLET, 0)
    seed, pub = app.state[wst.S_SEED], app.state[wst.S_PUB]
    assert body[proto.CERT_KEY] == pub == bytes.fromhex(doc["public_key"])
    assert body[proto.CERT_ID] == bytes.fromhex(WALLET_ID)
    assert body[proto.CERT_LIMITS][proto.LIM_PAYMENT_MAX] == 20000
    assert body[proto.CERT_LIMITS][proto.LIM_OFFLINE_COUNT] == 7
    # the key was made on the device and its private half never crossed the line
    assert len(seed) == 32 and not any(seed in r for r in rec.responses)
    info = cbor.decode(app.process(proto.build_command(0, proto.INS_SELECT, 4, 0, proto.AID))[:-2])
    assert not info[proto.INFO_FLAGS] & proto.FLAG_BLANK
    assert info[proto.INFO_ID] == bytes.fromhex(WALLET_ID)
    assert app.state[wst.S_PIN] == wst.secret_hash(False, bytes.fromhex(WALLET_ID), b"2468")
    # a second provisioning is refused, the device unchanged
    assert again.returncode == EXIT_DEVICE and "already personalised" in again.stderr
    assert WALLET_ID in again.stderr and app.state[wst.S_PUB] == pub


def test_provision_pos_over_frames(issuer_key: tuple[Issuer, Path]) -> None:
    issuer, key = issuer_key
    app = _blank_pos()
    with SerialDevice(app) as dev:
        done = _provision(
            dev.path,
            "pos",
            key,
            "--id",
            POS_ID,
            "--merchant",
            MERCHANT,
            "--config",
            "floor=5000",
            "--config",
            "velocity_count=3",
        )
    assert done.returncode == 0, done.stderr
    assert f"provisioned pos {POS_ID}" in done.stdout and f"merchant {MERCHANT}" in done.stdout
    assert app.pos_id == bytes.fromhex(POS_ID) and app.merchant_id == bytes.fromhex(MERCHANT)
    assert app.config[proto.CFG_FLOOR] == 5000 and app.config[proto.CFG_VELOCITY_COUNT] == 3
    assert app.issuer_keys == issuer.trusted_keys
    assert app.hot is not None  # a first (empty) hot list signed by the issuer


def test_provision_refusals(issuer_key: tuple[Issuer, Path], tmp_path: Path) -> None:
    _issuer, key = issuer_key
    wallet = _blank_wallet()
    with SerialDevice(wallet) as dev:
        wrong = _provision(dev.path, "pos", key, "--merchant", MERCHANT)
        short_pin = _provision_wallet(dev.path, key, pin="12")
        no_pin = _provision(dev.path, "wallet", key)
        bad_limit = _provision_wallet(dev.path, key, "--limit", "speed=9")
        no_key = _provision_wallet(dev.path, str(tmp_path / "none.key"))
    assert wrong.returncode == EXIT_DEVICE and "runs the wallet firmware, not pos" in wrong.stderr
    assert short_pin.returncode == EXIT_INPUT and "PIN must be 4 to 8 digits" in short_pin.stderr
    assert no_pin.returncode == EXIT_INPUT and "no PIN given" in no_pin.stderr
    assert bad_limit.returncode == EXIT_INPUT and "unknown name" in bad_limit.stderr
    assert no_key.returncode == EXIT_INPUT and "issuer key not found" in no_key.stderr
    assert wallet.state is None or wallet.state[wst.S_PHASE] != wst.PHASE_PERSO  # still blank
    pos_no_merchant = _provision("/dev/null", "pos", key)
    assert pos_no_merchant.returncode == EXIT_INPUT and "--merchant" in pos_no_merchant.stderr


def test_provision_not_a_tapcash_device(issuer_key: tuple[Issuer, Path], silent_port: str) -> None:
    _issuer, key = issuer_key
    done = _provision_wallet(silent_port, key)
    assert done.returncode == EXIT_DEVICE
    assert "no tapcash firmware answers" in done.stderr and "nothing answered" in done.stderr
    done = _provision_wallet(silent_port, key, "--via", "repl")
    assert done.returncode == EXIT_DEVICE and "no MicroPython REPL" in done.stdout + done.stderr


def test_deploy_then_provision_on_the_simulated_board(
    board: ReplBoard, issuer_key: tuple[Issuer, Path]
) -> None:
    issuer, key = issuer_key
    dep = _deploy(board.path, "devkitc-pn532-wallet", "wallet")
    assert dep.returncode == 0, dep.stderr
    # the board sits at its REPL: the frame protocol finds no firmware and says what to do
    frames = _provision_wallet(board.path, key)
    assert frames.returncode == EXIT_DEVICE and "--via repl" in frames.stderr
    done = _provision_wallet(board.path, key, "--id", WALLET_ID, "--via", "repl", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    body = proto.verify_cert(bytes.fromhex(doc["cert"]), issuer.trusted_keys, proto.KIND_WALLET, 0)
    # the key pair was made by the firmware in the MicroPython VM and is kept in its flash
    assert any(p.startswith("/data/") for p in board.list_files())
    check = (
        "from firmware.core.hal import Hal\n"
        "from firmware.core.fileflash import FileFlash\n"
        "from firmware.wallet.app import WalletApp\n"
        "a = WalletApp(Hal(flash=FileFlash('/data', sync=False), clock=None, rng=None))\n"
        "a.power_on()\n"
        # the board's state module has no key names (host/device/fold.py makes them private)
        f"print(a.state[{wst.S_PUB}].hex(), a.state[{wst.S_ID}].hex())\n"
    )
    pub, dev_id = mpremote(board.path, "exec", check).split()
    assert bytes.fromhex(pub) == body[proto.CERT_KEY] and dev_id == WALLET_ID
    again = _provision_wallet(board.path, key, "--via", "repl")
    assert again.returncode == EXIT_DEVICE and f"already personalised (wallet {WALLET_ID})" in (
        again.stderr
    )


def test_provision_registers_with_the_ledger(tmp_path: Path) -> None:
    from sync_world import serve_ledger

    issuer = Issuer(bytes(range(32)))
    key = tmp_path / "issuer.key"
    issuer.save(key)
    other = tmp_path / "other.key"
    Issuer(bytes(range(1, 33))).save(other)
    server = serve_ledger(tmp_path / "ledger.db", issuer)
    try:
        app = _blank_wallet()
        with SerialDevice(app) as dev:
            refused = _provision_wallet(
                dev.path, other, "--ledger", server.url, "--token", server.token
            )
            assert app.state is None or app.state[wst.S_PHASE] == wst.PHASE_BLANK
            done = _provision_wallet(
                dev.path,
                key,
                *("--id", WALLET_ID, "--ledger", server.url, "--token", server.token),
                *("--owner", "alice", "--json"),
            )
        with server.client() as lc:
            device = lc.device(bytes.fromhex(WALLET_ID))
    finally:
        server.stop()
    assert refused.returncode == EXIT_LEDGER and "trusts issuer key" in refused.stderr
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["registered"] is not None
    assert device["id"] == WALLET_ID and device["kind"] == "wallet"
    assert device["public_key"] == doc["public_key"] and not device["revoked"]


# -- tapcash deploy's heap check: the measured minimum (boards/heap_needs.py) --------------------

ROOT = Path(__file__).resolve().parents[2]


def test_the_heap_needs_are_the_bench_figures_in_the_docs() -> None:
    """boards/heap_needs.json is what `tapcash bench render` makes of docs/performance.json's
    firmware section (rows[].min_heap_kb32 of `tapcash bench firmware`): rerun the render after
    the bench, and commit both."""
    from tapcash.boards import heap_needs

    doc = json.loads((ROOT / "docs" / "performance.json").read_text())
    expected = heap_needs.needs_from_bench(doc["benches"]["firmware"])
    assert expected is not None
    assert json.loads(heap_needs.NEEDS_FILE.read_text()) == expected, (
        "stale: tapcash bench render docs/performance.json rewrites boards/heap_needs.json"
    )
    for role in ("wallet", "pos"):
        for form in ("mpy", "romfs"):
            need = heap_needs.need_kb32(role, form)
            assert need is not None and 16 < need < 256, (role, form, need)
        assert heap_needs.need_kb32(role, "romfs") < heap_needs.need_kb32(role, "mpy")


def test_the_heap_needs_are_the_larger_of_the_payment_and_the_purse_day() -> None:
    """deploy warns from whichever day needs more heap (issue 13: a purse card's day)."""
    from tapcash.boards import heap_needs

    rows = [
        {"day": "payment", "role": "wallet", "form": "romfs", "min_heap_kb32": 48.0},
        {"day": "purse", "role": "wallet", "form": "romfs", "min_heap_kb32": 51.5},
        {"day": "payment", "role": "wallet", "form": "mpy", "min_heap_kb32": 72.0},
        {"day": "purse", "role": "wallet", "form": "mpy", "min_heap_kb32": 70.0},
        {"role": "pos", "form": "mpy", "min_heap_kb32": 83.4},  # a row from before "day"
    ]
    doc = heap_needs.needs_from_bench({"rows": rows, "command": "c", "revision": "r"})
    assert doc is not None
    assert doc["min_heap_kb32"] == {"pos": {"mpy": 83.4}, "wallet": {"mpy": 72.0, "romfs": 51.5}}
    days = {
        r.get("day")
        for r in json.loads((ROOT / "docs" / "performance.json").read_text())["benches"][
            "firmware"
        ]["rows"]
    }
    assert days == {"payment", "purse"}  # the docs' run measured both


def _heap_warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning:") and "heap" in line]


def test_heap_fit_is_the_measured_minimum_against_the_board_heap() -> None:
    from tapcash.boards import heap_needs
    from tapcash.boards.profile import load_profile
    from tapcash.host.device.deploy import heap_fit

    wallet = load_profile("devkitc-pn532-wallet")  # no memory in the profile: an ESP32's 108 KB
    pos = load_profile("devkitc-pn532-pos")
    for role, profile in (("wallet", wallet), ("pos", pos)):
        for form in ("mpy", "romfs", "py"):
            assert heap_fit(profile, role, form) is None, (role, form)
    need = heap_needs.need_kb32("wallet", "mpy")
    assert need is not None
    # exactly the minimum fits; one KB less does not
    at = {**wallet, "memory": {"heap_kb": int(need) + 1}}
    assert heap_fit(at, "wallet", "mpy") is None
    short = {**wallet, "memory": {"heap_kb": int(need) - 1}}
    warn = heap_fit(short, "wallet", "mpy")
    assert warn is not None and "\n" not in warn
    assert warn.startswith(f"the wallet deployed as .mpy files needs {need:g} KB of heap")
    assert f"devkitc-pn532-wallet has about {int(need) - 1} KB (its profile says)" in warn
    assert heap_needs.provenance() in warn
    romfs = heap_needs.need_kb32("wallet", "romfs")
    assert romfs is not None and romfs < need - 1
    assert f"deployed as a ROMFS image it needs {romfs:g} KB" in warn  # the form that fits
    tiny = {**wallet, "memory": {"heap_kb": 32}}
    warn = heap_fit(tiny, "wallet", "romfs")
    assert warn is not None and f"needs {romfs:g} KB" in warn and "PSRAM" in warn
    assert "needs more than" in (heap_fit(tiny, "wallet", "py") or "")


def test_deploy_warns_in_one_line_only_when_the_board_heap_is_too_small(
    board: ReplBoard, tmp_path: Path
) -> None:
    from tapcash.boards import heap_needs
    from tapcash.boards.profile import load_profile

    need = heap_needs.need_kb32("wallet", "mpy")
    assert need is not None
    small = {**load_profile("devkitc-pn532-wallet"), "memory": {"heap_kb": 64}}
    path = tmp_path / "small-wallet.json"
    path.write_text(json.dumps(small))
    done = _deploy(board.path, str(path), "wallet", "--no-romfs")
    assert done.returncode == 0, done.stderr  # a warning, not a refusal
    [warn] = _heap_warnings(done.stderr)
    assert warn.startswith(f"warning: the wallet deployed as .mpy files needs {need:g} KB")
    assert "has about 64 KB (its profile says)" in warn
    fits = {**small, "memory": {"heap_kb": 108}}
    path.write_text(json.dumps(fits))
    again = _deploy(board.path, str(path), "wallet", "--no-romfs")
    assert again.returncode == 0, again.stderr
    assert _heap_warnings(again.stderr) == []

"""The embedded developer's journey on `tapcash sim board` as on a real board (#14 item 5):
deploy (.mpy files, or a ROMFS image into the board's partition: #16 item 3) -> `mpremote
reset` (the firmware starts: /main.py runs the wallet's loop, its PN532 emulated on the bus,
the sync frames on the line) -> provision over frames, registered with a ledger -> sync; then
mpremote breaks into the REPL again. Every step is the real CLI (tapcash, mpremote) in a
subprocess, over pyserial on the board's pseudo-terminal."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
import serial
from cli_run import TAPCASH, clean_env, mpremote
from cli_run import run_cli as _run_cli
from sync_world import serve_ledger

from tapcash.host.issuer import Issuer
from tapcash.sim.vm.repl_pty import ReplBoard

WALLET_ID = "00112233445566ab"


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return _run_cli(*args, timeout=timeout)


def _ls(port: str, path: str) -> dict[str, int]:
    out = {}
    for line in mpremote(port, "fs", "ls", path).splitlines()[1:]:
        size, name = line.split()
        out[name] = int(size)
    return out


POS_ID = "00112233445566ac"
MERCHANT = "8899aabbccddeeff"


@pytest.mark.parametrize(
    ("role", "form"), [("wallet", "mpy"), ("wallet", "romfs"), ("pos", "romfs")]
)
def test_deploy_reset_provision_sync_on_the_simulated_board(
    tmp_path: Path, role: str, form: str
) -> None:
    issuer = Issuer(bytes(range(32)))
    key = tmp_path / "issuer.key"
    issuer.save(key)
    server = serve_ledger(tmp_path / "ledger.db", issuer)
    dev_id = WALLET_ID if role == "wallet" else POS_ID
    profile = "devkitc-pn532-wallet" if role == "wallet" else "devkitc-pn532-pos"
    try:
        # a board flashed with a ROMFS partition takes the image without being asked
        with ReplBoard(romfs_kb=256 if form == "romfs" else 0) as board:
            dep = run_cli("deploy", "--port", board.path, "-b", profile, "--role", role, "--json")
            assert dep.returncode == 0, dep.stderr
            doc = json.loads(dep.stdout)
            files = doc["files"]
            assert doc["form"] == form
            # mpremote fs ls shows what was written, file by file
            root = _ls(board.path, "/")
            assert root["board.json"] == files["/board.json"] > 0
            assert root["main.py"] == files["/main.py"] > 0
            where = "/rom/firmware" if form == "romfs" else "/firmware"
            app = f"{where}/{role}/app.mpy"
            assert _ls(board.path, f"{where}/{role}")["app.mpy"] == files[app] > 0
            assert ("firmware/" in root) == (form == "mpy")  # ROMFS: nothing shadows /rom
            if form == "romfs":
                assert doc["romfs_bytes"] > 0
                assert all(m.startswith("/rom/") for m in doc["modules"].values())
            # the reset starts the firmware, as the EN button does on a board
            resets = board.resets
            mpremote(board.path, "reset")
            who = (
                ["--pin", "1234", "--puk", "12345678", "--owner", "alice"]
                if role == "wallet"
                else ["--merchant", MERCHANT]
            )
            prov = run_cli(
                "provision", "--port", board.path, "--role", role, "--issuer-key", str(key),
                "--id", dev_id, *who, "--ledger", server.url, "--token", server.token, "--json",
            )  # fmt: skip
            assert prov.returncode == 0, prov.stderr
            assert board.resets > resets
            assert json.loads(prov.stdout)["registered"] is not None
            sync = run_cli(
                "sync", "--port", board.path, "--ledger", server.url, "--token", server.token,
                "--outbox", str(tmp_path / "outbox"), "--json",
            )  # fmt: skip
            assert sync.returncode == 0, sync.stdout + sync.stderr
            # mpremote breaks into the running firmware; its keys and state are on the board
            data = _ls(board.path, "/data")
            assert data and all(size > 0 for size in data.values())
        assert board.error is None, board.error
        with server.client() as lc:
            device = lc.device(bytes.fromhex(dev_id))
    finally:
        server.stop()
    assert device["kind"] == role and not device["revoked"]


def test_deploy_romfs_on_a_board_without_a_romfs_partition_is_one_clear_line() -> None:
    with ReplBoard() as board:  # a stock image's partition table
        done = run_cli(
            "deploy", "--port", board.path, "-b", "devkitc-pn532-wallet", "--role", "wallet",
            "--romfs",
        )  # fmt: skip
        files = board.list_files()
    assert done.returncode != 0
    err = done.stderr.strip().splitlines()[-1]
    assert err.startswith("error: the board on ") and "it has no ROMFS partition" in err
    assert "tapcash flash --partitions romfs" in err
    assert "/main.py" not in files and "/firmware/" not in files  # nothing was written


def test_a_friendly_soft_reset_starts_the_firmware_a_raw_one_does_not(tmp_path: Path) -> None:
    """As MicroPython's main loop does: /main.py runs after a soft reset in the friendly REPL
    (Ctrl-D at the prompt), not after one in the raw REPL (`mpremote soft-reset`)."""
    issuer = Issuer(bytes(range(32)))
    key = tmp_path / "issuer.key"
    issuer.save(key)
    with ReplBoard() as board:
        dep = run_cli("deploy", "--port", board.path, "-b", "devkitc-pn532-wallet", "--role",
                      "wallet")  # fmt: skip
        assert dep.returncode == 0, dep.stderr
        mpremote(board.path, "soft-reset")
        args = ("provision", "--port", board.path, "--role", "wallet", "--issuer-key", str(key),
                "--pin", "1234", "--puk", "12345678")  # fmt: skip
        stays = run_cli(*args)
        assert stays.returncode != 0 and "--via repl" in stays.stderr  # the REPL answers
        with serial.Serial(board.path, 115200, timeout=0.2) as line:
            line.write(b"\r\x03\x03\r\x02")  # friendly REPL, empty line
            time.sleep(0.5)
            line.read(4096)
            line.write(b"\x04")  # soft reset at the prompt: boot.py, main.py
            said = b""
            deadline = time.monotonic() + 10
            while b"soft reboot" not in said and time.monotonic() < deadline:
                said += line.read(4096)
        assert b"soft reboot" in said
        started = run_cli(*args)
        assert started.returncode == 0, started.stderr
    assert board.error is None, board.error


def _board_cli(*args: str) -> tuple[subprocess.Popen[str], str]:
    """`tapcash sim board ARGS` in a subprocess, and the port it printed."""
    proc = subprocess.Popen(
        [*TAPCASH, "sim", "board", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=clean_env(),
    )
    assert proc.stdout is not None
    port = proc.stdout.readline().strip()
    assert port.startswith("/dev/"), proc.communicate(timeout=60)
    return proc, port


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)  # Ctrl-C: the board writes its flash back to --flash
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err


def test_a_board_restarted_from_its_flash_folder_runs_the_firmware_from_its_romfs(
    tmp_path: Path,
) -> None:
    """`tapcash sim board --flash DIR` keeps the ROMFS partition (its table entry and the image
    `tapcash deploy --romfs` wrote) across a stop and a start from the same DIR without
    --romfs-kb: at boot the image is mounted and main.py starts the firmware from it."""
    from tapcash.host.device import partitions as pt

    issuer = Issuer(bytes(range(32)))
    key = tmp_path / "issuer.key"
    issuer.save(key)
    flash = tmp_path / "flash"
    proc, port = _board_cli("--flash", str(flash), "--romfs-kb", "256")
    try:
        dep = run_cli("deploy", "--port", port, "-b", "devkitc-pn532-wallet", "--role", "wallet",
                      "--romfs", "--json")  # fmt: skip
        assert dep.returncode == 0, dep.stderr
        assert json.loads(dep.stdout)["form"] == "romfs"
    finally:
        _stop(proc)
    # the flash folder: the filesystem, and the partitions outside it
    table = pt.parse((flash / ".flash" / "partitions.bin").read_bytes())
    rom = next(p for p in table if p.label == "romfs")
    assert (rom.type, rom.subtype, rom.size) == (pt.TYPE_DATA, pt.SUBTYPE_ROMFS, 256 * 1024)
    image = (flash / ".flash" / "romfs.bin").read_bytes()
    assert len(image) == rom.size and image[:3] == b"\xd2\xcd\x31"  # a ROMFS image
    assert not (flash / "firmware").exists() and (flash / "main.py").is_file()

    proc, port = _board_cli("--flash", str(flash))  # power on again: no --romfs-kb
    try:
        prov = run_cli(
            "provision", "--port", port, "--role", "wallet", "--issuer-key", str(key),
            "--id", WALLET_ID, "--pin", "1234", "--puk", "12345678", "--json",
        )  # fmt: skip
        assert prov.returncode == 0, prov.stderr
        said = mpremote(port, "exec", (
            "import vfs, sys, os\n"
            "print(vfs.rom_ioctl(1), '/rom' in sys.path)\n"
            "print('app.mpy' in os.listdir('/rom/firmware/wallet'),"
            " 'firmware' in os.listdir('/'))\n"
            "print(sorted(os.listdir('/data')) != [])\n"
        ))  # fmt: skip
        assert said.split() == ["1", "True", "True", "False", "True"], said
    finally:
        _stop(proc)
    assert (flash / ".flash" / "romfs.bin").read_bytes() == image  # kept as deployed
    assert (flash / "data").is_dir()  # what the firmware wrote is kept too

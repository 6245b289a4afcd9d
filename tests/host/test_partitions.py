"""ESP32 partition tables: `tapcash flash --partitions romfs` on a stock MicroPython image
(bootloader + table at 0x8000 + app) adds a ROMFS partition taken from the filesystem's start,
and leaves every other byte of the image as it was."""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tapcash.host.device import partitions as pt
from tapcash.host.device.errors import EXIT_INPUT

CLI = "from tapcash.host.cli import main; main()"
IMAGE_OFFSET = 0x1000  # an ESP32 .bin is written at 0x1000
# MicroPython's ports/esp32/partitions-4MiB.csv (ESP32_GENERIC): nvs, phy_init, factory, vfs
STOCK = [
    pt.Partition("nvs", pt.TYPE_DATA, 0x02, 0x9000, 0x6000),
    pt.Partition("phy_init", pt.TYPE_DATA, 0x01, 0xF000, 0x1000),
    pt.Partition("factory", pt.TYPE_APP, 0x00, 0x10000, 0x1F0000),
    pt.Partition("vfs", pt.TYPE_DATA, 0x81, 0x200000, 0x200000),
]


def stock_image(path: Path, parts: list[pt.Partition] | None = None) -> Path:
    """A combined image: ESP32 header, table at 0x8000, an app at 0x10000 (random bytes)."""
    header = bytes([0xE9, 3, 0x02, 0x20]) + struct.pack("<I", 0x40080000)
    header += bytes([0xEE, 0, 0, 0]) + struct.pack("<H", 0) + bytes(10)
    boot = header + os.urandom(0x7000 - len(header))
    table = pt.build(parts or STOCK)
    gap = b"\xff" * (0x10000 - 0x8000 - len(table))
    path.write_bytes(boot + table + gap + os.urandom(300_000))
    return path


def test_a_table_round_trips_with_its_md5() -> None:
    table = pt.build(STOCK)
    assert len(table) == pt.TABLE_LENGTH
    assert pt.parse(table) == STOCK
    entries = table[: 32 * len(STOCK)]
    md5 = table[32 * len(STOCK) : 32 * len(STOCK) + 32]
    assert md5 == b"\xeb\xeb" + b"\xff" * 14 + hashlib.md5(entries).digest()
    # the entry layout gen_esp32part writes: magic, type, subtype, offset, size, label, flags
    assert table[:32] == b"\xaa\x50\x01\x02" + struct.pack("<II", 0x9000, 0x6000) + (
        b"nvs".ljust(16, b"\x00") + bytes(4)
    )
    bad = bytearray(table)
    bad[8] ^= 1
    with pytest.raises(pt.PartitionError, match="MD5"):
        pt.parse(bytes(bad))


def test_romfs_is_carved_from_the_filesystem_and_nothing_else_moves(tmp_path: Path) -> None:
    data = stock_image(tmp_path / "fw.bin").read_bytes()
    layout = pt.with_romfs(data, IMAGE_OFFSET, 256)
    assert layout.changed
    assert layout.romfs == pt.Partition("romfs", pt.TYPE_DATA, 0x8F, 0x200000, 0x40000)
    vfs = next(p for p in layout.after if p.label == "vfs")
    assert (vfs.offset, vfs.size) == (0x240000, 0x1C0000)
    assert [p.label for p in layout.after] == ["nvs", "phy_init", "factory", "romfs", "vfs"]
    at = 0x8000 - IMAGE_OFFSET
    new = layout.image
    assert len(new) == len(data)
    assert new[:at] == data[:at] and new[at + pt.TABLE_LENGTH :] == data[at + pt.TABLE_LENGTH :]
    assert pt.table_of(new, IMAGE_OFFSET)[1] == layout.after
    again = pt.with_romfs(new, IMAGE_OFFSET, 256)
    assert not again.changed and again.image == new


def test_a_romfs_that_leaves_too_little_filesystem_or_no_table_is_refused(tmp_path: Path) -> None:
    data = stock_image(tmp_path / "fw.bin").read_bytes()
    with pytest.raises(pt.PartitionError, match="at least 256 KB must stay"):
        pt.with_romfs(data, IMAGE_OFFSET, 1900)
    with pytest.raises(pt.PartitionError, match="multiple of 4 KB"):
        pt.with_romfs(data, IMAGE_OFFSET, 6)
    with pytest.raises(pt.PartitionError, match="app-only image"):
        pt.with_romfs(data[0x8000:], IMAGE_OFFSET, 256)
    no_fs = stock_image(tmp_path / "nofs.bin", STOCK[:3]).read_bytes()
    with pytest.raises(pt.PartitionError, match="no filesystem partition"):
        pt.with_romfs(no_fs, IMAGE_OFFSET, 256)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAPCASH_")}
    done = subprocess.run(
        [sys.executable, "-c", CLI, *args], capture_output=True, text=True, env=env, timeout=120
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done


def test_flash_save_image_writes_the_romfs_table(tmp_path: Path) -> None:
    img = stock_image(tmp_path / "ESP32_GENERIC.bin")
    out = tmp_path / "with-romfs.bin"
    done = _cli(
        "flash", "--firmware", str(img), "--partitions", "romfs", "--romfs-kb", "128",
        "--save-image", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "ROMFS partition added: romfs (data, 0x8f) at 0x200000, 128 KB" in done.stderr
    parts = pt.table_of(out.read_bytes(), IMAGE_OFFSET)[1]
    assert parts[3] == pt.Partition("romfs", pt.TYPE_DATA, 0x8F, 0x200000, 0x20000)
    # a profile may ask for it (memory.partitions), an app-only image is one clear line
    prof = tmp_path / "board.json"
    prof.write_text(
        '{"name": "t", "mcu": "esp32", "roles": ["wallet"], "memory": {"partitions": "romfs"}}'
    )
    done = _cli("flash", "--firmware", str(img), "-b", str(prof), "--save-image", str(out))
    assert done.returncode == 0 and "ROMFS partition added" in done.stderr, done.stderr
    # the built-in POS profile asks for one (its .mpy form does not fit 108 KB of heap)
    done = _cli("flash", "--firmware", str(img), "-b", "devkitc-pn532-pos", "--save-image",
                str(out))  # fmt: skip
    assert done.returncode == 0 and "ROMFS partition added" in done.stderr, done.stderr
    done = _cli("flash", "--firmware", str(img), "-b", "devkitc-pn532-wallet", "--save-image",
                str(out))  # fmt: skip
    assert done.returncode == 0 and "ROMFS" not in done.stderr
    assert out.read_bytes() == img.read_bytes()
    app_only = tmp_path / "app.bin"
    app_only.write_bytes(img.read_bytes()[:24] + bytes(4096))
    done = _cli("flash", "--firmware", str(app_only), "--partitions", "romfs", "--save-image",
                str(out))  # fmt: skip
    assert done.returncode == EXIT_INPUT
    assert done.stderr.startswith("error: the image holds no partition table at 0x8000")
    assert len(done.stderr.strip().splitlines()) == 1

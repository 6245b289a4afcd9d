"""ESP32 partition tables (the binary format ESP-IDF's gen_esp32part.py writes), and the ROMFS
layout `tapcash flash --partitions romfs` writes on a stock MicroPython image.

A stock ESP32 .bin from micropython.org is bootloader + partition table + app in one file, the
table at flash 0x8000. `with_romfs()` reads that table, carves a ROMFS partition (label
"romfs", data subtype 0x8f: what MicroPython's esp32 port looks up for `vfs.rom_ioctl`, as in
its partitions-4MiB-romfs.csv) out of the start of the filesystem partition, shrinks the
filesystem by as much, and returns the image with the new table in place, so one esptool
write puts both on the board. The app partition is left as it is (it must still hold the app).

Binary format: 32-byte entries `<2sBBII16sI` (magic AA 50, type, subtype, offset, size,
label, flags), then an MD5 entry (EB EB, 14 x FF, MD5 of the entries before it), then FF
up to 0xC00 bytes.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, replace

from .errors import BadImage

TABLE_ADDRESS = 0x8000
TABLE_LENGTH = 0xC00
ENTRY = struct.Struct("<2sBBII16sI")
MAGIC = b"\xaa\x50"
MD5_MAGIC = b"\xeb\xeb" + b"\xff" * 14
TYPE_APP, TYPE_DATA = 0x00, 0x01
SUBTYPE_ROMFS = 0x8F
FS_SUBTYPES = {0x81: "fat", 0x82: "spiffs", 0x83: "littlefs"}
ROMFS_LABEL = "romfs"
ROMFS_ALIGN = 0x10000  # memory-mapped: one 64 KB MMU page
DEFAULT_ROMFS_KB = 256
MIN_FS_KB = 256  # what must stay for /data (keys, state, journal) and /board.json


class PartitionError(BadImage):
    """The image's partition table cannot take a ROMFS partition (or is not a table)."""


@dataclass(frozen=True)
class Partition:
    label: str
    type: int
    subtype: int
    offset: int
    size: int
    flags: int = 0

    @property
    def end(self) -> int:
        return self.offset + self.size

    def describe(self) -> str:
        kind = "app" if self.type == TYPE_APP else "data"
        where = f"0x{self.offset:x}, {self.size // 1024} KB"
        return f"{self.label} ({kind}, 0x{self.subtype:02x}) at {where}"


def parse(table: bytes) -> list[Partition]:
    """The entries of a binary partition table; PartitionError when it is not one."""
    out: list[Partition] = []
    entries = b""
    for pos in range(0, min(len(table), TABLE_LENGTH), ENTRY.size):
        raw = table[pos : pos + ENTRY.size]
        if len(raw) < ENTRY.size or raw == b"\xff" * ENTRY.size:
            break
        if raw[:16] == MD5_MAGIC:
            if hashlib.md5(entries).digest() != raw[16:]:
                raise PartitionError("the partition table's MD5 does not match its entries")
            break
        magic, ptype, subtype, offset, size, label, flags = ENTRY.unpack(raw)
        if magic != MAGIC:
            raise PartitionError(f"no partition table entry at table offset 0x{pos:x}")
        name = label.rstrip(b"\x00").decode("ascii", "replace")
        out.append(Partition(name, ptype, subtype, offset, size, flags))
        entries += raw
    if not out:
        raise PartitionError("the partition table is empty")
    return out


def build(parts: list[Partition]) -> bytes:
    """The binary table (with its MD5 entry), FF-padded to 0xC00 bytes."""
    entries = b"".join(
        ENTRY.pack(MAGIC, p.type, p.subtype, p.offset, p.size, p.label.encode()[:16], p.flags)
        for p in parts
    )
    body = entries + MD5_MAGIC + hashlib.md5(entries).digest()
    if len(body) >= TABLE_LENGTH:  # as ESP-IDF: room must stay for the FF end-of-table entry
        raise PartitionError("too many partitions for one table")
    return body + b"\xff" * (TABLE_LENGTH - len(body))


def table_of(image: bytes, image_offset: int) -> tuple[int, list[Partition]]:
    """(offset of the table in the image file, its partitions) of a combined ESP32 image."""
    at = TABLE_ADDRESS - image_offset
    if at < 0 or len(image) < at + ENTRY.size or image[at : at + 2] != MAGIC:
        raise PartitionError(
            "the image holds no partition table at 0x8000: it is an app-only image; flash the "
            "combined firmware .bin from micropython.org (bootloader + table + app)"
        )
    return at, parse(image[at : at + TABLE_LENGTH])


@dataclass(frozen=True)
class Layout:
    before: list[Partition]
    after: list[Partition]
    image: bytes  # the image with the new table

    @property
    def romfs(self) -> Partition:
        return next(p for p in self.after if p.label == ROMFS_LABEL)

    @property
    def changed(self) -> bool:
        return self.before != self.after


def with_romfs(image: bytes, image_offset: int, romfs_kb: int = DEFAULT_ROMFS_KB) -> Layout:
    """The image with a partition table holding a ROMFS partition of `romfs_kb` KB, taken from
    the start of its filesystem partition. An image whose table has one already is returned
    unchanged."""
    at, parts = table_of(image, image_offset)
    if any(p.label == ROMFS_LABEL for p in parts):
        return Layout(parts, parts, image)
    fs = [p for p in parts if p.type == TYPE_DATA and p.subtype in FS_SUBTYPES]
    if not fs:
        raise PartitionError(
            "the image's partition table has no filesystem partition to take the ROMFS from: "
            + "; ".join(p.describe() for p in parts)
        )
    vfs = fs[-1]
    size = romfs_kb * 1024
    if romfs_kb <= 0 or size % 4096:
        raise PartitionError(f"a ROMFS partition is a positive multiple of 4 KB, not {romfs_kb} KB")
    start = -(-vfs.offset // ROMFS_ALIGN) * ROMFS_ALIGN
    end = start + size
    left = vfs.end - end
    if left < MIN_FS_KB * 1024:
        raise PartitionError(
            f"a {romfs_kb} KB ROMFS partition leaves {max(left, 0) // 1024} KB of the "
            f"{vfs.size // 1024} KB filesystem ({vfs.label}); at least {MIN_FS_KB} KB must stay: "
            "use a smaller --romfs-kb"
        )
    app_end = max((p.end for p in parts if p.type == TYPE_APP), default=0)
    if start < app_end:
        raise PartitionError("the filesystem partition overlaps an app partition")
    romfs = Partition(ROMFS_LABEL, TYPE_DATA, SUBTYPE_ROMFS, start, size)
    after = []
    for p in parts:
        if p == vfs:
            after.append(romfs)
            after.append(replace(vfs, offset=end, size=vfs.end - end))
        else:
            after.append(p)
    if len(image) < at + TABLE_LENGTH:
        raise PartitionError("the image ends inside its partition table")
    new = image[:at] + build(after) + image[at + TABLE_LENGTH :]
    return Layout(parts, after, new)

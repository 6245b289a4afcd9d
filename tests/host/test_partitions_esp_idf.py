"""host/device/partitions.py against ESP-IDF's own partition table code: esp-idf-defs (PyPI)
ships gen_esp32part.py's PartitionTable / PartitionDefinition (Espressif, Apache-2.0), which
nothing in our code is derived from. Every table we write must read back there entry for
entry, pass its verify() (offsets after the table at 0x8000, app partitions 64 KB aligned and
their sizes 4 KB, data 4 KB, no overlaps, unique names), and be byte for byte what it writes
for the same entries (32-byte `<2sBBLL16sL` entries, AA 50 magic, the EB EB MD5 row, FF to
0xC00); and every table it writes must parse in ours."""

from __future__ import annotations

import hashlib

import esp_idf_defs.partitions as idf  # the test extra esp-idf-defs (pyproject.toml)
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tapcash.host.device import partitions as pt

IMAGE_OFFSET = 0x1000
# Tables in ESP-IDF's CSV form, read by ESP-IDF's code: MicroPython's ESP32_GENERIC 4 MB table
# (ports/esp32/partitions-4MiB.csv), the same with the 256 KB ROMFS `tapcash flash --partitions
# romfs` takes from vfs, and an 8 MB two-slot OTA layout with otadata
MP_4MIB = """# Name,   Type, SubType, Offset,  Size, Flags
nvs,      data, nvs,     0x9000,  0x6000,
phy_init, data, phy,     0xf000,  0x1000,
factory,  app,  factory, 0x10000, 0x1F0000,
vfs,      data, fat,     0x200000, 0x200000,
"""
MP_4MIB_ROMFS = """# Name,   Type, SubType, Offset,  Size, Flags
nvs,      data, nvs,     0x9000,  0x6000,
phy_init, data, phy,     0xf000,  0x1000,
factory,  app,  factory, 0x10000, 0x1F0000,
romfs,    data, 0x8f,    0x200000, 0x40000,
vfs,      data, fat,     0x240000, 0x1C0000,
"""
MP_OTA_8MIB = """# Name,   Type, SubType, Offset,  Size, Flags
nvs,      data, nvs,     0x9000,  0x4000,
otadata,  data, ota,     0xd000,  0x2000,
phy_init, data, phy,     0xf000,  0x1000,
ota_0,    app,  ota_0,   0x10000, 0x270000,
ota_1,    app,  ota_1,   0x280000, 0x270000,
vfs,      data, fat,     0x4f0000, 0x310000,
"""


def ours(table: object) -> list[pt.Partition]:
    """ESP-IDF's entries as our Partition values."""
    flags = lambda p: (1 if p.encrypted else 0) | (2 if p.readonly else 0)  # noqa: E731
    return [pt.Partition(p.name, p.type, p.subtype, p.offset, p.size, flags(p)) for p in table]


def theirs(binary: bytes) -> object:
    table = idf.PartitionTable.from_binary(binary)  # checks the MD5 row
    table.verify(partition_table_offset=pt.TABLE_ADDRESS)
    return table


def _stock_image() -> bytes:
    return b"\xff" * (pt.TABLE_ADDRESS - IMAGE_OFFSET) + pt.build(ours(_csv(MP_4MIB)))


def _csv(text: str) -> object:
    return idf.PartitionTable.from_csv(text)


@pytest.mark.parametrize("csv", [MP_4MIB, MP_4MIB_ROMFS, MP_OTA_8MIB])
def test_micropythons_tables_are_the_same_bytes_both_ways(csv: str) -> None:
    table = _csv(csv)
    table.verify(partition_table_offset=pt.TABLE_ADDRESS)
    binary = table.to_binary()
    assert len(binary) == pt.TABLE_LENGTH
    parts = pt.parse(binary)  # ESP-IDF's bytes in our parser
    assert parts == ours(table)
    assert pt.build(parts) == binary  # ours writes exactly ESP-IDF's bytes
    assert ours(theirs(pt.build(parts))) == parts


@pytest.mark.parametrize("romfs_kb", [64, 256, 512, 1024, 1792])
def test_the_romfs_layout_we_write_is_a_valid_esp_idf_table(romfs_kb: int) -> None:
    layout = pt.with_romfs(_stock_image(), IMAGE_OFFSET, romfs_kb)
    at = pt.TABLE_ADDRESS - IMAGE_OFFSET
    binary = layout.image[at : at + pt.TABLE_LENGTH]
    table = theirs(binary)  # verify(): alignment, overlaps, above the table, unique names
    assert ours(table) == layout.after
    assert table.to_binary() == binary
    rom = table.find_by_name("romfs")
    assert (rom.type, rom.subtype, rom.size) == (idf.DATA_TYPE, pt.SUBTYPE_ROMFS, romfs_kb * 1024)
    assert rom.offset % 0x10000 == 0  # memory-mapped: one 64 KB MMU page
    vfs = table.find_by_name("vfs")
    assert vfs.offset == rom.offset + rom.size and vfs.offset + vfs.size == 0x400000
    app = table.find_by_name("factory")
    assert app.offset % idf.get_alignment_offset_for_type(idf.APP_TYPE) == 0
    assert table.flash_size() == 0x400000
    if romfs_kb == 256:  # the same bytes as ESP-IDF makes of that layout written as CSV
        assert binary == _csv(MP_4MIB_ROMFS).to_binary()


def test_the_md5_row_and_end_are_esp_idfs() -> None:
    parts = ours(_csv(MP_4MIB))
    binary = pt.build(parts)
    n = 32 * len(parts)
    assert binary[n : n + 16] == idf.MD5_PARTITION_BEGIN
    assert binary[n + 16 : n + 32] == hashlib.md5(binary[:n]).digest()
    assert set(binary[n + 32 :]) == {0xFF}
    bad = bytearray(binary)
    bad[n + 20] ^= 1
    with pytest.raises(idf.InputError, match="MD5"):
        idf.PartitionTable.from_binary(bytes(bad))
    with pytest.raises(pt.PartitionError, match="MD5"):
        pt.parse(bytes(bad))


def test_a_table_too_long_for_an_end_marker_is_refused_as_esp_idf_does() -> None:
    # 95 entries + the MD5 row fill 0xC00 exactly: no room for the FF end ESP-IDF requires
    many = [
        pt.Partition(f"p{i}", pt.TYPE_DATA, 0x81, 0x10000 + i * 0x1000, 0x1000) for i in range(95)
    ]
    table = idf.PartitionTable()
    for p in many:
        d = idf.PartitionDefinition()
        d.name, d.type, d.subtype, d.offset, d.size = p.label, p.type, p.subtype, p.offset, p.size
        table.append(d)
    with pytest.raises(idf.InputError, match="longer than max"):
        table.to_binary()
    with pytest.raises(pt.PartitionError, match="too many partitions"):
        pt.build(many)
    fits = pt.build(many[:94])  # 94 fit, with the FF end after the MD5 row
    assert fits == theirs_binary(many[:94]) and ours(theirs(fits)) == many[:94]


def theirs_binary(parts: list[pt.Partition]) -> bytes:
    table = idf.PartitionTable()
    for p in parts:
        d = idf.PartitionDefinition()
        d.name, d.type, d.subtype, d.offset, d.size = p.label, p.type, p.subtype, p.offset, p.size
        d.encrypted, d.readonly = bool(p.flags & 1), bool(p.flags & 2)
        table.append(d)
    binary: bytes = table.to_binary()
    return binary


NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=16)
DATA_SUBTYPES = st.sampled_from([0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x80, 0x81, 0x82,
                                 0x83, 0x8F, 0x90])  # fmt: skip
APP_SUBTYPES = st.sampled_from([0x00, 0x20, *range(0x10, 0x20)])


@st.composite
def tables(draw: st.DrawFn) -> list[pt.Partition]:
    """A table ESP-IDF's verify() accepts: aligned, in order, above the table, unique names."""
    names = draw(st.lists(NAMES, min_size=1, max_size=20, unique=True))
    at = 0x9000
    out = []
    for name in names:
        app = draw(st.booleans())
        if app:
            at = -(-at // 0x10000) * 0x10000
            size = draw(st.integers(1, 64)) * 0x1000
            sub = draw(APP_SUBTYPES)
            flags = draw(st.sampled_from([0, 1]))
        else:
            sub = draw(DATA_SUBTYPES)
            size = draw(st.integers(3 if sub == 0x02 else 1, 64)) * 0x1000
            size = 0x2000 if sub in (0x00, 0x90) else size  # otadata is 8 KB
            flags = 0 if sub in (0x00, 0x03) else draw(st.sampled_from([0, 1, 2, 3]))
        if (
            sub in (0x00, 0x90)
            and not app
            and any(p.type == pt.TYPE_DATA and p.subtype == sub for p in out)
        ):
            sub = 0x81  # one otadata (and one TEE otadata) per table
        out.append(pt.Partition(name, pt.TYPE_APP if app else pt.TYPE_DATA, sub, at, size, flags))
        at += size + draw(st.integers(0, 4)) * 0x1000
    return out


@settings(max_examples=200, deadline=None)
@given(tables())
def test_any_valid_table_round_trips_through_esp_idf(parts: list[pt.Partition]) -> None:
    binary = pt.build(parts)
    table = theirs(binary)
    assert ours(table) == parts
    assert table.to_binary() == binary
    assert theirs_binary(parts) == binary  # ESP-IDF writing the same entries
    assert pt.parse(theirs_binary(parts)) == parts


@settings(max_examples=200, deadline=None)
@given(tables(), st.integers(1, 512), st.integers(64, 1024), st.integers(1, 256))
def test_a_romfs_carved_from_any_table_is_valid_for_esp_idf_or_refused(
    parts: list[pt.Partition], gap_kb4: int, vfs_kb4: int, romfs_kb4: int
) -> None:
    """with_romfs on any valid table ending in a FAT filesystem: a table ESP-IDF verifies, the
    ROMFS 64 KB aligned inside the old filesystem, or a PartitionError - never a bad table."""
    start = parts[-1].end + gap_kb4 * 0x1000
    vfs = pt.Partition("vfs_fs", pt.TYPE_DATA, 0x81, start, vfs_kb4 * 0x1000)
    image = b"\xff" * (pt.TABLE_ADDRESS - IMAGE_OFFSET) + pt.build([*parts, vfs])
    try:
        layout = pt.with_romfs(image, IMAGE_OFFSET, romfs_kb4 * 4)
    except pt.PartitionError:
        return
    at = pt.TABLE_ADDRESS - IMAGE_OFFSET
    table = theirs(layout.image[at : at + pt.TABLE_LENGTH])
    assert ours(table) == layout.after
    rom = layout.romfs
    assert rom.offset % 0x10000 == 0 and rom.size == romfs_kb4 * 4 * 1024
    assert vfs.offset <= rom.offset and rom.end <= vfs.end
    new_vfs = next(p for p in layout.after if p.label == "vfs_fs")
    assert new_vfs.offset == rom.end and new_vfs.end == vfs.end

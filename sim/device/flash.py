"""Simulated flash for the firmware: hal.Flash in memory or on a directory, with faults.

Faults are deterministic: every random choice comes from one `random.Random(seed)`, so a
failing run replays exactly from its seed and cut index.

- Power cut: the rules of sim/device/cutflash.py (`CutFlash`, the one fault-injecting flash,
  which also runs in MicroPython): `cut_at(n)` makes the n-th write/append (1-based, both
  counted together, from the creation of the SimFlash) store only a prefix of its data and
  raise `hal.PowerCut`; the device is then off until `power_on()`. The prefix is `keep` bytes,
  `keep_permille` of the data (the scenario runner's cuts: the same arithmetic in every
  runtime), or else the seeded rng's choice: 0 bytes, all of them, or a length in between.
- Bit flips: `flip_bit(name)` inverts one bit of a stored blob (retention / disturb errors).
- Images: `snapshot()` / `restore(image)` copy the whole flash, for rollback attacks
  (restore an old image) and for forking a run.
- Wear figures: `stats` counts writes, appends and bytes per blob.
"""

import io
import os
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tapcash.firmware.core.fileflash import FileFlash
from tapcash.sim.device.cutflash import ALL, CutFlash

FlashImage = dict[str, bytes]

__all__ = ["ALL", "BlobStats", "CutEvent", "FlashImage", "SimFlash"]


@dataclass
class BlobStats:
    writes: int = 0
    appends: int = 0
    bytes_written: int = 0  # bytes that reached the flash (a torn write counts its prefix)
    torn: int = 0  # writes/appends cut by a power cut


@dataclass(frozen=True)
class CutEvent:
    index: int  # the write/append number that was cut (1-based)
    op: str  # "write" or "append"
    name: str
    kept: int  # bytes of the new data that were stored
    length: int  # bytes the caller asked to store


class _MemoryBackend:
    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    def read(self, name: str) -> bytes | None:
        return self.blobs.get(name)

    def read_at(self, name: str, offset: int, n: int) -> bytes:
        return self.blobs.get(name, b"")[offset : offset + n]

    def open_blob(self, name: str) -> io.BytesIO | None:
        blob = self.blobs.get(name)
        return None if blob is None else io.BytesIO(blob)

    def write(self, name: str, data: bytes) -> None:
        self.blobs[name] = bytes(data)

    def append(self, name: str, data: bytes) -> None:
        self.blobs[name] = self.blobs.get(name, b"") + bytes(data)

    def remove(self, name: str) -> None:
        self.blobs.pop(name, None)

    def size(self, name: str) -> int:
        blob = self.blobs.get(name)
        return 0 if blob is None else len(blob)

    def names(self) -> list[str]:
        return sorted(self.blobs)


class _DirBackend(FileFlash):
    def __init__(self, root: Path) -> None:
        super().__init__(str(root), sync=False)

    def names(self) -> list[str]:
        return sorted(os.listdir(self.root))


class SimFlash(CutFlash):
    """hal.Flash with power-cut and bit-flip injection, per-blob stats and whole images.

    `root=None` keeps blobs in memory; a directory path stores each blob as a file through
    firmware FileFlash (so the torn prefixes really go through the firmware's file code).
    """

    def __init__(self, root: str | Path | None = None, seed: int = 0) -> None:
        self._backend: _MemoryBackend | _DirBackend = (
            _MemoryBackend() if root is None else _DirBackend(Path(root))
        )
        super().__init__(self._backend)
        self.rng = random.Random(seed)
        self.stats: dict[str, BlobStats] = {}
        self.cuts: list[CutEvent] = []

    # -- faults ------------------------------------------------------------------------

    def choose_keep(self, length: int) -> int:
        """0 or all with probability 1/4 each, otherwise uniform over 0..len."""
        r = self.rng.random()
        if r < 0.25:
            return 0
        if r < 0.5:
            return length
        return self.rng.randint(0, length)

    def flip_bit(self, name: str, bit: int | None = None) -> int:
        """Invert one bit of blob `name` (a random one by default); returns the bit index."""
        data = self._backend.read(name)
        if not data:
            raise ValueError(f"no data in blob {name!r}")
        if bit is None:
            bit = self.rng.randrange(len(data) * 8)
        buf = bytearray(data)
        buf[bit // 8] ^= 1 << (bit % 8)
        self._backend.write(name, bytes(buf))
        return bit

    # -- images ------------------------------------------------------------------------

    def names(self) -> list[str]:
        return self._backend.names()

    def snapshot(self) -> FlashImage:
        """A copy of every blob (works while powered off, like reading the chip directly)."""
        image: FlashImage = {}
        for name in self._backend.names():
            data = self._backend.read(name)
            if data is not None:
                image[name] = data
        return image

    def restore(self, image: Mapping[str, bytes]) -> None:
        """Make the flash hold exactly `image` (stats and power state are left alone)."""
        for name in self._backend.names():
            if name not in image:
                self._backend.remove(name)
        for name, data in image.items():
            self._backend.write(name, bytes(data))

    # -- statistics --------------------------------------------------------------------

    def blob_stats(self, name: str) -> BlobStats:
        return self.stats.setdefault(name, BlobStats())

    def reset_stats(self) -> None:
        self.stats = {}
        self.bytes_written = 0

    def stored(self, op: str, name: str, kept: int, length: int, torn: bool) -> None:
        st = self.stats.get(name)  # (not setdefault: that makes a BlobStats every write)
        if st is None:
            st = self.stats[name] = BlobStats()
        if op == "write":
            st.writes += 1
        else:
            st.appends += 1
        st.bytes_written += kept
        if torn:
            st.torn += 1
            self.cuts.append(CutEvent(self.write_count, op, name, kept, length))

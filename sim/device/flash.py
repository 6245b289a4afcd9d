"""Simulated flash for the firmware: hal.Flash in memory or on a directory, with faults.

Faults are deterministic: every random choice comes from one `random.Random(seed)`, so a
failing run replays exactly from its seed and cut index.

- Power cut: `cut_at(n)` makes the n-th write/append (1-based, both counted together, from
  the creation of the SimFlash) store only a prefix of its data - 0 bytes, all of them, or a
  length in between - and raise `hal.PowerCut`. The device is then off: every call raises
  PowerCut until `power_on()`. The stored prefix is what a torn write leaves on real flash:
  for `write` the old content is gone, for `append` the old content stays.
- Bit flips: `flip_bit(name)` inverts one bit of a stored blob (retention / disturb errors).
- Images: `snapshot()` / `restore(image)` copy the whole flash, for rollback attacks
  (restore an old image) and for forking a run.
- Wear figures: `stats` counts writes, appends and bytes per blob.
"""

import os
import random
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tapcash.firmware.core.fileflash import FileFlash
from tapcash.firmware.core.hal import Flash, PowerCut

FlashImage = dict[str, bytes]

ALL = sys.maxsize
"""`keep=ALL` in cut_at: the cut write stores every byte, then the power goes."""


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


class SimFlash(Flash):
    """hal.Flash with power-cut and bit-flip injection.

    `root=None` keeps blobs in memory; a directory path stores each blob as a file through
    firmware FileFlash (so the torn prefixes really go through the firmware's file code).
    """

    def __init__(self, root: str | Path | None = None, seed: int = 0) -> None:
        self._backend: _MemoryBackend | _DirBackend = (
            _MemoryBackend() if root is None else _DirBackend(Path(root))
        )
        self.rng = random.Random(seed)
        self.write_count = 0  # writes + appends attempted while powered, since creation
        self.powered = True
        self.stats: dict[str, BlobStats] = {}
        self.cuts: list[CutEvent] = []
        self._cut_at: int | None = None
        self._cut_keep: int | None = None

    # -- fault control ---------------------------------------------------------------

    def cut_at(self, n: int, keep: int | None = None) -> None:
        """Cut the power during the n-th write/append since creation (1-based).

        `keep` fixes how many bytes of that write survive (clamped to its length; `ALL` for
        all); None lets the seeded rng choose: 0 or all with probability 1/4 each, otherwise
        uniform over 0..len.
        """
        if n <= self.write_count:
            raise ValueError(f"write {n} already happened (count is {self.write_count})")
        self._cut_at = n
        self._cut_keep = keep

    def cut_after(self, k: int, keep: int | None = None) -> None:
        """Cut the power during the k-th write/append from now (k >= 1)."""
        self.cut_at(self.write_count + k, keep)

    def cancel_cut(self) -> None:
        self._cut_at = None
        self._cut_keep = None

    @property
    def cut_pending(self) -> bool:
        return self._cut_at is not None

    def power_off(self) -> None:
        self.powered = False

    def power_on(self) -> None:
        """Power back on; a cut that did not fire yet is cancelled."""
        self.powered = True
        self.cancel_cut()

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

    @property
    def bytes_written(self) -> int:
        return sum(s.bytes_written for s in self.stats.values())

    def reset_stats(self) -> None:
        self.stats = {}

    # -- hal.Flash -----------------------------------------------------------------------

    def _check_power(self) -> None:
        if not self.powered:
            raise PowerCut("flash is powered off")

    def read(self, name: str) -> bytes | None:
        self._check_power()
        return self._backend.read(name)

    def size(self, name: str) -> int:
        self._check_power()
        return self._backend.size(name)

    def remove(self, name: str) -> None:
        self._check_power()
        self._backend.remove(name)

    def write(self, name: str, data: bytes) -> None:
        self._store("write", name, bytes(data))

    def append(self, name: str, data: bytes) -> None:
        self._store("append", name, bytes(data))

    def _store(self, op: str, name: str, data: bytes) -> None:
        self._check_power()
        self.write_count += 1
        st = self.blob_stats(name)
        if op == "write":
            st.writes += 1
        else:
            st.appends += 1
        if self._cut_at != self.write_count:
            getattr(self._backend, op)(name, data)
            st.bytes_written += len(data)
            return
        kept = self._choose_keep(len(data))
        getattr(self._backend, op)(name, data[:kept])
        st.bytes_written += kept
        st.torn += 1
        self.cuts.append(CutEvent(self.write_count, op, name, kept, len(data)))
        self.cancel_cut()
        self.powered = False
        raise PowerCut(f"power cut at write {self.write_count} ({op} {name}: {kept}/{len(data)})")

    def _choose_keep(self, length: int) -> int:
        if self._cut_keep is not None:
            return max(0, min(self._cut_keep, length))
        r = self.rng.random()
        if r < 0.25:
            return 0
        if r < 0.5:
            return length
        return self.rng.randint(0, length)

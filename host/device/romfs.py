"""ROMFS images for `tapcash deploy --romfs`: the compiled firmware in a read-only image
(mpremote's own builder, `mpremote romfs build`), written to the board's ROMFS partition
with `mpremote romfs deploy`. MicroPython (1.25+, built with ROMFS) mounts the partition at
/rom at boot and puts /rom on sys.path, and bytecode imported from it runs in place: only the
module objects, not their code and constants, take heap.
"""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path

from .errors import DeviceError

ROM_ROOT = "/rom"

# What the board says about its ROMFS: vfs.rom_ioctl(1) partitions; partition 0's size
_QUERY = """\
try:
    import vfs
except ImportError:
    vfs = None
_tc_r = {'ioctl': hasattr(vfs, 'rom_ioctl'), 'count': 0, 'size': 0}
if _tc_r['ioctl']:
    _tc_r['count'] = vfs.rom_ioctl(1)
    if _tc_r['count'] > 0:
        _tc_d = vfs.rom_ioctl(2, 0)
        if hasattr(_tc_d, 'ioctl'):
            _tc_r['size'] = _tc_d.ioctl(4, 0) * _tc_d.ioctl(5, 0)
        elif not isinstance(_tc_d, int):
            _tc_r['size'] = len(_tc_d)
        del _tc_d
import json
print('TCROMFS ' + json.dumps(_tc_r))
del _tc_r, vfs
"""


@dataclass(frozen=True)
class RomInfo:
    ioctl: bool  # the MicroPython build has ROMFS (vfs.rom_ioctl)
    partitions: int
    size: int  # bytes of partition 0

    @property
    def usable(self) -> bool:
        return self.ioctl and self.partitions > 0 and self.size > 0


def build_image(tree: Path) -> bytes:
    """A ROMFS image of the directory `tree` (already compiled: .mpy and data files)."""
    from mpremote.romfs import make_romfs

    with redirect_stdout(io.StringIO()):  # make_romfs prints the tree it packs
        return bytes(make_romfs(str(tree), mpy_cross=False))


def image_files(tree: Path, root: str = ROM_ROOT) -> dict[str, int]:
    """{board path: size} of what an image of `tree` holds, as the board will see it."""
    return {
        f"{root}/{p.relative_to(tree).as_posix()}": p.stat().st_size
        for p in sorted(tree.rglob("*"))
        if p.is_file()
    }


def query(port: str) -> RomInfo:
    """Ask the board (mpremote exec) whether it has a ROMFS partition and how big it is."""
    from .repl import mpremote

    done = mpremote(port, ["exec", _QUERY])
    for line in done.stdout.splitlines():
        if line.startswith("TCROMFS "):
            doc = json.loads(line[len("TCROMFS ") :])
            return RomInfo(bool(doc["ioctl"]), int(doc["count"]), int(doc["size"]))
    raise DeviceError(f"the board did not answer the ROMFS query:\n{done.stdout[-500:]}")

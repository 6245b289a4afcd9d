"""A simulated MicroPython board on a pseudo-terminal: the real MicroPython 1.27 VM (the
WebAssembly port under Node, `sim.vm.mpvm`) with its REPL on `/dev/pts/N`, so the tools made for
a board on a USB UART work unchanged:

    mpremote connect /dev/pts/N exec "print(1+1)"
    mpremote connect /dev/pts/N fs cp main.py :main.py
    tapcash deploy --port /dev/pts/N --board devkitc-pn532-wallet --role wallet

    with ReplBoard() as board:          # python -m tapcash.sim.vm.repl_pty does the same
        print(board.path)

What it does like a board: friendly REPL (echo, prompts, paste mode), raw REPL (Ctrl-A) and
raw-paste, Ctrl-C at a prompt, soft reset (Ctrl-D, `sys.exit()`) with the filesystem kept and
/boot.py and /main.py run as MicroPython's main loop does (main.py only after a soft reset in
the friendly REPL: `mpremote soft-reset`, in the raw REPL, does not start it, as on a board),
a hard reset (`machine.reset()`, `mpremote reset`: ROM boot lines, friendly REPL, main.py),
tracebacks with Linux errno numbers, \\n sent as \\r\\n for text, `mpremote fs ls` with real sizes.
A `machine` module (sim/vm/board_machine.py) gives the deployed firmware its pins and buses:
a PN532 with an empty RF field (sim/nfc/pn532.py, served by `BoardBus`) on the bus the profile
names, its IRQ and chip select wired to the profile's GPIOs. A program started from main.py
(the firmware's main loop) runs on the line live: it reads the bytes as they come, writes go
out at once, and a Ctrl-C in the input (mpremote, `tapcash deploy`) stops it as on a board -
so deploy -> `mpremote reset` -> provision -> sync runs on it (tests/host/test_board_journey.py).
The REPL work is the VM's own (replInit / replProcessChar); the board behaviour around it is
`mpvm_repl_plugin.mjs`. This module moves bytes between the pty and the VM, on a thread, and
serves the VM's calls for the line and the buses while a request runs.

The board's flash in a folder (`save_dir`, `files=` a folder; `tapcash sim board --flash DIR`):
the filesystem is the folder's tree, and the partitions outside it are under DIR/.flash/ - the
ESP32 partition table (partitions.bin, the binary format of host/device/partitions.py: the
stock 4 MB layout with the ROMFS partition carved from the filesystem, as `tapcash flash
--partitions romfs` writes it) and the ROMFS partition's bytes (romfs.bin). A board started
from that folder gets its ROMFS partition back (size from the table, image as deployed) and
mounts it at boot, unless told another `romfs_kb` (a new table: a partition of another size
starts erased).

Not like a board: a program that never reads the line cannot be interrupted (the VM shares
one thread with its host); its ROMFS partition (sim/vm/board_romfs.py: vfs.rom_ioctl for
`mpremote romfs deploy` and `tapcash deploy --romfs`) is unpacked into /rom at boot, not run
in place; the filesystem lives in the Node process: `stop()` loses it unless `save_dir` is
given (then it is written there; a later board started with `files=` that folder has it back).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import sys
import threading
import tty
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tapcash.sim.device.serial_pty import write_like_uart
from tapcash.sim.vm.mpvm import MicroPythonVM, MicroPythonVMError
from tapcash.sim.vm.pn532_vm import PLUGIN_PATH as BUS_PLUGIN_PATH
from tapcash.sim.vm.pn532_vm import VM_BUS_FILES

_HERE = Path(__file__).resolve().parent
PLUGIN_PATH = _HERE / "mpvm_repl_plugin.mjs"
MACHINE_PATH = _HERE / "board_machine.py"
ROMFS_PATH = _HERE / "board_romfs.py"
BOARD_LIB = "/home/simboard"  # the board's own modules (machine); left out of its file listing
ROMFS_PART = f"{BOARD_LIB}/romfs.part"  # the ROMFS partition's bytes (board_romfs.PART)
FLASH_META = ".flash"  # in a flash folder: the partitions outside the filesystem
TABLE_FILE = "partitions.bin"  # the ESP32 partition table (host/device/partitions.py format)
ROMFS_FILE = "romfs.bin"  # the ROMFS partition
READ_CHUNK = 4096
IDLE_POLL_S = 0.02  # a running program reading an idle line waits this long per read
RUN_TIMEOUT_S = 24 * 3600.0  # one REPL input may run a long program; stop() kills it anyway

_LIST_FILES = (
    "def _tc_walk(d, out):\n"
    "    import os\n"
    "    for e in os.ilistdir(d):\n"
    "        p = d.rstrip('/') + '/' + e[0]\n"
    "        if p in ('/dev', '/proc', '/tmp', '/home', '/rom'):\n"
    "            continue\n"
    "        if e[1] & 0x4000:\n"
    "            out.append(p + '/')\n"
    "            _tc_walk(p, out)\n"
    "        else:\n"
    "            out.append(p)\n"
    "    return out\n"
    "import json as _tc_j\n"
    "_tc_r = _tc_j.dumps(_tc_walk('/', []))\n"
    "del _tc_walk, _tc_j\n"
)


class ReplBoard:
    """The VM's REPL served on a fresh pseudo-terminal until `stop()`.

    `files` preloads the board's filesystem: a mapping of board paths to bytes, or a host folder
    whose tree becomes the board's root (as written by a previous board's `save_dir`).
    """

    def __init__(
        self,
        *,
        files: Mapping[str, bytes] | Path | str | None = None,
        save_dir: Path | str | None = None,
        vm_dir: Path | None = None,
        heapsize: int = 1024 * 1024,
        romfs_kb: int | None = None,
    ) -> None:
        self.files = files
        saved_kb, self._romfs_image = _saved_romfs(files)
        # its ROMFS partition (0: a stock image's table, none); None: as the flash folder's
        # table says (none without one)
        self.romfs_kb = saved_kb if romfs_kb is None else romfs_kb
        if self._romfs_image is not None and len(self._romfs_image) != self.romfs_kb * 1024:
            self._romfs_image = None  # re-partitioned: the new partition starts erased
        self.save_dir = Path(save_dir) if save_dir is not None else None
        self.vm = MicroPythonVM(
            vm_dir,
            heapsize=heapsize,
            plugins=[PLUGIN_PATH, BUS_PLUGIN_PATH],
            timeout_s=RUN_TIMEOUT_S,
        )
        self.bus = BoardBus()
        self._pending = b""  # line bytes read for a program that stopped before taking them
        self._break_then_eof = False
        self._stopping = False
        self._booted = threading.Event()  # boot done, or a program it started reads the line
        self.mode = "friendly"
        self.resets = 0  # soft resets the board went through
        self.error: BaseException | None = None
        self.closed = threading.Event()
        self._lock = threading.Lock()  # one VM request at a time (pump thread, host calls)
        self._master = self._slave = self._wake_r = self._wake_w = -1
        self._thread: threading.Thread | None = None
        self.path = ""

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> str:
        """Boot the VM (preloaded files, /boot.py, /main.py, banner) and open the line. The
        boot runs on the line's thread: a deployed firmware's main.py never returns."""
        self.vm.start()
        self.vm.put_file(f"{BOARD_LIB}/machine.py", MACHINE_PATH.read_bytes())
        for path in VM_BUS_FILES:
            self.vm.put_file(f"{BOARD_LIB}/{path.name}", path.read_bytes())
        self.vm.put_file(f"{BOARD_LIB}/board_romfs.py", ROMFS_PATH.read_bytes())
        self.vm.put_file(f"{BOARD_LIB}/romfs_kb", str(int(self.romfs_kb)).encode())
        if self._romfs_image is not None:
            self.vm.put_file(ROMFS_PART, self._romfs_image)
        for path, data in _files_of(self.files).items():
            self.vm.put_file(path, data)
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no line discipline: a byte pipe like a UART
        os.set_blocking(self._master, False)
        self.path = os.ttyname(self._slave)
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name=f"repl-board {self.path}")
        self._thread.daemon = True
        self._thread.start()
        self._booted.wait(120)
        return self.path

    def stop(self) -> None:
        """Close the line and the VM (saving the filesystem first when `save_dir` is set)."""
        if self._thread is not None and self._thread.is_alive():
            self._stopping = True  # a running firmware is sent a break, so the VM comes back
            os.write(self._wake_w, b"x")
            self._thread.join(10)
            if self._thread.is_alive():  # stuck in a program that never returns: pull the plug
                proc = self.vm._proc
                if proc is not None:
                    proc.kill()
                self._thread.join(5)
        if self.save_dir is not None and self.vm.running:
            with contextlib.suppress(MicroPythonVMError):
                self.save(self.save_dir)
        self.vm.close()
        for fd in (self._master, self._slave, self._wake_r, self._wake_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = self._wake_r = self._wake_w = -1
        self.closed.set()

    def __enter__(self) -> ReplBoard:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the board's filesystem, from the host (between REPL inputs) ------------------------
    def list_files(self) -> list[str]:
        """Every path on the board (folders end in /); /dev, /proc, /tmp, /home and the ROMFS
        mount /rom left out."""
        with self._lock:
            value, _ = self.vm.exec_result(_LIST_FILES, "_tc_r")
        return sorted(json.loads(value))

    def read_file(self, path: str) -> bytes:
        with self._lock:
            return self.vm.get_file(path)

    def save(self, folder: Path | str) -> int:
        """Write the board's files under `folder` (replacing what is there), and its partition
        table and ROMFS partition under folder/.flash/; returns the count of files."""
        folder = Path(folder)
        paths = [p for p in self.list_files() if not p.endswith("/")]
        folder.mkdir(parents=True, exist_ok=True)
        for p in paths:
            target = folder / p.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.read_file(p))
        self._save_partitions(folder / FLASH_META)
        return len(paths)

    def _save_partitions(self, meta: Path) -> None:
        from tapcash.host.device import partitions as pt

        size = self.romfs_kb * 1024
        image = b"\xff" * size
        if size:
            with contextlib.suppress(MicroPythonVMError):  # never written: an erased partition
                data = self.read_file(ROMFS_PART)
                if len(data) == size:
                    image = data
        meta.mkdir(parents=True, exist_ok=True)
        (meta / TABLE_FILE).write_bytes(pt.build(sim_table(self.romfs_kb)))
        rom = meta / ROMFS_FILE
        if size:
            rom.write_bytes(image)
        else:
            rom.unlink(missing_ok=True)

    # -- the line ----------------------------------------------------------------------------
    def _request(self, op: str, data: bytes) -> bytes:
        """One REPL request; while it runs, the VM's calls to the host (a running program's
        line reads and writes, its bus transactions) are served here."""
        vm = self.vm
        with self._lock:
            proc = vm._proc
            if proc is None:
                raise MicroPythonVMError("the MicroPython VM is not running")
            vm._write_frame(proc, {"op": op}, data)
            while True:
                header, out = vm._read_frame(RUN_TIMEOUT_S)
                cb = header.get("cb")
                if cb is None:
                    break
                self._answer(self._serve(str(cb), header))
        if not header.get("ok"):
            raise MicroPythonVMError(f"the board's VM failed: {header.get('error')}")
        self.mode = str(header.get("mode", self.mode))
        self.resets = int(header.get("resets", self.resets))
        return out

    def _serve(self, cb: str, h: dict[str, Any]) -> dict[str, Any]:
        if cb == "uart_out":
            write_like_uart(self._master, bytes.fromhex(str(h.get("data", ""))))
            return {}
        if cb == "uart_in":
            self._booted.set()
            return {"r": self._line_in(int(h.get("n", 1))).hex()}
        if cb == "bus":
            try:
                return {"r": self.bus.serve(str(h["op"]), bytes.fromhex(str(h["data"]))).hex()}
            except OSError as e:
                return {"error": str(e.errno or e)}
        return {"error": f"unknown host call {cb}"}

    def _answer(self, answer: dict[str, Any]) -> None:
        self.vm.answer_host_call(answer)

    def _line_in(self, n: int) -> bytes:
        """Bytes for a running program that reads the line: what is there (waiting a little
        when nothing is). A break (Ctrl-C) ends the chunk and the next read finds nothing, so
        the bytes after it (mpremote's Ctrl-A) reach the REPL once the program has stopped."""
        if self._break_then_eof:
            self._break_then_eof = False
            return b""
        if self._stopping:
            self._break_then_eof = True
            return b"\r\x03"
        if not self._pending:
            ready, _, _ = select.select([self._master, self._wake_r], [], [], IDLE_POLL_S)
            if self._wake_r in ready:
                self._stopping = True
                return self._line_in(n)
            if self._master in ready:
                with contextlib.suppress(BlockingIOError, OSError):
                    self._pending += os.read(self._master, READ_CHUNK)
        take = self._pending[: max(1, n)]
        brk = take.find(3)
        if brk >= 0:
            end = brk
            while end < len(take) and take[end] == 3:
                end += 1
            take = take[:end]
            self._break_then_eof = True
        self._pending = self._pending[len(take) :]
        return take

    def _run(self) -> None:
        try:
            self._output(self._request("repl_boot", b""))
            self._booted.set()
            self._loop()
        except BaseException as e:  # surfaced through .error (the VM died, the line failed)
            self.error = e
        finally:
            self._booted.set()
            self.closed.set()

    def _loop(self) -> None:
        while True:
            if self._pending and not self._stopping:  # read by a program that has stopped
                data, self._pending = self._pending, b""
                self._output(self._request("repl", data))
                continue
            ready, _, _ = select.select([self._master, self._wake_r], [], [])
            if self._wake_r in ready:
                return
            try:
                data = os.read(self._master, READ_CHUNK)
            except BlockingIOError:
                continue
            except OSError:  # EIO: the slave side is gone (we hold it, so: closing down)
                return
            if data:
                self._output(self._request("repl", data))

    def _output(self, data: bytes) -> None:
        write_like_uart(self._master, data)


class BoardBus:
    """The simulated board's buses, served for its `machine` module (sim/vm/board_machine.py):
    a PN532 (sim/nfc/pn532.py) with an empty RF field on whichever bus the profile gives it
    (I2C at 0x24, SPI, UART); other I2C devices take writes and read zeros; pins keep what is
    written and read high otherwise, except the PN532's IRQ (pid 200, low while it has a frame)
    and chip select (pid 201)."""

    IRQ_PID = 200
    CS_PID = 201

    def __init__(self) -> None:
        from tapcash.sim.nfc.pn532 import PN532Emulator, SimI2C, SimPin, SimSPI, SimUART, irq_pin

        self.chip = PN532Emulator()
        self.i2c = SimI2C(self.chip)
        self.spi = SimSPI(self.chip)
        self.uart = SimUART(self.chip)
        self.pins: dict[int, Any] = {self.IRQ_PID: irq_pin(self.chip), self.CS_PID: self.spi.cs}
        self._pin = SimPin

    def pin(self, pid: int) -> Any:
        if pid not in self.pins:
            self.pins[pid] = self._pin(1)
        return self.pins[pid]

    def serve(self, op: str, d: bytes) -> bytes:
        if op == "i2c_w":
            if d[0] == self.chip.address:
                self.i2c.writeto(d[0], d[1:])
            return b""
        if op == "i2c_r":
            buf = bytearray(d[1] << 8 | d[2])
            if d[0] == self.chip.address:
                self.i2c.readfrom_into(d[0], buf)
            return bytes(buf)
        if op == "spi_w":
            self.spi.write(d)
            return b""
        if op == "spi_r":
            buf = bytearray(d[0] << 8 | d[1])
            self.spi.readinto(buf, d[2])
            return bytes(buf)
        if op == "spi_wr":
            buf = bytearray(len(d))
            self.spi.write_readinto(d, buf)
            return bytes(buf)
        if op == "uart_w":
            self.uart.write(d)
            return b""
        if op == "uart_any":
            n = min(self.uart.any(), 0xFFFF)
            return bytes((n >> 8, n & 0xFF))
        if op == "uart_r":
            return self.uart.read(d[0] << 8 | d[1]) or b""
        if op == "pin_set":
            self.pin(d[0]).value(d[1])
            return b""
        if op == "pin_get":
            return bytes((self.pin(d[0]).value() or 0,))
        raise OSError(22, f"unknown bus op {op}")


def _files_of(files: Mapping[str, bytes] | Path | str | None) -> dict[str, bytes]:
    if files is None:
        return {}
    if isinstance(files, Mapping):
        return {("/" + p.lstrip("/")): bytes(d) for p, d in files.items()}
    root = Path(files)
    if not root.is_dir():
        raise FileNotFoundError(f"no such folder: {root}")
    return {
        "/" + p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).parts[0] != FLASH_META
    }


def sim_table(romfs_kb: int) -> list[Any]:
    """The simulated board's partition table: MicroPython's stock ESP32 4 MB layout
    (partitions-4MiB.csv), with a `romfs_kb` KB ROMFS partition carved from the start of the
    filesystem as `tapcash flash --partitions romfs` does (none for 0)."""
    from tapcash.host.device import partitions as pt

    stock = [
        pt.Partition("nvs", pt.TYPE_DATA, 0x02, 0x9000, 0x6000),
        pt.Partition("phy_init", pt.TYPE_DATA, 0x01, 0xF000, 0x1000),
        pt.Partition("factory", pt.TYPE_APP, 0x00, 0x10000, 0x1F0000),
        pt.Partition("vfs", pt.TYPE_DATA, 0x81, 0x200000, 0x200000),
    ]
    if not romfs_kb:
        return stock
    image = b"\xff" * pt.TABLE_ADDRESS + pt.build(stock)
    with contextlib.suppress(pt.PartitionError):
        return pt.with_romfs(image, 0, romfs_kb).after
    # more than a 4 MB flash's filesystem can give: the board has a bigger flash
    size = -(-romfs_kb * 1024 // 4096) * 4096
    rom = pt.Partition(pt.ROMFS_LABEL, pt.TYPE_DATA, pt.SUBTYPE_ROMFS, 0x200000, size)
    return [*stock[:3], rom, pt.Partition("vfs", pt.TYPE_DATA, 0x81, rom.end, 0x200000)]


def _saved_romfs(files: Mapping[str, bytes] | Path | str | None) -> tuple[int, bytes | None]:
    """(ROMFS partition KB, its bytes) kept in a flash folder's .flash/ by `save`; (0, None)
    for a folder without a table (a stock image) or no folder. A table that does not parse
    is an error, not a silently stock board."""
    if files is None or isinstance(files, Mapping):
        return 0, None
    meta = Path(files) / FLASH_META
    table = meta / TABLE_FILE
    if not table.is_file():
        return 0, None
    from tapcash.host.device import partitions as pt

    rom = next((p for p in pt.parse(table.read_bytes()) if p.subtype == pt.SUBTYPE_ROMFS), None)
    if rom is None or rom.type != pt.TYPE_DATA:
        return 0, None
    image = meta / ROMFS_FILE
    data = image.read_bytes() if image.is_file() else None
    return rom.size // 1024, data if data is not None and len(data) == rom.size else None


def serve(files: Any = None, save_dir: Path | str | None = None) -> ReplBoard:
    """Start a simulated board and return it; its `.path` is the port to hand to mpremote."""
    board = ReplBoard(files=files, save_dir=save_dir)
    board.start()
    return board


def main(argv: list[str] | None = None) -> int:
    """`python -m tapcash.sim.vm.repl_pty [--flash DIR]`: a simulated MicroPython board on a
    pseudo-terminal until Ctrl-C. With --flash its filesystem, partition table and ROMFS
    partition are loaded from DIR at start and written back there at exit."""
    import argparse

    ap = argparse.ArgumentParser(
        prog="python -m tapcash.sim.vm.repl_pty",
        description="a simulated MicroPython board (the real VM) with its REPL on a pty",
    )
    ap.add_argument("--flash", type=Path, help="folder holding the board's filesystem")
    ap.add_argument(
        "--romfs-kb",
        type=int,
        default=None,
        help="size of its ROMFS partition (as after tapcash flash --partitions romfs); 0: none; "
        "default: as the --flash folder's partition table says (none without one)",
    )
    args = ap.parse_args(argv)
    files = args.flash if args.flash is not None and args.flash.is_dir() else None
    romfs_kb = None if args.romfs_kb is None else max(0, args.romfs_kb)
    board = ReplBoard(files=files, save_dir=args.flash, romfs_kb=romfs_kb)
    try:
        board.start()
    except MicroPythonVMError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(board.path, flush=True)
    print(
        f"MicroPython board on {board.path} (mpremote connect {board.path}); Ctrl-C stops it",
        file=sys.stderr,
        flush=True,
    )
    try:
        while not board.closed.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    board.stop()
    if board.error is not None:
        print(f"error: {board.error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

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
/boot.py and /main.py run as MicroPython's main loop does, tracebacks with Linux errno
numbers, \\n sent as \\r\\n. The REPL work is the VM's own (replInit / replProcessChar); the board
behaviour around it is `mpvm_repl_plugin.mjs`. This module only moves bytes between the pty and
the VM, on a thread.

Not like a board: a running program cannot be interrupted (Ctrl-C acts only at a prompt, the
VM shares one thread with its host), there is no `machine` module, and the filesystem lives in
the Node process: `stop()` loses it unless `save_dir` is given (then it is written there; a
later board started with `files=` that folder has it back).
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

PLUGIN_PATH = Path(__file__).resolve().parent / "mpvm_repl_plugin.mjs"
READ_CHUNK = 4096
RUN_TIMEOUT_S = 24 * 3600.0  # one REPL input may run a long program; stop() kills it anyway

_LIST_FILES = (
    "def _tc_walk(d, out):\n"
    "    import os\n"
    "    for e in os.ilistdir(d):\n"
    "        p = d.rstrip('/') + '/' + e[0]\n"
    "        if p in ('/dev', '/proc', '/tmp', '/home'):\n"
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
    ) -> None:
        self.files = files
        self.save_dir = Path(save_dir) if save_dir is not None else None
        self.vm = MicroPythonVM(
            vm_dir, heapsize=heapsize, plugins=[PLUGIN_PATH], timeout_s=RUN_TIMEOUT_S
        )
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
        """Boot the VM (preloaded files, /boot.py, /main.py, banner) and open the line."""
        self.vm.start()
        for path, data in _files_of(self.files).items():
            self.vm.put_file(path, data)
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no line discipline: a byte pipe like a UART
        os.set_blocking(self._master, False)
        self.path = os.ttyname(self._slave)
        self._wake_r, self._wake_w = os.pipe()
        self._output(self._request("repl_boot", b""))
        self._thread = threading.Thread(target=self._run, name=f"repl-board {self.path}")
        self._thread.daemon = True
        self._thread.start()
        return self.path

    def stop(self) -> None:
        """Close the line and the VM (saving the filesystem first when `save_dir` is set)."""
        if self._thread is not None and self._thread.is_alive():
            os.write(self._wake_w, b"x")
            self._thread.join(2)
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
        """Every path on the board (folders end in /), /dev, /proc, /tmp and /home left out."""
        with self._lock:
            value, _ = self.vm.exec_result(_LIST_FILES, "_tc_r")
        return sorted(json.loads(value))

    def read_file(self, path: str) -> bytes:
        with self._lock:
            return self.vm.get_file(path)

    def save(self, folder: Path | str) -> int:
        """Write the board's files under `folder` (replacing what is there); returns a count."""
        folder = Path(folder)
        paths = [p for p in self.list_files() if not p.endswith("/")]
        folder.mkdir(parents=True, exist_ok=True)
        for p in paths:
            target = folder / p.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.read_file(p))
        return len(paths)

    # -- the line ----------------------------------------------------------------------------
    def _request(self, op: str, data: bytes) -> bytes:
        with self._lock:
            header, out = self.vm.request({"op": op}, data)
        self.mode = str(header.get("mode", self.mode))
        self.resets = int(header.get("resets", self.resets))
        return out

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as e:  # surfaced through .error (the VM died, the line failed)
            self.error = e
        finally:
            self.closed.set()

    def _loop(self) -> None:
        while True:
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
        if p.is_file()
    }


def serve(files: Any = None, save_dir: Path | str | None = None) -> ReplBoard:
    """Start a simulated board and return it; its `.path` is the port to hand to mpremote."""
    board = ReplBoard(files=files, save_dir=save_dir)
    board.start()
    return board


def main(argv: list[str] | None = None) -> int:
    """`python -m tapcash.sim.vm.repl_pty [--flash DIR]`: a simulated MicroPython board on a
    pseudo-terminal until Ctrl-C. With --flash its filesystem is loaded from DIR at start
    and written back there at exit."""
    import argparse

    ap = argparse.ArgumentParser(
        prog="python -m tapcash.sim.vm.repl_pty",
        description="a simulated MicroPython board (the real VM) with its REPL on a pty",
    )
    ap.add_argument("--flash", type=Path, help="folder holding the board's filesystem")
    args = ap.parse_args(argv)
    files = args.flash if args.flash is not None and args.flash.is_dir() else None
    board = ReplBoard(files=files, save_dir=args.flash)
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

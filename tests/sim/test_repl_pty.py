"""The simulated MicroPython board (sim/vm/repl_pty.py): the real MicroPython 1.27 VM's REPL on a
pseudo-terminal, driven by the real mpremote (a subprocess) and by pyserial, as a board on a USB
UART would be. Needs Node.js and the VM package (installed on demand, see sim/vm/mpvm.py)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial

from tapcash.sim.vm.repl_pty import ReplBoard

BANNER = b'Type "help()" for more information.\r\n>>> '
RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n>"


def mpremote(port: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "mpremote", "connect", port, *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


class Line:
    """The host end of the board's serial line (pyserial, exclusive like mpremote)."""

    def __init__(self, port: str) -> None:
        self.ser = serial.Serial(port, 115200, timeout=0.05, exclusive=True)
        self.buf = bytearray()

    def send(self, data: bytes) -> None:
        self.ser.write(data)

    def until(self, marker: bytes, timeout_s: float = 10.0) -> bytes:
        deadline = time.monotonic() + timeout_s
        while marker not in self.buf:
            assert time.monotonic() < deadline, f"no {marker!r} in {bytes(self.buf)!r}"
            self.buf += self.ser.read(4096)
        i = self.buf.index(marker) + len(marker)
        out, self.buf = bytes(self.buf[:i]), self.buf[i:]
        return out

    def read_exact(self, n: int, timeout_s: float = 10.0) -> bytes:
        deadline = time.monotonic() + timeout_s
        while len(self.buf) < n:
            assert time.monotonic() < deadline, f"only {bytes(self.buf)!r}"
            self.buf += self.ser.read(n - len(self.buf))
        out, self.buf = bytes(self.buf[:n]), self.buf[n:]
        return out

    def friendly(self) -> None:
        self.send(b"\r\x03\x02")
        self.until(BANNER)

    def close(self) -> None:
        self.ser.close()


@pytest.fixture
def line(board: ReplBoard) -> Iterator[Line]:
    ln = Line(board.path)
    yield ln
    ln.close()


# ---- mpremote ---------------------------------------------------------------------------


def test_mpremote_exec(board: ReplBoard) -> None:
    done = mpremote(board.path, "exec", "print(1+1)")
    assert done.stdout.strip() == "2"
    done = mpremote(board.path, "exec", "import sys; print(sys.implementation.name, sys.platform)")
    assert done.stdout.split() == ["micropython", "webassembly"]


def test_mpremote_fs_cp_ls_cat_run(board: ReplBoard, tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text("import sys\nprint('hello from', sys.platform)\nprint(sum(range(10)))\n")
    blob = tmp_path / "blob.bin"
    data = bytes(range(256)) * 40 + b"\r\n\n\r\x00\x04\x03"  # binary, control bytes, 10 KB
    blob.write_bytes(data)
    mpremote(board.path, "fs", "cp", str(script), ":script.py")
    mpremote(board.path, "fs", "mkdir", ":sub", "+", "fs", "cp", str(blob), ":sub/blob.bin")
    ls = mpremote(board.path, "fs", "ls", ":").stdout.split()
    assert "script.py" in ls and "sub/" in ls
    assert "blob.bin" in mpremote(board.path, "fs", "ls", ":sub").stdout
    assert board.read_file("/sub/blob.bin") == data  # byte for byte on the board
    back = tmp_path / "back.bin"
    mpremote(board.path, "fs", "cp", ":sub/blob.bin", str(back))
    assert back.read_bytes() == data
    assert "print(sum(range(10)))" in mpremote(board.path, "fs", "cat", ":script.py").stdout
    run = mpremote(board.path, "run", str(script))
    assert run.stdout.splitlines() == ["hello from webassembly", "45"]
    imp = mpremote(board.path, "exec", "import script")  # the copied file is importable
    assert "45" in imp.stdout
    sha = mpremote(board.path, "fs", "sha256sum", ":sub/blob.bin").stdout.split()[-1]
    import hashlib

    assert sha == hashlib.sha256(data).hexdigest()
    mpremote(board.path, "fs", "rm", ":sub/blob.bin", "+", "fs", "rmdir", ":sub")
    assert "sub/" not in mpremote(board.path, "fs", "ls", ":").stdout.split()


def test_mpremote_cp_recursive_and_tree(board: ReplBoard, tmp_path: Path) -> None:
    src = tmp_path / "pkg"
    (src / "inner").mkdir(parents=True)
    (src / "__init__.py").write_text("")
    (src / "inner" / "__init__.py").write_text("")
    (src / "inner" / "mod.py").write_text("VALUE = 42\n")
    mpremote(board.path, "fs", "cp", "-r", str(src), ":pkg")
    tree = mpremote(board.path, "fs", "tree", ":pkg").stdout
    assert "mod.py" in tree and "inner" in tree
    out = mpremote(board.path, "exec", "from pkg.inner.mod import VALUE; print(VALUE)").stdout
    assert out.strip() == "42"


def test_filesystem_errors_use_linux_errno(board: ReplBoard) -> None:
    # the VM raises Emscripten numbers (ENOENT 44); the line shows Linux/MicroPython ones
    done = mpremote(board.path, "exec", "open('/missing')", check=False)
    assert done.returncode == 1
    assert "OSError: [Errno 2] ENOENT" in done.stdout + done.stderr
    done = mpremote(board.path, "fs", "ls", ":missing", check=False)
    assert done.returncode == 1 and "No such file or directory" in done.stderr
    assert "Traceback" not in done.stderr
    mpremote(board.path, "fs", "mkdir", ":d")
    done = mpremote(board.path, "fs", "mkdir", ":d", check=False)
    assert done.returncode == 1 and "File exists" in done.stderr
    mpremote(board.path, "fs", "touch", ":d/f")
    done = mpremote(board.path, "fs", "rmdir", ":d", check=False)
    assert done.returncode == 1 and "Directory not empty" in done.stderr
    # inside the VM the exception keeps the VM's own number: only the console text is mapped
    done = mpremote(
        board.path, "exec", "try:\n open('/missing')\nexcept OSError as e:\n print(e.errno)"
    )
    assert done.stdout.strip() == "44"


def test_exception_in_exec_fails_mpremote(board: ReplBoard) -> None:
    done = mpremote(board.path, "exec", "print('before')\nraise ValueError('boom')", check=False)
    assert done.returncode == 1
    assert "before" in done.stdout and "ValueError: boom" in done.stdout + done.stderr
    done = mpremote(board.path, "exec", "def (:", check=False)
    assert done.returncode == 1 and "SyntaxError" in done.stdout + done.stderr
    assert mpremote(board.path, "exec", "print('still alive')").stdout.strip() == "still alive"


def test_large_exec_goes_through_raw_paste(board: ReplBoard) -> None:
    # 40 KB of code: ten raw-paste windows with flow control
    code = "".join(f"v{i} = {i} * 3  # {'x' * 60}\n" for i in range(600)) + "print(v599)"
    assert len(code) > 40_000
    assert mpremote(board.path, "exec", code).stdout.strip() == "1797"


# ---- the line, byte by byte -------------------------------------------------------------


def test_friendly_repl_echo_prompt_and_paste_mode(line: Line) -> None:
    line.friendly()
    line.send(b"1+1\r")
    assert line.until(b">>> ") == b"1+1\r\n2\r\n>>> "  # echo, result, \n sent as \r\n
    line.send(b"x = 5\rx * 2\r")
    assert line.until(b"10\r\n>>> ").endswith(b"x * 2\r\n10\r\n>>> ")
    line.send(b"\x05")  # paste mode
    line.until(b"=== ")
    line.send(b"for i in range(2):\r    print('n', i)\r\x04")
    out = line.until(b">>> ")
    assert b"n 0\r\nn 1\r\n>>> " in out
    line.send(b"abc\x03")  # Ctrl-C at the prompt drops the line
    assert line.until(b">>> ").endswith(b"\r\n>>> ")
    line.send(b"print('ok')\r")
    assert line.until(b">>> ") == b"print('ok')\r\nok\r\n>>> "


def test_raw_repl_and_raw_paste_protocol(line: Line) -> None:
    line.send(b"\r\x03\r\x01")
    line.until(RAW_BANNER)
    line.send(b"print(6 * 7)\x04")
    assert line.until(b"\x04>") == b"OK42\r\n\x04\x04>"
    # raw-paste: request, "R\x01" + window (u16 LE), data, \x04, acknowledged with \x04
    line.send(b"\x05A\x01")
    head = line.read_exact(4)
    assert head[:2] == b"R\x01"
    window = int.from_bytes(head[2:], "little")
    assert window > 0
    n = window // 7 + 10  # more than one window of "a += 1\n"
    code = b"a = 0\n" + b"a += 1\n" * n + b"print(a)\n"
    sent = 0
    acks = 0
    while sent < len(code):
        room = window if sent == 0 else 0
        if not room:
            assert line.read_exact(1) == b"\x01"  # the board asks for the next window
            acks += 1
            room = window
        chunk = code[sent : sent + room]
        line.send(chunk)
        sent += len(chunk)
    line.send(b"\x04")
    out = line.until(b"\x04>")
    assert acks >= 1
    assert out.lstrip(b"\x01") == b"\x04" + str(n).encode() + b"\r\n\x04\x04>"
    # an error: the traceback comes between the two \x04
    line.send(b"1/0\x04")
    out = line.until(b"\x04>")
    assert out.startswith(b"OK\x04Traceback") and b"ZeroDivisionError" in out
    line.send(b"\x02")  # back to the friendly REPL
    line.until(BANNER)


def test_not_a_raw_paste_request_is_plain_input(line: Line) -> None:
    line.send(b"\r\x03\r\x01")
    line.until(RAW_BANNER)
    line.send(b"\x05B")  # Ctrl-E then not "A": ordinary raw-REPL bytes, cleared by Ctrl-C
    line.send(b"\x03print('fine')\x04")
    assert line.until(b"\x04>") == b"OKfine\r\n\x04\x04>"


def test_soft_reset_keeps_files_runs_boot_and_main(board: ReplBoard) -> None:
    mpremote(
        board.path,
        "exec",
        "with open('boot.py', 'w') as f:\n"
        " f.write('print(\"boot runs\")\\n')\n"
        ' f.write(\'n = open("boots", "a"); n.write("b"); n.close()\\n\')\n'
        "with open('main.py', 'w') as f:\n"
        " f.write('print(\"main runs\")\\nfrom_main = 1\\n')\n",
    )
    line = Line(board.path)
    line.friendly()
    line.send(b"kept = 1\r")
    line.until(b">>> ")
    line.send(b"\x04")  # soft reset at the friendly prompt
    out = line.until(BANNER)
    assert b"MPY: soft reboot\r\nboot runs\r\nmain runs\r\n" in out
    line.send(b"print('kept' in globals(), from_main)\r")
    assert b"False 1\r\n" in line.until(b">>> ")  # fresh interpreter, main.py ran in __main__
    line.send(b"import sys; sys.exit()\r")  # a REPL exit soft resets too
    assert b"MPY: soft reboot\r\nboot runs\r\nmain runs\r\n" in line.until(BANNER)
    resets = board.resets
    line.close()
    # mpremote soft resets in the raw REPL: boot.py runs, main.py does not (as on a board)
    mpremote(board.path, "exec", "pass")
    assert board.resets == resets + 1
    assert board.read_file("/boots") == b"bbb"  # two resets on the line, one by mpremote
    assert board.mode == "friendly"  # mpremote left the raw REPL on exit


def test_main_py_error_is_printed_and_the_board_stays_usable(board: ReplBoard) -> None:
    mpremote(board.path, "exec", "open('main.py', 'w').write('import no_such_driver\\n')")
    line = Line(board.path)
    line.friendly()
    line.send(b"\x04")
    out = line.until(BANNER)
    assert b'File "main.py", line 1, in <module>' in out
    assert b"ImportError: no module named 'no_such_driver'" in out
    assert b"_tc_run" not in out  # the board's own runner is not in the traceback
    line.send(b"2**10\r")
    assert b"1024\r\n" in line.until(b">>> ")
    line.close()


def test_files_preloaded_and_saved(tmp_path: Path) -> None:
    flash = tmp_path / "flash"
    with ReplBoard(files={"/lib/hello.py": b"MSG = 'hi'\n"}, save_dir=flash) as b:
        assert mpremote(b.path, "exec", "import hello; print(hello.MSG)").stdout.strip() == "hi"
        mpremote(b.path, "exec", "open('/data.txt', 'w').write('kept')")
        assert "/data.txt" in b.list_files() and "/lib/" in b.list_files()
    assert (flash / "data.txt").read_text() == "kept"
    assert (flash / "lib" / "hello.py").read_text() == "MSG = 'hi'\n"
    with ReplBoard(files=flash) as again:  # "power on" with the saved flash
        assert mpremote(again.path, "exec", "print(open('/data.txt').read())").stdout == "kept\n"


def test_stdin_reads_come_from_the_line(line: Line) -> None:
    # sys.stdin in the VM reads what was typed after the command (never the VM host's channel)
    line.friendly()
    line.send(b"import sys; print(repr(sys.stdin.read(3)))\rabc")
    out = line.until(b">>> ")
    assert b"'abc'\r\n>>> " in out
    line.send(b"print(repr(sys.stdin.read(3)))\r")  # nothing more typed: end of input
    assert b"''\r\n>>> " in line.until(b">>> ")
    line.send(b"print('still', 'fine')\r")
    assert b"still fine\r\n" in line.until(b">>> ")

"""Talking to a MicroPython board's REPL through mpremote: its serial transport in process
(`raw_repl`: the probe, and the provisioning link in links.py) and mpremote as a subprocess for
file work (deploy).

`raw_repl` enters the raw REPL itself, with a short timeout and without a soft reset, so a board
without MicroPython is reported in seconds with what it said (mpremote's own enter_raw_repl
waits 10 s and prints the bytes); from then on mpremote's transport does the framing
(raw-paste when the board has it, exec, follow).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import DeviceError, NotMicroPython, PortBusy, PortError, PortPermission, ToolError
from .ports import check_port

if TYPE_CHECKING:
    from mpremote.transport_serial import SerialTransport

RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"  # then the ">" prompt, which exec reads
PROBE_TIMEOUT_S = 2.0
READ_TIMEOUT_S = 2.0  # one blocking read of the transport (a pty is read without in_waiting)
MPREMOTE_TIMEOUT_S = 600.0

# sys.implementation._mpy bits 10..13 -> mpy-cross -march
MPY_ARCHS = {
    1: "x86", 2: "x64", 3: "armv6", 4: "armv6m", 5: "armv7m", 6: "armv7em", 7: "armv7emsp",
    8: "armv7emdp", 9: "xtensa", 10: "xtensawin", 11: "rv32imc", 12: "rv64imc",
}  # fmt: skip

_PROBE = (
    "import sys\n"
    "print('TCPROBE', sys.implementation.name, sys.platform,"
    " getattr(sys.implementation, '_mpy', 0), '%d.%d.%d' % sys.implementation.version[:3])\n"
)


@dataclass(frozen=True)
class ReplInfo:
    implementation: str
    platform: str
    mpy: int  # sys.implementation._mpy: .mpy version, sub-version, native arch
    version: str

    @property
    def mpy_version(self) -> tuple[int, int]:
        return self.mpy & 0xFF, (self.mpy >> 8) & 3

    @property
    def arch(self) -> str | None:
        return MPY_ARCHS.get((self.mpy >> 10) & 0x0F)

    def describe(self) -> str:
        major, sub = self.mpy_version
        arch = f", {self.arch}" if self.arch else ""
        return f"MicroPython {self.version} on {self.platform} (.mpy v{major}.{sub}{arch})"


@contextlib.contextmanager
def raw_repl(
    port: str, baud: int = 115200, timeout_s: float = PROBE_TIMEOUT_S
) -> Iterator[SerialTransport]:
    """mpremote's SerialTransport on `port`, in the raw REPL (no soft reset: the board keeps
    what it runs and holds); left in the friendly REPL and closed at the end.

    NotMicroPython (with what the device said, if anything) when no raw REPL answers within
    `timeout_s`; NoSuchPort / PortBusy / PortPermission when the port cannot be opened."""
    from mpremote.transport import TransportError
    from mpremote.transport_serial import SerialTransport

    try:
        t = SerialTransport(port, baudrate=baud, exclusive=True, timeout=0.05)
    except TransportError:
        check_port(port)  # says why: missing, busy, forbidden
        raise PortError(f"cannot open {port}") from None
    try:
        # Ctrl-C twice stops a program (the tapcash firmware's sync pump takes a chunk of REPL
        # control bytes as a break too), then Ctrl-A enters the raw REPL.
        t.serial.write(b"\r\x03\x03")
        time.sleep(0.1)
        t.serial.reset_input_buffer()
        t.serial.write(b"\r\x01")
        said = t.read_until(1, RAW_BANNER, timeout=timeout_s, timeout_overall=timeout_s)
        if not said.endswith(RAW_BANNER):
            raise NotMicroPython(_not_micropython_text(port, said))
        t.in_raw_repl = True
        t.serial.timeout = READ_TIMEOUT_S
        yield t
    finally:
        with contextlib.suppress(OSError):  # serial.SerialException is an OSError
            t.exit_raw_repl()  # back to the friendly REPL
        with contextlib.suppress(OSError):
            t.close()


def repl_exec(t: SerialTransport, port: str, code: str, timeout_s: float) -> tuple[str, str]:
    """Run `code` in the raw REPL: (output, error output) as text; NotMicroPython when the
    board stops answering within `timeout_s` (between bytes)."""
    from mpremote.transport import TransportError

    try:
        out, err = t.exec_raw(code, timeout=timeout_s)
    except TransportError as e:
        raise NotMicroPython(f"the MicroPython REPL on {port} stopped answering ({e})") from None
    return out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def probe(port: str, baud: int = 115200, timeout_s: float = PROBE_TIMEOUT_S) -> ReplInfo:
    """Interrupt whatever runs, enter the raw REPL, ask who it is, leave it in the friendly REPL.

    NotMicroPython (with what the device said, if anything) when no raw REPL answers."""
    with raw_repl(port, baud, timeout_s) as t:
        answer, err = repl_exec(t, port, _PROBE, timeout_s)
    for line in answer.splitlines():
        if "TCPROBE " in line:
            parts = line.split("TCPROBE ", 1)[1].split()
            if len(parts) == 4 and parts[2].isdigit():
                return ReplInfo(parts[0], parts[1], int(parts[2]), parts[3])
    raise NotMicroPython(
        f"the device on {port} has a raw REPL but did not answer a Python probe: "
        f"{(answer + err)[:200]!r}"
    )


def _not_micropython_text(port: str, said: bytes) -> str:
    hint = (
        f"flash MicroPython first: tapcash flash --port {port} --firmware ESP32_GENERIC-<date>-"
        "v1.27.0.bin (from https://micropython.org/download/)"
    )
    if not said.strip(b"\r\n\x00"):
        return f"no MicroPython REPL answered on {port} (no reply at all): {hint}"
    sample = said[:120]
    if b"TC\x01" in said:
        what = "it speaks the tapcash frame protocol but gives no REPL"
    elif said.count(b"\x00") + said.count(b"\xff") > len(said) // 2:
        what = "only noise: a wrong baud rate, or the chip in its bootloader"
    else:
        what = f"it answered {sample!r}"
    return f"no MicroPython REPL on {port} ({what}): {hint}"


# --- mpremote ----------------------------------------------------------------------------


def mpremote_command() -> list[str]:
    try:
        import mpremote  # noqa: F401
    except ImportError:
        raise ToolError("mpremote is not installed: pip install mpremote") from None
    return [sys.executable, "-m", "mpremote"]


def mpremote(
    port: str, args: Sequence[str], timeout_s: float = MPREMOTE_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    """Run `mpremote connect PORT args...`; on failure raise a summarised ToolError."""
    cmd = [*mpremote_command(), "connect", port, *args]
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, errors="replace", timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        raise DeviceError(f"mpremote on {port} did not finish within {timeout_s:.0f} s") from None
    if done.returncode != 0:
        raise summarise_mpremote(port, done.stdout + done.stderr, done.returncode)
    return done


def summarise_mpremote(port: str, output: str, code: int) -> ToolError:
    low = output.lower()
    if "permission denied" in low:
        return PortPermission(f"permission denied on {port}: add yourself to the 'dialout' group")
    if "could not exclusively lock" in low or "resource busy" in low:
        return PortBusy(f"port {port} is busy: another program has it open")
    if "could not enter raw repl" in low:
        return NotMicroPython(
            f"the device on {port} stopped answering as a MicroPython REPL (mpremote could not "
            "enter the raw REPL): reset it, or flash MicroPython with tapcash flash"
        )
    lines = [ln for ln in output.strip().splitlines() if ln.strip()]
    tail = "\n".join(lines[-8:]) or "no output"
    return DeviceError(f"mpremote failed on {port} (exit {code}):\n{tail}")

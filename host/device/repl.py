"""Talking to a MicroPython board's REPL: a quick probe with pyserial (is MicroPython there, which
version, which .mpy it loads) and mpremote as a subprocess for everything else.

The probe is ours, with a short timeout, so a board without MicroPython is reported in seconds
with what it said instead; mpremote would wait 10 s and print a raw-REPL traceback.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import DeviceError, NotMicroPython, PortBusy, PortPermission, ToolError
from .ports import open_serial

RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n>"
PROBE_TIMEOUT_S = 2.0
MPREMOTE_TIMEOUT_S = 600.0

# sys.implementation._mpy bits 10..13 -> mpy-cross -march
MPY_ARCHS = {
    1: "x86", 2: "x64", 3: "armv6", 4: "armv6m", 5: "armv7m", 6: "armv7em", 7: "armv7emsp",
    8: "armv7emdp", 9: "xtensa", 10: "xtensawin", 11: "rv32imc", 12: "rv64imc",
}  # fmt: skip

_PROBE = (
    b"import sys\r\n"
    b"print('TCPROBE', sys.implementation.name, sys.platform,"
    b" getattr(sys.implementation, '_mpy', 0), '%d.%d.%d' % sys.implementation.version[:3])\r\n"
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


def _read_until(ser: object, marker: bytes, timeout_s: float) -> bytes:
    buf = bytearray()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        chunk = ser.read(max(1, ser.in_waiting))  # type: ignore[attr-defined]
        if chunk:
            buf += chunk
            if marker in buf:
                break
    return bytes(buf)


def probe(port: str, baud: int = 115200, timeout_s: float = PROBE_TIMEOUT_S) -> ReplInfo:
    """Interrupt whatever runs, enter the raw REPL, ask who it is, leave it in the friendly REPL.

    NotMicroPython (with what the device said, if anything) when no raw REPL answers."""
    with open_serial(port, baud) as ser:
        # Ctrl-C twice stops a program (the tapcash firmware's sync pump takes a chunk of REPL
        # control bytes as a break too), then Ctrl-A enters the raw REPL.
        ser.write(b"\r\x03\x03")
        time.sleep(0.1)
        ser.reset_input_buffer()
        ser.write(b"\r\x01")
        said = _read_until(ser, RAW_BANNER, timeout_s)
        if RAW_BANNER not in said:
            raise NotMicroPython(_not_micropython_text(port, said))
        ser.write(_PROBE + b"\x04")
        answer = _read_until(ser, b"\x04>", timeout_s)
        ser.write(b"\x02")  # back to the friendly REPL
        for line in answer.decode("utf-8", "replace").splitlines():
            if "TCPROBE " in line:
                parts = line.split("TCPROBE ", 1)[1].split()
                if len(parts) == 4 and parts[2].isdigit():
                    return ReplInfo(parts[0], parts[1], int(parts[2]), parts[3])
        raise NotMicroPython(
            f"the device on {port} has a raw REPL but did not answer a Python probe: "
            f"{answer[:200]!r}"
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

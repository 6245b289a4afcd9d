"""Serial ports: which ones look like a board, and whether one can be used right now.

Every command checks its port before it talks to the device, so a missing, busy or forbidden
port is one clear sentence instead of a tool's traceback:

    port = require_port(args.port)      # NoPort / PortBusy / PortPermission, else the path
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import grp
import os
import stat
import sys
from collections.abc import Iterator

import serial

from .errors import NoPort, NoSuchPort, PortBusy, PortError, PortPermission

LOCK_DIRS = ("/var/lock", "/run/lock")  # UUCP lock files (minicom, picocom): LCK..ttyUSB0


def candidate_ports() -> list[tuple[str, str]]:
    """(path, description) of the serial ports that look like a board: those on USB (a
    USB-serial bridge, CP210x, CH34x, FTDI, or native USB CDC), as pyserial's
    `serial.tools.list_ports` finds them (sysfs on Linux, IOKit on macOS), sorted by path."""
    from serial.tools import list_ports

    found = {p.device: p.description for p in list_ports.comports() if p.vid is not None}
    return sorted(found.items())


def describe_candidates() -> str:
    ports = candidate_ports()
    if ports:
        return "serial ports found: " + ", ".join(
            f"{dev} ({what})" if what and what != "n/a" else dev for dev, what in ports
        )
    return (
        "no USB serial port found (/dev/ttyUSB*, /dev/ttyACM*): is the board plugged in with a "
        "data cable (and its USB-serial driver loaded)?"
    )


def require_port(port: str | None) -> str:
    """The port to use, checked (`check_port`); NoPort when none was given."""
    if not port:
        raise NoPort(f"no port given: pass --port (or set TAPCASH_PORT); {describe_candidates()}")
    check_port(port)
    return port


def check_port(port: str) -> None:
    """Raise NoPort, PortPermission or PortBusy unless `port` can be opened exclusively now."""
    try:
        st = os.stat(port)
    except FileNotFoundError:
        raise NoSuchPort(f"no such port: {port}; {describe_candidates()}") from None
    except PermissionError:
        raise PortPermission(_permission_text(port, None)) from None
    if not stat.S_ISCHR(st.st_mode):
        raise NoSuchPort(f"{port} is not a serial device; {describe_candidates()}")
    try:
        fd = os.open(port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    except PermissionError:
        raise PortPermission(_permission_text(port, st)) from None
    except OSError as e:
        if e.errno == errno.EBUSY:
            raise PortBusy(_busy_text(port)) from None
        if e.errno in (errno.ENXIO, errno.ENODEV, errno.EIO):
            raise NoSuchPort(
                f"port {port} does not answer (unplugged?); {describe_candidates()}"
            ) from None
        raise PortError(f"cannot open {port}: {os.strerror(e.errno or 0)}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PortBusy(_busy_text(port)) from None
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
    holder = _lock_file_holder(port)
    if holder is not None:
        raise PortBusy(f"{_busy_text(port)} (lock file of process {holder})")


def _busy_text(port: str) -> str:
    return (
        f"port {port} is busy: another program has it open (mpremote, tapcash sync, a serial "
        "monitor such as screen/minicom/picocom, an IDE); close it and try again"
    )


def _permission_text(port: str, st: os.stat_result | None) -> str:
    group = "dialout"
    if st is not None:
        with contextlib.suppress(KeyError):
            group = grp.getgrgid(st.st_gid).gr_name
    if sys.platform.startswith("linux") and group not in ("root", "tty"):
        fix = (
            f"add yourself to the '{group}' group (sudo usermod -aG {group} $USER, then log out "
            "and in again)"
        )
    else:
        fix = "add yourself to the 'dialout' group (or 'uucp' on some systems) or run with access"
    return f"permission denied on {port}: {fix}"


def _lock_file_holder(port: str) -> int | None:
    """The pid in a live UUCP lock file for this port (minicom and friends write one)."""
    name = os.path.basename(port)
    for d in LOCK_DIRS:
        path = os.path.join(d, f"LCK..{name}")
        try:
            with open(path) as f:
                pid = int(f.read().strip() or 0)
        except (OSError, ValueError):
            continue
        if pid > 0 and pid != os.getpid():
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                continue  # stale
            except PermissionError:
                pass  # alive, someone else's
            return pid
    return None


@contextlib.contextmanager
def open_serial(port: str, baud: int = 115200, timeout_s: float = 0.05) -> Iterator[serial.Serial]:
    """The port opened exclusively (as mpremote and esptool do), errors as PortError."""
    ser = serial.Serial()
    ser.port = port
    ser.baudrate = baud
    ser.timeout = timeout_s
    ser.write_timeout = 5.0
    ser.exclusive = True
    try:
        ser.open()
    except serial.SerialException as e:
        text = str(e)
        if e.errno in (errno.EACCES, errno.EPERM):
            raise PortPermission(_permission_text(port, None)) from None
        if e.errno == errno.ENOENT:
            raise NoSuchPort(f"no such port: {port}; {describe_candidates()}") from None
        if e.errno in (errno.EBUSY, errno.EAGAIN) or "lock" in text.lower():
            raise PortBusy(_busy_text(port)) from None
        raise PortError(f"cannot open {port}: {text}") from None
    try:
        yield ser
    finally:
        with contextlib.suppress(OSError, serial.SerialException):
            ser.close()

"""`tapcash flash`: erase an ESP32 and write a stock MicroPython image with esptool.

With `--partitions romfs` (or a board profile whose "memory" says "partitions": "romfs") the
image's partition table is rewritten first to hold a ROMFS partition (host/device/partitions.py)
for `tapcash deploy --romfs`; the image and its new table go to the board in one write.

The image is the user's (micropython.org/download, e.g. ESP32_GENERIC-20251209-v1.27.0.bin); it
is checked before the port is touched: it must be an ESP-IDF image (first byte 0xE9) built for
the chip asked for. esptool runs as a subprocess (`python -m esptool`, the installed one), its
progress passed through; when it fails, its output is summarised in one sentence.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from .errors import BadImage, DeviceError, NoBootloader, PortBusy, PortPermission, ToolError
from .partitions import DEFAULT_ROMFS_KB, Layout, with_romfs
from .ports import require_port

ESP_IMAGE_MAGIC = 0xE9
DEFAULT_BAUD = 460800

# Chip -> (image chip id in the extended header, offset of a MicroPython .bin in flash).
# The offset is where the second-stage bootloader lives: 0x1000 on the ESP32 and S2, 0 after.
CHIPS: dict[str, tuple[int, int]] = {
    "esp32": (0x0000, 0x1000),
    "esp32s2": (0x0002, 0x1000),
    "esp32c3": (0x0005, 0x0),
    "esp32s3": (0x0009, 0x0),
    "esp32c2": (0x000C, 0x0),
    "esp32c6": (0x000D, 0x0),
    "esp32h2": (0x0010, 0x0),
}
_CHIP_BY_ID = {cid: name for name, (cid, _off) in CHIPS.items()}


@dataclass(frozen=True)
class ImageInfo:
    path: Path
    size: int
    chip: str | None  # from the extended header; None when the id is unknown
    segments: int
    layout: Layout | None = None  # the partition table written, when not the image's own


def check_image(path: Path, chip: str) -> ImageInfo:
    """An ESP-IDF image for `chip`, or BadImage saying what the file is instead."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BadImage(
            f"firmware image not found: {path} (download the MicroPython .bin for your board "
            "from https://micropython.org/download/)"
        ) from None
    except IsADirectoryError:
        raise BadImage(f"{path} is a folder, not a firmware image") from None
    except OSError as e:
        raise BadImage(f"cannot read {path}: {e.strerror}") from None
    head = data[:24]
    if not data or head[0] != ESP_IMAGE_MAGIC:
        what = _what_is(head)
        raise BadImage(
            f"{path} is not an ESP32 firmware image (first byte 0x{head[0]:02X}, an image starts "
            f"with 0xE9){what}"
            if data
            else f"{path} is empty, not an ESP32 firmware image"
        )
    if len(data) < 24:
        raise BadImage(f"{path} is too short to be an ESP32 firmware image ({len(data)} bytes)")
    segments = head[1]
    if not 1 <= segments <= 16:
        raise BadImage(f"{path} starts with 0xE9 but its header is not an ESP32 image header")
    chip_id = int.from_bytes(head[12:14], "little")
    found = _CHIP_BY_ID.get(chip_id)
    if found is not None and found != chip:
        raise BadImage(
            f"{path} is built for {found}, not {chip}: use --chip {found} if that is the board, "
            f"or download the image for {chip}"
        )
    return ImageInfo(path, len(data), found, segments)


def _what_is(head: bytes) -> str:
    if head.startswith(b"\x7fELF"):
        return ": it is an ELF file; flash the .bin built next to it"
    if head.startswith(b"UF2\n"):
        return ": it is a UF2 file (drag-and-drop boards); use the .bin"
    if head.startswith(b":"):
        return ": it looks like Intel HEX; use the .bin"
    if head.startswith(b"PK"):
        return ": it is a zip archive; unpack it and use the .bin inside"
    if head.lstrip().startswith((b"<", b"{")):
        return ": it is a text/HTML file (a failed download?)"
    return ""


# --- esptool -----------------------------------------------------------------------------


def esptool_command() -> list[str]:
    try:
        import esptool  # noqa: F401
    except ImportError:
        raise ToolError("esptool is not installed: pip install esptool") from None
    return [sys.executable, "-m", "esptool"]


def _esptool_major() -> int:
    try:
        import esptool

        return int(str(esptool.__version__).split(".")[0])
    except (ImportError, ValueError):
        return 5


def flash_command(
    port: str,
    image: Path,
    chip: str,
    baud: int,
    offset: int,
    connect_attempts: int | None = None,
) -> list[str]:
    """esptool arguments: erase the whole flash, then write the image (one connection)."""
    dash = _esptool_major() >= 5  # esptool 5 names commands with dashes
    cmd = [*esptool_command(), "--chip", chip, "--port", port, "--baud", str(baud)]
    if connect_attempts is not None:
        cmd += ["--connect-attempts" if dash else "--connect_attempts", str(connect_attempts)]
    cmd += ["write-flash" if dash else "write_flash", "--erase-all"]
    cmd += ["-z", hex(offset), str(image)]
    return cmd


def run_esptool(cmd: list[str], echo: Callable[[str], None] | None = None) -> None:
    """Run esptool, pass its lines to `echo`; on failure raise the summarised error."""
    tail: deque[str] = deque(maxlen=60)
    try:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        )
    except OSError as e:
        raise ToolError(f"cannot run esptool: {e}") from None
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip("\n")
        tail.append(line)
        if echo is not None:
            echo(line)
    code = proc.wait()
    if code != 0:
        raise summarise_failure(cmd[cmd.index("--port") + 1], "\n".join(tail), code)


def summarise_failure(port: str, output: str, code: int) -> ToolError:
    """esptool's failure as one of our errors, in a sentence."""
    low = output.lower()
    if "permission denied" in low:
        return PortPermission(f"permission denied on {port}: add yourself to the 'dialout' group")
    if "could not exclusively lock" in low or "resource busy" in low or "device or resource" in low:
        return PortBusy(f"port {port} is busy: another program has it open")
    hint = (
        "check that this is the board's port and the cable carries data; if the board has no "
        "auto-reset, hold BOOT (GPIO0) low while pressing EN/RESET to start its bootloader"
    )
    if "wrong boot mode" in low:
        return NoBootloader(
            f"the chip on {port} is not in download mode (it is running its firmware): {hint}"
        )
    if "this chip is" in low and "not" in low:
        line = next(ln for ln in output.splitlines() if "this chip is" in ln.lower())
        return NoBootloader(f"wrong chip on {port}: {line.split('error:')[-1].strip()}")
    if "invalid head of packet" in low or "serial data stream stopped" in low:
        return NoBootloader(
            f"no ESP32 bootloader answered on {port}: something else answered (a running "
            f"program, such as MicroPython's REPL): {hint}"
        )
    if "failed to connect" in low or "no serial data received" in low:
        return NoBootloader(f"no ESP32 bootloader answered on {port} (no reply at all): {hint}")
    last = [ln for ln in output.splitlines() if "error" in ln.lower()]
    detail = last[-1].strip() if last else (output.strip().splitlines() or ["no output"])[-1]
    return DeviceError(f"esptool failed (exit {code}): {detail}")


def flash(
    port: str | None,
    image: Path,
    chip: str = "esp32",
    baud: int = DEFAULT_BAUD,
    offset: int | None = None,
    connect_attempts: int | None = None,
    echo: Callable[[str], None] | None = None,
    *,
    partitions: str = "stock",
    romfs_kb: int = DEFAULT_ROMFS_KB,
    save_image: Path | None = None,
) -> ImageInfo:
    """Check the image, lay out its partitions, then the port, then erase and write. With
    `save_image` the image that would be written is saved there and no port is touched.
    Raises ToolError."""
    if chip not in CHIPS:
        raise BadImage(f"unknown chip {chip!r} (one of {', '.join(CHIPS)})")
    info = check_image(image, chip)
    at = CHIPS[chip][1] if offset is None else offset
    layout = None
    if partitions == "romfs":
        layout = with_romfs(info.path.read_bytes(), at, romfs_kb)
        info = replace(info, layout=layout)
    elif partitions != "stock":
        raise BadImage(f"unknown partition layout {partitions!r} (stock or romfs)")
    if save_image is not None:
        data = layout.image if layout is not None else info.path.read_bytes()
        Path(save_image).write_bytes(data)
        return info
    port = require_port(port)
    if layout is None or not layout.changed:
        run_esptool(flash_command(port, info.path, chip, baud, at, connect_attempts), echo)
        return info
    with tempfile.TemporaryDirectory(prefix="tapcash-flash-") as tmp:
        patched = Path(tmp) / info.path.name
        patched.write_bytes(layout.image)
        run_esptool(flash_command(port, patched, chip, baud, at, connect_attempts), echo)
    return info

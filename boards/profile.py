"""Board profiles: which pins and buses a board uses and which peripherals each role needs.

Profiles are JSON data in `boards/profiles/`, shared by the firmware (`main.py` reads the deployed
copy to build its HAL) and the simulator. This module loads and validates them on the host.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

# ESP32 (WROOM/WROVER without PSRAM): GPIOs that exist, those wired to the SPI flash, input-only
# ones, and strapping pins that work but sample a level at reset.
ESP32_GPIOS = frozenset([*range(0, 6), *range(6, 12), *range(12, 20), 21, 22, 23, 25, 26, 27,
                         *range(32, 40)])
ESP32_FLASH_PINS = frozenset(range(6, 12))
ESP32_INPUT_ONLY = frozenset([34, 35, 36, 37, 38, 39])
ESP32_STRAPPING = frozenset([0, 2, 5, 12, 15])

ROLE_NEEDS: dict[str, tuple[str, ...]] = {"wallet": ("nfc",), "pos": ("nfc", "display", "keypad")}
NFC_MODE_FOR_ROLE = {"wallet": "target", "pos": "reader"}

# Which bus/peripheral keys name pins, and whether the pin drives (output) or senses (input).
_BUS_PINS = {
    "i2c": {"sda": "io", "scl": "out"},
    "spi": {"sck": "out", "mosi": "out", "miso": "in"},
    "uart": {"tx": "out", "rx": "in"},
}
_PERIPHERAL_PINS = {"irq": "in", "reset": "out", "cs": "out", "pin": "io"}


class ProfileError(ValueError):
    """A profile that cannot work on its board; the message says what and where."""


@dataclass
class Check:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # strapping pins the profile says it reviewed


_OBJECT_FIELDS = ("buses", "peripherals", "options")

# Heap MicroPython gets on a board (KB, one block), by MCU, when the profile's "memory" does not
# say: an ESP32-WROOM without PSRAM gives about 108 KB (DESIGN.md; the split heap starts at 64 KB).
MCU_HEAP_KB = {"esp32": 108}
# Flash layouts `tapcash flash --partitions` writes (host/device/partitions.py): "stock" keeps the
# image's own table, "romfs" adds a ROMFS partition for `tapcash deploy --romfs`.
PARTITION_LAYOUTS = ("stock", "romfs")


@dataclass(frozen=True)
class Memory:
    heap_kb: int  # MicroPython heap the board gives (32-bit KB)
    partitions: str  # one of PARTITION_LAYOUTS
    from_profile: bool  # heap_kb written in the profile (else the MCU's default)

    @property
    def romfs(self) -> bool:
        return self.partitions == "romfs"


def board_memory(profile: dict[str, Any]) -> Memory:
    """The profile's "memory": {"heap_kb": N, "partitions": "stock" | "romfs"}, defaults filled
    in (heap by MCU, stock partitions)."""
    mem = profile.get("memory", {})
    heap = mem.get("heap_kb")
    default = MCU_HEAP_KB.get(str(profile.get("mcu", "esp32")), MCU_HEAP_KB["esp32"])
    return Memory(
        heap_kb=int(heap) if heap is not None else default,
        partitions=str(mem.get("partitions", "stock")),
        from_profile=heap is not None,
    )


def _memory_errors(mem: Any) -> list[str]:
    if not isinstance(mem, dict):
        return [f"memory: an object is required (heap_kb, partitions), got {type(mem).__name__}"]
    errors = []
    unknown = sorted(set(mem) - {"heap_kb", "partitions", "note"})
    if unknown:
        errors.append(f"memory: unknown key {unknown[0]!r} (heap_kb, partitions, note)")
    heap = mem.get("heap_kb")
    if heap is not None and (not isinstance(heap, int) or isinstance(heap, bool) or heap <= 0):
        errors.append(f"memory.heap_kb: a positive number of KB is required, got {heap!r}")
    layout = mem.get("partitions", "stock")
    if layout not in PARTITION_LAYOUTS:
        errors.append(
            f"memory.partitions: one of {', '.join(PARTITION_LAYOUTS)} is required, got {layout!r}"
        )
    return errors


def shape_errors(profile: Any) -> list[str]:
    """What makes a profile unreadable (wrong JSON types), before any pin is looked at."""
    if not isinstance(profile, dict):
        return [f"a profile is a JSON object, got {type(profile).__name__}"]
    errors = []
    if not isinstance(profile.get("name"), str) or not profile.get("name"):
        errors.append("name: a non-empty string is required")
    roles = profile.get("roles", [])
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        errors.append(f"roles: a list of role names is required (e.g. [\"wallet\"]), got {roles!r}")
    for key in _OBJECT_FIELDS:
        value = profile.get(key, {})
        if not isinstance(value, dict):
            errors.append(f"{key}: an object of name -> settings is required, "
                          f"got {type(value).__name__}")
            continue
        for name, item in value.items():
            if not isinstance(item, dict):
                errors.append(f"{key}.{name}: an object is required, got {item!r}")
    if "memory" in profile:
        errors.extend(_memory_errors(profile["memory"]))
    reviewed = profile.get("strapping_reviewed", {})
    if not isinstance(reviewed, dict):
        errors.append("strapping_reviewed: an object of GPIO number -> why it is safe is required")
    else:
        for pin, why in reviewed.items():
            if not (pin.isascii() and pin.isdigit()) or int(pin) not in ESP32_STRAPPING:
                errors.append(f"strapping_reviewed.{pin}: not a strapping pin "
                              f"({', '.join(str(p) for p in sorted(ESP32_STRAPPING))})")
            elif not isinstance(why, str) or not why.strip():
                errors.append(f"strapping_reviewed.{pin}: say why the pin is safe at reset")
    return errors


def profiles_dir() -> Path:
    return Path(str(resources.files("tapcash.boards") / "profiles"))


def list_profiles() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(profiles_dir().glob("*.json"))]


def load_profile(name_or_path: str) -> dict[str, Any]:
    """Load a built-in profile by name, or a profile file by path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = profiles_dir() / f"{name_or_path}.json"
        if not path.exists():
            known = ", ".join(p["name"] for p in list_profiles())
            raise ProfileError(f"no board profile named {name_or_path!r} (known: {known})")
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ProfileError(f"no such profile file: {path}") from None
    except json.JSONDecodeError as exc:
        raise ProfileError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: a profile is a JSON object, got {type(data).__name__}")
    return data


def apply_option(profile: dict[str, Any], option: str) -> dict[str, Any]:
    """Return the profile with a named option (e.g. `nfc_spi`) merged over it."""
    problems = shape_errors(profile)
    if problems:
        raise ProfileError(f"profile {profile.get('name', '?')!r}: {problems[0]}")
    options = profile.get("options", {})
    if option not in options:
        raise ProfileError(f"profile {profile.get('name')!r} has no option {option!r}")
    if not isinstance(options[option].get("buses", {}), dict):
        raise ProfileError(f"options.{option}.buses: an object of name -> bus is required")
    merged = json.loads(json.dumps(profile))
    merged.setdefault("buses", {})
    merged.setdefault("peripherals", {})
    merged["buses"].update(options[option].get("buses", {}))
    for key, value in options[option].items():
        if key != "buses":
            merged["peripherals"][key] = value
    # Buses no peripheral uses any more are dropped, so their pins are free again.
    used = {p.get("bus") for p in merged["peripherals"].values() if isinstance(p, dict)}
    merged["buses"] = {k: v for k, v in merged["buses"].items() if k in used}
    return merged


def validate(profile: dict[str, Any], role: str | None = None) -> Check:
    """Check pins, buses and the peripherals a role needs; errors make the profile unusable."""
    check = Check()
    check.errors.extend(shape_errors(profile))
    if check.errors:
        return check
    name = profile.get("name", "?")
    owners: dict[int, list[str]] = {}
    reviewed = profile.get("strapping_reviewed", {})

    def use(pin: Any, owner: str, direction: str) -> None:
        if not isinstance(pin, int) or isinstance(pin, bool):
            check.errors.append(f"{owner}: pin must be a GPIO number, got {pin!r}")
            return
        if pin not in ESP32_GPIOS:
            check.errors.append(f"{owner}: GPIO{pin} does not exist on the ESP32")
        elif pin in ESP32_FLASH_PINS:
            check.errors.append(f"{owner}: GPIO{pin} is wired to the SPI flash and cannot be used")
        elif pin in ESP32_INPUT_ONLY and direction in ("out", "io"):
            check.errors.append(f"{owner}: GPIO{pin} is input-only and cannot drive {owner}")
        elif pin in ESP32_STRAPPING and str(pin) in reviewed:
            check.notes.append(f"{owner}: GPIO{pin} is a strapping pin: {reviewed[str(pin)]}")
        elif pin in ESP32_STRAPPING:
            check.warnings.append(
                f"{owner}: GPIO{pin} is a strapping pin; keep it at its reset level or say why it"
                f" is safe in the profile's strapping_reviewed"
            )
        owners.setdefault(pin, []).append(owner)

    buses = profile.get("buses", {})
    for bus_name, bus in buses.items():
        kind = bus.get("type")
        if kind not in _BUS_PINS:
            check.errors.append(f"bus {bus_name}: unknown type {kind!r} (i2c, spi or uart)")
            continue
        for key, direction in _BUS_PINS[kind].items():
            if key not in bus:
                check.errors.append(f"bus {bus_name}: missing pin {key!r}")
            else:
                use(bus[key], f"bus {bus_name}.{key}", direction)

    peripherals = profile.get("peripherals", {})
    for p_name, p in peripherals.items():
        if "bus" in p and not isinstance(p["bus"], str):
            check.errors.append(f"{p_name}.bus: the name of a bus is required, got {p['bus']!r}")
        elif "bus" in p and p["bus"] not in buses:
            check.errors.append(f"{p_name}: uses bus {p['bus']!r}, not defined in the profile")
        for key, direction in _PERIPHERAL_PINS.items():
            if key in p:
                use(p[key], f"{p_name}.{key}", direction)
        if p_name == "keypad" and not all(
            isinstance(p.get(k, []), list) for k in ("rows", "cols", "keys")
        ):
            check.errors.append("keypad: rows, cols and keys are lists")
        elif p_name == "keypad":
            for i, pin in enumerate(p.get("rows", [])):
                use(pin, f"keypad.rows[{i}]", "out")
            for i, pin in enumerate(p.get("cols", [])):
                use(pin, f"keypad.cols[{i}]", "in")
            if not p.get("rows") or not p.get("cols"):
                check.errors.append("keypad: needs rows and cols")

    for pin, users in sorted(owners.items()):
        if len(users) > 1:
            check.errors.append(f"GPIO{pin} is used twice: {', '.join(users)}")

    for r in [role] if role else profile.get("roles", []):
        if r not in ROLE_NEEDS:
            check.errors.append(f"unknown role {r!r} (wallet or pos)")
            continue
        if r not in profile.get("roles", []):
            check.errors.append(f"profile {name!r} is not made for role {r!r}")
        for needed in ROLE_NEEDS[r]:
            if needed not in peripherals:
                check.errors.append(f"role {r} needs a {needed}, and profile {name!r} has none")
        nfc = peripherals.get("nfc", {})
        wanted = NFC_MODE_FOR_ROLE[r]
        if nfc and "mode" not in nfc:
            check.errors.append(f"nfc.mode is missing: role {r} needs \"mode\": \"{wanted}\"")
        elif nfc and nfc["mode"] != wanted:
            check.errors.append(f"nfc.mode is {nfc['mode']!r}: role {r} needs {wanted!r}")
    return check

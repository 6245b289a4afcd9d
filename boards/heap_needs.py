"""The measured heap each role needs, per deploy form: the one table `tapcash deploy` checks a
board's heap against (host/device/deploy.py heap_fit).

The figures are the bench's: the smallest fixed heap that completes the payment day of
sim/vm/payday.py (personalise, load, five payments one with a PIN, export, ack), found by
bisection on the native MicroPython port (`tapcash bench firmware`, rows[].min_heap_kb32 of its
section in docs/performance.json), as a 32-bit board's KB; of that day and of the purse day
(the same with a card holding earmarked purses, every payment split: issue 13), the larger, so
a board that fits can run either. They are kept in heap_needs.json
beside this module, which `tapcash bench render` rewrites from the firmware section when it
renders the checkout's docs/PERFORMANCE.md (`write_from_bench`), and
tests/host/test_device_cli.py checks it against docs/performance.json.

They are minimums, not the heap budgets of tests/firmware/test_heap_budget.py (those add a
margin so a test fails before a board does): a board with less heap than the minimum cannot
run the day; one with the minimum or more can.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

NEEDS_FILE = Path(__file__).resolve().parent / "heap_needs.json"
FORMS = ("mpy", "romfs")  # what the bench measures (.py sources need more than .mpy)


@cache
def _table() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(NEEDS_FILE.read_text())
    return doc


def provenance() -> str:
    """Where the figures come from: the command and the revision it ran at."""
    doc = _table()
    return f"{doc['command']} at {doc['revision']}"


def need_kb32(role: str, form: str) -> float | None:
    """The measured minimum payment-day heap (32-bit KB) of `role` deployed as `form` ("mpy",
    "romfs"); None when the bench has no figure for it."""
    value = _table()["min_heap_kb32"].get(role, {}).get(form)
    return None if value is None else float(value)


def needs_from_bench(section: dict[str, Any]) -> dict[str, Any] | None:
    """heap_needs.json's document from a `tapcash bench firmware` section (None when the
    section has no bisected minimum: a --no-bisect run)."""
    table: dict[str, dict[str, float]] = {}
    for row in section.get("rows", []):
        if "min_heap_kb32" in row and row.get("form") in FORMS:
            forms = table.setdefault(str(row["role"]), {})
            form = str(row["form"])
            forms[form] = max(forms.get(form, 0.0), float(row["min_heap_kb32"]))  # either day
    if not table:
        return None
    return {
        "about": "measured minimum heap of the payment day and the purse day, the larger, "
        "32-bit KB (boards/heap_needs.py)",
        "command": section.get("command", "tapcash bench firmware"),
        "revision": section.get("revision", "unknown"),
        "min_heap_kb32": {r: dict(sorted(f.items())) for r, f in sorted(table.items())},
    }


def write_from_bench(doc: dict[str, Any], target: Path = NEEDS_FILE) -> Path | None:
    """Rewrite heap_needs.json from a `tapcash bench all` document's firmware section; the
    path written, or None when there is nothing to write or the file is not in a source
    checkout (an installed package is left alone)."""
    section = doc.get("benches", {}).get("firmware")
    needs = needs_from_bench(section) if isinstance(section, dict) else None
    if needs is None or not (target.parent.parent / "pyproject.toml").is_file():
        return None
    text = json.dumps(needs, indent=1) + "\n"
    if not target.is_file() or target.read_text() != text:
        target.write_text(text)
        _table.cache_clear()
    return target

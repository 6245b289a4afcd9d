"""host/device/fold.py: the board's code has its integer constants folded (issue 16: names
cost a board RAM for as long as it runs). The folded code's behaviour is checked where it runs:
the payment days byte for byte on the native port (tests/firmware/test_heap_budget.py, which lays
out the folded tree as deploy does) and deploy's own ROMFS image
(tests/host/test_deploy_romfs.py)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tapcash.host.device.fold import (
    DEFINING,
    PRIVATE,
    const_table,
    fold_source,
    fold_tree,
    omit_host_lines,
)

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware"


def test_every_module_folds_to_valid_code_on_the_same_lines() -> None:
    folded = fold_tree(FIRMWARE)
    assert set(folded) == {p.relative_to(FIRMWARE).as_posix() for p in FIRMWARE.rglob("*.py")}
    for rel, text in folded.items():
        ast.parse(text, rel)
        assert text.count("\n") == (FIRMWARE / rel).read_text().count("\n"), rel


def test_no_run_time_name_is_left_for_an_int_constant() -> None:
    folded = fold_tree(FIRMWARE)
    for rel in PRIVATE:
        assert const_table(folded[rel]) == {}, rel  # all private: compile-time only
        assert const_table((FIRMWARE / rel).read_text())  # the sources keep their names
    assert set(PRIVATE) == set(DEFINING)  # the state modules' keys too: no name on a board
    tables = {rel: const_table((FIRMWARE / rel).read_text()) for rel in DEFINING}
    names = {n for t in tables.values() for n in t}
    for rel, text in folded.items():
        if rel == "core/proto.py":
            continue
        code = "\n".join(line.split("#")[0] for line in text.splitlines())
        code = re.sub(r'"""[\s\S]*?"""', "", code)
        left = {m for m in re.findall(r"\b(?:fields|apdu|st)\.([A-Z][A-Z0-9_]*)\b", code)}
        assert not left & names, (rel, left & names)


def test_folding_a_small_module() -> None:
    tables = {
        "core/fields.py": {"PAY_AMOUNT": 2, "PAY_PAYEE": 3},
        "core/apdu.py": {"SW_WRONG_DATA": 0x6A80},
        "wallet/state.py": {"S_BALANCE": 4},
    }
    src = (
        "from ..core import cbor, fields\n"
        "from ..core.apdu import SW_WRONG_DATA, ApduError\n"
        "from . import state as st\n"
        "\n"
        "def handle(app, body):  # fields.PAY_AMOUNT stays in comments\n"
        "    if body.get(fields.PAY_AMOUNT) is None:\n"
        "        raise ApduError(SW_WRONG_DATA)\n"
        "    return cbor.encode([body[fields.PAY_PAYEE], app.state[st.S_BALANCE], 'st.S_X'])\n"
    )
    out = fold_source("wallet/pay.py", src, tables)
    assert out.splitlines() == [
        "from ..core import cbor",
        "from ..core.apdu import ApduError",
        "pass",
        "",
        "def handle(app, body):  # fields.PAY_AMOUNT stays in comments",
        "    if body.get(2) is None:",
        "        raise ApduError(27264)",
        "    return cbor.encode([body[3], app.state[4], 'st.S_X'])",
    ]
    own = fold_source("core/fields.py", "X = const(1)\nD = {X: 5}\n", {"core/fields.py": {"X": 1}})
    assert own == "_X = const(1)\nD = {_X: 5}\n"


def test_host_only_lines_are_left_off_a_board() -> None:
    folded = fold_tree(FIRMWARE)
    for rel, gone in (
        ("core/ed25519.py", ("set_backend", "_load_nacl", "_nacl_secret")),
        ("core/sha512.py", ("SHA512", "set_backend", "new")),
    ):
        src = (FIRMWARE / rel).read_text()
        defined = {n.name for n in ast.parse(folded[rel]).body if hasattr(n, "name")}
        assert not defined & set(gone), rel
        assert set(gone) <= {n.name for n in ast.parse(src).body if hasattr(n, "name")}
        assert "# board: omit" not in folded[rel] and "# board: omit" in src
    text = "a = 1\n# board: omit - why\nb = 2\n# board: end\nc = 3\n"
    assert omit_host_lines(text) == "a = 1\n\n\n\nc = 3\n"
    inner = (
        "def f():\n    # board: omit\n    if x:\n        return 1\n    # board: end\n    return 2\n"
    )
    assert omit_host_lines(inner) == "def f():\n\n\n\n\n    return 2\n"
    for bad in ("# board: omit\nx = 1\n", "x = 1\n# board: end\n"):
        with pytest.raises(ValueError):
            omit_host_lines(bad)

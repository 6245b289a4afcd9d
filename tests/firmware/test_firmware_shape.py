"""The two apps have one shape (#12): a routing table keyed by the protocol's INS constants that
names one handler module per command, the same name for the same command in both apps, each
module a `handle(app, p1, p2, data)`; no import cycle between the POS's sale pieces; money and
time helpers in core only."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

from tapcash.firmware.core import apdu
from tapcash.firmware.pos import app as pos_app
from tapcash.firmware.wallet import app as wallet_app

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware"
INS = {v for k, v in vars(apdu).items() if k.startswith("INS_")}


def _routes(app_module) -> dict[int, str]:
    routes = app_module._ROUTES
    if isinstance(routes, bytes):  # the wallet's: INS, CLA, P1, P2, name (13 bytes) per route
        rows = [routes[i : i + 17] for i in range(0, len(routes), 17)]
        assert all(len(r) == 17 for r in rows) and len({r[0] for r in rows}) == len(rows)
        return {r[0]: r[4:].decode().rstrip() for r in rows}
    return {ins: r[-1] for ins, r in routes.items()}


def test_the_wallets_routes_name_their_class_and_parameters() -> None:
    # CLA, P1, P2 of each INS as the protocol's constants say (PROTOCOL.md's command table)
    rows = {wallet_app._ROUTES[i]: wallet_app._ROUTES[i + 1 : i + 4] for i in range(0, 255, 17)}
    iso = {apdu.INS_SELECT: (0x04, 0x00), apdu.INS_VERIFY_PIN: (0x00, 0x80),
           apdu.INS_RESET_RETRY: (0x00, 0x80), apdu.INS_CHALLENGE: (0x00, 0x00)}  # fmt: skip
    for ins, got in rows.items():
        cla = apdu.CLA_ISO if ins in iso else apdu.CLA_PROP
        assert got == bytes((cla, *iso.get(ins, (0x00, 0x00)))), hex(ins)


def test_routes_are_keyed_by_ins_constants_and_name_modules_with_a_handler() -> None:
    for app_module, pkg in ((wallet_app, "wallet"), (pos_app, "pos")):
        for ins, name in _routes(app_module).items():
            assert ins in INS, hex(ins)
            mod = importlib.import_module(f"tapcash.firmware.{pkg}.{name}")
            assert callable(mod.handle), f"{pkg}/{name}.py has no handle()"


def test_the_same_command_has_the_same_module_name_in_both_apps() -> None:
    wallet, pos = _routes(wallet_app), _routes(pos_app)
    shared = set(wallet) & set(pos)
    assert shared >= {apdu.INS_SELECT, apdu.INS_GET_INFO, apdu.INS_EXPORT, apdu.INS_ACK,
                      apdu.INS_APPLY, apdu.INS_PERSO_KEYGEN, apdu.INS_PERSO_FINISH}  # fmt: skip
    assert {ins: wallet[ins] for ins in shared} == {ins: pos[ins] for ins in shared}
    assert not list((FIRMWARE / "pos").glob("cmd_*.py"))


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            out.add("." * node.level + (node.module or ""))
            out.update("." * node.level + a.name for a in node.names if not node.module)
    return out


def test_pos_keypad_and_pay_do_not_import_each_other() -> None:
    # pay.py asks keypad.py for the PIN; keypad.py takes money() from core, not from pay.py
    assert ".pay" not in _imports(FIRMWARE / "pos" / "keypad.py")


def test_money_is_formatted_in_core_only() -> None:
    for path in FIRMWARE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        defs = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        if path.name != "units.py":
            assert not defs & {"money", "format_amount", "day_of"}, path

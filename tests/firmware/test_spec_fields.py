"""docs/PROTOCOL.md's field tables are the firmware's field numbers (issue #13): the tables of
§2.1 (certificate), §2.2 (payment) and §2.9 (purse rule) are read from the document itself and
compared, row by row and both ways, with the constants of firmware/core/fields.py (a row
`| 6 | cap | ...` is `RULE_CAP = 6`). For the purse rule the rest of each row is checked against
the card's rule check (firmware/core/purse.py check_rule, the one the card, the POS and the
ledger apply): the kinds it names, what may be left out ("optional"), and the type of each field
(a value of another type is 6A80). A field only the ledger reads ("ledger only") the card keeps
as signed, unchecked."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tapcash.firmware.core import fields, purse
from tapcash.firmware.core.apdu import SW_WRONG_DATA, ApduError

DOC = Path(__file__).resolve().parents[2] / "docs" / "PROTOCOL.md"
ROW = re.compile(r"^\| (\d+) \| ([a-z ]+) \| ([^|]+) \| (.*) \|$")
TABLES = [("2.1", "CERT_"), ("2.2", "PAY_"), ("2.9", "RULE_")]


def table(section: str) -> list[tuple[int, str, str, str]]:
    """The rows (key, name, type, meaning) of the field table of PROTOCOL.md §`section`."""
    text = DOC.read_text(encoding="utf-8")
    m = re.search(rf"^### {re.escape(section)} .*?$(.*?)^#", text, re.M | re.S)
    assert m, f"no section {section} in {DOC.name}"
    rows = []
    for line in m.group(1).splitlines():
        r = ROW.match(line.strip())
        if r:
            rows.append((int(r.group(1)), r.group(2).strip(), r.group(3).strip(),
                         r.group(4).strip()))  # fmt: skip
    assert rows, f"no field table in section {section}"
    return rows


def constant(prefix: str, name: str) -> str:
    return prefix + name.upper().replace(" ", "_")


@pytest.mark.parametrize(("section", "prefix"), TABLES, ids=[s for s, _ in TABLES])
def test_the_field_table_is_the_firmwares_field_numbers(section: str, prefix: str) -> None:
    rows = table(section)
    doc = {constant(prefix, name): key for key, name, _t, _m in rows}
    code = {n: getattr(fields, n) for n in dir(fields) if n.startswith(prefix)}
    assert doc == code, f"PROTOCOL.md §{section} vs fields.{prefix}*"
    assert [r[0] for r in rows] == sorted(doc.values()), "rows in key order, each key once"


# ---- §2.9, the purse rule, row by row against the card's check ------------------------------
def _rows() -> dict[str, tuple[int, str, str]]:
    return {name: (key, typ, meaning) for key, name, typ, meaning in table("2.9")}


def _rule() -> dict[int, Any]:
    """A rule with every field the table lists."""
    return {
        fields.RULE_PROGRAM: b"BUS-2026",
        fields.RULE_KIND: fields.PROG_SUBSIDY,
        fields.RULE_MERCHANTS: [b"BUSCO-01"],
        fields.RULE_CATEGORIES: [4111],
        fields.RULE_FROM: 1_800_000_000,
        fields.RULE_EXPIRES: 1_800_086_400,
        fields.RULE_CAP: 500,
        fields.RULE_UNIT: 250,
        fields.RULE_FUNDER: "city",
    }


def _refused(rule: dict[int, Any]) -> bool:
    try:
        purse.check_rule(rule)
    except ApduError as e:
        assert e.sw == SW_WRONG_DATA
        return True
    return False


def test_the_rule_kinds_are_the_tables() -> None:
    _key, _typ, meaning = _rows()["kind"]
    kinds = {int(n): w for n, w in re.findall(r"(\d+) (subsidy|prepaid)", meaning)}
    assert kinds == {fields.PROG_SUBSIDY: "subsidy", fields.PROG_PREPAID: "prepaid"}
    for k in (0, max(kinds) + 1):
        assert _refused({**_rule(), fields.RULE_KIND: k})


def test_what_the_rule_table_calls_optional_may_be_left_out_and_nothing_else() -> None:
    assert not _refused(_rule())
    for name, (key, _typ, meaning) in _rows().items():
        rule = _rule()
        del rule[key]
        if "ledger only" in meaning:
            continue  # kept as signed by the card and the POS
        assert _refused(rule) == ("optional" not in meaning), f"{name} ({key}) left out"
    # merchants and categories: each optional, not both
    rule = _rule()
    del rule[fields.RULE_MERCHANTS], rule[fields.RULE_CATEGORIES]
    assert _refused(rule)


WRONG = {  # a value of another type than the table's, per type
    "uint": ["7", -1, True],
    "bstr 8": [b"1234567", "BUS-2026", 7],
    "array of bstr 8": [[b"1234567"], b"BUSCO-01", ["BUSCO-01"]],
    "array of uint": [[-1], 4111, [b"x"]],
}


def test_each_rule_field_of_another_type_than_the_tables_is_refused() -> None:
    for name, (key, typ, meaning) in _rows().items():
        if "ledger only" in meaning:
            assert typ == "text"
            continue
        assert typ in WRONG, f"{name}: type {typ!r} not known to this test"
        for v in WRONG[typ]:
            assert _refused({**_rule(), key: v}), f"{name} ({key}) = {v!r} accepted"


def test_the_payments_purse_numbers_are_the_cards() -> None:
    """§2.2 field 6: purse k is 1..MAX_PURSES (the purses a card holds beside the main one)."""
    (meaning,) = [m for key, _n, _t, m in table("2.2") if key == fields.PAY_PURSE]
    lo, hi = re.search(r"k \((\d+)\.\.(\d+)\)", meaning).groups()  # type: ignore[union-attr]
    assert (int(lo), int(hi)) == (1, fields.MAX_PURSES)

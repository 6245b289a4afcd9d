"""host/output.py: one money format (major units in tables, minor units in JSON and CSV), one
time format (ISO 8601 UTC), amounts typed in major units parsed strictly."""

import pytest

from tapcash.host.output import iso, jsonable, money, parse_money


@pytest.mark.parametrize("minor, shown", [
    (0, "0.00"), (5, "0.05"), (123456, "1,234.56"), (-50, "-0.50"),
    (10**17, "1,000,000,000,000,000.00"),
])  # fmt: skip
def test_money_is_major_units_with_the_currency_decimals(minor: int, shown: str) -> None:
    assert money(minor) == shown


def test_money_follows_the_currency_decimals() -> None:
    assert money(123456, 0) == "123,456" and money(123456, 3) == "123.456"
    assert parse_money("12", 0) == 12 and parse_money("1.5", 3) == 1500


@pytest.mark.parametrize("text, minor", [
    ("500", 50000), ("12.5", 1250), ("12.50", 1250), ("0.01", 1), (" 7 ", 700),
])  # fmt: skip
def test_amounts_are_typed_in_major_units(text: str, minor: int) -> None:
    assert parse_money(text) == minor
    assert parse_money(money(minor).replace(",", "")) == minor  # what a table shows reads back


@pytest.mark.parametrize("text", [
    "", "-5", "+5", "1e3", "12.505", "1,000", "²", "١٢", "12.", ".5", "0x10", "NaN", "5 00",
])  # fmt: skip
def test_anything_else_is_no_amount(text: str) -> None:
    with pytest.raises(ValueError, match="is not an amount"):
        parse_money(text)


def test_times_are_iso_8601_utc_and_json_keeps_minor_units() -> None:
    assert iso(1796300000) == "2026-12-03T12:13:20Z"
    assert iso(0) is None and iso(None) is None
    doc = {"at": 1796300000, "amount": 1250, "rows": [{"detected_at": 1796300000, "time": 0}],
           "revoked": True, "expires": None}
    assert jsonable(doc) == {"at": "2026-12-03T12:13:20Z", "amount": 1250,
                             "rows": [{"detected_at": "2026-12-03T12:13:20Z", "time": None}],
                             "revoked": True, "expires": None}


def test_a_typed_amount_is_at_most_what_the_ledger_api_takes() -> None:
    """The audit of #11: an amount past the API's maximum came back as the API's 422 in minor
    units ("less than or equal to 9007199254740991") to an operator typing major units."""
    import click

    from tapcash.host.ledger.models import AMOUNT_MAX as API_MAX
    from tapcash.host.output import AMOUNT, AMOUNT_MAX

    assert AMOUNT_MAX == API_MAX
    assert AMOUNT.convert(money(AMOUNT_MAX).replace(",", ""), None, None) == AMOUNT_MAX
    with pytest.raises(click.BadParameter, match=r"at most 90,071,992,547,409\.91"):
        AMOUNT.convert("90071992547409.92", None, None)

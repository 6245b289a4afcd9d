"""What the commands print, in one place: one money format, one time format, three renderings.

* Money is an integer count of minor units everywhere inside. Tables print it in major units
  with the currency's decimals (`money`: 123456 -> "1,234.56"); `--json` and `--csv` print the
  integer itself. Amounts typed on a command line are major units (`parse_money`: "12.50").
* Times are unix seconds inside and ISO 8601 UTC outside (`iso`: "2026-12-03T12:44:36Z"), in
  tables, JSON and CSV alike (`jsonable` converts every field named in TIME_KEYS).
* `--json` prints one JSON document, indented, keys sorted (jq and json.loads read it alike).
  `tapcash sim serve --json` is the one exception: one line, when ready, for a program that
  reads its stdout line by line.

Rich is imported only when a table is drawn, so importing this module costs nothing.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

import click

DECIMALS = int(os.environ.get("TAPCASH_CURRENCY_DECIMALS", "2"))  # 2: cents
TIME_KEYS = frozenset(
    {
        "at",
        "as_of",
        "detected_at",
        "registered_at",
        "created_at",
        "expires",
        "revoked_at",
        "issued",
        "valid_from",
        "cancelled_at",
        "time",
    }
)
_AMOUNT = re.compile(r"^([0-9]{1,16})(?:\.([0-9]+))?$")  # ASCII digits only
# The largest amount one request may carry (host/ledger/models.py AMOUNT_MAX: exact in any JSON
# parser); a command line refuses more itself, in major units, not with the API's minor units.
AMOUNT_MAX = (1 << 53) - 1


def echo_json(doc: Any, *, err: bool = False) -> None:
    click.echo(json.dumps(doc, indent=2, sort_keys=True), err=err)


def money(minor: int | None, decimals: int = DECIMALS) -> str:
    """Minor units in major units with the currency's decimals: -123456 -> "-1,234.56"."""
    if minor is None:
        return ""
    sign = "-" if minor < 0 else ""
    whole, frac = divmod(abs(int(minor)), 10**decimals)
    return f"{sign}{whole:,}" + (f".{frac:0{decimals}d}" if decimals else "")


def parse_money(text: str, decimals: int = DECIMALS) -> int:
    """An amount typed in major units ("12", "12.5", "12.50") -> minor units; ValueError for
    anything else (signs, exponents, grouping, more decimals than the currency has)."""
    m = _AMOUNT.match(text.strip())
    if m is None or (m.group(2) is not None and not 1 <= len(m.group(2)) <= decimals):
        raise ValueError(
            f"{text!r} is not an amount: major units with at most {decimals} "
            f"decimals, e.g. {money(1250, decimals)}"
        )
    frac = (m.group(2) or "").ljust(decimals, "0")
    return int(m.group(1)) * 10**decimals + (int(frac) if frac else 0)


class Amount(click.ParamType):
    """An amount typed in major units ("500", "12.50") -> minor units, for every command that
    takes money (`AMOUNT`, more than zero; `AMOUNT_OR_ZERO` where 0 means "none")."""

    name = "AMOUNT"

    def __init__(self, zero: bool = False) -> None:
        self.zero = zero

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value  # a default already in minor units
        try:
            minor = parse_money(str(value))
        except ValueError as e:
            self.fail(str(e), param, ctx)
        if minor <= 0 and not self.zero:
            self.fail(f"{value!r}: an amount is more than zero", param, ctx)
        if minor > AMOUNT_MAX:
            self.fail(f"{value!r}: an amount is at most {money(AMOUNT_MAX)}", param, ctx)
        return minor


AMOUNT = Amount()
AMOUNT_OR_ZERO = Amount(zero=True)


def iso(ts: int | None) -> str | None:
    """Unix seconds -> ISO 8601 UTC ("2026-12-03T12:44:36Z"); 0 and None are no time."""
    if not ts or isinstance(ts, bool) or not isinstance(ts, int):
        return None
    try:
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return str(ts)


def jsonable(doc: Any) -> Any:
    """`doc` with every time field (TIME_KEYS) as ISO 8601, money untouched (minor units)."""
    if isinstance(doc, dict):
        return {
            k: iso(v)
            if k in TIME_KEYS and isinstance(v, int) and not isinstance(v, bool)
            else jsonable(v)
            for k, v in doc.items()
        }
    if isinstance(doc, list):
        return [jsonable(v) for v in doc]
    return doc


class Col(NamedTuple):
    """One column: the row key, its header and how a table shows it (text, money, time, int)."""

    key: str
    header: str
    kind: str = "text"


def _cell(value: Any, kind: str) -> str:
    if value is None:
        return ""
    if kind == "money":
        return money(value)
    if kind == "time":
        return iso(value) or ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _plain(value: Any, kind: str) -> Any:
    """A CSV cell: money as minor units, times ISO 8601."""
    if kind == "time":
        return iso(value) or ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else value


def render(
    rows: Sequence[dict[str, Any]],
    cols: Sequence[Col],
    fmt: str,
    *,
    title: str | None = None,
    doc: Any = None,
) -> None:
    """Print rows as a Rich table (fmt "table"), CSV of `cols` or JSON (`doc`, default the
    rows themselves, with ISO times)."""
    if fmt == "json":
        echo_json(jsonable(list(rows) if doc is None else doc))
    elif fmt == "csv":
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow([c.key for c in cols])
        for r in rows:
            w.writerow([_plain(r.get(c.key), c.kind) for c in cols])
        click.echo(out.getvalue(), nl=False)
    else:
        table(rows, cols, title=title)


def table(rows: Sequence[dict[str, Any]], cols: Sequence[Col], *, title: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for c in cols:
        t.add_column(
            c.header,
            justify="right" if c.kind in ("money", "int") else "left",
            no_wrap=c.kind != "text",
        )
    for r in rows:
        t.add_row(*[_cell(r.get(c.key), c.kind) for c in cols])
    Console(soft_wrap=False, width=_width()).print(t)


def pairs(items: Sequence[tuple[str, Any, str]], *, title: str | None = None) -> None:
    """A two-column table of (label, value, kind) lines: one record shown in full."""
    rows = [{"field": label, "value": _cell(v, kind)} for label, v, kind in items]
    table(rows, [Col("field", "field"), Col("value", "value")], title=title)


def _width() -> int | None:
    """Rich's width: the terminal's, or 160 columns when stdout is a pipe or a file (Rich's own
    default of 80 would wrap ids and hashes)."""
    import sys

    return None if sys.stdout.isatty() else 160


def format_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`--json` / `--csv` (default: a table); the command receives `fmt`."""
    fn = click.option(
        "--csv", "fmt", flag_value="csv", help="CSV for scripts (minor units, ISO 8601 times)"
    )(fn)
    fn = click.option(
        "--json", "fmt", flag_value="json", help="JSON for scripts (minor units, ISO 8601 times)"
    )(fn)
    return click.option("--table", "fmt", flag_value="table", default=True, hidden=True)(fn)


def progress_bar(console: Any, width: int, **kw: Any) -> Any:
    """A Rich progress bar in the house columns: what is running (`width` characters), the bar,
    done/total, elapsed time and ETA; `kw` goes to rich.progress.Progress (transient=, disable=).
    Rich is imported here, when a command shows progress, not when output.py is."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn(f"{{task.description:<{width}}}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    return Progress(*columns, console=console, **kw)

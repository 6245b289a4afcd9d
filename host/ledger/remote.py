"""What the operator commands share: the ledger's address and token, one call at a time, and
every failure as one line on stderr with a non-zero exit (never a traceback).

Exit codes: 1 the ledger refused (its RFC 9457 `detail` is printed, with a payroll's bad lines),
2 bad input on the command line (Click's own), 5 the ledger is unreachable or unavailable (a
503: its database is down; try again later, as `tapcash sync` spools on it).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click

from .env import DEFAULT_URL, ENV_TOKEN, ENV_URL

EXIT_REFUSED = 1
EXIT_UNREACHABLE = 5
T = TypeVar("T")


def fail(message: str, code: int = EXIT_REFUSED) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def connect_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`--url` and `--token` (env TAPCASH_LEDGER_URL / TAPCASH_LEDGER_TOKEN)."""
    fn = click.option(
        "--token", envvar=ENV_TOKEN, required=True, help=f"operator token (env {ENV_TOKEN})"
    )(fn)
    return click.option(
        "--url",
        envvar=ENV_URL,
        default=DEFAULT_URL,
        show_default=True,
        callback=_check_url,
        help=f"ledger base URL (env {ENV_URL})",
    )(fn)


def _check_url(_ctx: Any, _param: Any, url: str) -> str:
    if not url.startswith(("http://", "https://")) or len(url) < 9:
        raise click.BadParameter(f"{url!r}: the ledger's base URL, e.g. {DEFAULT_URL}")
    return url


def call(url: str, token: str, fn: Callable[[Any], T]) -> T:
    """Run `fn(client)` against the ledger; a refusal or an unreachable ledger ends the command
    with one line."""
    import httpx

    from .client import LedgerClient, LedgerHTTPError

    try:
        with LedgerClient(url, token=token, timeout=30.0) as lc:
            return fn(lc)
    except LedgerHTTPError as e:
        refused(e)
    except httpx.InvalidURL as e:
        fail(f"--url {url!r}: {e}", 2)
    except (ValueError, KeyError, TypeError) as e:  # an answer that is no ledger's
        fail(f"{url} does not answer as a tapcash ledger ({type(e).__name__}: {e})"[:300])
    except httpx.TransportError as e:
        fail(
            f"ledger unreachable at {url}: {type(e).__name__}: {e or 'no answer'}", EXIT_UNREACHABLE
        )


def refused(e: Any) -> NoReturn:
    """One line for a LedgerHTTPError: status, the problem's detail, a payroll's bad lines."""
    problem = e.problem if isinstance(e.problem, dict) else {}
    for line in problem.get("lines") or []:
        if isinstance(line, dict):
            click.echo(f"  line {line.get('line')}: {line.get('error')}", err=True)
    detail = e.detail if e.detail not in (None, "") else problem.get("title", "refused")
    if e.status == 401:
        detail = f"{detail} (is --token / {ENV_TOKEN} the ledger's operator token?)"
    lines = str(detail).strip().splitlines() or ["refused"]
    fail(f"{lines[0][:300]} (HTTP {e.status})",
         EXIT_UNREACHABLE if e.status in (502, 503, 504) else EXIT_REFUSED)


def device_id(text: str, what: str = "device") -> bytes:
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if len(raw) != 8:
        raise click.BadParameter(f"{text!r}: a {what} id is 16 hex digits")
    return raw

"""`tapcash` loads a sub-command's module only when it runs (host/lazy_group.py)."""

import json
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner
from click.utils import make_default_short_help

from tapcash.host.cli import COMMANDS, cli
from tapcash.host.lazy_group import LazyGroup, load
from tapcash.host.ledger.cli import COMMANDS as LEDGER_COMMANDS

HEAVY = ("fastapi", "uvicorn", "starlette", "matplotlib", "textual", "httpx", "psycopg")

PROBE = """
import json, sys
from tapcash.host.cli import main
sys.argv = ["tapcash", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})), file=sys.stderr)
"""


@pytest.mark.parametrize("argv", [["--help"], ["--version"]])
def test_top_level_help_imports_no_heavy_module(argv):
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = set(json.loads(proc.stderr.strip().splitlines()[-1]))
    assert "click" in loaded and "tapcash" in loaded  # the probe saw the real import set
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def _modules(*argv: str) -> tuple[str, set[str]]:
    """(stdout, every module name loaded) of `tapcash ARGV` in a fresh interpreter."""
    probe = PROBE.replace('m.split(".")[0] for m in sys.modules', "m for m in sys.modules")
    proc = subprocess.run(
        [sys.executable, "-c", probe, *argv], capture_output=True, text=True, timeout=60, check=True
    )
    return proc.stdout, set(json.loads(proc.stderr.strip().splitlines()[-1]))


def test_a_sub_command_is_imported_when_it_runs():
    out, loaded = _modules("ledger", "--help")
    assert "serve" in out and "fraud" in out and "tapcash.host.ledger.cli" in loaded
    # `tapcash ledger --help` lists the operator commands without importing them, or FastAPI
    assert "tapcash.host.ledger.operator_cli" not in loaded
    assert not {m.split(".")[0] for m in loaded} & set(HEAVY)
    out, loaded = _modules("ledger", "owner", "--help")
    assert "tapcash.host.ledger.operator_cli" in loaded and "add" in out


@pytest.mark.parametrize("name", sorted(LEDGER_COMMANDS))
def test_ledger_table_names_the_command_and_its_own_first_sentence(name):
    cmd = load(LEDGER_COMMANDS[name].target)
    own = cmd.short_help or make_default_short_help(cmd.help or "", 10**6)
    assert LEDGER_COMMANDS[name].short_help == own


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_table_names_the_command_and_its_own_first_sentence(name):
    cmd = load(COMMANDS[name].target)
    assert isinstance(cmd, click.Command)
    own = cmd.short_help or make_default_short_help(cmd.help or "", 10**6)
    assert COMMANDS[name].short_help == own


def _fresh_lazy() -> LazyGroup:
    return LazyGroup(
        name="tapcash",
        lazy=COMMANDS,
        commands={"selftest": cli.commands["selftest"]},
        params=cli.params,
        help=cli.help,
        context_settings=cli.context_settings,
    )


@pytest.mark.parametrize("width", [60, 80, 132])
def test_lazy_listing_is_byte_identical_to_clicks_own(width):
    lazy = _fresh_lazy()
    lazy_text = CliRunner().invoke(lazy, ["--help"], terminal_width=width).output
    assert set(lazy.commands) == {"selftest"}  # nothing was imported to list them
    eager = click.Group(
        name="tapcash",
        params=cli.params,
        help=cli.help,
        context_settings=cli.context_settings,
        commands={
            "selftest": cli.commands["selftest"],
            **{n: load(lz.target) for n, lz in COMMANDS.items()},
        },
    )
    eager_text = CliRunner().invoke(eager, ["--help"], terminal_width=width).output
    assert lazy_text == eager_text
    assert all(name in lazy_text for name in COMMANDS)


def test_fraud_show_judges_without_the_console() -> None:
    """`tapcash ledger fraud show` uses host/ledger/proofs.py, not the console package: loading
    the command and its judge imports neither FastAPI nor Jinja2 (#14 item 4)."""
    probe = (
        "import json, sys\n"
        "from tapcash.host.ledger import fraud_cli, proofs\n"
        "assert callable(proofs.judge) and fraud_cli.fraud_show is not None\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    loaded = set(json.loads(done.stdout))
    assert not {"fastapi", "jinja2", "tapcash.host.ledger.console"} & loaded

"""`tapcash bench ...`: benchmarks whose output goes into docs/PERFORMANCE.md.

A benchmark is one module here, registered in BENCHES, with:

- `command`: its click command (`tapcash bench NAME`), printing min/median/max over repeated
  runs and the load average (host/bench/report.py), `--json` for its section;
- `section(**options) -> dict`: the same measurement as JSON (report.new_section + figures +
  report.finish); `tapcash bench all` calls it with its defaults (or `quick=True`);
- optionally `render(section) -> str`: its Markdown for docs/PERFORMANCE.md (otherwise the
  generic table of host/bench/render.py is used).

`tapcash bench all --json FILE` writes every registered bench's section into one file, and
`tapcash bench render FILE` regenerates docs/PERFORMANCE.md from it. A bench that fails to import
breaks `tapcash bench` with its ImportError: no benchmark disappears without a word.
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

import click

# name -> module; the order is the order of docs/PERFORMANCE.md
BENCHES: dict[str, str] = {
    "crypto": "tapcash.host.bench.crypto",
    "sim": "tapcash.host.bench.sim",
    "ingest": "tapcash.host.bench.ingest",
    "servers": "tapcash.host.bench.servers",
    "pcsc": "tapcash.host.bench.pcsc",
    "purse": "tapcash.host.bench.purse",
    "sync": "tapcash.host.bench.sync",
    "firmware": "tapcash.host.bench.firmware",
}


def bench_module(name: str) -> ModuleType:
    return import_module(BENCHES[name])


@click.group()
def bench() -> None:
    """Measure speed and memory (medians over repeated runs)."""


for _name in BENCHES:
    bench.add_command(bench_module(_name).command, name=_name)

from .render import all_command, render_command  # noqa: E402  (uses BENCHES)

bench.add_command(all_command, name="all")
bench.add_command(render_command, name="render")

"""`tapcash bench ...`: benchmarks whose output goes into docs/PERFORMANCE.md."""

from __future__ import annotations

import click


@click.group()
def bench() -> None:
    """Measure speed and memory (medians over repeated runs)."""


def _attach() -> None:
    # Each benchmark lives in its own module; a missing one must not break the CLI.
    from importlib import import_module

    for module_name, attr in (("crypto", "crypto_command"), ("ingest", "ingest_command"),
                                ("sim", "sim_command")):
        try:
            module = import_module(f"{__name__}.{module_name}")
        except ImportError:
            continue
        bench.add_command(getattr(module, attr), name=module_name)


_attach()

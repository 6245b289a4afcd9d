"""`tapcash sim run SCENARIO` and `tapcash demo`: simulate a rollout, reconcile, report.

Both run a seeded scenario (sim/scenario/) over simulated devices that run the unchanged
firmware, the real ledger service on loopback and the real sync tool, then print the
reconciliation report and write report.json, payments.csv and PNG plots. Exit code 0 only
when the books balance.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from tapcash.sim.ui.cli import ui_command

RUNTIMES = click.Choice(["cpython", "micropython"])


@click.group("sim")
def sim() -> None:
    """Simulate wallets and POS terminals: scenarios, faults, attacks, reconciliation."""


sim.add_command(ui_command)


def _scenario(name: str, seed: int | None) -> tuple[Any, int]:
    """(scenario, the seed it will run with) of a .toml file or a built-in name."""
    from tapcash.sim.scenario import ScenarioError, resolve

    try:
        sc = resolve(name)
    except (ScenarioError, OSError) as e:
        raise click.ClickException(str(e)) from None
    return sc, sc.seed if seed is None else seed


class _Stages:
    """Progress per stage (personalising, simulating the day, final sync): a bar with its ETA
    while the stage runs, then one line with the time it took; which stage is running, for
    the message when the run is interrupted."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar
        self.tasks: dict[str, Any] = {}
        self.started: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.current = "starting"
        self.t0 = time.monotonic()

    def __call__(self, done: int, total: int, stage: str) -> None:
        if stage not in self.tasks:
            self.finish()  # a new stage starts: the ones before it are over
            self.tasks[stage] = self.bar.add_task(stage, total=total)
            self.started[stage] = time.monotonic()
        self.current = stage
        self.counts[stage] = done
        self.bar.update(self.tasks[stage], completed=done, total=total)
        if done >= total:
            self.finish(stage)

    def finish(self, only: str | None = None) -> None:
        """Print the time of each finished stage (of all still open ones by default)."""
        for stage in [only] if only else list(self.started):
            if stage in self.started:
                took = time.monotonic() - self.started.pop(stage)
                self.bar.console.print(
                    f"  {stage:<20} {self.counts[stage]:>7,}  {took:6.1f} s", highlight=False
                )

    def elapsed_s(self) -> float:
        return time.monotonic() - self.t0


@contextlib.contextmanager
def _progress_bar(console: Any) -> Iterator[_Stages]:
    from tapcash.host.output import progress_bar

    with progress_bar(console, 20, transient=True) as bar:
        yield _Stages(bar)


def _run(
    scenario: Any,
    out: Path,
    seed: int | None,
    runtime: str,
    processes: bool,
    plots: bool,
    as_json: bool,
    crypto: str | None = None,
) -> int:
    from rich.console import Console

    from tapcash.sim.run.report import render_text, summarize, write_outputs
    from tapcash.sim.run.runner import ScenarioRun

    console = Console(stderr=as_json)
    run = ScenarioRun(
        scenario, out, seed=seed, runtime=runtime,
        isolation="process" if processes else "inproc", crypto=crypto,
    )
    with _progress_bar(console) as stages:
        try:
            log = run.run(stages)
            stages.finish()
        except KeyboardInterrupt:
            stages.bar.stop()
            click.echo(
                f"interrupted during {stages.current} after {stages.elapsed_s():.1f} s: the run "
                f"folder {out} is incomplete (no report.json); run again to start it afresh",
                err=True,
            )
            sys.exit(130)
    summary = summarize(log)
    files = write_outputs(summary, log, out, plots=plots)
    if as_json:
        click.echo(json.dumps(summary, indent=2, sort_keys=True))
    else:
        for line in render_text(summary):
            style = "" if not line.startswith("The books") else ("bold green" if summary["ok"]
                                                                  else "bold red")
            # soft_wrap: a piped report keeps one line per sentence (no wrap at column 80)
            console.print(line, style=style or None, highlight=False, soft_wrap=True)
        wall = summary["wall"]
        pngs = ", ".join(p.name for p in files if p.suffix == ".png")
        console.print(
            f"Took {wall.get('total_s', 0):.1f} s. Report (report.json), payments.csv"
            + (f" and plots ({pngs})" if pngs else "")
            + f" in {out}/",
            highlight=False,
            soft_wrap=True,
        )
    return 0 if summary["ok"] else 1


@sim.command("run")
@click.argument("scenario")
@click.option("--seed", type=int, default=None, help="override the scenario's seed")
@click.option("--runtime", type=RUNTIMES, default="cpython", show_default=True,
              help="run the firmware on CPython or inside the real MicroPython VM")
@click.option("--processes", is_flag=True,
              help="each device in its own process (MicroPython: its own VM)")
@click.option("--crypto", type=click.Choice(["host", "pure"]), default=None,
              help="MicroPython runtime: Ed25519 by the host's libsodium through the VM's "
                   "host-call bridge (host, the default) or the firmware's own pure-Python code "
                   "in the VM as on a board (pure; also TAPCASH_CRYPTO=pure). Same transcripts "
                   "either way; pure is about 4x slower (docs/SIMULATOR.md)")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="run folder (default ./tapcash-sim/NAME-SEED)")
@click.option("--no-plots", is_flag=True, help="skip the PNG plots")
@click.option("--json", "as_json", is_flag=True, help="print the JSON summary")
@click.option("--seeds", type=click.IntRange(1), default=None, metavar="N",
              help="sweep N seeds (from --seed, default 1): one line per seed, each failing "
                   "seed with the command that replays it; exit 1 if any failed")
def run_command(
    scenario: str,
    seed: int | None,
    runtime: str,
    processes: bool,
    crypto: str | None,
    out_dir: Path | None,
    no_plots: bool,
    as_json: bool,
    seeds: int | None,
) -> None:
    """Run SCENARIO (a .toml file or a built-in name, see `tapcash sim list`).

    `tapcash sim run attack --seed N` runs the seeded adversary (docs/SECURITY.md);
    `--seeds N` sweeps N seeds of any scenario."""
    sc, used_seed = _scenario(scenario, seed)
    if seeds is not None:
        from tapcash.sim.run.sweep import sweep

        if as_json:
            raise click.UsageError("--json prints one run's summary: with --seeds each seed's "
                                   "is its folder's report.json")
        first = 1 if seed is None else seed
        root = out_dir or Path("tapcash-sim")
        bad = 0
        settings = {"runtime": runtime, "isolation": "process" if processes else "inproc",
                    "crypto": crypto}
        for res in sweep(sc, range(first, first + seeds), root, scenario, **settings):
            bad += not res.ok
            click.echo(res.line())
        click.echo(f"{seeds - bad} of {seeds} seeds ok" + (f", {bad} FAILED" if bad else ""))
        sys.exit(1 if bad else 0)
    out = out_dir or Path("tapcash-sim") / f"{sc.name}-{used_seed}"
    sys.exit(_run(sc, out, seed, runtime, processes, not no_plots, as_json, crypto))


@sim.command("template")
@click.argument("builtin", default="demo")
def template_command(builtin: str) -> None:
    """Print a built-in scenario's TOML to start a scenario of your own from (default: demo,
    whose comments document every key): tapcash sim template > my.toml."""
    from tapcash.sim.scenario import ScenarioError, builtin_source

    try:
        click.echo(builtin_source(builtin), nl=False)
    except ScenarioError as e:
        raise click.ClickException(str(e)) from None


@sim.command("list")
def list_command() -> None:
    """The built-in scenarios."""
    from tapcash.sim.scenario import builtin_names, builtin_scenario

    for name in builtin_names():
        sc = builtin_scenario(name)
        click.echo(f"{name:<12} {sc.description}")


@click.command("demo")
@click.option("--workdir", type=click.Path(path_type=Path), default=Path("tapcash-demo"),
              show_default=True, help="folder for the ledger database, device flash and report")
@click.option("--seed", type=int, default=None, help="override the demo's seed")
@click.option("--runtime", type=RUNTIMES, default="cpython", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print the JSON summary")
def demo(workdir: Path, seed: int | None, runtime: str, as_json: bool) -> None:
    """One simulated day: 50 card wallets and 5 POS terminals paying offline, a torn tap, a
    power cut, a cloned card and a rolled-back card; then every device syncs through the sync
    tool to the ledger and the books are checked. Exit code 0 only if they balance."""
    from tapcash.sim.scenario import builtin_scenario

    sc = builtin_scenario("demo")
    if not as_json:
        click.echo(
            f"tapcash demo: {sc.wallets.count} wallets and {sc.pos.count} POS terminals, one "
            f"day offline, then sync and reconcile (run folder: {workdir})"
        )
    sys.exit(_run(sc, workdir, seed, runtime, False, True, as_json))


@sim.command("serve")
@click.argument("scenario", default="smoke")
@click.option("--seed", type=int, default=None, help="override the scenario's seed")
@click.option("--runtime", type=RUNTIMES, default="cpython", show_default=True,
              help="run the firmware on CPython or inside the real MicroPython VM")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="run folder: ledger database, outbox (default ./tapcash-serve/NAME-SEED)")
@click.option("--json", "as_json", is_flag=True,
              help="print one JSON line (ledger, outbox, devices and their ports) when ready")
@click.option("--ledger", "ledger_url", default=None,
              help="provision the fleet on this ledger (tapcash ledger serve) instead of one on "
                   "loopback; the day then starts now")
@click.option("--token", envvar="TAPCASH_LEDGER_TOKEN", default=None,
              help="with --ledger: its operator token (env TAPCASH_LEDGER_TOKEN)")
@click.option("--issuer-key", type=click.Path(exists=True, dir_okay=False), default=None,
              help="with --ledger: the issuer key it signs with (certifies the devices)")
def serve_command(scenario: str, seed: int | None, runtime: str, out_dir: Path | None,
                  as_json: bool, ledger_url: str | None, token: str | None,
                  issuer_key: str | None) -> None:
    """Run SCENARIO's day (default: smoke), then serve every device on its own pseudo-terminal
    with the ledger on loopback, until Ctrl-C: sync them by hand with `tapcash sync --port`."""
    import signal
    import threading

    from rich.console import Console

    from tapcash.sim.run.runner import RemoteMismatch
    from tapcash.sim.run.serve import ServedRun, TooManyDevices

    sc, used_seed = _scenario(scenario, seed)
    out = out_dir or Path("tapcash-serve") / f"{sc.name}-{used_seed}"
    served = ServedRun(sc, out, seed=seed, runtime=runtime,
                       remote=_remote(ledger_url, token, issuer_key))
    err = click.get_text_stream("stderr")
    click.echo(f"simulating {sc.name} (seed {used_seed}) up to its final syncs...", file=err)
    try:
        with _progress_bar(Console(stderr=True)) as progress:
            served.start(progress)
    except (TooManyDevices, RemoteMismatch) as e:
        raise click.ClickException(str(e)) from None
    except Exception as e:
        from tapcash.host.ledger.client import LedgerHTTPError

        if not isinstance(e, LedgerHTTPError | OSError) and "httpx" not in type(e).__module__:
            raise
        raise click.ClickException(f"the ledger at {served.ledger_url}: {e}") from None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        if as_json:
            click.echo(json.dumps(served.summary()))
        else:
            token = "$TAPCASH_LEDGER_TOKEN" if served.run.remote else served.token
            click.echo(f"ledger {served.ledger_url}  (operator token {token})")
            for d in served.devices:
                click.echo(f"  {d.name:<14} {d.role:<6} {d.id}  {d.port}")
            first = served.devices[0]
            click.echo(
                "sync one by hand, e.g.:\n"
                f"  tapcash sync --port {first.port} --ledger {served.ledger_url} "
                f"--token {token} --outbox {served.outbox}\n"
                + (f"  tapcash ledger fraud list --url {served.ledger_url}\n"
                   if served.run.remote else
                   f"  tapcash ledger report fraud --db {served.run.out / 'ledger.db'}\n") +
                "Ctrl-C stops every device and the ledger."
            )
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup
        served.stop()
    click.echo("stopped", file=err)


def _remote(url: str | None, token: str | None, issuer_key: str | None) -> Any:
    """The operator's ledger to provision on (sim.runner.Remote), or None for loopback."""
    if url is None:
        if issuer_key is not None:
            raise click.UsageError("--issuer-key is for --ledger")
        return None
    if not token or not issuer_key:
        raise click.UsageError("--ledger needs --token (or TAPCASH_LEDGER_TOKEN) and --issuer-key")
    from tapcash.host.issuer import KeyFileError, load_key_file
    from tapcash.sim.run.runner import Remote

    try:
        issuer = load_key_file(issuer_key)
    except KeyFileError as e:
        click.echo(f"error: {e}", err=True)
        raise click.exceptions.Exit(2) from None
    return Remote(url.rstrip("/"), token, issuer)


@sim.command("board")
@click.option("--flash", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="folder holding the board's flash (filesystem, partition table, ROMFS): "
              "loaded at start, written back at exit")
@click.option("--romfs-kb", type=click.IntRange(min=0), default=None,
              help="its ROMFS partition (as after tapcash flash --partitions romfs); 0: none; "
              "default: as the --flash folder's partition table says (none without one)")
def board_command(flash: Path | None, romfs_kb: int | None) -> None:
    """A bare MicroPython board (the real VM) with its REPL on a pseudo-terminal, until Ctrl-C:
    mpremote (reset included), `tapcash deploy`, `provision` and `sync` work on it as on an
    ESP32; after `mpremote reset` the deployed firmware runs."""
    from tapcash.sim.vm import repl_pty

    args = ["--flash", str(flash)] if flash is not None else []
    if romfs_kb is not None:
        args += ["--romfs-kb", str(romfs_kb)]
    sys.exit(repl_pty.main(args))

"""Many seeds of one scenario, VOPR style: each run is independent and deterministic, so a
failing seed is printed with the one command that replays it exactly.

    for r in sweep(scenario, seeds=range(1, 21), out_root=Path("tapcash-sim")):
        print(r.line())
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class SeedResult:
    scenario: str
    source: str
    seed: int
    ok: bool
    failed: list[str] = field(default_factory=list)
    first: str = ""  # the first oracle violation or failed check's detail
    seconds: float = 0.0
    out: str = ""
    flags: str = ""  # the run options beyond the seed (`--runtime micropython`, ...)

    @property
    def replay(self) -> str:
        return f"tapcash sim run {self.source} --seed {self.seed}{self.flags}"

    def line(self) -> str:
        if self.ok:
            return f"seed {self.seed}: ok ({self.seconds:.1f} s)"
        return (f"seed {self.seed}: FAILED {', '.join(self.failed)}: {self.first}\n"
                f"    replay: {self.replay}   (report: {self.out}/report.json)")


def _first_problem(summary: dict[str, Any]) -> str:
    for v in summary.get("adversary", {}).get("violations", []):
        return v
    for m in summary["ledger"].get("merchant_problems", []):
        return m
    if summary["fraud"]["uncaught"]:
        return f"uncaught double spend {summary['fraud']['uncaught'][0]}"
    if summary["balances"]["mismatches"]:
        return f"wallet mismatch {summary['balances']['mismatches'][0]}"
    if summary["lost_payments"]:
        return f"lost payment {summary['lost_payments'][0]}"
    return ""


def run_flags(runtime: str = "cpython", isolation: str = "inproc",
              crypto: str | None = None) -> str:
    """The `tapcash sim run` options that reproduce these run settings (beyond the seed)."""
    return ((f" --runtime {runtime}" if runtime != "cpython" else "")
            + (" --processes" if isolation == "process" else "")
            + (f" --crypto {crypto}" if crypto else ""))


def run_seed(sc: Any, seed: int, out: Path, source: str, *, runtime: str = "cpython",
             isolation: str = "inproc", crypto: str | None = None,
             ) -> tuple[SeedResult, dict[str, Any]]:
    import time

    from tapcash.sim.run.report import summarize, write_outputs
    from tapcash.sim.run.runner import ScenarioRun

    t0 = time.perf_counter()
    log = ScenarioRun(sc, out, seed=seed, runtime=runtime, isolation=isolation,
                      crypto=crypto).run()
    summary = summarize(log)
    write_outputs(summary, log, out, plots=False)
    failed = [k for k, v in summary["checks"].items() if not v]
    res = SeedResult(sc.name, source, seed, summary["ok"], failed, _first_problem(summary),
                     time.perf_counter() - t0, str(out), run_flags(runtime, isolation, crypto))
    return res, summary


def sweep(sc: Any, seeds: Iterable[int], out_root: Path, source: str,
          **settings: Any) -> Iterator[SeedResult]:
    """`settings`: run_seed's runtime, isolation, crypto (every seed runs with them)."""
    for seed in seeds:
        yield run_seed(sc, seed, out_root / f"{sc.name}-{seed}", source, **settings)[0]

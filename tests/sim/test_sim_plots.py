"""The run's plots read at the size they are written: bars fit their axes, an axis spans its
data, every decline reason and every attack is drawn, a multi-day run is binned per day.

The figures come from a real smoke run (the simulator, the ledger, the sync tool); the checks
read the matplotlib figures the plot module draws, not numbers it reports about itself.
"""

import dataclasses

import pytest

from tapcash.sim.run import plots
from tapcash.sim.run.runner import ScenarioRun
from tapcash.sim.scenario import builtin_scenario


@pytest.fixture(scope="module")
def plt():
    p = plots._plt()
    yield p
    p.close("all")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    return ScenarioRun(builtin_scenario("smoke"), tmp_path_factory.mktemp("plots")).run()


def _stack_tops(ax) -> list[float]:
    return [r.get_y() + r.get_height() for r in ax.patches]


def test_every_outcome_is_its_own_series_and_the_bars_fit(plt, smoke):
    fig = plots.payments_figure(plt, smoke)
    ax, axv = fig.axes
    seen = {plots.outcome(p) for p in smoke.payments}
    labels = {t.get_text().rsplit(" (", 1)[0] for t in ax.get_legend().get_texts()}
    assert seen == labels and "approved" in seen and len(seen) >= 3
    assert max(_stack_tops(ax)) < ax.get_ylim()[1]
    assert max(_stack_tops(axv)) < axv.get_ylim()[1]
    # counts drawn add up to the payments of the run
    assert sum(r.get_height() for r in ax.patches) == len(smoke.payments)
    assert plots.bin_seconds(smoke.scenario.end) == plots.HOUR_S


def test_a_multi_day_run_is_binned_per_day(plt, smoke):
    days = 5
    spread = [dataclasses.replace(p, t=p.t + (i % days) * plots.DAY_S)
              for i, p in enumerate(smoke.payments)]
    log = dataclasses.replace(smoke, payments=spread,
                              scenario=dataclasses.replace(smoke.scenario, days=days))
    width, order, counts, _value = plots.outcome_bins(log)
    assert width == plots.DAY_S
    assert all(len(v) == days for v in counts.values())
    fig = plots.payments_figure(plt, log)
    ticks = [t.get_text() for t in fig.axes[1].get_xticklabels()]
    assert ticks == [f"day {d}" for d in range(1, days + 1)]


def test_card_in_field_axis_spans_the_data_and_the_budget_is_a_gauge(plt, smoke):
    fig = plots.lag_figure(plt, smoke)
    _lag, dist, gauge = fig.axes
    ms = [p.in_field_ms for p in smoke.payments if p.status == "approved"]
    lo, hi = dist.get_xlim()
    assert lo <= min(ms) and hi >= max(ms)
    assert hi - lo < 0.5 * plots.IN_FIELD_BUDGET_MS  # not a hairline on a 0-500 ms axis
    assert gauge.get_xlim()[1] >= plots.IN_FIELD_BUDGET_MS
    assert "budget" in gauge.get_title()


def test_every_attack_has_a_row_a_start_mark_and_its_refusals(plt, smoke):
    fig = plots.fraud_figure(plt, smoke)
    ax = fig.axes[0]
    assert len(ax.get_yticks()) == len(smoke.attacks) >= 2
    markers = {(line.get_marker(), round(float(line.get_ydata()[0]), 2))
               for line in ax.get_lines() if len(line.get_ydata()) == 1}
    for i, a in enumerate(smoke.attacks):
        y = len(smoke.attacks) - i
        assert (plots.ATTACK_MARK[a["kind"]], y) in markers
        refused = [p for p in smoke.payments if p.tag == a["tag"] and p.status != "approved"]
        if refused:
            assert ("x", round(y - 0.12, 2)) in markers

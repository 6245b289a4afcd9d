"""Programmes in a simulated district (sim/scenario/builtin/programmes.toml): a transport
subsidy for every resident (by merchant category, expiring after day 0) and prepaid lessons at a
school. Real devices, the ledger on loopback, the sync tool; a cloned card spends its purse twice.
Oracles from the run's own records, not the ledger's report: every payment a purse paid part of
was at a POS the programme allows, and no later than its expiry; the ledger's per-programme books
are then checked against those payments.
"""

import pytest

from tapcash.host.ledger import programs
from tapcash.sim.run.report import summarize
from tapcash.sim.run.runner import ScenarioRun
from tapcash.sim.scenario import builtin_scenario, parse_scenario


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    sc = builtin_scenario("programmes")
    log = ScenarioRun(sc, tmp_path_factory.mktemp("programmes")).run()
    return sc, log, summarize(log)


def test_programmes_flow_and_balance(run) -> None:
    sc, log, s = run
    assert s["ok"], s["checks"]
    assert s["checks"]["programmes_balanced"]
    by_name = {p.name: p for p in sc.programs}
    earmarked = [p for p in log.payments if p.status == "approved" and p.earmarked]
    assert len(earmarked) > 10
    # the oracle: POS numbers and times from the scenario, payments from the devices' results
    spent_at: dict[str, int] = {}
    for p in earmarked:
        pos_n = int(p.pos.split("-")[1])
        homes = [pr for pr in sc.programs if pos_n in pr.pos]
        assert len(homes) == 1, p  # a purse paid only where a programme allows it
        pr = homes[0]
        assert p.t <= (pr.expires or sc.end)
        if pr.unit:
            assert p.earmarked % pr.unit == 0
        if pr.cap:
            assert p.earmarked <= pr.cap
        spent_at[pr.name] = spent_at.get(pr.name, 0) + p.earmarked
    reports = {r["program"]: r for r in s["programmes"]}
    assert set(reports) == set(by_name)
    for name, r in reports.items():
        assert r["balanced"]
        assert r["funded"] == by_name[name].amount * r["purses"]
        # every earmarked part the POS terminals took reached the books, once
        assert r["spent"] + r["released"] == spent_at.get(name, 0), name
    assert reports["transport"]["state"] == "expired" and reports["transport"]["outstanding"] == 0
    assert reports["transport"]["refunded"] == reports["transport"]["funded"] - spent_at[
        "transport"]
    assert reports["piano"]["released"] > 0 and reports["piano"]["kind"] == "prepaid"
    inv = log.ledger["invariant"]
    assert inv["ok"] and inv["programs"]["ok"] and inv["programs"]["programs"] == 2
    # the clone spent its transport purse twice, at both bus POS: caught, both credited
    clone = [p for p in earmarked if p.tag == "clone-1"]
    assert len(clone) == 2 and {p.pos for p in clone} == {"pos-1", "pos-2"}
    assert s["fraud"]["uncaught"] == [] and len(s["fraud"]["revoked"]) == 1


def test_the_reports_ledger_line_names_every_part_of_what_is_held(run) -> None:
    """`Ledger: issued X = held X (...)`: the parts add up to held, purses and programme
    accounts included (they hold earmarked value a pilot team looks for)."""
    import re

    from tapcash.sim.run.report import render_text

    _sc, _log, s = run
    (line,) = [x for x in render_text(s) if x.startswith("Ledger: issued")]
    held = re.search(r"= held ([\d,]+\.\d\d) \((.*)\);", line)
    assert held, line
    cents = lambda m: int(m.replace(",", "").replace(".", ""))  # noqa: E731
    parts = re.findall(r"([a-z ]+) (-?[\d,]+\.\d\d)", held.group(2))
    assert {"purses", "programme accounts"} <= {k.strip() for k, _v in parts}, line
    assert sum(cents(v) for _k, v in parts) == cents(held.group(1)), line


def test_the_district_scenario_runs_a_subsidy_and_a_prepaid_lesson_programme() -> None:
    # issue 13's "done when": `tapcash sim run district` carries both programmes (the run itself,
    # ~2 min, is the pilot team's: docs/PROGRAMMES.md section 6)
    sc = builtin_scenario("district")
    progs = {p.name: p for p in sc.programs}
    assert {p.kind for p in progs.values()} == {"subsidy", "prepaid"}
    bus, lessons = progs["transport"], progs["lessons"]
    assert bus.wallets is None and bus.category and bus.cap and bus.payments
    assert lessons.wallets and lessons.unit and lessons.payments and not lessons.category


def test_program_block_is_checked() -> None:
    from tapcash.sim.scenario import ScenarioError

    base = {"scenario": {"name": "x", "days": 1}, "pos": {"count": 2}, "wallets": {"count": 3}}
    ok = dict(base, programs=[{"name": "bus", "at": "07:00", "pos": [1, 2], "category": 4111}])
    sc = parse_scenario(ok)
    assert sc.programs[0].pos == (1, 2) and sc.programs[0].category == 4111
    for bad in ({"name": "bus", "at": "07:00", "pos": [3]},  # no POS 3
                {"name": "bus", "at": "07:00", "kind": "gift"},
                {"name": "b u s", "at": "07:00"},
                {"name": "bus"},
                {"name": "piano", "at": "07:00", "kind": "prepaid", "unit": 2500,
                 "amount": 2600}):  # not whole lessons
        with pytest.raises(ScenarioError):
            parse_scenario(dict(base, programs=[bad]))
    assert programs.program_id("bus") == programs.program_id("bus")


def test_micropython_vm_pays_from_purses_byte_for_byte(run, tmp_path) -> None:
    """The same programmes run with every device inside the real MicroPython VM: identical
    APDU transcripts and the same report (purse choice, split, rule checks on both runtimes)."""
    import json

    from tapcash.sim.run.report import deterministic_part

    sc, _log, s = run
    log_mp = ScenarioRun(sc, tmp_path / "mp", runtime="micropython").run()
    s_mp = summarize(log_mp)

    def comparable(x):
        d = json.loads(json.dumps(deterministic_part(x)))
        d["scenario"].pop("runtime")
        return d

    assert comparable(s_mp) == comparable(s)


def test_programmes_plot_draws_the_books(run, tmp_path) -> None:
    """The bars of programmes.png are the ledger's figures; the curves end at the earmarked
    value the run's own payment records add up to."""
    from tapcash.sim.run import plots

    sc, log, s = run
    plt = plots._plt()
    fig = plots.programmes_figure(plt, log)
    try:
        ax, ax2 = fig.axes[:2]
        reports = {r["program"]: r for r in s["programmes"]}
        bars = [round(p.get_width() * 100) for p in ax.patches]
        want = []
        for pr in sc.programs:
            r = reports[pr.name]
            want += [r["spent"] + r["released"], r["refunded"], r["outstanding"]]
        assert bars == want
        ends = {ln.get_label(): round(ln.get_ydata()[-1] * 100) for ln in ax2.get_lines()}
        for pr in sc.programs:
            assert ends[pr.name] == sum(p.earmarked for p in log.payments
                                        if p.status == "approved" and p.earmarked
                                        and plots.programme_of(log, p) == pr.name)
    finally:
        plt.close(fig)
    assert "programmes.png" in {p.name for p in plots.write_plots(log, tmp_path)}

"""Scenario files and their seeded schedules."""

import pytest

from tapcash.firmware.core import proto
from tapcash.sim.scenario import (
    DAY_S,
    ScenarioError,
    build_schedule,
    builtin_names,
    builtin_scenario,
    parse_clock,
    parse_scenario,
    resolve,
)


def test_builtins_parse():
    assert {"demo", "smoke"} <= set(builtin_names())
    demo = builtin_scenario("demo")
    assert (demo.wallets.count, demo.pos.count, demo.days) == (50, 5, 1)
    assert demo.wallets.limits[proto.LIM_OFFLINE_COUNT] == 10
    assert demo.pos.config[proto.CFG_FLOOR] == 20000
    assert len(demo.tears) == len(demo.power_cuts) == len(demo.clones) == 1
    assert demo.rollbacks[0].restore_t == 15 * 3600
    assert resolve("smoke").name == "smoke"


def test_file_and_errors(tmp_path):
    p = tmp_path / "x.toml"
    p.write_text('[scenario]\nname = "x"\n[wallets]\ncount = 3\n[pos]\ncount = 1\n')
    sc = resolve(str(p))
    assert sc.name == "x" and sc.wallets.count == 3 and sc.source == str(p)
    with pytest.raises(ScenarioError, match="unknown key"):
        parse_scenario({"wallets": {"cuont": 3}})
    with pytest.raises(ScenarioError, match="unknown key"):
        parse_scenario({"wallets": {"limits": {"offline": 3}}})
    with pytest.raises(ScenarioError, match="wrong type"):
        parse_scenario({"pos": {"count": "two"}})
    with pytest.raises(ScenarioError, match="no such device"):
        parse_scenario({"wallets": {"count": 2}, "clones": [{"wallet": 3, "at": "10:00"}]})
    with pytest.raises(ScenarioError, match="HH:MM"):
        parse_scenario({"power_cuts": [{"device": "pos-1", "at": "25:99"}]})
    with pytest.raises(ScenarioError, match="no built-in"):
        builtin_scenario("nope")
    assert parse_clock("08:30") == 8 * 3600 + 1800


def test_schedule_is_a_pure_function_of_the_seed():
    sc = builtin_scenario("demo")
    a, b, c = build_schedule(sc, 1), build_schedule(sc, 1), build_schedule(sc, 2)
    assert a == b
    assert a != c
    times = [e.t for e in a]
    assert times == sorted(times)
    assert all(0 <= t <= DAY_S for t in times)
    kinds = {e.kind for e in a}
    assert {"pay", "transfer", "load", "sync", "cut", "clone", "snapshot", "restore"} <= kinds
    assert a[-1].kind == "final"
    pays = [e for e in a if e.kind == "pay" and not e.tag]
    assert all(8 * 3600 <= e.t < 20 * 3600 for e in pays)
    assert all(50 <= e.amount <= 15000 and e.amount % 10 == 0 for e in pays)
    assert sum(1 for e in a if e.tear is not None) == 1


def test_uniform_arrivals_give_the_exact_count():
    sc = parse_scenario({"payments": {"count": 37, "arrival": "uniform"}, "sync": {"final": False}})
    assert sum(1 for e in build_schedule(sc) if e.kind == "pay") == 37


def test_clone_and_rollback_events():
    sc = builtin_scenario("smoke")
    evs = build_schedule(sc)
    clone = [e for e in evs if e.tag == "clone-1"]
    assert [e.kind for e in clone] == ["clone", "pay", "pay"]
    assert clone[1].wallet == "wallet-5" and clone[2].wallet == "wallet-5-clone"
    assert clone[1].device != clone[2].device
    rb = [e for e in evs if e.tag == "rollback-1"]
    assert [e.kind for e in rb] == ["snapshot", "restore", "pay", "pay"]

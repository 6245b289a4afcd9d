import copy
import json

import pytest
from click.testing import CliRunner

from tapcash.boards.profile import apply_option, list_profiles, load_profile, validate
from tapcash.host.cli import cli

NAMES = ["devkitc-pn532-wallet", "devkitc-pn532-visual-wallet", "devkitc-pn532-pos"]


@pytest.mark.parametrize("name", NAMES)
def test_builtin_profiles_are_valid(name):
    profile = load_profile(name)
    assert validate(profile).errors == []
    for option in profile.get("options", {}):
        assert validate(apply_option(profile, option)).errors == []


def test_every_profile_file_is_listed():
    assert sorted(p["name"] for p in list_profiles()) == sorted(NAMES)


def test_visual_wallet_and_pos_have_their_peripherals():
    visual = load_profile("devkitc-pn532-visual-wallet")["peripherals"]
    assert {"nfc", "display", "button"} <= set(visual)
    pos = load_profile("devkitc-pn532-pos")["peripherals"]
    assert {"nfc", "display", "keypad", "buzzer"} <= set(pos)
    assert pos["nfc"]["mode"] == "reader"


def _broken(mutate):
    profile = copy.deepcopy(load_profile("devkitc-pn532-pos"))
    mutate(profile)
    return validate(profile).errors


def test_missing_pin_is_named():
    errors = _broken(lambda p: p["buses"]["spi1"].pop("miso"))
    assert errors == ["bus spi1: missing pin 'miso'"]


def test_pin_used_twice_is_named():
    errors = _broken(lambda p: p["peripherals"]["buzzer"].update(pin=27))
    assert errors == ["GPIO27 is used twice: keypad.cols[0], buzzer.pin"]


def test_flash_and_input_only_pins_refused():
    errors = _broken(lambda p: p["peripherals"]["buzzer"].update(pin=7))
    assert any("GPIO7 is wired to the SPI flash" in e for e in errors)
    errors = _broken(lambda p: p["peripherals"]["nfc"].update(reset=34))
    assert any("GPIO34 is input-only" in e for e in errors)
    errors = _broken(lambda p: p["peripherals"]["buzzer"].update(pin=24))
    assert any("GPIO24 does not exist" in e for e in errors)


def test_role_needs_its_peripherals():
    errors = validate(load_profile("devkitc-pn532-wallet"), "pos")
    assert "role pos needs a keypad, and profile 'devkitc-pn532-wallet' has none" in errors.errors


def test_cli_lists_and_checks(tmp_path):
    runner = CliRunner()
    listing = runner.invoke(cli, ["boards"])
    assert listing.exit_code == 0
    for name in NAMES:
        assert name in listing.output
    assert runner.invoke(cli, ["boards", "check", "devkitc-pn532-pos"]).exit_code == 0

    bad = load_profile("devkitc-pn532-pos")
    bad["peripherals"]["buzzer"]["pin"] = 27
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    result = runner.invoke(cli, ["boards", "check", str(path)])
    assert result.exit_code == 1
    assert "GPIO27 is used twice" in result.output

    missing = runner.invoke(cli, ["boards", "check", "no-such-board"])
    assert missing.exit_code != 0
    assert "no board profile named 'no-such-board'" in missing.output


@pytest.mark.parametrize("name", NAMES)
def test_shipped_profiles_warn_about_nothing(name):
    # every strapping pin a shipped board uses is reviewed in the profile, with the reason
    profile = load_profile(name)
    for form in [profile] + [apply_option(profile, o) for o in profile.get("options", {})]:
        check = validate(form)
        assert check.warnings == []
        assert all("strapping pin:" in n for n in check.notes)
    assert CliRunner().invoke(cli, ["boards", "check", name]).output == f"{name}: ok\n"


def test_an_unreviewed_strapping_pin_still_warns():
    profile = load_profile("devkitc-pn532-pos")
    del profile["strapping_reviewed"]["15"]
    check = validate(profile)
    assert check.errors == []
    assert [w.split(":")[0] for w in check.warnings] == ["buzzer.pin"]


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ('{"name": "x", "roles": ["wallet"], "buses": [], "peripherals": {}}',
         "buses: an object of name -> settings is required, got list"),
        ('{"name": "x", "roles": ["wallet"], "peripherals": {"nfc": 5}}',
         "peripherals.nfc: an object is required, got 5"),
        ('{"name": "x", "roles": "wallet"}', "roles: a list of role names is required"),
        ('{"name": "x", "roles": ["pos"], "peripherals": {"nfc": {"chip": "pn532"}}}',
         'nfc.mode is missing: role pos needs "mode": "reader"'),
        ('{"name": "x", "roles": ["wallet"], "peripherals": {"nfc": {"mode": "reader"}}}',
         "nfc.mode is 'reader': role wallet needs 'target'"),
        ('{"name": "x", "peripherals": {"nfc": {"bus": ["b"]}}}',
         "nfc.bus: the name of a bus is required"),
        ('{"name": "x", "peripherals": {"keypad": {"rows": 4}}}',
         "keypad: rows, cols and keys are lists"),
        ('{"name": "x", "strapping_reviewed": {"4": "fine"}}',
         "strapping_reviewed.4: not a strapping pin"),
        ('[1, 2]', "a profile is a JSON object, got list"),
    ],
)
def test_a_malformed_profile_is_named_not_a_traceback(tmp_path, doc, message):
    path = tmp_path / "p.json"
    path.write_text(doc)
    result = CliRunner().invoke(cli, ["boards", "check", str(path)])
    assert result.exit_code == 1
    assert message in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "None" not in result.output


def test_memory_section_defaults_and_errors() -> None:
    from tapcash.boards.profile import board_memory, shape_errors

    base = {"name": "t", "mcu": "esp32", "roles": ["wallet"]}
    mem = board_memory(base)
    assert (mem.heap_kb, mem.partitions, mem.romfs) == (108, "stock", False)
    assert not mem.from_profile
    mem = board_memory({**base, "memory": {"heap_kb": 4000, "partitions": "romfs"}})
    assert (mem.heap_kb, mem.romfs, mem.from_profile) == (4000, True, True)
    assert shape_errors({**base, "memory": {"heap_kb": -1}}) == [
        "memory.heap_kb: a positive number of KB is required, got -1"
    ]
    assert shape_errors({**base, "memory": {"partitions": "ota"}}) == [
        "memory.partitions: one of stock, romfs is required, got 'ota'"
    ]
    assert shape_errors({**base, "memory": {"psram": True}}) == [
        "memory: unknown key 'psram' (heap_kb, partitions, note)"
    ]

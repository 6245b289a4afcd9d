"""One vocabulary across commands: limits by name, --issuer-key, one certificate lifetime,
readable option types, a scenario template, and suggestions for a misspelt key."""

import time
from pathlib import Path

import cbor2
import pytest
from click.testing import CliRunner

from tapcash.host.cli import cli
from tapcash.host.issuer import CERT_DAYS, DAY_S, Issuer
from tapcash.sim.scenario import ScenarioError, builtin_source, load_scenario

DEVICE_ID = "0011223344556677"
PUBLIC_KEY = "ab" * 32


@pytest.fixture()
def key(tmp_path: Path) -> Path:
    path = tmp_path / "issuer.key"
    Issuer.generate().save(path)
    return path


CERT_EXPIRES = 4  # docs/PROTOCOL.md §2.1: certificate field 4, unix seconds


def _certificate_body(hex_envelope: str) -> dict:
    body_bytes, _sig = cbor2.loads(bytes.fromhex(hex_envelope.strip()))  # [body, signature]
    return cbor2.loads(body_bytes)


def test_issuer_certify_takes_limits_by_name_as_provision_does(key: Path) -> None:
    res = CliRunner().invoke(cli, [
        "issuer", "certify", "wallet", "--issuer-key", str(key), "--id", DEVICE_ID,
        "--public-key", PUBLIC_KEY, "--limit", "payment_max=2000", "--limit", "offline_count=5",
    ])
    assert res.exit_code == 0, res.output
    typo = CliRunner().invoke(cli, [
        "issuer", "certify", "wallet", "--issuer-key", str(key), "--id", DEVICE_ID,
        "--public-key", PUBLIC_KEY, "--limit", "paymnt_max=2000",
    ])
    assert typo.exit_code == 2
    assert "did you mean 'payment_max'?" in typo.output


def test_one_certificate_lifetime_for_every_command(key: Path) -> None:
    for command in ("provision", ("issuer", "certify")):
        args = [command] if isinstance(command, str) else list(command)
        help_text = CliRunner().invoke(cli, [*args, "--help"]).output
        assert "--expires-days" in help_text and f"default: {CERT_DAYS}" in help_text
    res = CliRunner().invoke(cli, [
        "issuer", "certify", "pos", "--key", str(key), "--id", DEVICE_ID,  # --key: old alias
        "--public-key", PUBLIC_KEY, "--merchant", DEVICE_ID,
    ])
    assert res.exit_code == 0, res.output
    expires = _certificate_body(res.output)[CERT_EXPIRES]
    assert abs(expires - (time.time() + CERT_DAYS * DAY_S)) < 120


def test_flash_offset_reads_as_an_address() -> None:
    help_text = CliRunner().invoke(cli, ["flash", "--help"]).output
    assert "--offset ADDRESS" in help_text and "LAMBDA" not in help_text
    bad = CliRunner().invoke(cli, ["flash", "--firmware", "x.bin", "--offset", "zz"])
    assert bad.exit_code == 2 and "'zz' is not an address" in bad.output


def test_a_scenario_template_runs_and_a_misspelt_key_gets_a_suggestion(tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["sim", "template"])
    assert res.exit_code == 0 and res.output == builtin_source("demo")
    path = tmp_path / "mine.toml"
    path.write_text(res.output)
    assert load_scenario(path).wallets.count == 50
    path.write_text(res.output.replace("\ncount = 50", "\ncuont = 50", 1))
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    assert str(err.value) == f"{path}: wallets: unknown key 'cuont' (did you mean 'count'?)"

"""One vocabulary across commands: limits by name, --issuer-key, one certificate lifetime,
readable option types, a scenario template, and suggestions for a misspelt key."""

import time
from pathlib import Path

import cbor2
import click
import pytest
from click.testing import CliRunner, Result

from tapcash.firmware.core import proto
from tapcash.host.cli import cli
from tapcash.host.issuer import CERT_DAYS, DAY_S, Issuer
from tapcash.host.output import Amount
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


def _certify(kind: str, key: Path, *extra: str, key_option: str = "--issuer-key") -> Result:
    """`tapcash issuer certify KIND` of DEVICE_ID's PUBLIC_KEY, in process."""
    args = ["--id", DEVICE_ID, "--public-key", PUBLIC_KEY, *extra]
    return CliRunner().invoke(cli, ["issuer", "certify", kind, key_option, str(key), *args])


def test_issuer_certify_takes_limits_by_name_as_provision_does(key: Path) -> None:
    res = _certify("wallet", key, "--limit", "payment_max=20.00", "--limit", "offline_count=5")
    assert res.exit_code == 0, res.output
    typo = _certify("wallet", key, "--limit", "paymnt_max=2000")
    assert typo.exit_code == 2
    assert "did you mean 'payment_max'?" in typo.output


def test_one_certificate_lifetime_for_every_command(key: Path) -> None:
    for command in ("provision", ("issuer", "certify")):
        args = [command] if isinstance(command, str) else list(command)
        help_text = CliRunner().invoke(cli, [*args, "--help"]).output
        assert "--expires-days" in help_text and f"default: {CERT_DAYS}" in help_text
    res = _certify("pos", key, "--merchant", DEVICE_ID, key_option="--key")  # an old alias
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


# Every command that takes money takes major units ("12.50"), through host/output.py's AMOUNT.
MONEY_ARGUMENTS = [
    (("pcsc", "pay"), "amount"),
    (("pcsc", "serve-card"), "balance"),
    (("issuer", "voucher"), "amount"),
    (("ledger", "deposit"), "amount"),
    (("ledger", "load"), "amount"),
    (("ledger", "program", "create"), "cap"),
    (("ledger", "program", "create"), "unit"),
]


def _command(path: tuple[str, ...]):  # noqa: ANN202 (a click.Command)
    cmd = cli
    ctx = click.Context(cli)
    for name in path:
        cmd = cmd.get_command(ctx, name)
        assert cmd is not None, path
    return cmd


@pytest.mark.parametrize(("path", "param"), MONEY_ARGUMENTS)
def test_every_money_argument_is_major_units(path: tuple[str, ...], param: str) -> None:
    (p,) = [p for p in _command(path).params if p.name == param]
    assert isinstance(p.type, Amount), (path, param, p.type)
    assert p.type.convert("12.50", None, None) == 1250
    assert p.type.convert("12", None, None) == 1200


def test_no_other_option_takes_minor_units() -> None:
    """A help text that says 'minor units' is about output (JSON, CSV), never an argument."""
    seen: list[str] = []

    def walk(cmd: click.Command, path: tuple[str, ...]) -> None:
        ctx = click.Context(cmd)
        for p in cmd.params:
            text = getattr(p, "help", "") or ""
            if "minor units" in text and not isinstance(p.type, Amount):
                if not (isinstance(p, click.Option) and p.is_flag):
                    seen.append(f"{' '.join(path)} {p.name}")
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                walk(cmd.get_command(ctx, name), (*path, name))

    walk(cli, ("tapcash",))
    assert seen == []


def _voucher_args(key: Path, amount: str) -> list[str]:
    """`tapcash issuer voucher` number 1 for DEVICE_ID, of `amount`."""
    return ["issuer", "voucher", "--issuer-key", str(key), "--wallet", DEVICE_ID, "--number", "1",
            "--amount", amount]  # fmt: skip


def test_a_bad_amount_is_one_line_and_exit_2(key: Path) -> None:
    for args in (
        ["pcsc", "pay", "12.505"],
        ["pcsc", "pay", "--", "-1"],
        ["pcsc", "pay", "0"],
        _voucher_args(key, "1,000"),
    ):
        res = CliRunner().invoke(cli, args)
        assert res.exit_code == 2, (args, res.output)
        assert "Traceback" not in res.output
        assert "is not an amount" in res.output or "an amount is more than zero" in res.output


def test_voucher_amount_in_major_units(key: Path) -> None:
    res = CliRunner().invoke(cli, _voucher_args(key, "12.50"))
    assert res.exit_code == 0, res.output
    iss = Issuer.load(key)
    body = proto.verify_envelope(
        proto.TAG_VOUCHER, bytes.fromhex(res.output.strip()), iss.public_key
    )
    assert body[proto.VCH_AMOUNT] == 1250


def test_money_limits_are_major_units(key: Path) -> None:
    from tapcash.host.device.errors import InputError
    from tapcash.host.device.provision import LIMIT_NAMES, parse_settings

    items = ["payment_max=20.00", "no_cvm=5", "offline_count=7"]
    lim = parse_settings(items, LIMIT_NAMES, "--limit")
    assert lim == {proto.LIM_PAYMENT_MAX: 2000, proto.LIM_NO_CVM: 500, proto.LIM_OFFLINE_COUNT: 7}
    with pytest.raises(InputError, match="is not an amount"):
        parse_settings(["balance_max=1.005"], LIMIT_NAMES, "--limit")

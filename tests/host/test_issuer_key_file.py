"""The issuer key file: owner-only, and whole or absent to anyone reading it meanwhile (the
README's PC/SC journey starts `pcsc serve-card` and `pcsc pay` at once on a new folder)."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from tapcash.host.issuer import Issuer
from tapcash.host.pcsc.workdir import load_issuer


def _key_id(workdir: str) -> str:
    return load_issuer(Path(workdir)).key_id.hex()


def test_processes_making_the_key_at_once_all_read_the_same_whole_key(tmp_path: Path) -> None:
    for round_ in range(5):
        workdir = tmp_path / f"w{round_}"
        with multiprocessing.get_context("spawn").Pool(6) as pool:
            ids = pool.map(_key_id, [str(workdir)] * 12)
        assert len(set(ids)) == 1
        assert ids[0] == Issuer.load(workdir / "issuer.key").key_id.hex()
        assert [p.name for p in workdir.iterdir()] == ["issuer.key"]  # no temporary left


def test_save_keeps_an_existing_key_unless_told(tmp_path: Path) -> None:
    path = tmp_path / "issuer.key"
    first, second = Issuer.generate(), Issuer.generate()
    first.save(path)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    with pytest.raises(FileExistsError):
        second.save(path)
    assert Issuer.load(path).key_id == first.key_id
    second.save(path, exist_ok=True)
    assert Issuer.load(path).key_id == second.key_id
    assert sorted(p.name for p in tmp_path.iterdir()) == ["issuer.key"]


@pytest.mark.parametrize("command", [["serve-card"], ["pay", "1.00"]])
def test_a_bad_key_file_is_a_one_line_refusal(tmp_path: Path, command: list[str]) -> None:
    from click.testing import CliRunner

    from tapcash.host.cli import cli

    bad = tmp_path / "bad.key"
    bad.write_text("not a key\n")
    res = CliRunner().invoke(cli, ["pcsc", *command, "--issuer-key", str(bad),
                                   "--workdir", str(tmp_path / "w")])  # fmt: skip
    assert res.exit_code == 2, res.output
    assert res.stderr.strip().splitlines() == [
        f"error: {bad}: not a readable issuer key file "
        "(non-hexadecimal number found in fromhex() arg at position 0)"
    ]
    assert not (tmp_path / "w" / "pos").exists()

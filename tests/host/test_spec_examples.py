"""docs/PROTOCOL.md's examples are generated from the code (issue #14): a full payment and a
transfer in hex and every signed object, made by the firmware with fixed seeds. This test
generates them again and fails on any difference, on a block the doc lacks and on one the code
does not make; it never writes the doc (`tapcash spec examples --write` does, on purpose)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from tapcash.host import spec_examples as sx
from tapcash.host.spec_cli import spec

DOC = Path(__file__).resolve().parents[2] / "docs" / "PROTOCOL.md"


@pytest.fixture(scope="module")
def fresh() -> dict[str, str]:
    return sx.generate()


def test_the_spec_examples_are_what_the_code_produces(fresh: dict[str, str]) -> None:
    diffs = sx.differences(DOC.read_text(encoding="utf-8"), fresh)
    assert not diffs, "\n".join(diffs) + "\n(regenerate with `tapcash spec examples --write`)"


def test_generation_is_deterministic(fresh: dict[str, str]) -> None:
    assert sx.generate() == fresh


def test_a_changed_or_missing_block_fails_and_is_never_written(
    fresh: dict[str, str], tmp_path: Path
) -> None:
    text = DOC.read_text(encoding="utf-8")
    changed = text.replace("3 round trips, 556 bytes on air", "3 round trips, 555 bytes on air")
    assert changed != text
    assert sx.differences(changed, fresh) == [
        "example 'payment-transcript' differs from what the code produces"
    ]
    name = "receipt"
    start = text.index(f"<!-- example: {name} -->")
    end = text.index("```\n", text.index("```text\n", start) + 8) + 4
    missing = text[:start] + text[end:]
    assert sx.differences(missing, fresh) == [
        f"example {name!r} is missing from the doc (add its marker and block)"
    ]
    # the command: check fails (exit 1) on a drifted doc; --write repairs the block that
    # drifted but refuses to invent a place for a missing one
    doc = tmp_path / "PROTOCOL.md"
    doc.write_text(changed, encoding="utf-8")
    r = CliRunner().invoke(spec, ["examples", "--doc", str(doc)])
    assert r.exit_code == 1 and "payment-transcript" in r.output
    r = CliRunner().invoke(spec, ["examples", "--doc", str(doc), "--write"])
    assert r.exit_code == 0 and doc.read_text(encoding="utf-8") == text
    doc.write_text(missing, encoding="utf-8")
    r = CliRunner().invoke(spec, ["examples", "--doc", str(doc), "--write"])
    assert r.exit_code == 1 and "no place in the doc" in r.output
    assert doc.read_text(encoding="utf-8") == missing


def test_the_examples_carry_what_the_spec_says(fresh: dict[str, str]) -> None:
    # RECEIVE goes as an extended APDU (Lc 00 hi lo): its data is over 255 bytes
    lines = fresh["transfer-transcript"].splitlines()
    i = next(k for k, line in enumerate(lines) if "RECEIVE" in line)
    assert lines[i + 1].strip().startswith("8056000000")
    # the POS journal record names the wallet certificate the payment was accepted under
    assert sx.diag  # noqa: B018 - the notation helper is public for the doc's sake
    cert_hash = fresh["cert-wallet"].rsplit("hash = SHA-256(body): ", 1)[1].strip()
    assert cert_hash in fresh["journal-chain"]

"""Every journey in README.md runs as written (#14 "Done when").

The README's ```sh blocks are taken from the README itself and each is run in one bash (set -eu,
pipefail) in an empty folder, with the installed CLI first on PATH, and its key claims are
checked. What is not run, and why, is said in the README next to the block:

* install lines (`apt-get install`, `pip install`, `systemctl start`) and the full suite (`pytest`)
  are dropped, from a `&&` chain too (`pip install . && tapcash selftest` runs the self-test);
* `<!-- journey-skip: WHY -->` before a block skips it (a board on /dev/ttyUSB0, a person at the
  keyboard);
* `<!-- journey-fast: OLD => NEW (WHY) -->` runs a line starting with OLD as NEW in CI: the same
  command with the smaller option the README names;
* a command already run by an earlier block is not run again (`tapcash demo` is in two);
* the ledger's port 8700 becomes a free port (TAPCASH_LEDGER_URL says which), as in
  tests/ledger/test_ledger_doc.py.

The PC/SC block needs the suite's pcscd with vpcd (tests/support/pcsc_fixtures.py); it is skipped,
with the reason, where pyscard or vpcd is missing, as the other PC/SC tests are.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

README = Path(__file__).parents[2] / "README.md"
INSTALL = re.compile(r"^(sudo )?(apt-get|apt|pip|pip3|systemctl)( |$)|^pytest( |$)")
SKIP = re.compile(r"<!-- journey-skip: (.+?) -->")
FAST = re.compile(r"<!-- journey-fast: (.+?) => (.+?) \((.+?)\) -->")
TIMEOUT_S = 600


@dataclass
class Block:
    heading: str
    text: str
    skip: str | None = None
    fast: dict[str, str] = field(default_factory=dict)


def readme_blocks(text: str) -> list[Block]:
    """The ```sh blocks, each with its section heading and the journey comments above it."""
    blocks: list[Block] = []
    heading, pending = "", ""
    lines = iter(text.splitlines())
    for line in lines:
        if line.startswith("## "):
            heading, pending = line[3:], ""
        elif line.startswith("<!-- journey"):
            pending += line + "\n"
        elif line.startswith("```sh"):
            body = []
            for inner in lines:
                if inner.startswith("```"):
                    break
                body.append(inner)
            skip = SKIP.search(pending)
            fast = {old: new for old, new, _why in FAST.findall(pending)}
            blocks.append(Block(heading, "\n".join(body) + "\n", skip and skip.group(1), fast))
            pending = ""
        elif line.strip() and not line.startswith("<!--"):
            pending = ""  # a comment belongs to the block right below it
    return blocks


def _segments(line: str) -> list[str]:
    return [s.strip() for s in line.split(" && ")]


def script_of(block: Block, ran: set[str], port: int) -> str:
    """The block as bash runs it: install lines dropped, CI's smaller options, no repeats."""
    out = []
    for line in block.text.replace("\\\n", " ").splitlines():
        code = line.split("  #", 1)[0].strip() if not line.lstrip().startswith("#") else ""
        if not code:
            continue
        keep = []
        for seg in _segments(code):
            if INSTALL.match(seg) or seg in ran:
                continue
            for old, new in block.fast.items():
                if seg.startswith(old):
                    seg = new + seg[len(old) :]
            keep.append(seg)
            if not seg.endswith("&"):
                ran.add(seg)
        if keep:
            out.append(" && ".join(keep))
    return "\n".join(out).replace("8700", str(port))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


BLOCKS = readme_blocks(README.read_text())
RUNNABLE = [b for b in BLOCKS if b.skip is None]

# What each runnable block must say (its key claims), by its first command.
CLAIMS = {
    "pip install . && tapcash selftest && tapcash demo": [
        "self-test passed",
        "The books balance: every payment accounted for",
    ],
    "apt-get install -y pcscd": ["approved 12.50 from wallet", "card balance 487.50"],
    "tapcash --version": [
        "tapcash, version",
        "wrote docs/performance.json (crypto)",
        "wrote docs/PERFORMANCE.md from docs/performance.json",
    ],
    "tapcash demo": ["tapcash-sim/smoke-7/", "The books balance: every payment accounted for"],
    "tapcash boards": ["devkitc-pn532-pos"],
    "tapcash issuer init issuer.key": [
        "deposited 1,000.00 to acme",
        "1 wallets, total 25.00; acme balance 975.00",
        "revoked 0011223344556677",
        "the books balance: issued 1,000.00 = held 1,000.00",
    ],
}


def _claims(block: Block) -> list[str]:
    first = next(ln for ln in block.text.splitlines() if ln.strip())
    (claims,) = [c for start, c in CLAIMS.items() if first.startswith(start)]
    return claims


def test_every_block_is_run_or_says_why_not() -> None:
    assert len(BLOCKS) >= 8, "the README lost its commands"
    for b in BLOCKS:
        assert b.skip is None or len(b.skip) > 20, b.text
        for old in b.fast:
            assert old in b.text, f"journey-fast names a command not in its block: {old}"
    assert len(CLAIMS) == len(RUNNABLE), [b.text.splitlines()[0] for b in RUNNABLE]
    for b in RUNNABLE:
        _claims(b)


def _needs_pcscd(block: Block) -> bool:
    return "tapcash pcsc" in block.text


@pytest.mark.parametrize(
    "index",
    range(len(RUNNABLE)),
    ids=[f"{i}-{re.sub('[^a-z]+', '-', b.heading.lower())}" for i, b in enumerate(RUNNABLE)],
)
def test_the_readme_block_runs_as_written(
    index: int, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    block = RUNNABLE[index]
    ran: set[str] = set()  # what the blocks above this one run
    for earlier in RUNNABLE[:index]:
        script_of(earlier, ran, 0)
    if _needs_pcscd(block):
        request.getfixturevalue("pcscd")  # the suite's pcscd with vpcd, or a skip naming why
    port = _free_port()
    script = "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n" + script_of(block, ran, port)
    bin_dir = str(Path(sys.executable).parent)  # the installed `tapcash` of this environment
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAPCASH_LEDGER")}
    env.update(
        PATH=f"{bin_dir}:{env.get('PATH', '')}",
        COLUMNS="160",
        TAPCASH_LEDGER_URL=f"http://127.0.0.1:{port}",
    )
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    said = done.stdout + done.stderr
    assert done.returncode == 0, f"{script}\n---\n{said[-6000:]}"
    assert "Traceback" not in said, said[-6000:]
    for claim in _claims(block):
        assert claim in said, f"{claim!r} not said by\n{script}\n---\n{said[-6000:]}"


from pcsc_fixtures import pcscd_fixture  # noqa: E402,F401  (the PC/SC block's pcscd)

"""A real pcscd with vsmartcard's vpcd reader driver, for tests/host/test_pcsc.py.

Fixtures (import `pcscd_fixture`, `bench_fixture` into a test module to use them):

`pcscd` (session): reuses a pcscd that already answers and shows the vpcd readers (a system
one, e.g. socket-activated by systemd); otherwise starts `pcscd --foreground` as a child with
the system reader configuration (/etc/reader.conf.d/vpcd, driver
/usr/lib/pcsc/drivers/serial/libifdvpcd.so), waits until the vpcd readers appear and stops it
at the end. Missing pieces FAIL the tests (never skip) with the packages to install.

`bench` (function): an issuer, wallet 1 loaded with 80.00 on simulated flash, served as the
card in the first vpcd reader, and POS 1 whose hal.link is a PcscLink on that reader.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tapcash.firmware.core import proto
from tapcash.firmware.pos.app import PosApp
from tapcash.firmware.wallet.app import WalletApp
from tapcash.sim.device import provision as pv
from tapcash.sim.device.flash import SimFlash
from tapcash.sim.device.hal import SimClock

APT_PACKAGES = "pcscd vsmartcard-vpcd pcsc-tools libpcsclite-dev swig"
INSTALL_HINT = (
    f"install them: sudo apt-get install -y {APT_PACKAGES} && pip install pyscard "
    "(pyscard builds from source with swig and libpcsclite-dev)"
)
READER_CONF_DIR = Path("/etc/reader.conf.d")
DRIVER_DIR = Path("/usr/lib/pcsc/drivers/serial")
READERS_WAIT_S = 15.0
CARD_WAIT_S = 10.0
BALANCE = 8_000


@dataclass
class Pcscd:
    readers: list[str]  # the vpcd readers, first one on `ports[0]`
    ports: list[int]
    started: bool  # True: this session started pcscd (and stops it)
    log: Path | None


def vpcd_config() -> tuple[Path, str, int]:
    """(config file, reader name, first port) of the vpcd reader in /etc/reader.conf.d."""
    if not READER_CONF_DIR.is_dir():
        pytest.fail(f"no {READER_CONF_DIR}: pcscd is not installed; {INSTALL_HINT}")
    for conf in sorted(READER_CONF_DIR.iterdir()):
        if not conf.is_file():
            continue
        fields: dict[str, str] = {}
        for line in conf.read_text(errors="replace").splitlines():
            parts = line.strip().split(None, 1)
            if len(parts) == 2 and not parts[0].startswith("#"):
                fields[parts[0].upper()] = parts[1].strip().strip('"')
        if "libifdvpcd" in fields.get("LIBPATH", ""):
            driver = Path(fields["LIBPATH"])
            if not driver.exists():
                pytest.fail(f"{conf} names {driver}, which is missing; {INSTALL_HINT}")
            port = int(fields.get("CHANNELID", "0x8C7B"), 0)
            return conf, fields.get("FRIENDLYNAME", "Virtual PCD"), port
    pytest.fail(f"no vpcd reader configured in {READER_CONF_DIR} "
                f"(driver expected in {DRIVER_DIR}); {INSTALL_HINT}")


def _vpcd_readers(name: str) -> list[str] | None:
    """The vpcd readers a running pcscd shows; None when no pcscd answers."""
    from tapcash.host.pcsc.reader_link import ReaderError, list_readers

    try:
        return sorted(r for r in list_readers() if r.startswith(name))
    except ReaderError:
        return None


@pytest.fixture(scope="session", name="pcscd")
def pcscd_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pcscd]:
    if shutil.which("pcscd") is None and not Path("/usr/sbin/pcscd").exists():
        pytest.fail(f"pcscd is not installed; {INSTALL_HINT}")
    for tool in ("pcsc_scan", "scriptor"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} (pcsc-tools) is not installed; {INSTALL_HINT}")
    try:
        import smartcard.scard  # noqa: F401
    except ImportError:
        pytest.fail(f"pyscard is not installed; {INSTALL_HINT}")
    _conf, name, port = vpcd_config()

    readers = _vpcd_readers(name)
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    deadline = time.monotonic() + READERS_WAIT_S
    if readers is None:  # no pcscd: start one of our own, in the foreground, as a child
        log = tmp_path_factory.mktemp("pcscd") / "pcscd.log"
        exe = shutil.which("pcscd") or "/usr/sbin/pcscd"
        with open(log, "wb") as out:
            proc = subprocess.Popen([exe, "--foreground", "--info"], stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        while not readers:
            if proc.poll() is not None:
                hint = "" if os.geteuid() == 0 else (
                    " (not root: start the system pcscd instead, e.g. "
                    "`sudo systemctl start pcscd.socket`, or run the tests as root)")
                pytest.fail(f"pcscd exited with {proc.returncode}{hint}:\n"
                            f"{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                proc.terminate()
                proc.wait(10)
                pytest.fail(f"no vpcd reader after {READERS_WAIT_S} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
            readers = _vpcd_readers(name)
    else:  # a running pcscd (maybe socket-activated just now): give it time to list vpcd
        while not readers and time.monotonic() < deadline:
            time.sleep(0.2)
            readers = _vpcd_readers(name) or []
        if not readers:
            pytest.fail(f"the running pcscd shows no {name!r} reader: restart it so that it "
                        f"reads {READER_CONF_DIR} (e.g. sudo systemctl restart pcscd)")
    try:
        yield Pcscd(readers, [port + i for i in range(len(readers))], proc is not None, log)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# ---- a wallet in the vpcd reader and a POS on PC/SC ----------------------------------------------
@dataclass
class Bench:
    issuer: object
    clock: SimClock
    wallet: WalletApp
    wallet_id: bytes
    wallet_flash: SimFlash
    card: object  # VpcdCard
    link: object  # PcscLink
    pos: PosApp
    reader: str
    initial: int

    def tap(self) -> None:
        """The card is in the reader (again): wait until pcscd sees it."""
        self.card.insert()
        assert self.card.wait_connected(CARD_WAIT_S), "the card could not connect to vpcd"
        assert self.link.wait_for_card(CARD_WAIT_S), f"{self.reader}: no card"

    def take_away(self) -> None:
        """The card leaves the reader; wait until pcscd noticed."""
        self.link.disconnect(reset=False)
        self.card.remove()
        assert self.link.wait_for_removal(CARD_WAIT_S), f"{self.reader}: card still present"


def serve(app: object, pcscd: Pcscd, index: int = 0, **kw: object) -> tuple[object, object]:
    """(VpcdCard serving `app` in vpcd reader `index`, PcscLink on that reader), card seen."""
    from tapcash.host.pcsc.reader_link import PcscLink
    from tapcash.host.pcsc.vpcd_card import VpcdCard

    reader = pcscd.readers[index]
    link = PcscLink(reader)
    # a card of an earlier test may still be listed until pcscd polls the slot again
    assert link.wait_for_removal(CARD_WAIT_S), f"{reader}: an earlier card is still present"
    card = VpcdCard(app, port=pcscd.ports[index], **kw).start()
    assert card.wait_connected(CARD_WAIT_S), "the card could not connect to vpcd"
    assert link.wait_for_card(CARD_WAIT_S), f"{reader}: pcscd does not see the card"
    return card, link


def stop(card: object, link: object) -> None:
    with contextlib.suppress(Exception):
        link.disconnect(reset=False)
    card.stop()
    with contextlib.suppress(Exception):
        link.wait_for_removal(CARD_WAIT_S)
    link.close()


@pytest.fixture(name="bench")
def bench_fixture(pcscd: Pcscd) -> Iterator[Bench]:
    issuer = pv.issuer_from_seed(6)
    clock = SimClock(pv.T0)
    wallet, wflash = pv.make_wallet(issuer, 1, seed=6, balance=BALANCE, clock=clock)
    card, link = serve(wallet, pcscd)
    try:
        pos, _pflash = pv.make_pos(issuer, 1, clock, link, seed=6)
        yield Bench(issuer, clock, wallet, pv.device_id("wallet", 1), wflash, card, link, pos,
                    pcscd.readers[0], BALANCE)
    finally:
        stop(card, link)
        assert card.error is None, card.error


class ForeignCard:
    """Some other contactless card (a transit card, a bank card): it has no tapcash
    application, so SELECT of our AID is 6A82, anything else 6D00."""

    def __init__(self) -> None:
        self.commands: list[bytes] = []

    def power_on(self) -> None:
        pass

    def process(self, apdu: bytes) -> bytes:
        self.commands.append(bytes(apdu))
        if apdu[:2] == bytes((proto.CLA_ISO, proto.INS_SELECT)):
            return b"\x6a\x82"
        return b"\x6d\x00"


def pos_info(pos: PosApp) -> dict:
    from tapcash.firmware.core import cbor

    return cbor.decode(pv.call(pos, proto.INS_GET_INFO, what="POS GET INFO"))


def env_with_path() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    if "/usr/sbin" not in env["PATH"].split(":"):
        env["PATH"] += ":/usr/sbin"
    return env

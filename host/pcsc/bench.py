"""How fast is PC/SC through pcscd + vpcd? (`tapcash pcsc bench`)

A simulated wallet is served in a vpcd reader (VpcdCard) and driven through pcscd with pyscard
(PcscLink), once per socket setting of the card:

- APDU round trip: GET INFO (a selected wallet, ~180-byte answer), median of N;
- payment: `PosApp.take_payment` over PcscLink (SELECT, PAY, RECEIPT: the wallet signs, the POS
  verifies and signs the receipt), and the whole tap with connect (power-up) and disconnect
  (reset) around it; median of N.

The same APDU answered in process (`app.process`) gives the card's own share. Signatures use
the firmware's Ed25519 backend (PyNaCl on CPython; TAPCASH_CRYPTO=pure for the pure-Python one).
Needs a pcscd that shows the vpcd readers (it does not start one). At most 31 payments per
setting (the wallet journal holds 64 records, two per payment).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass

from tapcash.firmware.core import proto
from tapcash.sim.device import provision as pv
from tapcash.sim.device.hal import SimClock

from .reader_link import PcscLink, ReaderError, list_readers
from .vpcd_card import VPCD_PORT, VpcdCard

SETTINGS = [(True, True), (False, True), (True, False), (False, False)]
BIG = 10**9
MAX_PAYMENTS = 30  # + 1 warm-up: two wallet journal records each, 64 records at most


@dataclass
class Row:
    nodelay: bool
    quickack: bool
    apdu_ms: float  # median GET INFO round trip through pcscd + vpcd
    apdu_ms_max: float
    pay_ms: float  # median take_payment (3 APDUs + crypto + POS flash writes in RAM)
    tap_ms: float  # median connect + take_payment + disconnect(reset)
    apdus: int
    payments: int


def _ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 3)


def in_process_apdu_ms(n: int = 2000) -> float:
    """GET INFO answered by the wallet object directly: the card's share of a round trip."""
    issuer = pv.issuer_from_seed(99)
    wallet, _f = pv.make_wallet(issuer, 1, seed=99, balance=1000, clock=SimClock(pv.T0))
    pv.select(wallet)
    cmd = proto.build_command(proto.CLA_PROP, proto.INS_GET_INFO, 0, 0)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        wallet.process(cmd)
        times.append(time.perf_counter() - t)
    return _ms(times)


def measure(reader: str, port: int, nodelay: bool, quickack: bool, apdus: int,
            payments: int) -> Row:
    issuer = pv.issuer_from_seed(99)
    clock = SimClock(pv.T0)
    limits = {proto.LIM_OFFLINE_COUNT: BIG, proto.LIM_OFFLINE_AMOUNT: BIG}
    wallet, _f = pv.make_wallet(issuer, 1, seed=99, balance=(payments + 1) * 100, limits=limits,
                                clock=clock)
    link = PcscLink(reader)
    if not link.wait_for_removal(10):
        raise ReaderError(f"{reader}: another card is in the reader")
    card = VpcdCard(wallet, port=port, nodelay=nodelay, quickack=quickack).start()
    try:
        if not (card.wait_connected(10) and link.wait_for_card(10)):
            raise ReaderError(f"{reader}: the card did not show up (vpcd port {port}?)")
        select = proto.build_command(proto.CLA_ISO, proto.INS_SELECT, 4, 0, proto.AID)
        info = proto.build_command(proto.CLA_PROP, proto.INS_GET_INFO, 0, 0)
        link.transceive(select)
        rtt = []
        for _ in range(apdus):
            t = time.perf_counter()
            link.transceive(info)
            rtt.append(time.perf_counter() - t)
        link.disconnect()
        no_velocity = {proto.CFG_VELOCITY_COUNT: BIG, proto.CFG_VELOCITY_AMOUNT: BIG}
        pos, _pf = pv.make_pos(issuer, 1, clock, link, seed=99, config=no_velocity)
        pay, tap = [], []
        for i in range(payments + 1):  # the first one warms up (imports, certificate cache)
            t0 = time.perf_counter()
            link.connect()
            t1 = time.perf_counter()
            result = pos.take_payment(100)
            t2 = time.perf_counter()
            link.disconnect()
            t3 = time.perf_counter()
            if not result.approved:
                raise RuntimeError(f"payment {i + 1} not approved: {result}")
            if i:
                pay.append(t2 - t1)
                tap.append(t3 - t0)
        return Row(nodelay, quickack, _ms(rtt), round(max(rtt) * 1000, 3), _ms(pay), _ms(tap),
                   apdus, payments)
    finally:
        link.disconnect(reset=False)
        card.stop()
        link.wait_for_removal(10)
        link.close()


def run(reader: str | None = None, port: int = VPCD_PORT, apdus: int = 200, payments: int = 20,
        slow_apdus: int = 40, slow_payments: int = 5, reverse: bool = False) -> dict:
    """Every setting of SETTINGS (in reverse order with `reverse`: runs alternate it, so no
    setting is always measured first), rows in SETTINGS' order; the slow ones (no QUICKACK)
    with fewer samples."""
    if not 1 <= payments <= MAX_PAYMENTS:
        raise ValueError(f"payments: 1..{MAX_PAYMENTS}")
    if reader is None:
        names = [r for r in list_readers() if r.startswith("Virtual PCD")]
        if not names:
            raise ReaderError("no vpcd reader: is pcscd running with vsmartcard-vpcd?")
        reader = names[0]
    rows = {}
    for nodelay, quickack in SETTINGS[::-1] if reverse else SETTINGS:
        fast = quickack
        rows[nodelay, quickack] = measure(reader, port, nodelay, quickack,
                                          apdus if fast else slow_apdus,
                                          payments if fast else slow_payments)
    return {"reader": reader, "in_process_apdu_ms": in_process_apdu_ms(),
            "rows": [asdict(rows[s]) for s in SETTINGS]}

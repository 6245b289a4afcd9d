"""Sync benchmark: `python -m tapcash.host.sync.bench [--records 100 500] [--baud 115200]`.

Measures, on this machine, over a real pseudo-terminal with pyserial:
  - framed round trips per second (GET INFO, and 4 KB answers) with the device simulator;
  - a full `tapcash sync` of a POS holding N journal records (payments from N/10 wallets)
    against the real ledger (uvicorn on loopback, SQLite), split into export and upload;
  - with --baud, the device side paces its output like a UART at that rate.
The device runs in CPython here: on an ESP32 add the firmware's own time per EXPORT page
(a status signature, ~0.5 s) and per record read from flash.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any


def _ledger(root: Path, issuer: Any) -> tuple[Any, str, str]:
    import socket

    import uvicorn

    from tapcash.host.ledger.app import create_app
    from tapcash.host.ledger.db import Database
    from tapcash.host.ledger.migrations import migrate
    from tapcash.host.ledger.service import Ledger

    db = Database(str(root / "ledger.db"))
    migrate(db)
    token = secrets.token_urlsafe(16)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(Ledger(db, issuer), token), host="127.0.0.1", port=port, log_level="error"
        )
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    return server, f"http://127.0.0.1:{port}", token


def round_trips(baud: int | None) -> None:
    from tapcash.firmware.core import proto
    from tapcash.sim.device.serial_pty import SerialDevice

    from .transport import SerialTransport

    class Echo:
        def process(self, apdu: bytes) -> bytes:
            if apdu[1] == proto.INS_GET_INFO:
                return bytes(40) + b"\x90\x00"
            return bytes(4000) + b"\x90\x00"

    with SerialDevice(Echo(), line_baud=baud) as dev, SerialTransport(dev.path) as t:
        for label, apdu, n in (
            ("GET INFO (50 B answer)", proto.build_command(0x80, 0xCA, 0, 0), 2000),
            ("4 KB answer", proto.build_command(0x80, 0x60, 0, 0, b"\xa0"), 300),
        ):
            n = n if baud is None else max(5, n // 100)
            t0 = time.perf_counter()
            for _ in range(n):
                t.transceive(apdu)
            dt = time.perf_counter() - t0
            print(f"  {label}: {n / dt:,.0f} round trips/s ({dt / n * 1e3:.2f} ms each)")


def pos_sync(n_records: int, baud: int | None) -> None:
    from tapcash.firmware.core import cbor, proto
    from tapcash.host.ledger.client import LedgerClient
    from tapcash.sim.device import provision as pv
    from tapcash.sim.device.hal import DirectLink, SimClock
    from tapcash.sim.device.serial_pty import SerialDevice

    from .ledger_link import LedgerLink
    from .outbox import Outbox
    from .session import sync_device
    from .transport import SerialTransport

    root = Path(tempfile.mkdtemp(prefix="tapcash-bench-"))
    issuer = pv.issuer_from_seed(99)
    clock = SimClock(pv.T0)
    link = DirectLink(None)
    pos, _ = pv.make_pos(issuer, 1, clock, link, seed=99)
    server, url, token = _ledger(root, issuer)
    lc = LedgerClient(url, token=token)
    lc.deposit("bench", 10**9, "bench")
    info = cbor.decode(pos.process(proto.build_command(0x80, 0xCA, 0, 0))[:-2])
    lc.register(info[proto.INFO_CERT])
    per_wallet = 10  # the default offline-payments limit
    made = 0
    n = 0
    while made < n_records:
        n += 1
        wallet, _ = pv.make_wallet(issuer, n, seed=99, clock=clock)
        lc.register(cbor.decode(pv.call(wallet, proto.INS_SELECT, proto.AID, cla=0, p1=4))[
            proto.INFO_CERT
        ], owner="bench")  # fmt: skip
        pv.call(wallet, proto.INS_LOAD, lc.load(pv.device_id("wallet", n), 20_000, "b"))
        for _ in range(min(per_wallet, n_records - made)):
            link.tap(wallet)
            r = pos.take_payment(100)
            link.remove()
            assert r.approved, r
            made += 1
    with LedgerLink(url, token) as ll, SerialDevice(pos, line_baud=baud) as dev:
        with SerialTransport(dev.path, timeout_s=30) as t:
            t0 = time.perf_counter()
            res = sync_device(t, ledger=ll, outbox=Outbox(root / "outbox"))
            dt = time.perf_counter() - t0
    assert res.outcome == "synced" and res.exported == n_records, res
    frames = res.link["requests"]
    print(
        f"  POS with {n_records} records: sync {dt:.2f} s ({n_records / dt:,.0f} records/s), "
        f"{frames} frames, {res.link['bytes_in'] / 1024:.0f} KiB from the device"
    )
    lc.close()
    server.should_exit = True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tapcash.host.sync.bench")
    ap.add_argument("--records", type=int, nargs="*", default=[100, 500, 1000])
    ap.add_argument("--baud", type=int, default=None, help="pace the device's output (UART)")
    args = ap.parse_args(argv)
    line = f"at {args.baud} baud" if args.baud else "unpaced pty"
    print(f"framed round trips over a pseudo-terminal ({line}):")
    round_trips(args.baud)
    print(f"full sync against the loopback ledger ({line}):")
    for n in args.records:
        pos_sync(n, args.baud)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A simulated device on a pseudo-terminal: `tapcash sync --port /dev/pts/N` cannot tell it
from a board on a USB serial adapter.

The device side is the firmware's own `core.frame.FrameServer` around a WalletApp or PosApp
(anything with `process(apdu) -> response`); this module only moves bytes between the pty and
that server, on a thread, and injects faults for tests:

    with SerialDevice(app, Faults(close_after_request=3)) as dev:
        run("tapcash sync --port", dev.path)

Request frames are numbered from 1 in the order the device receives them (good frames only).
Faults, each keyed by that number:

  drop                 the frame is lost on the line: never processed, never answered
  corrupt              processed, but one byte of the answer is flipped (the host drops it)
  close_after_request  processed, then the line closes before the answer leaves
  close_after_answer   processed and answered, then the line closes
  before_request / after_answer   callbacks (frame number) -> None, e.g. to kill the host
  noise                bytes written before every answer (REPL/log chatter on the same UART)

`line_baud` paces what the device writes like a UART at that rate (benchmarks).

A closed line stays closed (reads on the host side fail); start a new SerialDevice around the
same flash to "plug the board back in".
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import threading
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from tapcash.firmware.core import frame
from tapcash.firmware.core.hal import PowerCut

IDLE_S = 0.2  # a partial frame older than this is given up (the firmware loop's idle_ms)
READ_CHUNK = 4096
WRITE_STALL_S = 1.0  # the pty buffer stayed full this long: nobody listens, the rest is lost


class App(Protocol):
    def process(self, apdu: bytes) -> bytes: ...


@dataclass
class Faults:
    drop: set[int] = field(default_factory=set)
    corrupt: set[int] = field(default_factory=set)
    close_after_request: int | None = None
    close_after_answer: int | None = None
    before_request: Callable[[int], None] | None = None
    after_answer: Callable[[int], None] | None = None
    noise: bytes = b""


class SerialDevice:
    """Serve `app` on a fresh pseudo-terminal until `stop()` or a fault closes the line."""

    def __init__(
        self, app: App, faults: Faults | None = None, line_baud: int | None = None
    ) -> None:
        self.app = app
        self.line_baud = line_baud
        self.faults = faults or Faults()
        self.server = frame.FrameServer(app, passthrough=(PowerCut,))
        self.frames_in = 0  # good request frames received (including dropped ones)
        self.frames_out = 0  # answer frames written
        self.closed = threading.Event()
        self.error: BaseException | None = None
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no line discipline: a byte pipe like a UART
        self.path = os.ttyname(self._slave)
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name=f"serial-device {self.path}")
        self._thread.daemon = True

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> str:
        self._thread.start()
        return self.path

    def stop(self) -> None:
        if self._thread.is_alive():
            os.write(self._wake_w, b"x")
            self._thread.join(5)
        self._close_line()
        for fd in (self._slave, self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._slave = self._wake_r = self._wake_w = -1

    def __enter__(self) -> SerialDevice:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_closed(self, timeout_s: float) -> bool:
        return self.closed.wait(timeout_s)

    # -- the device loop ---------------------------------------------------------------------
    def _close_line(self) -> None:
        if self._master >= 0:
            with contextlib.suppress(OSError):
                os.close(self._master)
            self._master = -1
        self.closed.set()

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as e:  # surfaced to the test through .error
            self.error = e
        finally:
            self._close_line()

    def _loop(self) -> None:
        dec = self.server.decoder
        while self._master >= 0:
            ready, _, _ = select.select([self._master, self._wake_r], [], [], IDLE_S)
            if self._wake_r in ready:
                return
            if not ready:
                for payload in dec.idle():
                    if not self._one(payload):
                        return
                continue
            try:
                data = os.read(self._master, READ_CHUNK)
            except OSError:  # EIO: nobody has the slave open (we do, so: closing down)
                return
            for payload in dec.feed(data):
                if not self._one(payload):
                    return

    def _one(self, payload: bytes) -> bool:
        """Handle one good request frame. False: the line is closed."""
        f = self.faults
        self.frames_in += 1
        n = self.frames_in
        if f.before_request:
            f.before_request(n)
        if n in f.drop:
            return True
        answer = self.server.handle(payload)
        if answer is None:  # not a request (an echo of an answer): nothing to say
            return True
        if f.close_after_request == n:
            self._close_line()
            return False
        if n in f.corrupt:
            bad = bytearray(answer)
            bad[len(bad) // 2] ^= 0x55
            answer = bytes(bad)
        self._write(f.noise + answer)
        self.frames_out += 1
        if f.after_answer:
            f.after_answer(n)
        if f.close_after_answer == n:
            self._close_line()
            return False
        return True

    def _write(self, data: bytes) -> None:
        """Write like a UART: what nobody reads within WRITE_STALL_S is lost."""
        if self.line_baud:
            step = max(1, self.line_baud // 1000)  # ~10 ms of line time per write
            for i in range(0, len(data), step):
                self._write_now(data[i : i + step])
                time.sleep(len(data[i : i + step]) * 10 / self.line_baud)
        else:
            self._write_now(data)

    def _write_now(self, data: bytes) -> None:
        write_like_uart(self._master, data)


def write_like_uart(fd: int, data: bytes) -> None:
    """Write to a pty's master side as a UART would: once nobody has read the buffer for
    WRITE_STALL_S, the rest of the output is lost, never queued forever."""
    view = memoryview(data)
    while view:
        _, w, _ = select.select([], [fd], [], WRITE_STALL_S)
        if not w:
            return
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            continue
        view = view[n:]


def serve_app(app: App, faults: Faults | None = None) -> SerialDevice:
    """Start a simulated device and return it; its `.path` is the port to hand to the host."""
    dev = SerialDevice(app, faults)
    dev.start()
    return dev


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - manual use
    """`python -m tapcash.sim.device.serial_pty --issuer-key issuer.key [--ledger URL --token T]`:
    a provisioned wallet and POS that paid each other, each on its own pseudo-terminal, until
    Ctrl-C. With --ledger they are registered there, and the wallet's money is a ledger top-up;
    then `tapcash sync --port <path> --ledger URL` syncs them."""
    import argparse

    from tapcash.firmware.core import proto
    from tapcash.host.issuer import Issuer
    from tapcash.sim.device import provision as pv
    from tapcash.sim.device.hal import SimClock
    from tapcash.sim.nfc.field import DirectLink

    ap = argparse.ArgumentParser(prog="python -m tapcash.sim.device.serial_pty")
    ap.add_argument("--issuer-key", required=True, help="issuer key file (tapcash issuer init)")
    ap.add_argument("--ledger", help="ledger URL: register the devices and top up there")
    ap.add_argument("--token", help="ledger operator token")
    ap.add_argument("--payments", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    issuer = Issuer.load(args.issuer_key)
    clock = SimClock(pv.T0)
    wallet, _wf = pv.make_wallet(issuer, 1, seed=args.seed, clock=clock)
    link = DirectLink(None)
    pos, _pf = pv.make_pos(issuer, 1, clock, link, seed=args.seed)
    wid = pv.device_id("wallet", 1)
    amount = 20_000
    if args.ledger:
        from tapcash.host.ledger.client import LedgerClient

        with LedgerClient(args.ledger, token=args.token) as lc:
            lc.deposit("demo", amount, "serial_device demo")
            lc.register(_cert(wallet), owner="demo")
            lc.register(_cert(pos))
            voucher = lc.load(wid, amount, "serial_device demo")
        pv.select(wallet)
        pv.call(wallet, proto.INS_LOAD, voucher, what="LOAD")
    else:
        pv.load(wallet, issuer, wid, 1, amount)
    for i in range(args.payments):
        link.tap(wallet)
        print("payment:", pos.take_payment(100 + i), flush=True)
        link.remove()
    devices = [serve_app(wallet), serve_app(pos)]
    print("wallet", devices[0].path, flush=True)
    print("pos", devices[1].path, flush=True)
    try:
        while all(not d.closed.is_set() for d in devices):
            devices[0].closed.wait(0.5)
    except KeyboardInterrupt:
        pass
    for d in devices:
        d.stop()
    return 0


def _cert(app: App) -> bytes:  # pragma: no cover - manual use
    from tapcash.firmware.core import cbor, proto

    resp = app.process(proto.build_command(0x00, proto.INS_SELECT, 4, 0, proto.AID))
    cert = cbor.decode(resp[:-2])[proto.INFO_CERT]
    return cert if isinstance(cert, bytes) else cbor.encode(cert)


if __name__ == "__main__":
    sys.exit(main())

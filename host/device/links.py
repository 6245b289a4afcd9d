"""APDU links to a board for provisioning: `transceive(apdu) -> response`.

- `FrameLink`: the sync frame protocol (firmware/core/frame.py) through host/sync/transport.py;
  the tapcash firmware's own sync pump answers (a deployed board after reset, or
  sim/device/serial_pty.py).
- `ReplLink`: the board's MicroPython raw REPL (mpremote's serial transport); each APDU is one
  exec of the firmware's `process()` on the board, the app built on the same HAL pieces
  `firmware/main.py` uses (flash under /data, the board's RNG and clock), so what provisioning
  writes is what the firmware reads when it starts. For a board with the firmware deployed
  whose main loop is not running.
"""

from __future__ import annotations

import binascii
from types import TracebackType

from tapcash.host.sync.transport import SerialTransport

from .errors import DeviceError, NoAnswer, NotADevice
from .repl import raw_repl, repl_exec

FRAME_TIMEOUT_S = 5.0  # PERSO FINISH verifies a signature: ~1 s on an ESP32
FIRST_TIMEOUT_S = 1.5  # the first request (SELECT): is anything there at all
REPL_TIMEOUT_S = 30.0  # the first exec imports the app and Ed25519 (seconds on an ESP32)


class FrameLink:
    def __init__(self, port: str, baud: int = 115200, timeout_s: float = FRAME_TIMEOUT_S) -> None:
        self.port = port
        self._t = SerialTransport(port, baud, timeout_s=timeout_s, retries=2)

    def transceive(self, apdu: bytes) -> bytes:
        first = self._t.stats.requests == 0
        saved = self._t.timeout_s
        if first:  # SELECT is quick on any board: do not wait long for a line that is silent
            self._t.timeout_s = min(saved, FIRST_TIMEOUT_S)
        try:
            return self._t.transceive(apdu, retries=1 if first else None)
        except NoAnswer:
            heard = self._t.stats.bytes_in
            what = (
                f"the line carries {heard} bytes of something else (a MicroPython REPL? then "
                "provision with --via repl)"
                if heard
                else "nothing answered"
            )
            raise NotADevice(
                f"no tapcash firmware answers on {self.port} (sync frames; {what}): deploy it "
                "(tapcash deploy) and reset the board so its main loop runs"
            ) from None
        finally:
            self._t.timeout_s = saved

    def close(self) -> None:
        self._t.close()

    def __enter__(self) -> FrameLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# Run once per session on the board: the app on the firmware's HAL pieces.
_REPL_SETUP = """\
import json, binascii
from firmware.core.hal import Hal
from firmware.core.fileflash import FileFlash
from firmware.core import runtime
from firmware.hal.esp32 import FLASH_ROOT, RtcClock
class _TcRng:
    def random(self, n):
        return runtime.urandom(n)
with open('/board.json') as _tc_f:
    _tc_cfg = json.load(_tc_f)
_tc_hal = Hal(flash=FileFlash(FLASH_ROOT, sync=False), clock=RtcClock(), rng=_TcRng())
if _tc_cfg['role'] == 'pos':
    from firmware.pos.app import PosApp
    _tc_app = PosApp(_tc_hal, _tc_cfg.get('config'))
    _tc_app.power_on()
else:
    from firmware.wallet.app import WalletApp
    _tc_app = WalletApp(_tc_hal, _tc_cfg.get('config'))
print('TCREADY', _tc_cfg['role'])
"""


class ReplLink:
    """APDUs through the raw REPL of a board with the tapcash firmware deployed (mpremote's
    serial transport, repl.raw_repl)."""

    def __init__(self, port: str, baud: int = 115200, timeout_s: float = REPL_TIMEOUT_S) -> None:
        self.port = port
        self.timeout_s = timeout_s
        self._cm = raw_repl(port, baud)
        self._t = self._cm.__enter__()
        try:
            out, err = repl_exec(self._t, port, _REPL_SETUP, timeout_s)
            if err or "TCREADY" not in out:
                raise NotADevice(
                    f"the tapcash firmware does not start at the REPL on {port} (deployed? "
                    f"tapcash deploy): {(err or out).strip().splitlines()[-1:]}"
                )
        except BaseException:
            self.close()
            raise

    def transceive(self, apdu: bytes) -> bytes:
        code = (
            f"print('TCR', binascii.hexlify("
            f"_tc_app.process(binascii.unhexlify({apdu.hex()!r}))).decode())"
        )
        out, err = repl_exec(self._t, self.port, code, self.timeout_s)
        for line in out.splitlines():
            if line.startswith("TCR "):
                return binascii.unhexlify(line[4:].strip())
        raise DeviceError(f"the firmware on {self.port} failed on an APDU: {err.strip()[-500:]}")

    def close(self) -> None:
        cm, self._cm = getattr(self, "_cm", None), None
        if cm is not None:
            cm.__exit__(None, None, None)

    def __enter__(self) -> ReplLink:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

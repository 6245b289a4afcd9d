# Board entry point: read /board.json, build the ESP32 HAL from its profile, run the role's loop.
#
# The board's own /main.py (written by deploy, or frozen) is just:
#
#     import firmware.main
#     firmware.main.run()
#
# /board.json: {"role": "wallet" | "pos", "profile": {<a boards/profiles/*.json, options applied>},
#               "config": {<app config, optional>}}
#
# Both loops also serve the sync tool on the USB serial (core/frame.py framing) whenever they are
# idle: the wallet between taps, the POS while it waits for the first key of a sale. A chunk of
# serial input outside a frame that holds Ctrl-C (0x03) and only REPL control bytes (CR, Ctrl-A/B/C)
# stops the loop and returns to the REPL, so mpremote can still interrupt a deployed board
# although keyboard interrupts are off while serving (frame bytes may be 0x03).
from .core.frame import FrameServer
from .core.runtime import ticks_diff, ticks_ms

BOARD_JSON = "/board.json"
_REPL_BYTES = b"\r\x01\x02\x03"


def load_board(path=BOARD_JSON):
    import json

    with open(path) as f:
        cfg = json.load(f)
    if "profile" not in cfg or cfg.get("role") not in ("wallet", "pos"):
        raise ValueError("board.json needs a profile and a role (wallet or pos)")
    return cfg


class SyncPump:
    """Non-blocking sync server on a serial port (any / read / write): call poll() when idle."""

    def __init__(self, port, app, idle_ms=200, chunk=256):
        self.port = port
        self.server = FrameServer(app)
        self.idle_ms = idle_ms
        self.chunk = chunk
        self._last = ticks_ms()

    def poll(self):
        """Serve the frames that arrived. Returns True when bytes were read. Raises
        KeyboardInterrupt on a break request (see the header)."""
        port = self.port
        server = self.server
        if not port.any():
            if server.decoder.pending() and ticks_diff(ticks_ms(), self._last) >= self.idle_ms:
                self._last = ticks_ms()
                for f in server.idle():
                    port.write(f)
            return False
        data = port.read(self.chunk)
        if not data:
            return False
        self._last = ticks_ms()
        if not server.decoder.pending() and 3 in data and all(b in _REPL_BYTES for b in data):
            raise KeyboardInterrupt
        for f in server.feed(data):
            port.write(f)
        return True


class PushbackKeys:
    """hal.Keys wrapper that can hand a key it already read back to the next get_key()."""

    def __init__(self, keys):
        self.keys = keys
        self._back = None

    def push(self, key):
        self._back = key

    def get_key(self, timeout_ms):
        k = self._back
        if k is not None:
            self._back = None
            return k
        return self.keys.get_key(timeout_ms)


def run_wallet(pn532, app, sync=None, stop=None, rng=None, session_timeout_ms=30000, poll_ms=5):
    """The card: emulate an ISO-DEP card for every tap, serve the sync tool in between.
    Returns the number of taps served (when `stop()` ends the loop)."""
    from .hal.pn532_card import serve_card

    pn532.begin()
    return serve_card(pn532, app, stop=stop, idle=sync.poll if sync is not None else None,
                      rng=rng, session_timeout_ms=session_timeout_ms, poll_ms=poll_ms)  # fmt: skip


def run_pos(app, link, keys, sync=None, stop=None, card_timeout_ms=20000, poll_ms=50):
    """The terminal: amount on the keypad, wait for a card, take the payment, release the card.
    `keys` is the PushbackKeys that is also app.hal.keys. Returns the list of results."""
    from .hal import ticks_add
    from .pos.pay import format_amount

    hal = app.hal
    link.pn532.begin()
    link.setup()
    app.power_on()
    results = []
    while stop is None or not stop():
        hal.display.show(["Ready", "Enter amount"])
        key = None
        while key is None:  # idle: serve sync frames until the first key
            if stop is not None and stop():
                return results
            if sync is not None:
                sync.poll()
            key = keys.get_key(poll_ms)
        keys.push(key)
        amount = app.read_amount()
        if amount is None:
            continue
        reason = app.precheck(amount)
        if reason is not None:
            hal.display.show(["Declined", str(reason)])
            hal.signal.fail()
            continue
        hal.display.show(["Pay " + format_amount(amount), "Tap card", "* cancel"])
        deadline = ticks_add(ticks_ms(), card_timeout_ms)
        card = None
        while card is None and ticks_diff(deadline, ticks_ms()) > 0:
            card = link.wait_card(poll_ms * 4)
            if card is None and keys.get_key(1) == "*":
                break
        if card is None:
            hal.display.show(["Cancelled"])
            continue
        try:
            results.append(app.take_payment(amount))
        finally:
            link.release()
    return results


def run(path=BOARD_JSON):
    """Boot: build everything from /board.json and run the role's loop forever."""
    import micropython

    from .hal.esp32 import Board, StdioSerial

    cfg = load_board(path)
    board = Board(cfg["profile"])
    role = cfg["role"]
    hal = board.hal(role)
    port = StdioSerial()
    micropython.kbd_intr(-1)  # frame bytes may be 0x03; SyncPump turns a REPL break into an exit
    try:
        if role == "wallet":
            from .wallet.app import WalletApp

            app = WalletApp(hal, cfg.get("config"))
            run_wallet(board.pn532(), app, SyncPump(port, app), rng=hal.rng.random)
        else:
            from .pos.app import PosApp

            keys = PushbackKeys(hal.keys)
            hal.keys = keys
            app = PosApp(hal, cfg.get("config"))
            run_pos(app, hal.link, keys, SyncPump(port, app))
    finally:
        micropython.kbd_intr(3)

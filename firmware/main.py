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


def run_wallet(pn532, app, sync=None, stop=None, rng=None, session_timeout_ms=30000, poll_ms=5):
    """The card (wallet/loop.py): every tap served, the sync tool in between, and on a visual
    card its button (hal.keys) paging through its purses on its screen (wallet_idle)."""
    from .wallet import loop

    return loop.run(pn532, app, idle=wallet_idle(app, sync), stop=stop, rng=rng,
                    session_timeout_ms=session_timeout_ms, poll_ms=poll_ms)  # fmt: skip


def wallet_idle(app, sync=None):
    """What the card does between taps: serve the sync tool; a visual card also polls its
    button, each press showing the next purse screen (wallet/screen.py, imported per press
    and released after it). None when there is nothing to do."""
    keys = app.hal.keys if app.visual else None
    if keys is None:
        return sync.poll if sync is not None else None

    def idle():
        if sync is not None:
            sync.poll()
        if keys.get_key(0) is not None:
            mark = app.modules()
            from .wallet import screen

            screen.press(app)
            app.release_since(mark)

    return idle


def run_pos(app, link, keys, sync=None, stop=None, card_timeout_ms=20000, poll_ms=50):
    """The terminal (pos/loop.py): amount on the keypad, wait for a card, take the payment,
    release the card; the sync tool while idle. `keys` is the pos.loop.PushbackKeys that is
    also app.hal.keys, `link` app.hal.link. Returns the list of results."""
    from .pos.loop import Terminal

    link.pn532.begin()
    link.setup()
    app.power_on()
    idle = sync.poll if sync is not None else None
    return Terminal(app, keys, idle, poll_ms, card_timeout_ms).run(stop)


def wallet_config(cfg):
    """The wallet's config from board.json: its "config", and visual when the profile lists
    the "visual" capability (a display alone does not make a visual card)."""
    out = dict(cfg.get("config") or {})
    if "visual" in cfg["profile"].get("capabilities", ()):
        out.setdefault("visual", True)
    return out


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

            app = WalletApp(hal, wallet_config(cfg))
            run_wallet(board.pn532(), app, SyncPump(port, app), rng=hal.rng.random)
        else:
            from .pos.app import PosApp
            from .pos.loop import PushbackKeys

            keys = PushbackKeys(hal.keys)
            hal.keys = keys
            app = PosApp(hal, cfg.get("config"))
            run_pos(app, hal.link, keys, SyncPump(port, app))
    finally:
        micropython.kbd_intr(3)

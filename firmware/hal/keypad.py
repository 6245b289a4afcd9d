# Keys for hal.Keys: a scanned matrix keypad (the POS) and a single push button (a visual card).
#
# Matrix: row Pins are outputs idling high; column Pins are inputs with pull-ups. A scan drives one
# row low at a time and reads the columns: a pressed key connects its row to its column, so that
# column reads low. A key counts once it reads pressed for `debounce_ms`, and is reported once
# per press: it must be released before it is reported again (other keys are not held back).
#
#   keys = Keypad(rows=[Pin(32, Pin.OUT, value=1), ...], cols=[Pin(27, Pin.IN, Pin.PULL_UP), ...],
#                 keymap=["123A", "456B", "789C", "*0#D"])
#   keys.get_key(30000)  -> "5", "#", ... or None on timeout
from ..core.hal import Keys
from ..core.runtime import ticks_diff, ticks_ms
from . import expired, sleep_ms, ticks_add


class Keypad(Keys):
    def __init__(self, rows, cols, keymap, debounce_ms=20, scan_ms=5):
        if len(keymap) != len(rows) or any(len(r) != len(cols) for r in keymap):
            raise ValueError("keymap does not match rows x cols")
        self.rows = rows
        self.cols = cols
        self.keymap = keymap
        self.debounce_ms = debounce_ms
        self.scan_ms = scan_ms
        self._held = 0  # bit per key: reported and not released since
        for r in rows:
            r.value(1)

    def scan(self):
        """Bit mask of the keys that read pressed (bit row * ncols + col)."""
        ncols = len(self.cols)
        down = 0
        for i, row in enumerate(self.rows):
            row.value(0)
            for j, col in enumerate(self.cols):
                if col.value() == 0:
                    down |= 1 << (i * ncols + j)
            row.value(1)
        return down

    def key_name(self, index):
        ncols = len(self.cols)
        return self.keymap[index // ncols][index % ncols]

    def get_key(self, timeout_ms):
        """The next key pressed (a key held down since it was reported does not count again;
        a second key pressed while one is held does: 2-key rollover)."""
        deadline = ticks_add(ticks_ms(), timeout_ms)
        candidate = -1
        since = 0
        while True:
            down = self.scan()
            now = ticks_ms()
            self._held &= down  # released keys may be reported again
            new = down & ~self._held
            if not new:
                candidate = -1
            else:
                k = 0
                while not new >> k & 1:
                    k += 1
                if k != candidate:
                    candidate = k
                    since = now
                elif ticks_diff(now, since) >= self.debounce_ms:
                    self._held |= 1 << k
                    return self.key_name(k)
            if expired(deadline):
                return None
            sleep_ms(self.scan_ms)


class Button(Keys):
    """One push button as a keypad with a single key (`key`, default "#", the enter key).
    `active` is the level the pin reads when pressed (0 for a button to ground with a pull-up)."""

    def __init__(self, pin, key="#", active=0, debounce_ms=20, scan_ms=5):
        self.pin = pin
        self.key = key
        self.active = active
        self.debounce_ms = debounce_ms
        self.scan_ms = scan_ms
        self._held = False
        self._since = None  # when the press being debounced began (kept across calls)

    def pressed(self):
        return self.pin.value() == self.active

    def get_key(self, timeout_ms):
        """The key once the button has read pressed for debounce_ms, once per press. The
        debounce carries over calls, so get_key(0) polls (a wallet's idle loop, main.py)."""
        deadline = ticks_add(ticks_ms(), timeout_ms)
        while True:
            now = ticks_ms()
            if not self.pressed():
                self._held = False
                self._since = None
            elif not self._held:
                if self._since is None:
                    self._since = now
                elif ticks_diff(now, self._since) >= self.debounce_ms:
                    self._held = True
                    self._since = None
                    return self.key
            if expired(deadline):
                return None
            sleep_ms(self.scan_ms)

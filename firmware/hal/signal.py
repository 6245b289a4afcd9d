# LED and buzzer as hal.Signal: one short beep + LED for success, three short beeps for failure.
#
# `led` and `buzzer` are Pins (value(1) = on when active_high) or, for a passive buzzer, a
# machine.PWM (anything with duty_u16): the tone then comes from the PWM frequency set by the
# caller. Both are optional. The cues block for their length (at most ~0.4 s).
from ..core.hal import Signal
from . import sleep_ms

OK_MS = 120
FAIL_MS = 80
FAIL_GAP_MS = 60


class PinSignal(Signal):
    def __init__(self, led=None, buzzer=None, active_high=True, sleep=sleep_ms):
        self.led = led
        self.buzzer = buzzer
        self.on_level = 1 if active_high else 0
        self.sleep = sleep
        self._set(False)

    def _set(self, on):
        level = self.on_level if on else 1 - self.on_level
        if self.led is not None:
            self.led.value(level)
        b = self.buzzer
        if b is not None:
            if hasattr(b, "duty_u16"):
                b.duty_u16(32768 if on else 0)
            else:
                b.value(level)

    def _pulse(self, ms):
        self._set(True)
        self.sleep(ms)
        self._set(False)

    def ok(self):
        self._pulse(OK_MS)

    def fail(self):
        for i in range(3):
            if i:
                self.sleep(FAIL_GAP_MS)
            self._pulse(FAIL_MS)

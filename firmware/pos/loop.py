# The terminal's loop, owned by the POS app: wait for the first key (serving the sync tool
# meanwhile), read the amount on the keypad, check it, show "Tap card", wait for a card, take
# the payment. firmware/main.py drives it on a board (a PN532 reader); the simulator's checkout
# (sim/ui/checkout.py) drives the same loop with its virtual field, as a subclass that answers
# the hooks below.
#
#   t = Terminal(app, keys, idle=pump.poll)   # keys: PushbackKeys, also app.hal.keys
#   t.run(stop)                                # -> the list of payment results
#
# Hooks (override in a subclass): first_key(stop), wait_card(amount) -> a card or None
# (cancelled / timed out), pay(card, amount) -> PaymentResult, again(card, result) -> bool,
# phase(name), sale_amount(amount), declined(amount, reason), cancelled(amount, where).
from ..core.runtime import ticks_diff, ticks_ms
from ..core.units import money

IDLE = "idle"  # "Ready" (or the last result) on screen, waiting for the first key
AMOUNT = "amount"  # the amount is typed
CARD = "card"  # waiting for a card ('*' cancels)
PAYING = "paying"  # take_payment runs


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


class Terminal:
    """The sale loop over a PosApp. `keys` has push() (PushbackKeys) and is app.hal.keys;
    `idle()` is called between key polls while no sale runs (the sync pump)."""

    ready_each_sale = True  # "Ready" before each sale (else only at start and after a cancel)

    def __init__(self, app, keys, idle=None, poll_ms=50, card_timeout_ms=20000):
        self.app = app
        self.keys = keys
        self.idle = idle
        self.poll_ms = poll_ms
        self.card_timeout_ms = card_timeout_ms
        self.show_ready = True

    # ---- hooks ---------------------------------------------------------------------------
    def first_key(self, stop):
        """The key that starts a sale, or None when `stop()` says so."""
        while True:
            if stop is not None and stop():
                return None
            if self.idle is not None:
                self.idle()
            key = self.keys.get_key(self.poll_ms)
            if key is not None:
                return key

    def wait_card(self, amount):
        """Poll the reader (hal.link: wait_card / release, as PN532ReaderLink) until a card is
        in its field; None on '*' or after card_timeout_ms."""
        from ..hal import ticks_add

        link = self.app.hal.link
        deadline = ticks_add(ticks_ms(), self.card_timeout_ms)
        card = None
        while card is None and ticks_diff(deadline, ticks_ms()) > 0:
            card = link.wait_card(self.poll_ms * 4)
            if card is None and self.keys.get_key(1) == "*":
                break
        return card

    def pay(self, card, amount):
        try:
            return self.app.take_payment(amount)
        finally:
            self.app.hal.link.release()

    def again(self, card, result):
        """True: the sale goes on with another tap (say, after a torn one). The board's loop
        ends the sale (the POS's torn log completes it when the card comes back)."""
        return False

    def phase(self, name):
        pass

    def sale_amount(self, amount):
        """The amount of the sale, typed and about to be checked."""

    def declined(self, amount, reason):
        pass

    def cancelled(self, amount, where):
        """A sale cancelled: where is AMOUNT (nothing typed) or CARD (no card came)."""

    # ---- the loop ------------------------------------------------------------------------
    def run(self, stop=None):
        """Sales until `stop()` (checked while waiting for the first key); the results."""
        results = []
        while True:
            r = self.sale(stop)
            if r is False:
                return results
            if r is not None:
                results.append(r)

    def sale(self, stop=None):
        """One sale: the PaymentResult, None (cancelled or declined) or False (stopped)."""
        app = self.app
        hal = app.hal
        self.phase(IDLE)
        if self.show_ready or self.ready_each_sale:
            hal.display.show(["Ready", "Enter amount"])
        key = self.first_key(stop)
        if key is None:
            return False
        self.keys.push(key)
        self.phase(AMOUNT)
        amount = app.read_amount()
        if amount is None:
            self.show_ready = True
            self.cancelled(0, AMOUNT)
            return None
        self.show_ready = False
        self.sale_amount(amount)
        reason = app.precheck(amount)
        if reason is not None:
            hal.display.show(["Declined", str(reason)])
            hal.signal.fail()
            self.declined(amount, reason)
            return None
        hal.display.show(["Pay " + money(amount), "Tap card", "* cancel"])
        while True:
            self.phase(CARD)
            card = self.wait_card(amount)
            if card is None:
                hal.display.show(["Cancelled"])
                self.cancelled(amount, CARD)
                return None
            self.phase(PAYING)
            r = self.pay(card, amount)
            if not self.again(card, r):
                return r

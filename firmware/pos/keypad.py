# Number entry on the terminal keypad (hal.Keys): digits, '#' enter, '*' clear (cancel when
# nothing is typed). Shared by the amount entry and the PIN entry of the payment flow.
from ..core.units import money


def read_digits(hal, title, max_digits, mask=False, timeout_ms=30000, show=None):
    """The digits typed (str, non-empty) or None on timeout / cancel."""
    digits = ""
    while True:
        if show is not None:
            hal.display.show(show(digits))
        else:
            hal.display.show([title, "*" * len(digits) if mask else digits])
        key = hal.keys.get_key(timeout_ms)
        if key is None:
            return None
        if key == "#":
            if digits:
                return digits
        elif key == "*":
            if not digits:
                return None
            digits = ""
        elif len(key) == 1 and "0" <= key <= "9":
            if len(digits) < max_digits:
                digits += key


def _amount_lines(digits):
    return ["Amount", money(int(digits) if digits else 0)]


def read_amount(hal, timeout_ms=30000):
    """Amount in minor units (> 0), or None when cancelled or timed out."""
    while True:
        digits = read_digits(hal, "Amount", 9, False, timeout_ms, _amount_lines)
        if digits is None:
            return None
        amount = int(digits)
        if amount > 0:
            return amount


def read_pin(hal, timeout_ms=30000):
    """PIN as bytes of ASCII digits (4 to 8), or None."""
    while True:
        digits = read_digits(hal, "PIN", 8, True, timeout_ms)
        if digits is None:
            return None
        if len(digits) >= 4:
            return digits.encode()

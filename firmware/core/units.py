# Money and time helpers, in one place for both apps (and the simulator's screens).
#
# Money is an integer count of minor units (cents), never a float; time is unix seconds on the
# device's clock (hal.Clock), 0 when the device has no clock or it is not set.
from .runtime import const

DAY_S = const(86400)


def money(amount):
    """Minor units as text: 1250 -> "12.50", 5 -> "0.05", -5 -> "-0.05" (integers only)."""
    sign = ""
    if amount < 0:
        sign = "-"
        amount = -amount
    return sign + str(amount // 100) + "." + ("0" + str(amount % 100))[-2:]


def now(clock):
    """The time on `clock` (a hal.Clock or None): 0 when there is none."""
    return clock.now() if clock is not None else 0


def day_of(t):
    """The day number of unix time `t` (days since 1970-01-01, UTC): daily limits count by it."""
    return t // DAY_S

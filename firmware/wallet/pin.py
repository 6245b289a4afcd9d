# PIN and PUK checks with a try counter that is decremented (and committed) BEFORE the
# comparison: cutting the power after seeing a wrong guess fail cannot save a try.
from ..core import apdu
from ..core.apdu import ApduError
from . import state as st


def check(app, digits):
    """Check the PIN against the committed state. Wrong: 63Cx (committed decrement) or
    6983. Right: sets app.pin_ok and returns the state with the try counter reset, which
    the caller commits (it may fold it into its own commit, or restore it on a later error)."""
    s = app.state
    tries = s[st.S_PIN_TRIES]
    if tries == 0:
        raise ApduError(apdu.SW_PIN_BLOCKED)
    if not st.digits_ok(digits, 4, 8):
        raise ApduError(apdu.SW_WRONG_DATA)
    dec = dict(s)
    dec[st.S_PIN_TRIES] = tries - 1
    app.commit(dec)
    if not st.same(st.secret_hash(False, s[st.S_ID], digits), s[st.S_PIN]):
        app.pin_ok = False  # a wrong guess ends a verified session too
        raise ApduError(apdu.sw_pin_wrong(tries - 1))  # the last try's wrong guess: 63C0
    ok = dict(dec)
    ok[st.S_PIN_TRIES] = st.PIN_TRIES
    app.pin_ok = True
    return ok

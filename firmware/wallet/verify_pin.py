# VERIFY PIN (00 20 00 80, data = PIN as 4-8 ASCII digits).
# Without data: 9000 when the PIN was verified in this session, else 63Cx (x tries left) or
# 6983 (blocked), and nothing is tried (ISO 7816-4).
from ..core import apdu
from ..core.apdu import ApduError
from . import pin
from . import state as st


def handle(app, p1, p2, data):
    s = app.need_perso()
    if not data:
        if app.pin_ok:
            return b""
        tries = s[st.S_PIN_TRIES]
        raise ApduError(apdu.sw_pin_wrong(tries) if tries else apdu.SW_PIN_BLOCKED)
    app.commit(pin.check(app, data))
    return b""

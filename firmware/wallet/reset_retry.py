# RESET RETRY (00 2C 00 80, data = CBOR [PUK, new PIN]): unblock the PIN with the PUK.
# The PUK has its own try counter (10), decremented and committed before the comparison.
# The new PIN is set, the PIN try counter reset; the PIN is not verified by this command.
from ..core import apdu
from ..core.apdu import ApduError
from . import state as st
from .app import decode


def handle(app, p1, p2, data):
    s = app.need_perso()
    req = decode(data)
    if not isinstance(req, list) or len(req) != 2:
        raise ApduError(apdu.SW_WRONG_DATA)
    puk, new_pin = req
    if not st.digits_ok(puk, 8, 16) or not st.digits_ok(new_pin, 4, 8):
        raise ApduError(apdu.SW_WRONG_DATA)
    tries = s[st.S_PUK_TRIES]
    if tries == 0:
        raise ApduError(apdu.SW_PIN_BLOCKED)
    dec = dict(s)
    dec[st.S_PUK_TRIES] = tries - 1
    app.commit(dec)
    if not st.same(st.secret_hash(True, s[st.S_ID], puk), s[st.S_PUK]):
        raise ApduError(apdu.sw_pin_wrong(tries - 1))
    new = dict(dec)
    new[st.S_PUK_TRIES] = st.PUK_TRIES
    new[st.S_PIN] = st.secret_hash(False, s[st.S_ID], new_pin)
    new[st.S_PIN_TRIES] = st.PIN_TRIES
    app.commit(new, b"")
    app.pin_ok = False
    return b""

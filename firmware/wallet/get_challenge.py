# GET CHALLENGE (00 84 00 00): 16 fresh random bytes for a payer wallet to put in a transfer
# to this wallet. Committed (one flash write) because the card may leave the field between
# this command and RECEIVE; a new challenge replaces the previous one, RECEIVE consumes it.
from ..core import apdu
from ..core.apdu import ApduError
from . import state as st


def handle(app, p1, p2, data):
    s = app.need_perso()
    if data:
        raise ApduError(apdu.SW_WRONG_LENGTH)
    chal = bytes(app.hal.rng.random(16))
    if len(chal) != 16:
        raise ApduError(apdu.SW_INTERNAL)
    new = dict(s)
    new[st.S_RX_CHAL] = chal
    app.commit(new, chal)
    return chal

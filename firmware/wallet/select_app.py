# SELECT (00 A4 04 00, data = AID): starts a session with this application and returns INFO.
# Selecting any other AID deselects the wallet (ISO 7816-4) and answers 6A82.
from ..core import apdu
from ..core.apdu import ApduError
from .get_info import info


def handle(app, p1, p2, data):
    app.selected = False
    app.pin_ok = False
    if data != apdu.AID:
        raise ApduError(apdu.SW_NOT_FOUND)
    app.selected = True
    return info(app)

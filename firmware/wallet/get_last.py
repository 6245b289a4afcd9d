# GET LAST (80 54 00 00): the envelope of the last payment, re-signed from the stored body
# (deterministic: the same bytes PAY returned). 6A82 before the first payment.
from ..core import apdu
from ..core.apdu import ApduError
from . import state as st


def handle(app, p1, p2, data):
    s = app.need_perso()
    if data:
        raise ApduError(apdu.SW_WRONG_LENGTH)
    body = s.get(st.S_LAST_BODY)
    if body is None:
        raise ApduError(apdu.SW_NOT_FOUND)
    return app.sign_payment(body)

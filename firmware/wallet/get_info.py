# GET INFO (80 CA 00 00): the INFO map, also the answer to SELECT.
from ..core import apdu, cbor, fields
from ..core.apdu import ApduError
from . import state as st


def info(app):
    s = app.state
    if s[st.S_PHASE] != st.PHASE_PERSO:
        return cbor.encode(
            {fields.INFO_VERSION: apdu.VERSION, fields.INFO_FLAGS: fields.FLAG_BLANK}
        )
    flags = fields.FLAG_PIN_BLOCKED if s[st.S_PIN_TRIES] == 0 else 0
    purses = s.get(st.S_PURSES)
    for p in purses or ():
        if p[st.P_BALANCE]:
            flags |= fields.FLAG_PURSES
    m = {
        fields.INFO_VERSION: apdu.VERSION,
        fields.INFO_ID: s[st.S_ID],
        fields.INFO_CERT: s[st.S_CERT],
        fields.INFO_COUNTER: s[st.S_COUNTER],
        fields.INFO_OFFLINE_LEFT: app.offline_left(),
        fields.INFO_FLAGS: flags,
    }
    chal = s.get(st.S_LAST_CHAL)
    if chal is not None:
        m[fields.INFO_LAST_CHALLENGE] = chal
    if app.pin_ok or app.visual:
        m[fields.INFO_BALANCE] = s[st.S_BALANCE]
        if purses:
            m[fields.INFO_PURSES] = [
                [p[st.P_PROGRAM], p[st.P_BALANCE], st.rule_of(p)[fields.RULE_EXPIRES]]
                for p in purses
            ]
    return cbor.encode(m)


def handle(app, p1, p2, data):
    if data:
        raise ApduError(apdu.SW_WRONG_LENGTH)
    return info(app)

# GET INFO (80 CA 00 00): the INFO map, also the answer to SELECT.
from ..core import cbor, proto
from ..core.proto import ApduError
from . import state as st


def info(app):
    s = app.state
    if s[st.S_PHASE] != st.PHASE_PERSO:
        return cbor.encode({proto.INFO_VERSION: proto.VERSION, proto.INFO_FLAGS: proto.FLAG_BLANK})
    flags = proto.FLAG_PIN_BLOCKED if s[st.S_PIN_TRIES] == 0 else 0
    purses = s.get(st.S_PURSES)
    for p in purses or ():
        if p[st.P_BALANCE]:
            flags |= proto.FLAG_PURSES
    m = {
        proto.INFO_VERSION: proto.VERSION,
        proto.INFO_ID: s[st.S_ID],
        proto.INFO_CERT: s[st.S_CERT],
        proto.INFO_COUNTER: s[st.S_COUNTER],
        proto.INFO_OFFLINE_LEFT: app.offline_left(),
        proto.INFO_FLAGS: flags,
    }
    chal = s.get(st.S_LAST_CHAL)
    if chal is not None:
        m[proto.INFO_LAST_CHALLENGE] = chal
    if app.pin_ok or app.visual:
        m[proto.INFO_BALANCE] = s[st.S_BALANCE]
        if purses:
            m[proto.INFO_PURSES] = [
                [p[st.P_PROGRAM], p[st.P_BALANCE], st.rule_of(p)[proto.RULE_EXPIRES]]
                for p in purses
            ]
    return cbor.encode(m)


def handle(app, p1, p2, data):
    if data:
        raise ApduError(proto.SW_WRONG_LENGTH)
    return info(app)

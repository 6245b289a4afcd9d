# ACK: the ledger (issuer key) confirms it stored the journal up to a seq; prune up to there.
from ..core import proto
from ..core.hal import PowerCut
from . import state as st


def handle(app, p1, p2, data):
    if not app.personalised:
        raise proto.ApduError(proto.SW_CONDITIONS)
    body = st.verify_by_issuer(proto.TAG_ACK, data, app.cf[st.C_ISSUERS])
    if proto.need_bytes(body, proto.ACK_DEVICE, 8) != app.pos_id:
        raise proto.ApduError(proto.SW_DATA_INVALID)
    upto = proto.need_int(body, proto.ACK_UPTO)
    if upto > app.journal.last_seq:
        raise proto.ApduError(proto.SW_DATA_INVALID)
    app.flush()  # the run state must reflect every record before any of them goes
    try:
        app.journal.prune(upto)
    except PowerCut:
        raise
    except Exception:
        raise proto.ApduError(proto.SW_MEMORY) from None
    return b""

# SELECT and GET INFO on the POS's serial side: the POS INFO map (docs/PROTOCOL.md §3.4).
from ..core import cbor, proto
from . import state as st


def info_map(app):
    if not app.personalised:
        return {proto.INFO_VERSION: proto.VERSION, proto.INFO_FLAGS: proto.FLAG_BLANK}
    flags = 0
    if app.hot_stale(app.now()):
        flags |= proto.FLAG_HOT_STALE
    if app.journal.free() < 1:
        flags |= proto.FLAG_JOURNAL_FULL
    return {
        proto.INFO_VERSION: proto.VERSION,
        proto.INFO_ID: app.pos_id,
        proto.INFO_CERT: app.cf[st.C_CERT],
        proto.INFO_FLAGS: flags,
        proto.INFO_SEQ: app.journal.last_seq,
        proto.INFO_RECORDS: app.journal.count(),
        proto.INFO_HOT_VERSION: app.hot[0] if app.hot else 0,
        proto.INFO_UPDATE: app.cf.get(st.C_UPDATE, 0),
        proto.INFO_TORN: len(app.rt[st.R_TORN]),
    }


def select(app, p1, p2, data):
    if p1 != 0x04 or p2 != 0x00:
        raise proto.ApduError(proto.SW_WRONG_P1P2)
    if data != proto.AID:
        raise proto.ApduError(proto.SW_NOT_FOUND)
    return cbor.encode(info_map(app))


def get_info(app, p1, p2, data):
    if data:
        raise proto.ApduError(proto.SW_WRONG_LENGTH)
    return cbor.encode(info_map(app))

# GET INFO on the POS's serial side: the POS INFO map (docs/PROTOCOL.md §3.4).
from ..core import apdu, cbor, fields
from . import state as st


def info_map(app):
    if not app.personalised:
        return {fields.INFO_VERSION: apdu.VERSION, fields.INFO_FLAGS: fields.FLAG_BLANK}
    flags = 0
    if app.hot_stale(app.now()):
        flags |= fields.FLAG_HOT_STALE
    if app.journal.free() < 1:
        flags |= fields.FLAG_JOURNAL_FULL
    return {
        fields.INFO_VERSION: apdu.VERSION,
        fields.INFO_ID: app.pos_id,
        fields.INFO_CERT: app.cf[st.C_CERT],
        fields.INFO_FLAGS: flags,
        fields.INFO_SEQ: app.journal.last_seq,
        fields.INFO_RECORDS: app.journal.count(),
        fields.INFO_HOT_VERSION: app.hot[0] if app.hot else 0,
        fields.INFO_UPDATE: app.cf.get(st.C_UPDATE, 0),
        fields.INFO_TORN: len(app.rt[st.R_TORN]),
    }


def handle(app, p1, p2, data):
    if data:
        raise apdu.ApduError(apdu.SW_WRONG_LENGTH)
    return cbor.encode(info_map(app))

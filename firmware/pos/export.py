# EXPORT: journal records after a seq, as the bytes journaled; the last page is closed by a
# POS-signed status {0: id, 1: last seq, 7: journal digest} (docs/PROTOCOL.md §3.4). Only the
# last: a signature costs ~0.4 s on an ESP32.
# The journal is read one segment at a time; the answer is bounded in records and bytes.
from ..core import apdu, cbor, check, envelope, fields
from ..core.runtime import const

MAX_RECORDS = const(64)
BUDGET_BYTES = const(3000)


def handle(app, p1, p2, data):
    if not app.personalised:
        raise apdu.ApduError(apdu.SW_CONDITIONS)
    from . import state as st

    m = st.decode_map(data) if data else {}
    since = check.opt_int(m, fields.EXP_SINCE, 0)
    most = check.opt_int(m, fields.EXP_MAX, 16, 1, 0xFFFF)  # as the wallet (PROTOCOL.md §3.2.1)
    if most > MAX_RECORDS:
        most = MAX_RECORDS
    out = []
    size = 0
    more = False
    for seq, rec in app.journal.records(since):
        if len(out) >= most or (out and size + len(rec) > BUDGET_BYTES):
            more = True
            break
        out.append([seq, rec])  # the bytes journaled: the digest covers exactly these
        size += len(rec)
    j = app.journal
    last = j.last_seq
    resp = {fields.EXP_RECORDS: out, fields.EXP_MORE: more, fields.EXP_LAST: last}
    if not more:
        resp[fields.EXP_STATUS] = app.sign(
            envelope.TAG_STATUS,
            {fields.ST_DEVICE: app.pos_id, fields.ST_SEQ: last, fields.ST_DIGEST: j.digest},
        )
    return cbor.encode_parts(resp)  # the records are not copied twice

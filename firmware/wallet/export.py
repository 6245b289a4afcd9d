# EXPORT (80 60 00 00, data = CBOR {0: since seq, 1: max records 1..65535}, both optional: 0
# and 16):
# journal records with seq > since, oldest first, at most `max` of them and about
# app.export_bytes bytes (at least one when any is left); the last page (more = false) also
# carries a status envelope signed by the device key: {0: id, 1: last journal seq,
# 2: counter, 3: balance, 4: chain head, 5: pending, 6: vouchers applied, 7: journal digest}.
# Response: CBOR {0: [[seq, record bytes], ...], 1: more, 2: status envelope (last page),
# 3: last seq}. Records travel as the bytes journaled: the journal digest (envelope.journal_link
# over them) binds the status to exactly those bytes, and the ledger acks only that.
# Read-only: nothing is written (a record the state still owes is appended first, so the
# export is complete).
#
# On a fixed heap the page is read twice: once to count what fits (one record in RAM at a
# time), then - after the status is signed and the signature's modules are released - to
# collect it, so the records and the signing code are never in the heap together (#16).
from ..core import cbor, check, envelope, fields
from . import state as st
from .app import decode_map


def _page(app, since, most):
    """(records to send, more) of the page after `since`."""
    n = 0
    size = 0
    for _seq, rec in app.journal.records(since):
        if n >= most or (n and size + len(rec) > app.export_bytes):
            return n, True
        n += 1
        size += len(rec)
    return n, False


def handle(app, p1, p2, data):
    s = app.need_perso()
    req = decode_map(data) if data else {}
    since = check.opt_int(req, fields.EXP_SINCE, 0)
    most = check.opt_int(req, fields.EXP_MAX, 16, 1, 0xFFFF)  # 0 would page forever: 6A80
    app.catch_up(False)
    n, more = _page(app, since, most)
    j = app.journal
    last = j.last_seq
    resp = {fields.EXP_MORE: more, fields.EXP_LAST: last}
    if not more:  # one signature per export, not per page
        status = {
            fields.ST_DEVICE: s[st.S_ID],
            fields.ST_SEQ: last,
            fields.ST_COUNTER: s[st.S_COUNTER],
            fields.ST_BALANCE: s[st.S_BALANCE],
            fields.ST_PREV: s[st.S_PREV],
            fields.ST_PENDING: s[st.S_PENDING],
            fields.ST_LOADS: s[st.S_LOADS],
            fields.ST_DIGEST: j.digest,
        }
        purses = s.get(st.S_PURSES)
        if purses:
            status[fields.ST_PURSES] = [[p[st.P_PROGRAM], p[st.P_BALANCE]] for p in purses]
        resp[fields.EXP_STATUS] = app.seal(envelope.TAG_STATUS, status)
        status = None
        app.release_core()  # the signature's modules go before the records come in
    out = []
    if n:
        for seq, rec in j.records(since):
            out.append([seq, rec])
            if len(out) == n:
                break
    resp[fields.EXP_RECORDS] = out
    return cbor.encode_parts(resp)  # the records are not copied twice

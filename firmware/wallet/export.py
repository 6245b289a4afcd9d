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
# The response is built in place: the first pass also sizes the records' encoding, one
# bytearray of the whole response (status word included) is allocated after the signature,
# and the second pass copies each record into it as it is read (one record in RAM at a time,
# no join beside the records). The bytes are those of cbor.encode(resp) + 9000.
from ..core import apdu, cbor, check, envelope, fields
from . import state as st
from .app import decode_map


def _hlen(n):
    # bytes of a CBOR head for n (cbor._head)
    return 1 if n < 24 else 2 if n < 0x100 else 3 if n < 0x10000 else 5 if n < 0x100000000 else 9


def _page(app, since, most):
    """(records to send, more, bytes of their encoding) of the page after `since`."""
    n = 0
    size = 0
    enc = 0
    for seq, rec in app.journal.records(since):
        if n >= most or (n and size + len(rec) > app.export_bytes):
            return n, True, enc
        n += 1
        size += len(rec)
        enc += 1 + _hlen(seq) + _hlen(len(rec)) + len(rec)  # [seq, rec]
    return n, False, enc


def handle(app, p1, p2, data):
    s = app.need_perso()
    # the signer first, into a heap not yet cut up by the page's reads (as PAY does, #16)
    from ..core import ed25519  # noqa: F401

    req = decode_map(data) if data else {}
    since = check.opt_int(req, fields.EXP_SINCE, 0)
    most = check.opt_int(req, fields.EXP_MAX, 16, 1, 0xFFFF)  # 0 would page forever: 6A80
    app.catch_up(False)
    n, more, enc = _page(app, since, most)
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
    head = bytearray()
    cbor._head(head, 0xA0, len(resp) + 1)  # map: 0 records, 1 more, (2 status), 3 last
    head.append(fields.EXP_RECORDS)
    cbor._head(head, 0x80, n)
    tail = cbor.encode(resp)[1:]  # the other keys, in order after key 0 (one-byte map head)
    resp = None
    buf = bytearray(len(head) + enc + len(tail) + 2)
    mv = memoryview(buf)
    at = len(head)
    mv[:at] = head
    head = None
    if n:
        k = 0
        item = bytearray()
        for seq, rec in j.records(since):
            item.append(0x82)
            cbor._head(item, 0, seq)
            cbor._head(item, 0x40, len(rec))
            mv[at : at + len(item)] = item
            at += len(item)
            mv[at : at + len(rec)] = rec
            at += len(rec)
            rec = None
            item = bytearray()
            k += 1
            if k == n:
                break
    if at + len(tail) + 2 != len(buf):  # the journal changed under the export: a bug
        raise ValueError("export page changed")
    mv[at : at + len(tail)] = tail
    at += len(tail)
    buf[at] = apdu.SW_OK >> 8
    buf[at + 1] = apdu.SW_OK & 0xFF
    mv = None
    app.done = buf  # the whole response, status word included (nothing to commit)
    return None

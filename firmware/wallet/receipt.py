# RECEIPT (80 52 00 00, data = receipt envelope): the POS's signed receipt for the last
# payment, kept in the journal as an RT_RECEIPT record for the ledger.
#
# The wallet cannot check the POS signature: it does not hold POS public keys (no POS
# certificate travels over NFC, and two more signature checks would double an ESP32 tap).
# So anything a reader sends here is untrusted, and what it can do is bounded instead:
# - the receipt must name this wallet, the counter, amount, payee and hash of the last
#   payment, which was to a POS (6984 otherwise, 6A80 if malformed);
# - it is stored only right after that payment's own record: at most one receipt per
#   payment, ever (the same receipt again is 9000 with no change; another one is 6985), so
#   a rogue reader replaying the last PAY cannot pile receipts up;
# - it never takes the room of a payment: the journal must keep a free record for every
#   offline payment the card may still make before a sync (6A84 otherwise);
# - the ledger verifies the signature at sync and sets a bad receipt aside as evidence
#   without refusing the rest of the journal.
# No state change: one journal append, no state commit.
from ..core import apdu, cbor, check, envelope, fields
from ..core.apdu import ApduError
from ..core.hal import PowerCut
from ..core.storage import StorageFull
from . import state as st
from .app import envelope_bytes


def handle(app, p1, p2, data):
    s = app.need_perso()
    env = envelope_bytes(data)
    _body_bytes, r, _sig = envelope.open_envelope(env)
    pos = check.need_bytes(r, fields.RCPT_POS, 8)
    wallet = check.need_bytes(r, fields.RCPT_WALLET, 8)
    counter = check.need_int(r, fields.RCPT_COUNTER)
    amount = check.need_int(r, fields.RCPT_AMOUNT)
    phash = check.need_bytes(r, fields.RCPT_PAYMENT_HASH, 32)
    last = s.get(st.S_LAST_BODY)
    if last is None:
        raise ApduError(apdu.SW_DATA_INVALID)
    b = cbor.decode(last)
    if (
        wallet != s[st.S_ID]
        or counter != s[st.S_COUNTER]
        or phash != s[st.S_PREV]
        or amount != b[fields.PAY_AMOUNT]
        or pos != b[fields.PAY_PAYEE]
        or b[fields.PAY_KIND] != fields.PAYKIND_POS
    ):
        raise ApduError(apdu.SW_DATA_INVALID)
    b = None
    rec = cbor.encode({fields.REC_TYPE: fields.RT_RECEIPT, fields.REC_RECEIPT: env})
    app.catch_up(True)
    j = app.journal
    if j.last_seq != s.get(st.S_OUT_SEQ, 0) or st.S_OUT in s:
        # Not the usual case (the newest record is the one the last payment owed, the
        # payment record of S_LAST_BODY, so nothing need be read back): look at it.
        tail = j.last()
        if tail is not None and tail[1] == rec:
            return b""  # already stored
        if tail is None or not _is_payment(tail[1], last):
            raise ApduError(apdu.SW_CONDITIONS)  # not right after its payment: one per payment
        tail = None
    if j.free() <= app.offline_left(s):
        raise ApduError(apdu.SW_FULL)  # the room left belongs to payments
    try:
        j.append(rec)
    except PowerCut:
        raise
    except StorageFull:
        raise ApduError(apdu.SW_FULL) from None
    except Exception:
        raise ApduError(apdu.SW_MEMORY) from None
    return b""


def _is_payment(record, body_bytes):
    """Is this journal record the payment record of the payment whose body is `body_bytes`?"""
    m = cbor.decode(record)
    if m.get(fields.REC_TYPE) != fields.RT_PAYMENT:
        return False
    pb, _p, _s = envelope.open_envelope(m[fields.REC_SIGNED])
    return pb == body_bytes

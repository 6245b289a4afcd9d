# ACK: the ledger (issuer key) confirms it stored the journal up to a seq, exactly as
# journaled (its digest is the journal chain value there); prune up to there only when this
# POS's own chain agrees (6984 otherwise: nothing pruned, as for an upto above the journal).
# The ack's time also sets a clock that is unset or behind: an ESP32 RTC forgets the time at
# every power loss, and hot-list age, certificate expiry and daily limits need it. Forward
# only: a replayed old ack cannot turn the clock back, and only the issuer signs acks.
from ..core import apdu, check, envelope, fields
from ..core.hal import PowerCut
from ..core.runtime import const
from . import state as st

CLOCK_SLACK_S = const(120)  # drift tolerated before the ack's time is taken


def handle(app, p1, p2, data):
    if not app.personalised:
        raise apdu.ApduError(apdu.SW_CONDITIONS)
    body = st.verify_by_issuer(envelope.TAG_ACK, data, app.cf[st.C_ISSUERS])
    if check.need_bytes(body, fields.ACK_DEVICE, 8) != app.pos_id:
        raise apdu.ApduError(apdu.SW_DATA_INVALID)
    upto = check.need_int(body, fields.ACK_UPTO)
    digest = check.need_bytes(body, fields.ACK_DIGEST, 32)
    j = app.journal
    if upto > j.last_seq:
        raise apdu.ApduError(apdu.SW_DATA_INVALID)
    if upto > j.floor and j.link_at(upto) != digest:
        raise apdu.ApduError(apdu.SW_DATA_INVALID)
    app.flush()  # the run state must reflect every record before any of them goes
    try:
        app.journal.prune(upto)
    except PowerCut:
        raise
    except Exception:
        raise apdu.ApduError(apdu.SW_MEMORY) from None
    t = body.get(fields.ACK_TIME)
    clock = app.hal.clock
    if clock is not None and type(t) is int and t > app.now() + CLOCK_SLACK_S:
        clock.set(t)
    return b""

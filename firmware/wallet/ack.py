# ACK (80 62 00 00, data = ack envelope signed by the ledger with an issuer key): the ledger
# holds every journal record up to `upto`, exactly as journaled: its `digest` is the journal
# chain value at `upto` (envelope.journal_link). Prune them only when the card's own chain there
# is that digest: an ack for records the ledger got in another form (a sync host substituted
# one) or for another history (an old ack replayed after a flash rollback) is refused (6984)
# and prunes nothing. An `upto` above the last journal seq is refused (6984) too. An `upto`
# already pruned is a no-op (9000): ACK is idempotent.
from ..core import apdu, check, envelope, fields
from ..core.apdu import ApduError
from ..core.hal import PowerCut
from . import state as st


def handle(app, p1, p2, data):
    s = app.need_perso()
    a, _env = app.open_issued(envelope.TAG_ACK, data)
    dev = check.need_bytes(a, fields.ACK_DEVICE, 8)
    upto = check.need_int(a, fields.ACK_UPTO)
    digest = check.need_bytes(a, fields.ACK_DIGEST, 32)
    if dev != s[st.S_ID]:
        raise ApduError(apdu.SW_DATA_INVALID)
    j = app.journal
    if upto > j.last_seq:
        raise ApduError(apdu.SW_DATA_INVALID)
    if upto <= j.floor:
        return b""
    if j.link_at(upto) != digest:
        raise ApduError(apdu.SW_DATA_INVALID)
    try:
        j.prune(upto)
    except PowerCut:
        raise
    except Exception:
        raise ApduError(apdu.SW_MEMORY) from None
    return b""

# ACK (80 62 00 00, data = ack envelope signed by the ledger with an issuer key): the ledger
# holds every journal record up to `upto`, exactly as journaled: its `digest` is the journal
# chain value at `upto` (proto.journal_link). Prune them only when the card's own chain there
# is that digest: an ack for records the ledger got in another form (a sync host substituted
# one) or for another history (an old ack replayed after a flash rollback) is refused (6984)
# and prunes nothing. An `upto` above the last journal seq is refused (6984) too. An `upto`
# already pruned is a no-op (9000): ACK is idempotent.
from ..core import proto
from ..core.hal import PowerCut
from ..core.proto import ApduError
from . import state as st


def handle(app, p1, p2, data):
    s = app.need_perso()
    a, _env = app.open_issued(proto.TAG_ACK, data)
    dev = proto.need_bytes(a, proto.ACK_DEVICE, 8)
    upto = proto.need_int(a, proto.ACK_UPTO)
    digest = proto.need_bytes(a, proto.ACK_DIGEST, 32)
    if dev != s[st.S_ID]:
        raise ApduError(proto.SW_DATA_INVALID)
    j = app.journal
    if upto > j.last_seq:
        raise ApduError(proto.SW_DATA_INVALID)
    if upto <= j.floor:
        return b""
    if j.link_at(upto) != digest:
        raise ApduError(proto.SW_DATA_INVALID)
    try:
        j.prune(upto)
    except PowerCut:
        raise
    except Exception:
        raise ApduError(proto.SW_MEMORY) from None
    return b""

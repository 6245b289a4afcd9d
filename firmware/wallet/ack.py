# ACK (80 62 00 00, data = ack envelope signed by the ledger with an issuer key): the ledger
# holds every journal record up to `upto`; prune them. An `upto` above the last journal seq
# is refused (6984): the ledger cannot hold records this wallet never wrote. An `upto`
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
    if dev != s[st.S_ID]:
        raise ApduError(proto.SW_DATA_INVALID)
    j = app.journal
    if upto > j.last_seq:
        raise ApduError(proto.SW_DATA_INVALID)
    if upto <= j.floor:
        return b""
    try:
        j.prune(upto)
    except PowerCut:
        raise
    except Exception:
        raise ApduError(proto.SW_MEMORY) from None
    return b""

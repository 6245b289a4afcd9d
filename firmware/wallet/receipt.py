# RECEIPT (80 52 00 00, data = receipt envelope): the POS's signed receipt for the last
# payment, kept in the journal as an RT_RECEIPT record for the ledger.
#
# The wallet cannot check the POS signature: it does not hold POS public keys (no POS
# certificate travels over NFC). It checks that the receipt names this wallet, the counter,
# amount, payee and hash of its last payment (6984 otherwise, 6A80 if malformed), and the
# ledger verifies the signature when the journal is exported. The same receipt sent twice
# is stored once. No state change: one journal append, no state commit.
from ..core import cbor, proto
from ..core.hal import PowerCut
from ..core.proto import ApduError
from ..core.storage import StorageFull
from . import state as st
from .app import envelope_bytes


def handle(app, p1, p2, data):
    s = app.need_perso()
    env = envelope_bytes(data)
    _body_bytes, r, _sig = proto.open_envelope(env)
    pos = proto.need_bytes(r, proto.RCPT_POS, 8)
    wallet = proto.need_bytes(r, proto.RCPT_WALLET, 8)
    counter = proto.need_int(r, proto.RCPT_COUNTER)
    amount = proto.need_int(r, proto.RCPT_AMOUNT)
    phash = proto.need_bytes(r, proto.RCPT_PAYMENT_HASH, 32)
    last = s.get(st.S_LAST_BODY)
    if last is None:
        raise ApduError(proto.SW_DATA_INVALID)
    b = cbor.decode(last)
    if (
        wallet != s[st.S_ID]
        or counter != s[st.S_COUNTER]
        or phash != s[st.S_PREV]
        or amount != b[proto.PAY_AMOUNT]
        or pos != b[proto.PAY_PAYEE]
        or b[proto.PAY_KIND] != proto.PAYKIND_POS
    ):
        raise ApduError(proto.SW_DATA_INVALID)
    rec = cbor.encode({proto.REC_TYPE: proto.RT_RECEIPT, proto.REC_RECEIPT: env})
    app.catch_up(True)
    j = app.journal
    tail = j.last()
    if tail is not None and tail[1] == rec:
        return b""  # already stored
    try:
        j.append(rec)
    except PowerCut:
        raise
    except StorageFull:
        raise ApduError(proto.SW_FULL) from None
    except Exception:
        raise ApduError(proto.SW_MEMORY) from None
    return b""

# LOAD (80 58 00 00, data = voucher envelope): credit an issuer-signed voucher, exactly once.
#
# The voucher must verify under a trusted issuer key (6988), name this wallet (6984) and
# carry number = vouchers applied + 1 (6916 for a replay or a gap). The balance plus the
# pending staged value may not exceed the balance cap (6914) - unless the voucher does not
# add to it (a release of staged value never fails on the cap).
#
# Source 2 releases staged value received by transfer: pending drops by min(pending,
# amount); the part of the amount beyond that was already re-spent from pending (up to
# S_STAGED_USED, see pay.py) and is not credited twice. Journal: RT_LOAD {1: voucher}.
# Response: CBOR {0: balance}.
from ..core import cbor, proto
from ..core.proto import ApduError
from . import state as st
from .app import money


def handle(app, p1, p2, data):
    s = app.need_perso()
    v, env = app.open_issued(proto.TAG_VOUCHER, data)
    wallet = proto.need_bytes(v, proto.VCH_WALLET, 8)
    number = proto.need_int(v, proto.VCH_NUMBER)
    amount = proto.need_int(v, proto.VCH_AMOUNT, 1)
    source = proto.need_int(v, proto.VCH_SOURCE, proto.VSRC_TOPUP, proto.VSRC_PAYROLL)
    purse = proto.opt_int(v, proto.VCH_PURSE, 0)
    if wallet != s[st.S_ID] or purse != 0:
        raise ApduError(proto.SW_DATA_INVALID)
    if number != s[st.S_LOADS] + 1:
        raise ApduError(proto.SW_REPLAY)
    bal = s[st.S_BALANCE]
    pending = s[st.S_PENDING]
    used = s[st.S_STAGED_USED]
    credit = amount
    if source == proto.VSRC_TRANSFER:
        released = pending if pending < amount else amount
        rest = amount - released
        already = used if used < rest else rest
        pending -= released
        used -= already
        credit = amount - already
    total = bal + credit + pending
    if total > s[st.S_LIMITS][proto.LIM_BALANCE_MAX] and total > bal + s[st.S_PENDING]:
        raise ApduError(proto.SW_BALANCE_CAP)
    new = dict(s)
    app.owe(new, cbor.encode({proto.REC_TYPE: proto.RT_LOAD, proto.REC_SIGNED: env}))
    new[st.S_LOADS] = number
    new[st.S_BALANCE] = bal + credit
    new[st.S_PENDING] = pending
    new[st.S_STAGED_USED] = used
    app.commit(new)
    app.catch_up(False)
    app.show(
        [
            "Loaded " + money(amount),
            "Balance " + money(bal + credit),
            "Offline left " + str(app.offline_left()),
        ]
    )
    return cbor.encode({0: bal + credit})

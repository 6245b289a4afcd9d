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
#
# An earmarked load (purse 1, source 4) carries its programme's rule envelope (field 6),
# which must verify under a trusted issuer key (6988) and be well formed (6A80). The value
# goes to the purse of that programme (the same rule bytes, 6984 otherwise) or to a new
# purse (6919 when all fields.MAX_PURSES are taken); the main balance and its cap are not
# touched. Response: CBOR {0: main balance, 1: that purse's balance}.
from ..core import apdu, cbor, check, envelope, fields
from ..core.apdu import ApduError
from ..core.units import money
from . import state as st


def handle(app, p1, p2, data):
    s = app.need_perso()
    from ..core import ed25519  # noqa: F401  the verifier, then the state's buffer (#13)

    app.store.reserve(len(data))  # an earmarked load adds its rule (within the voucher)
    v, env = app.open_issued(envelope.TAG_VOUCHER, data)
    wallet = check.need_bytes(v, fields.VCH_WALLET, 8)
    number = check.need_int(v, fields.VCH_NUMBER)
    amount = check.need_int(v, fields.VCH_AMOUNT, 1)
    source = check.need_int(v, fields.VCH_SOURCE, fields.VSRC_TOPUP, fields.VSRC_PROGRAM)
    purse = check.opt_int(v, fields.VCH_PURSE, 0, 0, 1)
    if wallet != s[st.S_ID] or (purse == 1) != (source == fields.VSRC_PROGRAM):
        raise ApduError(apdu.SW_DATA_INVALID)
    if number != s[st.S_LOADS] + 1:
        raise ApduError(apdu.SW_REPLAY)
    if purse:
        return _load_purse(app, s, v, env, number, amount)
    bal = s[st.S_BALANCE]
    pending = s[st.S_PENDING]
    used = s[st.S_STAGED_USED]
    credit = amount
    if source == fields.VSRC_TRANSFER:
        released = pending if pending < amount else amount
        rest = amount - released
        already = used if used < rest else rest
        pending -= released
        used -= already
        credit = amount - already
    total = bal + credit + pending
    if total > s[st.S_LIMITS][fields.LIM_BALANCE_MAX] and total > bal + s[st.S_PENDING]:
        raise ApduError(apdu.SW_BALANCE_CAP)
    new = dict(s)
    app.owe(new, cbor.encode({fields.REC_TYPE: fields.RT_LOAD, fields.REC_SIGNED: env}))
    new[st.S_LOADS] = number
    new[st.S_BALANCE] = bal + credit
    new[st.S_PENDING] = pending
    new[st.S_STAGED_USED] = used
    answer = cbor.encode({0: bal + credit})
    app.commit(new, answer)  # decided: 9000 with this answer, whatever fails below
    app.catch_up(False)
    app.show(
        [
            "Loaded " + money(amount),
            "Balance " + money(bal + credit),
            "Offline left " + str(app.offline_left()),
        ]
    )
    return answer


def _load_purse(app, s, v, env, number, amount):
    rule_env = v.get(fields.VCH_RULE)
    if not isinstance(rule_env, bytes):
        raise ApduError(apdu.SW_WRONG_DATA)
    rule, _e = app.open_issued(envelope.TAG_RULE, rule_env)
    from ..core import purse as purse_rule  # earmarked loads only

    purse_rule.check_rule(rule)
    prog = rule[fields.RULE_PROGRAM]
    purses = list(s.get(st.S_PURSES) or ())
    at = -1
    for i in range(len(purses)):
        if purses[i][st.P_PROGRAM] == prog:
            at = i
    if at < 0:
        if len(purses) >= fields.MAX_PURSES:
            raise ApduError(apdu.SW_PURSE_FULL)
        purses.append([prog, 0, rule_env])
        at = len(purses) - 1
    elif purses[at][st.P_RULE] != rule_env:
        raise ApduError(apdu.SW_DATA_INVALID)  # one rule per programme, never changed
    app.tables = True  # tables.py once this LOAD is done (app.process): its heap is free then
    left = purses[at][st.P_BALANCE] + amount
    purses[at] = [prog, left, rule_env]
    new = dict(s)
    app.owe(new, cbor.encode({fields.REC_TYPE: fields.RT_LOAD, fields.REC_SIGNED: env}))
    new[st.S_LOADS] = number
    new[st.S_PURSES] = purses
    answer = cbor.encode({0: s[st.S_BALANCE], 1: left})
    app.commit(new, answer)  # decided: 9000 with this answer, whatever fails below
    app.catch_up(False)
    app.show(["Loaded " + money(amount), "Purse " + str(at + 1) + " " + money(left)])
    return answer

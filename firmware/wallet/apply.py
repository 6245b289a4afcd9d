# APPLY (80 64 00 00, data = update envelope signed by an issuer key): what the ledger and
# issuer decide at a sync, applied atomically (one commit, no journal record).
#
#   0 device id = this wallet (6984)        1 number > last applied (6916)
#   2 renewed certificate: same id and key, a higher serial, valid now (6984); new limits
#   3+4 synced counter and the spent total at it (both or neither, 6A80): reset the offline
#     counters. Never above this wallet's counter / spent, never below the last sync, and
#     at the current counter the spent totals must agree (6984).
#   5 unblock (true): PIN and PUK try counters back to 3 and 10
#   7 new PIN (4-8 ASCII digits), its try counter reset
#   8 programme ids (array of bstr 8): their earmarked purses are cleared (expired or
#     cancelled; the ledger refunded the value to the funder)
# Field 6 (hot list) is for POS terminals and ignored here.
from ..core import proto
from ..core.proto import ApduError
from . import state as st
from .app import envelope_bytes


def handle(app, p1, p2, data):
    s = app.need_perso()
    u, _env = app.open_issued(proto.TAG_UPDATE, data)
    dev = proto.need_bytes(u, proto.UPD_DEVICE, 8)
    number = proto.need_int(u, proto.UPD_NUMBER)
    if dev != s[st.S_ID]:
        raise ApduError(proto.SW_DATA_INVALID)
    if number <= s[st.S_UPDATE]:
        raise ApduError(proto.SW_REPLAY)
    new = dict(s)
    new[st.S_UPDATE] = number

    if proto.UPD_CERT in u:
        cert_env = envelope_bytes(u[proto.UPD_CERT])
        try:
            c = proto.verify_cert(cert_env, app.issuer_keys(), proto.KIND_WALLET, app.now())
        except ApduError as e:
            if e.sw == proto.SW_EXPIRED:
                raise ApduError(proto.SW_DATA_INVALID) from None
            raise
        serial = proto.opt_int(c, proto.CERT_SERIAL, 0)
        if c[proto.CERT_ID] != s[st.S_ID] or c[proto.CERT_KEY] != s[st.S_PUB]:
            raise ApduError(proto.SW_DATA_INVALID)
        if serial <= s[st.S_SERIAL]:
            raise ApduError(proto.SW_DATA_INVALID)
        new[st.S_CERT] = cert_env
        new[st.S_LIMITS] = st.limits(c)
        new[st.S_SERIAL] = serial

    has_counter = proto.UPD_SYNCED_COUNTER in u
    if has_counter != (proto.UPD_SYNCED_SPENT in u):
        raise ApduError(proto.SW_WRONG_DATA)
    if has_counter:
        sc = proto.need_int(u, proto.UPD_SYNCED_COUNTER)
        ss = proto.need_int(u, proto.UPD_SYNCED_SPENT)
        counter = s[st.S_COUNTER]
        spent = s[st.S_SPENT]
        if (
            sc > counter
            or ss > spent
            or sc < s[st.S_SYNC_COUNTER]
            or ss < s[st.S_SYNC_SPENT]
            or (sc == counter and ss != spent)
        ):
            raise ApduError(proto.SW_DATA_INVALID)
        new[st.S_SYNC_COUNTER] = sc
        new[st.S_SYNC_SPENT] = ss

    unblock = u.get(proto.UPD_UNBLOCK_PIN, False)
    if unblock is not True and unblock is not False:
        raise ApduError(proto.SW_WRONG_DATA)
    if unblock:
        new[st.S_PIN_TRIES] = st.PIN_TRIES
        new[st.S_PUK_TRIES] = st.PUK_TRIES
    if proto.UPD_NEW_PIN in u:
        pin = u[proto.UPD_NEW_PIN]
        if not st.digits_ok(pin, 4, 8):
            raise ApduError(proto.SW_WRONG_DATA)
        new[st.S_PIN] = st.secret_hash(False, s[st.S_ID], pin)
        new[st.S_PIN_TRIES] = st.PIN_TRIES
    if proto.UPD_PURSE_CLEAR in u:
        gone = u[proto.UPD_PURSE_CLEAR]
        if not isinstance(gone, list):
            raise ApduError(proto.SW_WRONG_DATA)
        keep = []
        for p in s.get(st.S_PURSES) or ():
            if p[st.P_PROGRAM] not in gone:
                keep.append(p)
        if keep:
            new[st.S_PURSES] = keep
        else:
            new.pop(st.S_PURSES, None)
    app.commit(new)
    return b""

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
from ..core import apdu, check, envelope, fields
from ..core.apdu import ApduError
from ..core.cert import verify_cert
from . import state as st
from .app import envelope_bytes


def handle(app, p1, p2, data):
    s = app.need_perso()
    u, _env = app.open_issued(envelope.TAG_UPDATE, data)
    dev = check.need_bytes(u, fields.UPD_DEVICE, 8)
    number = check.need_int(u, fields.UPD_NUMBER)
    if dev != s[st.S_ID]:
        raise ApduError(apdu.SW_DATA_INVALID)
    if number <= s[st.S_UPDATE]:
        raise ApduError(apdu.SW_REPLAY)
    new = dict(s)
    new[st.S_UPDATE] = number

    if fields.UPD_CERT in u:
        cert_env = envelope_bytes(u[fields.UPD_CERT])
        try:
            c = verify_cert(cert_env, app.issuer_keys(), fields.KIND_WALLET, app.now())
        except ApduError as e:
            if e.sw == apdu.SW_EXPIRED:
                raise ApduError(apdu.SW_DATA_INVALID) from None
            raise
        serial = check.opt_int(c, fields.CERT_SERIAL, 0)
        if c[fields.CERT_ID] != s[st.S_ID] or c[fields.CERT_KEY] != s[st.S_PUB]:
            raise ApduError(apdu.SW_DATA_INVALID)
        if serial <= s[st.S_SERIAL]:
            raise ApduError(apdu.SW_DATA_INVALID)
        new[st.S_CERT] = cert_env
        new[st.S_LIMITS] = st.limits(c)
        new[st.S_SERIAL] = serial

    has_counter = fields.UPD_SYNCED_COUNTER in u
    if has_counter != (fields.UPD_SYNCED_SPENT in u):
        raise ApduError(apdu.SW_WRONG_DATA)
    if has_counter:
        sc = check.need_int(u, fields.UPD_SYNCED_COUNTER)
        ss = check.need_int(u, fields.UPD_SYNCED_SPENT)
        counter = s[st.S_COUNTER]
        spent = s[st.S_SPENT]
        if (
            sc > counter
            or ss > spent
            or sc < s[st.S_SYNC_COUNTER]
            or ss < s[st.S_SYNC_SPENT]
            or (sc == counter and ss != spent)
        ):
            raise ApduError(apdu.SW_DATA_INVALID)
        new[st.S_SYNC_COUNTER] = sc
        new[st.S_SYNC_SPENT] = ss

    unblock = u.get(fields.UPD_UNBLOCK_PIN, False)
    if unblock is not True and unblock is not False:
        raise ApduError(apdu.SW_WRONG_DATA)
    if unblock:
        new[st.S_PIN_TRIES] = st.PIN_TRIES
        new[st.S_PUK_TRIES] = st.PUK_TRIES
    if fields.UPD_NEW_PIN in u:
        pin = u[fields.UPD_NEW_PIN]
        if not st.digits_ok(pin, 4, 8):
            raise ApduError(apdu.SW_WRONG_DATA)
        new[st.S_PIN] = st.secret_hash(False, s[st.S_ID], pin)
        new[st.S_PIN_TRIES] = st.PIN_TRIES
    if fields.UPD_PURSE_CLEAR in u:
        gone = u[fields.UPD_PURSE_CLEAR]
        if not isinstance(gone, list):
            raise ApduError(apdu.SW_WRONG_DATA)
        keep = []
        for p in s.get(st.S_PURSES) or ():
            if p[st.P_PROGRAM] not in gone:
                keep.append(p)
        if keep:
            new[st.S_PURSES] = keep
        else:
            new.pop(st.S_PURSES, None)
    app.commit(new, b"")  # decided: 9000 whatever fails below (the screen)
    if fields.UPD_SYNCED_COUNTER in u:  # the screen says what the card now is (issue #14)
        from ..core.units import money

        app.show(
            [
                "Synced",
                "Balance " + money(new[st.S_BALANCE]),
                "Offline left " + str(app.offline_left(new)),
            ]
        )
    return b""

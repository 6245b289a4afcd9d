# RECEIVE (80 56 00 00, data = CBOR [payment envelope, payer certificate envelope]): take a
# wallet-to-wallet transfer as STAGED value.
#
# The payer's certificate must verify under a trusted issuer key (wallet kind, not expired
# by this card's clock if it has one), the payment under the certificate's key; the payment
# must be a transfer (kind 2) from that wallet to this one, in the main purse, carrying the
# challenge this wallet issued last (GET CHALLENGE; consumed here, so a transfer is taken
# once). The amount goes to `pending`, not to the balance: it is not spendable (beyond
# LIM_STAGED_SPEND) until the ledger releases it with a voucher of source 2 (load.py). The
# balance cap counts pending value. Journal: RT_TRANSFER_IN {1: payment, 3: payer cert}.
# Sending the transfer taken last again answers 9000 and changes nothing.
from ..core import apdu, cbor, check, envelope, fields
from ..core.apdu import ApduError
from ..core.cert import verify_cert
from ..core.runtime import sha256
from . import state as st
from .app import decode, envelope_bytes


def handle(app, p1, p2, data):
    s = app.need_perso()
    req = decode(data)
    if not isinstance(req, list) or len(req) != 2:
        raise ApduError(apdu.SW_WRONG_DATA)
    pay_env = envelope_bytes(req[0])
    cert_env = envelope_bytes(req[1])
    cert = verify_cert(cert_env, app.issuer_keys(), fields.KIND_WALLET, app.now())
    body_bytes, b, sig = envelope.open_envelope(pay_env)
    if not envelope.sig_ok(cert[fields.CERT_KEY], envelope.TAG_PAYMENT + body_bytes, sig):
        raise ApduError(apdu.SW_BAD_SIGNATURE)
    payer = check.need_bytes(b, fields.PAY_WALLET, 8)
    check.need_int(b, fields.PAY_COUNTER, 1)
    amount = check.need_int(b, fields.PAY_AMOUNT, 1)
    payee = check.need_bytes(b, fields.PAY_PAYEE, 8)
    chal = check.need_bytes(b, fields.PAY_CHALLENGE, 16)
    kind = check.need_int(b, fields.PAY_KIND)
    purse = check.opt_int(b, fields.PAY_PURSE, 0)
    if payer != cert[fields.CERT_ID] or payee != s[st.S_ID] or kind != fields.PAYKIND_TRANSFER:
        raise ApduError(apdu.SW_DATA_INVALID)
    if purse != 0:
        raise ApduError(apdu.SW_DATA_INVALID)
    h = sha256(body_bytes).digest()
    if s.get(st.S_LAST_RX) == h:
        return b""  # taken already: an idempotent retry
    if s.get(st.S_RX_CHAL) != chal:
        raise ApduError(apdu.SW_CONDITIONS)
    pending = s[st.S_PENDING]
    if s[st.S_BALANCE] + pending + amount > s[st.S_LIMITS][fields.LIM_BALANCE_MAX]:
        raise ApduError(apdu.SW_BALANCE_CAP)
    new = dict(s)
    rec = cbor.encode(
        {
            fields.REC_TYPE: fields.RT_TRANSFER_IN,
            fields.REC_SIGNED: pay_env,
            fields.REC_CERT: cert_env,
        }
    )
    app.owe(new, rec)
    new[st.S_PENDING] = pending + amount
    new[st.S_STAGED_IN] = s[st.S_STAGED_IN] + amount
    new[st.S_LAST_RX] = h
    new.pop(st.S_RX_CHAL, None)
    app.commit(new, b"")  # decided: 9000 whatever fails below
    app.catch_up(False, rec)
    from ..core.units import money

    app.show(
        [
            "Received " + money(amount),
            "Pending " + money(pending + amount),
            "Balance " + money(s[st.S_BALANCE]),
        ]
    )
    return b""

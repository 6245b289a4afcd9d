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
from ..core import cbor, proto
from ..core.proto import ApduError
from ..core.runtime import sha256
from . import state as st
from .app import decode, envelope_bytes


def handle(app, p1, p2, data):
    s = app.need_perso()
    req = decode(data)
    if not isinstance(req, list) or len(req) != 2:
        raise ApduError(proto.SW_WRONG_DATA)
    pay_env = envelope_bytes(req[0])
    cert_env = envelope_bytes(req[1])
    cert = proto.verify_cert(cert_env, app.issuer_keys(), proto.KIND_WALLET, app.now())
    body_bytes, b, sig = proto.open_envelope(pay_env)
    if not proto.sig_ok(cert[proto.CERT_KEY], proto.TAG_PAYMENT + body_bytes, sig):
        raise ApduError(proto.SW_BAD_SIGNATURE)
    payer = proto.need_bytes(b, proto.PAY_WALLET, 8)
    proto.need_int(b, proto.PAY_COUNTER, 1)
    amount = proto.need_int(b, proto.PAY_AMOUNT, 1)
    payee = proto.need_bytes(b, proto.PAY_PAYEE, 8)
    chal = proto.need_bytes(b, proto.PAY_CHALLENGE, 16)
    kind = proto.need_int(b, proto.PAY_KIND)
    purse = proto.opt_int(b, proto.PAY_PURSE, 0)
    if payer != cert[proto.CERT_ID] or payee != s[st.S_ID] or kind != proto.PAYKIND_TRANSFER:
        raise ApduError(proto.SW_DATA_INVALID)
    if purse != 0:
        raise ApduError(proto.SW_DATA_INVALID)
    h = sha256(body_bytes).digest()
    if s.get(st.S_LAST_RX) == h:
        return b""  # taken already: an idempotent retry
    if s.get(st.S_RX_CHAL) != chal:
        raise ApduError(proto.SW_CONDITIONS)
    pending = s[st.S_PENDING]
    if s[st.S_BALANCE] + pending + amount > s[st.S_LIMITS][proto.LIM_BALANCE_MAX]:
        raise ApduError(proto.SW_BALANCE_CAP)
    new = dict(s)
    rec = cbor.encode(
        {proto.REC_TYPE: proto.RT_TRANSFER_IN, proto.REC_SIGNED: pay_env, proto.REC_CERT: cert_env}
    )
    app.owe(new, rec)
    new[st.S_PENDING] = pending + amount
    new[st.S_STAGED_IN] = s[st.S_STAGED_IN] + amount
    new[st.S_LAST_RX] = h
    new.pop(st.S_RX_CHAL, None)
    app.commit(new)
    app.catch_up(False, rec)
    return b""

# APPLY: an issuer-signed update carrying a renewed certificate and/or a new hot list
# (docs/PROTOCOL.md §2.5, §3.4). Wallet-only fields are ignored. One atomic config commit.
# A renewed certificate must carry a higher serial than the one the POS has (as the wallet).
from ..core import apdu, check, envelope, fields
from ..core.cert import verify_cert
from . import state as st


def handle(app, p1, p2, data):
    if not app.personalised:
        raise apdu.ApduError(apdu.SW_CONDITIONS)
    cf = app.cf
    issuers = cf[st.C_ISSUERS]
    body = st.verify_by_issuer(envelope.TAG_UPDATE, data, issuers)
    if check.need_bytes(body, fields.UPD_DEVICE, 8) != app.pos_id:
        raise apdu.ApduError(apdu.SW_DATA_INVALID)
    number = check.need_int(body, fields.UPD_NUMBER, 1)
    if number <= cf.get(st.C_UPDATE, 0):
        raise apdu.ApduError(apdu.SW_REPLAY)
    new = dict(cf)
    new[st.C_UPDATE] = number
    if fields.UPD_CERT in body:
        env = check.need_bytes(body, fields.UPD_CERT)
        try:
            cert = verify_cert(env, app.issuer_keys, fields.KIND_POS, app.now())
        except apdu.ApduError as e:
            if e.sw == apdu.SW_EXPIRED:
                raise apdu.ApduError(apdu.SW_DATA_INVALID) from None
            raise
        serial = check.opt_int(cert, fields.CERT_SERIAL, 0)
        if (
            cert[fields.CERT_ID] != app.pos_id
            or cert[fields.CERT_KEY] != cf[st.C_PUB]
            or serial <= check.opt_int(app.cert, fields.CERT_SERIAL, 0)
        ):
            raise apdu.ApduError(apdu.SW_DATA_INVALID)
        check.need_bytes(cert, fields.CERT_MERCHANT, 8)
        new[st.C_CERT] = env
    if fields.UPD_HOTLIST in body:
        env = check.need_bytes(body, fields.UPD_HOTLIST)
        version = st.parse_hotlist(env, issuers)[0]
        if app.hot is not None and version < app.hot[0]:
            raise apdu.ApduError(apdu.SW_REPLAY)
        new[st.C_HOTLIST] = env
    app.commit_config(new, b"")  # decided: 9000 whatever fails after (PROTOCOL.md §3.1)
    return b""

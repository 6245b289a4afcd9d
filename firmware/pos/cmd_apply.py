# APPLY: an issuer-signed update carrying a renewed certificate and/or a new hot list
# (docs/PROTOCOL.md §2.5, §3.4). Wallet-only fields are ignored. One atomic config commit.
# A renewed certificate must carry a higher serial than the one the POS has (as the wallet).
from ..core import proto
from . import state as st


def handle(app, p1, p2, data):
    if not app.personalised:
        raise proto.ApduError(proto.SW_CONDITIONS)
    cf = app.cf
    issuers = cf[st.C_ISSUERS]
    body = st.verify_by_issuer(proto.TAG_UPDATE, data, issuers)
    if proto.need_bytes(body, proto.UPD_DEVICE, 8) != app.pos_id:
        raise proto.ApduError(proto.SW_DATA_INVALID)
    number = proto.need_int(body, proto.UPD_NUMBER, 1)
    if number <= cf.get(st.C_UPDATE, 0):
        raise proto.ApduError(proto.SW_REPLAY)
    new = dict(cf)
    new[st.C_UPDATE] = number
    if proto.UPD_CERT in body:
        env = proto.need_bytes(body, proto.UPD_CERT)
        try:
            cert = proto.verify_cert(env, app.issuer_keys, proto.KIND_POS, app.now())
        except proto.ApduError as e:
            if e.sw == proto.SW_EXPIRED:
                raise proto.ApduError(proto.SW_DATA_INVALID) from None
            raise
        serial = proto.opt_int(cert, proto.CERT_SERIAL, 0)
        if (
            cert[proto.CERT_ID] != app.pos_id
            or cert[proto.CERT_KEY] != cf[st.C_PUB]
            or serial <= proto.opt_int(app.cert, proto.CERT_SERIAL, 0)
        ):
            raise proto.ApduError(proto.SW_DATA_INVALID)
        proto.need_bytes(cert, proto.CERT_MERCHANT, 8)
        new[st.C_CERT] = env
    if proto.UPD_HOTLIST in body:
        env = proto.need_bytes(body, proto.UPD_HOTLIST)
        version = st.parse_hotlist(env, issuers)[0]
        if app.hot is not None and version < app.hot[0]:
            raise proto.ApduError(proto.SW_REPLAY)
        new[st.C_HOTLIST] = env
    app.commit_config(new)
    return b""

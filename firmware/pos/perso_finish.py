# PERSO FINISH, POS variant (docs/PROTOCOL.md §3.4): after PERSO KEYGEN (perso_keygen.py) the
# terminal receives its certificate, the issuer keys, its config and a first hot list.
from ..core import apdu, check, envelope, fields
from ..core.cert import verify_cert
from . import state as st

MAX_ISSUERS = 4


def handle(app, p1, p2, data):
    cf = app.cf
    if cf[st.C_PHASE] != st.PHASE_KEYED:
        raise apdu.ApduError(apdu.SW_CONDITIONS)
    m = st.decode_map(data)
    cert_env = check.need_bytes(m, fields.PF_CERT)
    issuers = m.get(fields.PF_ISSUERS)
    if not isinstance(issuers, list) or not 1 <= len(issuers) <= MAX_ISSUERS:
        raise apdu.ApduError(apdu.SW_WRONG_DATA)
    keys = {}
    for pk in issuers:
        if not isinstance(pk, bytes) or len(pk) != 32:
            raise apdu.ApduError(apdu.SW_WRONG_DATA)
        keys[envelope.key_id(pk)] = pk
    cert = verify_cert(cert_env, keys, fields.KIND_POS, app.now())
    if cert[fields.CERT_KEY] != cf[st.C_PUB]:
        raise apdu.ApduError(apdu.SW_DATA_INVALID)
    check.need_bytes(cert, fields.CERT_MERCHANT, 8)
    new = {
        st.C_PHASE: st.PHASE_PERSO,
        st.C_SEED: cf[st.C_SEED],
        st.C_PUB: cf[st.C_PUB],
        st.C_CERT: cert_env,
        st.C_ISSUERS: issuers,
        st.C_CONFIG: st.check_config(m.get(fields.PF_CONFIG, {})),
        st.C_UPDATE: 0,
    }
    if fields.PF_HOTLIST in m:
        hot_env = check.need_bytes(m, fields.PF_HOTLIST)
        st.parse_hotlist(hot_env, issuers)
        new[st.C_HOTLIST] = hot_env
    app.commit_config(new)
    return b""

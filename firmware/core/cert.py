# Certificate policy: what makes a device certificate acceptable (issuer signature, kind,
# id and key shapes, expiry by the checker's clock, a wallet's limits map).
from .apdu import (
    SW_BAD_SIGNATURE,
    SW_DATA_INVALID,
    SW_EXPIRED,
    SW_WRONG_DATA,
    ApduError,
)
from .envelope import TAG_CERT, open_envelope, sig_ok
from .fields import (
    CERT_EXPIRES,
    CERT_ID,
    CERT_ISSUER,
    CERT_KEY,
    CERT_KIND,
    CERT_LIMITS,
    KIND_WALLET,
)


def verify_cert(cert_env, issuer_keys, kind, now=0, table=None):
    """Check a device certificate against the trusted issuer keys {key_id: public_key}.

    Returns the certificate body. `now` 0 means "no clock": expiry is then not checked.
    `table`: a function opening an issuer key's table (ed25519.verify), or None.
    """
    return check_cert(open_envelope(cert_env), issuer_keys, kind, now, table)


def check_cert(opened, issuer_keys, kind, now=0, table=None):
    """verify_cert of an envelope already opened: open_envelope's (body bytes, body, sig)."""
    body_bytes, body, sig = opened
    issuer_id = body.get(CERT_ISSUER)
    issuer = issuer_keys.get(issuer_id) if isinstance(issuer_id, bytes) else None
    if issuer is None or not sig_ok(issuer, TAG_CERT + body_bytes, sig, table):
        raise ApduError(SW_BAD_SIGNATURE)
    if body.get(CERT_KIND) != kind:
        raise ApduError(SW_DATA_INVALID)
    dev = body.get(CERT_ID)
    key = body.get(CERT_KEY)
    if not isinstance(dev, bytes) or len(dev) != 8 or not isinstance(key, bytes) or len(key) != 32:
        raise ApduError(SW_WRONG_DATA)
    expires = body.get(CERT_EXPIRES)
    if not isinstance(expires, int) or isinstance(expires, bool):
        raise ApduError(SW_WRONG_DATA)
    if now and expires < now:
        raise ApduError(SW_EXPIRED)
    if kind == KIND_WALLET and not isinstance(body.get(CERT_LIMITS), dict):
        raise ApduError(SW_WRONG_DATA)
    return body

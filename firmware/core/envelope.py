# Signed objects: the domain-separation tags, envelopes ([body bytes, Ed25519 signature]),
# the journal hash chain and key ids. Ed25519 is imported only when a signature is made or
# checked, so a command that opens an envelope without verifying it does not load it.
from . import cbor
from .apdu import SW_BAD_SIGNATURE, SW_NO_RAM, SW_WRONG_DATA, ApduError
from .runtime import sha256

# ---- domain-separation tags: prefixed to the body before signing ------------------------
TAG_CERT = b"tapcash/cert/v1\x00"
TAG_PAYMENT = b"tapcash/payment/v1\x00"
TAG_RECEIPT = b"tapcash/receipt/v1\x00"
TAG_VOUCHER = b"tapcash/voucher/v1\x00"
TAG_UPDATE = b"tapcash/update/v1\x00"
TAG_HOTLIST = b"tapcash/hotlist/v1\x00"
TAG_ACK = b"tapcash/ack/v1\x00"
TAG_STATUS = b"tapcash/status/v1\x00"
TAG_JOURNAL = b"tapcash/journal/v1\x00"  # journal hash chain (not a signature: journal_link)
TAG_RULE = b"tapcash/rule/v1\x00"


# ---- envelopes ---------------------------------------------------------------------------
def sig_ok(public_key, msg, sig, table=None):
    """ed25519.verify, where running out of RAM is never "bad signature": on MemoryError the
    heap is collected and the check tried once more; still out of memory, ApduError(6F01).
    `table`: ed25519.verify's (the key's table, when the caller keeps one)."""
    from . import ed25519

    try:
        return ed25519.verify(public_key, msg, sig, table)
    except MemoryError:
        pass
    import gc

    gc.collect()
    try:
        return ed25519.verify(public_key, msg, sig, table)
    except MemoryError:
        raise ApduError(SW_NO_RAM) from None


def seal(tag, body, seed, key=None):
    """Encode body, sign TAG||body with seed, return the envelope bytes [body, sig]. `key`: the
    seed's ed25519.signing_key, when the caller keeps one."""
    from . import ed25519

    body_bytes = cbor.encode(body)
    return cbor.encode([body_bytes, ed25519.sign(seed, tag + body_bytes, key)])


def open_envelope(data):
    """Split an envelope into (body_bytes, body, sig) without checking the signature.

    Raises ApduError(SW_WRONG_DATA) on any malformed input.
    """
    try:
        env = cbor.decode(data) if not isinstance(data, list) else data
        if not isinstance(env, list) or len(env) != 2:
            raise ApduError(SW_WRONG_DATA)
        body_bytes, sig = env
        if not isinstance(body_bytes, bytes) or not isinstance(sig, bytes) or len(sig) != 64:
            raise ApduError(SW_WRONG_DATA)
        body = cbor.decode(body_bytes)
    except cbor.DecodeError:
        raise ApduError(SW_WRONG_DATA) from None
    if not isinstance(body, dict):
        raise ApduError(SW_WRONG_DATA)
    return body_bytes, body, sig


def envelope_bytes(value):
    """The encoding of an envelope field given as bytes (normal) or as a decoded [body, sig]
    array; ApduError(SW_WRONG_DATA) for anything else."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, list):
        try:
            return cbor.encode(value)
        except ValueError:
            raise ApduError(SW_WRONG_DATA) from None
    raise ApduError(SW_WRONG_DATA)


def verify_envelope(tag, data, public_key):
    """Return the body of a valid envelope signed by public_key; the signature is checked over
    the bytes received, never over a re-encoding. Raises ApduError on failure."""
    body_bytes, body, sig = open_envelope(data)
    if not sig_ok(public_key, tag + body_bytes, sig):
        raise ApduError(SW_BAD_SIGNATURE)
    return body


def journal_link(prev, seq, record):
    """The journal hash chain: SHA-256(TAG_JOURNAL || prev || seq as u32 big-endian ||
    SHA-256(record bytes as journaled)); 32 zero bytes before the first record. A device
    status signs the chain value at its last seq, an ACK names the value at its `upto`."""
    h = sha256(TAG_JOURNAL)
    h.update(prev)
    h.update(bytes((seq >> 24 & 0xFF, seq >> 16 & 0xFF, seq >> 8 & 0xFF, seq & 0xFF)))
    h.update(sha256(record).digest())
    return h.digest()


def key_id(public_key):
    return sha256(public_key).digest()[:8]


def body_hash(body_bytes):
    return sha256(body_bytes).digest()

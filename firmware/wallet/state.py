# The wallet's persistent state: one CBOR map with small integer keys, committed atomically
# through core.storage.StateStore. Every command that changes anything builds a new map (a
# shallow copy of the current one) and commits it once, at the end: the commit is the
# command's decision point. Before it, an error changes nothing; after it, the command has
# happened, whatever comes next (a power cut included).
#
# The map is decoded once per power-on and kept in RAM (under 1 KB); handlers never mutate it
# in place.
from ..core.runtime import const, sha256

# ---- phases ------------------------------------------------------------------------------
PHASE_BLANK = const(0)  # nothing committed yet
PHASE_KEYED = const(1)  # PERSO KEYGEN done: the device key exists, no certificate yet
PHASE_PERSO = const(2)  # PERSO FINISH done: a working wallet

# ---- keys of the state map -----------------------------------------------------------------
S_PHASE = const(0)
S_SEED = const(1)  # Ed25519 private seed, 32 bytes: never leaves the card
S_PUB = const(2)  # its public key (cached: deriving it costs a scalar multiplication)
S_CERT = const(3)  # certificate envelope bytes (issuer-signed)
S_ISSUERS = const(4)  # trusted issuer public keys, list of bstr 32
S_ID = const(5)  # wallet id (from the certificate)
S_LIMITS = const(6)  # limits map (proto.LIM_*), from the certificate over fields.DEFAULT_LIMITS
S_SERIAL = const(7)  # certificate serial, grows on renewal
S_PIN = const(8)  # PIN hash (pin_hash)
S_PIN_TRIES = const(9)  # tries left, 0 = blocked
S_PUK = const(10)  # PUK hash
S_PUK_TRIES = const(11)
S_COUNTER = const(12)  # counter of the last payment signed (0 before the first)
S_BALANCE = const(13)  # main purse balance
S_PREV = const(14)  # chain head: SHA-256 of the last payment body (32 zero bytes before)
S_SPENT = const(15)  # cumulative amount paid, all time
S_SYNC_COUNTER = const(16)  # the ledger holds every payment up to this counter
S_SYNC_SPENT = const(17)  # S_SPENT at that counter
S_LOADS = const(18)  # vouchers applied
S_UPDATE = const(19)  # number of the last update applied
S_PENDING = const(20)  # staged value received from other wallets, not yet released
S_STAGED_IN = const(21)  # all staged value ever received (for reconciliation)
S_STAGED_USED = const(22)  # staged value re-spent (LIM_STAGED_SPEND), not yet released
S_LAST_CHAL = const(23)  # challenge of the last payment (absent before the first)
S_LAST_BODY = const(24)  # body bytes of the last payment (absent before the first)
S_RX_CHAL = const(25)  # challenge issued by GET CHALLENGE, consumed by RECEIVE
S_LAST_RX = const(26)  # SHA-256 of the last transfer body received (idempotent RECEIVE)
S_OUT_SEQ = const(27)  # journal seq of the record the last committing command owes
S_OUT = const(28)  # that record (bytes); absent when it is the payment record of S_LAST_BODY
S_PURSES = const(29)  # earmarked purses: [[program id, balance, rule envelope], ...] (absent: none)
S_PAYEES = const(30)  # POS certificates verified for purses: [[hash16, id, merchant, category,
#                      expires], ...], at most 4, most recent last (wallet/purse_pay.py)

# ---- fields of one earmarked purse (an entry of S_PURSES) ----------------------------------
P_PROGRAM = const(0)
P_BALANCE = const(1)
P_RULE = const(2)  # the programme's rule envelope bytes, as loaded (issuer-signed)

PIN_TRIES = const(3)
PUK_TRIES = const(10)
ZERO32 = b"\x00" * 32

_TAG_PIN = b"tapcash/pin/v1\x00"
_TAG_PUK = b"tapcash/puk/v1\x00"


def load(store):
    """The state map committed in `store`, or a blank one."""
    from ..core import cbor

    data = store.load()
    if data is None:
        return {S_PHASE: PHASE_BLANK}
    return cbor.decode(data)


def encode(state, out=None):
    """The state's CBOR bytes; with `out` (a bytearray): appended to it (StateStore.commit_obj
    builds the slot in one buffer)."""
    from ..core import cbor

    return cbor.encode(state) if out is None else cbor.encode_into(state, out)


def new_wallet(seed, pub):
    """The state right after PERSO KEYGEN."""
    return {S_PHASE: PHASE_KEYED, S_SEED: seed, S_PUB: pub}


def secret_hash(tag_is_puk, wallet_id, digits):
    h = sha256(_TAG_PUK if tag_is_puk else _TAG_PIN)
    h.update(wallet_id)
    h.update(digits)
    return h.digest()


def digits_ok(value, lo, hi):
    if not isinstance(value, bytes) or not lo <= len(value) <= hi:
        return False
    for c in value:
        if c < 0x30 or c > 0x39:
            return False
    return True


def same(a, b):
    """Compare two byte strings without an early exit on the first difference."""
    if len(a) != len(b):
        return False
    d = 0
    for i in range(len(a)):
        d |= a[i] ^ b[i]
    return d == 0


def rule_of(purse):
    """The rule body of an earmarked purse entry (its envelope was verified at LOAD)."""
    from ..core import envelope

    return envelope.open_envelope(purse[P_RULE])[1]


def limits(cert_body):
    """The wallet limits of a certificate body over fields.DEFAULT_LIMITS (unknown keys are
    ignored; a known one that is not a non-negative int is 6A80)."""
    from ..core import apdu, check, fields

    given = cert_body.get(fields.CERT_LIMITS)
    if not isinstance(given, dict):
        raise apdu.ApduError(apdu.SW_WRONG_DATA)
    out = {}
    for k in fields.DEFAULT_LIMITS:
        out[k] = check.opt_int(given, k, fields.DEFAULT_LIMITS[k])
    return out

# The POS terminal's persistent state, in three crash-safe pieces (core.storage):
#
#   pos.cf  StateStore  configuration: phase, device key, certificate, issuer keys, config map,
#                       hot list envelope, last update number. Written by PERSO and APPLY only.
#   pos.rt  StateStore  run state: torn-transaction log, per-wallet last-counter / velocity
#                       table (LRU), payments taken under the current hot list, and the journal
#                       seq this state reflects. Written before every PAY is sent (the torn entry
#                       must be durable then), carrying the effects of the previous payments.
#   pos.j   Journal     one record per accepted payment: the source of truth.
#
# The journal is authoritative and the run state a cache of it: after a payment is journaled
# the run state is updated in RAM only (table, count, torn entry cleared) and reaches flash
# with the next write (the next payment's torn entry, an ACK, or power-on). At power-on
# `PosApp._replay` folds the records after R_APPLIED back in, so a power cut anywhere loses
# nothing and a journaled payment's torn entry never comes back. Two flash writes per
# payment: the run state (before PAY) and the journal append (before RECEIPT).
#
# Maps and lists are never mutated in place: a change builds a new object, so an error before
# the commit leaves RAM and flash as they were.
from ..core import apdu, cbor, check, envelope, fields
from ..core.runtime import const
from ..core.units import day_of  # noqa: F401 - st.day_of, as before

PHASE_BLANK = const(0)
PHASE_KEYED = const(1)
PHASE_PERSO = const(2)

# ---- pos.cf keys -------------------------------------------------------------------------
C_PHASE = const(0)
C_SEED = const(1)  # Ed25519 seed, 32 bytes: never leaves the terminal
C_PUB = const(2)  # its public key (cached)
C_CERT = const(3)  # POS certificate envelope (bytes)
C_ISSUERS = const(4)  # trusted issuer public keys
C_CONFIG = const(5)  # config map from PERSO FINISH (proto.CFG_*)
C_HOTLIST = const(6)  # hot list envelope (bytes), absent before the first one
C_UPDATE = const(7)  # number of the last update applied

# ---- pos.rt keys -------------------------------------------------------------------------
R_APPLIED = const(0)  # journal seq of the last record reflected in this state
R_TABLE = const(1)  # [[wallet id, last counter, day, payments that day, amount that day], ...]
R_HOT_VERSION = const(2)  # hot list version the payment count below belongs to
R_HOT_PAYMENTS = const(3)  # payments accepted since that hot list was applied
R_TORN = const(4)  # torn-transaction log: [[wallet id, challenge, amount, time], ...]

# table entry fields
T_WALLET = const(0)
T_COUNTER = const(1)
T_DAY = const(2)
T_COUNT = const(3)
T_AMOUNT = const(4)

# torn entry fields: [wallet id, challenge, amount, time]
N_WALLET = const(0)
N_CHALLENGE = const(1)
N_AMOUNT = const(2)
N_TIME = const(3)

CF_NAME = "pos.cf"
RT_NAME = "pos.rt"
JOURNAL_NAME = "pos.j"


def load_map(store, blank):
    data = store.load()
    if data is None:
        return blank
    return cbor.decode(data)


def new_run():
    return {R_APPLIED: 0, R_TABLE: [], R_HOT_VERSION: 0, R_HOT_PAYMENTS: 0, R_TORN: []}


def effective_config(base, stored):
    """proto defaults <- the app's constructor config <- the config personalised into it."""
    cfg = dict(fields.DEFAULT_POS_CONFIG)
    for src in (base, stored):
        if src:
            for k in src:
                if k in cfg:
                    cfg[k] = src[k]
    return cfg


def check_config(m):
    """A config map from PERSO FINISH: known keys with unsigned int values; others ignored."""
    if not isinstance(m, dict):
        raise apdu.ApduError(apdu.SW_WRONG_DATA)
    out = {}
    for k in m:
        if k in fields.DEFAULT_POS_CONFIG:
            out[k] = check.need_int(m, k, 0, 0xFFFFFFFF)
    for k in (fields.CFG_TORN_MAX, fields.CFG_TABLE_MAX, fields.CFG_JOURNAL_MAX):
        if k in out and out[k] < 1:
            raise apdu.ApduError(apdu.SW_WRONG_DATA)
    return out


# ---- last-counter / velocity table (LRU: most recently used last) ---------------------------
def table_find(table, wallet):
    for i in range(len(table) - 1, -1, -1):
        if table[i][T_WALLET] == wallet:
            return table[i]
    return None


def table_record(table, wallet, counter, day, amount, max_entries):
    """A new table with this payment recorded and the least recently used entries evicted."""
    out = []
    old = None
    for e in table:
        if e[T_WALLET] == wallet:
            old = e
        else:
            out.append(e)
    if old is not None and old[T_DAY] == day:
        entry = [wallet, counter, day, old[T_COUNT] + 1, old[T_AMOUNT] + amount]
    else:
        entry = [wallet, counter, day, 1, amount]
    if old is not None and old[T_COUNTER] > counter:
        entry[T_COUNTER] = old[T_COUNTER]
    out.append(entry)
    while len(out) > max_entries:
        out.pop(0)
    return out


# ---- torn-transaction log ------------------------------------------------------------------
def torn_find(torn, wallet):
    for e in torn:
        if e[N_WALLET] == wallet:
            return e
    return None


def torn_without(torn, wallet, challenge=None):
    return [
        e
        for e in torn
        if not (e[N_WALLET] == wallet and (challenge is None or e[N_CHALLENGE] == challenge))
    ]


def torn_aged(torn, now, life_s):
    """Entries still within their lifetime (all of them when the clock is unknown)."""
    if not now:
        return torn
    return [e for e in torn if not (e[N_TIME] and now - e[N_TIME] > life_s)]


def torn_with(torn, entry, max_entries):
    out = torn_without(torn, entry[N_WALLET]) + [entry]
    while len(out) > max_entries:
        out.pop(0)
    return out


def verify_by_issuer(tag, env, issuers):
    """Body of an envelope signed by one of the trusted issuer keys (hot lists, updates and
    acks carry no key id: there are at most a few keys to try)."""
    body_bytes, body, sig = envelope.open_envelope(env)
    for pk in issuers:
        if envelope.sig_ok(pk, tag + body_bytes, sig):
            return body
    raise apdu.ApduError(apdu.SW_BAD_SIGNATURE)


def decode_map(data):
    """A CBOR map from command data; ApduError(6A80) for anything else."""
    try:
        m = cbor.decode(data)
    except Exception:
        raise apdu.ApduError(apdu.SW_WRONG_DATA) from None
    if not isinstance(m, dict):
        raise apdu.ApduError(apdu.SW_WRONG_DATA)
    return m


# ---- hot list ------------------------------------------------------------------------------
def parse_hotlist(env, issuers):
    """(version, issued, revoked ids) of a hot list envelope; `issuers` None skips the
    signature check (an envelope this POS verified before storing it)."""
    if issuers is None:
        _b, body, _s = envelope.open_envelope(env)
    else:
        body = verify_by_issuer(envelope.TAG_HOTLIST, env, issuers)
    version = check.need_int(body, fields.HOT_VERSION, 1)
    issued = check.need_int(body, fields.HOT_ISSUED)
    revoked = body.get(fields.HOT_REVOKED)
    if not isinstance(revoked, list):
        raise apdu.ApduError(apdu.SW_WRONG_DATA)
    prev = b""
    for r in revoked:
        if not isinstance(r, bytes) or len(r) != 8 or r <= prev:
            raise apdu.ApduError(apdu.SW_WRONG_DATA)  # binary search needs sorted, unique
        prev = r
    return version, issued, revoked


def is_revoked(revoked, device_id):
    lo = 0
    hi = len(revoked)
    while lo < hi:
        mid = (lo + hi) // 2
        if revoked[mid] < device_id:
            lo = mid + 1
        else:
            hi = mid
    return lo < len(revoked) and revoked[lo] == device_id


# ---- journal records -----------------------------------------------------------------------
def payment_record(payment_env, receipt_env, cert_hash):
    return cbor.encode(
        {
            fields.REC_TYPE: fields.RT_PAYMENT,
            fields.REC_SIGNED: payment_env,
            fields.REC_RECEIPT: receipt_env,
            fields.REC_CERT_HASH: cert_hash,
        }
    )


def record_facts(record_bytes):
    """(wallet, counter, challenge, amount, time) of a payment record of this POS's journal."""
    rec = cbor.decode(record_bytes)
    _b, pay, _s = envelope.open_envelope(rec[fields.REC_SIGNED])
    _b, rcpt, _s = envelope.open_envelope(rec[fields.REC_RECEIPT])
    return (
        pay[fields.PAY_WALLET],
        pay[fields.PAY_COUNTER],
        pay[fields.PAY_CHALLENGE],
        pay[fields.PAY_AMOUNT],
        rcpt[fields.RCPT_TIME],
    )

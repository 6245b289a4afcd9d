# The field numbers of every CBOR message of the protocol (the keys of its maps), with the
# enumerations and defaults that go with them. Numbers only: the code that checks or builds
# a message lives with its job (apdu, envelope, cert, check) or its app.
from .runtime import const

# ---- certificate body (issuer-signed) ----------------------------------------------------
CERT_KIND = const(0)  # KIND_WALLET / KIND_POS
CERT_ID = const(1)  # device id, 8 bytes
CERT_KEY = const(2)  # Ed25519 public key, 32 bytes
CERT_ISSUER = const(3)  # issuer key id, 8 bytes
CERT_EXPIRES = const(4)  # unix seconds
CERT_LIMITS = const(5)  # wallet: limits map (LIM_*)
CERT_MERCHANT = const(6)  # POS: merchant id, 8 bytes
CERT_SERIAL = const(7)  # issuer's certificate serial, grows on renewal
CERT_CATEGORY = const(8)  # POS: merchant category code (int), for earmarked purses

KIND_WALLET = const(1)
KIND_POS = const(2)

LIM_BALANCE_MAX = const(1)
LIM_PAYMENT_MAX = const(2)
LIM_OFFLINE_COUNT = const(3)  # consecutive offline payments before a sync (like EMV UCOL)
LIM_OFFLINE_AMOUNT = const(4)  # cumulative offline amount before a sync
LIM_NO_CVM = const(5)  # payments above this need the PIN
LIM_STAGED_SPEND = const(6)  # staged (unsynced) received value that may be re-spent; 0 = e-CNY

DEFAULT_LIMITS = {
    LIM_BALANCE_MAX: 100000,  # minor units (cents): 1,000.00
    LIM_PAYMENT_MAX: 50000,
    LIM_OFFLINE_COUNT: 10,
    LIM_OFFLINE_AMOUNT: 50000,
    LIM_NO_CVM: 5000,
    LIM_STAGED_SPEND: 0,
}

# ---- payment body (wallet-signed) --------------------------------------------------------
PAY_WALLET = const(0)
PAY_COUNTER = const(1)
PAY_AMOUNT = const(2)
PAY_PAYEE = const(3)  # POS device id, or receiving wallet id for a transfer
PAY_CHALLENGE = const(4)  # 16 random bytes from the payee
PAY_PREV = const(5)  # SHA-256 of the previous payment body: the wallet's hash chain
PAY_PURSE = const(6)  # 0 = main purse only; k = earmarked purse k (1..MAX_PURSES) paid part
PAY_TIME = const(7)  # payee's clock, unix seconds (informational)
PAY_BALANCE = const(8)  # main purse balance after this payment
PAY_KIND = const(9)  # PAYKIND_POS / PAYKIND_TRANSFER
PAY_PROGRAM = const(10)  # earmarked part: program id (bstr 8) of the purse that paid it
PAY_EARMARKED = const(11)  # earmarked part: amount paid from that purse (1..amount)
PAY_PURSE_BALANCE = const(12)  # earmarked part: that purse's balance after this payment

PAYKIND_POS = const(1)
PAYKIND_TRANSFER = const(2)

# PAY command data
REQ_CHALLENGE = const(0)
REQ_AMOUNT = const(1)
REQ_PAYEE = const(2)
REQ_TIME = const(3)
REQ_KIND = const(4)
REQ_PIN = const(5)
REQ_PURSE = const(6)  # absent: the card chooses; 0: main purse only; k: purse k of INFO
REQ_PAYEE_CERT = const(7)  # the POS's certificate envelope (sent when INFO flags FLAG_PURSES)

# ---- INFO map (SELECT / GET INFO response) ----------------------------------------------
INFO_VERSION = const(0)
INFO_ID = const(1)
INFO_CERT = const(2)
INFO_COUNTER = const(3)  # wallet: counter of its last payment (0 before the first)
INFO_LAST_CHALLENGE = const(4)  # wallet: challenge of its last payment
INFO_OFFLINE_LEFT = const(5)  # wallet: payments left before a sync is needed
INFO_FLAGS = const(6)
INFO_BALANCE = const(7)  # wallet, only after a verified PIN or on a visual card
INFO_SEQ = const(8)  # POS: last journal seq
INFO_RECORDS = const(9)  # POS: unpruned journal records
INFO_HOT_VERSION = const(10)  # POS: applied hot list version (0: none)
INFO_UPDATE = const(11)  # POS: last applied update number
INFO_TORN = const(12)  # POS: entries in the torn-transaction log
INFO_PURSES = const(13)  # wallet, with the balance only: [[program, balance, expires], ...]

FLAG_PIN_BLOCKED = const(0x01)  # wallet
FLAG_HOT_STALE = const(0x02)  # POS: hot list missing or stale, offline acceptance refused
FLAG_JOURNAL_FULL = const(0x04)  # POS: journal full, sync first
FLAG_PURSES = const(0x08)  # wallet: an earmarked purse holds value (send REQ_PAYEE_CERT)
FLAG_BLANK = const(0x80)  # not personalised

# ---- PERSO FINISH data -------------------------------------------------------------------
PF_CERT = const(0)
PF_ISSUERS = const(1)  # list of trusted issuer public keys
PF_PIN = const(2)  # wallet
PF_PUK = const(3)  # wallet
PF_CONFIG = const(4)  # POS, optional: config map (CFG_*), overrides the defaults
PF_HOTLIST = const(5)  # POS, optional: initial hot list envelope

# ---- POS configuration (PERSO FINISH field 4) -------------------------------------------
CFG_FLOOR = const(1)  # max amount of one offline payment at this POS
CFG_VELOCITY_COUNT = const(2)  # payments per wallet per day (POS clock day)
CFG_VELOCITY_AMOUNT = const(3)  # amount per wallet per day
CFG_TORN_MAX = const(4)  # torn-transaction log entries
CFG_TORN_LIFE_S = const(5)  # torn entry lifetime
CFG_TABLE_MAX = const(6)  # per-wallet last-counter table entries (LRU)
CFG_HOT_MAX_AGE_S = const(7)  # hot list older than this (issued vs POS clock): refuse
CFG_HOT_MAX_PAYMENTS = const(8)  # more payments than this since the hot list was applied: refuse
CFG_JOURNAL_MAX = const(9)  # journal records before a sync is needed

DEFAULT_POS_CONFIG = {
    CFG_FLOOR: 20000,
    CFG_VELOCITY_COUNT: 20,
    CFG_VELOCITY_AMOUNT: 100000,
    CFG_TORN_MAX: 5,
    CFG_TORN_LIFE_S: 7200,
    CFG_TABLE_MAX: 128,
    CFG_HOT_MAX_AGE_S: 604800,
    CFG_HOT_MAX_PAYMENTS: 2000,
    CFG_JOURNAL_MAX: 4096,
}

# ---- EXPORT request / response -----------------------------------------------------------
EXP_SINCE = const(0)  # request: records with seq > since
EXP_MAX = const(1)  # request: at most this many records
EXP_RECORDS = const(0)  # response: [[seq, record bytes], ...] (the bytes as journaled)
EXP_MORE = const(1)  # response: true when records after the last one sent remain
EXP_STATUS = const(2)  # response, last page only: device status envelope
EXP_LAST = const(3)  # response: last journal seq (unsigned; the sync tool's progress)

# ---- receipt body (POS-signed) -----------------------------------------------------------
RCPT_POS = const(0)
RCPT_WALLET = const(1)
RCPT_COUNTER = const(2)
RCPT_AMOUNT = const(3)
RCPT_PAYMENT_HASH = const(4)
RCPT_SEQ = const(5)  # POS journal sequence number
RCPT_TIME = const(6)

# ---- voucher body (issuer-signed LOAD) ---------------------------------------------------
VCH_WALLET = const(0)
VCH_NUMBER = const(1)  # must equal the wallet's loads applied + 1: each voucher exactly once
VCH_AMOUNT = const(2)
VCH_SOURCE = const(3)  # VSRC_*
VCH_REF = const(4)  # free reference (payroll batch, transfer id)
VCH_PURSE = const(5)  # 0: main purse; 1: the earmarked purse of the rule in VCH_RULE
VCH_RULE = const(6)  # earmarked load: the programme's rule envelope (issuer-signed)

VSRC_TOPUP = const(1)
VSRC_TRANSFER = const(2)  # release of staged value received offline
VSRC_PAYROLL = const(3)
VSRC_PROGRAM = const(4)  # earmarked purse load of a programme

# ---- purse rule body (issuer-signed; firmware/core/purse.py applies it) -------------------
RULE_PROGRAM = const(0)  # programme id, 8 bytes
RULE_KIND = const(1)  # PROG_SUBSIDY / PROG_PREPAID
RULE_MERCHANTS = const(2)  # allowed merchant ids (array of bstr 8), optional
RULE_CATEGORIES = const(3)  # allowed merchant categories (array of uint), optional
RULE_FROM = const(4)  # valid from (unix s)
RULE_EXPIRES = const(5)  # valid until (unix s, inclusive)
RULE_CAP = const(6)  # most paid from the purse in one payment (0: no cap)
RULE_UNIT = const(7)  # unit price: the purse pays whole units only (0: any amount)
RULE_FUNDER = const(8)  # funder's account (text): where unspent value returns

PROG_SUBSIDY = const(1)  # spendable at any allowed merchant
PROG_PREPAID = const(2)  # prepaid package: escrow at the ledger, released per use

MAX_PURSES = const(3)  # earmarked purses a card holds beside the main purse

# ---- update body (issuer-signed APPLY) ---------------------------------------------------
UPD_DEVICE = const(0)
UPD_NUMBER = const(1)  # > the device's last applied update number
UPD_CERT = const(2)  # renewed certificate (signed envelope bytes), optional
UPD_SYNCED_COUNTER = const(3)  # ledger has every payment up to this counter
UPD_SYNCED_SPENT = const(4)  # wallet's cumulative spent total at that counter
UPD_UNBLOCK_PIN = const(5)  # true: reset the PIN try counter
UPD_HOTLIST = const(6)  # POS: signed hot list envelope
UPD_NEW_PIN = const(7)  # optional new PIN (bytes of digits)
UPD_PURSE_CLEAR = const(8)  # wallet: programme ids whose purses are cleared (expired, cancelled)

# ---- hot list body (issuer-signed) -------------------------------------------------------
HOT_VERSION = const(0)
HOT_ISSUED = const(1)  # unix seconds
HOT_REVOKED = const(2)  # sorted list of device ids

# ---- ack body (ledger-signed) ------------------------------------------------------------
ACK_DEVICE = const(0)
ACK_UPTO = const(1)  # journal sequence number the ledger has stored durably
ACK_TIME = const(2)
ACK_DIGEST = const(3)  # journal chain value at ACK_UPTO: the records the ledger holds

# ---- device status (device-signed, ends an export) ---------------------------------------
ST_DEVICE = const(0)
ST_SEQ = const(1)  # last journal sequence number
ST_COUNTER = const(2)
ST_BALANCE = const(3)
ST_PREV = const(4)  # head of the hash chain
ST_PENDING = const(5)  # staged value received, not yet released
ST_LOADS = const(6)
ST_DIGEST = const(7)  # journal chain value at ST_SEQ (journal_link over the records)
ST_PURSES = const(8)  # wallet: [[program, balance], ...] of its earmarked purses

# ---- journal records (wallet and POS) ----------------------------------------------------
REC_TYPE = const(0)
REC_SIGNED = const(1)  # signed envelope (payment, voucher, transfer) as received or sent
REC_RECEIPT = const(2)  # POS: its signed receipt; wallet: the receipt it got back
REC_CERT = const(3)  # payer certificate (transfer received) or wallet cert (POS journal)
REC_CERT_HASH = const(4)  # POS journal: SHA-256 of the payer certificate body

RT_PAYMENT = const(1)  # wallet: a payment it signed; POS: a payment it accepted
RT_TRANSFER_IN = const(2)  # wallet: staged value received from another wallet
RT_LOAD = const(3)  # wallet: voucher applied
RT_RECEIPT = const(4)  # wallet: POS receipt for an earlier payment

# The tapcash card protocol in one namespace: the hosts' (issuer, sync tool, ledger,
# simulator, tests) single import of it. It is implemented once, split by job so that a
# device imports only what it uses (firmware modules import the parts, never this file):
#
#   apdu.py      AID, instruction bytes, status words, ApduError, APDU framing
#   envelope.py  domain-separation tags, signed envelopes, journal chain, key ids
#   cert.py      certificate policy (verify_cert)
#   check.py     field checks of decoded maps (need_int, need_bytes, opt_int)
#   fields.py    the field numbers of every CBOR message, enumerations, defaults
#
# docs/PROTOCOL.md describes the same things in prose; keep the two in step.
from .apdu import *  # noqa: F403
from .cert import verify_cert  # noqa: F401
from .check import *  # noqa: F403
from .envelope import *  # noqa: F403
from .fields import *  # noqa: F403

# Earmarked purses: the rule of a programme, applied the same way by the card (choosing the
# purse), the POS (checking the card's choice) and the ledger (crediting it). One place, so
# the three agree on every input. docs/PROTOCOL.md §2.9 describes the rule object.
#
#   rule = check_rule(body)              # validated rule body (6A80 when malformed)
#   allows(rule, merchant, category, t)  # payee and time allowed (t = the payee's clock)
#   share(rule, balance, amount)         # how much of `amount` the purse pays (0: none)
from . import apdu, check, fields
from .apdu import ApduError


def _int(rule, key):
    return check.opt_int(rule, key, 0)


def check_rule(rule):
    """The rule body when well formed, else ApduError(6A80)."""
    check.need_bytes(rule, fields.RULE_PROGRAM, 8)
    check.need_int(rule, fields.RULE_KIND, fields.PROG_SUBSIDY, fields.PROG_PREPAID)
    ms = rule.get(fields.RULE_MERCHANTS, [])
    cs = rule.get(fields.RULE_CATEGORIES, [])
    if not isinstance(ms, list) or not isinstance(cs, list) or not (ms or cs):
        raise ApduError(apdu.SW_WRONG_DATA)
    for m in ms:
        if not isinstance(m, bytes) or len(m) != 8:
            raise ApduError(apdu.SW_WRONG_DATA)
    for c in cs:
        if not isinstance(c, int) or isinstance(c, bool) or c < 0:
            raise ApduError(apdu.SW_WRONG_DATA)
    start = _int(rule, fields.RULE_FROM)
    if check.need_int(rule, fields.RULE_EXPIRES, 1) < start:
        raise ApduError(apdu.SW_WRONG_DATA)
    _int(rule, fields.RULE_CAP)
    _int(rule, fields.RULE_UNIT)
    return rule


def allows(rule, merchant, category, t):
    """True when the rule lets a POS of `merchant` (8 bytes) in `category` take earmarked
    value at time `t`. An unknown time (0) is never allowed: expiry cannot be judged."""
    if not t or t < _int(rule, fields.RULE_FROM) or t > rule[fields.RULE_EXPIRES]:
        return False
    if merchant in rule.get(fields.RULE_MERCHANTS, ()):
        return True
    return category in rule.get(fields.RULE_CATEGORIES, ())


def share(rule, balance, amount):
    """The earmarked part of a payment of `amount` from a purse holding `balance`: as much as
    possible, within the cap, in whole units. 0 when the purse cannot pay any of it."""
    e = balance if balance < amount else amount
    cap = _int(rule, fields.RULE_CAP)
    if cap and e > cap:
        e = cap
    unit = _int(rule, fields.RULE_UNIT)
    if unit:
        e -= e % unit
    return e if e > 0 else 0


def share_ok(rule, earmarked, amount):
    """True when `earmarked` is a part of `amount` the rule allows a purse to pay (the POS and
    the ledger check the card's split with this)."""
    if earmarked < 1 or earmarked > amount:
        return False
    cap = _int(rule, fields.RULE_CAP)
    if cap and earmarked > cap:
        return False
    unit = _int(rule, fields.RULE_UNIT)
    return not unit or earmarked % unit == 0

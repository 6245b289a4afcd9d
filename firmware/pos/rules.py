# Payments with an earmarked part at the POS (PROTOCOL.md §2.9, §4.2): the PAY answer split,
# the purse rule check, and the rules verified so far. Imported by pay.py only when a purse
# paid part of a payment: a main-purse POS never loads this module (heap).
from ..core import apdu, cbor, check, envelope, fields
from ..core.runtime import sha256


class RuleCache:
    """Purse rules (issuer-signed, PROTOCOL.md §2.9) verified by this POS, in RAM by the hash
    of their envelope: a programme's rule costs one signature check per power-on, not one per
    payment. Bounded like CertCache."""

    def __init__(self, entries):
        self.entries = entries
        self._keys = []
        self._vals = []

    def verify(self, rule_env, issuer_keys):
        """The rule body of a valid, well-formed rule envelope; raises ApduError otherwise."""
        from ..core import purse

        if not isinstance(rule_env, bytes):
            raise apdu.ApduError(apdu.SW_WRONG_DATA)
        key = sha256(rule_env).digest()
        for i in range(len(self._keys)):
            if self._keys[i] == key:
                return self._vals[i]
        body_bytes, body, sig = envelope.open_envelope(rule_env)
        msg = envelope.TAG_RULE + body_bytes
        for pk in issuer_keys.values():
            if envelope.sig_ok(pk, msg, sig):  # out of RAM: ApduError(6F01), never "bad"
                purse.check_rule(body)
                self._keys.append(key)
                self._vals.append(body)
                while len(self._keys) > self.entries:
                    self._keys.pop(0)
                    self._vals.pop(0)
                return body
        raise apdu.ApduError(apdu.SW_BAD_SIGNATURE)


def split_answer(data):
    """(payment envelope bytes, rule envelope or None) of a PAY answer: the envelope, or for a
    payment with an earmarked part the array [body, sig, rule envelope]."""
    try:
        arr = cbor.decode(data)
    except Exception:
        raise apdu.ApduError(apdu.SW_WRONG_DATA) from None
    if not isinstance(arr, list) or len(arr) != 3:
        raise apdu.ApduError(apdu.SW_WRONG_DATA)
    return cbor.encode(arr[:2]), arr[2]


def check_purse(app, body, rule_env, amount, t):
    """The earmarked part of a checked payment body (0 for the main purse alone) when it
    follows its purse rule at this POS at time t (the time it sent); raises ApduError: 6984
    or 6A80 for a body that is no well-formed purse payment (pay.py: bad_payment), 6918 or
    6982 for an earmarked part its rule does not allow here (purse_rule), 6F01 out of RAM."""
    prog = body.get(fields.PAY_PROGRAM)
    number = check.opt_int(body, fields.PAY_PURSE, 0)
    if prog is None or number < 1:  # not a purse payment's shape: a bad payment (6984)
        if (
            number
            or prog is not None
            or rule_env is not None
            or fields.PAY_EARMARKED in body
            or fields.PAY_PURSE_BALANCE in body
        ):
            raise apdu.ApduError(apdu.SW_DATA_INVALID)
        return 0
    from ..core import purse

    if rule_env is None or check.need_int(body, fields.PAY_TIME) != t:
        raise apdu.ApduError(apdu.SW_PURSE)
    if app.rules is None:
        app.rules = RuleCache(8)
    rule = app.rules.verify(rule_env, app.issuer_keys)
    e = check.need_int(body, fields.PAY_EARMARKED, 1)
    check.need_int(body, fields.PAY_PURSE_BALANCE)
    if (
        rule[fields.RULE_PROGRAM] != prog
        or not purse.allows(rule, app.merchant_id, app.cert.get(fields.CERT_CATEGORY, 0), t)
        or not purse.share_ok(rule, e, amount)
    ):
        raise apdu.ApduError(apdu.SW_PURSE)
    return e

# Purse rules verified by this POS (PROTOCOL.md §2.9, §4.2), made at the first payment with
# an earmarked part: a main-purse POS never loads this module.
from ..core import proto
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
        from ..core import ed25519, purse

        if not isinstance(rule_env, bytes):
            raise proto.ApduError(proto.SW_WRONG_DATA)
        key = sha256(rule_env).digest()
        for i in range(len(self._keys)):
            if self._keys[i] == key:
                return self._vals[i]
        body_bytes, body, sig = proto.open_envelope(rule_env)
        msg = proto.TAG_RULE + body_bytes
        for pk in issuer_keys.values():
            if ed25519.verify(pk, msg, sig):
                purse.check_rule(body)
                self._keys.append(key)
                self._vals.append(body)
                while len(self._keys) > self.entries:
                    self._keys.pop(0)
                    self._vals.pop(0)
                return body
        raise proto.ApduError(proto.SW_BAD_SIGNATURE)

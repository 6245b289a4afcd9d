# Wallet certificates verified by this POS, kept in RAM by the hash of their envelope so a
# returning card costs no issuer-signature check. Bounded (least recently used evicted); the
# expiry is checked on every use against the POS clock, the hot list by the caller.
from ..core import apdu, check, envelope, fields
from ..core.cert import check_cert
from ..core.runtime import sha256


class CertCache:
    def __init__(self, entries):
        self.entries = entries
        self._keys = []  # SHA-256 of the envelope bytes, least recently used first
        self._vals = []  # (certificate body, SHA-256 of the body bytes)

    def __len__(self):
        return len(self._keys)

    def verify(self, cert_env, issuer_keys, now):
        """(body, body hash) of a valid wallet certificate; raises ApduError otherwise."""
        if not isinstance(cert_env, bytes):
            raise apdu.ApduError(apdu.SW_WRONG_DATA)
        key = sha256(cert_env).digest()
        val = None
        for i in range(len(self._keys)):
            if self._keys[i] == key:
                val = self._vals[i]
                self._keys.pop(i)
                self._vals.pop(i)
                break
        if val is None:
            opened = envelope.open_envelope(cert_env)  # once: its body and its hash
            body = check_cert(opened, issuer_keys, fields.KIND_WALLET, 0)
            limits = body[fields.CERT_LIMITS]  # an absent limit is its default (PROTOCOL.md §6)
            full = {}
            for k in fields.DEFAULT_LIMITS:  # as the card reads them (wallet/state.limits)
                full[k] = check.opt_int(limits, k, fields.DEFAULT_LIMITS[k])
            body[fields.CERT_LIMITS] = full
            val = (body, envelope.body_hash(opened[0]))
        self._keys.append(key)
        self._vals.append(val)
        while len(self._keys) > self.entries:
            self._keys.pop(0)
            self._vals.pop(0)
        if now and val[0][fields.CERT_EXPIRES] < now:
            raise apdu.ApduError(apdu.SW_EXPIRED)
        return val

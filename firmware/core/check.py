# Field checks of decoded CBOR maps: a value of the wrong type or out of range is 6A80.
from .apdu import SW_WRONG_DATA, ApduError


def need_int(m, key, lo=0, hi=0xFFFFFFFFFFFFFFFF):
    v = m.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or v < lo or v > hi:
        raise ApduError(SW_WRONG_DATA)
    return v


def need_bytes(m, key, n=None):
    v = m.get(key)
    if not isinstance(v, bytes) or (n is not None and len(v) != n):
        raise ApduError(SW_WRONG_DATA)
    return v


def opt_int(m, key, default, lo=0, hi=0xFFFFFFFFFFFFFFFF):
    if key not in m:
        return default
    return need_int(m, key, lo, hi)

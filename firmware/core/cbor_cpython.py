# CPython only (never deployed to a board): cbor.decode, decided faster with cbor2's C decoder.
#
# cbor2 parses; its answer is kept only when it provably is what the strict decoder in
# cbor.py would return: every tag refused (so shared values and string references cannot make
# the input shorter than the value it stands for), the value made of the data model's exact
# types, every map's keys increasing non-negative ints, and the deterministic encoding of the
# value exactly as long as the input. Any other encoding of such a value (longer heads,
# indefinite lengths, duplicate keys) is strictly longer, so equal length means the input IS
# the deterministic encoding. Everything else, errors included, goes to the strict decoder,
# which decides and words the error.

from collections.abc import Mapping

_UINT64_END = 1 << 64


def _head_len(n):
    return 1 if n < 24 else 2 if n < 0x100 else 3 if n < 0x10000 else 5 if n < 0x100000000 else 9


def plain_len(obj, depth, max_items):
    """Length of obj's deterministic encoding, or -1 when the fast path must not decide."""
    t = type(obj)
    if t is bytes:
        return _head_len(len(obj)) + len(obj)
    if t is int:
        if 0 <= obj < _UINT64_END:
            return _head_len(obj)
        if -_UINT64_END <= obj < 0:
            return _head_len(-1 - obj)
        return -1
    if t is str:
        n = len(obj.encode("utf-8"))
        return _head_len(n) + n
    if t is bool or obj is None:
        return 1
    if depth <= 0:
        return -1
    if t is list:
        if len(obj) > max_items:
            return -1
        total = _head_len(len(obj))
        for x in obj:
            tx = type(x)
            if tx is bytes:
                n = len(x)
                total += n + (1 if n < 24 else 2 if n < 0x100 else _head_len(n))
            elif tx is int and 0 <= x < _UINT64_END:
                total += 1 if x < 24 else _head_len(x)
            else:
                n = plain_len(x, depth - 1, max_items)
                if n < 0:
                    return -1
                total += n
        return total
    if t is dict:
        if len(obj) > max_items:
            return -1
        n = len(obj)
        total = 1 if n < 24 else _head_len(n)
        last = -1
        for k, v in obj.items():
            if type(k) is not int or not last < k < _UINT64_END:
                return -1
            last = k
            total += 1 if k < 24 else _head_len(k)
            # the leaves of protocol maps, inline (a call each is most of the cost)
            tv = type(v)
            if tv is bytes:
                n = len(v)
                total += n + (1 if n < 24 else 2 if n < 0x100 else _head_len(n))
            elif tv is int and 0 <= v < _UINT64_END:
                total += 1 if v < 24 else _head_len(v)
            else:
                n = plain_len(v, depth - 1, max_items)
                if n < 0:
                    return -1
                total += n
        return total
    return -1


def _refuse_tag(*args):
    raise ValueError("tag")


class _EveryTagRefused(Mapping):
    """A mapping for cbor2's semantic_decoders in which every tag decodes to an error (a
    subclass, not a registered one: cbor2's isinstance check on every call stays cheap)."""

    def __getitem__(self, tag):
        return _refuse_tag

    def __contains__(self, tag):
        return True

    def get(self, tag, default=None):
        return _refuse_tag

    def __iter__(self):
        return iter(())

    def __len__(self):
        return 0


def fast_decoder(decode_strict, max_depth_default, max_items_default):
    """cbor.decode for this host: decode_strict's answers, cbor2's speed; None without cbor2.
    The defaults are cbor.py's, so both decoders bound depth and items alike."""
    try:
        import cbor2
    except ImportError:
        return None
    no_tags = _EveryTagRefused()
    loads = cbor2.loads

    def decode(data, max_depth=max_depth_default, max_items=max_items_default):
        """Decode exactly one item filling all of data (bytes, bytearray or memoryview)."""
        if type(data) is bytes:
            try:
                value = loads(
                    data, semantic_decoders=no_tags, tag_hook=_refuse_tag, allow_indefinite=False
                )
                if plain_len(value, max_depth, max_items) == len(data):
                    return value
            except Exception:  # noqa: BLE001 - the strict decoder decides, with its message
                pass
        return decode_strict(data, max_depth, max_items)

    return decode

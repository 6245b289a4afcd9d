# CPython only (never deployed to a board): cbor.decode, decided faster with cbor2's C decoder,
# and cbor.encode, the same bytes, made faster by cbor2's C encoder.
#
# cbor2 parses; its answer is kept only when it provably is what the strict decoder in
# cbor.py would return: every tag refused (so shared values and string references cannot make
# the input shorter than the value it stands for), the value made of the data model's exact
# types, every map's keys increasing non-negative ints, and the deterministic encoding of the
# value exactly as long as the input. Any other encoding of such a value (longer heads,
# indefinite lengths, duplicate keys) is strictly longer, so equal length means the input IS
# the deterministic encoding. Everything else, errors included, goes to the strict decoder,
# which decides and words the error.
#
# Encoding: cbor2.dumps (not canonical: a map's keys in its own order) is the bytes of cbor.py's
# encoder exactly when the value is "plain" (_plain): made of exact bytes, str, bool, None, ints
# in -2**64 .. 2**64-1, lists and tuples, and dicts whose keys are non-negative ints in
# increasing order (numeric order is then the bytewise order of their encodings), nested no
# deeper than max_depth (a map with such keys in another order: a copy with them in order,
# _in_order, is written). cbor2 writes every head in its shortest form and these types in
# RFC 8949's plain way (no tags: the ints fit in 64 bits; no value sharing or string references:
# they are off). Anything else (other key types, subclasses, bytearray, memoryview, big ints,
# unsupported types, too deep, invalid text) is cbor.py's own encoder's, which makes the same
# bytes or raises EncodeError.
#
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
                total += (
                    1 if x < 24 else 2 if x < 0x100 else 3 if x < 0x10000 else
                    5 if x < 0x100000000 else 9
                )
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
                total += (
                    1 if v < 24 else 2 if v < 0x100 else 3 if v < 0x10000 else
                    5 if v < 0x100000000 else 9
                )
            else:
                n = plain_len(v, depth - 1, max_items)
                if n < 0:
                    return -1
                total += n
        return total
    return -1


def _refuse_tag(*args):
    raise ValueError("tag")


class _EveryTagRefused(dict):
    """A mapping for cbor2's semantic_decoders in which every tag decodes to an error. A dict
    subclass (empty as a dict; cbor2 asks it through these methods): cbor2's Mapping check
    is then no call into abc's __instancecheck__, which a Mapping subclass cost on every
    decode (0.95 -> 0.50 us for a 10-byte map, cbor2 6.3)."""

    def __getitem__(self, tag):
        return _refuse_tag

    def __contains__(self, tag):
        return True

    def get(self, tag, default=None):
        return _refuse_tag


_SORTED = 2  # _plain's answer for a plain value with a map whose keys are out of order


def _plain(obj, depth):
    """True when obj is plain (see above) within depth: cbor2.dumps(obj) is cbor.encode(obj);
    _SORTED when it is plain but for the order of some map's (non-negative int) keys:
    cbor2.dumps(_in_order(obj)) is then cbor.encode(obj); False otherwise."""
    t = type(obj)
    if t is bytes or t is str or t is bool or obj is None:
        return True
    if t is int:
        return -_UINT64_END <= obj < _UINT64_END
    if depth <= 0:
        return False
    got = True
    if t is list or t is tuple:
        for x in obj:
            tx = type(x)
            if tx is bytes or (tx is int and 0 <= x < _UINT64_END):
                continue  # the leaves of protocol arrays, inline
            r = _plain(x, depth - 1)
            if not r:
                return False
            if r is _SORTED:
                got = _SORTED
        return got
    if t is dict:
        last = -1
        for k, v in obj.items():
            if type(k) is not int or not 0 <= k < _UINT64_END:
                return False
            if k < last:  # (never equal: a dict's keys are distinct)
                got = _SORTED
            last = k
            tv = type(v)
            if tv is bytes or (tv is int and 0 <= v < _UINT64_END):
                continue
            r = _plain(v, depth - 1)
            if not r:
                return False
            if r is _SORTED:
                got = _SORTED
        return got
    return False


_NESTED = (dict, list, tuple)


def _in_order(obj):
    """A copy of a plain value with every map's keys in increasing order (what cbor.py's
    encoder writes for int keys); leaves shared, tuples as lists (both are arrays)."""
    t = type(obj)
    if t is dict:
        out = {}
        for k in sorted(obj):
            v = obj[k]
            out[k] = _in_order(v) if type(v) in _NESTED else v
        return out
    if t is list or t is tuple:
        return [_in_order(x) if type(x) in _NESTED else x for x in obj]
    return obj




def fast_codec(enc, decode_strict, max_depth_default, max_items_default):
    """(encode, encode_into, decode) for this host, or None without cbor2: encode gives
    cbor.encode's bytes (cbor2's when the value is plain, else cbor.py's `_enc`'s) and
    encode_into appends them to a bytearray as cbor.encode_into does; decode gives
    decode_strict's answers at cbor2's speed."""
    try:
        import cbor2
    except ImportError:
        return None
    no_tags = _EveryTagRefused()
    loads = cbor2.loads
    dumps = cbor2.dumps
    def fast(obj, max_depth):
        # cbor2's bytes for a plain value, None otherwise (cbor.py's encoder decides)
        p = _plain(obj, max_depth)
        if p:
            try:
                return dumps(obj if p is True else _in_order(obj))
            except Exception:  # noqa: BLE001 - e.g. a lone surrogate: cbor.py's error
                pass
        return None

    def encode(obj, max_depth=max_depth_default):
        """The deterministic CBOR encoding of obj (cbor.encode)."""
        data = fast(obj, max_depth)
        if data is None:
            out = bytearray()
            enc(obj, out, max_depth)
            data = bytes(out)
        return data

    def encode_into(obj, out, max_depth=max_depth_default):
        """Append the encoding of obj to the bytearray `out`; returns out (cbor.encode_into)."""
        data = fast(obj, max_depth)
        if data is None:
            enc(obj, out, max_depth)
            return out
        out += data
        return out

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

    return encode, encode_into, decode

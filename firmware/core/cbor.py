"""Deterministic, strict CBOR (RFC 8949) for MicroPython and CPython.

Data model (nothing else exists here):
    int (-2**64 .. 2**64-1, major types 0 and 1), bytes, str, list, dict, True, False, None.
    Encoding also takes tuple (-> array), bytearray and memoryview (-> byte string).
    Map keys are restricted to int, bytes and str, on both sides: True/None/array/map keys
    raise EncodeError / DecodeError (Python would merge True with 1, and lists are unhashable).

encode(obj) produces the RFC 8949 section 4.2.1 "core deterministic encoding":
shortest argument forms, definite lengths only, map keys sorted by the bytewise
lexicographic order of their encoded keys.

    Difference from cbor2.dumps(x, canonical=True): cbor2 sorts keys length-first
    (RFC 7049 "canonical CBOR"). Where the keys of every map encode to the same length
    (e.g. the small-integer keys 0..23 our protocol uses) the two are byte-identical. With
    mixed lengths they can differ: {"a": 1, 1000: 2} is a2 1903e8 02 6161 01 here
    (0x19 < 0x61) but a2 6161 01 1903e8 02 from cbor2 (2-byte key first).
    The RFC 8949 bytewise order is the one decode() enforces.

decode(data) accepts exactly the bytes encode() could have produced and raises
DecodeError (a ValueError) for anything else: non-shortest integers or lengths,
indefinite lengths, break codes, reserved additional info 28-30, tags, floats, simple
values other than false/true/null, invalid UTF-8 (overlong forms, surrogates, code
points above U+10FFFF, truncated sequences - checked by hand on MicroPython, whose
decoder accepts some of these), duplicate or unsorted map keys, non-int/bytes/str map
keys, trailing bytes, nesting deeper than max_depth, containers with more than
max_items entries. Hence decode() followed by encode() gives back the input exactly.
Declared lengths and item counts are checked against the bytes actually left before
anything is allocated, and the decoder is iterative: hostile input fails fast with
DecodeError, never RecursionError, MemoryError or a hang.

API: encode(obj, max_depth=16) -> bytes; decode(data, max_depth=16, max_items=65536);
decode_prefix(data, ...) -> (value, bytes_consumed) for framing; EncodeError, DecodeError
(both ValueError); utf8_valid(buf, start, end). data is bytes, bytearray or a contiguous
memoryview (CPython casts other item formats to bytes; on MicroPython pass byte buffers).
Depth counts containers: [] has depth 1, [[0]] depth 2.

Signatures are always checked over the bytes received, never over a re-encoding of the
decoded value: that is the caller's job (the strictness here makes the two agree, but
verifying the received bytes does not depend on it).
"""

from .runtime import IS_MICROPYTHON, const

MAX_DEPTH = const(16)  # nested arrays/maps, for encode and decode alike
MAX_ITEMS = const(65536)  # entries in one array or map (decode); the input length bounds it too

_MT_NEG = const(0x20)
_MT_BYTES = const(0x40)
_MT_TEXT = const(0x60)
_MT_ARRAY = const(0x80)
_MT_MAP = const(0xA0)
_FALSE = const(0xF4)
_TRUE = const(0xF5)
_NULL = const(0xF6)
_UINT64_END = const(0x10000000000000000)


class DecodeError(ValueError):
    """The bytes are not the deterministic CBOR encoding of a supported value."""


class EncodeError(ValueError):
    """The value has no encoding here (unsupported type, int out of range, bad key, too deep)."""


# ---------------------------------------------------------------- encode


def _head(out, mt, n):
    if n < 24:
        out.append(mt | n)
    elif n < 0x100:
        out.append(mt | 24)
        out.append(n)
    elif n < 0x10000:
        out.append(mt | 25)
        out += n.to_bytes(2, "big")
    elif n < 0x100000000:
        out.append(mt | 26)
        out += n.to_bytes(4, "big")
    elif n < _UINT64_END:
        out.append(mt | 27)
        out += n.to_bytes(8, "big")
    else:
        raise EncodeError("int out of range")


def _text_bytes(s):
    try:
        b = s.encode("utf-8")
    except UnicodeError:  # CPython: lone surrogates
        raise EncodeError("text is not valid Unicode") from None
    # MicroPython str can hold surrogates (e.g. from "\ud800"); it stores them as-is.
    if IS_MICROPYTHON and len(b) != len(s) and not utf8_valid(b, 0, len(b)):
        raise EncodeError("text is not valid Unicode")
    return b


def _enc(obj, out, depth):
    # Exact types first: byte strings and small ints are most of every protocol message.
    t = type(obj)
    if t is bytes:
        n = len(obj)
        if n < 24:
            out.append(_MT_BYTES | n)
        else:
            _head(out, _MT_BYTES, n)
        out += obj
    elif t is int and 0 <= obj < 24:
        out.append(obj)
    elif obj is None:
        out.append(_NULL)
    elif obj is True:
        out.append(_TRUE)
    elif obj is False:
        out.append(_FALSE)
    elif isinstance(obj, int):
        if 0 <= obj < 24:
            out.append(obj)
        elif obj >= 0:
            _head(out, 0, obj)
        else:
            _head(out, _MT_NEG, -1 - obj)
    elif isinstance(obj, str):
        b = _text_bytes(obj)
        _head(out, _MT_TEXT, len(b))
        out += b
    elif isinstance(obj, (bytes, bytearray)):
        _head(out, _MT_BYTES, len(obj))
        out += obj
    elif isinstance(obj, memoryview):
        b = bytes(obj)
        _head(out, _MT_BYTES, len(b))
        out += b
    elif isinstance(obj, (list, tuple)):
        if depth <= 0:
            raise EncodeError("nested too deep")
        n = len(obj)
        if n < 24:
            out.append(_MT_ARRAY | n)
        else:
            _head(out, _MT_ARRAY, n)
        depth -= 1
        for item in obj:
            # the leaves of protocol arrays inline (a call each was most of the cost)
            ti = type(item)
            if ti is bytes:
                n = len(item)
                if n < 24:
                    out.append(_MT_BYTES | n)
                else:
                    _head(out, _MT_BYTES, n)
                out += item
            elif ti is int and 0 <= item:
                if item < 24:
                    out.append(item)
                else:
                    _head(out, 0, item)
            else:
                _enc(item, out, depth)
    elif isinstance(obj, dict):
        if depth <= 0:
            raise EncodeError("nested too deep")
        for k in obj:
            if type(k) is not int or k < 0:
                break
        else:
            # Only non-negative int keys (the protocol's case): their bytewise order is
            # their numeric order, so sort the ints and skip encoding keys twice.
            n = len(obj)
            if n < 24:
                out.append(_MT_MAP | n)
            else:
                _head(out, _MT_MAP, n)
            depth -= 1
            for k in sorted(obj):
                if k < 24:
                    out.append(k)
                else:
                    _head(out, 0, k)
                v = obj[k]
                tv = type(v)  # leaves inline, as in arrays
                if tv is bytes:
                    n = len(v)
                    if n < 24:
                        out.append(_MT_BYTES | n)
                    else:
                        _head(out, _MT_BYTES, n)
                    out += v
                elif tv is int and 0 <= v:
                    if v < 24:
                        out.append(v)
                    else:
                        _head(out, 0, v)
                else:
                    _enc(v, out, depth)
            return
        by_key = {}
        for k, v in obj.items():
            if k is True or k is False or not isinstance(k, (int, str, bytes)):
                raise EncodeError("map key must be int, bytes or str")
            kb = bytearray()
            _enc(k, kb, 0)
            by_key[bytes(kb)] = v
        if len(by_key) != len(obj):
            raise EncodeError("duplicate map key")
        _head(out, _MT_MAP, len(obj))
        for kb in sorted(by_key):
            out += kb
            _enc(by_key[kb], out, depth - 1)
    else:
        raise EncodeError("unsupported type " + type(obj).__name__)


def encode(obj, max_depth=MAX_DEPTH):
    """Return the deterministic CBOR encoding of obj (see the module docstring)."""
    out = bytearray()
    _enc(obj, out, max_depth)
    return bytes(out)


def encode_into(obj, out, max_depth=MAX_DEPTH):
    """Append the encoding of obj to the bytearray `out` (a buffer sized beforehand: no
    copy); returns out."""
    _enc(obj, out, max_depth)
    return out


def encode_parts(obj, min_ref=64):
    """encode(obj) as a list of byte strings to join: byte strings of `min_ref` bytes or more
    inside obj are put in the list themselves, not copied, so b"".join(...) (or an APDU
    response, apdu.response) allocates the encoding once. For big answers on a small heap
    (EXPORT): encode() would hold a growing buffer and its copy beside the records."""
    parts = []
    acc = _enc_parts(obj, parts, bytearray(), min_ref, MAX_DEPTH)
    if acc:
        parts.append(bytes(acc))
    return parts


def _enc_parts(obj, parts, acc, min_ref, depth):
    # -> the buffer of the small pieces since the last big byte string
    t = type(obj)
    if t is bytes and len(obj) >= min_ref:
        _head(acc, _MT_BYTES, len(obj))
        parts.append(bytes(acc))
        parts.append(obj)
        return bytearray()
    if t is list or t is tuple:
        if depth <= 0:
            raise EncodeError("nested too deep")
        _head(acc, _MT_ARRAY, len(obj))
        for item in obj:
            acc = _enc_parts(item, parts, acc, min_ref, depth - 1)
        return acc
    if t is dict and depth > 0:
        for k in obj:
            if type(k) is not int or k < 0:
                break
        else:  # int keys: numeric order is bytewise order (as in _enc)
            _head(acc, _MT_MAP, len(obj))
            for k in sorted(obj):
                _head(acc, 0, k)
                acc = _enc_parts(obj[k], parts, acc, min_ref, depth - 1)
            return acc
    _enc(obj, acc, depth)
    return acc


# ---------------------------------------------------------------- decode


def utf8_valid(buf, i, end):
    """True if buf[i:end] is well-formed UTF-8 (RFC 3629: no overlongs, surrogates, > U+10FFFF)."""
    while i < end:
        c = buf[i]
        if c < 0x80:
            i += 1
            continue
        lo = 0x80
        hi = 0xBF
        if 0xC2 <= c <= 0xDF:
            n = 1
        elif 0xE0 <= c <= 0xEF:
            n = 2
            if c == 0xE0:
                lo = 0xA0  # below: overlong
            elif c == 0xED:
                hi = 0x9F  # above: surrogates U+D800..DFFF
        elif 0xF0 <= c <= 0xF4:
            n = 3
            if c == 0xF0:
                lo = 0x90  # below: overlong
            elif c == 0xF4:
                hi = 0x8F  # above: > U+10FFFF
        else:
            return False  # continuation byte, C0/C1 (overlong), F5..FF
        if i + n >= end:
            return False  # truncated sequence
        c = buf[i + 1]
        if c < lo or c > hi:
            return False
        j = i + 2
        i += n + 1
        while j < i:
            if buf[j] & 0xC0 != 0x80:
                return False
            j += 1
    return True


def _err(msg, pos):
    return DecodeError(msg + " at " + str(pos))


class _NoKey:
    pass


_NOKEY = _NoKey()


def _view(data):
    if isinstance(data, str):
        raise DecodeError("need bytes, got str")
    try:
        mv = memoryview(data)
    except TypeError:
        raise DecodeError("need bytes") from None
    if not IS_MICROPYTHON:
        if not mv.c_contiguous:
            raise DecodeError("need contiguous bytes")
        if mv.format != "B":
            mv = mv.cast("B")
    return mv


def _decode(mv, pos, end, max_depth, max_items):
    # Iterative: `stack` holds the open containers, so depth costs heap we bound, not C stack.
    # Array frame: [list, items_left]. Map frame: [dict, pairs_left, pending_key, prev_key_start,
    # prev_key_end]: the previous key is compared in place in the input, not copied.
    stack = []
    while True:
        start = pos
        if pos >= end:
            raise _err("truncated", pos)
        ib = mv[pos]
        pos += 1
        mt = ib & 0xE0
        ai = ib & 0x1F
        if mt == 0xE0:
            if ai == 20:
                value = False
            elif ai == 21:
                value = True
            elif ai == 22:
                value = None
            elif 25 <= ai <= 27:
                raise _err("float", start)
            elif ai == 31:
                raise _err("break", start)
            else:
                raise _err("unsupported simple value", start)
            if stack and len(stack[-1]) == 5 and stack[-1][2] is _NOKEY:
                raise _err("map key must be int, bytes or text", start)
        elif mt == 0xC0:
            raise _err("tag", start)
        else:
            if ai < 24:
                n = ai
            elif ai == 24:
                if pos >= end:
                    raise _err("truncated", pos)
                n = mv[pos]
                pos += 1
                if n < 24:
                    raise _err("non-shortest argument", start)
            elif ai <= 27:
                k = 1 << (ai - 24)  # 2, 4 or 8 bytes
                if pos + k > end:
                    raise _err("truncated", pos)
                n = int.from_bytes(mv[pos : pos + k], "big")
                pos += k
                if n >> (k << 2) == 0:  # fits in half as many bytes
                    raise _err("non-shortest argument", start)
            elif ai == 31:
                raise _err("indefinite length", start)
            else:
                raise _err("reserved additional info", start)

            if mt == 0:
                value = n
            elif mt == _MT_NEG:
                value = -1 - n
            elif mt <= _MT_TEXT:
                if n > end - pos:
                    raise _err("length beyond end of input", start)
                if mt == _MT_BYTES:
                    value = bytes(mv[pos : pos + n])
                else:
                    try:
                        value = str(mv[pos : pos + n], "utf-8")
                    except UnicodeError:
                        raise _err("invalid UTF-8", start) from None
                    if IS_MICROPYTHON and len(value) != n and not utf8_valid(mv, pos, pos + n):
                        raise _err("invalid UTF-8", start)
                pos += n
            else:  # array or map
                if stack and len(stack[-1]) == 5 and stack[-1][2] is _NOKEY:
                    raise _err("map key must be int, bytes or text", start)
                if n > max_items:
                    raise _err("too many items", start)
                if mt == _MT_ARRAY:
                    if n > end - pos:
                        raise _err("item count beyond end of input", start)
                    if len(stack) >= max_depth:
                        raise _err("nested too deep", start)
                    if n:
                        stack.append([[], n])
                        continue
                    value = []
                else:
                    if n > (end - pos) >> 1:
                        raise _err("item count beyond end of input", start)
                    if len(stack) >= max_depth:
                        raise _err("nested too deep", start)
                    if n:
                        stack.append([{}, n, _NOKEY, -1, -1])
                        continue
                    value = {}

        # `value` is complete: hand it to the open containers, closing those it fills.
        while stack:
            frame = stack[-1]
            container = frame[0]
            if len(frame) == 2:
                container.append(value)
                frame[1] -= 1
                if frame[1]:
                    break
            elif frame[2] is _NOKEY:
                ps = frame[3]
                if ps >= 0:
                    pe = frame[4]
                    if pe - ps == 1 and pos - start == 1:  # one-byte keys, the common case
                        ordered = mv[start] > mv[ps]
                    else:
                        ordered = bytes(mv[start:pos]) > bytes(mv[ps:pe])
                    if not ordered:
                        raise _err("map keys duplicate or not in bytewise order", start)
                frame[3] = start
                frame[4] = pos
                frame[2] = value
                break
            else:
                container[frame[2]] = value
                frame[2] = _NOKEY
                frame[1] -= 1
                if frame[1]:
                    break
            value = container
            stack.pop()
        else:
            return value, pos


def decode_prefix(data, max_depth=MAX_DEPTH, max_items=MAX_ITEMS):
    """Decode one item at the start of data; return (value, bytes_consumed). For framing."""
    mv = _view(data)
    return _decode(mv, 0, len(mv), max_depth, max_items)


def _decode_strict(data, max_depth=MAX_DEPTH, max_items=MAX_ITEMS):
    mv = _view(data)
    end = len(mv)
    value, pos = _decode(mv, 0, end, max_depth, max_items)
    if pos != end:
        raise _err("trailing bytes", pos)
    return value


decode = _decode_strict  # replaced below on CPython by the same decision, made faster
# (and encode, encode_into by the same bytes: cbor_cpython.py)


if not IS_MICROPYTHON:
    # Hosts (simulator, ledger, sync tool) make the same decision faster with cbor2's C
    # decoder; see cbor_cpython.py. Boards never load that module (deploy leaves it out).
    from .cbor_cpython import fast_codec

    encode, encode_into, decode = fast_codec(_enc, _decode_strict, MAX_DEPTH, MAX_ITEMS) or (
        encode,
        encode_into,
        decode,
    )

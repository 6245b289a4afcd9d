"""Crash-safe storage on hal.Flash: an atomic state record and a bounded append-only journal.

The flash model (hal.Flash): `write` replaces a blob, `append` extends one, and a power cut
during either may leave ANY prefix of the new bytes (0 .. all of them) - a torn write of a
blob loses its old content too. `remove` is atomic. Nothing else is assumed: no rename, no
directory listing. `read_at` reads part of a blob (a range).

StateStore(flash, name) - one record, all or nothing
----------------------------------------------------
Two slots, blobs `<name>.a` and `<name>.b`. A slot is

    offset size
    0      2    magic b"TS"
    2      1    format version (1)
    3      1    flags (0)
    4      4    seq, big-endian u32, starts at 1
    8      4    payload length, big-endian u32
    12     4    header check: SHA-256(bytes 0..11)[:4]
    16     n    payload
    16+n   32   SHA-256(bytes 0 .. 16+n-1)

`load()` returns the payload of the valid slot with the highest seq (None if neither is valid).
`commit(payload)` writes the *other* slot (the one not holding the newest valid record) with a
higher seq, so a torn commit can only damage the slot that held the older state: after a power
cut `load()` gives the state before the commit or the new one (the latter also when the cut
came after the last byte), never a mix and never nothing once a commit has returned.
`seq` is the seq of the state `load()` returns (read before any load() or after a failed
commit, it reads the slots first). New seqs are above every seq ever seen in a slot header,
including the readable header of a torn slot, so a seq is never given to two different
payloads even across power cuts (it may jump by 2 after a torn commit).

Cost of one commit: 1 flash write of len(payload) + 48 bytes. No read (the slot choice is
cached; after an error, or as the first call on a new StateStore, it reads both slots, 2
reads). load(): 2 reads. Making a StateStore reads nothing: the first load() or commit() does.

Journal(flash, name, max_records) - append-only, bounded, prunable
------------------------------------------------------------------
Records live in segment blobs `<name>.0`, `<name>.1`, ... each at most `seg_bytes` long
(default 2048), appended to in order; a record is framed as

    2 bytes length n (big-endian u16) | 4 bytes seq (u32) | n bytes record |
    8 bytes SHA-256(length|seq|record)[:8]

A tiny StateStore `<name>.m` holds (head segment, floor seq, gc_from, floor digest): segments
below `head` are dead, records with seq <= floor are pruned. It is written by `prune` only.

Hash chain (optional, `link` given): `digest` is link(... link(link(floor digest, s1, r1), s2,
r2) ..., last seq, last record) over the unpruned records as stored, and `floor_digest` the
chain's value at the floor (32 zero bytes for an empty history), kept in the meta StateStore
and committed by `prune` in the same atomic write as the floor. The chain is a function of
the durable records alone: recomputed at open, extended by `append`, so it is exactly as
crash-safe as the records. `link_at(seq)` recomputes it at any unpruned seq (the device
checks an ACK with it); the tapcash link is `envelope.journal_link`.

Reading a segment stops at the first frame that is short, fails its check or does not
increase the seq; the bytes after it are a torn tail (or corruption) and are ignored. An
append never goes after ignored bytes: if the last segment has a torn tail, the next append
starts a new segment, so nothing is ever rewritten and a torn truncation cannot lose
acknowledged records. The live segments are the run `head, head+1, ...` up to the first
empty or missing blob.

`append(record) -> seq` is durable when it returns. A power cut during it leaves the journal
without the record or (if every byte landed) with it. seq = last seq + 1, where the last seq
also counts pruned records, so seqs stay monotonic across prunes and reboots.
`prune(upto_seq)` commits the new (head, floor) in the meta StateStore - the single atomic
step - and only then removes the dead segments; a cut before the meta commit leaves the
journal unpruned, after it pruned (dead segments left behind are removed on the next open).

Cost of one append: 1 flash append of len(record) + 14 bytes (also when it starts a new
segment). Cost of a prune: 1 write of 60 bytes (92 with a hash chain; meta StateStore) + one
remove per dead segment, then the remaining segments are read once. Opening a Journal reads
the 2 meta slots and every live segment once, one frame at a time (two ranged reads per
record: peak heap ~ the largest record, not seg_bytes).

Limits: max_records bounds the unpruned records (append raises StorageFull beyond it: the app
must refuse payments until a sync prunes); a record is at most seg_bytes - 14 bytes and 65535.

What this does not protect against: a bit flip or a restored image can make the newest state
slot invalid, and load() then returns the previous state (never corrupted bytes); detecting
rollback needs a counter outside this flash. Records lost to corruption show as a seq gap
(`Journal.damaged`).
"""

import struct

from .runtime import const, sha256

_MAGIC = b"TS"
_VERSION = const(1)
_HDR = const(16)
_TRAILER = const(32)
_U32_MAX = const(0xFFFFFFFF)

_REC_HDR = const(6)
_REC_CHECK = const(8)
_REC_OVERHEAD = const(14)
_SEG_BYTES = const(2048)
_MAX_SEGMENTS = const(100000)  # probe guard only: a live journal never gets near it
_ZERO32 = b"\x00" * 32
_ROOM = const(160)  # commit_obj's buffer: the last payload's length + this (+ the trailer)


class StorageError(Exception):
    """The storage cannot do what was asked (e.g. a seq counter is exhausted)."""


class StorageFull(StorageError):
    """The journal holds max_records unpruned records: sync and prune before appending."""


def _hcheck(hdr12):
    return sha256(hdr12).digest()[:4]


def _frame_slot(seq, payload):
    hdr = struct.pack(">2sBBII", _MAGIC, _VERSION, 0, seq, len(payload))
    hdr = hdr + _hcheck(hdr)
    h = sha256(hdr)
    h.update(payload)
    return hdr + payload + h.digest()


def _seal_slot(seq, buf):
    """The slot built in place: `buf` (bytearray) holds _HDR bytes of room, then the payload;
    the header goes in front and the hash after it, in the buffer's spare room (no copy)."""
    struct.pack_into(">2sBBII", buf, 0, _MAGIC, _VERSION, 0, seq, len(buf) - _HDR)
    buf[12:16] = _hcheck(memoryview(buf)[0:12])
    buf += sha256(buf).digest()
    return buf


def _parse_slot(blob):
    """-> (seq, payload): payload None when the slot is not valid; seq is that of a readable
    header (0 if none) even when the body is torn or corrupt."""
    if blob is None or len(blob) < _HDR:
        return 0, None
    mv = memoryview(blob)
    magic, version, _flags, seq, n = struct.unpack_from(">2sBBII", blob, 0)
    if magic != _MAGIC or version != _VERSION or bytes(mv[12:16]) != _hcheck(mv[0:12]):
        return 0, None
    if len(blob) != _HDR + n + _TRAILER:
        return seq, None
    h = sha256(mv[0 : _HDR + n])
    if h.digest() != bytes(mv[_HDR + n :]):
        return seq, None
    return seq, bytes(mv[_HDR : _HDR + n])


class StateStore:
    """Atomic, versioned record of a device's state (bytes). See the module docstring."""

    def __init__(self, flash, name):
        self.flash = flash
        self.name = name
        self._slots = (name + ".a", name + ".b")
        self._seq = 0  # seq of the newest valid record, 0 when there is none
        self._newest = -1  # slot index holding it, -1 when none
        self._floor = 0  # highest seq seen in any readable slot header
        self._stale = True  # the slots are read by the first load() or commit()
        self._room = _ROOM
        self._buf = None  # reserve()'s buffer

    @property
    def seq(self):
        """The seq of the newest valid record (0 when there is none)."""
        if self._stale:
            self._scan()
        return self._seq

    def current(self):
        """True when this object knows what its slots hold: they were read, and no commit of
        its own failed or was cut since (then the next call reads them again)."""
        return not self._stale

    def _scan(self):
        best_seq = 0
        best = -1
        best_payload = None
        floor = 0
        for i in (0, 1):
            seq, payload = _parse_slot(self.flash.read(self._slots[i]))
            if seq > floor:
                floor = seq
            if payload is not None and seq > best_seq:
                best_seq, best, best_payload = seq, i, payload
        self._seq = best_seq
        self._newest = best
        self._floor = floor
        self._stale = False
        if best_payload is not None:
            self._room = len(best_payload) + _ROOM
        return best_payload

    def load(self):
        """The newest committed payload (bytes), or None if nothing was ever committed."""
        return self._scan()

    def commit(self, payload, framed=False):
        """Durably replace the state by `payload` (bytes); returns the new seq. `framed`:
        payload is a bytearray of _HDR bytes of room and then the payload (commit_obj), and
        the slot is built in it."""
        if self._stale:
            self._scan()
        seq = max(self._seq, self._floor) + 1
        if seq > _U32_MAX:
            raise StorageError("state seq exhausted")
        target = 1 if self._newest == 0 else 0
        data = _seal_slot(seq, payload) if framed else _frame_slot(seq, payload)
        self._stale = True  # until the write returns, the slots are unknown
        self.flash.write(self._slots[target], data)
        self._stale = False
        self._seq = seq
        self._floor = seq
        self._newest = target
        return seq

    def load_obj(self):
        """load() decoded as deterministic CBOR (None if nothing committed)."""
        from . import cbor

        data = self.load()
        return None if data is None else cbor.decode(data)

    def reserve(self, extra=0):
        """Allocate the next commit_obj's buffer now (the last payload's length, some room
        and `extra` bytes), while the heap is not yet cut up by the command's objects: a
        command that commits late on a fixed heap calls this first (#13). free() drops it."""
        buf = bytearray(_HDR + self._room + extra)
        buf[_HDR:] = b""  # keeps the capacity
        self._buf = buf
        return buf

    def free(self):
        self._buf = None

    def commit_obj(self, obj, encode=None):
        """commit() of cbor.encode(obj) (or of what `encode(obj, out)` appends to the
        bytearray `out`), encoded into the slot's own buffer: one allocation the size of the
        last state and some room, not a growing buffer and three copies of the payload (on a
        fixed heap, a 1 KB state failed to find room for them after a signature check: #13)."""
        buf = self._buf or self.reserve()
        self._buf = None
        if encode is None:
            from . import cbor

            encode = cbor.encode_into
        encode(obj, buf)
        self._room = len(buf) - _HDR + _ROOM
        return self.commit(buf, True)


def _frame_record(seq, record):
    hdr = struct.pack(">HI", len(record), seq)
    h = sha256(hdr)
    h.update(record)
    return hdr + record + h.digest()[:_REC_CHECK]


def _frames(flash, name, size, after):
    """Yield (seq, record, end) of the valid frames at the start of segment blob `name` of
    `size` bytes; `record` is a memoryview of the frame's record bytes, valid until the next
    step, and `end` the offset after the frame.

    Reads one frame at a time (its header, then its record and check), so the segment is
    never in RAM whole (#16). Stops at the first frame that is short, fails its check, or
    whose seq is not above the previous one (`after` for the first frame): everything from
    there on is a torn tail. The total valid length is the `end` of the last frame yielded.
    """
    off = 0
    prev = after
    while size - off >= _REC_OVERHEAD:
        hdr = flash.read_at(name, off, _REC_HDR)
        if len(hdr) < _REC_HDR:
            return
        n, seq = struct.unpack(">HI", hdr)
        end = off + _REC_HDR + n + _REC_CHECK
        if end > size or seq <= prev:
            return
        body = flash.read_at(name, off + _REC_HDR, n + _REC_CHECK)
        if len(body) < n + _REC_CHECK:
            return
        mv = memoryview(body)
        h = sha256(hdr)
        h.update(mv[:n])
        if h.digest()[:_REC_CHECK] != bytes(mv[n:]):
            return
        yield seq, mv[:n], end
        mv = None
        body = None
        prev = seq
        off = end


class Journal:
    """Bounded append-only log of (seq, bytes) records. See the module docstring."""

    def __init__(self, flash, name, max_records, seg_bytes=_SEG_BYTES, link=None):
        if seg_bytes < _REC_OVERHEAD + 1:
            raise ValueError("seg_bytes too small")
        self.link = link  # link(prev digest, seq, record) -> digest, or None: no chain
        self.flash = flash
        self.name = name
        self.max_records = max_records
        self.seg_bytes = seg_bytes
        self.meta = StateStore(flash, name + ".m")
        self._open()

    def _seg(self, i):
        return self.name + "." + str(i)

    def _open(self):
        meta = self.meta.load()
        if meta is None:
            head, floor, gc_from = 0, 0, 0
        else:
            head, floor, gc_from = struct.unpack_from(">III", meta, 0)
        fd = meta[12:44] if meta is not None and len(meta) >= 44 else _ZERO32
        self.head = head
        self.floor = floor  # records with seq <= floor are pruned
        self.floor_digest = fd  # chain value at the floor
        link = self.link
        digest = fd
        for i in range(gc_from, head):  # finish the removals of an interrupted prune
            self.flash.remove(self._seg(i))
        # [index, first visible seq, last seq, seq the segment's frames must exceed] of the
        # live segments holding visible records
        segs = []
        count = 0
        last = floor  # highest seq so far, pruned ones included
        damaged = False
        i = head
        end_ok = True  # may the next append go to the last segment read?
        tail_size = 0
        while True:
            size = self.flash.size(self._seg(i))
            if size == 0:
                break
            if i - head >= _MAX_SEGMENTS:
                raise StorageError("journal segments do not end")
            prev = 0 if i == head else last
            valid = 0
            seg = None
            for seq, rec, e in _frames(self.flash, self._seg(i), size, prev):
                valid = e
                if seq <= floor:
                    continue
                if seq != last + 1:
                    damaged = True  # records lost to corruption
                if link is not None:
                    digest = link(digest, seq, rec)
                last = seq
                count += 1
                if seg is None:
                    seg = [i, seq, seq, prev]
                    segs.append(seg)
                else:
                    seg[2] = seq
            rec = None
            end_ok = valid == size
            tail_size = size
            i += 1
        self.digest = digest  # chain value at last_seq
        self._segs = segs
        self._count = count
        self.last_seq = last
        self.damaged = damaged
        self._end = i  # first index after the live segments
        if i > head and end_ok:
            self._tail = i - 1
            self._tail_size = tail_size
        else:  # no segment yet, or the last one has a torn tail: start a new one
            self._tail = i
            self._tail_size = 0
        self._stale = False

    def current(self):
        """True when this object knows what its blobs hold: no append or prune of its own
        failed or was cut since it read them (then the next call reads them again)."""
        return not self._stale and self.meta.current()

    def count(self):
        """Number of unpruned records."""
        if self._stale:
            self._open()
        return self._count

    def free(self):
        """How many more records append() accepts before StorageFull."""
        return self.max_records - self.count()

    def append(self, record):
        """Durably append `record` (bytes); returns its seq. Raises StorageFull when full."""
        if self._stale:
            self._open()
        n = len(record)
        if n > 0xFFFF or n + _REC_OVERHEAD > self.seg_bytes:
            raise ValueError("record too long")
        if self._count >= self.max_records:
            raise StorageFull("journal full")
        seq = self.last_seq + 1
        if seq > _U32_MAX:
            raise StorageError("journal seq exhausted")
        frame = _frame_record(seq, record)
        digest = self.link(self.digest, seq, record) if self.link is not None else self.digest
        tail = self._tail
        size = self._tail_size
        if size and size + len(frame) > self.seg_bytes:
            tail += 1
            size = 0
        self._stale = True
        self.flash.append(self._seg(tail), frame)
        self._stale = False
        self._tail = tail
        self._tail_size = size + len(frame)
        if tail >= self._end:
            self._end = tail + 1
        if self._segs and self._segs[-1][0] == tail:
            self._segs[-1][2] = seq
        else:
            self._segs.append([tail, seq, seq, 0 if tail == self.head else seq - 1])
        self._count += 1
        self.last_seq = seq
        self.digest = digest
        return seq

    def records(self, since_seq=0):
        """Iterate (seq, bytes) over unpruned records with seq > since_seq, oldest first.

        Reads one segment at a time. Records appended during the iteration are not included.
        """
        if self._stale:
            self._open()
        lo = since_seq if since_seq > self.floor else self.floor
        hi = self.last_seq
        segs = [s for s in self._segs if s[2] > lo]
        for i, _first, _last, after in segs:
            name = self._seg(i)
            for seq, rec, _e in _frames(self.flash, name, self.flash.size(name), after):
                if seq > hi:
                    return
                if seq > lo:
                    yield seq, bytes(rec)
                rec = None

    def last(self):
        """(seq, bytes) of the newest unpruned record, or None."""
        if self._stale:
            self._open()
        if not self._segs:
            return None
        out = None
        for rec in self.records(self._segs[-1][1] - 1):
            out = rec
        return out

    def link_at(self, seq):
        """The chain's value at `seq` (floor <= seq <= last seq), recomputed from the floor
        over the records as stored (one segment in RAM at a time); None outside that range."""
        if self._stale:
            self._open()
        if seq < self.floor or seq > self.last_seq:
            return None
        if seq == self.last_seq:
            return self.digest
        digest = self.floor_digest
        if self.link is None or seq == self.floor:
            return digest
        for s, rec in self.records(self.floor):
            if s > seq:
                break
            digest = self.link(digest, s, rec)
        return digest

    def prune(self, upto_seq):
        """Drop every record with seq <= upto_seq (clamped to the last seq); crash-safe.

        Returns the number of records dropped.
        """
        if self._stale:
            self._open()
        upto = upto_seq if upto_seq < self.last_seq else self.last_seq
        if upto <= self.floor:
            return 0
        fd = self.link_at(upto)
        before = self._count
        new_head = self._end
        for i, _first, last, _after in self._segs:
            if last > upto:
                new_head = i
                break
        old_head = self.head
        self._stale = True
        meta = struct.pack(">III", new_head, upto, old_head)
        self.meta.commit(meta + fd if self.link is not None else meta)
        self._open()  # removes the dead segments, recounts
        return before - self._count

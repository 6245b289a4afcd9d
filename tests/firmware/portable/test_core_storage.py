# Portable tests for firmware/core/storage.py on firmware/core/fileflash.py: run by pytest on
# CPython and, unchanged, inside the MicroPython VM (plain asserts, no pytest features, no
# CPython-only modules). Each test works in its own fresh directory under /tmp.
#
# Power cuts come from the simulator's CutFlash (sim/device/cutflash.py): a hal.Flash that
# passes every call to a real FileFlash and, at a chosen write, stores only a prefix of the data
# (through FileFlash, onto the real file) and raises hal.PowerCut. The storage code under test
# is unchanged.
try:
    from tapcash.firmware.core import fileflash, hal, storage
    from tapcash.sim.device.cutflash import ALL, CutFlash
except ImportError:  # on a board / in the VM the firmware tree is importable as `firmware`
    from cutflash import ALL, CutFlash  # sim/device/cutflash.py, installed next to the tests

    from firmware.core import fileflash, hal, storage
from portable_kit import cleanup, fresh_dir, rm_tree


def _fresh_dir(tag):
    return fresh_dir("storage_" + tag)


def _raises(exc, fn, *args):
    try:
        fn(*args)
    except exc:
        return
    raise AssertionError("did not raise " + exc.__name__)


def test_fileflash_blobs():
    try:
        f = fileflash.FileFlash(_fresh_dir("blobs") + "/sub")
        assert f.read("a") is None and f.size("a") == 0
        f.write("a", b"hello")
        f.append("a", b" world")
        assert f.read("a") == b"hello world" and f.size("a") == 11
        f.write("a", b"x")
        assert f.read("a") == b"x"
        f.remove("a")
        f.remove("a")
        assert f.read("a") is None
        _raises(ValueError, f.write, "a/b", b"")
        rm_tree(f.root)
    finally:
        cleanup()


def test_state_store_on_files():
    try:
        root = _fresh_dir("state")
        s = storage.StateStore(fileflash.FileFlash(root), "w")
        assert s.load() is None and s.seq == 0
        assert s.commit(b"one") == 1
        assert s.commit(b"two") == 2
        s2 = storage.StateStore(fileflash.FileFlash(root), "w")
        assert s2.load() == b"two" and s2.seq == 2
        assert s2.commit(b"") == 3
        assert storage.StateStore(fileflash.FileFlash(root), "w").load() == b""
    finally:
        cleanup()


def test_state_store_cbor_objects():
    try:
        s = storage.StateStore(fileflash.FileFlash(_fresh_dir("obj")), "w")
        obj = {0: 5, 1: b"\x01" * 32, 2: [1, {3: "x"}]}
        s.commit_obj(obj)
        assert storage.StateStore(s.flash, "w").load_obj() == obj
    finally:
        cleanup()


def test_state_store_commit_obj_builds_the_slot_in_one_buffer():
    # commit_obj encodes into one buffer sized from the last state: the slot on flash is the
    # one commit() writes, whether the state shrinks, grows past the room or is the first
    try:
        from tapcash.firmware.core import cbor
    except ImportError:
        from firmware.core import cbor
    try:
        a = storage.StateStore(fileflash.FileFlash(_fresh_dir("one_a")), "w")
        b = storage.StateStore(fileflash.FileFlash(_fresh_dir("one_b")), "w")
        seen = []

        def enc(obj, out):
            seen.append(type(out).__name__)
            return cbor.encode_into(obj, out)

        for obj in ({0: 1}, {0: b"\x07" * 900, 1: [1, 2]}, {0: b"\x08" * 3000}, {0: 2}):
            assert a.commit_obj(obj, enc) == b.commit(cbor.encode(obj))
            for slot in ("w.a", "w.b"):
                assert a.flash.read(slot) == b.flash.read(slot)
            assert storage.StateStore(a.flash, "w").load_obj() == obj
        assert seen == ["bytearray"] * 4
    finally:
        cleanup()


def test_journal_on_files():
    try:
        f = fileflash.FileFlash(_fresh_dir("journal"))
        j = storage.Journal(f, "log", 4, 64)
        assert [j.append(bytes([i]) * 20) for i in range(1, 5)] == [1, 2, 3, 4]
        _raises(storage.StorageFull, j.append, b"x")
        assert j.prune(2) == 2
        assert j.append(b"five") == 5
        j2 = storage.Journal(fileflash.FileFlash(f.root), "log", 4, 64)
        assert [s for s, _ in j2.records()] == [3, 4, 5]
        assert list(j2.records(4)) == [(5, b"five")]
        assert j2.last() == (5, b"five") and j2.count() == 3
        assert j2.prune(99) == 3
        assert storage.Journal(f, "log", 4, 64).append(b"six") == 6
    finally:
        cleanup()


SCRIPT = [
    ("commit", b"s1"),
    ("append", b"a" * 20),
    ("append", b"b" * 30),
    ("commit", b"s2" * 10),
    ("append", b"c"),
    ("prune", 2),
    ("append", b"d" * 40),
    ("commit", b"s3"),
    ("prune", 99),
    ("append", b"e" * 5),
]


class _Model:
    def __init__(self):
        self.state = None
        self.seq = 0
        self.recs = []
        self.last = 0

    def apply(self, dev, op):
        kind, arg = op
        if kind == "commit":
            seq = dev[0].commit(arg)
            assert seq > self.seq
            self.state, self.seq = arg, seq
        elif kind == "append":
            seq = dev[1].append(arg)
            assert seq == self.last + 1
            self.recs.append((seq, arg))
            self.last = seq
        else:
            dev[1].prune(arg)
            self.recs = [r for r in self.recs if r[0] > arg]

    def resolve(self, dev, op):
        state, seq = dev[0].load(), dev[0].seq
        if seq != self.seq:
            assert op[0] == "commit" and state == op[1] and seq > self.seq
            self.state, self.seq = state, seq
        assert state == self.state
        recs = list(dev[1].records())
        allowed = [self.recs]
        if op[0] == "append":
            allowed.append(self.recs + [(self.last + 1, op[1])])
        if op[0] == "prune":
            allowed.append([r for r in self.recs if r[0] > op[1]])
        assert recs in allowed, recs
        self.recs = recs
        if recs and recs[-1][0] > self.last:
            self.last = recs[-1][0]

    def check(self, dev):
        assert dev[0].load() == self.state and dev[0].seq == self.seq
        assert list(dev[1].records()) == self.recs


def _boot(flash):
    return storage.StateStore(flash, "st"), storage.Journal(flash, "j", 16, 64)


def test_power_cut_at_every_write_on_files():
    total = 0
    try:
        flash = CutFlash(fileflash.FileFlash(_fresh_dir("count"), False))
        dev, model = _boot(flash), _Model()
        for op in SCRIPT:
            model.apply(dev, op)
        total = flash.write_count
        assert total == 10
    finally:
        cleanup()
    for n in range(1, total + 1):
        for keep in (0, 9, ALL):
            try:
                flash = CutFlash(fileflash.FileFlash(_fresh_dir("cut"), False))
                flash.cut_at(n, keep)
                dev, model = _boot(flash), _Model()
                i = 0
                cut = None
                while cut is None:
                    try:
                        model.apply(dev, SCRIPT[i])
                        i += 1
                    except hal.PowerCut:
                        cut = SCRIPT[i]
                _raises(hal.PowerCut, flash.read, "st.a")
                flash.power_on()
                dev = _boot(flash)
                model.resolve(dev, cut)
                for op in SCRIPT[i:]:
                    model.apply(dev, op)
                model.check(_boot(flash))
            finally:
                cleanup()


def test_bit_flip_in_newest_state_falls_back():
    try:
        f = fileflash.FileFlash(_fresh_dir("flip"))
        s = storage.StateStore(f, "st")
        s.commit(b"old")
        s.commit(b"new")
        good = f.read("st.b")
        for bit in range(0, len(good) * 8, 7):
            bad = bytearray(good)
            bad[bit // 8] ^= 1 << (bit % 8)
            f.write("st.b", bytes(bad))
            s2 = storage.StateStore(f, "st")
            assert s2.load() == b"old" and s2.seq == 1
        f.write("st.b", good)
        assert storage.StateStore(f, "st").load() == b"new"
    finally:
        cleanup()

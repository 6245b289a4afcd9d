"""Crash-safety tests for firmware/core/storage.py on sim/device/flash.py (and firmware FileFlash).

The power-cut tests cut at EVERY write of a scripted sequence of commits, appends and prunes,
each from a fresh flash, with several choices of how much of the cut write survives; after
the cut the device reboots (new StateStore/Journal on the same flash) and must show exactly
the acknowledged state, or that plus the operation in flight, and then carry on correctly.
A Hypothesis state machine does the same against a reference model with random cuts.
"""

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from tapcash.firmware.core import cbor
from tapcash.firmware.core.fileflash import FileFlash
from tapcash.firmware.core.hal import Flash, PowerCut
from tapcash.firmware.core.storage import Journal, StateStore, StorageError, StorageFull
from tapcash.sim.device.flash import ALL, SimFlash

MAX_RECORDS = 6
SEG_BYTES = 64  # small segments: the scripts below roll over, tear and prune many of them


# --------------------------------------------------------------------------------------
# Reference model
# --------------------------------------------------------------------------------------


@dataclass
class Model:
    """What the storage must show: acknowledged state and records only."""

    state: bytes | None = None
    state_seq: int = 0
    records: list[tuple[int, bytes]] = field(default_factory=list)
    last_seq: int = 0  # highest journal seq ever assigned and visible (pruned ones count)
    floor: int = 0
    state_seqs: dict[int, bytes] = field(default_factory=dict)  # every seq ever seen -> payload
    record_seqs: dict[int, bytes] = field(default_factory=dict)

    def note_state(self, seq: int, payload: bytes) -> None:
        assert self.state_seqs.setdefault(seq, payload) == payload, f"state seq {seq} reused"

    def note_record(self, seq: int, rec: bytes) -> None:
        assert self.record_seqs.setdefault(seq, rec) == rec, f"record seq {seq} reused"

    def pruned(self, upto: int) -> tuple[list[tuple[int, bytes]], int]:
        u = min(upto, self.last_seq)
        if u <= self.floor:
            return list(self.records), self.floor
        return [r for r in self.records if r[0] > u], u


class Device:
    """A StateStore and a Journal on one flash, as a device app would hold them."""

    def __init__(self, flash: SimFlash) -> None:
        self.flash = flash
        self.boot()

    def boot(self) -> None:
        self.store = StateStore(self.flash, "st")
        self.journal = Journal(self.flash, "j", MAX_RECORDS, seg_bytes=SEG_BYTES)

    def reboot(self) -> None:
        self.flash.power_on()
        self.boot()


def observe_and_resolve(dev: Device, model: Model, op: tuple | None) -> None:
    """After a reboot: the device shows the acknowledged model, or that plus `op` (the
    operation in flight when the power went). Adopt what it shows; fail on anything else."""
    state = dev.store.load()
    seq = dev.store.seq
    if seq == model.state_seq:
        assert state == model.state, "state changed but its seq did not"
    else:
        # only the commit in flight can have landed (the seq tells it apart when it
        # committed the same bytes again)
        assert op is not None and op[0] == "commit", f"state seq moved {model.state_seq}->{seq}"
        assert seq > model.state_seq and state == op[1], "state is neither old nor new"
        model.state, model.state_seq = state, seq
    if state is not None:
        model.note_state(seq, state)

    recs = list(dev.journal.records())
    options: list[tuple[list[tuple[int, bytes]], int, int]] = [
        (list(model.records), model.last_seq, model.floor)
    ]
    if op is not None and op[0] == "append" and len(model.records) < MAX_RECORDS:
        s = model.last_seq + 1
        options.append((model.records + [(s, op[1])], s, model.floor))
    if op is not None and op[0] == "prune":
        kept, floor = model.pruned(op[1])
        options.append((kept, model.last_seq, floor))
    for want, last_seq, floor in options:
        if recs == want and dev.journal.last_seq == last_seq:
            model.records, model.last_seq, model.floor = want, last_seq, floor
            break
    else:
        raise AssertionError(f"journal shows {recs} (last_seq {dev.journal.last_seq}); "
                             f"allowed {options}")
    assert dev.journal.count() == len(recs)
    assert dev.journal.last() == (recs[-1] if recs else None)
    assert not dev.journal.damaged
    for s, r in recs:
        model.note_record(s, r)


def apply(dev: Device, model: Model, op: tuple) -> None:
    """Run one operation; on return it is acknowledged and the model follows it."""
    kind, arg = op
    if kind == "commit":
        seq = dev.store.commit(arg)
        assert seq > model.state_seq
        model.state, model.state_seq = arg, seq
        model.note_state(seq, arg)
    elif kind == "append":
        if len(model.records) >= MAX_RECORDS:
            with pytest.raises(StorageFull):
                dev.journal.append(arg)
            return
        seq = dev.journal.append(arg)
        assert seq == model.last_seq + 1
        model.records.append((seq, arg))
        model.last_seq = seq
        model.note_record(seq, arg)
    elif kind == "prune":
        kept, floor = model.pruned(arg)
        dropped = dev.journal.prune(arg)
        assert dropped == len(model.records) - len(kept)
        model.records, model.floor = kept, floor
    else:
        raise AssertionError(kind)


def check_equal(dev: Device, model: Model) -> None:
    assert dev.store.load() == model.state
    assert dev.store.seq == model.state_seq
    assert list(dev.journal.records()) == model.records
    assert dev.journal.last_seq == model.last_seq
    assert dev.journal.count() == len(model.records)


def rec(i: int, n: int = 9) -> bytes:
    return bytes([i]) * n


# A script that exercises every path: empty payloads, segment roll-over (SEG_BYTES=64 holds
# two 18-byte records + a 9-byte one), StorageFull, partial prunes inside a segment, pruning
# everything, pruning past the end, appending after a full prune, long records.
SCRIPT: list[tuple] = [
    ("commit", b"state-1"),
    ("append", rec(1)),
    ("append", rec(2, 30)),
    ("commit", b""),
    ("append", rec(3, 1)),
    ("append", rec(4)),
    ("append", rec(5, 40)),
    ("commit", b"state-3" * 5),
    ("append", rec(6)),
    ("append", rec(7)),  # StorageFull: 6 records
    ("prune", 2),
    ("append", rec(8, 0)),
    ("prune", 4),
    ("commit", b"state-4"),
    ("append", rec(9, 30)),
    ("prune", 100),  # everything
    ("append", rec(10)),
    ("commit", b"state-4"),  # same bytes again
    ("append", rec(11, 50)),
    ("prune", 1),  # below the floor: nothing
    ("append", rec(12)),
    ("prune", 11),
    ("commit", b"state-5"),
    ("append", rec(13)),
]


def count_writes(make_flash: Callable[[int], SimFlash]) -> int:
    flash = make_flash(0)
    dev, model = Device(flash), Model()
    for op in SCRIPT:
        apply(dev, model, op)
    dev.reboot()
    check_equal(dev, model)
    return flash.write_count


def run_with_cut(make_flash: Callable[[int], SimFlash], n: int, keep: int | None,
                 seed: int) -> None:
    flash = make_flash(seed)
    flash.cut_at(n, keep)
    dev, model = Device(flash), Model()
    cut_op = None
    i = 0
    while cut_op is None and i < len(SCRIPT):
        try:
            apply(dev, model, SCRIPT[i])
            i += 1
        except PowerCut:
            cut_op = SCRIPT[i]
    assert cut_op is not None, f"write {n} was never reached"
    assert not flash.powered
    with pytest.raises(PowerCut):
        flash.read("st.a")
    dev.reboot()
    observe_and_resolve(dev, model, cut_op)
    # reboot again without writing: recovery must be stable
    dev.boot()
    check_equal(dev, model)
    # and carry on: the rest of the script (the cut op again included) must work
    for op in SCRIPT[i:]:
        apply(dev, model, op)
    check_equal(dev, model)
    dev.boot()
    check_equal(dev, model)


def memory_flash(seed: int) -> SimFlash:
    return SimFlash(seed=seed)


KEEPS: list[int | None] = [0, 1, 7, 20, None, ALL]


def test_script_without_cuts_counts_writes() -> None:
    total = count_writes(memory_flash)
    # commits + appends (StorageFull writes nothing) + prunes that drop something
    assert total == 6 + 12 + 4


@pytest.mark.parametrize("keep", KEEPS)
def test_power_cut_at_every_write(keep: int | None) -> None:
    total = count_writes(memory_flash)
    for n in range(1, total + 1):
        for seed in range(3 if keep is None else 1):
            run_with_cut(memory_flash, n, keep, seed)


def test_power_cut_at_every_write_on_files(tmp_path: Path) -> None:
    """The same, with every blob a file written by firmware FileFlash."""
    runs = iter(range(10**6))

    def dir_flash(seed: int) -> SimFlash:
        return SimFlash(tmp_path / f"run{next(runs)}", seed=seed)

    total = count_writes(dir_flash)
    assert total == count_writes(memory_flash)
    for n in range(1, total + 1):
        for keep in (0, 13, ALL):
            run_with_cut(dir_flash, n, keep, 0)


def test_torn_header_seq_is_not_reused() -> None:
    """A commit torn after its header: the next commit takes a higher seq."""
    flash = SimFlash()
    store = StateStore(flash, "st")
    assert store.commit(b"one") == 1
    assert store.commit(b"two") == 2
    flash.cut_after(1, keep=20)  # header (16 bytes) + part of the payload
    with pytest.raises(PowerCut):
        store.commit(b"three-three")
    flash.power_on()
    store = StateStore(flash, "st")
    assert store.load() == b"two" and store.seq == 2
    assert store.commit(b"four") == 4


def test_commit_that_returned_survives_any_later_cut() -> None:
    for keep in (0, 10, ALL):
        flash = SimFlash()
        store = StateStore(flash, "st")
        store.commit(b"a")
        store.commit(b"b")
        flash.cut_after(1, keep)
        with pytest.raises(PowerCut):
            store.commit(b"c")
        flash.power_on()
        got = StateStore(flash, "st").load()
        assert got == (b"c" if keep == ALL else b"b")


# --------------------------------------------------------------------------------------
# Hypothesis state machine: StateStore + Journal against the model, random power cuts
# --------------------------------------------------------------------------------------


class StorageMachine(RuleBasedStateMachine):
    @initialize(seed=st.integers(0, 2**32 - 1))
    def boot(self, seed: int) -> None:
        self.flash = SimFlash(seed=seed)
        self.dev = Device(self.flash)
        self.model = Model()

    def _do(self, op: tuple) -> None:
        try:
            apply(self.dev, self.model, op)
        except PowerCut:
            self.dev.reboot()
            observe_and_resolve(self.dev, self.model, op)

    @rule(payload=st.binary(max_size=40))
    def commit(self, payload: bytes) -> None:
        self._do(("commit", payload))

    @rule(record=st.binary(max_size=SEG_BYTES - 14))
    def append(self, record: bytes) -> None:
        self._do(("append", record))

    @rule(back=st.integers(-2, 8))
    def prune(self, back: int) -> None:
        self._do(("prune", self.model.last_seq - back))

    @rule()
    def reboot(self) -> None:
        self.dev.reboot()

    @precondition(lambda self: not self.flash.cut_pending)
    @rule(k=st.integers(1, 3), keep=st.sampled_from([None, None, 0, 5, ALL]))
    def arm_power_cut(self, k: int, keep: int | None) -> None:
        self.flash.cut_after(k, keep)

    @rule()
    def restore_is_exact(self) -> None:
        image = self.flash.snapshot()
        self.flash.restore(image)
        assert self.flash.snapshot() == image

    @invariant()
    def matches_model(self) -> None:
        check_equal(self.dev, self.model)  # reads only: a pending cut stays pending


StorageMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_storage_state_machine = StorageMachine.TestCase


# --------------------------------------------------------------------------------------
# Corruption: bit flips are caught by the checks and never returned as valid data
# --------------------------------------------------------------------------------------


def test_state_bit_flips_never_return_corrupt_data() -> None:
    flash = SimFlash()
    store = StateStore(flash, "st")
    store.commit(b"older state")
    store.commit(b"newest state!")
    image = flash.snapshot()
    newest = "st.b"
    for name in ("st.a", "st.b"):
        for bit in range(len(image[name]) * 8):
            flash.restore(image)
            flash.flip_bit(name, bit)
            s = StateStore(flash, "st")
            got = s.load()
            if name == newest:
                assert got == b"older state" and s.seq == 1
                # the next commit must not reuse the newest seq when its header survived
                assert s.commit(b"x") >= 2
            else:
                assert got == b"newest state!" and s.seq == 2


def test_journal_bit_flips_never_return_corrupt_records() -> None:
    flash = SimFlash()
    j = Journal(flash, "j", 50, seg_bytes=64)
    truth = {}
    for i in range(12):
        r = rec(i + 1, 5 + 3 * (i % 4))
        truth[j.append(r)] = r
    j.prune(3)
    image = flash.snapshot()
    segs = sorted(n for n in image if n.startswith("j.") and not n.startswith("j.m"))
    assert len(segs) >= 3
    for name in segs:
        for bit in range(len(image[name]) * 8):
            flash.restore(image)
            flash.flip_bit(name, bit)
            j2 = Journal(flash, "j", 50, seg_bytes=64)
            got = list(j2.records())
            seqs = [s for s, _ in got]
            assert seqs == sorted(set(seqs))
            for s, r in got:
                assert s > 3 and truth[s] == r
            if len(got) < 9 and seqs and seqs[-1] == 12:
                assert j2.damaged  # a record lost in the middle shows as a gap
            # appends still work and never reuse a seq that is still visible
            assert j2.append(b"new") > max(seqs, default=3)


def test_meta_bit_flip_falls_back_to_an_older_prune_point() -> None:
    flash = SimFlash()
    j = Journal(flash, "j", 50, seg_bytes=200)
    truth = {j.append(rec(i)): rec(i) for i in range(1, 9)}
    j.prune(2)
    j.prune(5)
    image = flash.snapshot()
    newest = "j.m.b"
    for bit in range(len(image[newest]) * 8):
        flash.restore(image)
        flash.flip_bit(newest, bit)
        got = list(Journal(flash, "j", 50, seg_bytes=200).records())
        # pruned records may come back (they are genuine), nothing else changes
        assert got == [(s, truth[s]) for s in range(3, 9)]


# --------------------------------------------------------------------------------------
# API behaviour
# --------------------------------------------------------------------------------------


@pytest.fixture(params=["memory", "files", "fileflash"])
def flash(request: pytest.FixtureRequest, tmp_path: Path) -> Flash:
    if request.param == "memory":
        return SimFlash()
    if request.param == "files":
        return SimFlash(tmp_path / "sim")
    return FileFlash(str(tmp_path / "a" / "b"))


def test_read_at_reads_a_range(flash: Flash) -> None:
    # the Journal reads one frame at a time with it (#16); every backend has it
    assert flash.read_at("none", 0, 4) == b""
    flash.write("b", b"0123456789")
    assert flash.read_at("b", 0, 4) == b"0123"
    assert flash.read_at("b", 7, 10) == b"789"
    assert flash.read_at("b", 10, 4) == b"" and flash.read_at("b", 12, 4) == b""

    class Plain(Flash):  # a backend with read alone gets the default
        def read(self, name: str) -> bytes | None:
            return b"abcdef" if name == "x" else None

    assert Plain().read_at("x", 2, 3) == b"cde" and Plain().read_at("y", 0, 3) == b""


def test_state_store_basics(flash: Flash) -> None:
    s = StateStore(flash, "wallet")
    assert s.load() is None and s.seq == 0
    assert s.commit(b"x" * 300) == 1
    assert s.commit(b"") == 2
    assert s.load() == b""
    s2 = StateStore(flash, "wallet")
    assert s2.load() == b"" and s2.seq == 2
    assert s2.commit(b"y") == 3
    assert StateStore(flash, "wallet").load() == b"y"
    assert StateStore(flash, "other").load() is None


def test_state_store_cbor_helpers(flash: Flash) -> None:
    s = StateStore(flash, "w")
    assert s.load_obj() is None
    obj = {0: 1, 1: b"\x00" * 32, 2: [1, 2, {3: "x"}]}
    s.commit_obj(obj)
    assert StateStore(flash, "w").load_obj() == obj
    assert StateStore(flash, "w").load() == cbor.encode(obj)


def test_journal_basics(flash: Flash) -> None:
    j = Journal(flash, "log", max_records=5, seg_bytes=64)
    assert j.count() == 0 and j.last() is None and list(j.records()) == []
    seqs = [j.append(rec(i, 20)) for i in range(1, 6)]
    assert seqs == [1, 2, 3, 4, 5]
    assert j.free() == 0
    with pytest.raises(StorageFull):
        j.append(b"more")
    assert isinstance(StorageFull("x"), StorageError)
    with pytest.raises(ValueError):
        j.append(b"x" * 51)  # 51 + 14 > 64
    assert list(j.records(3)) == [(4, rec(4, 20)), (5, rec(5, 20))]
    assert j.last() == (5, rec(5, 20))
    assert j.prune(2) == 2
    assert j.prune(2) == 0
    assert j.append(b"six") == 6
    j2 = Journal(flash, "log", max_records=5, seg_bytes=64)
    assert [s for s, _ in j2.records()] == [3, 4, 5, 6]
    assert j2.floor == 2 and j2.last_seq == 6
    assert j2.prune(10**6) == 4
    assert j2.count() == 0 and j2.last() is None
    j3 = Journal(flash, "log", max_records=5, seg_bytes=64)
    assert j3.append(b"seven") == 7
    assert list(Journal(flash, "log", 5, 64).records()) == [(7, b"seven")]


def test_journal_prune_removes_dead_segments() -> None:
    flash = SimFlash()
    j = Journal(flash, "j", 100, seg_bytes=64)
    for i in range(20):
        j.append(rec(i, 20))  # 34-byte frames: one per segment
    assert sum(1 for n in flash.names() if n[2:].isdigit()) == 20
    j.prune(15)
    live = sorted(int(n[2:]) for n in flash.names() if n[2:].isdigit())
    assert live == list(range(15, 20))


def test_interrupted_prune_removals_are_finished_on_open() -> None:
    flash = SimFlash()
    j = Journal(flash, "j", 100, seg_bytes=64)
    for i in range(6):
        j.append(rec(i, 20))
    image = flash.snapshot()
    j.prune(4)
    after = flash.snapshot()
    # the meta commit landed but the removals did not: put the dead segments back
    flash.restore({**image, **{n: after[n] for n in after if n.startswith("j.m")}})
    j2 = Journal(flash, "j", 100, seg_bytes=64)
    assert [s for s, _ in j2.records()] == [5, 6]
    assert flash.snapshot() == after


def test_torn_tail_starts_a_new_segment() -> None:
    flash = SimFlash()
    j = Journal(flash, "j", 100, seg_bytes=1000)
    j.append(b"one")
    flash.cut_after(1, keep=5)
    with pytest.raises(PowerCut):
        j.append(b"two")
    flash.power_on()
    j = Journal(flash, "j", 100, seg_bytes=1000)
    assert list(j.records()) == [(1, b"one")]
    assert j.append(b"two again") == 2
    assert flash.size("j.1") > 0  # written after the torn bytes, never on top of them
    assert list(Journal(flash, "j", 100, 1000).records()) == [(1, b"one"), (2, b"two again")]


def test_write_costs_are_as_documented() -> None:
    flash = SimFlash()
    s = StateStore(flash, "st")
    s.commit(b"p" * 100)
    assert flash.write_count == 1 and flash.bytes_written == 148
    j = Journal(flash, "j", 10)
    j.append(b"r" * 150)
    assert flash.write_count == 2 and flash.bytes_written == 148 + 164
    j.prune(1)
    assert flash.write_count == 3 and flash.blob_stats("j.m.a").bytes_written == 60


# --------------------------------------------------------------------------------------
# The simulated flash itself
# --------------------------------------------------------------------------------------


def test_simflash_cut_semantics() -> None:
    f = SimFlash(seed=7)
    f.write("a", b"0123456789")
    f.cut_at(3, keep=4)
    f.append("a", b"abcdef")  # write 2
    with pytest.raises(PowerCut):
        f.write("b", b"XYZXYZ")  # write 3: cut
    for call in (lambda: f.read("a"), lambda: f.size("a"), lambda: f.remove("a"),
                 lambda: f.write("c", b""), lambda: f.append("a", b"")):
        with pytest.raises(PowerCut):
            call()
    assert f.snapshot() == {"a": b"0123456789abcdef", "b": b"XYZX"}
    f.power_on()
    assert f.read("b") == b"XYZX"
    assert f.cuts[0].index == 3 and f.cuts[0].kept == 4 and f.cuts[0].length == 6
    assert f.blob_stats("a").writes == 1 and f.blob_stats("a").appends == 1
    assert f.blob_stats("b").torn == 1 and f.bytes_written == 10 + 6 + 4
    with pytest.raises(ValueError):
        f.cut_at(3)


def test_simflash_torn_append_keeps_old_content() -> None:
    f = SimFlash()
    f.append("x", b"keep")
    f.cut_after(1, keep=0)
    with pytest.raises(PowerCut):
        f.append("x", b"lost")
    f.power_on()
    assert f.read("x") == b"keep"


def test_simflash_random_keep_covers_zero_full_and_between() -> None:
    kept = set()
    for seed in range(200):
        f = SimFlash(seed=seed)
        f.cut_at(1)
        with pytest.raises(PowerCut):
            f.write("x", b"0123456789")
        kept.add(f.cuts[0].kept)
    assert {0, 10} <= kept and len(kept) >= 8


def test_simflash_same_seed_same_run() -> None:
    def run(seed: int) -> list[int]:
        f = SimFlash(seed=seed)
        out = []
        for n in range(1, 30):
            f.power_on()
            f.cut_at(f.write_count + 1)
            with pytest.raises(PowerCut):
                f.write("x", bytes(range(n)))
            out.append(f.cuts[-1].kept)
        return out

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_simflash_flip_and_restore(tmp_path: Path) -> None:
    for f in (SimFlash(seed=1), SimFlash(tmp_path / "d", seed=1)):
        f.write("a", b"\x00\x00")
        f.write("b", b"bee")
        image = f.snapshot()
        assert f.flip_bit("a", 9) == 9
        assert f.read("a") == b"\x00\x02"
        f.write("c", b"new")
        f.restore(image)
        assert f.snapshot() == image
        assert f.read("c") is None


# --------------------------------------------------------------------------------------
# FileFlash on a real directory
# --------------------------------------------------------------------------------------


def test_fileflash_on_files(tmp_path: Path) -> None:
    root = tmp_path / "x" / "y"
    f = FileFlash(str(root))
    assert root.is_dir()
    assert f.read("a") is None and f.size("a") == 0
    f.write("a", b"hello")
    f.append("a", b" world")
    f.append("new", b"n")
    assert f.read("a") == b"hello world" and f.size("a") == 11
    assert (root / "a").read_bytes() == b"hello world"
    f.write("a", b"")
    assert f.read("a") == b"" and f.size("a") == 0
    f.remove("a")
    f.remove("a")  # removing a missing blob is fine
    assert f.read("a") is None
    assert sorted(os.listdir(root)) == ["new"]
    for bad in ("", "a/b", ".", ".."):
        with pytest.raises(ValueError):
            f.write(bad, b"")
    assert FileFlash(str(root) + "/").read("new") == b"n"  # existing root, trailing slash


# ---- the journal hash chain (protocol 2: statuses sign it, acks name it) ------------------------
def _link(prev: bytes, seq: int, record: bytes) -> bytes:
    """The chain recomputed here with hashlib (the code under test uses proto.journal_link)."""
    import hashlib

    h = hashlib.sha256(b"tapcash/journal/v1\x00" + prev + seq.to_bytes(4, "big"))
    h.update(hashlib.sha256(bytes(record)).digest())
    return h.digest()


@pytest.mark.parametrize("keep", [0, 7, ALL])
def test_the_chain_survives_a_power_cut_at_every_write(keep: int) -> None:
    """Appends and prunes cut at every write, with none, some or all of its bytes landing:
    after each reboot the chain value at the last seq and at the floor are those of the
    records the journal holds, recomputed from every record ever appended."""
    from tapcash.firmware.core import proto

    def script(j: Journal) -> None:
        for i in range(1, 9):
            j.append(rec(i, 3 + 5 * (i % 3)))
            if i % 3 == 0:
                j.prune(i - 1)

    clean = SimFlash()
    script(Journal(clean, "j", 50, seg_bytes=64, link=proto.journal_link))
    total = clean.write_count
    for n in range(1, total + 1):
        flash = SimFlash()
        j = Journal(flash, "j", 50, seg_bytes=64, link=proto.journal_link)
        flash.cut_at(flash.write_count + n, keep)
        with pytest.raises(PowerCut):
            script(j)
        flash.power_on()
        j = Journal(flash, "j", 50, seg_bytes=64, link=proto.journal_link)
        chain = {0: bytes(32)}
        for i in range(1, j.last_seq + 1):
            chain[i] = _link(chain[i - 1], i, rec(i, 3 + 5 * (i % 3)))
        assert j.floor_digest == chain[j.floor]
        assert j.digest == chain[j.last_seq]
        for s in range(j.floor, j.last_seq + 1):
            assert j.link_at(s) == chain[s]
        assert j.link_at(j.floor - 1) is None and j.link_at(j.last_seq + 1) is None
        # and it goes on from there
        seq = j.append(b"after")
        assert j.digest == _link(chain[seq - 1], seq, b"after")

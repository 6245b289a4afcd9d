# The simulator's one fault-injecting flash: a hal.Flash that passes every call to an inner
# hal.Flash (memory blobs, or core FileFlash on a directory) and cuts the power at a chosen
# write. Written for MicroPython as well as CPython (no dataclasses, no typing at run time), so
# the same arithmetic runs everywhere a device runs:
#   CPython      sim/device/flash.py SimFlash (adds per-blob stats, bit flips, images, a seeded
#                choice of the bytes kept)
#   MicroPython  sim/vm/vm_device.py (the VM's simulated devices; copied into the VM next to
#                it) and tests/firmware/portable/ (the storage and wallet tests, in all three
# runtimes)
#
# Power cut: `cut_at(n, keep)` makes the n-th write/append (1-based, both counted together since
# the flash was made) store only a prefix of its data and raise hal.PowerCut; the device is then
# off (every call raises PowerCut) until `power_on()`, which also drops a cut not yet fired. The
# stored prefix is what a torn write leaves on real flash: for `write` the old content is gone,
# for `append` the old content stays. The prefix kept:
#   keep = n bytes       min(n, len)            (ALL: every byte, then the power goes)
#   keep_permille = p    len * p // 1000        (reproducible in every runtime: the runner's cuts)
#   neither              `choose_keep(len)`     (SimFlash: from its seeded rng)
try:
    from tapcash.firmware.core import hal
except ImportError:  # in MicroPython: the firmware tree is importable as `firmware`
    from firmware.core import hal

ALL = 1 << 62  # keep=ALL: the cut write stores every byte


class CutFlash(hal.Flash):
    def __init__(self, inner):
        self.inner = inner
        self.write_count = 0  # writes + appends attempted while powered
        self.powered = True
        self.writes = 0
        self.appends = 0
        self.bytes_written = 0  # bytes that reached the flash (a torn write counts its prefix)
        self.torn = 0  # writes/appends cut by a power cut
        self._cut_at = 0
        self._keep = None
        self._permille = None

    # -- fault control -------------------------------------------------------------------
    def cut_at(self, n, keep=None, keep_permille=None):
        """Cut the power during the n-th write/append since creation (1-based)."""
        if n <= self.write_count:
            raise ValueError(f"write {n} already happened (count is {self.write_count})")
        self._cut_at = n
        self._keep = keep
        self._permille = None if keep_permille is None else max(0, min(1000, keep_permille))

    def cut_after(self, k, keep=None, keep_permille=None):
        """Cut the power during the k-th write/append from now (k >= 1)."""
        self.cut_at(self.write_count + k, keep, keep_permille)

    def cancel_cut(self):
        self._cut_at = 0
        self._keep = None
        self._permille = None

    @property
    def cut_pending(self):
        return self._cut_at != 0

    def power_off(self):
        self.powered = False

    def power_on(self):
        """Power back on; a cut that did not fire yet is cancelled."""
        self.powered = True
        self.cancel_cut()

    def choose_keep(self, length):
        """The bytes kept when the cut names neither `keep` nor `keep_permille`."""
        return 0

    def kept(self, length):
        if self._permille is not None:
            return length * self._permille // 1000
        if self._keep is not None:
            return max(0, min(self._keep, length))
        return self.choose_keep(length)

    # -- hal.Flash -----------------------------------------------------------------------
    def check_power(self):
        if not self.powered:
            raise hal.PowerCut("flash is powered off")

    def read(self, name):
        self.check_power()
        return self.inner.read(name)

    def read_at(self, name, offset, n):
        self.check_power()
        return self.inner.read_at(name, offset, n)

    def size(self, name):
        self.check_power()
        return self.inner.size(name)

    def open_blob(self, name):
        """The inner flash's blob as an open file (firmware/core/comb.py open_blob)."""
        self.check_power()
        try:
            from tapcash.firmware.core import comb
        except ImportError:
            from firmware.core import comb
        return comb.open_blob(self.inner, name)

    def remove(self, name):
        self.check_power()
        self.inner.remove(name)

    def write(self, name, data):
        self.store("write", name, bytes(data))

    def append(self, name, data):
        self.store("append", name, bytes(data))

    def store(self, op, name, data):
        self.check_power()
        self.write_count += 1
        if op == "write":
            self.writes += 1
        else:
            self.appends += 1
        if self._cut_at != self.write_count:
            getattr(self.inner, op)(name, data)
            self.bytes_written += len(data)
            self.stored(op, name, len(data), len(data), False)
            return
        kept = self.kept(len(data))
        getattr(self.inner, op)(name, data[:kept])
        self.bytes_written += kept
        self.torn += 1
        self.cancel_cut()
        self.powered = False
        self.stored(op, name, kept, len(data), True)
        raise hal.PowerCut(
            f"power cut at write {self.write_count} ({op} {name}: {kept}/{len(data)})"
        )

    def stored(self, op, name, kept, length, torn):
        """Called after every write/append reached the inner flash (a subclass keeps stats)."""

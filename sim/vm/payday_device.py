# Replay one role's payment day (sim/vm/payday.py) on MicroPython and check every output.
#
#   micropython -X heapsize=N payday_device.py ROLE STREAM FLASH_DIR [ROMFS_IMAGE]
#
# ROLE is wallet or pos; STREAM the role's recorded day; FLASH_DIR an empty directory for
# the device's flash (core FileFlash, as on a board's littlefs). With ROMFS_IMAGE the image
# is mounted with vfs.VfsRom at /rom and the firmware imported in place from there; the
# image's own bytes are on the heap here (a board maps its partition): the first figure
# printed says how much.
#
# Prints one line per phase marker, "phase NAME alloc=.. total=.. peak=..", and "ok" at the
# end; a mismatch or an error is "FAIL ..." / a traceback with a non-zero exit. Kept free of
# anything the firmware would not have: this script is part of what the heap must hold.
import gc
import sys

import micropython

role = sys.argv[1]
stream = open(sys.argv[2], "rb")
flash_dir = sys.argv[3]

if len(sys.argv) > 4:
    import vfs

    f = open(sys.argv[4], "rb")
    image = f.read()
    f.close()
    del f
    vfs.mount(vfs.VfsRom(image), "/rom")
    sys.path.insert(0, "/rom")
    gc.collect()
    print("image", gc.mem_alloc())

from firmware.core.fileflash import FileFlash  # noqa: E402
from firmware.core.hal import Clock, Hal, Link, Rng  # noqa: E402

_head = bytearray(5)


def nxt(want=None):
    stream.readinto(_head)
    op = _head[0]
    n = _head[1] << 24 | _head[2] << 16 | _head[3] << 8 | _head[4]
    data = stream.read(n) if n else b""
    if want is not None and op != want:
        fail("expected record " + chr(want) + ", stream has " + chr(op))
    return op, data


def _head_of(want):
    # The next record's op and length, skipping the records the replay did not consume on
    # its way (random bytes not drawn, link exchanges not made: the device stopped early), so
    # the mismatch reported is the outcome's.
    while True:
        stream.readinto(_head)
        op = _head[0]
        n = _head[1] << 24 | _head[2] << 16 | _head[3] << 8 | _head[4]
        if op not in (78, 76, 65):  # N L A
            break
        stream.seek(n, 1)
    if op != want:
        fail("expected record " + chr(want) + ", stream has " + chr(op))
    return n


def answer(want):
    """The recorded outcome of the step."""
    n = _head_of(want)
    return stream.read(n) if n else b""


_chunk = bytearray(64)


def same_answer(resp):
    """Compare resp with the recorded response in place, 64 bytes at a time: a board sends
    its answer, it does not hold a second copy of it. -> None, or the recorded head."""
    n = _head_of(82)  # R
    same = n == len(resp)
    head = None
    mv = memoryview(resp)
    off = 0
    while off < n:
        k = stream.readinto(_chunk, min(64, n - off))
        if head is None:
            head = bytes(_chunk[:k])
        if same and mv[off : off + k] != _chunk[:k]:
            same = False
        off += k
    return None if same else (head or b"")


def fail(why):
    print("FAIL", why)
    sys.exit(1)


class ReplayRng(Rng):
    def random(self, n):
        _op, data = nxt(78)  # N
        if len(data) != n:
            fail("random(" + str(n) + "), recorded " + str(len(data)))
        return data


class ReplayClock(Clock):
    def __init__(self):
        self.t = 0

    def now(self):
        return self.t

    def set(self, t):
        self.t = t


class ReplayLink(Link):
    def transceive(self, apdu):
        _op, want = nxt(76)  # L
        if bytes(apdu) != want:
            fail("link command differs: " + bytes(apdu).hex() + " recorded " + want.hex())
        return nxt(65)[1]  # A


clock = ReplayClock()
hal = Hal(flash=FileFlash(flash_dir, sync=False), rng=ReplayRng(), link=ReplayLink(),
          clock=clock if role == "pos" else None)
if role == "wallet":
    from firmware.wallet.app import WalletApp

    app = WalletApp(hal)  # powers on, as the recording's did
else:
    from firmware.pos.app import PosApp

    app = PosApp(hal)
gc.collect()
print("import", gc.mem_alloc(), micropython.mem_total())

steps = 0
while True:
    op, data = nxt()
    if op == 75:  # K
        clock.t = int.from_bytes(data, "big")
    elif op == 66:  # B
        app.power_on()
    elif op == 80:  # P
        resp = app.process(data)
        data = data[:4]
        want = same_answer(resp)
        if want is not None:  # heads only: a mismatch found low on RAM must still be told
            fail("response to " + data.hex() + ": " + resp[:48].hex() + " recorded " + want.hex())
        resp = None
        steps += 1
    elif op == 84:  # T
        amount = int.from_bytes(data[:8], "big")
        r = app.take_payment(amount, data[8:] or None)
        line = r.status + " " + r.reason + " " + str(r.counter)
        want = answer(69).decode()  # E
        if line != want:
            fail("payment " + str(amount) + ": " + line + ", recorded " + want)
        r = None
        steps += 1
    elif op == 77:  # M
        gc.collect()
        print("phase", data.decode(), "alloc=" + str(gc.mem_alloc()),
              "total=" + str(micropython.mem_total()))
        if data == b"end":
            break
    else:
        fail("unexpected record " + chr(op))
print("ok", steps)

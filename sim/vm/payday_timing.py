# `tapcash bench firmware`: the payment-day replay (payday_device.py) with the role's entry
# points timed. Runs inside MicroPython (the native unix port, or the WebAssembly VM):
#
#   micropython payday_timing.py REPLAY_SCRIPT ROLE STREAM FLASH_DIR [ROMFS_IMAGE]
#
# The image (if any) is mounted here, so the firmware classes can be wrapped before the replay
# imports them; then the replay runs unchanged. Prints "time KEY us us ..." per key at the end:
# the wallet's process() by INS (hex), the POS's take_payment as "pay". Not for heap figures:
# this script and its lists are on the heap too (tests/firmware/test_heap_budget.py replays alone).
import sys
import time

args = sys.argv[1:]
script = args[0]
rest = args[1:]
if len(rest) > 3:
    import vfs

    f = open(rest[3], "rb")
    vfs.mount(vfs.VfsRom(f.read()), "/rom")
    f.close()
    sys.path.insert(0, "/rom")
    rest = rest[:3]
T = {}


def timed(cls, name, key):
    orig = getattr(cls, name)

    def wrapper(self, *a):
        t = time.ticks_us()
        r = orig(self, *a)
        dt = time.ticks_diff(time.ticks_us(), t)
        k = key(a)
        if k not in T:
            T[k] = []
        T[k].append(dt)
        return r

    setattr(cls, name, wrapper)


if rest[0] == "wallet":
    from firmware.wallet.app import WalletApp

    timed(WalletApp, "process", lambda a: hex(a[0][1])[2:])
else:
    from firmware.pos.app import PosApp

    timed(PosApp, "take_payment", lambda a: "pay")

sys.argv[:] = [script] + rest
f = open(script)
src = f.read()
f.close()
try:
    exec(src, {"__name__": "__main__"})
finally:
    for k in T:
        print("time", k, " ".join(str(v) for v in T[k]))

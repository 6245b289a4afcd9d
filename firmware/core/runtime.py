# Differences between CPython, desktop MicroPython and ESP32 MicroPython, in one place.
# Everything else in firmware/ imports these names instead of probing the platform itself.
import sys

IS_MICROPYTHON = sys.implementation.name == "micropython"

try:
    from micropython import const  # noqa: F401
except ImportError:

    def const(value):
        return value


try:
    import micropython as _mp

    native = getattr(_mp, "native", None)
    viper = getattr(_mp, "viper", None)
except ImportError:
    native = None
    viper = None


def _identity(fn):
    return fn


# The webassembly port and CPython have no native code emitter: fall back to plain bytecode.
if native is None or sys.platform in ("webassembly", "javascript"):
    native = _identity
if viper is None or sys.platform in ("webassembly", "javascript"):
    viper = None

try:
    import time as _time

    ticks_ms = _time.ticks_ms
    ticks_us = _time.ticks_us
    ticks_diff = _time.ticks_diff
except AttributeError:
    import time as _time

    def ticks_ms():
        return int(_time.monotonic() * 1000)

    def ticks_us():
        return int(_time.monotonic() * 1000000)

    def ticks_diff(a, b):
        return a - b


try:
    from os import urandom
except ImportError:
    # The webassembly port has no os.urandom, and its `urandom`/`random` module is a seeded
    # PRNG: take the host's CSPRNG through the JS bridge instead. Never fall back to a PRNG.
    import js  # type: ignore

    def urandom(n):
        buf = js.Uint8Array.new(n)
        js.crypto.getRandomValues(buf)
        return bytes(buf)


try:
    from hashlib import sha256
except ImportError:
    from uhashlib import sha256  # type: ignore  # noqa: F401


# A board's heap is fixed: collecting at the start of each command frees the last one's
# garbage before this one places its long-lived objects, which keeps the heap unfragmented
# (measured: 4-5 KB less heap for a payment day). CPython and the webassembly VM (whose heap
# grows and is collected between calls) skip it: there it only costs time.
FIXED_HEAP = IS_MICROPYTHON and sys.platform not in ("webassembly", "javascript")
if FIXED_HEAP:
    from gc import collect
else:

    def collect():
        pass


def resident(prefix):
    """The names of the modules under `prefix` imported so far (what `release` keeps); None
    where release does nothing."""
    return set(n for n in sys.modules if n.startswith(prefix)) if FIXED_HEAP else None


def release(prefix, keep):
    """Forget the modules under `prefix` (a package name and a dot) imported since `keep`
    was taken (resident()): a command's handler modules, so the next command finds their
    heap free (flash, not RAM, holds code until it is needed: Trezor's pattern). The next
    use imports them again. Only on a board-like fixed heap; elsewhere nothing happens (and
    tests may hold and patch the modules)."""
    if keep is None:
        return
    mods = sys.modules
    gone = [n for n in mods if n.startswith(prefix) and n not in keep]
    for name in gone:
        del mods[name]
        i = name.rfind(".")
        parent = mods.get(name[:i])
        if parent is not None:  # the package holds its submodules as attributes
            try:
                delattr(parent, name[i + 1 :])
            except AttributeError:
                pass

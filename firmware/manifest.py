# MicroPython manifest: freeze the tapcash firmware into a custom MicroPython build.
#
#   cd micropython/ports/esp32
#   make BOARD=ESP32_GENERIC FROZEN_MANIFEST=/path/to/tapcash/firmware/manifest.py
#
# (or set(MICROPY_FROZEN_MANIFEST .../manifest.py) in a board's mpconfigboard.cmake). Frozen
# bytecode and its constant strings stay in flash and run from there; modules loaded from .mpy
# files are copied into the heap. Measured in the MicroPython 1.27 VM (32-bit), heap retained
# after import from .mpy: wallet app + PN532 card driver about 81 KB, POS app + reader driver +
# display + keypad about 96 KB: most of an ESP32's ~110 KB heap without PSRAM. Frozen, only the
# module objects, their globals and class dicts stay in RAM.
#
# A board running frozen firmware must not also hold /firmware on its filesystem: sys.path puts
# the filesystem ("" and /lib) before ".frozen", so the files would shadow the frozen modules.
# The boot stub (/main.py, written by deploy) stays the same: `import firmware.main` then
# `firmware.main.run()`.
#
# This file is read by MicroPython's build (tools/manifestfile.py), not imported on a device.
# Manifest paths are relative to this file's folder; $(PORT_DIR) / $(BOARD_DIR) are the build's.

# keep the modules the port freezes by default (_boot, inisetup, ...)
include("$(PORT_DIR)/boards/manifest.py")  # noqa: F821

# the package `firmware` (core, wallet, pos, hal, main); opt=0 keeps asserts and line numbers
package("firmware", base_path="..", opt=0)  # noqa: F821

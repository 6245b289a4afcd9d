# tapcash firmware: the same files run as `tapcash.firmware` on CPython and as `firmware`
# on a MicroPython filesystem, so every import inside this folder is relative.

# Runs INSIDE the MicroPython VM of `tapcash sim board` (sim/vm/repl_pty.py installs it as
# /home/simboard/board_romfs.py; the board's boot calls install()). The board's ROMFS
# partition, as MicroPython 1.25+ on an ESP32 with a "romfs" partition has it:
#
# - vfs.rom_ioctl (the calls `mpremote romfs query/deploy` make: 1 count, 2 segment, 3 prepare,
#   4 write, 5 complete, 6 block size) on a partition kept in a file of the board, of the size
#   the host wrote to SIZE_FILE (0, the default, is a stock image: ROMFS support, no partition);
# - at boot a valid image is mounted at /rom and /rom, /rom/lib put on sys.path after "" and
#   ".frozen", as the port does. This VM has no VfsRom, so "mounted" means the image's files
#   are unpacked into /rom (read as written; bytecode is loaded, not run in place: heap figures
#   of the ROMFS form come from the native port, tests/host/test_deploy_romfs.py).
import sys

PART = "/home/simboard/romfs.part"
SIZE_FILE = "/home/simboard/romfs_kb"  # KB, written by the host
BLOCK = 4096
SIZE = 0


def _size():
    try:
        with open(SIZE_FILE) as f:
            return int(f.read().strip() or "0") * 1024
    except (OSError, ValueError):
        return 0


HEADER = b"\xd2\xcd\x31"
ROOT = "/rom"


def _read():
    try:
        with open(PART, "rb") as f:
            data = bytearray(f.read())
    except OSError:
        data = bytearray()
    if len(data) != SIZE:
        data = bytearray(b"\xff" * SIZE)
    return data


def _write(data):
    with open(PART, "wb") as f:
        f.write(data)


def rom_ioctl(op, *args):
    if op == 1:
        return 1 if SIZE else 0
    if not SIZE or (args and args[0] != 0):
        return -22  # EINVAL: one partition
    if op == 2:
        return memoryview(_read())
    if op == 6:
        return BLOCK
    if op == 3:  # prepare (erase): (id, length) or (id, offset, length)
        offset, length = (0, args[1]) if len(args) == 2 else (args[1], args[2])
        if offset < 0 or offset + length > SIZE:
            return -22
        data = _read()
        data[offset : offset + length] = b"\xff" * length
        _write(data)
        return 4  # the smallest write
    if op == 4:
        offset, buf = args[1], args[2]
        if offset < 0 or offset + len(buf) > SIZE:
            return -22
        data = _read()
        data[offset : offset + len(buf)] = buf
        _write(data)
        return 0
    if op == 5:
        return 0
    return -22


def _uint(b, i):
    v = 0
    while True:
        c = b[i]
        i += 1
        v = (v << 7) | (c & 0x7F)
        if not c & 0x80:
            return v, i


def _unpack(b, i, end, path, os):
    while i < end:
        kind, i = _uint(b, i)
        n, i = _uint(b, i)
        body_end = i + n
        if kind in (4, 5):  # directory, file: name then records
            name_len, j = _uint(b, i)
            name = bytes(b[j : j + name_len]).decode()
            j += name_len
            target = path + "/" + name
            if kind == 4:
                os.mkdir(target)
                _unpack(b, j, body_end, target, os)
            else:
                data = b""
                while j < body_end:
                    k, j = _uint(b, j)
                    m, j = _uint(b, j)
                    if k == 2:
                        data = bytes(b[j : j + m])
                    j += m
                with open(target, "wb") as f:
                    f.write(data)
        i = body_end


def _rmtree(path, os):
    try:
        entries = list(os.ilistdir(path))
    except OSError:
        return
    for e in entries:
        p = path + "/" + e[0]
        if e[1] & 0x4000:
            _rmtree(p, os)
        else:
            os.remove(p)
    os.rmdir(path)


def mount(os):
    """Unpack a valid image at /rom and put it on sys.path; True when there was one."""
    _rmtree(ROOT, os)
    data = _read()
    if data[:3] != HEADER:
        return False
    size, i = _uint(data, 3)
    os.mkdir(ROOT)
    _unpack(data, i, i + size, ROOT, os)
    at = 2 if len(sys.path) > 1 and sys.path[1] == ".frozen" else 1
    for p in (ROOT + "/lib", ROOT):
        if p not in sys.path:
            sys.path.insert(at, p)
    return True


def install(os):
    global SIZE
    import vfs as real

    SIZE = _size()

    class BoardVfs:
        def __init__(self):
            for name in dir(real):
                if not name.startswith("__"):
                    setattr(self, name, getattr(real, name))

    shim = BoardVfs()
    shim.rom_ioctl = rom_ioctl
    sys.modules["vfs"] = shim
    mount(os)

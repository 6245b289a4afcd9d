# hal.Flash on plain files: littlefs on an ESP32 (MicroPython), any directory on a desktop.
#
# Each blob is one file `<root>/<name>`. Only open, os.remove, os.stat and os.mkdir are used,
# which MicroPython and CPython both have. Every call opens, writes, flushes and closes its
# file: on littlefs the new data is committed when the file is closed, on a desktop fsync
# (where os has it) pushes it to the disk before the call returns.
#
# Crash safety is NOT this module's job: a write may be torn by a power cut. Build on
# core/storage.py, which assumes any prefix of a write or append can survive.
import os

from .hal import Flash


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _makedirs(path):
    # MicroPython has no os.makedirs: create each missing component in turn.
    parts = path.split("/")
    cur = "/" if path.startswith("/") else ""
    for part in parts:
        if not part:
            continue
        cur = cur + part if cur in ("", "/") else cur + "/" + part
        if not _exists(cur):
            try:
                os.mkdir(cur)
            except OSError:
                if not _exists(cur):
                    raise


_fsync = getattr(os, "fsync", None)


class FileFlash(Flash):
    """Named blobs as files in `root_dir` (created if missing).

    Blob names are plain file names: no "/" and not "." or "..".
    `sync=True` also calls os.fsync after each write where the platform has it (CPython);
    littlefs commits on close, so MicroPython needs nothing more.
    """

    def __init__(self, root_dir, sync=True):
        root_dir = root_dir.rstrip("/") or "/"
        _makedirs(root_dir)
        self.root = root_dir
        self.sync = sync

    def _path(self, name):
        if not name or "/" in name or name in (".", ".."):
            raise ValueError("bad blob name")
        if self.root == "/":
            return "/" + name
        return self.root + "/" + name

    def read(self, name):
        try:
            f = open(self._path(name), "rb")
        except OSError:
            return None
        try:
            # one allocation of the blob's size: read() without a size grows its buffer step
            # by step, and on a fixed heap each step needs a bigger free run than the last
            n = f.seek(0, 2)
            f.seek(0)
            return f.read(n) if n else b""
        finally:
            f.close()

    def read_at(self, name, offset, n):
        try:
            f = open(self._path(name), "rb")
        except OSError:
            return b""
        try:
            f.seek(offset)
            return f.read(n) or b""
        finally:
            f.close()

    def _put(self, name, data, mode):
        f = open(self._path(name), mode)
        try:
            f.write(data)
            f.flush()
            if self.sync and _fsync is not None:
                _fsync(f.fileno())
        finally:
            f.close()

    def write(self, name, data):
        self._put(name, data, "wb")

    def append(self, name, data):
        self._put(name, data, "ab")

    def remove(self, name):
        try:
            os.remove(self._path(name))
        except OSError:
            pass

    def size(self, name):
        try:
            return os.stat(self._path(name))[6]
        except OSError:
            return 0

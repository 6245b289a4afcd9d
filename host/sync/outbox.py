"""The local outbox: every exported batch is on disk before the ledger sees it.

One file per batch, `<device id hex>-<first seq>-<last seq>.batch`, holding deterministic CBOR.
Files are written atomically (temporary file, fsync, rename, fsync of the folder), so after a
crash a batch is either whole or absent; leftover temporary files are ignored and swept (a
writer locks its temporary file, so a sweep tells an abandoned one from one in flight).
A batch leaves the outbox only after the ledger stored it AND the device took the ledger's ack,
so anything the device prunes is on the ledger. Re-sending a batch is harmless: the ledger
deduplicates by (device, seq) / (wallet, counter).

Batch map (string keys, so the file is readable with any CBOR tool):
    device   bstr 8    device id
    kind     uint      1 wallet, 2 POS (from the certificate)
    cert     bstr      device certificate envelope (from INFO)
    records  array     [[seq, record], ...], seq ascending; record = the CBOR bytes of the
                       journal record map (as the device journaled it)
    status   bstr      device-signed status envelope (the last EXPORT's)
    created  uint      unix seconds when the batch was exported
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cbor2

SUFFIX = ".batch"
TMP_PREFIX = ".tmp-"


def default_dir() -> Path:
    """$TAPCASH_OUTBOX, else $XDG_DATA_HOME/tapcash/outbox (~/.local/share/tapcash/outbox)."""
    env = os.environ.get("TAPCASH_OUTBOX")
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return Path(base) / "tapcash" / "outbox"


@dataclass
class Batch:
    device: bytes
    kind: int
    cert: bytes
    records: list[tuple[int, bytes]] = field(default_factory=list)  # (seq, record CBOR)
    status: bytes = b""
    created: int = 0

    @property
    def first_seq(self) -> int:
        return int(self.records[0][0]) if self.records else 0

    @property
    def last_seq(self) -> int:
        return int(self.records[-1][0]) if self.records else 0

    def name(self) -> str:
        return f"{self.device.hex()}-{self.first_seq:010d}-{self.last_seq:010d}{SUFFIX}"

    def encode(self) -> bytes:
        return cbor2.dumps(
            {
                "device": self.device,
                "kind": self.kind,
                "cert": self.cert,
                "records": [[seq, rec] for seq, rec in self.records],
                "status": self.status,
                "created": self.created,
            },
            canonical=True,
        )

    @classmethod
    def decode(cls, data: bytes) -> Batch:
        m = cbor2.loads(data)
        if not isinstance(m, dict):
            raise ValueError("batch is not a map")
        device = m["device"]
        if not isinstance(device, bytes) or len(device) != 8:
            raise ValueError("batch device id")
        records = m["records"]
        if not isinstance(records, list) or not all(
            isinstance(r, list) and len(r) == 2 and isinstance(r[1], bytes) for r in records
        ):
            raise ValueError("batch records")
        return cls(
            device=device,
            kind=int(m["kind"]),
            cert=bytes(m["cert"]),
            records=[(int(seq), rec) for seq, rec in records],
            status=bytes(m["status"]),
            created=int(m.get("created", 0)),
        )


class Outbox:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _ensure(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def put(self, batch: Batch) -> Path:
        """Store a batch durably; returns its path. A batch of the same name is replaced."""
        self._ensure()
        path = self.root / batch.name()
        tmp = self.root / f"{TMP_PREFIX}{os.getpid()}-{batch.name()}.part"
        data = batch.encode()
        fd = _open_locked(tmp)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
            os.replace(tmp, path)
        finally:
            os.close(fd)  # the lock goes with it: only now may a sweep look at the name
        _fsync_dir(self.root)
        return path

    def paths(self, device: bytes | None = None) -> list[Path]:
        """Stored batches, oldest records first (per device, by first seq)."""
        if not self.root.is_dir():
            return []
        prefix = device.hex() + "-" if device is not None else ""
        return sorted(
            p
            for p in self.root.iterdir()
            if p.name.endswith(SUFFIX)
            and p.name.startswith(prefix)
            and not p.name.startswith(TMP_PREFIX)
            and p.is_file()
        )

    def __iter__(self) -> Iterator[tuple[Path, Batch]]:
        for p in self.paths():
            yield p, Batch.decode(p.read_bytes())

    def load(self, path: Path) -> Batch:
        return Batch.decode(Path(path).read_bytes())

    def remove(self, path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        _fsync_dir(self.root)

    def sweep_temporaries(self) -> int:
        """Delete temporary files left by a writer that was killed mid-write. A writer holds an
        exclusive lock on its file until it is renamed, and the kernel drops the lock when the
        writer dies, so a file whose lock can be taken is abandoned. (A pid in the name would be
        judged alive once the pid is reused.) A concurrent sync's file in flight is left alone."""
        if not self.root.is_dir():
            return 0
        n = 0
        for p in self.root.iterdir():
            if p.name.startswith(TMP_PREFIX) and _remove_if_abandoned(p):
                n += 1
        return n


def _open_locked(tmp: Path) -> int:
    """A new temporary file, open for writing and locked by this process. A sweep may unlink
    the name between the open and the lock: then the file has no link left and is made again."""
    while True:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_nlink > 0:
            return fd
        os.close(fd)


def _remove_if_abandoned(p: Path) -> bool:
    try:
        fd = os.open(p, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a live writer holds it
        try:  # still the file we locked (not renamed away and made again)?
            if os.stat(p).st_ino != os.fstat(fd).st_ino:
                return False
            os.unlink(p)
        except FileNotFoundError:
            return False
        return True
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""A batch's signature checks in helper processes, alongside its transaction.

Ingest is bounded by signature checks (docs/PERFORMANCE.md): everything else a batch costs
(decoding, dedup and fraud lookups, postings, the journal chain, the commit) can run while the
signatures are checked, on another core. With `verify_procs` N > 0 (`Ledger(verify_procs=N)`,
`tapcash ledger serve --verify-procs N` or TAPCASH_LEDGER_VERIFY_PROCS) the payment and receipt
signatures of a batch go to N helper processes; the batch's transaction runs meanwhile and
waits for their answer before it touches an account balance (`_Apply.run`), so a batch with a
bad signature is refused with the same 400 as before and stores nothing. N = 0 (the default)
checks them inline.

The helpers run the same `ed25519.verify` as the ledger (PyNaCl on CPython, or the pure code
with TAPCASH_CRYPTO=pure), each a fresh `python` reading framed lists of checks on its stdin (no
fork of a threaded server); they exit when the ledger closes their input or dies. A helper that
dies fails the batch with a 503, never a wrong answer; a new one is started for the next batch.
"""

from __future__ import annotations

import os
import threading
import time

from .env import ENV_VERIFY_PROCS
from .errors import LedgerError

ENV_PROCS = ENV_VERIFY_PROCS
MIN_INLINE = 64  # fewer checks than this are done inline: a round trip costs more

Check = tuple[bytes, bytes, bytes]  # public key, message (tag + body), signature


def first_bad(checks: list[Check]) -> int:
    """Index of the first check that fails, -1 when all pass (inline, and in a helper
    process)."""
    from tapcash.firmware.core import ed25519

    if ed25519.backend() == "nacl":
        return _first_bad_sodium(checks)
    verify = ed25519.verify
    for i, (pk, msg, sig) in enumerate(checks):
        if not verify(pk, msg, sig):
            return i
    return -1


def _first_bad_sodium(checks: list[Check]) -> int:
    """first_bad with PyNaCl's libsodium called directly: the same crypto_sign_open as
    ed25519.verify (nacl.bindings.crypto_sign_open), without its two buffers allocated per
    call and the wrappers' checks (one output buffer for the batch): 1-3 us of a 55-60 us
    check. Anything not bytes of the right sizes goes the general way."""
    from nacl._sodium import ffi, lib

    from tapcash.firmware.core import ed25519

    sign_open = lib.crypto_sign_open
    size = 64 + max((len(m) for _pk, m, _s in checks), default=0)
    out = ffi.new("unsigned char[]", size)
    out_len = ffi.new("unsigned long long *")
    for i, (pk, msg, sig) in enumerate(checks):
        if (type(pk) is bytes and type(msg) is bytes and type(sig) is bytes
                and len(pk) == 32 and len(sig) == 64):
            sm = sig + msg
            if sign_open(out, out_len, sm, len(sm), pk) != 0:
                return i
        elif not ed25519.verify(pk, msg, sig):
            return i
    return -1


def procs_from_env() -> int:
    text = os.environ.get(ENV_PROCS, "0")
    try:
        n = int(text)
    except ValueError:
        raise LedgerError(500, f"{ENV_PROCS}: expected a number, got {text!r}") from None
    if not 0 <= n <= 64:
        raise LedgerError(500, f"{ENV_PROCS}: expected 0..64, got {n}")
    return n


def serve() -> None:
    """A helper process: read framed lists of checks on stdin, answer `first_bad` on stdout;
    exit at end of input (the ledger closed it, or died)."""
    import pickle
    import sys

    inp, out = sys.stdin.buffer, sys.stdout.buffer
    while True:
        head = inp.read(4)
        if len(head) < 4:
            return
        data = inp.read(int.from_bytes(head, "big"))
        out.write(first_bad(pickle.loads(data)).to_bytes(8, "big", signed=True))
        out.flush()


class _Helper:
    """One helper process (`python -c ...serve()`: no fork of a threaded server, no import of
    the caller's main module)."""

    def __init__(self) -> None:
        import subprocess
        import sys

        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from tapcash.host.ledger.verify import serve; serve()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:  # a batch's checks fit the pipe: sending them never waits for the helper
            import fcntl

            fcntl.fcntl(self.proc.stdin.fileno(), fcntl.F_SETPIPE_SZ, 1 << 20)  # type: ignore
        except (ImportError, AttributeError, OSError):
            pass

    def send(self, checks: list[Check]) -> None:
        import pickle

        data = pickle.dumps(checks, protocol=pickle.HIGHEST_PROTOCOL)
        assert self.proc.stdin is not None
        self.proc.stdin.write(len(data).to_bytes(4, "big") + data)
        self.proc.stdin.flush()

    def answer(self) -> int:
        assert self.proc.stdout is not None
        got = self.proc.stdout.read(8)
        if len(got) < 8:
            raise OSError("signature helper stopped")
        return int.from_bytes(got, "big", signed=True)

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(10)


class Pending:
    """The answer of one batch's checks: `bad()` checks the batch's own share inline (the
    ingesting thread has done its other work by then), waits for the helpers' answers and gives
    the first failing index."""

    def __init__(self, verifier: Verifier, parts: list[tuple[int, _Helper]],
                 local: list[Check], offset: int) -> None:
        self._verifier = verifier
        self._parts = parts
        self._local = local
        self._offset = offset
        self._t0 = time.perf_counter()
        self._bad: int | None = None

    def bad(self) -> int:
        if self._bad is not None:
            return self._bad
        t1 = time.perf_counter()
        i = first_bad(self._local)
        t2 = time.perf_counter()
        bad = self._offset + i if i >= 0 else -1
        broken = False
        for offset, helper in self._parts:  # every helper's answer read: all back idle
            try:
                i = helper.answer()
            except OSError:
                broken = True
                self._verifier.discard(helper)
                continue
            self._verifier.release(helper)
            if i >= 0 and (bad < 0 or offset + i < bad):
                bad = offset + i
        if broken:
            raise LedgerError(503, "signature checker stopped: retry the upload")
        n = len(self._local) + self._offset
        if self._parts and n:
            self._verifier.learn((t1 - self._t0) / n, (t2 - t1) / len(self._local)
                                 if self._local else None)
        self._bad = bad
        return bad


class Verifier:
    """N helper processes, started on first use, shared by the threads of one ledger. A batch
    takes the idle ones; when every helper is busy with other batches it checks inline."""

    def __init__(self, procs: int) -> None:
        self.procs = procs
        # Per check, in seconds: the ingesting thread's other work (from sending the checks
        # off to asking for the answer) and one inline check. The helpers get the share that
        # makes everyone finish together (`start`); these follow the last batches.
        self._work = 20e-6
        self._check = 60e-6
        self._idle: list[_Helper] = []
        self._started = 0
        self._lock = threading.Lock()

    def _take(self) -> list[_Helper]:
        with self._lock:
            got, self._idle = self._idle, []
            new = self.procs - self._started - len(got)
            self._started += max(0, new)
        try:
            got += [_Helper() for _ in range(max(0, new))]
        except OSError:
            with self._lock:
                self._started -= max(0, new)
            raise
        return got

    def release(self, helper: _Helper) -> None:
        with self._lock:
            self._idle.append(helper)

    def discard(self, helper: _Helper) -> None:
        with self._lock:
            self._started -= 1
        try:
            helper.proc.kill()
            helper.proc.wait(10)
        except OSError:
            pass

    def learn(self, work: float, check: float | None) -> None:
        with self._lock:
            self._work = 0.7 * self._work + 0.3 * work
            if check is not None:
                self._check = 0.7 * self._check + 0.3 * check

    def start(self, checks: list[Check]) -> Pending:
        """Send the first checks off, one part per idle helper (in order), and keep the rest for
        the ingesting thread; returns at once. With H helpers, w = its other work per check and
        c = a check: each helper takes s = (1 + w/c) / (H + 1) of them, the thread the rest
        after its work, so all finish at about the same time."""
        helpers = self._take() if len(checks) >= MIN_INLINE else []
        if not helpers:
            return Pending(self, [], checks, 0)
        share = min(1.0 / len(helpers), (1 + self._work / self._check) / (len(helpers) + 1))
        size = max(1, int(len(checks) * share))
        sent = min(len(checks), size * len(helpers))
        parts: list[tuple[int, _Helper]] = []
        for n, i in enumerate(range(0, sent, size)):
            h = helpers[n]
            try:
                h.send(checks[i : i + size])
            except OSError:
                self.discard(h)
                for _o, sent in parts:  # drain what was sent: they go back idle
                    try:
                        sent.answer()
                        self.release(sent)
                    except OSError:
                        self.discard(sent)
                for rest in helpers[n + 1 :]:
                    self.release(rest)
                raise LedgerError(503, "signature checker stopped: retry the upload") from None
            parts.append((i, h))
        for rest in helpers[len(parts) :]:
            self.release(rest)
        return Pending(self, parts, checks[sent:], sent)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
            self._started -= len(idle)
        for h in idle:
            h.close()

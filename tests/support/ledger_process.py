"""`tapcash ledger serve` as an operator runs it, in a process of its own, for the tests that
need the real server process (its log, its exit, several of them on one database).

    server = LedgerServe(db_url, issuer_key_path, token, log=tmp_path / "serve.log")
    ...                         # server.url, server.proc
    server.stop()

The in-process ledger (same app, a thread of the test) is host/ledger/loopback.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

import httpx
from cli_run import TAPCASH

from tapcash.host.ledger.loopback import free_port

START_TIMEOUT_S = 60.0


class LedgerServe:
    """`tapcash ledger serve --db DB --issuer-key KEY --token TOKEN --port <free>` in its own
    process group (more options in `args`); output to `log` (a file) when given. Its
    environment is `environ` (this process's unless given) with `env` over it; `cwd` is where
    it runs (relative --db and key paths are read from there). Waits for /v1/health unless
    `wait=False` (then call `wait()`). stop() is SIGTERM (then SIGKILL), kill() SIGKILL at once,
    to every process of the group (the workers too)."""

    def __init__(
        self,
        db: str,
        key: Path,
        token: str,
        log: Path | None = None,
        *,
        access_log: bool = False,
        env: dict[str, str] | None = None,
        environ: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        port: int | None = None,
        wait: bool = True,
        args: list[str] | None = None,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        argv = [*TAPCASH, "ledger", "serve", "--db", db, "--issuer-key", str(key),
                "--token", token, "--port", str(self.port),
                "--access-log" if access_log else "--no-access-log", *(args or [])]  # fmt: skip
        out = log.open("wb") if log is not None else None
        try:
            self.proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT if out is not None else None,
                env={**(os.environ if environ is None else environ), **(env or {})},
                cwd=cwd,
                start_new_session=True,
            )
        finally:
            if out is not None:
                out.close()
        if wait:
            self.wait()

    def wait(self, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if httpx.get(self.url + "/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                said = self.log.read_text() if self.log is not None else "(no log kept)"
                raise AssertionError(f"tapcash ledger serve did not come up:\n{said}")
            time.sleep(0.1)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

"""The real ledger service on loopback, for the simulator, the benches and the tests.

    with LoopbackLedger(ledger, token) as srv:        # a service.Ledger you built
        LedgerClient(srv.url, token)
    with LoopbackLedger.on_sqlite(path, issuer, clock=sim_clock.now) as srv:
        srv.ledger, srv.client()

The ledger's FastAPI app (`app.create_app`) under uvicorn on 127.0.0.1, on a port the kernel
picks (port 0, so runs side by side never collide), in a daemon thread of this process: the
ledger shares the caller's clock, a simulated one included. TCP_NODELAY is set on the listening
socket, which accepted connections inherit: without it every keep-alive request waits ~40 ms for
a delayed ACK (uvicorn sets it only on sockets it binds itself). uvicorn is imported only here,
when a server is made.

`tapcash ledger serve` is the production entry point (several workers, a real port); this one
serves a single process for as long as a `with` block, a run or a test lasts.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tapcash.host.issuer import Issuer

    from .client import LedgerClient
    from .db import Database
    from .service import Ledger

HOST = "127.0.0.1"
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0


class LoopbackLedger:
    """One Ledger served over real HTTP on 127.0.0.1:<free port> until `stop()`."""

    def __init__(
        self,
        ledger: Ledger,
        token: str | None = None,
        *,
        db: Database | None = None,
        name: str = "ledger",
        log_level: str = "warning",
    ) -> None:
        import uvicorn

        from .app import create_app

        self.ledger = ledger
        self.db = db
        self.token = token or secrets.token_urlsafe(16)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((HOST, 0))
        self._sock = sock
        self.port: int = sock.getsockname()[1]
        self.url = f"http://{HOST}:{self.port}"
        config = uvicorn.Config(
            create_app(ledger, self.token), log_level=log_level, access_log=False, lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, daemon=True, name=name
        )

    @classmethod
    def on_sqlite(
        cls,
        path: str | Path,
        issuer: Issuer,
        token: str | None = None,
        *,
        clock: Callable[[], float] | None = None,
        pool_size: int | None = None,
        **kw: Any,
    ) -> LoopbackLedger:
        """A fresh (or existing) SQLite ledger at `path`, migrated, on `clock` (default: time)."""
        from .db import Database
        from .migrations import migrate
        from .service import Ledger

        db = Database(str(path)) if pool_size is None else Database(str(path), pool_size=pool_size)
        migrate(db)
        ledger = Ledger(db, issuer) if clock is None else Ledger(db, issuer, clock=clock)
        return cls(ledger, token, db=db, **kw)

    def start(self) -> LoopbackLedger:
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                self._sock.close()
                raise RuntimeError("the ledger service on loopback did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(STOP_TIMEOUT_S)
        self._sock.close()

    def client(self) -> LedgerClient:
        from .client import LedgerClient

        return LedgerClient(self.url, token=self.token)

    def __enter__(self) -> LoopbackLedger:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def free_port() -> int:
    """A port on 127.0.0.1 nobody listens on now (for a server in another process, or a dead
    address to test against)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])

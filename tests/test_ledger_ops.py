"""The ledger as an operator runs it (issue #11): `tapcash ledger serve` says where it listens
and logs each request (uvicorn's own logging); a mistyped database, a database that is down and
a wrong operator token are one line on stderr and a non-zero exit, never a traceback, and leave
nothing behind. Real subprocesses of the installed CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
from test_ledger_schemathesis import TOKEN, Serve

from tapcash.host.issuer import Issuer

TAPCASH = [sys.executable, "-c", "from tapcash.host.cli import main; main()"]


def tapcash(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TAPCASH, *args], capture_output=True, text=True, timeout=timeout)


def test_serve_logs_where_it_listens_the_docs_and_each_request(tmp_path: Path) -> None:
    """Found: `tapcash ledger serve` printed nothing: no URL, no docs link, no access log."""
    key = tmp_path / "issuer.key"
    Issuer.generate().save(key)
    server = Serve(str(tmp_path / "ledger.db"), key, tmp_path / "serve.log", access_log=True)
    try:
        assert httpx.get(server.url + "/v1/health").status_code == 200
        assert (
            httpx.get(
                server.url + "/v1/whoami", headers={"Authorization": "Bearer nope"}
            ).status_code
            == 401
        )
        assert (
            httpx.get(
                server.url + "/v1/whoami", headers={"Authorization": f"Bearer {TOKEN}"}
            ).status_code
            == 200
        )
    finally:
        server.stop()
    log = server.log.read_text()
    assert f"serving {server.url}" in log
    assert f"API docs {server.url}/docs" in log and f"{server.url}/openapi.json" in log
    assert f"Uvicorn running on {server.url}" in log  # uvicorn's own startup line
    assert '"GET /v1/health HTTP/1.1" 200' in log  # uvicorn's access log, one line a request
    assert '"GET /v1/whoami HTTP/1.1" 401' in log
    assert '"GET /v1/whoami HTTP/1.1" 200' in log
    assert TOKEN not in log

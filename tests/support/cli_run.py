"""The real commands as a user runs them, from the tests: `tapcash` (this checkout's, through
the interpreter running the tests) and mpremote, each in a subprocess.

    done = run_cli("deploy", "--port", port, ...)   # never a traceback on stderr
    out = mpremote(port, "exec", "print(1)")        # exit 0 or the test fails with the output
"""

from __future__ import annotations

import os
import subprocess
import sys

CLI = "from tapcash.host.cli import main; main()"
TAPCASH = [sys.executable, "-c", CLI]
KEEP_ENV = ("TAPCASH_MPVM_DIR",)  # where the MicroPython VM is installed: not a setting


def clean_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without TAPCASH_* settings (but KEEP_ENV), plus `env`."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("TAPCASH_") or k in KEEP_ENV}
    out.update(env or {})
    return out


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """`tapcash ARGS` with a clean environment; asserts no traceback reached stderr."""
    done = subprocess.run(
        [*TAPCASH, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_env(env),
        stdin=subprocess.DEVNULL,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done


def mpremote(port: str, *args: str, timeout: float = 120) -> str:
    """`mpremote connect PORT ARGS`; its stdout, asserting exit 0."""
    done = subprocess.run(
        [sys.executable, "-m", "mpremote", "connect", port, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout

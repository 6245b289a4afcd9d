"""What can go wrong in a sync, each with the exit code `tapcash sync` ends with.

Exit codes (stable, scripts rely on them):
    0  synced (or, with --flush alone, nothing left in the outbox)
    2  usage error (click)
    3  the serial port cannot be used: no such port, busy, permission denied
    4  the device: not a tapcash device, line lost mid-sync, unexpected answer
    5  the ledger is unreachable (or none was given): the batch is safe in the outbox
    6  the ledger refused the batch or answered something invalid
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_PORT = 3
EXIT_DEVICE = 4
EXIT_SPOOLED = 5
EXIT_LEDGER = 6


class SyncError(Exception):
    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PortError(SyncError):
    exit_code = EXIT_PORT


class NoSuchPort(PortError):
    pass


class PortBusy(PortError):
    pass


class PortPermission(PortError):
    pass


class DeviceError(SyncError):
    exit_code = EXIT_DEVICE


class NoAnswer(DeviceError):
    """A request went unanswered through every retry."""


class NotADevice(DeviceError):
    """Nothing on the port speaks the tapcash framing."""


class LinkLost(DeviceError):
    """The line closed or failed mid-sync (cable pulled, board reset)."""


class DeviceRefused(DeviceError):
    """The device answered a status word the sync cannot go on with."""

    def __init__(self, message: str, sw: int) -> None:
        super().__init__(message)
        self.sw = sw


class LedgerUnreachable(SyncError):
    exit_code = EXIT_SPOOLED


class LedgerRefused(SyncError):
    exit_code = EXIT_LEDGER

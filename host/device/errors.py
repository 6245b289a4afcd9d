"""What can go wrong putting tapcash on a board, each with the exit code the command ends with.

Exit codes (stable, scripts rely on them):
    0  done
    1  a tool (esptool, mpremote, mpy-cross) failed in a way not listed below
    2  usage error (click)
    3  the serial port cannot be used: none given or found, no such port, busy, permission denied
    4  the device: no ESP32 bootloader, no MicroPython REPL, no tapcash firmware, refused, already
       personalised
    5  an input file: firmware image missing or not an ESP32 image, board profile wrong for the
       role, issuer key unreadable
    6  the ledger refused or could not be reached (provision --ledger): the device is provisioned
"""

from __future__ import annotations

EXIT_TOOL = 1
EXIT_PORT = 3
EXIT_DEVICE = 4
EXIT_INPUT = 5
EXIT_LEDGER = 6


class DeviceToolError(Exception):
    """A failure with a message for the user (no traceback) and an exit code."""

    exit_code = EXIT_TOOL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PortError(DeviceToolError):
    exit_code = EXIT_PORT


class NoPort(PortError):
    """No --port given, or the port does not exist."""


class PortBusy(PortError):
    pass


class PortPermission(PortError):
    pass


class DeviceError(DeviceToolError):
    exit_code = EXIT_DEVICE


class NoBootloader(DeviceError):
    """Nothing on the port answered as an ESP32 ROM bootloader."""


class NotMicroPython(DeviceError):
    """No MicroPython REPL on the port."""


class NotTapcash(DeviceError):
    """No tapcash firmware answers the sync frame protocol on the port."""


class AlreadyPersonalised(DeviceError):
    pass


class DeviceRefused(DeviceError):
    def __init__(self, message: str, sw: int = 0) -> None:
        super().__init__(message)
        self.sw = sw


class InputError(DeviceToolError):
    exit_code = EXIT_INPUT


class BadImage(InputError):
    pass


class BoardError(InputError):
    pass


class LedgerError(DeviceToolError):
    exit_code = EXIT_LEDGER

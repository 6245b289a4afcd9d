"""What can go wrong talking to a device (or, on the way, to the ledger): one tree of errors for
every host command that reaches a board or a simulated one, and the exit code each command ends
with.

Every error carries a message for the user (one line on stderr, no traceback). The tree says what
failed; the command says what that means for its caller, in its own table below:

    ToolError                   a tool (esptool, mpremote, mpy-cross) or step failed otherwise
    ├── PortError               the serial port cannot be used
    │   ├── NoPort              none given, none found
    │   ├── NoSuchPort          the port named does not exist (or is not a serial device)
    │   ├── PortBusy            another program has it open
    │   └── PortPermission      no access to it
    ├── DeviceError             the device on the port
    │   ├── NoBootloader        nothing answered as an ESP32 ROM bootloader
    │   ├── NotMicroPython      no MicroPython REPL
    │   ├── NotADevice          no tapcash firmware answers (SELECT), or not as tapcash does
    │   ├── NoAnswer            a request went unanswered through every retry
    │   ├── LinkLost            the line closed or failed mid-way (cable pulled, board reset)
    │   ├── AlreadyPersonalised
    │   └── DeviceRefused       a status word the command cannot go on with (`.sw`)
    ├── InputError              an input file or argument: firmware image, board profile,
    │   ├── BadImage            issuer key, PIN, id, limit
    │   └── BoardError
    └── LedgerError             the ledger
        ├── LedgerUnreachable   could not be reached (or failed on its side: 5xx, 408, 429)
        └── LedgerRefused       refused, or answered something invalid

Exit codes (stable, scripts rely on them); 0 is success, 2 a usage error (Click), 130 Ctrl-C:

    code  tapcash flash / deploy / provision          tapcash sync
    1     ToolError otherwise (a tool failed)         ToolError otherwise
    3     PortError                                   PortError
    4     DeviceError                                 DeviceError
    5     InputError                                  LedgerUnreachable, or no --ledger: the
                                                      batch is safe in the outbox
    6     LedgerError (provision --ledger: the        LedgerRefused
          device IS provisioned)

`exit_code(error, TABLE)` gives a command's code for an error: the entry of the nearest class.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_TOOL = 1
EXIT_PORT = 3
EXIT_DEVICE = 4
EXIT_INPUT = 5  # flash, deploy, provision
EXIT_SPOOLED = 5  # sync
EXIT_LEDGER = 6


class ToolError(Exception):
    """A failure with a message for the user (no traceback)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PortError(ToolError):
    pass


class NoPort(PortError):
    """No --port given, and none found."""


class NoSuchPort(PortError):
    """The port named does not exist, is not a serial device, or does not answer."""


class PortBusy(PortError):
    pass


class PortPermission(PortError):
    pass


class DeviceError(ToolError):
    pass


class NoBootloader(DeviceError):
    """Nothing on the port answered as an ESP32 ROM bootloader."""


class NotMicroPython(DeviceError):
    """No MicroPython REPL on the port."""


class NotADevice(DeviceError):
    """No tapcash firmware answers on the port (frames, SELECT, INFO)."""


class NoAnswer(DeviceError):
    """A request went unanswered through every retry."""


class LinkLost(DeviceError):
    """The line closed or failed mid-way (cable pulled, board reset)."""


class AlreadyPersonalised(DeviceError):
    pass


class DeviceRefused(DeviceError):
    """The device answered a status word the command cannot go on with."""

    def __init__(self, message: str, sw: int = 0) -> None:
        super().__init__(message)
        self.sw = sw


class InputError(ToolError):
    pass


class BadImage(InputError):
    pass


class BoardError(InputError):
    pass


class LedgerError(ToolError):
    pass


class LedgerUnreachable(LedgerError):
    pass


class LedgerRefused(LedgerError):
    pass


ExitTable = dict[type[ToolError], int]

# tapcash flash, deploy, provision
DEVICE_TOOL_EXIT: ExitTable = {
    ToolError: EXIT_TOOL,
    PortError: EXIT_PORT,
    DeviceError: EXIT_DEVICE,
    InputError: EXIT_INPUT,
    LedgerError: EXIT_LEDGER,
}

# tapcash sync
SYNC_EXIT: ExitTable = {
    ToolError: EXIT_TOOL,
    PortError: EXIT_PORT,
    DeviceError: EXIT_DEVICE,
    LedgerUnreachable: EXIT_SPOOLED,
    LedgerError: EXIT_LEDGER,
}


def exit_code(error: ToolError, table: ExitTable) -> int:
    """The command's exit code for `error`: the table's entry for its nearest class."""
    for cls in type(error).__mro__:
        if cls in table:
            return table[cls]
    return EXIT_TOOL

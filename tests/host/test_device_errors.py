"""One error tree for every command that talks to a device; each command's exit codes."""

import pytest

from tapcash.host.device import errors as e


@pytest.mark.parametrize(("error", "tools", "sync"), [
    (e.ToolError("x"), 1, 1),
    (e.NoPort("x"), 3, 3),
    (e.NoSuchPort("x"), 3, 3),
    (e.PortBusy("x"), 3, 3),
    (e.PortPermission("x"), 3, 3),
    (e.NotMicroPython("x"), 4, 4),
    (e.NotADevice("x"), 4, 4),
    (e.NoAnswer("x"), 4, 4),
    (e.LinkLost("x"), 4, 4),
    (e.DeviceRefused("x", 0x6985), 4, 4),
    (e.BadImage("x"), 5, 1),
    (e.LedgerUnreachable("x"), 6, 5),  # sync: the batch waits in the outbox
    (e.LedgerRefused("x"), 6, 6),
])
def test_exit_code_per_command(error, tools, sync):
    assert e.exit_code(error, e.DEVICE_TOOL_EXIT) == tools
    assert e.exit_code(error, e.SYNC_EXIT) == sync


def test_every_error_class_is_in_the_one_tree_and_documented():
    classes = [c for c in vars(e).values() if isinstance(c, type) and issubclass(c, Exception)]
    assert all(issubclass(c, e.ToolError) for c in classes)
    doc = e.__doc__ or ""
    assert all(c.__name__ in doc for c in classes)

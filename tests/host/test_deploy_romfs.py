"""`tapcash deploy --romfs` end to end where a MicroPython with ROMFS runs: the image deploy
stages (host/device/deploy.py stage(romfs=True), mpremote's builder) is mounted with
vfs.VfsRom on the native port and runs the whole payment day in place, within the role's
ROMFS heap budget; and the heap check that makes deploy warn, from the measured budgets."""

from __future__ import annotations

from pathlib import Path

import pytest
from native_gate import _native_port_present, requires_native  # noqa: F401

from tapcash.boards.profile import load_profile
from tapcash.host.device import deploy as dp
from tapcash.sim.vm import payday

BOARDS = {"wallet": "devkitc-pn532-wallet", "pos": "devkitc-pn532-pos"}


class _StagedImage:
    """What sim.vm.payday.replay needs of a workspace, around deploy's own image."""

    form = "romfs"

    def __init__(self, image: Path) -> None:
        self.target = image

    @property
    def heap_extra(self) -> int:  # the native port holds the image in its heap (a board: flash)
        return (self.target.stat().st_size + 31) // 32 * 32 + 64

    sys_path: list[str] = []


@requires_native
@pytest.mark.parametrize("role", payday.ROLES)
def test_deploys_romfs_image_runs_the_payment_day_in_place(role: str, tmp_path: Path) -> None:
    profile, _ = dp.board_config(BOARDS[role], role, [])
    files, _src = dp.stage(tmp_path, role, profile, [], compile=True, romfs=True)
    image = tmp_path / dp.ROMFS_IMAGE
    assert image.read_bytes()[:3] == b"\xd2\xcd\x31"  # a ROMFS image
    assert not (tmp_path / "firmware").exists()  # nothing for the filesystem but two files
    assert {p for p in files if not p.startswith("/rom/")} == {"/board.json", "/main.py"}
    assert f"/rom/firmware/{role}/app.mpy" in files
    assert "/rom/firmware/core/_ed25519_table.mpy" in files  # in place: the table stays a module
    stream = tmp_path / f"{role}.day"
    stream.write_bytes(payday.record_day()[role].stream)
    r = payday.replay(role, _StagedImage(image), stream, payday.budget_bytes(role, "romfs"))
    assert r.ok, r.output[-3000:]


def test_the_form_follows_flags_then_the_profile_and_the_board() -> None:
    stock = load_profile(BOARDS["wallet"])
    romfs = {**stock, "memory": {"partitions": "romfs"}}
    assert dp.choose_form(stock, None, True) == "mpy"
    assert dp.choose_form(romfs, None, True) == "romfs"
    assert dp.choose_form(romfs, False, True) == "mpy"
    assert dp.choose_form(stock, True, True) == "romfs"
    assert dp.choose_form(stock, None, True, board_romfs=True) == "romfs"  # flashed with one
    assert dp.choose_form(stock, False, True, board_romfs=True) == "mpy"
    assert dp.choose_form(romfs, None, False) == "py"
    assert dp.choose_form(load_profile(BOARDS["pos"]), None, True) == "romfs"  # it asks for it
    with pytest.raises(dp.BoardError, match="--romfs needs compiled firmware"):
        dp.choose_form(stock, True, False)

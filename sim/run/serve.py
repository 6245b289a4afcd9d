"""`tapcash sim serve`: a scenario's devices, each on its own pseudo-terminal, for the real tools.

The scenario runs as `tapcash sim run` does (provisioning, the ledger on loopback, the day's
payments, tears, power cuts and attacks) but stops before the final syncs. Then every device
gets a serial console on /dev/pts/N speaking the firmware's sync frames (`sim.device.serial_pty`),
so an operator syncs them by hand with the very commands a board takes:

    tapcash sync --port /dev/pts/7 --ledger http://127.0.0.1:PORT --token TOKEN

and reads the ledger's reports (fraud cases included) as the syncs come in. The ledger keeps
running, on the scenario's clock, until Ctrl-C. With `--ledger URL --issuer-key KEY` the fleet is
provisioned on an operator's own ledger (`tapcash ledger serve`) instead, on real time: the day
starts now (docs/LEDGER.md, "A day of the pilot").

Under `--runtime micropython` the apps run inside the MicroPython VM and only the frame layer is
on the host. A board's REPL itself (mpremote, deploy, provision --via repl) is
`tapcash sim board` (`sim.vm.repl_pty`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tapcash.sim.device.build import WALLET
from tapcash.sim.device.serial_pty import SerialDevice
from tapcash.sim.run.runner import TOKEN, Progress, Remote, ScenarioRun
from tapcash.sim.scenario import Scenario


@dataclass
class ServedDevice:
    name: str
    role: str
    id: str  # hex
    port: str


class _OneAtATime:
    """A device seen through a lock: the served devices may share one MicroPython VM, and
    two syncs at once (two terminals) must not interleave inside it."""

    def __init__(self, dev: Any, lock: threading.Lock) -> None:
        self.dev = dev
        self.lock = lock

    def process(self, apdu: bytes) -> bytes:
        with self.lock:
            return self.dev.process(apdu)


class ServedRun:
    """A scenario simulated up to its final syncs, its devices on pseudo-terminals."""

    def __init__(self, sc: Scenario, out_dir: Path, *, seed: int | None = None,
                 runtime: str = "cpython", remote: Remote | None = None) -> None:
        self.run = ScenarioRun(sc, out_dir, seed=seed, runtime=runtime, remote=remote)
        self.ports: list[SerialDevice] = []
        self.devices: list[ServedDevice] = []

    def start(self, progress: Progress | None = None) -> None:
        run = self.run
        try:
            run.start_ledger()
            run.provision(progress)
            run.simulate_days(progress)
            _enough_files(len(run.devices))
            lock = threading.Lock()
            for name, dev in sorted(run.devices.items(), key=lambda kv: _order(kv[0])):
                if dev.role == WALLET:
                    dev.power_on()  # a card on the sync reader, powered for as long as it runs
                port = SerialDevice(_OneAtATime(dev, lock))
                port.start()
                self.ports.append(port)
                self.devices.append(ServedDevice(name, dev.role, run.ids[name].hex(), port.path))
        except BaseException:
            self.stop()
            raise

    @property
    def ledger_url(self) -> str:
        if self.run.remote is not None:
            return self.run.remote.url
        assert self.run.server is not None
        return self.run.server.url

    @property
    def token(self) -> str:
        return self.run.remote.token if self.run.remote is not None else TOKEN

    @property
    def outbox(self) -> Path:
        return self.run.out / "outbox"

    def summary(self) -> dict[str, Any]:
        return {
            # an operator's own token is theirs already: not echoed
            "ledger": {"url": self.ledger_url,
                       "token": None if self.run.remote is not None else self.token},
            "outbox": str(self.outbox),
            "devices": [vars(d) for d in self.devices],
        }

    def stop(self) -> None:
        for port in self.ports:
            port.stop()
        self.ports.clear()
        self.run.close()


FILES_PER_DEVICE = 4  # a pty pair and a wake-up pipe


class TooManyDevices(RuntimeError):
    pass


def _enough_files(devices: int) -> None:
    """Raise the open-file limit to what the ports need (up to the hard limit), or say why not."""
    import resource

    need = devices * FILES_PER_DEVICE + 256  # the ledger, its database, the VMs' pipes
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return
    if hard == resource.RLIM_INFINITY or hard >= need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
        return
    raise TooManyDevices(
        f"{devices} devices need about {need} open files and this shell allows {hard} "
        f"(ulimit -Hn): serve a smaller scenario or raise the limit"
    )


def _order(name: str) -> tuple[int, str, int]:
    """POS terminals first, then wallets, each by number (pos-2 before pos-10)."""
    role, _, rest = name.partition("-")
    num = rest.split("-")[0]
    return (0 if role == "pos" else 1, role, int(num) if num.isdigit() else 0)

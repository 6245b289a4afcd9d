"""The seeded scenario runner: devices, fields, the ledger and the sync tool, one run.

    run = ScenarioRun(scenario, out_dir, seed=7, runtime="cpython")
    log = run.run(progress)          # -> RunLog: everything that happened, for sim.run.report

Everything real: each wallet and POS is the unchanged firmware (`sim.device.build`, any runtime),
payments go through the POS app's own flow over a virtual NFC field (`sim.nfc.field`), the ledger
is the real service (uvicorn on loopback, SQLite in the run folder) and every sync is the real
sync session (`host.sync.session.sync_device`) - in-process over the device's APDU interface,
and for a sample of devices over a real pseudo-terminal (`sim.device.serial_pty`) with the sync
tool's own serial transport. Time is the scenario's `SimClock`, shared by the terminals and
the ledger, so the same seed gives the same run.
"""

from __future__ import annotations

import base64
import gc
import hashlib
import heapq
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

import cbor2

from tapcash.firmware.core import proto
from tapcash.firmware.core.hal import LinkError, PowerCut
from tapcash.host.device.apdu import AppLink
from tapcash.host.device.provision import personalise
from tapcash.host.issuer import YEAR_S, Issuer
from tapcash.host.ledger.loopback import LoopbackLedger
from tapcash.sim.device.build import (
    POS,
    WALLET,
    Device,
    DeviceFactory,
    DeviceSpec,
    Payment,
    spec_seed,
)
from tapcash.sim.device.hal import SimClock
from tapcash.sim.device.provision import device_id, issuer_from_seed
from tapcash.sim.nfc.field import BIT_US_106, AirModel, ComputeModel, Field, TapRecord
from tapcash.sim.run.log import PayRecord, RunLog
from tapcash.sim.run.oracle import CardTap, Oracle
from tapcash.sim.run.reach import DeviceTransport, SyncTap, call, device_status, select
from tapcash.sim.scenario import Event, Scenario, build_schedule

PUK = b"12345678"
TOKEN = "tapcash-sim-operator"  # loopback only, per run
DESK = "desk"  # the issuing desk's online account: funds every first load
EMPLOYER = "employer"  # pays the payroll


Progress = Callable[[int, int, str], None]


class Remote(NamedTuple):
    """An operator's ledger (`tapcash ledger serve`) to run the fleet against, instead of one on
    loopback: its URL, operator token and the issuer key it signs with (the devices are
    certified with it). It keeps real time, so the scenario's day starts at the current time."""

    url: str
    token: str
    issuer: Issuer

    def check(self, client: Any) -> None:
        """Refuse to start when the token is not the operator's or the key not the ledger's."""
        client.check_token()
        if client.issuer()["public_key"] != self.issuer.public_key.hex():
            raise RemoteMismatch(f"the ledger at {self.url} signs with another issuer key")


class RemoteMismatch(RuntimeError):
    pass


# ---- the run --------------------------------------------------------------------------------
class ScenarioRun:
    def __init__(
        self,
        sc: Scenario,
        out_dir: Path,
        *,
        seed: int | None = None,
        runtime: str = "cpython",
        isolation: str = "inproc",
        ledger: bool = True,
        keep_transcripts: bool = False,
        remote: Remote | None = None,
        crypto: str | None = None,
    ) -> None:
        if remote is not None:  # the operator's ledger keeps real time: the day starts now
            sc = replace(sc, start=int(time.time()))
        self.remote = remote
        self.sc = sc
        self._frozen = False  # the fleet in CPython's permanent generation (provision)
        self.seed = sc.seed if seed is None else seed
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.out / "flash", ignore_errors=True)  # a run starts from blank devices
        self.clock = SimClock(sc.start)
        if crypto is None and sc.nfc.measured:
            # measured compute times the card's wall time: the firmware's own crypto, in the VM
            crypto = "pure"
        self.factory = DeviceFactory(
            self.clock, runtime=runtime, isolation=isolation, crypto=crypto
        )
        self.issuer = remote.issuer if remote is not None else issuer_from_seed(self.seed)
        self.use_ledger = ledger
        self.keep = keep_transcripts
        self.rng = random.Random(f"tapcash/sim/run/{self.seed}")
        self.log = RunLog(sc, self.seed, runtime, isolation)
        self.devices: dict[str, Device] = {}
        self.ids: dict[str, bytes] = {}
        self.fields: dict[str, Field] = {}
        self.pos_off: set[str] = set()
        self.images: dict[str, dict[str, bytes]] = {}
        self.down_s: dict[str, int] = {}
        self.snapshot_t: dict[str, int] = {}
        self.revoked: set[str] = set()
        self.retired: set[str] = set()  # genuine cards an attacker keeps out of use
        self.certs: dict[bytes, bytes] = {}  # device id -> certificate envelope
        self.oracle = Oracle(self.issuer.public_key)
        self.oracle.start = sc.start
        self.program_ids: dict[str, bytes | None] = {}  # programme name -> id (its rule's)
        self.log.oracle = self.oracle
        from tapcash.sim.run.adversary import Adversary

        self.adv = Adversary(self)
        nfc = sc.nfc
        air = AirModel(bit_us=BIT_US_106 * 106 / nfc.kbps, fsc=nfc.fsc, fsd=nfc.fsc)
        comp = ComputeModel(scale=nfc.scale, measured=nfc.measured)
        if nfc.card_ms is not None:
            comp = replace(comp, card_ms={**comp.card_ms, **nfc.card_ms})
        if nfc.reader_ms is not None:
            comp = replace(comp, reader_ms={**comp.reader_ms, **nfc.reader_ms})
        self.air = air
        self.compute = comp
        self.no_cvm = sc.wallets.limits.get(
            proto.LIM_NO_CVM, proto.DEFAULT_LIMITS[proto.LIM_NO_CVM]
        )
        self.server: LoopbackLedger | None = None
        self.client: Any = None
        self.link: Any = None
        self.outbox: Any = None
        self._queue: list[tuple[int, int, int, Event]] = []
        self._n = 0

    # -- helpers -----------------------------------------------------------------------------
    def now_rel(self) -> int:
        return self.clock.now() - self.sc.start

    def flash_dir(self, name: str) -> str | None:
        if self.sc.flash != "files":
            return None
        return str(self.out / "flash" / name)

    def field_for(self, name: str) -> Field:
        f = self.fields.get(name)
        if f is None:
            f = Field(self.air, self.compute, keep=self.keep, name=name)
            self.fields[name] = f
        return f

    def _push(self, ev: Event, prio: int = 0) -> None:
        self._n += 1
        heapq.heappush(self._queue, (ev.t, prio, self._n, ev))

    # -- setup -------------------------------------------------------------------------------
    def start_ledger(self) -> None:
        from tapcash.host.ledger.client import LedgerClient
        from tapcash.host.sync.ledger_link import LedgerLink
        from tapcash.host.sync.outbox import Outbox

        if self.remote is not None:
            url, token = self.remote.url, self.remote.token
            self.client = LedgerClient(url, token)
            self.remote.check(self.client)
        else:
            db = self.out / "ledger.db"
            for suffix in ("", "-wal", "-shm"):
                Path(str(db) + suffix).unlink(missing_ok=True)
            self.server = LoopbackLedger.on_sqlite(
                db, self.issuer, TOKEN, clock=lambda: float(self.clock.now()), pool_size=4
            ).start()
            url, token = self.server.url, TOKEN
            self.client = LedgerClient(url, token)
        self.link = LedgerLink(url, token)
        self.outbox = Outbox(self.out / "outbox")
        for p in self.outbox.paths():
            self.outbox.remove(p)

    def provision(self, progress: Progress | None = None) -> None:
        sc = self.sc
        now = self.clock.now()
        hot = self.client.hotlist().envelope if self.client else self.issuer.hotlist(1, now, [])
        total = sc.pos.count + sc.wallets.count
        done = 0
        category = {n: pr.category for pr in sc.programs if pr.category for n in pr.pos}
        if sc.adversary is not None:  # the purse attacks need POS of distinct categories
            from tapcash.sim.attacks.programme import pos_category

            category = {n: category.get(n) or pos_category(n) for n in range(1, sc.pos.count + 1)}
        for n in range(1, sc.pos.count + 1):
            spec = DeviceSpec(POS, n, spec_seed(self.seed, POS, n), self.flash_dir(f"pos-{n}"))
            dev = self.factory.make(spec)
            pid, mid = device_id("pos", n), device_id("merchant", n)
            _pub, cert = personalise(
                AppLink(dev, dev.name), "pos", self.issuer, pid, expires=now + YEAR_S, now=now,
                merchant=mid, config=dict(sc.pos.config), hotlist=hot,
                category=category.get(n, 0),
            )
            self.certs[pid] = cert
            self.oracle.register(cert)
            if self.client:
                self.client.register(cert)
            dev.field = self.field_for(dev.name)
            self.devices[dev.name] = dev
            self.ids[dev.name] = pid
            done += 1
            if progress:
                progress(done, total, "personalising")
        balance = sc.wallets.balance
        if self.client and balance:
            self.client.deposit(DESK, balance * sc.wallets.count, "first loads")
            self.oracle.deposit(balance * sc.wallets.count)
        for n in range(1, sc.wallets.count + 1):
            name = f"wallet-{n}"
            spec = DeviceSpec(WALLET, n, spec_seed(self.seed, WALLET, n), self.flash_dir(name))
            dev = self.factory.make(spec)
            wid = device_id("wallet", n)
            select(dev)
            _pub, cert = personalise(
                AppLink(dev, dev.name), "wallet", self.issuer, wid, expires=now + YEAR_S,
                now=now, pin=sc.wallets.pin.encode(), puk=PUK, limits=dict(sc.wallets.limits),
            )
            self.certs[wid] = cert
            self.oracle.register(cert)
            if balance:
                if self.client:
                    self.client.register(cert, owner=DESK)
                    voucher = self.client.load(wid, balance, "first load", DESK)
                    self.oracle.load(wid, balance)
                else:
                    voucher = self.issuer.voucher(wid, 1, balance)
                select(dev)
                call(dev, proto.INS_LOAD, voucher, what="LOAD")
                self.oracle.voucher_seen(voucher)
            elif self.client:
                self.client.register(cert, owner=DESK)
            self.devices[name] = dev
            self.ids[name] = wid
            done += 1
            if progress:
                progress(done, total, "personalising")
        self.log.issued_initial = balance * sc.wallets.count
        if self.client:
            for pr in sc.programs:
                self.client.deposit(pr.funder, 1, f"programme {pr.name} account")  # creates it
                self.oracle.deposit(1)
                made = self.client.program_create(
                    pr.name, pr.funder, pr.kind, valid_from=sc.start,
                    expires=sc.start + (pr.expires or sc.end),
                    categories=[pr.category] if pr.category else None,
                    merchants=None if pr.category else [device_id("merchant", n) for n in pr.pos],
                    cap=pr.cap, unit=pr.unit)
                self.program_ids[pr.name] = self.oracle.rule_seen(base64.b64decode(made["rule"]))
        # The fleet lives as long as the run: its objects (hundreds of thousands for 10,000
        # cards) go to CPython's permanent generation, so the collector stops re-walking them
        # in every full collection of the day (a tenth of a payment's time at 10,000 x 1,000,
        # tapcash bench sim). Reference counting frees as before; close() gives them back.
        gc.collect()
        gc.freeze()
        self._frozen = True

    # -- events ------------------------------------------------------------------------------
    def on_pay(self, ev: Event, force: bool = False) -> None:
        pos = self.devices[ev.device]
        card = self.devices.get(ev.wallet)
        if card is None or (ev.wallet in self.retired and not force):
            return
        if ev.device in self.pos_off:
            self.log.payments.append(
                PayRecord(self.now_rel(), ev.device, ev.wallet, ev.amount, "declined",
                          "pos_off", tag=ev.tag)
            )
            return
        fld = pos.field
        assert isinstance(fld, Field)
        self.oracle.now = self.now_rel()
        mark = len(self.oracle.signed) if ev.tag else 0  # (reading it checks what is queued)
        fld.tap(CardTap(card, self.oracle, ev.wallet))
        if ev.tear is not None:
            fld.tear(ev.tear.where, ev.tear.command, ev.tear.byte)  # type: ignore[arg-type]
        pin = self.sc.wallets.pin.encode() if ev.amount > self.no_cvm else None
        res = pos.take_payment(ev.amount, pin)
        rec = fld.remove() or TapRecord(0)
        if ev.tag:
            self.adv.tagged(ev.tag, mark)
        self._record_pay(ev, res, rec)
        if res.status == "power_cut":
            self._went_off(ev.device)
        if res.status == "torn" and ev.tear is not None and ev.tear.retap_s is not None:
            again = replace(ev, t=ev.t + ev.tear.retap_s, tear=None, tag=ev.tag or "retap")
            self._push(again)

    def _record_pay(self, ev: Event, res: Payment, rec: TapRecord) -> None:
        digest = ""
        if res.payment:
            body = cbor2.loads(res.payment)[0]  # the envelope [body, sig]; C decoder, host side
            digest = hashlib.sha256(body).hexdigest()
        self.log.payments.append(
            PayRecord(
                t=self.now_rel(),
                pos=ev.device,
                card=ev.wallet,
                amount=res.amount,
                status=res.status,
                reason=res.reason,
                wallet=res.wallet.hex() if res.wallet else "",
                counter=res.counter,
                hash=digest,
                recovered=res.recovered,
                in_field_ms=round(rec.in_field_ms, 3),
                bytes_on_air=rec.bytes_on_air,
                torn=rec.torn or "",
                tag=ev.tag,
                purse=res.purse,
                earmarked=res.earmarked,
            )
        )

    def on_transfer(self, ev: Event) -> None:
        from tapcash.host.device.errors import DeviceRefused
        from tapcash.sim.device.provision import transfer

        if ev.tag == "" and (ev.device in self.retired or ev.other in self.retired):
            return
        payer, payee = self.devices[ev.device], self.devices[ev.other]
        fa, fb = self.field_for("reader-a"), self.field_for("reader-b")
        self.oracle.now = self.now_rel()
        fa.tap(CardTap(payer, self.oracle, ev.device))
        fb.tap(payee)
        pin = self.sc.wallets.pin.encode() if ev.amount > self.no_cvm else None
        ok, reason = True, "ok"
        try:
            transfer(fa, fb, ev.amount, time=self.clock.now(), pin=pin)  # type: ignore[arg-type]
        except DeviceRefused as e:
            ok, reason = False, f"sw {e.sw:04X}"
        except LinkError:
            ok, reason = False, "link"
        fa.remove()
        fb.remove()
        self.log.transfers.append(
            {"t": self.now_rel(), "payer": ev.device, "payee": ev.other, "amount": ev.amount,
             "ok": ok, "reason": reason}
        )

    def on_load(self, ev: Event) -> None:
        names = [f"wallet-{n}" for n in range(1, self.sc.wallets.count + 1)]
        chosen = sorted(self.rng.sample(names, ev.count), key=names.index) if ev.count else names
        total = ev.amount * len(chosen)
        if self.client is None:
            return
        ok, error = True, ""
        try:
            if ev.tag == "payroll":
                self.client.deposit(EMPLOYER, total, f"payroll funds {ev.t}")
                self.oracle.deposit(total)
                csv_text = "".join(f"{self.ids[n].hex()},{ev.amount}\n" for n in chosen)
                self.client.payroll(EMPLOYER, csv_text, f"payroll-{ev.t}")
                for n in chosen:
                    self.oracle.load(self.ids[n], ev.amount)
            else:
                self.client.deposit(DESK, total, f"top-ups {ev.t}")
                self.oracle.deposit(total)
                for n in chosen:
                    self.client.load(self.ids[n], ev.amount, f"top-up {ev.t}", DESK)
                    self.oracle.load(self.ids[n], ev.amount)
        except Exception as e:  # a refusal by the ledger is part of the story
            ok, error = False, str(e)
        self.log.loads.append(
            {"t": self.now_rel(), "kind": ev.tag, "wallets": len(chosen), "amount": ev.amount,
             "total": total if ok else 0, "ok": ok, "error": error}
        )

    def on_program(self, ev: Event) -> None:
        """A programme's bulk purse load (the cards fetch their purse at their next sync)."""
        holders = [int(w) for w in ev.other.split(",") if w]
        total = ev.amount * len(holders)
        if self.client is None:
            return
        ok, error = True, ""
        try:
            pr = next(p for p in self.sc.programs if p.name == ev.tag)
            self.client.deposit(pr.funder, total, f"programme {pr.name} funds")
            self.oracle.deposit(total)
            csv_text = "".join(f"{device_id('wallet', w).hex()},{ev.amount}\n" for w in holders)
            self.client.program_load(pr.name, csv_text, f"{pr.name}-{ev.t}")
            pid = self.program_ids.get(pr.name)
            for w in holders:
                if pid is not None:
                    self.oracle.purse_load(pid, device_id("wallet", w), ev.amount)
        except Exception as e:  # a refusal by the ledger is part of the story
            ok, error = False, str(e)
        self.log.loads.append(
            {"t": self.now_rel(), "kind": f"program:{ev.tag}", "wallets": len(holders),
             "amount": ev.amount, "total": total if ok else 0, "ok": ok, "error": error}
        )

    def sync(self, name: str, *, serial: bool = False, final: bool = False,
             link: Any = None) -> dict[str, Any]:
        """One sync of a device (through `link`, a compromised host's, when given); then the
        oracle judges the ledger."""
        if name in self.retired and not final:
            return {"t": self.now_rel(), "device": name, "outcome": "retired"}
        entry = self._sync(name, serial, final, link)
        self.adv.after_sync(entry)
        return entry

    def _sync(self, name: str, serial: bool, final: bool, link: Any) -> dict[str, Any]:
        from tapcash.host.device.errors import ToolError

        dev = self.devices[name]
        entry: dict[str, Any] = {"t": self.now_rel(), "device": name, "serial": serial,
                                 "final": final}
        if link is not None:
            entry["compromised_host"] = True
        if name in self.pos_off:
            entry.update(outcome="off")
            self.log.syncs.append(entry)
            return entry
        if self.link is None:
            entry.update(outcome="no ledger")
            self.log.syncs.append(entry)
            return entry
        clock = lambda: float(self.clock.now())  # noqa: E731
        attempts = 3 if dev.role == WALLET else 1
        for attempt in range(attempts):
            if dev.role == WALLET:
                dev.power_on()  # the sync reader powers the card
            try:
                res = self._sync_once(dev, serial, clock, link or self.link)
                break
            except ToolError as e:
                entry.update(outcome="failed", error=str(e))
                self.log.syncs.append(entry)
                return entry
            except PowerCut:
                if attempt + 1 < attempts:
                    entry["retried"] = entry.get("retried", 0) + 1
                    continue  # the operator taps / plugs the card again and re-runs the sync
                entry.update(outcome="power_cut")
                self.log.syncs.append(entry)
                if dev.role == POS:
                    self._went_off(name)
                return entry
        lr = res.ledger_result or {}
        entry.update(
            outcome=res.outcome,
            exported=res.exported,
            ack_upto=res.ack_upto,
            vouchers=res.vouchers_loaded,
            update=res.update or "",
            accepted=lr.get("accepted", 0),
            conflicts=lr.get("conflicts", 0),
            revoked=list(lr.get("revoked", [])),
            hotlist=lr.get("hotlist_version", 0),
            status=res.status,
        )
        self.log.syncs.append(entry)
        if res.outcome == "synced":
            self._reached_ledger(name)
        return entry

    def _sync_once(self, dev: Device, serial: bool, clock: Callable[[], float],
                   link: Any) -> Any:
        from tapcash.host.device.errors import ToolError
        from tapcash.host.sync.session import sync_device

        dev = SyncTap(dev, self.adv.on_sync_apdu)  # type: ignore[assignment]
        if serial:
            from tapcash.host.sync.transport import SerialTransport
            from tapcash.sim.device.serial_pty import SerialDevice

            with SerialDevice(dev) as port, SerialTransport(port.path) as tr:
                try:
                    return sync_device(tr, ledger=link, outbox=self.outbox, clock=clock)
                except ToolError:
                    port.wait_closed(2.0)
                    if isinstance(port.error, PowerCut):  # the board lost power mid-sync
                        raise PowerCut(str(port.error)) from None
                    raise
        return sync_device(DeviceTransport(dev), ledger=link, outbox=self.outbox, clock=clock)

    def _reached_ledger(self, name: str) -> None:
        now = self.now_rel()
        for p in self.log.payments:
            if p.at_ledger is None and p.status == "approved" and (
                p.pos == name or p.card == name
            ):
                p.at_ledger = now

    def _went_off(self, name: str) -> None:
        """A POS lost power (its flash cut fired): it is back after the cut's down time."""
        self.pos_off.add(name)
        down = self.down_s.pop(name, 0)
        self.log.faults.append({"t": self.now_rel(), "kind": "power_lost", "device": name})
        self._push(Event(t=self.now_rel() + down, order=-1, kind="reboot", device=name), 1)

    def on_cut(self, ev: Event) -> None:
        self.devices[ev.device].cut_after(ev.count, ev.keep_permille)
        self.down_s[ev.device] = ev.down_s
        self.log.faults.append(
            {"t": self.now_rel(), "kind": "power_cut", "device": ev.device, "write": ev.count,
             "keep_permille": ev.keep_permille}
        )

    def on_reboot(self, ev: Event) -> None:
        dev = self.devices[ev.device]
        dev.power_on()
        was_off = ev.device in self.pos_off
        self.pos_off.discard(ev.device)
        self.log.faults.append(
            {"t": self.now_rel(), "kind": "reboot", "device": ev.device, "was_off": was_off}
        )

    def on_clone(self, ev: Event) -> None:
        src = self.devices[ev.device]
        n = int(ev.device.split("-")[1])
        spec = DeviceSpec(WALLET, 100000 + n, spec_seed(self.seed, WALLET, n, "clone"),
                          self.flash_dir(ev.other), label=ev.other)
        clone = self.factory.make(spec)
        clone.restore(src.snapshot())
        clone.power_on()
        self.devices[ev.other] = clone
        self.ids[ev.other] = self.ids[ev.device]
        self.log.attacker_devices.append(ev.other)
        self.adv.scripted(ev.tag, "clone", ev.device)
        self.log.attacks.append(
            {"t": self.now_rel(), "kind": "clone", "wallet": ev.device, "clone": ev.other,
             "tag": ev.tag}
        )

    def on_snapshot(self, ev: Event) -> None:
        self.images[ev.tag] = self.devices[ev.device].snapshot()
        self.snapshot_t[ev.tag] = self.now_rel()

    def on_restore(self, ev: Event) -> None:
        dev = self.devices[ev.device]
        dev.restore(self.images.pop(ev.tag))
        dev.power_on()
        self.adv.scripted(ev.tag, "rollback", ev.device)
        self.log.attacks.append(
            {"t": self.now_rel(), "kind": "rollback", "wallet": ev.device, "tag": ev.tag,
             "snapshot_t": self.snapshot_t.pop(ev.tag, self.now_rel())}
        )

    def on_final(self, ev: Event, progress: Progress | None) -> None:
        """Every device syncs: terminals, then wallets, then terminals again (they fetch the
        hot list the wallets' journals may have changed). A sample goes over serial ptys."""
        for name in sorted(self.pos_off):
            self.on_reboot(replace(ev, kind="reboot", device=name))
        pos = [n for n in self.devices if n.startswith("pos-")]
        wallets = [n for n in self.devices
                   if n.startswith("wallet-") and n not in self.log.attacker_devices]
        order = pos + wallets + pos
        serial = set(pos[: self.sc.sync.serial] + wallets[: max(0, self.sc.sync.serial - len(pos))])
        for i, name in enumerate(order):
            first_pass = i < len(pos) + len(wallets)
            self.sync(name, serial=name in serial and first_pass, final=True)
            if progress:
                progress(i + 1, len(order), "final sync")

    # -- main loop ---------------------------------------------------------------------------
    def run(self, progress: Progress | None = None) -> RunLog:
        t_start = time.perf_counter()
        try:
            if self.use_ledger:
                self.start_ledger()
            self.provision(progress)
            t_prov = time.perf_counter()
            final = self.simulate_days(progress)
            t_day = time.perf_counter()
            if final is not None:
                self.clock.set(self.sc.start + final.t)
                self.on_final(final, progress)
            self.collect()
            t_end = time.perf_counter()
            self.log.wall = {
                "provision_s": round(t_prov - t_start, 3),
                "day_s": round(t_day - t_prov, 3),
                "final_sync_s": round(t_end - t_day, 3),
                "total_s": round(t_end - t_start, 3),
            }
            return self.log
        finally:
            self.close()

    def simulate_days(self, progress: Progress | None = None) -> Event | None:
        """Every scheduled event up to the final syncs (returned, not run)."""
        events = build_schedule(self.sc, self.seed)
        for ev in events:
            self._push(ev)
        total = len(events)
        done = 0
        final: Event | None = None
        while self._queue:
            t, _prio, _n, ev = heapq.heappop(self._queue)
            self.clock.set(self.sc.start + t)
            if ev.kind == "final":
                final = ev
                continue
            self.dispatch(ev)
            done += 1
            if progress and (done % 10 == 0 or not self._queue):
                progress(done, total, "simulating the day")
        return final

    def dispatch(self, ev: Event) -> None:
        k = ev.kind
        if k == "pay":
            self.on_pay(ev)
        elif k == "transfer":
            self.on_transfer(ev)
        elif k == "load":
            self.on_load(ev)
        elif k == "program":
            self.on_program(ev)
        elif k == "sync":
            self.sync(ev.device)
        elif k == "cut":
            self.on_cut(ev)
        elif k == "reboot":
            self.on_reboot(ev)
        elif k == "clone":
            self.on_clone(ev)
        elif k == "snapshot":
            self.on_snapshot(ev)
        elif k == "restore":
            self.on_restore(ev)
        elif k == "attack":
            self.adv.step(ev)
        else:
            raise ValueError(f"unknown event {k!r}")

    def collect(self) -> None:
        """The devices' final state, the ledger's view at the end, the transcript digests."""
        self.oracle.flush()  # the day's payments the oracle has not checked yet
        for name, dev in sorted(self.devices.items()):
            if getattr(dev, "role", None) == WALLET:  # (an attacker's own card has none)
                try:
                    dev.power_on()
                    self.log.wallets[name] = {"id": self.ids[name].hex(), **device_status(dev)}
                except Exception as e:  # a device that cannot answer is part of the report
                    self.log.wallets[name] = {"id": self.ids[name].hex(), "error": str(e)}
        for name, dev in sorted(self.devices.items()):
            if hasattr(dev, "digest"):
                self.log.digests[name] = dev.digest
        for name, f in sorted(self.fields.items()):
            self.log.digests[f"field:{name}"] = f.digest
        if self.client is None:
            return
        c = self.client
        self.adv.final()  # the oracle's last look (verifies every case's proof on its own)
        fraud = c.report("fraud")
        books_now = c.books()
        for case in fraud:
            case["proof_verified"], case["proof_why"] = self.oracle.judge_case(case, books_now)
        programs: list[dict[str, Any]] = []
        if self.sc.programs:
            c.program_sweep()  # the books at expiry
            programs = c.programs()
        self.log.ledger = {
            "programs": programs,
            "invariant": c.invariant(),
            "fraud": fraud,
            "refused": c.report("refused"),
            "merchants": c.report("merchants"),
            "books": c.books(),
        }

    def close(self) -> None:
        if self._frozen:
            self._frozen = False
            gc.unfreeze()
        for dev in self.devices.values():
            try:
                dev.close()
            except Exception:
                pass
        self.factory.close()
        if self.client is not None:
            self.client.close()
        if self.link is not None:
            self.link.close()
        if self.server is not None:
            self.server.stop()
            self.server = None

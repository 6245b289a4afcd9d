"""The runner's side of the seeded adversary (sim/attacks/) and of the oracle (sim/run/oracle.py).

    adv = Adversary(run)                  # one per ScenarioRun
    adv.step(event)                       # an "attack" event of the schedule
    adv.after_sync(entry)                 # the oracle judges the ledger after every sync
    adv.final()                           # ... and at the end; -> violations

Attacks act through the helpers here (a clone, a payment or transfer by an attacker's card,
an attacker's own card, a sync through a compromised host, replays) so that the oracle sees
every body an attack made a card sign and every device an attacker holds.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import cbor2

from tapcash.firmware.core import proto
from tapcash.sim.run.oracle import Attack, CardTap, Oracle

if TYPE_CHECKING:
    from tapcash.sim.run.log import PayRecord
    from tapcash.sim.run.runner import ScenarioRun
    from tapcash.sim.scenario import Event


class Adversary:
    def __init__(self, run: ScenarioRun) -> None:
        self.run = run
        self.oracle: Oracle = run.oracle
        self.by_tag: dict[str, Attack] = {}
        self.victims: list[tuple[Attack, str, int]] = []
        self.captured: dict[str, dict[str, Any]] = {}  # attack tag -> what a replay keeps
        self.capturing: dict[str, list[bytes]] = {}  # device name -> sync APDUs seen
        self.every_sync = run.sc.adversary is not None

    # -- dispatch ------------------------------------------------------------------------------
    def step(self, ev: Event) -> None:
        from tapcash.sim.attacks import KINDS

        KINDS[ev.other].step(self.run, ev)
        for a in self.oracle.attacks:
            self.by_tag.setdefault(a.id, a)

    def scripted(self, tag: str, kind: str, wallet: str) -> None:
        """A clone or rollback from the scenario file (not the adversary's): the oracle holds
        it to the same rules."""
        from tapcash.sim.attacks.base import image_bound, limits_of

        run = self.run
        self.oracle.attack(Attack(tag, kind, run.ids[wallet], run.now_rel(),
                                  bound=image_bound(limits_of(run, wallet))))

    def tagged(self, tag: str, mark: int) -> None:
        """The bodies signed since `mark` belong to attack `tag` (if it is one)."""
        for a in self.oracle.attacks:
            if a.id == tag:
                for h in self._signed_since(mark):
                    self.oracle.attack_signed(a, self.oracle.signed[h])

    def attack_of(self, tag: str) -> Attack:
        for a in self.oracle.attacks:
            if a.id == tag:
                return a
        raise KeyError(tag)

    # -- attackers' cards ---------------------------------------------------------------------
    def make_clone(self, src: str, name: str, tag: str) -> None:
        from tapcash.sim.device.build import WALLET, DeviceSpec, spec_seed

        run = self.run
        n = int(src.split("-")[1])
        spec = DeviceSpec(WALLET, 100000 + len(run.devices), spec_seed(run.seed, WALLET, n, tag),
                          run.flash_dir(name), label=name)
        clone = run.factory.make(spec)
        clone.restore(run.devices[src].snapshot())
        clone.power_on()
        self.add_attacker_device(name, clone, run.ids[src])
        run.log.attacks.append({"t": run.now_rel(), "kind": "clone", "wallet": src,
                                "clone": name, "tag": tag})

    def add_attacker_device(self, name: str, card: Any, wallet: bytes) -> None:
        self.run.devices[name] = card
        self.run.ids[name] = wallet
        self.run.log.attacker_devices.append(name)

    def retire(self, name: str) -> None:
        """The genuine card leaves everyday use (payments scheduled for it do not happen); it
        still syncs at the end."""
        self.run.retired.add(name)

    def _signed_since(self, mark: int) -> list[bytes]:
        return list(self.oracle.signed)[mark:]

    def attack_pay(self, atk: Attack, pos: str, card: str, amount: int) -> PayRecord:
        from tapcash.sim.scenario import Event

        mark = len(self.oracle.signed)
        ev = Event(t=self.run.now_rel(), order=-1, kind="pay", device=pos, wallet=card,
                   amount=amount, tag=atk.id)
        self.run.on_pay(ev, force=True)
        for h in self._signed_since(mark):
            self.oracle.attack_signed(atk, self.oracle.signed[h])
        return self.run.log.payments[-1]

    def attack_transfer(self, atk: Attack, payer: str, payee: str, amount: int) -> None:
        from tapcash.sim.scenario import Event

        mark = len(self.oracle.signed)
        self.run.on_transfer(Event(t=self.run.now_rel(), order=-1, kind="transfer",
                                   device=payer, other=payee, amount=amount, tag=atk.id))
        for h in self._signed_since(mark):
            self.oracle.attack_signed(atk, self.oracle.signed[h])

    # -- victims of harmless-looking attacks ----------------------------------------------------
    def watch_victim(self, atk: Attack, name: str) -> None:
        self.victims.append((atk, name, self.run.now_rel()))

    def victim_problems(self, atk: Attack) -> list[str]:
        out = []
        for a, name, t in self.victims:
            if a is not atk:
                continue
            for s in self.run.log.syncs:
                if s.get("compromised_host"):
                    continue  # a sync the attacker ran: its failure is the attacker's
                if s["device"] == name and s["t"] >= t and s.get("outcome") == "failed":
                    out.append(f"{name}'s sync at t={s['t']} failed after {atk.id}: "
                               f"{s.get('error', '')}")
            for p in self.run.log.payments:
                if p.card == name and p.t >= t and p.reason == "card_full":
                    out.append(f"{name} declined card_full at t={p.t} after {atk.id}")
        return out

    # -- a compromised sync host ---------------------------------------------------------------
    def wipe_spool(self, name: str) -> None:
        """The compromised host also deletes its own outbox copy of the device's batches."""
        outbox = self.run.outbox
        dev_id = self.run.ids[name]
        for p in outbox.paths():
            try:
                if outbox.load(p).device == dev_id:
                    outbox.remove(p)
            except (OSError, ValueError):
                continue

    def check_pruned(self, atk: Attack, name: str, pruned: dict[int, bytes]) -> None:
        """Every payment record a device pruned must be at the ledger."""
        if not pruned:
            return
        held = self._ledger_hashes()
        for seq, raw in sorted(pruned.items()):
            rec = cbor2.loads(raw)
            env = rec.get(proto.REC_SIGNED)
            if rec.get(proto.REC_TYPE) not in (proto.RT_PAYMENT, proto.RT_TRANSFER_IN) or not env:
                continue
            h = hashlib.sha256(cbor2.loads(env)[0]).digest()
            if h not in held:
                self.oracle._fail("evidence", f"{atk.id}: {name} pruned seq {seq} (payment "
                                              f"{h.hex()[:16]}) that the ledger does not hold")

    def _ledger_hashes(self) -> set[bytes]:
        view = self.view()
        held = {bytes.fromhex(p[2]) for p in view["books"]["payments"]}
        for case in view["fraud"]:
            for k in ("proof_a", "proof_b"):
                held.add(hashlib.sha256(cbor2.loads(base64.b64decode(case[k]))[0]).digest())
        return held

    # -- replays ------------------------------------------------------------------------------
    def on_sync_apdu(self, name: str, apdu: bytes, resp: bytes) -> None:
        ins = apdu[1] if len(apdu) > 1 else 0
        if ins == proto.INS_EXPORT and resp[-2:] == b"\x90\x00":
            dev = self.run.devices.get(name)
            if dev is not None and getattr(dev, "role", "") == "wallet":
                # what the card itself signed, as it exports it (before any host sees it)
                for _seq, raw in cbor2.loads(resp[:-2]).get(proto.EXP_RECORDS, []):
                    rec = cbor2.loads(raw) if isinstance(raw, bytes) else raw
                    if rec.get(proto.REC_TYPE) == proto.RT_PAYMENT and rec.get(proto.REC_SIGNED):
                        self.oracle.signed_by_card(bytes(rec[proto.REC_SIGNED]), name)
        if ins in (proto.INS_LOAD, proto.INS_APPLY):
            try:
                data = proto.parse_command(apdu)[4]
            except proto.ApduError:
                data = b""
            if data and ins == proto.INS_LOAD:
                self.oracle.voucher_seen(data)
            elif data:
                self.oracle.update_seen(data)
        if name in self.capturing and ins in (proto.INS_LOAD, proto.INS_APPLY, proto.INS_ACK):
            self.capturing[name].append(bytes(apdu))

    def replay_capture(self, atk: Attack, name: str, variant: str) -> None:
        from tapcash.sim.attacks.sync_host import journal

        run = self.run
        dev = run.devices[name]
        if variant == "batch":
            if dev.role == "wallet":
                dev.power_on()
            records = sorted(journal(dev).items())
            status = _status_env(dev)
            self.captured[atk.id] = {"records": records, "status": status}
            run.sync(name)  # the honest owner syncs: the ledger has the batch
        elif variant == "device":
            self.capturing[name] = []
            run.sync(name)  # the honest owner syncs; the host keeps what it sent

    def replay_fire(self, atk: Attack, name: str, variant: str) -> None:
        from tapcash.host.device.errors import ToolError
        from tapcash.host.sync.outbox import Batch

        run = self.run
        if variant == "pos_envelope":
            olds = [s for s in self.oracle.signed.values() if s.kind == proto.PAYKIND_POS]
            if not olds or name in run.pos_off:
                atk.note += ": nothing to replay"
                return
            old = olds[len(atk.id) % len(olds)]
            cert = run.certs[old.wallet]
            card = ReplayCard(cert, old.wallet, old.counter, old.env)
            rogue = f"replay-card-{atk.id}"
            run.devices[rogue] = card
            run.ids[rogue] = old.wallet
            run.log.attacker_devices.append(rogue)
            rec = self.attack_pay(atk, name, rogue, old.amount)
            atk.note += f": {rec.status} ({rec.reason})"
            if rec.status == "approved":
                self.oracle._fail("replay", f"{atk.id}: {name} approved a replayed envelope "
                                            f"({old.wallet.hex()}:{old.counter})")
        elif variant == "batch":
            cap = self.captured.pop(atk.id, None)
            if not cap or not cap["records"]:
                atk.note += ": nothing to replay"
                return
            dev = run.devices[name]
            before = run.client.books()
            batch = Batch(run.ids[name], 0, b"", cap["records"], cap["status"])
            try:
                run.link.submit(batch)
                atk.note += ": the ledger took the old batch"
            except ToolError as e:
                atk.note += f": refused ({e})"
            after = run.client.books()
            if before != after:
                diff = sorted(k for k in before if before[k] != after.get(k))
                self.oracle._fail("replay", f"{atk.id}: an old batch of {name} changed the "
                                            f"books ({', '.join(diff)})")
            del dev
        elif variant == "device":
            apdus = self.capturing.pop(name, [])
            if not apdus:
                atk.note += ": no sync to replay"
                return
            from tapcash.sim.run.reach import device_status

            dev = run.devices[name]
            dev.power_on()
            before = device_status(dev)
            answers = []
            for apdu in apdus:
                if dev.role == "wallet":
                    dev.process(proto.build_command(proto.CLA_ISO, proto.INS_SELECT, 4, 0,
                                                    proto.AID))
                answers.append(dev.process(apdu)[-2:].hex())
            after = device_status(dev)
            atk.note += f": {len(apdus)} commands answered {', '.join(answers)}"
            keep = ("balance", "counter", "pending", "vouchers_applied")
            if any(before[k] != after[k] for k in keep):
                self.oracle._fail("replay", f"{atk.id}: replayed sync commands changed {name}: "
                                            f"{before} -> {after}")

    # -- the oracle's checks ------------------------------------------------------------------
    def view(self) -> dict[str, Any]:
        """What the ledger holds now: read straight from its database (the same rows its
        reports serve; over HTTP after every sync this would be most of a run's time)."""
        from tapcash.host.ledger import reports

        server = self.run.server
        if server is None:
            c = self.run.client
            return {"invariant": c.invariant(), "books": c.books(), "merchants":
                    c.report("merchants"), "fraud": c.report("fraud")}
        led = server.ledger
        return {"invariant": led.invariant(), "books": led.db.read(reports.books),
                "merchants": led.db.read(reports.merchants),
                "fraud": led.db.read(reports.fraud_cases),
                "purse_postings": led.db.read(_purse_postings)}

    def after_sync(self, entry: dict[str, Any]) -> None:
        if not self.every_sync or self.run.client is None:
            return
        o = self.oracle
        o.syncs += 1
        o.now = self.run.now_rel()
        if entry.get("outcome") == "synced" and entry["device"] in self.run.ids:
            o.synced_at[self.run.ids[entry["device"]]].append(o.now)
        o.check_ledger(self.view())
        name = entry["device"]
        dev = self.run.devices.get(name)
        if dev is not None and dev.role == "pos" and entry.get("outcome") == "synced":
            from tapcash.sim.run.reach import call

            info = cbor2.loads(call(dev, proto.INS_GET_INFO, what="GET INFO"))
            o.check_hotlist(self.run.client.hotlist().envelope,
                            int(info.get(proto.INFO_HOT_VERSION, 0)), name)

    def final(self) -> None:
        from tapcash.sim.attacks import KINDS

        run = self.run
        o = self.oracle
        o.now = run.now_rel()
        if run.client is not None:
            o.check_ledger(self.view(), final=True)
        for atk in o.attacks:
            for problem in KINDS[atk.kind].final_check(run, atk):
                o._fail("blocked", problem, final=True)


class ReplayCard:
    """Presents a wallet's certificate and answers PAY with an old envelope of that wallet."""

    def __init__(self, cert: bytes, wallet: bytes, counter: int, env: bytes) -> None:
        self.cert, self.wallet, self.counter, self.env = cert, wallet, counter, env

    def power_on(self) -> None:
        pass

    def process(self, apdu: bytes) -> bytes:
        ins = apdu[1] if len(apdu) > 1 else 0
        if ins == proto.INS_SELECT:
            info = {proto.INFO_VERSION: proto.VERSION, proto.INFO_ID: self.wallet,
                    proto.INFO_CERT: self.cert, proto.INFO_COUNTER: self.counter - 1,
                    proto.INFO_OFFLINE_LEFT: 10, proto.INFO_FLAGS: 0}
            return cbor2.dumps(info, canonical=True) + b"\x90\x00"
        if ins == proto.INS_PAY:
            return self.env + b"\x90\x00"
        return b"\x90\x00"


def _purse_postings(tx: Any) -> list[list[Any]]:
    """Every posting into or out of a purse or programme account, and the guarantees beyond a
    purse (the oracle judges each by the accounts it joins and against the payment a card
    signed)."""
    return [list(r) for r in tx.all(
        "SELECT src, dst, amount, kind, ref FROM postings WHERE src LIKE 'purse:%' OR dst LIKE "
        "'purse:%' OR src LIKE 'program:%' OR dst LIKE 'program:%' OR kind = 'purse_guarantee' "
        "ORDER BY id")]


def _status_env(dev: Any) -> bytes:
    from tapcash.sim.run.reach import call, select

    if dev.role == "wallet":
        select(dev)
    req = cbor2.dumps({proto.EXP_SINCE: 2**31, proto.EXP_MAX: 1}, canonical=True)
    out = cbor2.loads(call(dev, proto.INS_EXPORT, req, what="EXPORT"))
    return bytes(out[proto.EXP_STATUS])


def tap_card(card: Any, oracle: Oracle, name: str) -> CardTap:
    return CardTap(card, oracle, name)


__all__ = ["Adversary", "replace"]

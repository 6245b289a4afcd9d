"""A compromised sync host: it runs the real sync with a device but edits what it uploads
(`drop_tail`: leaves the last records out; `substitute`: one record's bytes replaced by
another record of the same journal; `empty`: only the status; `corrupt`: a flipped byte),
then hands the device whatever ack the ledger gave. The device must never prune a record the
ledger does not hold, and the next honest sync must bring everything in."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import cbor2

from tapcash.sim.run.oracle import Attack

from .base import AttackKind

VARIANTS = ("drop_tail", "substitute", "empty", "corrupt")


class EvilLink:
    """The sync tool's ledger link, through a host that edits each batch before upload."""

    def __init__(self, link: Any, variant: str, rng: random.Random) -> None:
        self.link = link
        self.url = link.url
        self.variant = variant
        self.rng = rng
        self.edits: list[str] = []

    def submit(self, batch: Any) -> Any:
        recs = list(batch.records)
        v = self.variant
        if v == "drop_tail" and recs:
            n = self.rng.randint(1, len(recs))
            self.edits.append(f"dropped seqs {[s for s, _ in recs[-n:]]}")
            recs = recs[:-n]
        elif v == "substitute" and len(recs) >= 2:
            i, j = self.rng.sample(range(len(recs)), 2)
            self.edits.append(f"seq {recs[i][0]} carries the record of seq {recs[j][0]}")
            recs[i] = (recs[i][0], recs[j][1])
        elif v == "empty":
            self.edits.append(f"dropped all {len(recs)} records")
            recs = []
        elif v == "corrupt" and recs:
            i = self.rng.randrange(len(recs))
            raw = bytearray(recs[i][1])
            raw[self.rng.randrange(len(raw))] ^= 0x01
            self.edits.append(f"flipped a bit in seq {recs[i][0]}")
            recs[i] = (recs[i][0], bytes(raw))
        return self.link.submit(replace(batch, records=recs))


def journal(dev: Any) -> dict[int, bytes]:
    """seq -> record bytes of everything the device holds (EXPORT is read-only)."""
    from tapcash.firmware.core import proto
    from tapcash.sim.run.reach import call, select

    if dev.role == "wallet":
        select(dev)
    out: dict[int, bytes] = {}
    since = 0
    while True:
        req = cbor2.dumps({proto.EXP_SINCE: since, proto.EXP_MAX: 16}, canonical=True)
        page = cbor2.loads(call(dev, proto.INS_EXPORT, req, what="EXPORT"))
        for seq, rec in page[proto.EXP_RECORDS]:
            out[int(seq)] = rec if isinstance(rec, bytes) else cbor2.dumps(rec, canonical=True)
            since = int(seq)
        if not page[proto.EXP_MORE] or not page[proto.EXP_RECORDS]:
            return out


class SyncHost(AttackKind):
    name = "sync_host"
    expect = "harmless"

    def plan(self, rng, targets, t, tag, sc) -> list[dict[str, Any]]:
        dev = targets.any_pos() if rng.random() < 0.7 else targets.victim()
        return [self.ev(t, tag, self.name, 0, dev, rng.choice(VARIANTS), rng.randrange(1 << 30))]

    def step(self, run, ev) -> None:
        dev = run.devices[ev.device]
        if ev.device in run.pos_off:
            return
        atk = run.oracle.attack(Attack(ev.tag, self.name, b"", run.now_rel(), expect="harmless",
                                       note=f"{ev.device} {ev.wallet}"))
        dev.power_on() if dev.role == "wallet" else None
        before = journal(dev)
        link = EvilLink(run.link, ev.wallet, random.Random(ev.amount))
        entry = run.sync(ev.device, link=link)
        run.adv.wipe_spool(ev.device)
        if dev.role == "wallet":
            dev.power_on()
        after = journal(dev)
        pruned = sorted(set(before) - set(after))
        atk.note += f": {'; '.join(link.edits) or 'no edit'}; sync {entry.get('outcome')}, " \
                    f"device pruned {len(pruned)} of {len(before)}"
        run.adv.check_pruned(atk, ev.device, {s: before[s] for s in pruned})

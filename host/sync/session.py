"""The sync algorithm: device journal -> outbox -> ledger -> device.

    1. SELECT: which device (id, kind, certificate).
    2. Flush the outbox: batches spooled by earlier syncs go to the ledger first.
    3. EXPORT every record the device still holds (it prunes only on ACK), in pages.
    4. Write the batch to the outbox, durably, BEFORE anything else sees it.
    5. Upload it; the ledger answers with a signed ACK, the latest update and the vouchers
       not yet applied (unreachable ledger: stop here, the batch waits in the outbox). A wallet
       with nothing to upload asks instead what waits for it (`GET .../pending`, read only,
       authenticated by the wallet's signed status) and needs no ACK.
    6. APPLY the update, LOAD the vouchers in order (6916 = applied by an earlier run).
    7. ACK last: only now may the device prune what the ledger holds.
    8. Delete the outbox entries the ack covers.
    9. A LOAD journals a record: when vouchers were loaded, go again from 3 (at most
       MAX_ROUNDS rounds), so a completed sync leaves the device's journal empty and the
       ledger with the device's final status.

Every step is safe to repeat, so a sync killed anywhere (between any two frames, during the
upload, while writing the outbox) converges when run again: EXPORT is read-only, the ledger
deduplicates records by (device, seq) and payments by (wallet, counter), APPLY and LOAD are
numbered, ACK is idempotent, and the device prunes nothing the ledger has not stored.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tapcash.firmware.core import proto
from tapcash.host.device.errors import DeviceRefused, LedgerRefused, LedgerUnreachable
from tapcash.host.ledger.client import IngestResult

from .commands import EXPORT_PAGE_RECORDS, DeviceCommands, DeviceInfo, Transport
from .outbox import Batch, Outbox

MAX_ROUNDS = 3  # export/upload/ack rounds per sync (a round that loads vouchers adds one)
_COUNTS = ("accepted", "duplicates", "conflicts", "refused", "released", "loss")


class Ledger(Protocol):
    url: str

    def submit(self, batch: Batch) -> IngestResult: ...

    def pending(self, device: bytes, status: bytes) -> Any: ...


class Progress(Protocol):
    def stage(self, text: str) -> None: ...

    def export_total(self, total: int) -> None: ...

    def exported(self, count: int) -> None: ...


class NullProgress:
    def stage(self, text: str) -> None:
        pass

    def export_total(self, total: int) -> None:
        pass

    def exported(self, count: int) -> None:
        pass


@dataclass
class FlushResult:
    uploaded: int = 0  # batches the ledger took
    removed: int = 0  # of those, entries deleted (the ledger's ack covers them)
    left: int = 0  # batches still in the outbox
    refused: list[str] = field(default_factory=list)  # file names the ledger refused
    unreachable: str | None = None  # why the flush stopped early
    replies: dict[bytes, IngestResult] = field(default_factory=dict, repr=False)


@dataclass
class SyncResult:
    outcome: str = ""  # "synced" | "spooled"
    port: str = ""
    device: str = ""
    kind: str = ""
    ledger: str | None = None
    rounds: int = 0
    exported: int = 0  # records uploaded, all rounds (a record counts once per round it is in)
    first_seq: int = 0
    last_seq: int = 0
    status: dict[str, Any] = field(default_factory=dict)
    spooled: str | None = None  # outbox file of this batch while it is there
    ack_upto: int | None = None
    update: str | None = None  # "applied" | "already applied" | None (none pending)
    updates_applied: int = 0  # updates the device took in this sync (a renewal brings two)
    vouchers_loaded: int = 0
    vouchers_already: int = 0
    ledger_result: dict[str, Any] = field(default_factory=dict)
    flush: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    message: str = ""
    link: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


_STATUS_NAMES = {
    proto.ST_SEQ: "last_seq",
    proto.ST_COUNTER: "counter",
    proto.ST_BALANCE: "balance",
    proto.ST_PENDING: "pending",
    proto.ST_LOADS: "vouchers_applied",
}


def status_summary(body: dict[int, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {name: body[k] for k, name in _STATUS_NAMES.items() if k in body}
    if isinstance(body.get(proto.ST_PREV), bytes):
        out["chain_head"] = body[proto.ST_PREV].hex()
    purses = body.get(proto.ST_PURSES)
    if isinstance(purses, list):  # a wallet's earmarked purses: [[programme id, balance], ...]
        out["purses"] = [{"program": bytes(p[0]).hex(), "balance": int(p[1])} for p in purses
                         if isinstance(p, list) and len(p) >= 2 and isinstance(p[0], bytes)
                         and isinstance(p[1], int)]
    return out


def flush_outbox(ledger: Ledger, outbox: Outbox, *, keep: bytes | None = None) -> FlushResult:
    """Upload every spooled batch, oldest first. A batch the ledger acknowledged in full is
    deleted, except those of device `keep` (the one being synced: its entries go after its
    own ACK). Stops at the first unreachable error; a refused batch is kept and reported."""
    res = FlushResult()
    outbox.sweep_temporaries()
    for path in outbox.paths():
        try:
            batch = outbox.load(path)
        except (OSError, ValueError) as e:
            res.refused.append(f"{path.name}: unreadable ({e})")
            continue
        try:
            reply = ledger.submit(batch)
        except LedgerUnreachable as e:
            res.unreachable = e.message
            break
        except LedgerRefused as e:
            res.refused.append(f"{path.name}: {e.message}")
            continue
        res.uploaded += 1
        res.replies[batch.device] = reply
        if batch.device != keep and reply.upto >= batch.last_seq:
            outbox.remove(path)
            res.removed += 1
    res.left = len(outbox.paths())
    return res


def export_all(
    dev: DeviceCommands,
    info: DeviceInfo,
    progress: Progress,
    page_records: int = EXPORT_PAGE_RECORDS,
) -> tuple[list[tuple[int, bytes]], bytes, dict[int, Any]]:
    """Every record the device holds, and the status envelope of the last page."""
    records: list[tuple[int, bytes]] = []
    since = 0
    total_set = False
    most = page_records
    while True:
        try:
            page = dev.export(since, most)
        except DeviceRefused as e:
            if e.sw == proto.SW_WRONG_LENGTH and most > 1:
                most //= 2  # the answer did not fit a frame: ask for fewer records
                continue
            raise
        if page.status is not None and page.status_body.get(proto.ST_DEVICE) != info.id:
            raise DeviceRefused("EXPORT status names another device", proto.SW_DATA_INVALID)
        if not total_set:
            last = page.status_body.get(proto.ST_SEQ, page.last_seq)
            first = page.records[0][0] if page.records else last + 1
            progress.export_total(max(0, last - first + 1))
            total_set = True
        if page.records and page.records[0][0] <= since:
            raise DeviceRefused("EXPORT went backwards", proto.SW_DATA_INVALID)
        records += page.records
        progress.exported(len(records))
        if page.records:
            since = page.records[-1][0]
        if not page.more:
            return records, page.status, page.status_body
        if not page.records:
            raise DeviceRefused("EXPORT says more but sent nothing", proto.SW_DATA_INVALID)


def sync_device(
    transport: Transport,
    *,
    ledger: Ledger | None,
    outbox: Outbox,
    progress: Progress | None = None,
    page_records: int = EXPORT_PAGE_RECORDS,
    clock: Callable[[], float] = time.time,
) -> SyncResult:
    """One sync of the device on `transport`. Returns the result (outcome "synced", or
    "spooled" when the ledger was not reached); raises SyncError subclasses for the rest."""
    t0 = time.monotonic()
    progress = progress or NullProgress()
    res = SyncResult(port=transport.port, ledger=ledger.url if ledger else None)
    dev = DeviceCommands(transport)

    progress.stage("connecting")
    info = dev.select()
    res.device = info.id.hex()
    res.kind = info.kind_name

    outbox.sweep_temporaries()  # a killed sync's half-written batch, even with none complete
    if ledger is not None and outbox.paths():
        progress.stage("uploading spooled batches")
        fl = flush_outbox(ledger, outbox, keep=info.id)
        res.flush = {k: v for k, v in asdict(fl).items() if k != "replies"}

    if ledger is None or res.flush.get("unreachable"):
        # nothing can be uploaded: spool what the device holds and stop
        _export_and_spool(dev, info, outbox, progress, page_records, clock, res)
        res.outcome = "spooled"
        if ledger is None:
            res.message = "no ledger given: the batch waits in the outbox (tapcash sync --flush)"
        else:
            res.message = f"{res.flush['unreachable']}; the batch waits in the outbox"
        return _finish(res, transport, t0)

    sent_updates: set[bytes] = set()
    for _round in range(MAX_ROUNDS):
        res.rounds += 1
        batch, spooled = _export_and_spool(dev, info, outbox, progress, page_records, clock, res)
        if not batch.records and info.kind == proto.KIND_WALLET and hasattr(ledger, "pending"):
            # Nothing to upload: ask what waits for the wallet (read only, no ACK needed).
            progress.stage("asking the ledger")
            try:
                waiting = ledger.pending(info.id, batch.status)
            except LedgerUnreachable as e:
                res.outcome = "spooled"
                res.message = e.message
                return _finish(res, transport, t0)
            applied = res.updates_applied
            loaded = _deliver(dev, res, waiting.updates, waiting.vouchers, sent_updates)
            if not loaded and res.updates_applied == applied:
                break
            continue  # a LOAD's record to ship, or an update (a purse cleared): export again
        progress.stage("uploading")
        try:
            reply = ledger.submit(batch)
        except LedgerUnreachable as e:
            res.outcome = "spooled"
            res.message = f"{e.message}; the batch waits in the outbox" if spooled else e.message
            return _finish(res, transport, t0)
        res.ack_upto = reply.upto
        note = reply.raw.get("ack_note") if isinstance(reply.raw, dict) else None
        if note:
            res.warnings.append(f"ledger: {note}")
        for k in _COUNTS:
            res.ledger_result[k] = res.ledger_result.get(k, 0) + getattr(reply, k)
        res.ledger_result["revoked"] = list(reply.revoked)
        res.ledger_result["hotlist_version"] = reply.hotlist_version

        progress.stage("updating the device")
        loaded = _deliver(dev, res, reply.updates or ([reply.update] if reply.update else []),
                          reply.vouchers, sent_updates)

        progress.stage("acknowledging")
        dev.ack(reply.ack)
        for path in outbox.paths(info.id):
            try:
                if outbox.load(path).last_seq <= reply.upto:
                    outbox.remove(path)
            except (OSError, ValueError):
                continue
        if spooled is not None and not spooled.exists():
            res.spooled = None
        if not loaded:
            break  # a LOAD journals a record: one more round ships it, so the device ends empty
    res.outcome = "synced"
    res.message = "synced"
    return _finish(res, transport, t0)


def _deliver(dev: DeviceCommands, res: SyncResult, updates: list[bytes], vouchers: list[bytes],
             sent_updates: set[bytes]) -> int:
    """APPLY every pending update, oldest first (a renewed certificate travels only in the
    update minted for the renewal, and later updates do not repeat it), then LOAD the vouchers
    in order. Returns the vouchers loaded now."""
    for update in updates:
        if update in sent_updates:
            continue
        sent_updates.add(update)
        try:
            applied = dev.apply(update)
        except DeviceRefused as e:
            res.warnings.append(e.message)
            continue
        if applied:
            res.update = "applied"
            res.updates_applied += 1
        elif res.update is None:
            res.update = "already applied"
    loaded = 0
    for voucher in vouchers:
        try:
            if dev.load(voucher):
                loaded += 1
            else:
                res.vouchers_already += 1
        except DeviceRefused as e:
            res.warnings.append(f"{e.message}; the rest stay pending at the ledger")
            break
    res.vouchers_loaded += loaded
    return loaded


def _export_and_spool(
    dev: DeviceCommands,
    info: DeviceInfo,
    outbox: Outbox,
    progress: Progress,
    page_records: int,
    clock: Callable[[], float],
    res: SyncResult,
) -> tuple[Batch, Path | None]:
    """EXPORT everything the device holds and put it in the outbox (when not empty)."""
    progress.stage("exporting")
    records, status, status_body = export_all(dev, info, progress, page_records)
    res.exported += len(records)
    if records:
        res.first_seq = res.first_seq or records[0][0]
        res.last_seq = records[-1][0]
    res.status = status_summary(status_body)
    batch = Batch(info.id, info.kind, info.cert, records, status, int(clock()))
    spooled = None
    if records:
        spooled = outbox.put(batch)
        res.spooled = str(spooled)
    return batch, spooled


def _finish(res: SyncResult, transport: Transport, t0: float) -> SyncResult:
    stats = getattr(transport, "stats", None)
    if stats is not None:
        res.link = asdict(stats)
    res.elapsed_s = round(time.monotonic() - t0, 4)
    return res

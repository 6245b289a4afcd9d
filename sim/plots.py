"""PNG plots of a run (matplotlib, Agg backend: no display needed).

payments.png  payments per 15 minutes (approved / declined) and the value taken
exposure.png  offline exposure: value accepted by terminals that the ledger does not hold yet
fraud.png     each double-spend attempt: accepted offline, refused by a POS, caught at the ledger
sync_lag.png  time from a payment to the ledger (hours), and card-in-field time per payment
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tapcash.sim.runner import RunLog

BIN_S = 900


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _hours(t: float) -> float:
    return t / 3600.0


def write_plots(log: RunLog, out: Path) -> list[Path]:
    plt = _plt()
    written = []
    for name, fn in (
        ("payments.png", _payments),
        ("exposure.png", _exposure),
        ("fraud.png", _fraud),
        ("sync_lag.png", _lag),
    ):
        fig = fn(plt, log)
        path = Path(out) / name
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def _title(log: RunLog, what: str) -> str:
    sc = log.scenario
    return f"{what} - {sc.name}, seed {log.seed}, {sc.wallets.count} wallets, {sc.pos.count} POS"


def _payments(plt: Any, log: RunLog) -> Any:
    end = log.scenario.end
    nbins = max(1, end // BIN_S)
    ok = [0] * nbins
    bad = [0] * nbins
    value = [0] * nbins
    for p in log.payments:
        i = min(nbins - 1, p.t // BIN_S)
        if p.status == "approved":
            ok[i] += 1
            value[i] += p.amount
        else:
            bad[i] += 1
    xs = [_hours(i * BIN_S) for i in range(nbins)]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    w = _hours(BIN_S) * 0.9
    ax.bar(xs, ok, width=w, align="edge", label="approved", color="#2a9d8f")
    ax.bar(xs, bad, width=w, align="edge", bottom=ok, label="declined / torn", color="#e76f51")
    ax.set_xlabel("hours since start")
    ax.set_ylabel("payments per 15 min")
    ax2 = ax.twinx()
    cum, total = [], 0
    for v in value:
        total += v
        cum.append(total / 100)
    ax2.plot([x + _hours(BIN_S) for x in xs], cum, color="#264653", label="value taken (cum.)")
    ax2.set_ylabel("value taken, cumulative (major units)")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="upper left")
    ax.set_title(_title(log, "Payments"))
    fig.tight_layout()
    return fig


def _exposure(plt: Any, log: RunLog) -> Any:
    end = log.scenario.end
    changes: list[tuple[int, int]] = []
    for p in log.payments:
        if p.status != "approved":
            continue
        changes.append((p.t, p.amount))
        changes.append((p.at_ledger if p.at_ledger is not None else end, -p.amount))
    changes.sort()
    xs, ys, level = [0.0], [0.0], 0
    for t, d in changes:
        xs.append(_hours(t))
        ys.append(level / 100)
        level += d
        xs.append(_hours(t))
        ys.append(level / 100)
    xs.append(_hours(end))
    ys.append(level / 100)
    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.fill_between(xs, ys, step=None, color="#f4a261", alpha=0.6)
    ax.plot(xs, ys, color="#e76f51")
    syncs = [_hours(s["t"]) for s in log.syncs if s.get("outcome") == "synced" and not s["final"]]
    ax.plot(syncs, [0] * len(syncs), "|", color="#264653", markersize=12, label="a device synced")
    ax.set_xlabel("hours since start")
    ax.set_ylabel("accepted offline, not at the ledger (major units)")
    ax.set_title(_title(log, "Offline exposure"))
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


def _fraud(plt: Any, log: RunLog) -> Any:
    fig, ax = plt.subplots(figsize=(10, 4.5))
    start = log.scenario.start
    rows = []
    for a in log.attacks:
        rows.append(a)
    cases = log.ledger.get("fraud", [])
    labels = []
    for i, a in enumerate(rows):
        y = len(rows) - i
        labels.append((y, f"{a['tag']}\n{a['wallet']}"))
        t0 = a.get("snapshot_t", a["t"])
        ax.plot([_hours(t0)], [y], "s", color="#6d6875", markersize=9)
        last = max([a["t"]] + [p.t for p in log.payments if p.tag == a["tag"]])
        ax.plot([_hours(t0), _hours(last)], [y, y], "-", color="#6d6875", linewidth=1)
        for p in log.payments:
            if p.tag != a["tag"]:
                continue
            style = ("o", "#e76f51") if p.status == "approved" else ("x", "#2a9d8f")
            ax.plot([_hours(p.t)], [y], style[0], color=style[1], markersize=10, mew=2)
        wid = next((p.wallet for p in log.payments if p.tag == a["tag"] and p.wallet), "")
        for c in cases:
            if c["wallet"] == wid:
                t_det = _hours(c["detected_at"] - start)
                ax.plot([_hours(last), t_det], [y, y], ":", color="#264653", linewidth=1)
                ax.plot([t_det], [y], "*", color="#264653", markersize=16)
    ax.plot([], [], "s-", color="#6d6875", label="attack: card cloned / flash image taken")
    ax.plot([], [], "o", color="#e76f51", label="payment accepted offline")
    ax.plot([], [], "x", color="#2a9d8f", mew=2, label="payment refused by a POS")
    ax.plot([], [], "*", color="#264653", markersize=12, label="fraud case at the ledger (proof)")
    ax.set_yticks([y for y, _ in labels], [t for _, t in labels])
    ax.set_ylim(0, len(rows) + 1)
    ax.set_xlim(0, _hours(log.scenario.end) + 1)
    ax.set_xlabel("hours since start")
    ax.set_title(_title(log, "Double spends caught"))
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return fig


def _lag(plt: Any, log: RunLog) -> Any:
    approved = [p for p in log.payments if p.status == "approved"]
    lags = [_hours(p.at_ledger - p.t) for p in approved if p.at_ledger is not None]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    ax.hist(lags or [0], bins=24, color="#457b9d")
    ax.set_xlabel("hours from payment to the ledger")
    ax.set_ylabel("payments")
    ax.set_title("Sync lag")
    ms = [p.in_field_ms for p in approved]
    ax2.hist(ms or [0], bins=30, color="#8ab17d")
    ax2.axvline(500, color="#e76f51", linestyle="--", label="500 ms (card schemes)")
    ax2.set_xlabel("card in field, ms")
    ax2.set_title("Card-in-field time per approved payment")
    ax2.legend()
    fig.suptitle(_title(log, "Sync lag and tap time"))
    fig.tight_layout()
    return fig

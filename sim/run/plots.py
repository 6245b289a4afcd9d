"""PNG plots of a run (matplotlib, Agg backend: no display needed).

payments.png  payments per day (per hour for runs of a day or less), stacked by outcome:
              approved and each decline reason; value taken per bin below
exposure.png  offline exposure: value accepted by terminals that the ledger does not hold yet
fraud.png     a timeline per attack: when it started, every payment it tried (accepted offline
              or refused by a POS, with the POS's reason), when the ledger opened the case
sync_lag.png  time from a payment to the ledger, and card-in-field time as a distribution
programmes.png (runs with programmes) each programme's flow from the ledger's books: funded =
              spent / released + refunded + outstanding, and its earmarked spending over time
              against the card schemes' 500 ms budget

Every figure is drawn for the size it is written at (dpi 100): bars always fit the axes, an axis
spans what its data spans, and a budget far above the data is drawn as a gauge, not as an axis.
"""

from pathlib import Path
from typing import Any

from tapcash.sim.run.log import PayRecord, RunLog

IN_FIELD_BUDGET_MS = 500.0  # contactless card-in-field budget recommended by the card schemes
DAY_S = 86_400
HOUR_S = 3_600
REASONS_SHOWN = 6  # decline reasons drawn on their own; the rest are "other declines"

APPROVED = "#2a9d8f"
DECLINE_COLOURS = ("#e76f51", "#f4a261", "#e9c46a", "#9d4edd", "#577590", "#bc4749")
OTHER = "#adb5bd"
INK = "#264653"


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
        ("payments.png", payments_figure),
        ("exposure.png", exposure_figure),
        ("fraud.png", fraud_figure),
        ("sync_lag.png", lag_figure),
        *((("programmes.png", programmes_figure),) if log.scenario.programs else ()),
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


# ---- payments by outcome ---------------------------------------------------------------------
def outcome(p: PayRecord) -> str:
    """'approved', the decline reason as the POS gave it, or how the tap broke off."""
    if p.status == "approved":
        return "approved"
    if p.status == "declined":
        return p.reason or "declined"
    return p.status.replace("_", " ")  # torn, power cut: the tap did not finish


def bin_seconds(end_s: int) -> int:
    """A day per bar for runs longer than a day and a half; an hour per bar below."""
    return DAY_S if end_s > 36 * HOUR_S else HOUR_S


def outcome_bins(log: RunLog) -> tuple[int, list[str], dict[str, list[int]], list[int]]:
    """(bin width s, outcomes in stacking order, counts per outcome per bin, value per bin)."""
    width = bin_seconds(log.scenario.end)
    nbins = max(1, -(-log.scenario.end // width))
    counts: dict[str, list[int]] = {}
    value = [0] * nbins
    for p in log.payments:
        i = min(nbins - 1, max(0, p.t // width))
        counts.setdefault(outcome(p), [0] * nbins)[i] += 1
        if p.status == "approved":
            value[i] += p.amount
    declines = sorted((k for k in counts if k != "approved"), key=lambda k: -sum(counts[k]))
    shown, rest = declines[:REASONS_SHOWN], declines[REASONS_SHOWN:]
    if rest:
        other = [sum(counts[k][i] for k in rest) for i in range(nbins)]
        for k in rest:
            del counts[k]
        counts["other declines"] = other
        shown.append("other declines")
    order = (["approved"] if "approved" in counts else []) + shown
    return width, order, counts, value


def payments_figure(plt: Any, log: RunLog) -> Any:
    width, order, counts, value = outcome_bins(log)
    nbins = len(value)
    per_day = width == DAY_S
    xs = list(range(nbins))
    labels = [f"day {i + 1}" if per_day else f"{i:02d}h" for i in xs]
    fig, (ax, axv) = plt.subplots(
        2, 1, figsize=(12, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    bottom = [0] * nbins
    colours = iter(DECLINE_COLOURS)
    for name in order:
        ys = counts[name]
        colour = APPROVED if name == "approved" else next(colours, OTHER)
        if name == "other declines":
            colour = OTHER
        total = sum(ys)
        ax.bar(xs, ys, bottom=bottom, width=0.8, color=colour, label=f"{name} ({total:,})")
        bottom = [b + y for b, y in zip(bottom, ys, strict=True)]
    top = max(bottom) if bottom else 0
    ax.set_ylim(0, max(1, top) * 1.15)  # headroom: every stack and its label fits
    for x, total in zip(xs, bottom, strict=True):
        if total and (per_day or nbins <= 48):
            ax.annotate(f"{total:,}", (x, total), ha="center", va="bottom", fontsize=8,
                        xytext=(0, 2), textcoords="offset points")
    ax.set_ylabel("payments per day" if per_day else "payments per hour")
    ax.set_title(_title(log, "Payments by outcome"))
    # beside the bars, never over them
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title="outcome (total)",
              title_fontsize=8, frameon=False)
    axv.bar(xs, [v / 100 for v in value], width=0.8, color=INK)
    axv.set_ylim(0, max(1.0, max(value) / 100) * 1.15)
    axv.set_ylabel("value taken\n(major units)")
    step = 1 if nbins <= 24 else -(-nbins // 24)
    axv.set_xticks(xs[::step], labels[::step], fontsize=8)
    fig.tight_layout()
    return fig


# ---- offline exposure ------------------------------------------------------------------------
def exposure_figure(plt: Any, log: RunLog) -> Any:
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
    fig, ax = plt.subplots(figsize=(11, 4.5))
    ax.fill_between(xs, ys, step=None, color="#f4a261", alpha=0.6)
    ax.plot(xs, ys, color="#e76f51")
    syncs = [_hours(s["t"]) for s in log.syncs if s.get("outcome") == "synced" and not s["final"]]
    ax.plot(syncs, [0] * len(syncs), "|", color=INK, markersize=12, label="a device synced")
    ax.set_xlim(0, _hours(end))
    ax.set_ylim(0, max(1.0, max(ys)) * 1.1)
    ax.set_xlabel("hours since start")
    ax.set_ylabel("accepted offline, not at the ledger (major units)")
    ax.set_title(_title(log, "Offline exposure"))
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


# ---- programmes ------------------------------------------------------------------------------
FLOW = (("used", "#2a9d8f", "spent / released to merchants"), ("refunded", "#e9c46a",
        "refunded to the funder"), ("outstanding", "#8ab17d", "outstanding on cards"))


def programme_of(log: RunLog, p: PayRecord) -> str:
    """The programme whose purse paid part of a payment: the one whose POS took it."""
    n = int(p.pos.split("-")[1]) if p.pos.startswith("pos-") else 0
    for pr in log.scenario.programs:
        if n in pr.pos:
            return pr.name
    return ""


def programmes_figure(plt: Any, log: RunLog) -> Any:
    reports = {r["program"]: r for r in log.ledger.get("programs", [])}
    names = [pr.name for pr in log.scenario.programs if pr.name in reports]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 1.6 + 0.9 * max(1, len(names))))
    for i, name in enumerate(names):
        r = reports[name]
        parts = {"used": r["spent"] + r["released"], "refunded": r["refunded"],
                 "outstanding": r["outstanding"]}
        left = 0.0
        for key, color, label in FLOW:
            width = parts[key] / 100
            ax.barh(i, width, left=left, color=color, label=label if i == 0 else None)
            left += width
        ax.plot([r["funded"] / 100], [i], "k|", markersize=22, label="funded" if i == 0 else None)
    ax.set_yticks(range(len(names)), [f"{n} ({reports[n]['kind']})" for n in names])
    funded = max([reports[n]["funded"] for n in names] or [100])
    ax.set_xlim(0, funded / 100 * 1.15)
    ax.set_ylim(-0.6, len(names) - 0.4 + 1.0)  # headroom for the legend
    ax.set_xlabel("major units")
    ax.set_title("Where every unit went (the ledger's books)")
    ax.legend(loc="upper right", fontsize=8, ncol=2, markerscale=0.45)  # the funded tick fits
    end = log.scenario.end
    for name in names:
        pts = sorted((p.t, p.earmarked) for p in log.payments
                     if p.status == "approved" and p.earmarked and programme_of(log, p) == name)
        xs, ys, total = [0.0], [0.0], 0
        for t, e in pts:
            total += e
            xs.append(_hours(t))
            ys.append(total / 100)
        xs.append(_hours(end))
        ys.append(total / 100)
        ax2.step(xs, ys, where="post", label=name)
    ax2.set_xlim(0, _hours(end))
    ax2.set_xlabel("hours since start")
    ax2.set_ylabel("earmarked value paid (major units)")
    ax2.set_title("Purse payments over time")
    if names:
        ax2.legend(loc="upper left", fontsize=8)
    fig.suptitle(_title(log, "Programmes"))
    fig.tight_layout()
    return fig


# ---- fraud timeline --------------------------------------------------------------------------
ATTACK_MARK = {"clone": "D", "rollback": "s"}


def fraud_figure(plt: Any, log: RunLog) -> Any:
    attacks = list(log.attacks)
    fig, ax = plt.subplots(figsize=(11, max(3.5, 1.2 + 0.55 * len(attacks))))
    start = log.scenario.start
    cases = log.ledger.get("fraud", [])
    ticks = []
    for i, a in enumerate(attacks):
        y = len(attacks) - i
        kind = str(a.get("kind", "attack"))
        ticks.append((y, f"{a['tag']} ({kind})\n{a['wallet']}"))
        t0 = a.get("snapshot_t", a["t"])
        tried = [p for p in log.payments if p.tag == a["tag"]]
        last = max([a["t"]] + [p.t for p in tried])
        ax.plot([_hours(t0), _hours(last)], [y, y], "-", color="#6d6875", linewidth=1, zorder=1)
        ax.plot([_hours(t0)], [y], ATTACK_MARK.get(kind, "P"), color="#6d6875", markersize=9,
                zorder=2)
        # accepted above the line, refused below it: neither hides the other
        for p in tried:
            if p.status == "approved":
                ax.plot([_hours(p.t)], [y + 0.12], "o", color="#e76f51", markersize=8, zorder=3)
            else:
                ax.plot([_hours(p.t)], [y - 0.12], "x", color=APPROVED, markersize=9, mew=2,
                        zorder=4)
                ax.annotate(outcome(p), (_hours(p.t), y - 0.12), fontsize=7, color=APPROVED,
                            xytext=(4, -9), textcoords="offset points")
        wid = next((p.wallet for p in tried if p.wallet), "")
        for c in cases:
            if wid and c["wallet"] == wid:
                t_det = _hours(c["detected_at"] - start)
                ax.plot([_hours(last), t_det], [y, y], ":", color=INK, linewidth=1, zorder=1)
                ax.plot([t_det], [y], "*", color=INK, markersize=15, zorder=5)
    ax.plot([], [], "D", color="#6d6875", label="attack: card cloned")
    ax.plot([], [], "s", color="#6d6875", label="attack: flash image taken (rollback)")
    ax.plot([], [], "o", color="#e76f51", label="payment accepted offline")
    ax.plot([], [], "x", color=APPROVED, mew=2, label="payment refused by a POS (reason)")
    ax.plot([], [], "*", color=INK, markersize=12, label="fraud case at the ledger (proof)")
    ax.set_yticks([y for y, _ in ticks], [t for _, t in ticks], fontsize=8)
    ax.set_ylim(0.4, len(attacks) + 0.8)
    ax.set_xlim(0, _hours(log.scenario.end) + 1)
    ax.set_xlabel("hours since start")
    ax.set_title(_title(log, "Attacks: tried, refused, caught"))
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=3, fontsize=8)
    if not attacks:
        ax.text(0.5, 0.5, "no attacks in this run", transform=ax.transAxes, ha="center")
    fig.tight_layout()
    return fig


# ---- sync lag and card-in-field time ---------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(q / 100 * len(s) + 0.5)) - 1))
    return s[k]


def lag_figure(plt: Any, log: RunLog) -> Any:
    approved = [p for p in log.payments if p.status == "approved"]
    lags = [_hours(p.at_ledger - p.t) for p in approved if p.at_ledger is not None]
    ms = [p.in_field_ms for p in approved]
    fig = plt.figure(figsize=(12, 5))
    grid = fig.add_gridspec(2, 2, height_ratios=[4, 1])
    ax = fig.add_subplot(grid[:, 0])
    ax.hist(lags or [0], bins=24, color="#457b9d")
    ax.set_xlabel("hours from payment to the ledger")
    ax.set_ylabel("payments")
    ax.set_title("Sync lag")
    dist = fig.add_subplot(grid[0, 1])
    gauge = fig.add_subplot(grid[1, 1])
    if ms:
        marks = {"p50": percentile(ms, 50), "p95": percentile(ms, 95), "max": max(ms)}
        dist.hist(ms, bins=30, color="#8ab17d", edgecolor="white")
        for (name, v), style in zip(marks.items(), ("-", "--", ":"), strict=True):
            dist.axvline(v, color=INK, linestyle=style, linewidth=1, label=f"{name} {v:.1f} ms")
        lo, hi = min(ms), max(ms)
        pad = max(0.5, 0.1 * (hi - lo))
        dist.set_xlim(max(0.0, lo - pad), hi + pad)  # the data's own span; the gauge gives 0-500
        dist.legend(fontsize=8)
        # the budget as a gauge: where the distribution sits in the 500 ms the schemes allow
        gauge.barh([0], [IN_FIELD_BUDGET_MS], color="#e9ecef", height=0.6)
        gauge.barh([0], [min(marks["p95"], IN_FIELD_BUDGET_MS)], color="#8ab17d", height=0.6)
        gauge.plot([marks["max"]], [0], "|", color=INK, markersize=18, mew=2)
        gauge.set_xlim(0, max(IN_FIELD_BUDGET_MS, marks["max"]) * 1.02)
        share = 100 * marks["p95"] / IN_FIELD_BUDGET_MS
        gauge.set_title(f"p95 uses {share:.0f}% of the {IN_FIELD_BUDGET_MS:.0f} ms budget "
                        f"(bar: p95, tick: max)", fontsize=9)
    gauge.set_yticks([])
    gauge.set_xlabel("card in field, ms")
    dist.set_ylabel("approved payments")
    dist.set_title("Card-in-field time per approved payment")
    fig.suptitle(_title(log, "Sync lag and tap time"))
    fig.tight_layout()
    return fig

"""Small inline SVG charts, drawn on the server (no script, no build step).

Each bar carries its exact value in `data-value` and a <title>, so a test (or a reader with a
screen reader) gets the number the bar is drawn from.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape

from markupsafe import Markup

PALETTE = ["#2b6cb0", "#2f855a", "#b7791f", "#9b2c2c", "#6b46c1", "#2c7a7b", "#718096"]


def hbars(items: Sequence[tuple[str, int]], fmt: Callable[[int], str], *, width: int = 560,
          row_h: int = 22, label_w: int = 150, name: str = "chart") -> Markup:
    """One horizontal bar per (label, value), scaled to the largest |value|."""
    if not items:
        return Markup("")
    top = max(abs(v) for _, v in items) or 1
    bar_w = width - label_w - 110
    h = row_h * len(items) + 4
    out = [f'<svg class="chart" role="img" aria-label="{escape(name)}" width="{width}" '
           f'height="{h}" viewBox="0 0 {width} {h}" xmlns="http://www.w3.org/2000/svg">']
    for i, (label, value) in enumerate(items):
        y = i * row_h + 2
        w = max(1, round(bar_w * abs(value) / top)) if value else 0
        colour = PALETTE[i % len(PALETTE)]
        out.append(
            f'<g class="bar" data-label="{escape(label)}" data-value="{value}">'
            f"<title>{escape(label)}: {escape(fmt(value))}</title>"
            f'<text x="{label_w - 6}" y="{y + row_h * 0.68:.0f}" text-anchor="end">'
            f"{escape(label)}</text>"
            f'<rect x="{label_w}" y="{y + 3}" width="{w}" height="{row_h - 6}" '
            f'fill="{colour}"/>'
            f'<text x="{label_w + w + 6}" y="{y + row_h * 0.68:.0f}">{escape(fmt(value))}'
            "</text></g>")
    out.append("</svg>")
    return Markup("".join(out))


def stacked(parts: Sequence[tuple[str, int]], total: int, fmt: Callable[[int], str], *,
            width: int = 560, height: int = 26, name: str = "chart") -> Markup:
    """One bar of length `total` split into parts (label, value), with a legend."""
    if total <= 0:
        return Markup("")
    out = [f'<svg class="chart" role="img" aria-label="{escape(name)}" width="{width}" '
           f'height="{height + 22}" viewBox="0 0 {width} {height + 22}" '
           'xmlns="http://www.w3.org/2000/svg">']
    x = 0.0
    legend_x = 0
    for i, (label, value) in enumerate(parts):
        colour = PALETTE[i % len(PALETTE)]
        w = width * value / total
        out.append(f'<g class="bar" data-label="{escape(label)}" data-value="{value}">'
                   f"<title>{escape(label)}: {escape(fmt(value))}</title>"
                   f'<rect x="{x:.1f}" y="0" width="{w:.1f}" height="{height}" '
                   f'fill="{colour}"/></g>')
        x += w
        text = f"{label} {fmt(value)}"
        out.append(f'<rect x="{legend_x}" y="{height + 8}" width="10" height="10" '
                   f'fill="{colour}"/><text x="{legend_x + 14}" y="{height + 17}">'
                   f"{escape(text)}</text>")
        legend_x += 24 + 7 * len(text)
    out.append("</svg>")
    return Markup("".join(out))

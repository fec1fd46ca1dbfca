"""Charts as inline SVG, drawn here: a report page needs no script, font or network.

Each chart is an `<svg class="chart KIND">` with one `<rect class="bar">` per value,
carrying `data-label` and `data-value`, and a `<title>` per bar (shown on hover).
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

#: series colours (colour-blind safe: Okabe–Ito)
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")
_FONT = 'font-family="system-ui, sans-serif" font-size="12"'


def _a(value: object) -> str:
    return escape(str(value), quote=True)


def hbars(kind: str, title: str, items: Sequence[tuple[str, int]], *,
          percent_of_first: bool = False, **data: str) -> str:
    """Horizontal bars, one per (label, value); a funnel shows each as a share of the first."""
    label_w, bar_w, row_h = 130, 300, 26
    height = 30 + row_h * max(len(items), 1)
    top = max((v for _, v in items), default=0) or 1
    first = items[0][1] if items else 0
    attrs = "".join(f' data-{_a(k)}="{_a(v)}"' for k, v in data.items())
    out = [f'<svg class="chart {_a(kind)}" data-chart="{_a(kind)}"{attrs} role="img" '
           f'viewBox="0 0 {label_w + bar_w + 90} {height}" width="{label_w + bar_w + 90}" '
           f'height="{height}" xmlns="http://www.w3.org/2000/svg" {_FONT}>',
           f"<title>{_a(title)}</title>",
           f'<text x="0" y="16" font-weight="bold">{_a(title)}</text>']
    if not items:
        out.append('<text x="0" y="44" fill="#666">nothing yet</text>')
    for i, (label, value) in enumerate(items):
        y = 26 + i * row_h
        width = max(round(bar_w * value / top, 1), 1.0 if value else 0.0)
        share = f" ({100 * value / first:.0f}%)" if percent_of_first and first and i else ""
        colour = PALETTE[0] if percent_of_first else PALETTE[i % len(PALETTE)]
        out += [f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">{_a(label)}</text>',
                f'<rect class="bar" x="{label_w}" y="{y + 3}" width="{width}" height="{row_h - 8}"'
                f' fill="{colour}" data-label="{_a(label)}" data-value="{value}">'
                f"<title>{_a(label)}: {value}{share}</title></rect>",
                f'<text x="{label_w + width + 6}" y="{y + 15}">{value}{_a(share)}</text>']
    out.append("</svg>")
    return "".join(out)


def weekly_bars(kind: str, title: str, weeks: Sequence[str],
                series: Sequence[tuple[str, Sequence[int]]]) -> str:
    """Grouped vertical bars: one group per week, one bar per series, with a legend."""
    plot_h, group_w, left, top_pad = 180, max(18 * len(series) + 14, 60), 40, 46
    width = max(left + group_w * max(len(weeks), 1) + 20, 140 * len(series) + left, 520)
    height = top_pad + plot_h + 50
    peak = max((v for _, values in series for v in values), default=0) or 1
    out = [f'<svg class="chart {_a(kind)}" data-chart="{_a(kind)}" role="img" '
           f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
           f'xmlns="http://www.w3.org/2000/svg" {_FONT}>', f"<title>{_a(title)}</title>",
           f'<text x="0" y="16" font-weight="bold">{_a(title)}</text>']
    for i, (name, _) in enumerate(series):
        x = left + 130 * i
        out += [f'<rect x="{x}" y="24" width="10" height="10" fill="{PALETTE[i % 7]}"/>',
                f'<text x="{x + 14}" y="33">{_a(name)}</text>']
    base = top_pad + plot_h
    out += [f'<line x1="{left}" y1="{base}" x2="{width - 10}" y2="{base}" stroke="#999"/>',
            f'<text x="{left - 6}" y="{top_pad + 4}" text-anchor="end">{peak}</text>',
            f'<text x="{left - 6}" y="{base}" text-anchor="end">0</text>']
    if not weeks:
        out.append(f'<text x="{left}" y="{top_pad + 40}" fill="#666">nothing yet</text>')
    bar_w = (group_w - 14) / max(len(series), 1)
    for w, week in enumerate(weeks):
        x0 = left + w * group_w + 7
        for i, (name, values) in enumerate(series):
            value = values[w]
            h = round(plot_h * value / peak, 1)
            out.append(f'<rect class="bar" x="{x0 + i * bar_w:.1f}" y="{base - h}" '
                       f'width="{bar_w - 2:.1f}" height="{h}" fill="{PALETTE[i % 7]}" '
                       f'data-label="{_a(week)} {_a(name)}" data-value="{value}">'
                       f"<title>week of {_a(week)}, {_a(name)}: {value}</title></rect>")
            if value:
                out.append(f'<text x="{x0 + (i + 0.5) * bar_w - 1:.1f}" y="{base - h - 3}" '
                           f'font-size="10" text-anchor="middle">{value}</text>')
        out.append(f'<text x="{x0 + (group_w - 14) / 2:.1f}" y="{base + 14}" font-size="10" '
                   f'text-anchor="end" transform="rotate(-40 {x0 + (group_w - 14) / 2:.1f} '
                   f'{base + 14})">{_a(week[5:])}</text>')
    out.append("</svg>")
    return "".join(out)

"""Activity over time as bars stacked by decision: the numbers, an SVG for the HTML report."""

from __future__ import annotations

import datetime
import math
from collections import Counter
from dataclasses import dataclass
from html import escape

COLOURS = {"allow": "#3b82f6", "review": "#f59e0b", "deny": "#dc2626"}
ORDER = ("allow", "review", "deny")


@dataclass(frozen=True, slots=True)
class Bar:
    start: float
    label: str
    counts: tuple[tuple[str, int], ...]  # (decision, count) in ORDER

    @property
    def total(self) -> int:
        return sum(count for _, count in self.counts)


def bars(activity: dict[int, Counter[str]], since: float, until: float, bucket: int) -> list[Bar]:
    """One bar per bucket from ``since`` to ``until`` (empty buckets included)."""
    result = []
    first, last = int(since // bucket), math.ceil(until / bucket) - 1
    if last - first > 400:  # a long period: the newest 400 buckets
        first = last - 400
    for index in range(first, last + 1):
        start = index * bucket
        when = datetime.datetime.fromtimestamp(start, datetime.UTC)
        label = when.strftime("%m-%d %H:00" if bucket < 86400 else "%Y-%m-%d")
        counts = activity.get(index, Counter())
        result.append(Bar(start, label, tuple((d, counts.get(d, 0)) for d in ORDER)))
    return result


def svg(series: list[Bar], *, width: int = 760, height: int = 220) -> str:
    """Stacked bars with a y axis, ticks on the x axis and a legend."""
    left, bottom, top = 48, 36, 16
    plot_w, plot_h = width - left - 8, height - bottom - top
    peak = max((bar.total for bar in series), default=0) or 1
    step = plot_w / max(len(series), 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="statements over time">',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        'stroke="#555"/>',
        f'<text x="{left - 6}" y="{top + 4}" text-anchor="end" font-size="10">{peak}</text>',
        f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end" font-size="10">0</text>',
    ]
    tick_every = max(1, len(series) // 8)
    for index, bar in enumerate(series):
        x = left + index * step
        y = float(top + plot_h)
        for decision, count in bar.counts:
            if not count:
                continue
            h = plot_h * count / peak
            y -= h
            parts.append(
                f'<rect x="{x + step * 0.1:.1f}" y="{y:.1f}" width="{max(step * 0.8, 1):.1f}" '
                f'height="{h:.1f}" fill="{COLOURS[decision]}"><title>{escape(bar.label)}: '
                f"{count} {decision}</title></rect>"
            )
        if index % tick_every == 0:
            parts.append(
                f'<text x="{x + step / 2:.1f}" y="{top + plot_h + 14}" text-anchor="middle" '
                f'font-size="9">{escape(bar.label)}</text>'
            )
    for offset, decision in enumerate(ORDER):
        lx = left + offset * 90
        parts.append(
            f'<rect x="{lx}" y="{height - 12}" width="10" height="10" '
            f'fill="{COLOURS[decision]}"/><text x="{lx + 14}" y="{height - 3}" '
            f'font-size="10">{decision}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)

"""Horizontal bar charts as inline SVG geometry for the craft report pages (the page's CSP
forbids inline styles; SVG presentation attributes are not styles, so the bars need no script).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

# Colour-blind-safe (Okabe-Ito): one per series.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00")
LABEL_W, BAR_H, GAP, ROW_GAP, PLOT_W, VALUE_W = 150, 14, 3, 12, 360, 70


@dataclass
class Chart:
    """What templates/craft/text_bars.html draws."""

    title: str
    width: int
    height: int
    zero_x: float
    plot_height: float
    rows: list[dict[str, Any]] = field(default_factory=list)
    legend: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def bar_chart(
    title: str,
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None]]],
    *,
    note: str = "",
    per_row_scale: bool = False,
) -> Chart:
    """One row per label, one bar per series (name, values aligned with labels); None leaves a
    gap. Negative values grow left of the zero line. `per_row_scale`: rows are measures in
    different units (MiB, tokens/s, perplexity): each row's longest bar spans the plot."""
    values = [v for _, vals in series for v in vals if v is not None and math.isfinite(v)]
    low, high = min([0.0, *values]), max([0.0, *values])
    if per_row_scale:
        low, high = min([0.0, *values]), max([0.0, *(abs(v) for v in values)])
    span = (high - low) or 1.0
    zero_x = LABEL_W + PLOT_W * (-low / span)
    per_row = len(series) * (BAR_H + GAP) - GAP

    def row_span(i: int) -> float:
        row = [vals[i] for _, vals in series if i < len(vals) and vals[i] is not None]
        return max((abs(v) for v in row if math.isfinite(v)), default=0.0) or 1.0

    rows, y = [], 4.0
    for i, label in enumerate(labels):
        bars = []
        for j, (name, vals) in enumerate(series):
            value = vals[i] if i < len(vals) else None
            top = y + j * (BAR_H + GAP)
            if value is None or not math.isfinite(value):
                bars.append({"y": top, "missing": True, "name": name, "text_y": top + BAR_H - 3})
                continue
            width = PLOT_W * abs(value) / (row_span(i) if per_row_scale else span)
            x = zero_x if value >= 0 else zero_x - width
            bars.append(
                {
                    "x": round(x, 2),
                    "y": round(top, 2),
                    "width": round(max(width, 0.5), 2),
                    "height": BAR_H,
                    "fill": PALETTE[j % len(PALETTE)],
                    "name": name,
                    "value": _fmt(value),
                    "text_x": round(LABEL_W + PLOT_W + 6, 2),
                    "text_y": round(top + BAR_H - 3, 2),
                }
            )
        rows.append({"label": label, "label_y": round(y + per_row / 2 + 4, 2), "bars": bars})
        y += per_row + ROW_GAP
    # The legend: one line under the bars, each swatch followed by its series' name.
    legend, x = [], float(LABEL_W)
    for j, (name, _) in enumerate(series):
        legend.append(
            {
                "name": name,
                "fill": PALETTE[j % len(PALETTE)],
                "x": round(x, 2),
                "y": round(y, 2),
                "text_x": round(x + 14, 2),
                "text_y": round(y + 9, 2),
            }
        )
        x += 14 + 6.5 * min(len(name), 40) + 16
    return Chart(
        title=title,
        width=LABEL_W + PLOT_W + VALUE_W,
        height=int(y + 16),
        zero_x=round(zero_x, 2),
        plot_height=round(y - ROW_GAP / 2, 2),
        rows=rows,
        legend=legend,
        note=note,
    )

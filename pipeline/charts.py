"""Chart geometry for the HTML report; the SVG itself is drawn by `templates/charts.html.j2`.

Horizontal bars on a fixed 0-10 scale, so long subject and dimension names fit on
a phone. Coordinates are rounded to one decimal and formatted by the template,
which keeps the SVG byte-identical across renders.
"""

from __future__ import annotations

from dataclasses import dataclass

WIDTH = 560
LABEL_W = 150  # left gutter for names
RIGHT_PAD = 40
BAR_H = 20
GAP = 6
SCALE_MAX = 10


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    w: float
    h: float
    value: str
    series: str  # "a" or "b"


@dataclass(frozen=True)
class Group:
    label: str
    y: float  # baseline of the label
    bars: tuple[Bar, ...]


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    plot_x: float
    plot_w: float
    plot_top: float
    plot_bottom: float
    ticks: tuple[tuple[float, str], ...]  # (x, label)
    groups: tuple[Group, ...]


def _x(value: float) -> float:
    return round(LABEL_W + (WIDTH - LABEL_W - RIGHT_PAD) * max(0.0, min(value, SCALE_MAX)) / SCALE_MAX, 1)


def grouped_bars(groups: list[tuple[str, float, float]], top: float = 54) -> Chart:
    """One group per label with a bar for subject a and one for subject b."""
    out = []
    y = top
    for label, va, vb in groups:
        bars = (
            Bar(LABEL_W, round(y, 1), round(_x(va) - LABEL_W, 1), BAR_H, _fmt(va), "a"),
            Bar(LABEL_W, round(y + BAR_H + 2, 1), round(_x(vb) - LABEL_W, 1), BAR_H, _fmt(vb), "b"),
        )
        out.append(Group(label, round(y + BAR_H + 5, 1), bars))
        y += 2 * BAR_H + 2 + GAP * 2
    bottom = round(y - GAP, 1)
    ticks = tuple((_x(t), str(t)) for t in range(0, SCALE_MAX + 1, 2))
    return Chart(WIDTH, int(bottom + 34), LABEL_W, _x(SCALE_MAX) - LABEL_W, top - 6, bottom, ticks, tuple(out))


def _fmt(value: float) -> str:
    return f"{value:.2f}" if value != int(value) else str(int(value))

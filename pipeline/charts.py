"""Chart geometry for the HTML report; the SVG itself is drawn by `templates/charts.html.j2`.

Horizontal bars on a fixed 0-10 scale. The SVG has no viewBox: it is as wide as the column it sits
in, horizontal positions are percentages of that width and vertical ones are pixels, so its text is
set by the page's stylesheet (the size of the page's small text) and never shrinks on a phone or
swells on a desktop. Each feature's name sits on its own line above its two bars, so long names
need no gutter; names longer than a line wrap. Numbers are rounded and formatted here, which keeps
the SVG byte-identical across renders.
"""

from __future__ import annotations

from dataclasses import dataclass

SCALE_MAX = 10
PLOT = 86.0  # percent of the width that the 0-10 scale spans; the rest holds the value labels
LINE = 18  # px per line of text (the stylesheet sets .85rem, 13.6 px by default)
BAR_H = 16
BAR_GAP = 3
GROUP_GAP = 12
LEGEND_H = 2 * LINE + 8
AXIS_H = 2 * LINE + 6
WRAP = 34  # characters per label line: about 240 px of small text, within a 320 px phone's column


@dataclass(frozen=True)
class Bar:
    y: int
    h: int
    pct: str  # the bar's length, in percent of the chart's width
    label_x: str  # where its value label starts, in percent
    value: str
    series: str  # "a" or "b"


@dataclass(frozen=True)
class Group:
    lines: tuple[tuple[str, int], ...]  # the label's lines and their baselines
    bars: tuple[Bar, ...]


@dataclass(frozen=True)
class Chart:
    height: int
    plot_top: int
    plot_bottom: int
    ticks: tuple[tuple[str, str, str], ...]  # (x in percent, label, text-anchor)
    groups: tuple[Group, ...]


def _pct(value: float) -> float:
    return PLOT * max(0.0, min(value, SCALE_MAX)) / SCALE_MAX


def _p(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".") + "%"


def wrap(label: str, width: int = WRAP) -> list[str]:
    """A label in lines of about `width` characters, at most two (the rest shortened with …)."""
    lines: list[str] = []
    for word in label.split():
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    if len(lines) > 2:
        lines = [lines[0], " ".join(lines[1:])]
    if len(lines[-1]) > width:
        lines[-1] = lines[-1][: width - 1].rstrip() + "…"
    return lines or [""]


def grouped_bars(groups: list[tuple[str, float, float]]) -> Chart:
    """One group per label: the label, then a bar for subject a and one for subject b."""
    out = []
    y = LEGEND_H + 4
    for label, va, vb in groups:
        lines = wrap(label)
        baselines = tuple((text, y + LINE * (i + 1) - 5) for i, text in enumerate(lines))
        y += LINE * len(lines) + 2
        bars = []
        for series, value in (("a", va), ("b", vb)):
            pct = _pct(value)
            bars.append(Bar(y, BAR_H, _p(pct), _p(pct + 1.2), _fmt(value), series))
            y += BAR_H + BAR_GAP
        out.append(Group(baselines, tuple(bars)))
        y += GROUP_GAP - BAR_GAP
    bottom = y - GROUP_GAP + 4
    ticks = tuple(
        (_p(_pct(t)), str(t), "start" if t == 0 else "middle") for t in range(0, SCALE_MAX + 1, 2)
    )  # fmt: skip
    return Chart(bottom + AXIS_H, LEGEND_H, bottom, ticks, tuple(out))


def _fmt(value: float) -> str:
    return f"{value:.2f}" if value != int(value) else str(int(value))

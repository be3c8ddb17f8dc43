"""Inline SVG charts of the report: a histogram with the threshold drawn, and a scatter of two scores.

Plain SVG markup (no script, no external reference): every text in it goes through
``html.escape``. Bars and points carry ``data-*`` attributes (counts, values) so a browser test can
read the chart back.

Example:
    >>> svg = histogram_svg("judge_score", [(1.0, 5.0, 3), (5.0, 10.0, 1)], threshold=9.0, higher=True)
    >>> svg.count('class="bar'), 'class="threshold"' in svg
    (2, True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

WIDTH, HEIGHT = 520, 220
LEFT, RIGHT, TOP, BOTTOM = 46, 14, 14, 42
#: Points a scatter draws at most (the first ones of the uniform sample).
MAX_POINTS = 2000


def label(value: float) -> str:
    """A tick label: 4 significant digits.

    Example:
        >>> label(0.123456), label(9.0), label(12345678.0)
        ('0.1235', '9', '1.235e+07')
    """
    return f"{value:.4g}"


def histogram_svg(column: str, bins: Sequence[tuple[float, float, int]], *, threshold: float | None = None,
                  higher: bool = True, links: Sequence[str] | None = None) -> str:
    """An SVG histogram of ``bins`` (``(low, high, count)``), each bar coloured by its side of
    ``threshold`` (``higher``: rows at least the threshold pass) and linked to ``links[i]``."""
    if not bins:
        return (f'<svg class="histogram empty" role="img" aria-label="{escape(column)}: no scored rows" '
                f'width="{WIDTH}" height="40" viewBox="0 0 {WIDTH} 40"><text x="{LEFT}" y="24">no scored rows</text></svg>')
    x0, x1 = bins[0][0], bins[-1][1]
    if not x1 > x0:
        x0, x1 = x0 - 0.5, x0 + 0.5
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = max(count for _, _, count in bins) or 1

    def x(value: float) -> float:
        return LEFT + (value - x0) / (x1 - x0) * plot_w

    parts = [f'<svg class="histogram" role="img" aria-label="{escape(column)} histogram" data-column="{escape(column)}" '
             f'width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}">',
             f'<line class="axis" x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" y2="{TOP + plot_h}"/>',
             f'<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}"/>',
             f'<text class="tick" x="{LEFT - 4}" y="{TOP + 4}" text-anchor="end">{top}</text>',
             f'<text class="tick" x="{LEFT - 4}" y="{TOP + plot_h}" text-anchor="end">0</text>']
    for index, (low, high, count) in enumerate(bins):
        left, right = x(low) if high > low else x0, x(high) if high > low else x1
        height = count / top * plot_h
        side = _side(low, high, threshold, higher)
        bar = (f'<rect class="bar {side}" data-low="{float(low)!r}" data-high="{float(high)!r}" data-count="{count}" '
               f'x="{left + 0.5:.2f}" y="{TOP + plot_h - height:.2f}" width="{max(right - left - 1.0, 0.5):.2f}" '
               f'height="{height:.2f}"><title>{escape(label(low))} to {escape(label(high))}: {count} rows</title></rect>')
        if links is not None:
            bar = f'<a href="#{escape(links[index])}">{bar}</a>'
        parts.append(bar)
    edges = [bins[0][0], *(high for _, high, _ in bins)]
    longest = max(len(label(edge)) for edge in edges)
    fits = max(2, int(plot_w // (6 * longest + 8)))  # labels that fit side by side at ~6 px a character
    step = max(1, math.ceil((len(edges) - 1) / (fits - 1)))
    for edge in edges[::step]:
        parts.append(f'<text class="tick" x="{x(edge) if x1 > x0 else LEFT:.2f}" y="{TOP + plot_h + 14}" '
                     f'text-anchor="middle">{escape(label(edge))}</text>')
    parts.append(f'<text class="axis-label" x="{LEFT + plot_w / 2:.2f}" y="{HEIGHT - 6}" text-anchor="middle">'
                 f'{escape(column)}</text>')
    if threshold is not None:
        inside = x0 <= threshold <= x1
        where = x(min(max(threshold, x0), x1))
        note = "" if inside else " (outside the observed range)"
        parts.append(f'<line class="threshold" data-threshold="{float(threshold)!r}" x1="{where:.2f}" y1="{TOP - 4}" '
                     f'x2="{where:.2f}" y2="{TOP + plot_h}"><title>threshold {escape(label(threshold))}{note}</title></line>')
        anchor = "start" if where < LEFT + plot_w / 2 else "end"
        shift = 4 if anchor == "start" else -4
        parts.append(f'<text class="threshold-label" x="{where + shift:.2f}" y="{TOP + 8}" text-anchor="{anchor}">'
                     f'{"&gt;=" if higher else "&lt;="} {escape(label(threshold))}{note}</text>')
    parts.append("</svg>")
    return "".join(parts)


def scatter_svg(xs: Sequence[float], ys: Sequence[float], kept: Sequence[bool], *, x_label: str, y_label: str,
                x_threshold: float | None = None, y_threshold: float | None = None) -> str:
    """An SVG scatter of the pairs ``(xs[i], ys[i])`` (at most :data:`MAX_POINTS`), kept rows in the
    kept colour, with each threshold drawn.

    Example:
        >>> svg = scatter_svg([1.0, 2.0, float("nan")], [0.1, 0.3, 0.2], [False, True, False],
        ...                   x_label="judge_score", y_label="clip_score", y_threshold=0.2)
        >>> svg.count("<circle"), svg.count('class="threshold"')
        (2, 1)
    """
    points = [(float(a), float(b), bool(k)) for a, b, k in zip(xs, ys, kept) if math.isfinite(a) and math.isfinite(b)]
    points = points[:MAX_POINTS]
    size = 360
    plot = size - LEFT - RIGHT
    parts = [f'<svg class="scatter" role="img" aria-label="{escape(x_label)} against {escape(y_label)}" '
             f'width="{size}" height="{size}" viewBox="0 0 {size} {size}" data-points="{len(points)}">']
    if not points:
        parts.append(f'<text x="{LEFT}" y="{size / 2}">no row has both scores</text></svg>')
        return "".join(parts)
    xr = _span([p[0] for p in points] + ([x_threshold] if x_threshold is not None else []))
    yr = _span([p[1] for p in points] + ([y_threshold] if y_threshold is not None else []))

    def px(value: float) -> float:
        return LEFT + (value - xr[0]) / (xr[1] - xr[0]) * plot

    def py(value: float) -> float:
        return TOP + plot - (value - yr[0]) / (yr[1] - yr[0]) * plot

    parts += [f'<line class="axis" x1="{LEFT}" y1="{TOP + plot}" x2="{LEFT + plot}" y2="{TOP + plot}"/>',
              f'<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot}"/>']
    for value, anchor in ((xr[0], "start"), (xr[1], "end")):
        parts.append(f'<text class="tick" x="{px(value):.2f}" y="{TOP + plot + 14}" text-anchor="{anchor}">'
                     f'{escape(label(value))}</text>')
    for value in yr:
        parts.append(f'<text class="tick" x="{LEFT - 4}" y="{py(value) + 4:.2f}" text-anchor="end">{escape(label(value))}</text>')
    parts.append(f'<text class="axis-label" x="{LEFT + plot / 2:.2f}" y="{size - 6}" text-anchor="middle">{escape(x_label)}</text>')
    parts.append(f'<text class="axis-label" transform="rotate(-90)" x="{-(TOP + plot / 2):.2f}" y="12" '
                 f'text-anchor="middle">{escape(y_label)}</text>')
    for a, b, k in points:
        parts.append(f'<circle class="point {"pass" if k else "fail"}" cx="{px(a):.1f}" cy="{py(b):.1f}" r="3"/>')
    if x_threshold is not None:
        parts.append(f'<line class="threshold" data-threshold="{float(x_threshold)!r}" x1="{px(x_threshold):.2f}" y1="{TOP}" '
                     f'x2="{px(x_threshold):.2f}" y2="{TOP + plot}"/>')
    if y_threshold is not None:
        parts.append(f'<line class="threshold" data-threshold="{float(y_threshold)!r}" x1="{LEFT}" y1="{py(y_threshold):.2f}" '
                     f'x2="{LEFT + plot}" y2="{py(y_threshold):.2f}"/>')
    parts.append("</svg>")
    return "".join(parts)


def _side(low: float, high: float, threshold: float | None, higher: bool) -> str:
    """``pass`` / ``fail`` / ``mixed`` for a bin ``[low, high)`` against ``threshold``."""
    if threshold is None:
        return "pass"
    if higher:
        return "pass" if low >= threshold else "fail" if high <= threshold else "mixed"
    return "pass" if high <= threshold else "fail" if low > threshold else "mixed"


def _span(values: Sequence[float]) -> tuple[float, float]:
    low, high = min(values), max(values)
    if high <= low:
        return low - 0.5, high + 0.5
    pad = (high - low) * 0.04
    return low - pad, high + pad

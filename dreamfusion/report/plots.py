"""Line plots as inline SVG, drawn here (no plotting library): the run page's loss curves.

    svg = line_plot_svg({"total": (steps, values), "sds": (steps, values)}, title="loss", smoothing=0.6)

Steps run along x from the first step (the left edge of the plot area) to the last (its right
edge). Values run along y, on a log scale when they span a decade or more and are all positive
(whole decades at the bottom and top edges), else on a linear scale between round numbers. Each
series is one ``<polyline class='curve' data-name=...>``, the first drawn last (on top of the
others; the legend lists them in order); non-finite values are left out. The plot
area is the ``<rect class='plot-area'>`` and each y grid line carries its value in ``data-value``,
so a reader (or a test) can map pixels back to data.
"""

from __future__ import annotations

import html
import itertools
import math
from dataclasses import dataclass

import numpy as np

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")
LEGEND_WIDTH = 170
MAX_POINTS = 600  # per polyline: about one per pixel column; longer series are averaged in buckets

Series = tuple[np.ndarray, np.ndarray]  # (steps Int[N], values Float[N])


@dataclass(frozen=True)
class Axes:
    """Maps data to SVG pixels. ``y_range`` is in display units: log10 of the value when ``log_y``."""

    left: float
    top: float
    right: float
    bottom: float
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    log_y: bool

    def x(self, step):
        x0, x1 = self.x_range
        return self.left + (np.asarray(step, dtype=np.float64) - x0) / (x1 - x0) * (self.right - self.left)

    def y(self, value):
        """Pixel row of a value given in data units."""
        return self.y_display(np.log10(value) if self.log_y else np.asarray(value, dtype=np.float64))

    def y_display(self, shown):
        y0, y1 = self.y_range
        return self.bottom - (np.asarray(shown, dtype=np.float64) - y0) / (y1 - y0) * (self.bottom - self.top)


def spans_decades(values: np.ndarray) -> bool:
    """Log scale pays off: all values positive and the largest at least 10x the smallest."""
    return values.size > 0 and bool(np.all(values > 0)) and values.max() >= 10 * values.min()


def smooth(shown: np.ndarray, weight: float) -> np.ndarray:
    """Exponential moving average with TensorBoard's debiasing (the first points are not pulled
    towards 0): ``weight`` 0 leaves the values as they are, 0.9 smooths hard."""
    if weight <= 0 or shown.size == 0:
        return shown
    # not scipy.signal.lfilter: importing it takes a second, far more than this (~3 ms per 10k points)
    average = itertools.accumulate(shown.tolist(), lambda acc, x: weight * acc + (1.0 - weight) * x, initial=0.0)
    average = np.fromiter(average, dtype=np.float64, count=shown.size + 1)[1:]
    return average / (1.0 - weight ** np.arange(1, shown.size + 1))


def downsample(steps: np.ndarray, shown: np.ndarray, max_points: int) -> Series:
    """At most ``max_points`` points: consecutive points averaged in equal-count buckets."""
    n = steps.size
    if n <= max_points:
        return steps.astype(np.float64), shown
    starts = np.linspace(0, n, max_points + 1).astype(np.int64)[:-1]
    counts = np.diff(np.append(starts, n))
    return np.add.reduceat(steps.astype(np.float64), starts) / counts, np.add.reduceat(shown, starts) / counts


def nice_step(span: float, count: int) -> float:
    """A round step (1, 2 or 5 x 10^k) giving about ``count`` intervals over ``span``."""
    raw = span / max(count, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def line_plot_svg(series: dict[str, Series], *, title: str = "", log_y: bool | None = None, smoothing: float = 0.0,
                  width: int = 640, height: int = 300, colors: dict[str, str] | None = None,
                  dashed: tuple[str, ...] = (), max_points: int = MAX_POINTS, y_label: str = "") -> str:
    """One SVG plot of ``series`` (name -> (steps, values)) with a legend of the last values.

    Args:
        log_y: log scale on y; ``None`` chooses it when the values span decades (:func:`spans_decades`).
        smoothing: weight of the moving average drawn (:func:`smooth`; in display units, i.e. on
            log10 of the values on a log scale); the legend shows the last raw value.
        colors: a colour per name; the others take :data:`PALETTE` in turn.
        dashed: names drawn dashed (a curve on top that often hides another one).
    Returns:
        ``<svg>...</svg>``, or ``""`` when no series has a finite value.
    """
    clean: dict[str, Series] = {}
    for name, (steps, values) in series.items():
        steps, values = np.asarray(steps), np.asarray(values, dtype=np.float64)
        keep = np.isfinite(values)
        if keep.any():
            clean[name] = (steps[keep], values[keep])
    if log_y is None:
        log_y = spans_decades(np.concatenate([v for _, v in clean.values()])) if clean else False
    if log_y:
        clean = {name: (s[v > 0], v[v > 0]) for name, (s, v) in clean.items() if np.any(v > 0)}
    if not clean:
        return ""
    axes, y_ticks = _fit_axes(clean, log_y, width, height, top=28 if title else 10)

    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' class='plot' width='{width}' height='{height}' "
             f"viewBox='0 0 {width} {height}' role='img' aria-label='{html.escape(title or 'plot')}' "
             f"font-family='sans-serif' font-size='11'>",
             f"<rect class='plot-area' x='{axes.left:g}' y='{axes.top:g}' width='{axes.right - axes.left:g}' "
             f"height='{axes.bottom - axes.top:g}' fill='#fff' stroke='#999'/>"]
    if title:
        parts.append(f"<text x='{axes.left:g}' y='18' font-size='13' font-weight='bold'>{html.escape(title)}</text>")
    for shown in y_ticks:
        value = 10.0 ** shown if log_y else shown
        y = float(axes.y_display(shown))
        parts.append(f"<line class='grid' data-value='{value:g}' x1='{axes.left:g}' x2='{axes.right:g}' "
                     f"y1='{y:.1f}' y2='{y:.1f}' stroke='#e4e4e4'/>"
                     f"<text x='{axes.left - 4:g}' y='{y + 4:.1f}' text-anchor='end'>{value:g}</text>")
    for step in _x_ticks(*axes.x_range):
        x = float(axes.x(step))
        parts.append(f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{axes.bottom:g}' y2='{axes.bottom + 4:g}' stroke='#999'/>"
                     f"<text x='{x:.1f}' y='{axes.bottom + 16:g}' text-anchor='middle'>{step:g}</text>")
    parts.append(f"<text x='{(axes.left + axes.right) / 2:g}' y='{height - 4}' text-anchor='middle'>step</text>")
    if y_label or log_y:
        label = y_label + (" (log scale)" if log_y else "")
        parts.append(f"<text transform='translate(12 {(axes.top + axes.bottom) / 2:g}) rotate(-90)' "
                     f"text-anchor='middle'>{html.escape(label.strip())}</text>")

    colors = dict(colors or {})
    free = iter(c for c in PALETTE * (1 + len(clean) // len(PALETTE)) if c not in colors.values())
    colors.update({name: next(free) for name in clean if name not in colors})
    curves, legend = [], []
    for index, (name, (steps, values)) in enumerate(clean.items()):
        dash = " stroke-dasharray='6 3'" if name in dashed else ""
        shown = smooth(np.log10(values) if log_y else values, smoothing)
        xs, ys = downsample(steps, shown, max_points)
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(axes.x(xs), axes.y_display(ys)))
        curves.append(f"<polyline class='curve' data-name='{html.escape(name)}' fill='none' stroke='{colors[name]}' "
                      f"stroke-width='1.5' stroke-linejoin='round'{dash} points='{points}'/>")
        legend_y = axes.top + 8 + 16 * index
        legend.append(f"<line x1='{axes.right + 12:g}' x2='{axes.right + 32:g}' y1='{legend_y:g}' y2='{legend_y:g}' "
                      f"stroke='{colors[name]}' stroke-width='2.5'{dash}/><text class='legend' x='{axes.right + 38:g}' "
                      f"y='{legend_y + 4:g}'>{html.escape(name)} {values[-1]:.4g}</text>")
    parts += [*reversed(curves), *legend, "</svg>"]
    return "".join(parts)


def _fit_axes(series: dict[str, Series], log_y: bool, width: int, height: int, top: float) -> tuple[Axes, list[float]]:
    """Axes spanning every step and value, and the y grid lines (display units)."""
    steps = np.concatenate([s for s, _ in series.values()])
    values = np.concatenate([v for _, v in series.values()])
    x0, x1 = float(steps.min()), float(steps.max())
    if x1 == x0:  # a single step: centred
        x0, x1 = x0 - 1, x1 + 1
    if log_y:
        y0, y1 = math.floor(math.log10(values.min())), math.ceil(math.log10(values.max()))
        y1 = max(y1, y0 + 1)
        every = math.ceil((y1 - y0) / 6)  # at most about 6 labelled decades
        ticks = [float(d) for d in range(y0, y1 + 1, every)]
    else:
        lo, hi = float(values.min()), float(values.max())
        if hi == lo:
            lo, hi = lo - max(abs(lo), 1.0) * 0.5, hi + max(abs(hi), 1.0) * 0.5
        step = nice_step(hi - lo, 5)
        y0, y1 = math.floor(lo / step) * step, math.ceil(hi / step) * step
        ticks = [y0 + k * step for k in range(round((y1 - y0) / step) + 1)]
    axes = Axes(left=56, top=top, right=width - LEGEND_WIDTH, bottom=height - 32,
                x_range=(x0, x1), y_range=(float(y0), float(y1)), log_y=log_y)
    return axes, ticks


def _x_ticks(x0: float, x1: float) -> list[float]:
    step = max(1.0, nice_step(x1 - x0, 6))  # steps are integers
    first = math.ceil(x0 / step) * step
    return [first + k * step for k in range(int((x1 - first) // step) + 1)]

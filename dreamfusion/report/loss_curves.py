"""The run page's "Loss" section: the training loss and each of its terms against the step, and
the learning rate below, as inline SVG from ``<workspace>/run/df/scalars.csv``.

    html = loss_section(read_scalars(workspace))   # "" before the first step

The trainer logs ``train/loss`` (the total: "total", dashed in black over the terms), ``train/<term>``
for each term and ``train/lr``. Other tags are not plotted.
"""

from __future__ import annotations

import html

from dreamfusion.report.plots import Series, line_plot_svg

TOTAL_TAG, LR_TAG, PREFIX = "train/loss", "train/lr", "train/"
SMOOTHING = 0.6  # light: SDS losses are noisy from step to step; the legend keeps the raw last value


def loss_series(scalars: dict[str, Series]) -> dict[str, Series]:
    """The curves of the loss plot: "total" first, then each term in the order the run logged them."""
    curves = {"total": scalars[TOTAL_TAG]} if TOTAL_TAG in scalars else {}
    for tag, series in scalars.items():
        if tag.startswith(PREFIX) and tag not in (TOTAL_TAG, LR_TAG):
            curves[tag[len(PREFIX):]] = series
    return curves


def loss_section(scalars: dict[str, Series], data_href: str = "run/df/scalars.csv") -> str:
    """The section's HTML (plots and a line saying how they are drawn, linking the data at
    ``data_href``), ``""`` with nothing to plot."""
    loss = line_plot_svg(loss_series(scalars), title="loss", smoothing=SMOOTHING, colors={"total": "#222"},
                         dashed=("total",))
    if not loss:
        return ""
    parts = [loss]
    if LR_TAG in scalars:
        parts.append(line_plot_svg({"lr": scalars[LR_TAG]}, title="learning rate", height=150,
                                   colors={"lr": "#555"}))
    parts.append(f"<p class='note'>Exponential moving average (weight {SMOOTHING}) of each logged value; the "
                 f"legend gives the last value as logged. Data: <a href='{html.escape(data_href)}'>"
                 f"{html.escape(data_href)}</a>.</p>")
    return "<div class='plots'>" + "".join(parts) + "</div>"

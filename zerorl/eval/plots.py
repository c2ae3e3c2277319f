"""The plots of a training report, drawn the way the ORZ paper shows a run.

Every function takes plain series (``Series``: steps and values) and returns a matplotlib Figure
of FIGSIZE at DPI, so a saved PNG is always WIDTH x HEIGHT pixels. Step moments are drawn as
dashed vertical lines on the training curves. Figures are built without pyplot (no global
state, nothing to close) and drawn with the Agg backend: no display is needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display; figures are only ever written to PNG
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

FIGSIZE = (8.0, 4.0)
DPI = 100
WIDTH, HEIGHT = int(FIGSIZE[0] * DPI), int(FIGSIZE[1] * DPI)
MOMENT_COLOR = "tab:red"
BAR_STEPS = 60


@dataclass
class Series:
    """One curve: ``values[i]`` at ``steps[i]`` (NaN where undefined)."""

    label: str
    steps: list[int]
    values: list[float]


def smooth(values: Sequence[float], window: int) -> list[float]:
    """Trailing moving average over the finite values of the last ``window`` points (NaN when
    there are none)."""
    out = []
    for i in range(len(values)):
        recent = [v for v in values[max(0, i - window + 1) : i + 1] if v == v]
        out.append(sum(recent) / len(recent) if recent else float("nan"))
    return out


def _figure(title: str, ylabel: str) -> tuple[Figure, Axes]:
    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
    return fig, ax


def _curves(ax: Axes, series: Sequence[Series]) -> None:
    """Raw curve thin; a moving average on top once there are enough points to need one."""
    for s in series:
        window = max(1, len(s.values) // 20)
        if window > 1:
            line = ax.plot(s.steps, s.values, alpha=0.3, linewidth=1)[0]
            ax.plot(s.steps, smooth(s.values, window), color=line.get_color(), label=s.label)
        else:
            ax.plot(s.steps, s.values, marker="o", markersize=3, label=s.label)


def _moments(ax: Axes, moments: Sequence[int]) -> None:
    for i, step in enumerate(moments):
        label = "step moment" if i == 0 else None
        ax.axvline(step, color=MOMENT_COLOR, linestyle="--", linewidth=1.2, label=label)


def _finish(fig: Figure, ax: Axes, outside: bool = False) -> Figure:
    """Legend (beside the axes when ``outside``, for plots that fill their area) and layout."""
    if ax.get_legend_handles_labels()[0]:
        if outside:
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
        else:
            ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig


def empty_figure(title: str, message: str) -> Figure:
    """A figure that says why there is nothing to plot."""
    fig, ax = _figure(title, "")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel("")
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes)
    return _finish(fig, ax)


def curve_figure(
    title: str,
    ylabel: str,
    series: Sequence[Series],
    moments: Sequence[int] = (),
    empty: str = "no data",
) -> Figure:
    """Training curves (reward, response length, reflection length) with the step moments.

    Series without a single finite value are left out; with none left the figure says ``empty``.
    """
    series = [s for s in series if any(v == v for v in s.values)]
    if not series:
        return empty_figure(title, empty)
    fig, ax = _figure(title, ylabel)
    _curves(ax, series)
    _moments(ax, moments)
    return _finish(fig, ax)


def eval_figure(series: Sequence[Series], moments: Sequence[int] = ()) -> Figure:
    """Evaluation accuracies (percent) per benchmark, one marked line each; step moments too."""
    title = "evaluation accuracy"
    if not series:
        return empty_figure(title, "no evaluation in this run (eval.benchmarks is empty)")
    fig, ax = _figure(title, "accuracy (%)")
    for s in series:
        ax.plot(s.steps, [100 * v for v in s.values], marker="o", markersize=4, label=s.label)
    highest = max((100 * v for s in series for v in s.values if v == v), default=0.0)
    ax.set_ylim(0, max(1.0, 1.1 * highest))  # accuracy starts at 0, even when all are 0
    _moments(ax, moments)
    return _finish(fig, ax)


def time_figure(stages: Sequence[Series]) -> Figure:
    """Seconds per stage of each step, stacked: one bar per step, or areas past BAR_STEPS
    steps (bars that thin would hide each other)."""
    title = "seconds per stage"
    if not stages:
        return empty_figure(title, "no time/* metrics")
    fig, ax = _figure(title, "seconds")
    # Stages may be logged at some steps only (time/eval): 0 where a stage did not run.
    steps = sorted({step for s in stages for step in s.steps})
    by_step = [dict(zip(s.steps, s.values, strict=True)) for s in stages]
    heights = [[v if (v := d.get(step, 0.0)) == v else 0.0 for step in steps] for d in by_step]
    labels = [s.label for s in stages]
    if len(steps) > BAR_STEPS:
        ax.stackplot(steps, heights, labels=labels)
        return _finish(fig, ax, outside=True)
    bottom = [0.0] * len(steps)
    gaps = [b - a for a, b in pairwise(steps)]
    width = 0.8 * min(gaps, default=1)
    for label, values in zip(labels, heights, strict=True):
        ax.bar(steps, values, width=width, bottom=bottom, label=label)
        bottom = [b + h for b, h in zip(bottom, values, strict=True)]
    return _finish(fig, ax, outside=True)


@dataclass
class Band:
    """One arm's curve over seeds: the mean and the half-width of its 95% interval per step."""

    label: str
    steps: list[int]
    mean: list[float]
    half: list[float]


def band_figure(title: str, ylabel: str, bands: Sequence[Band], scale: float = 1.0) -> Figure:
    """Arms side by side: each mean a line, its 95% interval over seeds a shaded band; values
    multiplied by ``scale`` (100 for accuracies in percent)."""
    bands = [b for b in bands if b.steps]
    if not bands:
        return empty_figure(title, "no data")
    fig, ax = _figure(title, ylabel)
    for b in bands:
        mean = [scale * m for m in b.mean]
        low = [m - scale * h for m, h in zip(mean, b.half)]
        high = [m + scale * h for m, h in zip(mean, b.half)]
        line = ax.plot(b.steps, mean, marker="o" if len(b.steps) < 12 else None, markersize=3,
                       label=b.label)[0]  # fmt: skip
        ax.fill_between(b.steps, low, high, color=line.get_color(), alpha=0.15, linewidth=0)
    return _finish(fig, ax)


def save_png(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as a PNG of exactly WIDTH x HEIGHT pixels."""
    fig.savefig(path, format="png", dpi=DPI)
    return path

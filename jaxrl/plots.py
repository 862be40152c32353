"""Learning curves from a run's `metrics.jsonl`, drawn to PNG on the host.

Uses matplotlib's Agg canvas directly (not pyplot), so it needs no display and
leaves the process's global matplotlib state alone.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from jaxrl.files import read_jsonl

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["curves_figure", "plot_curves", "read_curves"]

DEFAULT_METRIC = "eval/return_mean"
FALLBACK_METRIC = "train/episode_return"

Curves = dict[int, tuple[np.ndarray, np.ndarray]]


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_curves(metrics_path: str | os.PathLike, metric: str = DEFAULT_METRIC) -> tuple[str, str, Curves]:
    """Reads one metric per member (or seed) from a metrics.jsonl.

    Returns (metric, group_key, curves): the metric actually read (the default,
    "eval/return_mean", falls back to "train/episode_return" in a run that
    never evaluated; another metric is read as named), "member" or "seed" (by
    what the lines are grouped: "member" when any line has it), and for each
    group id the arrays (steps [N], values [N]) sorted by step. Lines without a
    finite value of the metric are skipped; when a step was logged twice (a
    resumed run), the later line wins.
    """
    path = Path(metrics_path)
    records = read_jsonl(path)
    if not any(_is_number(r.get(metric)) for r in records):
        if any(metric in r for r in records):
            raise ValueError(f"{path}: every value of {metric!r} is NaN or infinite (the run diverged): no curve to draw")
        # only the default falls back: a misspelt metric would otherwise be plotted as another, unsaid
        if metric == DEFAULT_METRIC and any(_is_number(r.get(FALLBACK_METRIC)) for r in records):
            metric = FALLBACK_METRIC
        else:
            keys = sorted({k for r in records for k, v in r.items() if _is_number(v)} - {"step", "seed", "member"})
            tried = f"{metric!r} (nor {FALLBACK_METRIC!r})" if metric == DEFAULT_METRIC else repr(metric)
            raise ValueError(f"{path}: no values of {tried}; numeric keys: {keys}")
    group_key = "member" if any("member" in r for r in records) else "seed"
    by_group: dict[int, dict[float, float]] = defaultdict(dict)
    for r in records:
        value, step = r.get(metric), r.get("step")
        if _is_number(value) and _is_number(step):
            by_group[int(r.get(group_key, 0))][float(step)] = float(value)
    curves = {}
    for group in sorted(by_group):
        steps = np.array(sorted(by_group[group]), dtype=np.float64)
        curves[group] = (steps, np.array([by_group[group][s] for s in steps], dtype=np.float64))
    return metric, group_key, curves


def _aggregate(curves: Curves) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean, min and max across groups: (grid [M], mean [M], low [M], high [M]).

    Members rarely log at exactly the same steps (different num_envs, a seed
    that was resumed or stopped early), so each is linearly interpolated onto
    the union of their steps, only inside its own logged range (no member is
    extrapolated). The grid is cut to the steps every member covers, because a
    mean over a changing set of members jumps where one starts or stops; only
    when no step is covered by all does it fall back to whichever are present.
    """
    grid = np.unique(np.concatenate([steps for steps, _ in curves.values()]))
    table = np.full((len(curves), grid.size), np.nan)
    for i, (steps, values) in enumerate(curves.values()):
        inside = (grid >= steps[0]) & (grid <= steps[-1])
        table[i, inside] = np.interp(grid[inside], steps, values)
    keep = ~np.isnan(table).any(axis=0)
    if not keep.any():
        keep = ~np.isnan(table).all(axis=0)
    table = table[:, keep]
    return grid[keep], np.nanmean(table, axis=0), np.nanmin(table, axis=0), np.nanmax(table, axis=0)


def _marker(steps: np.ndarray) -> str | None:
    """A dot for a series of one point [1], which a line alone would not draw
    (a short run evaluates once, at its end); None (a plain line) otherwise."""
    return "o" if steps.size == 1 else None


def plot_curves(
    metrics_path: str | os.PathLike,
    out_path: str | os.PathLike,
    metric: str = DEFAULT_METRIC,
    *,
    groups: Mapping[int, str] | None = None,
    title: str | None = None,
    figsize: tuple[float, float] = (8.0, 5.0),
    dpi: int = 100,
) -> Path:
    """Draws `metric` against env steps to a PNG (`curves_figure`) and returns its path.

    Writes figsize * dpi pixels (800x500 by default) to `out_path`, parent
    folders created. Raises ValueError when the file holds neither metric.
    """
    fig = curves_figure(metrics_path, metric, groups=groups, title=title, figsize=figsize, dpi=dpi)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out


def curves_figure(
    metrics_path: str | os.PathLike,
    metric: str = DEFAULT_METRIC,
    *,
    groups: Mapping[int, str] | None = None,
    title: str | None = None,
    figsize: tuple[float, float] = (8.0, 5.0),
    dpi: int = 100,
) -> Figure:
    """`metric` against env steps: a thin line per member (or seed), their mean in bold, a min-max band.

    The mean and band cover the steps all members reached (see `_aggregate`);
    each member's thin line shows all of its points.

    metrics_path: a metrics.jsonl, one JSON object per line with "step" (env
        steps), "seed", optionally "member", and metric keys.
    metric: the default falls back to "train/episode_return" in a run that
        never evaluated; another metric must be in the file.
    groups: a label per member, such as a sweep member's setting ("lr=0.001").
        With 2 to 10 labels, each label's members get one colour and a mean and
        band of their own, so that settings are compared, not pooled; with more,
        or with one, a single mean over every member.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    metric, group_key, curves = read_curves(metrics_path, metric)
    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)

    # the labels in the order of their first member
    labels = list(dict.fromkeys(groups[m] for m in sorted(curves))) if groups and set(curves) <= set(groups) else []
    if 2 <= len(labels) <= 10:
        for i, label in enumerate(labels):
            members = {m: curve for m, curve in curves.items() if groups[m] == label}
            _draw_mean(ax, members, f"C{i}", f"{label} ({_count(len(members), group_key)})", thin=True)
    else:
        # Up to ten members get their own colour and legend entry; more would make
        # an unreadable legend, so they share one grey entry. Blue is kept for the
        # mean and band.
        few = len(curves) <= 10
        for i, (group, (steps, values)) in enumerate(curves.items()):
            if few:
                color, label = f"C{(i + 1) % 10}", f"{group_key} {group}"
            else:
                color, label = "tab:gray", (f"each {group_key} ({len(curves)})" if i == 0 else None)
            ax.plot(steps, values, color=color, linewidth=0.9, alpha=0.7, label=label, marker=_marker(steps))
        _draw_mean(ax, curves, "tab:blue", f"mean over {_count(len(curves), group_key)}", band_label="min-max")

    ax.set_xlabel("environment steps")
    ax.set_ylabel(metric)
    run_name = Path(metrics_path).parent.name or Path(metrics_path).name
    ax.set_title(title if title is not None else f"{metric} — {run_name}")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    return fig


def _count(n: int, noun: str) -> str:
    """"1 member", "2 members": a legend's count."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _draw_mean(ax: Any, curves: Curves, color: str, label: str, band_label: str | None = None, thin: bool = False) -> None:
    """The mean of `curves` in bold over their min-max band, all in `color`;
    with `thin`, each curve's own thin line too, unlabelled."""
    if thin:
        for steps, values in curves.values():
            ax.plot(steps, values, color=color, linewidth=0.7, alpha=0.35, marker=_marker(steps))
    grid, mean, low, high = _aggregate(curves)
    if len(curves) > 1:
        ax.fill_between(grid, low, high, color=color, alpha=0.15, linewidth=0, label=band_label)
    ax.plot(grid, mean, color=color, linewidth=2.5, label=label, marker=_marker(grid))

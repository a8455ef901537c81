"""PNG line plots for the demo report (inference-scaling curves) and training curves.

Uses matplotlib's object API (Figure + FigureCanvasAgg) rather than pyplot: no global backend switch, no figure
registry that leaks memory in long runs, and safe to call from any thread or from a process that uses pyplot itself.
Figures are FIGSIZE inches at DPI, i.e. exactly 640 x 400 pixels.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

FIGSIZE = (6.4, 4.0)
DPI = 100


def _present(v) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def _points(name: str, xs: Sequence, ys: Sequence) -> tuple[list[float], list[float]]:
    """(x, y) pairs of one curve with missing (None/NaN) values skipped; lengths must match."""
    if len(xs) != len(ys):
        raise ValueError(f"curve {name!r}: {len(ys)} y values for {len(xs)} x values")
    pairs = [(float(x), float(y)) for x, y in zip(xs, ys) if _present(x) and _present(y)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _new_axes(title: str, xlabel: str, ylabel: str):
    fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _save(fig: Figure, ax, path: str | os.PathLike, has_lines: bool) -> str:
    if has_lines:
        ax.legend()
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, format="png")
    return path


def plot_curves(
    path: str | os.PathLike,
    x: Sequence[float],
    curves: Mapping[str, Sequence[float | None]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    log2_x: bool = False,
    ylim: tuple[float, float] | None = None,
) -> str:
    """One line with markers per curve over shared `x` (e.g. pass@k vs k); None/NaN points are skipped.

    With `log2_x` the x axis is log base 2 with ticks exactly at `x`, labelled as plain integers (1, 2, 4, ..., 1024).
    Returns the path of the PNG written.
    """
    data = {name: _points(name, x, ys) for name, ys in curves.items()}
    fig, ax = _new_axes(title, xlabel, ylabel)
    for name, (xs, ys) in data.items():
        ax.plot(xs, ys, marker="o", label=name)
    if log2_x:
        if any(v <= 0 for v in x):
            raise ValueError(f"log2_x needs positive x values, got {list(x)}")
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_locator(FixedLocator([float(v) for v in x]))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: str(int(v)) if float(v).is_integer() else f"{v:g}"))
        ax.xaxis.set_minor_locator(NullLocator())
    if ylim is not None:
        ax.set_ylim(*ylim)
    return _save(fig, ax, path, bool(data))


def plot_series(
    path: str | os.PathLike,
    series: Mapping[str, tuple[Sequence[float], Sequence[float | None]]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
) -> str:
    """One line per series, each with its own x values (e.g. reward vs step for several runs); returns the path."""
    data = {name: _points(name, xs, ys) for name, (xs, ys) in series.items()}
    fig, ax = _new_axes(title, xlabel, ylabel)
    for name, (xs, ys) in data.items():
        ax.plot(xs, ys, marker=".", markersize=3, label=name)  # a lone point still shows
    return _save(fig, ax, path, bool(data))

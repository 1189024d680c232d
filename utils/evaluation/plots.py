"""Plots shared by the evaluation modules: mean curves with confidence bands, saved as PNG.

The one place that chooses the matplotlib backend (Agg: no display needed); every module that
draws imports ``plt`` from here.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (backend chosen first: no display needed)
import numpy as np  # noqa: E402
from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter  # noqa: E402

from improved_diffusion.file_io import atomic_write, check_free  # noqa: E402


def curve_label(name: str, n: int, estimator: str) -> str:
    """Legend entry of an estimated curve: which set, from how many fields, by which estimator."""
    return f"{name} (n={n}, {estimator})"


def plot_mean_curves(curves: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], path: str | Path, *,
                     xlabel: str, ylabel: str, title: str = "", log_x: bool = False, log_y: bool = False,
                     overwrite: bool = False) -> Path:
    """Save a PNG of ``{label: (x, mean, standard_error)}`` curves with 95 % bands (mean ± 1.96 SE)."""
    path = Path(path)
    check_free([path], overwrite, key="path")
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, (x, mean, se) in curves.items():
        line, = ax.plot(x, mean, label=label)
        se = np.nan_to_num(se)
        ax.fill_between(x, mean - 1.96 * se, mean + 1.96 * se, color=line.get_color(), alpha=0.25)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if log_x:  # labels at 1, 2, 5 x 10^k only, in plain numbers (minor labels of a short decade overlap)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
    if log_y:
        ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path, dpi=120)
    return path


def save_figure(fig, path: str | Path, dpi: int = 120) -> None:
    """Write `fig` to `path` atomically (format from the suffix, PNG without one) and close it."""
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format=path.suffix[1:] or "png", dpi=dpi))
    plt.close(fig)

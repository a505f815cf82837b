"""PNG figures shared across the package (prediction, evaluation, training, ensemble analysis).

Every function draws one figure with matplotlib's headless ``Agg`` backend, writes it atomically
(a temporary file in the target directory, then ``os.replace``) so that a crash never leaves a
truncated PNG behind, closes the figure, and returns the path written.

Residue indices on the x-axes are 1-based positions in the arrays given (not PDB residue numbers)
unless ``residue_numbers`` is passed.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import matplotlib

# Headless: figures are only ever written to files (no display on servers / in CI).
matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (backend must be chosen first)
import numpy as np  # noqa: E402

from simplefold.utils.files import atomic_open  # noqa: E402

logger = logging.getLogger(__name__)

__all__ = [
    "plot_plddt",
    "plot_lddt_per_residue",
    "plot_histogram",
    "plot_rmsd_heatmap",
    "plot_rmsf",
    "plot_loss_curves",
]

_DPI = 120

# AlphaFold-style pLDDT confidence bands: (lower bound, upper bound, colour, label).
_PLDDT_BANDS = (
    (90.0, 100.0, "#0053d6", "very high (>90)"),
    (70.0, 90.0, "#65cbf3", "confident (70-90)"),
    (50.0, 70.0, "#ffdb13", "low (50-70)"),
    (0.0, 50.0, "#ff7d45", "very low (<50)"),
)


@contextlib.contextmanager
def _figure(path: str | os.PathLike, figsize: tuple[float, float]) -> Iterator[tuple[plt.Figure, plt.Axes]]:
    """A new figure that is written as PNG to ``path`` atomically when the block ends without error,
    and closed in every case (no figure leaks when drawing fails)."""
    fig, ax = plt.subplots(figsize=figsize)
    try:
        yield fig, ax
        with atomic_open(path, "wb") as fh:
            fig.savefig(fh, format="png", dpi=_DPI, bbox_inches="tight")
    finally:
        plt.close(fig)
    logger.debug("wrote %s", path)


def _as_1d(values, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr


def _residue_axis(n: int, residue_numbers: Sequence[int] | None) -> np.ndarray:
    if residue_numbers is None:
        return np.arange(1, n + 1)
    x = np.asarray(residue_numbers)
    if x.shape != (n,):
        raise ValueError(f"residue_numbers has shape {x.shape}, expected ({n},)")
    return x


def plot_plddt(
    per_sample_plddt: Sequence[np.ndarray],
    path: str | os.PathLike,
    title: str = "",
    residue_numbers: Sequence[int] | None = None,
) -> Path:
    """Per-residue pLDDT of one or more samples of the same target.

    Args:
      per_sample_plddt: list of ``(L,)`` arrays, pLDDT in [0, 100]; if every value is <= 1 the input
        is taken as fractions and scaled by 100.
      path: output PNG path.
      title: figure title (e.g. the target name).
      residue_numbers: optional ``(L,)`` x-axis labels (defaults to 1..L).
    """
    curves = [_as_1d(p, "pLDDT") for p in per_sample_plddt]
    if not curves:
        raise ValueError("plot_plddt needs at least one sample")
    lengths = {c.shape[0] for c in curves}
    if len(lengths) != 1:
        raise ValueError(f"pLDDT samples have different lengths {sorted(lengths)}")
    if all(np.nanmax(c, initial=0.0) <= 1.0 for c in curves):
        curves = [100.0 * c for c in curves]  # fractions -> percent
    x = _residue_axis(curves[0].shape[0], residue_numbers)
    with _figure(path, (8, 3.5)) as (fig, ax):
        for lo, hi, colour, label in _PLDDT_BANDS:
            ax.axhspan(lo, hi, color=colour, alpha=0.15, lw=0, label=label)
        for i, c in enumerate(curves):
            ax.plot(x, c, lw=1.2, label=f"sample {i}" if len(curves) <= 10 else None)
        ax.set_ylim(0, 100)
        ax.set_xlabel("residue")
        ax.set_ylabel("pLDDT")
        ax.set_title(title)
        ax.legend(loc="lower left", fontsize=7, ncol=2, framealpha=0.8)
    return Path(path)


def plot_lddt_per_residue(
    values: np.ndarray,
    path: str | os.PathLike,
    title: str = "",
    residue_numbers: Sequence[int] | None = None,
) -> Path:
    """Per-residue lDDT of a prediction against its reference.

    Args:
      values: ``(L,)`` lDDT in [0, 1]; NaN for residues without a score (drawn as gaps).
      path: output PNG path.
      title: figure title.
      residue_numbers: optional ``(L,)`` x-axis labels.
    """
    v = _as_1d(values, "lDDT")
    x = _residue_axis(v.shape[0], residue_numbers)
    with _figure(path, (8, 3.2)) as (fig, ax):
        ax.plot(x, v, lw=1.2, color="#1f77b4")
        ax.fill_between(x, 0, v, where=np.isfinite(v), alpha=0.25, color="#1f77b4", lw=0)
        if np.isfinite(v).any():
            mean = float(np.nanmean(v))
            ax.axhline(mean, ls="--", lw=0.8, color="k", label=f"mean over residues {mean:.3f}")
            ax.legend(loc="lower left", fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_xlabel("residue")
        ax.set_ylabel("lDDT")
        ax.set_title(title)
    return Path(path)


def plot_histogram(
    values: Sequence[float],
    path: str | os.PathLike,
    xlabel: str = "",
    title: str = "",
    bins: int | Sequence[float] = 20,
    value_range: tuple[float, float] | None = None,
) -> Path:
    """Histogram of a per-target (or per-sample) score, with its mean and median marked.

    Args:
      values: 1-D values; NaNs are dropped.
      path: output PNG path.
      xlabel: axis label (e.g. ``"TM-score"``).
      title: figure title (the count n is appended).
      bins: number of bins or bin edges (as ``numpy.histogram``).
      value_range: ``(lo, hi)`` range of the bins and x-axis (e.g. ``(0, 1)`` for scores); default the data range.
    """
    v = _as_1d(values, "values")
    v = v[np.isfinite(v)]
    with _figure(path, (5, 3.5)) as (fig, ax):
        if v.size:
            ax.hist(v, bins=bins, range=value_range, color="#4c72b0", edgecolor="white")
            ax.axvline(float(np.mean(v)), color="k", ls="--", lw=1, label=f"mean {np.mean(v):.3f}")
            ax.axvline(float(np.median(v)), color="#c44e52", ls=":", lw=1, label=f"median {np.median(v):.3f}")
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
        if value_range is not None:
            ax.set_xlim(*value_range)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("count")
        ax.set_title(f"{title} (n={v.size})" if title else f"n={v.size}")
    return Path(path)


def plot_rmsd_heatmap(
    matrix: np.ndarray,
    path: str | os.PathLike,
    labels: Sequence[str] | None = None,
    title: str = "pairwise CA RMSD",
) -> Path:
    """Heat-map of a ``(K, K)`` pairwise RMSD matrix in Å.

    Args:
      matrix: ``(K, K)`` symmetric RMSD matrix (Å).
      path: output PNG path.
      labels: optional ``K`` tick labels (shown when K <= 40).
      title: figure title.
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"RMSD matrix must be square, got shape {m.shape}")
    k = m.shape[0]
    if labels is not None and len(labels) != k:
        raise ValueError(f"{len(labels)} labels for a {k}x{k} matrix")
    side = min(12.0, max(4.0, 0.25 * k + 3))
    with _figure(path, (side + 1.2, side)) as (fig, ax):
        im = ax.imshow(m, cmap="viridis", origin="upper", interpolation="nearest")
        fig.colorbar(im, ax=ax, label="RMSD (Å)", shrink=0.8)
        if labels is not None and k <= 40:
            ax.set_xticks(range(k), labels, rotation=90, fontsize=6)
            ax.set_yticks(range(k), labels, fontsize=6)
        else:
            ax.set_xlabel("member")
            ax.set_ylabel("member")
        ax.set_title(title)
    return Path(path)


def plot_rmsf(
    rmsf: np.ndarray,
    path: str | os.PathLike,
    title: str = "CA RMSF",
    residue_numbers: Sequence[int] | None = None,
) -> Path:
    """Per-residue CA root-mean-square fluctuation (Å).

    Args:
      rmsf: ``(L,)`` RMSF in Å.
      path: output PNG path.
      title: figure title.
      residue_numbers: optional ``(L,)`` x-axis labels.
    """
    r = _as_1d(rmsf, "RMSF")
    x = _residue_axis(r.shape[0], residue_numbers)
    with _figure(path, (8, 3.2)) as (fig, ax):
        ax.plot(x, r, lw=1.2, color="#55a868")
        ax.fill_between(x, 0, r, alpha=0.25, color="#55a868", lw=0)
        ax.set_ylim(bottom=0)
        ax.set_xlabel("residue")
        ax.set_ylabel("RMSF (Å)")
        ax.set_title(title)
    return Path(path)


def plot_loss_curves(
    steps: Sequence[float],
    curves: Mapping[str, Sequence[float]],
    path: str | os.PathLike,
    title: str = "training",
    log_y: bool = False,
) -> Path:
    """Training curves: one line per named series against the step.

    Args:
      steps: ``(T,)`` step numbers shared by all series.
      curves: name -> ``(T,)`` values (NaN where a series was not logged).
      path: output PNG path.
      title: figure title.
      log_y: logarithmic y-axis (ignored unless every finite value is positive).
    """
    x = _as_1d(steps, "steps")
    series = {}
    for name, values in curves.items():
        y = _as_1d(values, f"curve {name!r}")
        if y.shape != x.shape:
            raise ValueError(f"curve {name!r} has {y.shape[0]} values for {x.shape[0]} steps")
        series[name] = y
    finite = [y[np.isfinite(y)] for y in series.values()]
    all_positive = all(np.all(f > 0) for f in finite)
    with _figure(path, (7, 4)) as (fig, ax):
        for name, y in series.items():
            ok = np.isfinite(y)
            ax.plot(x[ok], y[ok], lw=1.2, label=name)
        if log_y and all_positive:
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("value")
        ax.set_title(title)
        if series:
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return Path(path)

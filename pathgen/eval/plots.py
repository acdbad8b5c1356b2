"""Matplotlib (Agg) figures for the evaluation reports, written as PNG files.

Example::

    histogram([0.2, 0.3], "CLIP score", "describe", out / "clip.png")
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np


def _pyplot():  # noqa: ANN202 - matplotlib.pyplot module
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def histogram(
    values: Sequence[float], xlabel: str, title: str, path: str | os.PathLike[str], bins: int = 20
) -> Path:
    """A histogram of ``values`` (an empty one says "no data")."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    if len(values):
        ax.hist(values, bins=bins, color="#4c72b0", edgecolor="white")
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("captions")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, format="png")
    plt.close(fig)
    return out


def grouped_bars(
    series: Mapping[str, Mapping[str, float | None]],
    ylabel: str,
    title: str,
    path: str | os.PathLike[str],
    notes: Mapping[str, Mapping[str, str]] | None = None,
) -> Path:
    """Bars per category (x) for each series (legend), annotated with ``notes[series][cat]``.

    ``None`` values are drawn as an empty bar labelled "n/a".
    """
    plt = _pyplot()
    categories = sorted({c for values in series.values() for c in values})
    fig, ax = plt.subplots(figsize=(6, 3.4), dpi=100)
    width = 0.8 / max(1, len(series))
    x = np.arange(len(categories))
    for i, (name, values) in enumerate(sorted(series.items())):
        heights = [values.get(c) or 0.0 for c in categories]
        xs = x + i * width - 0.4 + width / 2
        ax.bar(xs, heights, width, label=name)
        for xi, cat, h in zip(xs, categories, heights, strict=True):
            note = (notes or {}).get(name, {}).get(cat)
            text = "n/a" if values.get(cat) is None else note
            if text:
                ax.text(xi, h + 0.01, text, ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x, categories)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    if series:
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, format="png")
    plt.close(fig)
    return out


def confusion_matrix_plot(
    matrix: Sequence[Sequence[int]],
    classes: Sequence[str],
    title: str,
    path: str | os.PathLike[str],
) -> Path:
    """A labelled confusion matrix (rows: true class, columns: predicted class)."""
    plt = _pyplot()
    cm = np.asarray(matrix)
    side = 2.5 + 0.5 * len(classes)
    fig, ax = plt.subplots(figsize=(side, side), dpi=100)
    ax.imshow(cm, cmap="Blues")
    ticks = np.arange(len(classes))
    ax.set_xticks(ticks, classes, rotation=45, ha="right")
    ax.set_yticks(ticks, classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    top = cm.max() if cm.size else 0
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            colour = "white" if top and cm[i, j] > top / 2 else "black"
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", color=colour)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, format="png")
    plt.close(fig)
    return out

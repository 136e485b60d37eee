"""Figure of a model's training curves, from the per-epoch history of its model card:
one panel per quantity, training and validation together, the epoch of the kept
weights (lowest validation loss) marked.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from bids_eeg2fmri.reports.figures.common import _finite, _new_figure, _save


def plot_training_history(history: Mapping[str, Sequence[float]], *, path: Path) -> Path:
    """Training curves: one panel per quantity, training and validation (``val_``) together.

    The y axis is logarithmic when a panel's positive values span more than a factor 30;
    a dotted line marks the epoch of the lowest ``val_loss`` (the kept weights, with early
    stopping).

    Parameters
    ----------
    history : mapping of str to sequence of float
        Per-epoch values, as Keras' ``History.history``.
    path : Path
        Figure file.
    """
    curves = {
        str(k): np.asarray(v, dtype=float)
        for k, v in history.items()
        if isinstance(v, Sequence) and not isinstance(v, str) and len(v) > 0
    }
    if not curves:
        raise ValueError("the training history holds no per-epoch values")
    names = list(dict.fromkeys(k.removeprefix("val_") for k in curves))
    names = (["loss"] if "loss" in names else []) + sorted(n for n in names if n != "loss")
    names = names[:9]
    best = None
    if "val_loss" in curves and np.isfinite(curves["val_loss"]).any():
        best = int(np.nanargmin(curves["val_loss"])) + 1
    n_cols = min(len(names), 3)
    n_rows = math.ceil(len(names) / n_cols)
    figure = _new_figure(3.6 * n_cols, 2.7 * n_rows)
    axes = figure.subplots(n_rows, n_cols, squeeze=False)
    for ax in axes.flat[len(names) :]:
        ax.set_axis_off()
    for ax, name in zip(axes.flat, names, strict=False):
        shown = []
        for key, label, style in ((name, "training", "-"), (f"val_{name}", "validation", "--")):
            if key in curves:
                values = curves[key]
                ax.plot(np.arange(1, values.size + 1), values, style, label=label, lw=1.4)
                shown.append(values)
        positive = _finite(np.concatenate(shown))
        positive = positive[positive > 0]
        if positive.size and positive.size == _finite(np.concatenate(shown)).size:
            if positive.max() / positive.min() > 30:
                ax.set_yscale("log")
        if best is not None:
            ax.axvline(best, color="0.5", ls=":", lw=1)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("epoch", fontsize=8)
        ax.grid(True, color="0.92")
        ax.legend(fontsize=7, frameon=False)
    figure.tight_layout()
    return _save(figure, path)

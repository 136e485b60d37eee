"""Figure of a model's attention between EEG channels: the strongest channel-to-channel
weights drawn as arrows between the channels' template positions on a head outline, and
the whole weight matrix beside it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bids_eeg2fmri.reports.figures.common import _new_figure, _save
from bids_eeg2fmri.reports.figures.scalp import _draw_head, _dropped_note, _project, known_channels


def plot_attention_graph(
    weights: np.ndarray,
    *,
    channels: Sequence[str],
    path: Path,
    top_fraction: float = 0.01,
) -> Path:
    """The strongest channel-to-channel attention weights on the scalp, and the matrix.

    Left: channels at their template positions; a line joins channel i to channel j for
    the largest ``top_fraction`` of the off-diagonal weights (at least 3), thicker for
    larger weights. Right: the whole matrix (row i: how channel i weighs channels j).

    Parameters
    ----------
    weights : ndarray, shape (n_channels, n_channels)
        Row-stochastic attention matrix (mean over volumes).
    channels : sequence of str, shape (n_channels,)
    path : Path
        Figure file.
    top_fraction : float
        Fraction of the off-diagonal weights drawn as edges.
    """
    weights = np.asarray(weights, dtype=float)
    channels = [str(c) for c in channels]
    n = len(channels)
    if weights.shape != (n, n):
        raise ValueError(f"weights must be ({n}, {n}) for {n} channels, got {weights.shape}")
    kept, dropped = known_channels(channels)
    position = dict(zip(kept, _project(kept), strict=True)) if kept else {}

    figure = _new_figure(11.0, 5.4)
    head, matrix = figure.subplots(1, 2, gridspec_kw={"width_ratios": [1.0, 1.15]})
    _draw_head(head)
    idx = [channels.index(c) for c in kept]
    sub = weights[np.ix_(idx, idx)] if idx else np.zeros((0, 0))
    off = ~np.eye(len(idx), dtype=bool)
    candidates = np.flatnonzero(off.ravel() & np.isfinite(sub.ravel()))
    if candidates.size:
        n_edges = min(candidates.size, max(3, math.ceil(top_fraction * candidates.size)))
        strongest = candidates[np.argsort(sub.ravel()[candidates])[::-1][:n_edges]]
        top = sub.ravel()[strongest]
        span = max(float(top.max() - top.min()), 1e-12)
        for flat, value in zip(strongest[::-1], top[::-1], strict=True):
            i, j = divmod(int(flat), len(idx))
            (x0, y0), (x1, y1) = position[kept[i]], position[kept[j]]
            strength = (value - top.min()) / span
            head.annotate(
                "",
                xy=(x1, y1),
                xytext=(x0, y0),
                zorder=2,
                arrowprops={
                    "arrowstyle": "-|>",
                    "lw": 0.6 + 2.4 * strength,
                    "alpha": 0.35 + 0.6 * strength,
                    "color": "C3",
                    "shrinkA": 3,
                    "shrinkB": 3,
                    "mutation_scale": 8,
                },
            )
        head.set_title(
            f"strongest {n_edges} of {candidates.size} weights "
            f"({top.min():.3g}-{top.max():.3g}; uniform = {1 / n:.3g})",
            fontsize=9,
        )
    if kept:
        xy = np.array([position[c] for c in kept])
        head.scatter(xy[:, 0], xy[:, 1], s=14, color="k", zorder=3)
        for c, (x, y) in zip(kept, xy, strict=True):
            head.text(
                x, y + 0.035, c, fontsize=6 if n > 32 else 8, ha="center", va="bottom", zorder=4
            )
    head.set_xlim(-1.25, 1.25)
    head.set_ylim(-1.25, 1.25)

    image = matrix.imshow(weights, cmap="viridis", interpolation="nearest", vmin=0.0)
    size = 8 if n <= 16 else 6 if n <= 32 else 4
    matrix.set_xticks(range(n), channels, rotation=90, fontsize=size)
    matrix.set_yticks(range(n), channels, fontsize=size)
    matrix.set_xlabel("attended channel j")
    matrix.set_ylabel("channel i")
    bar = figure.colorbar(image, ax=matrix, fraction=0.046, pad=0.03)
    bar.set_label("weight", fontsize=8)
    _dropped_note(figure, dropped)
    figure.tight_layout()
    return _save(figure, path)

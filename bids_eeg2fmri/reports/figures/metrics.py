"""Figure of one run's metrics: the model against the baselines, one panel per metric,
per-volume metrics as box plots with one point per volume (volumes seen in training in
grey), run-level metrics (the r summaries) as one bar each.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bids_eeg2fmri.reports.figures.common import (
    METRIC_LABELS,
    RUN_LEVEL_METRICS,
    _new_figure,
    _save,
    _truthy,
    order_methods,
)


def plot_method_metrics(
    table,
    *,
    path: Path,
    metrics: Sequence[str] = ("r_mask_mean", "rmse_mask", "ssim_original", "ssim_mask"),
) -> Path:
    """One panel per metric, one column per method (the model first).

    Per-volume metrics are drawn as a box plot with one point per volume (grey: volumes
    the model was trained on, coloured: the others); run-level metrics (the r summaries)
    as one marker with its value.

    Parameters
    ----------
    table : pandas.DataFrame
        Rows of ``*_desc-synth_metrics.tsv``: ``method``, the ``metrics`` columns and,
        optionally, ``in_training``.
    path : Path
        Figure file.
    metrics : sequence of str
        Columns to draw; missing ones are skipped.
    """
    metrics = [m for m in metrics if m in table.columns]
    methods = order_methods(table["method"])
    figure = _new_figure(max(3.0, 2.9 * max(len(metrics), 1)), 3.4)
    axes = figure.subplots(1, max(len(metrics), 1), squeeze=False)[0]
    trained = (
        _truthy(table["in_training"]) if "in_training" in table else np.zeros(len(table), bool)
    )
    rng = np.random.default_rng(0)
    for ax, metric in zip(axes, metrics, strict=False):
        values = np.asarray(table[metric], dtype=float)
        for x, method in enumerate(methods):
            rows = np.asarray(table["method"] == method)
            colour = f"C{x}"
            finite = np.isfinite(values) & rows
            if not finite.any():
                ax.text(
                    x,
                    0.5,
                    "n/a",
                    transform=ax.get_xaxis_transform(),
                    ha="center",
                    color="0.4",
                    fontsize=9,
                )
                continue
            if metric in RUN_LEVEL_METRICS:
                value = float(values[finite][0])
                ax.bar([x], [value], width=0.55, color=colour, alpha=0.8, zorder=2)
                ax.annotate(
                    f"{value:.3f}",
                    (x, value),
                    textcoords="offset points",
                    xytext=(0, 3 if value >= 0 else -3),
                    ha="center",
                    va="bottom" if value >= 0 else "top",
                    fontsize=8,
                )
                continue
            ax.boxplot(
                [values[finite]],
                positions=[x],
                widths=0.55,
                showfliers=False,
                medianprops={"color": "k"},
                boxprops={"color": "0.3"},
            )
            jitter = rng.uniform(-0.18, 0.18, size=finite.sum())
            ax.scatter(
                x + jitter,
                values[finite],
                s=6,
                alpha=0.6,
                zorder=3,
                linewidths=0,
                color=np.where(trained[finite], "0.65", colour).tolist(),
                rasterized=True,
            )
        ax.set_xticks(range(len(methods)), methods, rotation=20)
        ax.set_xlim(-0.6, len(methods) - 0.4)
        ax.set_title(METRIC_LABELS.get(metric, metric), fontsize=10)
        ax.grid(True, axis="y", color="0.9")
        if metric in RUN_LEVEL_METRICS:
            ax.axhline(0.0, color="0.5", lw=0.8)
            ax.margins(y=0.15)
    if trained.any():
        figure.text(
            0.01, 0.0, "grey points: volumes used in training", fontsize=8, color="0.35", va="top"
        )
    figure.tight_layout()
    return _save(figure, path)

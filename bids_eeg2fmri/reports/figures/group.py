"""Group figure and its table helper: each participant's mean metrics over their runs,
and the metrics per method across participants (one point per participant, lines
joining the same participant, the mean +/- sd beside).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bids_eeg2fmri.reports.figures.common import (
    METRIC_LABELS,
    _finite,
    _new_figure,
    _save,
    order_methods,
)


def participant_means(table, metrics: Sequence[str]):
    """Mean of each metric per (participant, method), over the participant's runs."""
    import pandas as pd

    columns = [m for m in metrics if m in table.columns]
    numeric = table[["participant", "method"]].copy()
    for m in columns:
        numeric[m] = pd.to_numeric(table[m], errors="coerce")
    return numeric.groupby(["participant", "method"], sort=False)[columns].mean().reset_index()


def plot_group_metrics(
    table,
    *,
    path: Path,
    metrics: Sequence[str] = ("r_mask_mean", "rmse_mask", "ssim_original", "ssim_mask"),
) -> Path:
    """Metrics per method across participants: one point per participant (the mean of
    their runs), grey lines joining the same participant, the mean +/- sd beside.

    Parameters
    ----------
    table : pandas.DataFrame
        ``group_desc-synth_metrics.tsv``: ``participant``, ``method`` and the metrics.
    path : Path
        Figure file.
    metrics : sequence of str
        Columns to draw; missing ones are skipped.
    """
    metrics = [m for m in metrics if m in table.columns]
    means = participant_means(table, metrics)
    methods = order_methods(means["method"])
    figure = _new_figure(max(3.0, 2.9 * max(len(metrics), 1)), 3.4)
    axes = figure.subplots(1, max(len(metrics), 1), squeeze=False)[0]
    for ax, metric in zip(axes, metrics, strict=False):
        wide = means.pivot_table(
            index="participant", columns="method", values=metric, aggfunc="mean", dropna=False
        ).reindex(columns=methods)
        values = wide.to_numpy(dtype=float)
        for row in values:
            ok = np.isfinite(row)
            if ok.sum() > 1:
                ax.plot(np.flatnonzero(ok), row[ok], color="0.75", lw=0.8, zorder=1)
        for x in range(len(methods)):
            column = _finite(values[:, x])
            if column.size == 0:
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
            ax.scatter(np.full(column.size, x), column, s=18, color=f"C{x}", zorder=3)
            ax.errorbar(
                x + 0.22,
                column.mean(),
                yerr=column.std(ddof=1) if column.size > 1 else 0.0,
                fmt="D",
                color="k",
                ms=4,
                capsize=3,
                zorder=3,
            )
        ax.set_xticks(range(len(methods)), methods, rotation=20)
        ax.set_xlim(-0.5, len(methods) - 0.3)
        ax.set_title(METRIC_LABELS.get(metric, metric), fontsize=10)
        ax.grid(True, axis="y", color="0.9")
    figure.tight_layout()
    return _save(figure, path)

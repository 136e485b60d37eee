"""The metrics tables of the reports: which metrics are drawn and tabulated, the rows of a
run's table (model first, per-volume means over the volumes never seen in training), the
group table (read, or gathered from the participants' tables) and its summary across
participants, and how numbers are written in them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bids_eeg2fmri.reports.html.items import _table
from bids_eeg2fmri.reports.html.outputs import _has_values, _read_tsv

#: Metrics drawn for the model and the baselines, in this order.
FIGURE_METRICS = ("r_mask_mean", "r_coupled_mean", "rmse_mask", "ssim_original", "ssim_mask")

#: Columns of the metrics tables: (column, heading).
TABLE_METRICS = (
    ("r_mask_mean", "r mean"),
    ("r_mask_median", "r median"),
    ("r_mask_p90", "r p90"),
    ("r_coupled_mean", "r coupled"),
    ("noise_ceiling_mean", "noise ceiling"),
    ("fraction_of_ceiling", "fraction of ceiling"),
    ("rmse_mask", "RMSE mask"),
    ("rmse_volume", "RMSE volume"),
    ("ssim_original", "SSIM original"),
    ("ssim_mask", "SSIM mask"),
    ("psnr_mask", "PSNR mask (dB)"),
)


def _run_metrics_rows(table) -> tuple[list[list[str]], list[str], str]:
    """Rows of a run's metrics table (model first), their CSS classes, and the volumes
    the per-volume means are taken over."""
    from bids_eeg2fmri.reports.figures.common import RUN_LEVEL_METRICS, _truthy, order_methods

    trained = _truthy(table["in_training"]) if "in_training" in table else np.zeros(len(table))
    unseen = ~np.asarray(trained, bool)
    mixed = unseen.any() and not unseen.all()
    basis = "the volumes never seen in training" if mixed else "all volumes"
    if not unseen.any():
        basis += " (all were used in training: the scores are optimistic)"
    rows, classes = [], []
    for method in order_methods(table["method"]):
        chosen = np.asarray(table["method"] == method)
        if mixed:
            chosen = chosen & unseen
        sub = table[chosen] if chosen.any() else table[np.asarray(table["method"] == method)]
        row = [method, str(len(sub))]
        for column, _ in TABLE_METRICS:
            if not _has_values(table, column):
                continue
            values = np.asarray(sub[column], dtype=float)
            value = values[0] if column in RUN_LEVEL_METRICS else _nanmean(values)
            row.append(_fmt(value))
        rows.append(row)
        classes.append("model" if method == "model" else "")
    return rows, classes, basis


def _group_metrics(output_dir: Path):
    """The group metrics table and where it came from (None if there is none)."""
    import pandas as pd

    path = output_dir / "group_desc-synth_metrics.tsv"
    table = _read_tsv(path)
    if table is not None and {"participant", "method"} <= set(table.columns):
        return table, path.name
    frames = []
    for tsv in sorted(output_dir.glob("sub-*/**/func/*_desc-synth_metrics.tsv")):
        run = _read_tsv(tsv)
        if run is None or "method" not in run:
            continue
        columns = [c for c, _ in TABLE_METRICS if c in run]
        means = run.groupby("method", sort=False)[columns].mean().reset_index()
        means["participant"] = tsv.name.split("_")[0].removeprefix("sub-")
        means["run"] = tsv.name.split("_desc-")[0]
        means["n_volumes"] = run.groupby("method", sort=False).size().to_numpy()
        frames.append(means)
    if not frames:
        return None, None
    return pd.concat(frames, ignore_index=True), "the participants' *_desc-synth_metrics.tsv"


def _group_summary_tables(table) -> list[dict]:
    """The group headline (held out first, with bootstrap intervals) and the metrics per
    split group; participants who trained the model are shown apart, marked optimistic."""
    from bids_eeg2fmri.evaluation import summary

    if "split" not in table:  # per-run tables without their splits: one table, said so
        return [_group_summary_table(table, None)]
    groups = table["split"].astype(str).map(summary.SPLITS)
    tables = []
    found = summary.headline_metric(table)
    if found is not None:
        from bids_eeg2fmri.reports.figures import order_methods

        metric, words = found
        means = summary.split_means(table, metric, order_methods(table["method"]))
        tables.append(
            _table(
                ["Participants", "Method", "n", f"{words} (95 % interval)"],
                [
                    [summary.GROUP_WORDS[m.group], m.method, str(m.n), summary.describe(m)]
                    for m in means
                ],  # fmt: skip
                classes=["model" if m.method == "model" else "" for m in means],
                title="Headline",
                caption=f"Mean {words} over participants (each: the mean over their runs), "
                "with a 95 % percentile bootstrap interval over participants (2000 "
                "resamples). Held-out participants measure generalisation; those the model "
                "trained on score optimistically and are never averaged with them.",
            )
        )
    for group in summary.GROUPS:
        if (groups == group).any():
            tables.append(_group_summary_table(table[groups == group], group))
    return tables


def _group_summary_table(table, group: str | None) -> dict:
    from bids_eeg2fmri.evaluation.summary import GROUP_WORDS
    from bids_eeg2fmri.reports.figures import order_methods, participant_means

    columns = [(c, h) for c, h in TABLE_METRICS if _has_values(table, c)]
    means = participant_means(table, [c for c, _ in columns])
    rows, classes = [], []
    for method in order_methods(means["method"]):
        sub = means[means["method"] == method]
        row = [method, str(sub["participant"].nunique())]
        for column, _ in columns:
            values = np.asarray(sub[column], dtype=float)
            values = values[np.isfinite(values)]
            if values.size == 0:
                row.append("n/a")
            elif values.size == 1:
                row.append(_fmt(values[0]))
            else:
                row.append(f"{_fmt(values.mean())} ± {_fmt(values.std(ddof=1))}")
        rows.append(row)
        classes.append("model" if method == "model" else "")
    who = GROUP_WORDS[group] if group else "All participants (the tables give no splits)"
    return _table(
        ["Method", "Participants", *(h for _, h in columns)],
        rows,
        classes=classes,
        title=who,
        caption="Mean ± sd across participants (each participant: the mean over their "
        "runs) of the run-level metrics.",
    )


def _nanmean(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else float("nan")


def _fmt(value) -> str:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "n/a"
    if not np.isfinite(value):
        return "n/a"
    return f"{value:.3f}" if abs(value) < 1e4 else f"{value:.4g}"

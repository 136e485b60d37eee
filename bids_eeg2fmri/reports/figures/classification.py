"""Classification figures of the group report (``group --classify``): each participant's
out-of-fold probability averaged over the repeats, the ROC curves of the views drawn from
those averages, and the averages themselves per view and true class (a strip plot in which
the misclassified participants are open and labelled).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from bids_eeg2fmri.reports.figures.common import _new_figure, _save

#: Misclassified participants labelled on the strip plot, at most, per view and class
#: (the furthest from the threshold): more would overlap.
_MAX_LABELS = 6


def repeat_means(predictions):
    """Each participant's probability averaged over the repeats, per view.

    Parameters
    ----------
    predictions : pandas.DataFrame
        ``group_desc-classify_predictions.tsv``: ``participant_id``, ``target``, ``view``,
        ``repeat`` and ``probability`` (one row per participant, view and repeat).

    Returns
    -------
    pandas.DataFrame
        ``view``, ``participant_id``, ``target`` (0 or 1), ``probability`` (the mean over
        the repeats) and ``repeats`` (how many were averaged); views in the order first
        met, participants sorted. Rows without a finite probability or target are dropped.
    """
    import pandas as pd

    table = pd.DataFrame(
        {
            "view": predictions["view"].astype(str),
            "participant_id": predictions["participant_id"].astype(str),
            "target": pd.to_numeric(predictions["target"], errors="coerce"),
            "probability": pd.to_numeric(predictions["probability"], errors="coerce"),
        }
    ).dropna(subset=["target", "probability"])
    table = table[table["target"].isin([0, 1])]
    means = (
        table.groupby(["view", "participant_id"], sort=False)
        .agg(
            target=("target", "first"),
            probability=("probability", "mean"),
            repeats=("probability", "size"),
        )
        .reset_index()
    )
    means["target"] = means["target"].astype(int)
    order = {v: i for i, v in enumerate(dict.fromkeys(table["view"]))}
    means["_order"] = means["view"].map(order)
    means = means.sort_values(["_order", "participant_id"], kind="stable")
    return means.drop(columns="_order").reset_index(drop=True)


def roc_curve(target, score) -> tuple[np.ndarray, np.ndarray]:
    """False and true positive rates of ``score >= t`` over every threshold ``t``, from
    (0, 0) to (1, 1); tied scores make one step. Non-finite scores are left out; empty
    arrays when a class is missing."""
    target = np.asarray(target, dtype=float)
    score = np.asarray(score, dtype=float)
    keep = np.isfinite(score) & np.isfinite(target)
    positive, score = target[keep] == 1, score[keep]
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return np.empty(0), np.empty(0)
    order = np.argsort(-score, kind="mergesort")
    score, positive = score[order], positive[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(score)), score.size - 1]
    tpr = np.r_[0.0, np.cumsum(positive)[last_of_tie] / n_pos]
    fpr = np.r_[0.0, np.cumsum(~positive)[last_of_tie] / n_neg]
    return fpr, tpr


def plot_classification_roc(
    means,
    *,
    path: Path,
    views: Sequence[str] | None = None,
    aucs: Mapping[str, tuple[float, float, float]] | None = None,
) -> Path:
    """ROC curves of the views (one line each) from the repeat-averaged probabilities,
    the diagonal as chance; each legend entry gives the view's AUC and its interval.

    Parameters
    ----------
    means : pandas.DataFrame
        :func:`repeat_means` of the predictions table.
    path : Path
        Figure file.
    views : sequence of str, optional
        Views to draw, in this order (default: those of ``means``).
    aucs : mapping, optional
        ``{view: (auc, low, high)}`` for the legend (the metrics table's values); a view
        missing here gets the AUC of its curve, without interval.
    """
    views = list(views) if views is not None else list(dict.fromkeys(means["view"]))
    aucs = dict(aucs or {})
    figure = _new_figure(4.8, 4.4)
    ax = figure.subplots()
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="chance (AUC 0.5)")
    for i, view in enumerate(views):
        sub = means[means["view"] == view]
        fpr, tpr = roc_curve(sub["target"], sub["probability"])
        if fpr.size == 0:
            continue
        value, low, high = aucs.get(view, (np.trapezoid(tpr, fpr), np.nan, np.nan))
        label = f"{view}: AUC {_num(value)}"
        if np.isfinite(low) and np.isfinite(high):
            label += f" [{_num(low)}, {_num(high)}]"
        style = {"ls": ":", "color": "0.35"} if view == "nuisance" else {"color": f"C{i}"}
        # Straight segments between the points: a tie of a positive and a negative is a
        # diagonal step, and the area under the line is the AUC (ties counting half).
        ax.plot(fpr, tpr, lw=1.6, label=label, **style)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_aspect("equal")
    ax.set_xlabel("false positive rate (1 - specificity)")
    ax.set_ylabel("true positive rate (sensitivity)")
    ax.grid(True, color="0.92")
    ax.legend(loc="lower right", fontsize=8, frameon=True)
    figure.tight_layout()
    return _save(figure, path)


def plot_classification_probabilities(
    means,
    *,
    path: Path,
    views: Sequence[str] | None = None,
    classes: tuple[str, str] = ("negative", "positive"),
    threshold: float = 0.5,
) -> Path:
    """Each participant's repeat-averaged probability of the positive class, per view
    and true class (a strip plot): filled points are classified right at ``threshold``,
    open ones wrong and labelled with the participant (the furthest from ``threshold``
    when more than a few per view and class).

    Parameters
    ----------
    means : pandas.DataFrame
        :func:`repeat_means` of the predictions table.
    path : Path
        Figure file.
    views : sequence of str, optional
        Views to draw, in this order (default: those of ``means``).
    classes : (str, str)
        Names of the negative and the positive class (legend).
    threshold : float
        The probability at which a participant is called positive.
    """
    views = list(views) if views is not None else list(dict.fromkeys(means["view"]))
    figure = _new_figure(max(4.0, 1.7 * len(views) + 1.6), 4.0)
    ax = figure.subplots()
    ax.axhline(threshold, color="0.55", lw=1, ls="--", zorder=1)
    offsets = {0: -0.19, 1: 0.19}
    labelled = {0: False, 1: False}
    for x, view in enumerate(views):
        sub = means[means["view"] == view]
        for target, offset in offsets.items():
            group = sub[sub["target"] == target]
            if group.empty:
                continue
            values = group["probability"].to_numpy(dtype=float)
            # Spread over 4 lanes by rank, not at random: the same table, the same figure.
            rank = np.argsort(np.argsort(values, kind="stable"), kind="stable")
            xs = x + offset + ((rank % 4) - 1.5) * 0.045
            wrong = (values >= threshold) != bool(target)
            colour = f"C{target}"
            ax.scatter(
                xs[~wrong],
                values[~wrong],
                s=22,
                color=colour,
                zorder=3,
                label=None if labelled[target] else f"{classes[target]} (true class)",
            )
            labelled[target] = True
            ax.scatter(
                xs[wrong], values[wrong], s=26, facecolors="white", edgecolors=colour, zorder=3
            )
            names = group["participant_id"].astype(str).str.removeprefix("sub-").to_numpy()
            wrong_ones = np.flatnonzero(wrong)
            furthest = np.argsort(-np.abs(values[wrong_ones] - threshold), kind="stable")
            shown = wrong_ones[furthest[:_MAX_LABELS]]
            for xi, yi, name in zip(xs[shown], values[shown], names[shown], strict=True):
                ax.annotate(
                    name,
                    (xi, yi),
                    xytext=(4, 0),
                    textcoords="offset points",
                    fontsize=7,
                    va="center",
                    color="0.25",
                )
    ax.scatter([], [], s=26, facecolors="white", edgecolors="0.3", label="misclassified")
    ax.set_xticks(range(len(views)), views, rotation=20 if len(views) > 4 else 0)
    ax.set_xlim(-0.6, len(views) - 0.4)
    ax.set_ylim(-0.04, 1.04)
    ax.set_ylabel(f"probability of {classes[1]}\n(mean over repeats)")
    ax.grid(True, axis="y", color="0.92")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    figure.tight_layout()
    return _save(figure, path)


def _num(value: float) -> str:
    return f"{value:.2f}" if np.isfinite(value) else "n/a"

"""The "Classification" section of the group report, shown when ``group --classify``
wrote ``group_desc-classify_metrics.tsv``: the target and the protocol (from the tables'
sidecars), the metrics per view, the ROC curves and each participant's repeat-averaged
probability per view (with the misclassified ones listed), and the nuisance check, which
says whether recording differences alone predict the target.

A missing predictions table or sidecar leaves its part out with a note; a part that fails
on unexpected content becomes a note (:func:`_guarded`), never an exception.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from markupsafe import Markup

from bids_eeg2fmri.reports.html.items import (
    _figure_item,
    _guarded,
    _note,
    _section,
    _table,
    _text,
)
from bids_eeg2fmri.reports.html.outputs import _Context, _read_json, _read_tsv

#: The tables written by the group level's classification (workflows/classify.py).
METRICS_TSV = "group_desc-classify_metrics.tsv"
PREDICTIONS_TSV = "group_desc-classify_predictions.tsv"

_NUMERIC = (
    "n_participants",
    "n_positive",
    "n_features",
    "auc",
    "auc_ci_low",
    "auc_ci_high",
    "p_permutation",
    "balanced_accuracy",
    "sensitivity",
    "specificity",
    "delta_auc_vs_bandpower",
    "delta_ci_low",
    "delta_ci_high",
)

_NUISANCE_WHAT = "channel count, length, line noise, eye movements"


def classification_section(output_dir: Path, context: _Context) -> dict | None:
    """The section, or None when the group level did not classify (no metrics table)."""
    if not (Path(output_dir) / METRICS_TSV).is_file():
        return None
    items = _guarded(lambda: _classification_items(Path(output_dir), context), "classification")
    return _section("classification", "Classification", items)


def _classification_items(output_dir: Path, context: _Context) -> list[dict]:
    import pandas as pd

    metrics = _read_tsv(output_dir / METRICS_TSV)
    if metrics is None or "view" not in metrics or metrics.empty:
        return [_note(f"{METRICS_TSV} could not be read or has no view: nothing to show.")]
    metrics = metrics.copy()
    metrics["view"] = metrics["view"].astype(str)
    for column in _NUMERIC:
        metrics[column] = (
            pd.to_numeric(metrics[column], errors="coerce") if column in metrics else np.nan
        )
    sidecar = _read_json(output_dir / METRICS_TSV.replace(".tsv", ".json"))
    target = sidecar.get("Target") if isinstance(sidecar.get("Target"), dict) else {}
    protocol = sidecar.get("Protocol") if isinstance(sidecar.get("Protocol"), dict) else {}
    predictions = _read_tsv(output_dir / PREDICTIONS_TSV)

    items = _guarded(lambda: [_text(_target_sentence(target, metrics, predictions))], "target")
    items += _guarded(lambda: [_text(_protocol_sentence(protocol))], "protocol")
    items += _guarded(lambda: [_metrics_table(metrics)], "classification metrics table")
    items += _guarded(lambda: _nuisance_items(metrics, target), "nuisance check")
    if predictions is None:
        items.append(
            _note(
                f"{PREDICTIONS_TSV} is missing or unreadable: no ROC curves or "
                "per-participant probabilities."
            )
        )
    else:
        items += _guarded(
            lambda: _prediction_items(predictions, metrics, target, context),
            "classification predictions",
        )
    items += _guarded(lambda: _pattern_items(output_dir, target, context), "synth weight map")
    return items


def _pattern_items(output_dir: Path, target: dict, context: _Context) -> list[dict]:
    """The synth view's activation pattern (mean-over-run statistic), when written."""
    from bids_eeg2fmri.workflows.classify_maps import PATTERN, WEIGHTS

    path = output_dir / PATTERN
    if not path.is_file():
        return []
    import nibabel as nib

    from bids_eeg2fmri.reports import figures as fig

    image = nib.load(path)
    mean_map = np.asarray(image.dataobj, dtype=float)[..., 0]
    classes = _class_names(target)
    head = _read_json(path.with_name(PATTERN.replace(".nii.gz", ".json"))).get("Head")
    fitted, statistic, second = (
        (f"the {head} head trained on every participant's windows", "a window's volume", "")
        if head
        else ("the classifier fitted on every participant's synth view",
              "its run-mean statistic",
              ", both with the standard-deviation statistic as a second volume")
    )  # fmt: skip
    return [
        _figure_item(
            "Where the synthesized view separates the groups",
            context.figures / "group_desc-classify_pattern.png",
            context,
            f"Activation pattern (Haufe et al. 2014) of {fitted}, for {statistic}: positive "
            f"where a higher synthesized signal goes with {classes[1]}, in blocks of voxels "
            f"on the model grid. Unlike the weights ({WEIGHTS}, beside it in OUTPUT_DIR"
            f"{second}), a pattern shows what the "
            "views carry of the decision, not how noise is cancelled; it is fitted on all "
            "participants, so it describes the classifier, not its out-of-fold accuracy.",
            lambda out: fig.plot_symmetric_map(mean_map, affine=image.affine, path=out),
        )
    ]


# ----------------------------------------------------------------------------- sentences
def _class_names(target: dict) -> tuple[str, str]:
    """Names of the negative and the positive class."""
    positive = str(target.get("Positive", "positive"))
    negative = target.get("Negative")
    if isinstance(negative, (list, tuple)) and negative:
        return "/".join(str(n) for n in negative), positive
    return (str(negative) if negative else f"not {positive}"), positive


def _class_counts(metrics, predictions) -> tuple[int, int] | None:
    """(n negative, n positive) from the metrics table, else from the predictions."""
    rows = metrics.dropna(subset=["n_participants", "n_positive"])
    if not rows.empty:
        total, positive = int(rows["n_participants"].max()), int(rows["n_positive"].max())
        return total - positive, positive
    if predictions is not None and {"participant_id", "target"} <= set(predictions):
        per = predictions.drop_duplicates("participant_id")["target"].astype(str)
        return int((per == "0").sum()), int((per == "1").sum())
    return None


def _target_sentence(target: dict, metrics, predictions) -> str:
    negative, positive = _class_names(target)
    counts = _class_counts(metrics, predictions)
    n_neg, n_pos = counts if counts is not None else ("?", "?")
    column = target.get("Column")
    where = (
        f"participants.tsv's column {column!r}"
        if column
        else "a participants.tsv column (not named: the sidecar is missing)"
    )
    return (
        f"Participants are classified by {where}: {positive} (the positive class, "
        f"n = {n_pos}) against {negative} (n = {n_neg})."
    )


def _protocol_sentence(protocol: dict) -> str:
    folds, repeats = protocol.get("Folds", "?"), protocol.get("Repeats", "?")
    classifier = protocol.get("Classifier", "L2 logistic regression")
    permutations = protocol.get("Permutations")
    inner = protocol.get("InnerFolds")
    penalty = (
        f"its penalty chosen by an inner {inner}-fold cross-validation on the training "
        "participants only"
        if inner
        else "its penalty chosen on the training participants only"
    )
    tested = (
        f"the p-value from {permutations} permutations of the labels across participants "
        "(the whole cross-validation rerun each time)"
        if permutations
        else "no permutation test (p n/a)"
    )
    boot = protocol.get("Bootstrap")
    resamples = f" ({boot} stratified resamples)" if boot else ""
    head = protocol.get("Heads") or {}
    heads = "".join(
        f" The {view} view is classified instead by {text}, trained in each fold on the "
        "training participants' windows; a participant's probability is the mean over its "
        "windows."
        for view, text in head.items()
    )
    return (
        f"Protocol: stratified {folds}-fold cross-validation repeated {repeats} times with "
        "participant-wise splits (a participant is never in the training and the test fold "
        f"at once); {classifier}, features standardised and {penalty}; each participant's "
        "out-of-fold probabilities averaged over the repeats, and the AUC computed on "
        f"those averages with a bootstrap interval over participants{resamples}; {tested}."
        f"{heads}"
    )


def _nuisance_items(metrics, target: dict) -> list[dict]:
    rows = metrics[metrics["view"] == "nuisance"]
    if rows.empty:
        return [
            _note(
                "No nuisance view was classified: whether recording differences alone "
                f"({_NUISANCE_WHAT}) separate the classes was not checked."
            )
        ]
    row = rows.iloc[0]
    auc, low, high = row["auc"], row["auc_ci_low"], row["auc_ci_high"]
    what = target.get("Column") or "the target"
    numbers = f"AUC {_num(auc)} [{_num(low)}, {_num(high)}]"
    if not np.isfinite(low):
        return [
            _note(
                f"Nuisance check: the nuisance view ({_NUISANCE_WHAT}) has {numbers}: "
                "without an interval, whether it predicts the target cannot be said."
            )
        ]
    if low > 0.5:
        return [
            _text(
                Markup(
                    "Nuisance check: the nuisance view ({}) predicts {}: {}, an interval above "
                    "0.5. <strong>The other views may reflect recording differences "
                    "({}) rather than the group.</strong>"
                ).format(_NUISANCE_WHAT, what, numbers, _NUISANCE_WHAT)
            )
        ]
    return [
        _text(
            f"Nuisance check: the nuisance view ({_NUISANCE_WHAT}) does not predict {what} "
            f"beyond chance: {numbers}, an interval that does not lie above 0.5. Recording "
            "differences alone do not separate the classes detectably (which does not rule "
            "out that they contribute)."
        )
    ]


# ----------------------------------------------------------------------------- tables
def _metrics_table(metrics) -> dict:
    has_base = (
        "bandpower" in set(metrics["view"]) and metrics["delta_auc_vs_bandpower"].notna().any()
    )
    columns = [
        "View",
        "Features",
        "AUC [95 % interval]",
        "Permutation p",
        "Balanced accuracy",
        "Sensitivity",
        "Specificity",
    ]
    if has_base:
        columns.append("AUC − bandpower [95 % interval]")
    rows = []
    for _, row in metrics.iterrows():
        cells = [
            row["view"],
            _int(row["n_features"]),
            _interval(row["auc"], row["auc_ci_low"], row["auc_ci_high"]),
            _p(row["p_permutation"]),
            _num(row["balanced_accuracy"]),
            _num(row["sensitivity"]),
            _num(row["specificity"]),
        ]
        if has_base:
            cells.append(
                "(reference)"
                if row["view"] == "bandpower"
                else _interval(
                    row["delta_auc_vs_bandpower"],
                    row["delta_ci_low"],
                    row["delta_ci_high"],
                    signed=True,
                )
            )
        rows.append(cells)
    return _table(
        columns,
        rows,
        title="Classification per view",
        caption="AUC of the repeat-averaged out-of-fold probabilities; the intervals are "
        "95 % percentile bootstrap intervals over participants (resampled within each "
        "class; the difference to bandpower on the same, paired resamples). Chance is an "
        "AUC of 0.5, so an interval above 0.5 means better than chance. Balanced accuracy, "
        "sensitivity and specificity call a participant positive at a probability of 0.5 "
        "or more.",
    )


def _misclassified_table(means, views, classes: tuple[str, str]) -> dict:
    rows = []
    for view in views:
        sub = means[means["view"] == view]
        missed = sub[(sub["target"] == 1) & (sub["probability"] < 0.5)]
        flagged = sub[(sub["target"] == 0) & (sub["probability"] >= 0.5)]
        rows.append([view, str(len(sub)), _who(missed), _who(flagged)])
    negative, positive = classes
    return _table(
        [
            "View",
            "Participants",
            f"{positive} called {negative} (probability < 0.5)",
            f"{negative} called {positive} (probability ≥ 0.5)",
        ],
        rows,
        title="Misclassified participants",
        caption="Each participant's out-of-fold probability averaged over the repeats; "
        "the number in brackets is that average.",
    )


def _who(rows) -> str:
    if rows.empty:
        return "none"
    return ", ".join(
        f"{pid} ({p:.2f})"
        for pid, p in zip(rows["participant_id"], rows["probability"], strict=True)
    )


def _prediction_items(predictions, metrics, target: dict, context: _Context) -> list[dict]:
    from bids_eeg2fmri.reports import figures as fig

    needed = {"participant_id", "target", "view", "probability"}
    if not needed <= set(predictions):
        missing = ", ".join(sorted(needed - set(predictions)))
        return [_note(f"{PREDICTIONS_TSV} has no column {missing}: no ROC curves.")]
    means = fig.repeat_means(predictions)
    known = list(dict.fromkeys(means["view"]))
    views = [v for v in metrics["view"] if v in known] + [
        v for v in known if v not in set(metrics["view"])
    ]
    if not views:
        return [_note(f"{PREDICTIONS_TSV} has no probability to draw.")]
    aucs = {
        row["view"]: (row["auc"], row["auc_ci_low"], row["auc_ci_high"])
        for _, row in metrics.iterrows()
        if np.isfinite(row["auc"])
    }
    classes = _class_names(target)
    repeats = means["repeats"].max()
    over = f"{int(repeats)} repeats" if repeats > 1 else "the one repeat"
    return [
        _figure_item(
            "ROC curves per view",
            context.figures / "group_desc-classify_roc.svg",
            context,
            f"The ROC curve of each view from each participant's out-of-fold probability "
            f"averaged over {over}; the dashed diagonal is chance (AUC 0.5). The legend gives "
            "each view's AUC and its 95 % bootstrap interval over participants.",
            lambda path: fig.plot_classification_roc(means, path=path, views=views, aucs=aucs),
        ),
        _figure_item(
            "Probabilities per participant",
            context.figures / "group_desc-classify_probabilities.svg",
            context,
            f"One point per participant: the out-of-fold probability of {classes[1]} "
            f"averaged over {over}, per view and true class. The dashed line is the 0.5 "
            "threshold; open points are misclassified at it and labelled with the "
            "participant (the furthest from 0.5 when there are many; the table below lists "
            "them all). A participant misclassified by every view points to that "
            "participant (a label to check, an unusual recording) rather than to a view.",
            lambda path: fig.plot_classification_probabilities(
                means, path=path, views=views, classes=classes
            ),
        ),
        _misclassified_table(means, views, classes),
    ]


# ----------------------------------------------------------------------------- numbers
def _num(value) -> str:
    return f"{value:.2f}" if _finite(value) else "n/a"


def _int(value) -> str:
    return str(int(value)) if _finite(value) else "n/a"


def _p(value) -> str:
    return f"{value:.3g}" if _finite(value) else "n/a"


def _interval(value, low, high, *, signed: bool = False) -> str:
    if not _finite(value):
        return "n/a"
    form = "+.2f" if signed else ".2f"
    text = format(value, form)
    if _finite(low) and _finite(high):
        text += f" [{format(low, form)}, {format(high, form)}]"
    return text


def _finite(value) -> bool:
    try:
        return bool(np.isfinite(float(value)))
    except (TypeError, ValueError):
        return False

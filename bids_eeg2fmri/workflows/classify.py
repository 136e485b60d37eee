"""The group level's classification of participants (``group --classify COLUMN``): the
target from participants.tsv, each participant's views from the participant level's
``desc-views`` tables (runs averaged), the protocol of evaluation/classify.py on every
view with the same folds, and ``group_desc-classify_{predictions,metrics}.tsv`` (+ JSON)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bids_eeg2fmri.bidsio.files import write_json_atomic, write_text_atomic
from bids_eeg2fmri.bidsio.reading import read_tsv_rows
from bids_eeg2fmri.errors import DataError, NoInputError, UsageError
from bids_eeg2fmri.evaluation import classify as clf
from bids_eeg2fmri.evaluation.views import MODEL_VIEWS, VIEWS
from bids_eeg2fmri.workflows.classify_heads import classify_with_head, synth_windows
from bids_eeg2fmri.workflows.classify_maps import remove_maps, synth_grid, write_synth_maps
from bids_eeg2fmri.workflows.views import SUFFIX, read_views

LOGGER = logging.getLogger("bids_eeg2fmri")

PREDICTIONS = "group_desc-classify_predictions.tsv"
METRICS = "group_desc-classify_metrics.tsv"
PREDICTION_COLUMNS = {
    "participant_id": {"Description": "Participant."},
    "target": {"Description": "1 for the positive class, 0 for the other (see Target)."},
    "view": {"Description": "The feature set classified (see the views tables' sidecars)."},
    "repeat": {"Description": "Repeat of the stratified K-fold split (0-based)."},
    "fold": {"Description": "The fold in which the participant was tested (0-based)."},
    "probability": {"Description": "Out-of-fold probability of the positive class."},
    "prediction": {"Description": "1 when the probability is at least 0.5, else 0."},
}
METRIC_COLUMNS = {
    "view": PREDICTION_COLUMNS["view"],
    "n_participants": {"Description": "Participants classified."},
    "n_positive": {"Description": "Of which in the positive class."},
    "n_features": {"Description": "Features of the view (finite for every participant)."},
    "auc": {"Description": "ROC AUC of the probabilities averaged over repeats."},
    "auc_ci_low": {"Description": "2.5th percentile of the AUC over stratified bootstrap "
                   "resamples of participants."},
    "auc_ci_high": {"Description": "97.5th percentile of the same."},
    "p_permutation": {"Description": "(C + 1) / (n + 1), C the permutations (labels shuffled "
                      "across participants, the whole cross-validation rerun) whose AUC "
                      "reached the observed one; n/a without permutations."},
    "balanced_accuracy": {"Description": "Mean of sensitivity and specificity at 0.5."},
    "sensitivity": {"Description": "Share of positives with probability >= 0.5."},
    "specificity": {"Description": "Share of negatives with probability < 0.5."},
    "delta_auc_vs_bandpower": {"Description": "AUC of this view minus that of bandpower."},
    "delta_ci_low": {"Description": "2.5th percentile of the difference over the same "
                     "bootstrap resamples (paired)."},
    "delta_ci_high": {"Description": "97.5th percentile of the same."},
}  # fmt: skip


@dataclass(frozen=True)
class Target:
    """Who is classified and as what."""

    column: str
    positive: str
    negative: tuple[str, ...]
    labels: dict[str, int]  # participant label (no "sub-") -> 1 | 0


def read_target(bids_dir: Path, column: str, positive: str | None) -> Target:
    """The target from ``participants.tsv`` (and the positive class from participants.json's
    Levels when not given: the first level listed; else the smaller class)."""
    import pandas as pd

    path = Path(bids_dir) / "participants.tsv"
    if not path.is_file():
        raise NoInputError(f"{path}: missing (--classify needs the participants' labels)")
    header, rows = read_tsv_rows(path)
    table = pd.DataFrame([row for _, row in rows], columns=header, dtype=str)
    if "participant_id" not in table or column not in table:
        missing = "participant_id" if "participant_id" not in table else column
        raise UsageError(
            f"{path}: no column {missing!r} (--classify; the columns are "
            f"{', '.join(table.columns)})"
        )
    values = table[column].str.strip()
    known = values[~values.isin(["n/a", ""])]
    left_out = int((~values.index.isin(known.index)).sum())
    if left_out:
        LOGGER.info("--classify %s: %d participant(s) with n/a left out", column, left_out)
    classes = sorted(set(known))
    if positive is None:
        levels = _levels(path.with_suffix(".json"), column)
        positive = next((c for c in levels if c in classes), None)
        if positive is None and len(classes) == 2:
            counts = known.value_counts()
            positive = min(classes, key=lambda c: (counts[c], c))
    if len(classes) < 2:
        raise NoInputError(
            f"{path}: column {column!r} has one class only ({', '.join(classes) or 'none'}): "
            "nothing to classify"
        )
    if positive not in classes:
        raise UsageError(
            f"--positive-label {positive!r}: not a value of {path.name}'s {column!r} "
            f"({', '.join(classes)})"
            if positive is not None
            else f"{path}: column {column!r} has {len(classes)} classes ({', '.join(classes)}): "
            "name the positive one with --positive-label (the others are then negative)"
        )
    ids = table.loc[known.index, "participant_id"].str.removeprefix("sub-")
    labels = {pid: int(value == positive) for pid, value in zip(ids, known, strict=True)}
    negative = tuple(c for c in classes if c != positive)
    return Target(column=column, positive=positive, negative=negative, labels=labels)


def _levels(path: Path, column: str) -> list[str]:
    try:
        levels = json.loads(path.read_text(encoding="utf-8")).get(column, {}).get("Levels", {})
    except (OSError, ValueError, AttributeError):
        return []
    return list(levels) if isinstance(levels, dict) else []


def gather_views(
    output_dir: Path, participants: list[str]
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, list[str]]]:
    """``{view: {participant: features}}`` with each participant's runs averaged and only
    the features every participant has, and ``{view: feature names}`` in their order."""
    per: dict[str, dict[str, list[dict[str, float]]]] = {}
    for path in sorted(Path(output_dir).glob(f"sub-*/**/eeg/*{SUFFIX}")):
        subject = path.relative_to(output_dir).parts[0].removeprefix("sub-")
        if subject not in participants:
            continue
        try:
            tables = read_views(path)
        except ValueError as err:
            raise DataError(str(err)) from None
        for view, values in tables.items():
            per.setdefault(view, {}).setdefault(subject, []).append(values)
    out: dict[str, dict[str, np.ndarray]] = {}
    feature_names: dict[str, list[str]] = {}
    for view, subjects in per.items():
        names = sorted(set.intersection(*(set(r) for runs in subjects.values() for r in runs)))
        matrix = {
            s: np.nanmean([[r[n] for n in names] for r in runs], axis=0)
            for s, runs in subjects.items()
        }
        out[view] = matrix
        feature_names[view] = names
    return out, feature_names


def run_classification(output_dir: Path, bids_dir: Path, settings, *, seed: int,
                       participants: tuple[str, ...] = (),
                       n_jobs: int = 1) -> list[Path]:  # fmt: skip
    """Classify, write the two tables and their sidecars; returns their paths. The
    permutations run on ``n_jobs`` processes (the same values as on one)."""
    target = read_target(bids_dir, settings.classify, settings.positive_label)
    chosen = [p for p in target.labels if not participants or p in participants]
    found, feature_names = gather_views(output_dir, chosen)
    if not found:
        raise NoInputError(
            f"nothing to classify in {output_dir}: no sub-*/eeg/*{SUFFIX} (run the "
            "participant level first)"
        )
    views = list(settings.classify_views) or [v for v in VIEWS if v in found]
    for view in views:
        if view not in found:
            need = " (it needs a model applied at the participant level: --model or --train)"
            raise NoInputError(
                f"--classify-views {view}: no participant has it in {output_dir}"
                + (need if view in MODEL_VIEWS else "")
            )
    subjects = sorted(set.intersection(*(set(found[v]) for v in views)))
    missing = sorted(set(chosen) - set(subjects))
    if missing:
        LOGGER.warning(
            "--classify: %d labelled participant(s) without every view left out: %s",
            len(missing),
            ", ".join(missing),
        )
    y = np.array([target.labels[s] for s in subjects])
    counts = np.bincount(y, minlength=2)
    if counts.min() < settings.cv_folds:
        raise NoInputError(
            f"--classify {target.column}: {counts[1]} {target.positive} and {counts[0]} other "
            f"participant(s) with views: fewer than --cv-folds {settings.cv_folds} in a class"
        )
    protocol = clf.Protocol(
        n_folds=settings.cv_folds,
        n_repeats=settings.cv_repeats,
        n_permutations=settings.permutations,
        seed=seed,
    )
    folds = clf.repeated_folds(y, protocol, seed=seed)
    LOGGER.info(
        "Classifying %s: %s (%d) vs %s (%d), %d x %d-fold, %d permutation(s) on %d "
        "process(es), views %s",
        target.column,
        target.positive,
        counts[1],
        "/".join(target.negative),
        counts[0],
        protocol.n_repeats,
        protocol.n_folds,
        protocol.n_permutations,
        n_jobs,
        ", ".join(views),
    )
    head = settings.classifier if settings.classifier != "logistic" else None
    if head and "synth" not in views:
        raise NoInputError(
            f"--classifier {head}: no participant has the synth view in {output_dir} (it "
            "needs a model applied at the participant level: --model or --train)"
        )
    if head:  # read (and refused) before any view is classified
        grid = synth_grid(output_dir, subjects)
        windows = synth_windows(output_dir, subjects, grid, head)
    results = {}
    head_maps = None
    for view in views:
        if view == "synth" and head:
            results[view], head_maps = classify_with_head(
                windows, y, folds, protocol, grid, head, seed=seed, progress=_progress(view)
            )
            continue
        x = np.stack([found[view][s] for s in subjects])
        finite = np.isfinite(x).all(axis=0)
        if not finite.any():
            LOGGER.warning("--classify: view %s has no feature finite for everyone: skipped", view)
            continue
        x = x[:, finite]
        if view == "synth":
            synth = (x, [n for n, ok in zip(feature_names[view], finite, strict=True) if ok])
        probability, _ = clf.out_of_fold(x, y, folds, protocol, seed=seed + 1)
        observed = clf.auc(y, probability.mean(axis=0))
        p_value = float("nan")
        if protocol.n_permutations:
            null = clf.permutation_aucs(
                x, y, protocol, seed=seed + 2, progress=_progress(view), n_jobs=n_jobs
            )
            p_value = clf.permutation_p(observed, null)
        results[view] = (probability, observed, p_value, int(x.shape[1]))
    if not results:
        raise NoInputError("--classify: no view has features to classify")
    written = _write(output_dir, target, subjects, y, folds, results, protocol, head)
    remove_maps(output_dir)
    goal = f"{target.column} = {target.positive} (positive weight: towards it)"
    if head_maps is not None:
        written += write_synth_maps(
            output_dir, subjects, head_maps["names"], head_maps["weights"],
            head_maps["pattern"], c=None, target=goal, head=head,
        )  # fmt: skip
    elif "synth" in results:
        weights, pattern, c = clf.weights_and_pattern(synth[0], y, protocol, seed=seed + 3)
        written += write_synth_maps(
            output_dir, subjects, synth[1], weights, pattern, c=c, target=goal
        )
    return written


def _progress(view: str):
    def report(i: int, n: int) -> None:
        if i == n or i % max(1, n // 5) == 0:
            LOGGER.info("Permutations of %s: %d/%d", view, i, n)

    return report


def _write(output_dir, target, subjects, y, folds, results, protocol, head) -> list[Path]:
    names = list(results)
    mean_prob = np.stack([results[v][0].mean(axis=0) for v in names])
    boot = clf.bootstrap_aucs(y, mean_prob, n_boot=protocol.n_bootstrap, seed=protocol.seed)
    base = names.index("bandpower") if "bandpower" in names else None
    rows = []
    for i, view in enumerate(names):
        probability, observed, p_value, n_features = results[view]
        low, high = clf.interval(boot[:, i])
        delta = (observed - results["bandpower"][1]) if base is not None else float("nan")
        d_low, d_high = (
            clf.interval(boot[:, i] - boot[:, base]) if base is not None else (np.nan, np.nan)
        )
        row = {
            "view": view,
            "n_participants": len(subjects),
            "n_positive": int(y.sum()),
            "n_features": n_features,
            "auc": observed,
            "auc_ci_low": low,
            "auc_ci_high": high,
            "p_permutation": p_value,
            **clf.threshold_metrics(y, mean_prob[i]),
            "delta_auc_vs_bandpower": delta,
            "delta_ci_low": d_low,
            "delta_ci_high": d_high,
        }
        rows.append(row)
        LOGGER.info(
            "Classification from %s: AUC %.3f [%.3f, %.3f], p %s, balanced accuracy %.3f%s",
            view,
            observed,
            low,
            high,
            "n/a" if not np.isfinite(p_value) else f"{p_value:.3g}",
            row["balanced_accuracy"],
            "" if base is None or view == "bandpower"
            else f", vs bandpower {delta:+.3f} [{d_low:+.3f}, {d_high:+.3f}]",
        )  # fmt: skip
    nuisance = next((r for r in rows if r["view"] == "nuisance"), None)
    if nuisance is not None and nuisance["auc_ci_low"] > 0.5:
        LOGGER.warning(
            "The nuisance view (channel count, length, line noise, eye movements) predicts "
            "%s (AUC %.3f [%.3f, %.3f]): the other views may ride on these differences",
            target.column,
            nuisance["auc"],
            nuisance["auc_ci_low"],
            nuisance["auc_ci_high"],
        )
    lines = ["\t".join(PREDICTION_COLUMNS)]
    for view in names:
        probability = results[view][0]
        for r in range(folds.shape[0]):
            for j, subject in enumerate(subjects):
                p = probability[r, j]
                lines.append(
                    f"sub-{subject}\t{y[j]}\t{view}\t{r}\t{folds[r, j]}\t{p:.6f}\t{int(p >= 0.5)}"
                )
    predictions = Path(output_dir) / PREDICTIONS
    metrics = Path(output_dir) / METRICS
    sidecar = {
        "Target": {"Column": target.column, "Positive": target.positive,
                   "Negative": list(target.negative)},
        "Protocol": {"Folds": protocol.n_folds, "Repeats": protocol.n_repeats,
                     "InnerFolds": protocol.inner_folds, "Cs": list(protocol.cs),
                     "Bootstrap": protocol.n_bootstrap, "Permutations": protocol.n_permutations,
                     "Seed": protocol.seed, "Classifier": "L2 logistic regression",
                     **({"Heads": {"synth": _head_text(head)}} if head else {})},
    }  # fmt: skip
    write_json_atomic(
        predictions.with_suffix(".json"),
        {"Description": "Out-of-fold probabilities per participant, view and repeat.",
         **sidecar, **PREDICTION_COLUMNS},
    )  # fmt: skip
    write_text_atomic(predictions, "\n".join(lines) + "\n")
    write_json_atomic(
        metrics.with_suffix(".json"),
        {"Description": "Classification of participants, one row per view.", **sidecar,
         **METRIC_COLUMNS},
    )  # fmt: skip
    text = ["\t".join(METRIC_COLUMNS)]
    for row in rows:
        text.append("\t".join(_cell(row[c]) for c in METRIC_COLUMNS))
    write_text_atomic(metrics, "\n".join(text) + "\n")
    LOGGER.info("Classification tables: %s, %s", metrics, predictions)
    return [metrics, predictions]


def _head_text(kind: str) -> str:
    from bids_eeg2fmri.models.heads import HeadSettings

    h = HeadSettings(kind)
    return (
        f"the original's {kind} head (Keras; a linear projection of {h.units} values and a "
        f"logit on each window's blocks; Adam {h.learning_rate:g}, batch {h.batch_size}, "
        f"{h.epochs} epochs)"
    )


def _cell(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return "n/a" if not np.isfinite(value) else f"{value:.6g}"

"""The group level: every participant's metrics in one table, ``group_desc-synth_metrics.tsv``
(+ JSON), one row per (participant, run, method)."""

from __future__ import annotations

import logging
from pathlib import Path

from bids_eeg2fmri.bidsio.files import write_json_atomic, write_text_atomic
from bids_eeg2fmri.bidsio.reading import read_tsv_rows
from bids_eeg2fmri.evaluation import tables

LOGGER = logging.getLogger("bids_eeg2fmri")

GROUP_TABLE = "group_desc-synth_metrics.tsv"


def metrics_tables(output_dir: Path, participants: tuple[str, ...] = ()) -> list[Path]:
    """The participant-level metrics tables in ``output_dir`` (optionally of some
    participants only), sorted."""
    found = sorted(Path(output_dir).glob("sub-*/**/func/*_desc-synth_metrics.tsv"))
    if participants:
        found = [p for p in found if p.relative_to(output_dir).parts[0][4:] in participants]
    return found


def gather_metrics(paths: list[Path]):
    """One row per (participant, run, method): per-volume metrics averaged over the
    run's volumes (its held-out ones when it has any), run-level metrics as they are.

    Returns a pandas DataFrame.
    """
    import numpy as np
    import pandas as pd

    frames = []
    for path in paths:
        table = _read_metrics(path)
        run = path.name.removesuffix("_desc-synth_metrics.tsv")
        for method, rows in table.groupby("method", sort=False):
            held = rows["split"] == "holdout"
            chosen = rows[held] if held.any() else rows
            row = {
                "participant": run.split("_")[0].removeprefix("sub-"),
                "run": run,
                "method": method,
                "split": "holdout" if held.any() else str(rows["split"].iloc[0]),
                "in_training": "false" if held.any() else str(rows["in_training"].iloc[0]),
                "n_volumes": len(chosen),
            }
            for column in tables.VOLUME_COLUMNS:
                values = chosen[column].to_numpy(float)
                finite = values[np.isfinite(values)]
                row[column] = float(finite.mean()) if finite.size else np.nan
            for column in tables.RUN_COLUMNS:
                row[column] = float(rows[column].iloc[0])
            frames.append(row)
    return pd.DataFrame(frames)


def _read_metrics(path: Path):
    """A run's metrics table, its numeric columns as numbers (n/a: NaN).

    Raises
    ------
    DataError
        Not UTF-8, or a row of another length than the header (the file named).
    ValueError
        A missing column, no rows, or a value that is neither a number nor n/a (the file,
        column and line named).
    """
    import numpy as np
    import pandas as pd

    header, rows = read_tsv_rows(path)
    table = pd.DataFrame([row for _, row in rows], columns=header, dtype=str)
    missing = set(tables.COLUMNS) - set(table.columns)
    if missing:
        raise ValueError(f"{path}: not a metrics table (no column {sorted(missing)[0]})")
    if table.empty:
        raise ValueError(f"{path}: no rows (one per volume and method expected)")
    for column in (*tables.VOLUME_COLUMNS, *tables.RUN_COLUMNS):
        text = table[column].str.strip()
        values = pd.to_numeric(text.where(text != "n/a"), errors="coerce")
        bad = np.flatnonzero(values.isna() & (text != "n/a"))
        if bad.size:
            raise ValueError(
                f"{path}: column {column}, line {rows[bad[0]][0]}: {text.iloc[bad[0]]!r} "
                "(a number or n/a)"
            )
        table[column] = values
    return table


GROUP_COLUMNS = {
    "participant": {"Description": "Participant label."},
    "run": {"Description": "Source entities of the run."},
    "method": tables.COLUMNS["method"],
    "split": {
        "Description": "holdout when the run has held-out volumes (then only those are "
        "averaged), else the use of its volumes in training (train, validation, applied)."
    },
    "in_training": tables.COLUMNS["in_training"],
    "n_volumes": {"Description": "Volumes averaged for the per-volume metrics."},
    **{c: {**tables.COLUMNS[c]} for c in tables.VOLUME_COLUMNS},
    **{c: tables.COLUMNS[c] for c in tables.RUN_COLUMNS},
}
for _column in tables.VOLUME_COLUMNS:
    GROUP_COLUMNS[_column]["Description"] = (
        "Mean over the run's averaged volumes of: " + GROUP_COLUMNS[_column]["Description"]
    )


def write_group_metrics(output_dir: Path, paths: list[Path]) -> Path:
    """Write ``group_desc-synth_metrics.tsv`` and its sidecar; returns the table's path."""
    frame = gather_metrics(paths)
    path = Path(output_dir) / GROUP_TABLE
    text = frame[list(GROUP_COLUMNS)].to_csv(
        sep="\t", index=False, na_rep="n/a", float_format="%.6g", lineterminator="\n"
    )
    write_json_atomic(
        path.with_suffix(".json"),
        {
            "Description": "Every participant's metrics of the synthesized and baseline BOLD "
            "against the observed BOLD, one row per (participant, run, method).",
            "Sources": [f"bids::{p.relative_to(output_dir).as_posix()}" for p in paths],
            **GROUP_COLUMNS,
        },
    )
    write_text_atomic(path, text)
    LOGGER.info("Group metrics of %d run table(s): %s", len(paths), path)
    for line in summary_lines(frame):
        LOGGER.info("%s", line)
    return path


def summary_lines(frame) -> list[str]:
    """One line per split group, generalisation first: each method's mean over
    participants of the headline metric with its 95 % bootstrap interval."""
    from bids_eeg2fmri.evaluation.summary import GROUP_WORDS, describe, headline_metric, split_means

    found = headline_metric(frame)
    if found is None:
        return []
    metric, words = found
    methods = sorted({str(m) for m in frame["method"]}, key=lambda m: (m != "model", m))
    means = split_means(frame, metric, methods)
    lines = []
    for group in dict.fromkeys(m.group for m in means):
        chosen = [m for m in means if m.group == group]
        n = max(m.n for m in chosen)
        lines.append(
            f"{GROUP_WORDS[group]}, {n} participant(s), {words} (mean [95 % bootstrap "
            "interval over participants]): "
            + "; ".join(f"{m.method} {describe(m)}" for m in chosen)
        )
        lines += _baselines_ahead(group, chosen)
    return lines


def _baselines_ahead(group: str, chosen: list) -> list[str]:
    """Said plainly where a baseline beats the model on participants it did not train on."""
    from bids_eeg2fmri.evaluation.summary import GROUP_WORDS

    model = next((m for m in chosen if m.method == "model"), None)
    if group == "in training" or model is None:
        return []
    ahead = [m for m in chosen if m.method != "model" and m.mean > model.mean]
    return [
        f"{GROUP_WORDS[group].split(' (')[0]}: the {m.method} baseline scores above the model "
        f"({m.mean:.3f} vs {model.mean:.3f}): the model needs more training participants to "
        "beat it (README, 'How much data')"
        for m in ahead
    ]

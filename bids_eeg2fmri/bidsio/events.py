"""events.tsv in and out: markers from a recording's events, the aligned volumes out."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from bids_eeg2fmri.bidsio.files import write_json_atomic, write_tsv_atomic
from bids_eeg2fmri.bidsio.reading import read_tsv_rows
from bids_eeg2fmri.errors import DataError

LOGGER = logging.getLogger(__name__)


def read_event_markers(path: Path, *, warn: bool = True) -> tuple[list[str], np.ndarray]:
    """Descriptions and onsets (s) of the rows of an ``_events.tsv``.

    The description is ``trial_type`` when present, else ``value``; rows whose onset is
    ``n/a`` are skipped (with a warning that counts them, unless ``warn`` is False: the
    command line checks every events.tsv before the workflow runs, which reads it again).

    Raises
    ------
    DataError
        Not UTF-8, no ``onset`` column, a row whose length is not the header's, or an
        onset that is neither a number nor ``n/a`` (the file and the line are named).
    """
    descriptions, onsets, n_missing = [], [], 0
    header, rows = read_tsv_rows(Path(path))
    if "onset" not in header:
        raise DataError(
            f"{path}: no onset column (header: {', '.join(header)}) "
            "(a tab-separated table whose first column is onset)"
        )
    for line, values in rows:
        row = dict(zip(header, values, strict=True))
        text = (row.get("onset") or "").strip()
        if text == "n/a":
            n_missing += 1
            continue
        try:
            onset = float(text)
        except ValueError:
            onset = math.nan
        if not math.isfinite(onset):
            raise DataError(
                f"{path}: column onset, line {line}: {text!r} (a number of seconds, or n/a)"
            )
        label = row.get("trial_type") or row.get("value") or ""
        if label and label != "n/a":
            descriptions.append(label)
            onsets.append(onset)
    if n_missing and warn:
        LOGGER.warning("%s: %d row(s) with onset n/a: skipped", path, n_missing)
    return descriptions, np.asarray(onsets, float)


VOLUMES_SIDECAR = {
    "Description": "Onset of every stored BOLD volume on the EEG clock, as used to cut the EEG "
    "windows that predict it.",
    "onset": {"Description": "Volume onset, from the first EEG sample.", "Units": "s"},
    "duration": {"Description": "Repetition time.", "Units": "s"},
    "trial_type": {"Description": "Always 'volume'."},
    "sample": {"Description": "EEG sample at the onset (0 = first sample)."},
    "volume": {"Description": "Index of the stored BOLD volume (0 = first kept volume)."},
    "marker": {
        "Description": "How the onset was obtained.",
        "Levels": {
            "found": "a volume marker of the recording",
            "repaired": "a missing marker put back on the TR grid",
            "given": "from --first-volume-onset and the TR",
            "assumed": "from --assume-eeg-starts-at-first-volume and the TR",
        },
    },
}


def write_volume_events(
    path: Path, *, onsets: np.ndarray, how: np.ndarray, tr: float, sfreq: float, sources: list[str]
) -> Path:
    """Write ``<entities>_desc-volumes_events.tsv`` and its JSON sidecar, atomically."""
    rows = [
        [f"{onset:.6f}", f"{tr:.6g}", "volume", str(int(round(onset * sfreq))), str(v), kind]
        for v, (onset, kind) in enumerate(zip(onsets, how, strict=True))
    ]
    write_json_atomic(path.with_suffix(".json"), {**VOLUMES_SIDECAR, "Sources": sources})
    header = ["onset", "duration", "trial_type", "sample", "volume", "marker"]
    return write_tsv_atomic(path, header, rows)

"""events.tsv in and out: markers from a recording's events, the aligned volumes out."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from bids_eeg2fmri.bidsio.files import write_json_atomic, write_tsv_atomic


def read_event_markers(path: Path) -> tuple[list[str], np.ndarray]:
    """Descriptions and onsets (s) of the rows of an ``_events.tsv``.

    The description is ``trial_type`` when present, else ``value``; rows without a
    numeric onset are ignored.
    """
    descriptions, onsets = [], []
    with open(path, newline="", encoding="utf-8-sig") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            try:
                onset = float(row.get("onset", "n/a"))
            except ValueError:
                continue
            label = row.get("trial_type") or row.get("value") or ""
            if label and label != "n/a":
                descriptions.append(label)
                onsets.append(onset)
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

"""The derivatives of the MR artifact correction: the corrected EEG's sidecars, and the
per-channel metrics table whose JSON gives every column's formula."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bids_eeg2fmri.bidsio.files import write_json_atomic, write_tsv_atomic

#: Column -> description (with its formula) of ``*_desc-mrcorrected_metrics.tsv``.
METRIC_COLUMNS: dict[str, str] = {
    "channel": "Channel name.",
    "type": "Channel type (BIDS).",
    "rms_ratio": "RMS of the raw channel over the RMS of the gradient-corrected one, over "
    "the artifact epochs, at the recording's rate (before downsampling).",
    "volume_contrast_before_db": "Gradient artifact detector on the raw channel (low-passed "
    "and downsampled like the output): median over the volume harmonics k/TR below "
    "min(250 Hz, 0.45 fs) of 10 log10(P(k/TR) / mean(P(k/TR - 1/(2TR)), P(k/TR + 1/(2TR)))), "
    "P the Welch PSD with 4-TR Hann segments. Clean EEG is near 0 dB.",
    "volume_contrast_after_db": "The same on the corrected channel.",
    "volume_power_before_db": "10 log10 of the mean PSD (V^2/Hz) at volume harmonics 1-5 "
    "(k/TR, within 1/(8 TR) Hz; Welch, 4-TR segments) of the raw channel, downsampled.",
    "volume_power_after_db": "The same on the corrected channel.",
    "volume_power_clean_db": "The same on the clean EEG (simulated data).",
    "slice_power_before_db": "10 log10 of the mean PSD (V^2/Hz) within 0.5 Hz of slice "
    "harmonics 1-5 below Nyquist (k times the slice rate from SliceTiming; Welch, 4-s "
    "segments) of the raw channel, downsampled.",
    "slice_power_after_db": "The same on the corrected channel.",
    "slice_power_clean_db": "The same on the clean EEG (simulated data).",
    "r_clean": "Pearson r of the corrected and the clean channel (simulated data), both "
    "band-passed to 1-45 Hz (4th-order Butterworth, zero phase), over the scan.",
    "delta_power_error_pct": "100 (P / P_clean - 1), P the Welch band power in 0.8-4 Hz of "
    "the corrected channel, P_clean the clean one's (simulated data).",
    "theta_power_error_pct": "As delta_power_error_pct, in 4-8 Hz.",
    "alpha_power_error_pct": "As delta_power_error_pct, in 8-12 Hz.",
    "beta_power_error_pct": "As delta_power_error_pct, in 12-24 Hz.",
}

_UNITS = {"db": "dB", "pct": "%"}


def write_metrics(
    path: Path,
    *,
    ch_names: Sequence[str],
    ch_types: Sequence[str],
    columns: Mapping[str, np.ndarray],
    run: Mapping[str, Any],
) -> Path:
    """Write the per-channel metrics TSV (columns in :data:`METRIC_COLUMNS` order) and its
    JSON sidecar: each column's description and units, and the run's summary ``run``."""
    names = [c for c in METRIC_COLUMNS if c in columns]
    rows = []
    for i, (name, kind) in enumerate(zip(ch_names, ch_types, strict=True)):
        rows.append([name, kind, *(_fmt(columns[c][i]) for c in names)])
    sidecar: dict[str, Any] = {}
    for column in ["channel", "type", *names]:
        entry = {"Description": METRIC_COLUMNS[column]}
        unit = _UNITS.get(column.rsplit("_", 1)[-1])
        if unit:
            entry["Units"] = unit
        sidecar[column] = entry
    sidecar["Run"] = dict(run)
    write_json_atomic(path.with_suffix(".json"), sidecar)
    return write_tsv_atomic(path, ["channel", "type", *names], rows)


def eeg_sidecar(
    raw_sidecar: Mapping[str, Any],
    *,
    sfreq: float,
    anti_alias: float,
    correction: Mapping[str, Any],
) -> dict[str, Any]:
    """The corrected EEG's ``_eeg.json``: the raw one's, with the new rate, the filter
    and what was done."""
    sidecar = dict(raw_sidecar)
    sidecar["SamplingFrequency"] = sfreq
    filters = sidecar.get("SoftwareFilters")
    filters = dict(filters) if isinstance(filters, dict) else {}
    filters["Anti-aliasing low-pass"] = {
        "Type": "polyphase FIR (Kaiser window, beta 8)",
        "CutoffFrequency": anti_alias,
    }
    sidecar["SoftwareFilters"] = filters
    sidecar["Description"] = (
        "EEG recorded in the MR scanner, corrected for the gradient (imaging) and/or pulse "
        "(ballistocardiogram) artifacts and downsampled; see MRCorrection."
    )
    sidecar["MRCorrection"] = dict(correction)
    return sidecar


def write_channels(path: Path, *, ch_names: Sequence[str], ch_types: Sequence[str]) -> Path:
    """A ``_channels.tsv`` (name, type, units: µV for electrical channels) and its JSON."""
    rows = [
        [n, t, "µV" if t in ("EEG", "EOG", "ECG", "EMG") else "n/a"]
        for n, t in zip(ch_names, ch_types, strict=True)
    ]
    write_json_atomic(
        path.with_suffix(".json"),
        {
            "name": {"Description": "Channel name, as in the corrected recording."},
            "type": {"Description": "Channel type, as in the raw recording's channels.tsv."},
            "units": {"Description": "Physical unit of the channel's samples."},
        },
    )
    return write_tsv_atomic(path, ["name", "type", "units"], rows)


def _fmt(value) -> str:
    value = float(value)
    return "n/a" if not np.isfinite(value) else f"{value:.6g}"

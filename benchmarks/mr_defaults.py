"""How the MR correction's defaults were chosen: one setting varied at a time from the
defaults, on the realistic simulated runs of the ``mr`` section.

    python benchmarks/mr_defaults.py SCRATCH   # SCRATCH: a bench.py --scratch folder that
                                               # holds mr-gradient/ and mr-gradient-pulse/

Prints a Markdown table (kept in benchmarks/NOTES.md): per setting, the median and minimum
over the EEG channels of r with the clean EEG in 1-45 Hz, and the power at the volume and
slice harmonics above the clean EEG's (dB, median), over the marked volumes.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import mr_worker
import numpy as np

from bids_eeg2fmri.signals import mr_correction as mr

GRADIENT = [
    {},
    {"window": 16},
    {"window": 24},
    {"window": 36},
    {"window": 48},
    {"n_components": 0},
    {"obs_artifact_db": None},
    {"obs_artifact_db": 25.0},
    {"obs_artifact_db": 35.0},
    {"obs_artifact_db": 40.0},
]
PULSE = [{}, {"pulse_window": 30}, {"pulse_window": 120}, {"pulse_span": (0.0, 0.7)}]


def measure(data: Path, mode: str, change: dict) -> dict:
    import mne

    raw_path, clean_path = (str(p) for p in _paths(data))
    raw = mne.io.read_raw_brainvision(raw_path, verbose="error")
    clean = mne.io.read_raw_brainvision(clean_path, verbose="error")
    meta = mr_worker._bold_meta(Path(raw_path))
    tr, slice_f = float(meta["RepetitionTime"]), mr_worker._slice_frequency(meta)
    eeg = mr_worker._eeg_picks(raw)
    markers = mr_worker._markers(raw, mr_worker.MARKER)
    settings = dataclasses.replace(mr.MRSettings(mode=mode, threads=2), **change)
    start = time.perf_counter()
    result = mr.correct_recording(
        raw,
        markers=markers,
        tr=tr,
        eeg_picks=eeg,
        ecg_pick=raw.ch_names.index("ECG"),
        settings=settings,
        slice_frequency=slice_f,
        clean=clean,
        progress=lambda text: None,
    )
    scale = result.sfreq / raw.info["sfreq"]
    span = slice(int(markers[0] * scale), int((markers[-1] + tr * raw.info["sfreq"]) * scale))
    figures = mr_worker._measure(
        result.data, result.qc["clean"], result.sfreq, span, tr, slice_f, eeg
    )
    return figures | {"seconds": time.perf_counter() - start}


def _paths(data: Path):
    raw = data / "sub-01" / "eeg" / "sub-01_task-rest_eeg.vhdr"
    clean = data / "derivatives/simulation/sub-01/eeg/sub-01_task-rest_desc-clean_eeg.vhdr"
    return raw, clean


def main() -> int:
    scratch = Path(sys.argv[1])
    print("| data | setting | r median | r min | volume harm. dB | slice harm. dB |")
    print("|---|---|---|---|---|---|")
    for name, mode, changes in (
        ("mr-gradient", "gradient", GRADIENT),
        ("mr-gradient-pulse", "gradient+pulse", PULSE),
    ):
        for change in changes:
            f = measure(scratch / name, mode, change)
            label = ", ".join(f"{k}={v}" for k, v in change.items()) or "defaults"
            cells = [f["r_median"], f["r_min"], f["volume_power_excess_db"]]
            cells.append(f.get("slice_power_excess_db", np.nan))
            print(f"| {name} | {label} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

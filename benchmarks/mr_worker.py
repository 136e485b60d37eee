"""One MR artifact correction, measured in its own process (the harness samples its memory).

    python benchmarks/mr_worker.py ours RAW.vhdr OUT.json [--clean CLEAN.vhdr] [--threads N]
    python benchmarks/mr_worker.py mne RAW.vhdr OUT.json --clean CLEAN.vhdr

``ours``: bids_eeg2fmri.signals.mr_correction on the recording opened without preloading
(as the app runs it). ``mne``: MNE 1.13's ``remove_fmri_gradient_artifact`` (per volume,
window (4, 4), one sample of tolerance: our markers alternate two spacings) on the
preloaded recording, downsampled like ours, then R peaks with ``find_ecg_events`` and
``apply_pca_obs`` (4 components) on the EEG channels. Both are measured against the clean
EEG over the marked volumes with the same functions (bids_eeg2fmri.signals.mr_quality).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

MARKER = "Response/R128"
SLICE_MARKER = "Scanner/Slice"


def _markers(raw, description: str) -> np.ndarray:
    keep = raw.annotations.description == description
    return np.round((raw.annotations.onset[keep] - raw.first_time) * raw.info["sfreq"]).astype(
        np.int64
    )


def _eeg_picks(raw) -> list[int]:
    """The EEG channels (the simulator's ECG is typed EEG in the BrainVision header)."""
    return [
        i for i, t in enumerate(raw.get_channel_types()) if t == "eeg" and raw.ch_names[i] != "ECG"
    ]


def _bold_meta(vhdr: Path) -> dict:
    stem = vhdr.name.rsplit("_eeg", 1)[0]
    path = vhdr.parent.parent / "func" / f"{stem}_bold.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _slice_frequency(meta: dict) -> float | None:
    times = np.unique(np.round(np.asarray(meta.get("SliceTiming", []), float), 6))
    return float(1 / np.median(np.diff(times))) if times.size > 1 else None


def _measure(data, clean, sfreq, span, tr, slice_f, eeg) -> dict:
    from bids_eeg2fmri.signals import mr_quality as q

    a, b = data[eeg][:, span], clean[eeg][:, span]
    volume = dict(f0=1 / tr, segment=4 * tr, half_width=1 / (8 * tr))
    figures = {
        "r_median": float(np.median(q.band_correlation(a, b, sfreq))),
        "r_min": float(np.min(q.band_correlation(a, b, sfreq))),
        "volume_power_excess_db": float(
            np.median(
                q.harmonic_power_db(a, sfreq, **volume) - q.harmonic_power_db(b, sfreq, **volume)
            )
        ),
        "volume_contrast_db": float(np.median(q.comb_contrast(a, sfreq, tr=tr))),
    }
    if slice_f:
        excess = q.harmonic_power_db(a, sfreq, f0=slice_f) - q.harmonic_power_db(
            b, sfreq, f0=slice_f
        )
        figures["slice_power_excess_db"] = float(np.median(excess))
    for band, error in q.band_power_error(a, b, sfreq).items():
        figures[f"{band}_power_error_pct"] = float(np.median(error))
    return figures


def ours(args) -> dict:
    import mne

    from bids_eeg2fmri.signals import mr_correction as mr

    raw = mne.io.read_raw_brainvision(args.raw, verbose="error")
    clean = mne.io.read_raw_brainvision(args.clean, verbose="error") if args.clean else None
    meta = _bold_meta(Path(args.raw))
    tr = float(meta.get("RepetitionTime", args.tr))
    eeg = _eeg_picks(raw)
    ecg = raw.ch_names.index("ECG") if "ECG" in raw.ch_names else None
    slices = _markers(raw, SLICE_MARKER) if args.slices else None
    start = time.perf_counter()
    result = mr.correct_recording(
        raw,
        markers=_markers(raw, MARKER),
        tr=tr,
        eeg_picks=eeg,
        ecg_pick=ecg,
        settings=mr.MRSettings(mode=args.mode, threads=args.threads),
        slice_markers=slices,
        slice_frequency=_slice_frequency(meta),
        clean=clean,
        progress=lambda text: None,
    )
    seconds = time.perf_counter() - start
    figures = {
        "seconds": round(seconds, 2),
        "eeg_seconds": raw.n_times / raw.info["sfreq"],
        "channels": len(raw.ch_names),
        "gradient": result.gradient,
        "pulse": {k: v for k, v in result.pulse.items() if k != "skipped"},
    }
    if clean is not None:
        markers = _markers(raw, MARKER)
        scale = result.sfreq / raw.info["sfreq"]
        span = slice(int(markers[0] * scale), int((markers[-1] + tr * raw.info["sfreq"]) * scale))
        figures |= _measure(
            result.data, result.qc["clean"], result.sfreq, span, tr, _slice_frequency(meta), eeg
        )
    return figures


def mne_yardstick(args) -> dict:
    import mne

    from bids_eeg2fmri.signals.mr_correction import downsample, resampling_ratio

    raw = mne.io.read_raw_brainvision(args.raw, preload=True, verbose="error")
    clean = mne.io.read_raw_brainvision(args.clean, preload=True, verbose="error")
    meta = _bold_meta(Path(args.raw))
    tr, sfreq = float(meta.get("RepetitionTime", args.tr)), raw.info["sfreq"]
    eeg = _eeg_picks(raw)
    markers = _markers(raw, MARKER)
    start = time.perf_counter()
    mne.preprocessing.remove_fmri_gradient_artifact(
        raw, markers, window=(4, 4), tr_tol=1, picks="all", copy=False, verbose="error"
    )
    gradient_seconds = time.perf_counter() - start
    ratio = resampling_ratio(sfreq, 250.0)
    out_sfreq = sfreq * ratio.numerator / ratio.denominator
    data = np.stack([downsample(x, ratio) for x in raw.get_data()])
    del raw
    ecg_raw = mne.io.RawArray(
        data[-1:], mne.create_info(["ECG"], out_sfreq, "ecg"), verbose="error"
    )
    events, _, _ = mne.preprocessing.find_ecg_events(ecg_raw, ch_name="ECG", verbose="error")
    peaks = events[:, 0] / out_sfreq
    eeg_raw = mne.io.RawArray(
        data[eeg], mne.create_info(len(eeg), out_sfreq, "eeg"), verbose="error"
    )
    pulse_start = time.perf_counter()
    corrected = mne.preprocessing.apply_pca_obs(
        eeg_raw, picks=eeg_raw.ch_names, qrs_times=peaks, n_components=4, verbose="error"
    ).get_data()
    pulse_seconds = time.perf_counter() - pulse_start
    clean_data = np.stack([downsample(x, ratio) for x in clean.get_data()])
    span = slice(
        int(markers[0] * out_sfreq / sfreq), int((markers[-1] + tr * sfreq) * out_sfreq / sfreq)
    )
    all_eeg = list(range(len(eeg)))
    gradient_only = _measure(
        data[eeg], clean_data[eeg], out_sfreq, span, tr, _slice_frequency(meta), all_eeg
    )
    with_pulse = _measure(
        corrected, clean_data[eeg], out_sfreq, span, tr, _slice_frequency(meta), all_eeg
    )
    return {
        "seconds": round(gradient_seconds, 2),
        "pulse_seconds": round(pulse_seconds, 2),
        "eeg_seconds": data.shape[1] / out_sfreq,
        "n_r_peaks": int(peaks.size),
        "gradient_only": gradient_only,
        "with_pulse": with_pulse,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("method", choices=("ours", "mne"))
    parser.add_argument("raw")
    parser.add_argument("out", type=Path)
    parser.add_argument("--clean")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--mode", default="auto")
    parser.add_argument("--slices", action="store_true", help="use the slice markers")
    parser.add_argument("--tr", type=float, default=2.0, help="without a BOLD sidecar")
    args = parser.parse_args()
    figures = ours(args) if args.method == "ours" else mne_yardstick(args)
    args.out.write_text(json.dumps(figures, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())

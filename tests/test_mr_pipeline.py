"""Raw in-scanner EEG end to end: the simulator's artifacts and truth, then the
participant level with ``--mr-correction`` on it (small: 12 channels at 1 kHz, 40 volumes)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import mne
import numpy as np
import pytest
from conftest import run_cli

from bids_eeg2fmri.bidsio.validator import errors_of, run_validator
from bids_eeg2fmri.simulate.generator import SimulationConfig
from bids_eeg2fmri.simulate.writer import simulate_dataset

MR = dict(
    n_volumes=40,
    n_channels=12,
    sfreq=1000.0,
    # 32 slices (the simulator's slices are the grid's): a real scanner's slice rate; with 8
    # the slice harmonics (3.7 Hz apart) fall where R peaks are found, and the ECG fails
    grid=(12, 13, 32),
    mr_artifacts=("gradient", "pulse"),
    lead_range=(14.0, 16.0),
)
RUN = "sub-01_task-rest"
EEG = Path("sub-01") / "eeg"


@pytest.fixture(scope="module")
def mr_dataset(tmp_path_factory) -> Path:
    """Two participants of raw in-scanner EEG with slice markers (read-only)."""
    config = SimulationConfig(n_participants=2, slice_markers=True, **MR)
    return simulate_dataset(config, tmp_path_factory.mktemp("mr") / "ds")


def participant(bids, tmp_path, capsys, *extra, out="out"):
    return run_cli(
        [
            bids,
            tmp_path / out,
            "participant",
            "--skip-bids-validation",
            "-w",
            tmp_path / "work",
            "--nprocs",
            "1",
            *extra,
        ],
        capsys,
    )


def _read(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


# --------------------------------------------------------------------------- simulator
def test_simulator_writes_raw_in_scanner_eeg_with_its_truth(mr_dataset, tmp_path):
    assert errors_of(run_validator(mr_dataset, cache_dir=tmp_path / "deno")) == []
    raw = mne.io.read_raw_brainvision(mr_dataset / EEG / f"{RUN}_eeg.vhdr", verbose="error")
    truth = mr_dataset / "derivatives" / "simulation" / EEG
    clean = mne.io.read_raw_brainvision(truth / f"{RUN}_desc-clean_eeg.vhdr", verbose="error")
    assert clean.ch_names == raw.ch_names and clean.n_times == raw.n_times
    artifact = raw.get_data() - clean.get_data()
    ratio = artifact.std(axis=1) / clean.get_data().std(axis=1)
    assert np.all(ratio > 10), ratio  # gradient 20-50 times the EEG over the scan

    descriptions = raw.annotations.description
    assert (descriptions == "Response/R128").sum() == 40
    n_slices = MR["grid"][2]  # one slice per BOLD slice by default
    assert (descriptions == "Scanner/Slice").sum() == 40 * n_slices
    meta = json.loads((mr_dataset / "sub-01/func" / f"{RUN}_bold.json").read_text())
    assert (
        len(meta["SliceTiming"]) == n_slices and max(meta["SliceTiming"]) < meta["RepetitionTime"]
    )

    scanner = _read(truth / f"{RUN}_desc-scanner_events.tsv")
    assert [r["trial_type"] for r in scanner].count("unmarked") == 3
    period = json.loads((truth / f"{RUN}_desc-scanner_events.json").read_text())["SlicePeriod"]
    assert abs(period * 1000 - round(period * 1000)) > 0.01  # not a whole number of samples
    beats = np.array(
        [float(r["onset"]) for r in _read(truth / f"{RUN}_desc-heartbeats_events.tsv")]
    )
    intervals = np.diff(beats)
    assert 55 < 60 / np.median(intervals) < 75 and 0.02 < intervals.std() / intervals.mean() < 0.2
    # the pulse artifact follows the R peaks by about 0.2 s: the beat-locked average of
    # what the artifacts add, outside the scan (no gradient there), peaks after that
    sfreq = raw.info["sfreq"]
    first_marker = raw.annotations.onset[descriptions == "Response/R128"][0]
    unmarked = 3 * 2.16
    before_scan = beats[(beats > 0.1) & (beats < first_marker - unmarked - 1.0)]
    locked = np.mean(
        [
            np.abs(artifact[:-1, int(b * sfreq) : int((b + 0.8) * sfreq)]).mean(0)
            for b in before_scan
        ],
        axis=0,
    )
    assert 0.15 < np.argmax(locked) / sfreq < 0.6


# --------------------------------------------------------------------------- pipeline
def test_participant_corrects_raw_in_scanner_eeg(mr_dataset, tmp_path, capsys):
    code, errors = participant(
        mr_dataset,
        tmp_path,
        capsys,
        "--train",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--model-grid",
        "12",
        "13",
        "8",
        "--lrp-volumes",
        "4",
    )
    assert code == 0, errors
    out = tmp_path / "out"
    stem = out / EEG / f"{RUN}_desc-mrcorrected"
    for suffix in (
        "_eeg.vhdr",
        "_eeg.vmrk",
        "_eeg.eeg",
        "_eeg.json",
        "_channels.tsv",
        "_metrics.tsv",
        "_metrics.json",
    ):
        assert Path(f"{stem}{suffix}").is_file(), suffix
    corrected = mne.io.read_raw_brainvision(f"{stem}_eeg.vhdr", verbose="error")
    assert corrected.info["sfreq"] == 250.0
    markers = corrected.annotations.onset[corrected.annotations.description == "Response/R128"]
    raw = mne.io.read_raw_brainvision(mr_dataset / EEG / f"{RUN}_eeg.vhdr", verbose="error")
    raw_markers = raw.annotations.onset[raw.annotations.description == "Response/R128"]
    assert np.allclose(markers, raw_markers, atol=2 / 250)  # the markers, on the new clock

    sidecar = json.loads(Path(f"{stem}_eeg.json").read_text())
    assert sidecar["SamplingFrequency"] == 250.0 and sidecar["Sources"]
    assert sidecar["MRCorrection"]["Gradient"]["epochs"] == "slice"
    assert sidecar["MRCorrection"]["Pulse"]["corrected"] is True
    rows = [r for r in _read(Path(f"{stem}_metrics.tsv")) if r["type"] == "EEG"]
    assert np.median([float(r["r_clean"]) for r in rows]) > 0.85
    assert all(float(r["volume_contrast_after_db"]) < 1.5 for r in rows)
    assert all(float(r["volume_contrast_before_db"]) > 3 for r in rows)
    columns = json.loads(Path(f"{stem}_metrics.json").read_text())
    assert all("Description" in columns[c] for c in rows[0])

    figures = out / "sub-01" / "figures"
    assert (figures / f"{RUN}_desc-mrspectra_psd.svg").is_file()
    assert (figures / f"{RUN}_desc-mrpeaks_ecg.svg").is_file()
    report = (out / "sub-01.html").read_text()
    assert "MR artifacts: corrected the gradient and pulse artifact(s)" in report
    assert "desc-mrspectra_psd.svg" in report
    report = run_validator(out, cache_dir=tmp_path / "deno")
    assert errors_of(report) == []

    # a rerun reuses the correction; derivatives removed from OUTPUT_DIR come back
    work_copy = next((tmp_path / "work").rglob(f"{RUN}_desc-mrcorrected_eeg.eeg"))
    stamp = work_copy.stat().st_mtime_ns
    Path(f"{stem}_eeg.eeg").unlink()
    Path(f"{stem}_metrics.tsv").unlink()
    code, errors = participant(
        mr_dataset,
        tmp_path,
        capsys,
        "--train",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--model-grid",
        "12",
        "13",
        "8",
        "--lrp-volumes",
        "4",
    )
    assert code == 0, errors
    assert work_copy.stat().st_mtime_ns == stamp
    assert Path(f"{stem}_eeg.eeg").is_file() and Path(f"{stem}_metrics.tsv").is_file()


def test_none_refuses_raw_in_scanner_eeg(mr_dataset, tmp_path, capsys):
    code, errors = participant(
        mr_dataset, tmp_path, capsys, "--participant-label", "01", "--mr-correction", "none"
    )
    assert code == 65
    assert "gradient artifacts" in errors[0] and "--mr-correction auto" in errors[0]
    assert "sub-01_task-rest_eeg.vhdr" in errors[0]
    assert not list((tmp_path / "out").rglob("*_desc-*"))  # nothing of the failed run


def test_volume_epochs_without_slice_markers(tmp_path, capsys):
    root = simulate_dataset(SimulationConfig(n_participants=1, **MR), tmp_path / "ds")
    code, errors = participant(root, tmp_path, capsys, "--mr-correction", "gradient")
    assert code == 0, errors
    stem = tmp_path / "out" / EEG / f"{RUN}_desc-mrcorrected"
    run = json.loads(Path(f"{stem}_metrics.json").read_text())["Run"]
    assert run["Gradient"]["epochs"] == "volume" and run["Gradient"]["n_unmarked"] == 3
    assert run["Pulse"]["corrected"] is False and run["Pulse"]["skipped"]


def test_without_ecg(tmp_path, capsys):
    root = simulate_dataset(SimulationConfig(n_participants=1, ecg=False, **MR), tmp_path / "ds")
    code, errors = participant(root, tmp_path, capsys, "--mr-correction", "gradient+pulse")
    assert code == 65
    assert "--mr-correction gradient+pulse needs an ECG channel" in errors[0]
    assert "--ecg-channel" in errors[0]
    code, errors = participant(root, tmp_path, capsys, "--ecg-channel", "EKG", out="named")
    assert code == 65 and "--ecg-channel EKG: no such channel" in errors[0]
    code, errors = participant(root, tmp_path, capsys, out="auto")
    assert code == 0, errors  # auto corrects the gradient, and warns about the pulse
    log = next((tmp_path / "auto" / "logs").glob("*.log")).read_text()
    assert "WARNING" in log and "no ECG channel: the pulse artifact is not corrected" in log
    run = json.loads(
        (tmp_path / "auto" / EEG / f"{RUN}_desc-mrcorrected_metrics.json").read_text()
    )["Run"]
    assert run["Gradient"]["corrected"] and not run["Pulse"]["corrected"]


def test_flat_ecg_with_gradient_pulse_fails_cleanly(mr_dataset, tmp_path, capsys):
    from bids_eeg2fmri.bidsio.brainvision import write_brainvision

    root = Path(shutil.copytree(mr_dataset, tmp_path / "ds"))
    vhdr = root / EEG / f"{RUN}_eeg.vhdr"
    raw = mne.io.read_raw_brainvision(vhdr, preload=True, verbose="error")
    data = raw.get_data()
    data[raw.ch_names.index("ECG")] = 0.0
    write_brainvision(
        vhdr,
        data,
        sfreq=raw.info["sfreq"],
        ch_names=raw.ch_names,
        descriptions=raw.annotations.description,
        onsets=raw.annotations.onset,
    )
    code, errors = participant(
        root, tmp_path, capsys, "--participant-label", "01", "--mr-correction", "gradient+pulse"
    )
    assert code == 65
    assert "ECG channel ECG: the ECG is flat" in errors[0]
    assert not list((tmp_path / "out").rglob("*_desc-*"))


def test_clean_eeg_is_left_alone(sim_dataset, tmp_path, capsys):
    code, errors = participant(sim_dataset, tmp_path, capsys, "--participant-label", "01")
    assert code == 0, errors
    assert not list((tmp_path / "out").rglob("*mrcorrected*"))
    record = json.loads(next((tmp_path / "work").rglob("mr_correction/mr.json")).read_text())
    assert record["Decision"].startswith("no MR artifact corrected")
    assert not record["Gradient"]["detected"] and not record["Pulse"]["detected"]

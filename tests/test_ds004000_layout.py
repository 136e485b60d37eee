"""The two-dataset path on a dataset laid out as OpenNeuro ds004000 (the seed's
classification dataset): three-digit participant labels, two tasks of one run each, Biosemi
EXG channels in the BrainVision files (and with no position in the participant-level
electrodes.tsv), patients' files with two more EXG channels and shorter runs, no
channels.tsv, no events.tsv, and a proposer sidecar whose TaskName says "responder"."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mne
import numpy as np
import pandas as pd
import pybv
import pytest
from conftest import TINY, built_once, run_cli

from bids_eeg2fmri.simulate.generator import SimulationConfig
from bids_eeg2fmri.simulate.writer import simulate_dataset
from bids_eeg2fmri.workflows.views import read_views

TASKS = ("proposer", "responder")
EXG = ["EXG1", "EXG2", "EXG7", "EXG8"]
EXG_PATIENTS = EXG + ["EXG3", "EXG4"]


def _ds004000_like(source: Path, root: Path) -> Path:
    """``source`` (a simulated EEG-only groups dataset) rewritten in ds004000's layout."""
    for name in ("dataset_description.json", "README", "participants.json"):
        shutil.copy(source / name, root / name)
    table = pd.read_csv(source / "participants.tsv", sep="\t", dtype=str)
    table["participant_id"] = [f"sub-{k:03d}" for k in range(len(table))]
    table.to_csv(root / "participants.tsv", sep="\t", index=False)
    for k, group in enumerate(table["group"]):
        old = source / f"sub-{k + 1:02d}" / "eeg"
        label = f"sub-{k:03d}"
        eeg_dir = root / label / "eeg"
        eeg_dir.mkdir(parents=True)
        extra = EXG_PATIENTS if group == "P" else EXG
        electrodes = pd.read_csv(
            next(old.glob("*_electrodes.tsv")), sep="\t", dtype=str, keep_default_na=False
        )
        unplaced = pd.DataFrame({c: ["n/a"] * len(extra) for c in electrodes.columns})
        unplaced["name"] = extra
        pd.concat([electrodes, unplaced]).to_csv(
            eeg_dir / f"{label}_electrodes.tsv", sep="\t", index=False
        )
        shutil.copy(next(old.glob("*_coordsystem.json")), eeg_dir / f"{label}_coordsystem.json")
        raw = mne.io.read_raw_brainvision(next(old.glob("*.vhdr")), verbose="error")
        raw.pick([n for n in raw.ch_names if n != "ECG"])
        data = raw.get_data()
        noise = np.random.default_rng(k).normal(0, 20e-6, (len(extra), data.shape[1]))
        data = np.vstack([data, noise])
        sidecar = json.loads(next(old.glob("*_eeg.json")).read_text())
        n = data.shape[1] if group == "HC" else int(0.8 * data.shape[1])
        for task in TASKS:
            stem = f"{label}_task-{task}_run-1_eeg"
            pybv.write_brainvision(
                data=data[:, :n] * 1e6, sfreq=raw.info["sfreq"], ch_names=raw.ch_names + extra,
                fname_base=stem, folder_out=eeg_dir, unit="µV", resolution=0.1,
            )  # fmt: skip
            sidecar |= {"TaskName": "responder", "RecordingDuration": n / raw.info["sfreq"]}
            (eeg_dir / f"{stem}.json").write_text(json.dumps(sidecar))
    return root


@pytest.fixture(scope="module")
def ds004000(tmp_path_factory) -> Path:
    config = SimulationConfig(
        n_participants=4, groups=(2, 2), group_effect=2.0, seed=7, eeg_only=True,
        montage="biosemi128", sfreq=256.0, **{**TINY, "n_channels": 24},
    )  # fmt: skip
    source = simulate_dataset(config, tmp_path_factory.mktemp("ds4k-source") / "ds")

    def build(folder: Path) -> None:
        (folder / "ds").mkdir()
        _ds004000_like(source, folder / "ds")

    return built_once(tmp_path_factory, "ds004000-layout", build) / "ds"


def test_a_dataset_laid_out_as_ds004000_runs_end_to_end(ds004000, trained, tmp_path, capsys):
    assert not list(ds004000.rglob("*_channels.tsv")) and not list(ds004000.rglob("*_events.tsv"))
    out = tmp_path / "out"
    model = trained / "models" / "compact.keras"
    args = [ds004000, out, "participant", "-w", tmp_path / "work", "--nprocs", "1",
            "--model", model, "--lrp-volumes", "0"]  # fmt: skip
    code, errors = run_cli(args, capsys)
    assert code == 0, errors
    log = max((out / "logs").glob("bids-eeg2fmri-*.log")).read_text()
    for label, extra in (("000", EXG), ("003", EXG_PATIENTS)):
        for task in TASKS:
            vhdr = ds004000 / f"sub-{label}" / "eeg" / f"sub-{label}_task-{task}_run-1_eeg.vhdr"
            assert f"{vhdr}: {', '.join(extra)} typed EEG, but the name says otherwise" in log
    # both tasks of every participant synthesized and summarised; the EXG channels counted
    # in the file's channels (the nuisance view) but not among the EEG
    for label in ("000", "001", "002", "003"):
        runs = sorted((out / f"sub-{label}" / "eeg").glob("*_desc-views_features.tsv"))
        assert [p.name.split("_")[1] for p in runs] == ["task-proposer", "task-responder"]
        nuisance = read_views(runs[0])["nuisance"]
        assert nuisance["n_channels_file"] == 24 + (4 if label in ("000", "001") else 6)
    code, errors = run_cli(
        [ds004000, out, "group", "--classify", "group", "--cv-folds", "2", "--cv-repeats", "2",
         "--permutations", "5"], capsys,
    )  # fmt: skip
    assert code == 0, errors
    metrics = pd.read_csv(out / "group_desc-classify_metrics.tsv", sep="\t").set_index("view")
    assert metrics["n_participants"].tolist() == [4] * 5
    predictions = pd.read_csv(out / "group_desc-classify_predictions.tsv", sep="\t")
    # a participant's two runs are one unit: one prediction per view and repeat
    assert (predictions.groupby(["view", "repeat"])["participant_id"].nunique() == 4).all()
    assert len(predictions) == 5 * 2 * 4

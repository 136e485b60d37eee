"""``group --classify``: a model trained on one simulated dataset applied to another with
two groups of participants, then classified (workflows/classify.py, views.py)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import TINY, built_once, run_cli

from bids_eeg2fmri.simulate.generator import SimulationConfig
from bids_eeg2fmri.simulate.writer import simulate_dataset
from bids_eeg2fmri.workflows.views import read_views, write_views

FAST = ["--cv-folds", "3", "--cv-repeats", "3", "--permutations", "40"]


def _apply(dataset: Path, model: Path, root: Path) -> None:
    from bids_eeg2fmri.cli.run import main

    args = [dataset, root / "out", "participant", "--skip-bids-validation", "-w", root / "work",
            "--nprocs", "1", "--model", model, "--lrp-volumes", "0"]  # fmt: skip
    assert main([str(a) for a in args]) == 0


@pytest.fixture(scope="session")
def groups_dataset(tmp_path_factory) -> Path:
    """6 patients and 6 controls, a strong alpha effect, EEG only, on another cap than the
    trained model's (32 channels of biosemi128, named A1-D32) at another sampling rate."""
    config = SimulationConfig(
        n_participants=12, groups=(6, 6), group_effect=2.0, seed=5, eeg_only=True,
        montage="biosemi128", sfreq=512.0, **{**TINY, "n_channels": 32},
    )  # fmt: skip
    return (
        built_once(tmp_path_factory, "groups", lambda f: simulate_dataset(config, f / "ds")) / "ds"
    )


@pytest.fixture(scope="session")
def applied(groups_dataset, trained, tmp_path_factory) -> Path:
    """OUTPUT_DIR of ``participant --model`` on :func:`groups_dataset` (read-only)."""
    model = trained / "models" / "compact.keras"
    return (
        built_once(tmp_path_factory, "applied", lambda r: _apply(groups_dataset, model, r)) / "out"
    )


def _group(bids: Path, out: Path, capsys, *extra) -> tuple[int, list[str]]:
    return run_cli([bids, out, "group", *extra], capsys)


def test_a_strong_effect_is_found_on_participant_wise_folds(groups_dataset, applied, trained,
                                                            tmp_path, capsys):  # fmt: skip
    out = Path(shutil.copytree(applied, tmp_path / "out"))
    code, errors = _group(groups_dataset, out, capsys, "--classify", "group", *FAST)
    assert code == 0, errors
    metrics = pd.read_csv(out / "group_desc-classify_metrics.tsv", sep="\t", na_values="n/a")
    metrics = metrics.set_index("view")
    assert list(metrics.index) == ["bandpower", "features", "latent", "synth", "nuisance"]
    assert (metrics["n_participants"] == 12).all() and (metrics["n_positive"] == 6).all()
    assert metrics.loc["bandpower", "auc_ci_low"] > 0.5
    assert metrics.loc["bandpower", "p_permutation"] < 0.05
    assert metrics.loc["bandpower", "delta_auc_vs_bandpower"] == 0
    # the effect is in the alpha band only: nothing of the recording itself predicts it
    assert metrics.loc["nuisance", "auc_ci_low"] <= 0.5

    predictions = pd.read_csv(out / "group_desc-classify_predictions.tsv", sep="\t")
    assert set(predictions["participant_id"]) == {f"sub-{i:02d}" for i in range(1, 13)}
    assert predictions.groupby("participant_id")["target"].first().sum() == 6
    # one test fold per participant, view and repeat; every fold holds both classes
    assert not predictions.duplicated(["participant_id", "view", "repeat"]).any()
    assert len(predictions) == 12 * 5 * 3
    folds = predictions[predictions["view"] == "bandpower"].groupby(["repeat", "fold"])["target"]
    assert (folds.nunique() == 2).all() and folds.ngroups == 3 * 3
    same = predictions.pivot_table(index=["participant_id", "repeat"], columns="view",
                                   values="fold")  # fmt: skip
    assert (same.nunique(axis=1) == 1).all()  # every view on the same splits
    sidecar = json.loads((out / "group_desc-classify_metrics.json").read_text())
    assert sidecar["Target"] == {"Column": "group", "Positive": "P", "Negative": ["HC"]}
    log = next((out / "logs").glob("*group*.log"), None) or max((out / "logs").glob("*.log"))
    assert "Classification from bandpower: AUC" in log.read_text()
    # the synth view's weights and pattern on the model grid, one volume per statistic
    import nibabel as nib

    card = json.loads((trained / "models" / "compact.json").read_text())  # the model grid
    for name in ("weights", "pattern"):
        image = nib.load(out / f"group_desc-classify_{name}.nii.gz")
        data = np.asarray(image.dataobj)
        assert data.shape == (*card["grid"], 2) and np.allclose(image.affine, card["model_affine"])
        assert np.isfinite(data).all() and np.abs(data).max() > 0
        meta = json.loads((out / f"group_desc-classify_{name}.json").read_text())
        assert meta["BlockVoxels"] == 4 and meta["Target"].startswith("group = P")
    report = (out / "group.html").read_text()
    assert "Where the synthesized view separates the groups" in report
    assert (out / "figures" / "group_desc-classify_pattern.png").is_file()


def test_labels_unrelated_to_the_effect_are_not_found(groups_dataset, applied, tmp_path, capsys):
    bids = tmp_path / "ds"
    bids.mkdir()
    for name in ("dataset_description.json", "participants.json"):
        shutil.copy(groups_dataset / name, bids / name)
    table = pd.read_csv(groups_dataset / "participants.tsv", sep="\t")
    # three patients and three controls in each new class: the labels carry no effect
    table["group"] = ["P", "HC", "P", "HC", "P", "HC", "HC", "P", "HC", "P", "HC", "P"]
    table.to_csv(bids / "participants.tsv", sep="\t", index=False)
    out = Path(shutil.copytree(applied, tmp_path / "out"))
    code, errors = _group(bids, out, capsys, "--classify", "group", *FAST,
                          "--classify-views", "bandpower", "nuisance")  # fmt: skip
    assert code == 0, errors
    metrics = pd.read_csv(out / "group_desc-classify_metrics.tsv", sep="\t").set_index("view")
    assert list(metrics.index) == ["bandpower", "nuisance"]
    assert (metrics["p_permutation"] >= 0.05).all()


def test_the_synth_view_by_a_keras_head(groups_dataset, applied, trained, tmp_path, capsys):
    """``--classifier contrastive``: the synth view from its windows (every synthesized
    volume), the other views as before, on the same folds; the head's maps, one volume."""
    import nibabel as nib

    out = Path(shutil.copytree(applied, tmp_path / "out"))
    code, errors = _group(groups_dataset, out, capsys, "--classify", "group", "--classifier",
                          "contrastive", "--classify-views", "bandpower", "synth", "--cv-folds",
                          "3", "--cv-repeats", "1", "--permutations", "2")  # fmt: skip
    assert code == 0, errors
    metrics = pd.read_csv(out / "group_desc-classify_metrics.tsv", sep="\t").set_index("view")
    card = json.loads((trained / "models" / "compact.json").read_text())
    blocks = int(np.prod([-(-n // 4) for n in card["grid"]]))  # 4-voxel blocks of a volume
    assert list(metrics.index) == ["bandpower", "synth"]
    assert metrics.loc["synth", "n_features"] == blocks
    # two permutations ran: p is one of 1/3, 2/3, 1 (not n/a)
    assert np.isclose(metrics.loc["synth", "p_permutation"] * 3, [1, 2, 3], atol=1e-4).any()
    predictions = pd.read_csv(out / "group_desc-classify_predictions.tsv", sep="\t")
    folds = predictions.pivot_table(index="participant_id", columns="view", values="fold")
    assert len(folds) == 12 and (folds["synth"] == folds["bandpower"]).all()
    sidecar = json.loads((out / "group_desc-classify_metrics.json").read_text())
    assert sidecar["Protocol"]["Heads"]["synth"].startswith("the original's contrastive head")
    image = nib.load(out / "group_desc-classify_weights.nii.gz")
    assert image.shape == (*card["grid"], 1) and np.abs(np.asarray(image.dataobj)).max() > 0
    meta = json.loads((out / "group_desc-classify_pattern.json").read_text())
    assert meta["Head"] == "contrastive" and "PenaltyC" not in meta
    log = next((out / "logs").glob("*group*.log"), None) or max((out / "logs").glob("*.log"))
    text = log.read_text()
    assert re.search(
        rf"synth with the contrastive head \(Keras\) on 4\d\d windows of {blocks} ", text
    )
    report = (out / "group.html").read_text()
    assert "The synth view is classified instead by the original&#39;s contrastive head" in report
    assert "of the contrastive head trained on every participant&#39;s windows" in report


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--classify", "group", "--classifier", "svm"], "unknown classifier 'svm'"),
        (["--classifier", "contrastive"], "--classifier contrastive needs --classify COLUMN"),
        (["--classify", "group", "--classifier", "likelihood", "--classify-views", "bandpower"],
         "--classifier likelihood: a head classifies the synth view; add synth to"),
    ],
)  # fmt: skip
def test_bad_classifier_requests(groups_dataset, tmp_path, capsys, extra, words):
    code, errors = _group(groups_dataset, tmp_path / "out", capsys, *extra)
    assert code == 2 and len(errors) == 1 and words in errors[0], errors


def _confounded(root: Path) -> None:
    """No group effect, but the patients' files are shorter (30 instead of 40 volumes' worth)
    and hold one channel more (an ECG channel), as ds004000's patients hold extra EXG
    channels and shorter runs: controls from one simulation, patients from the other."""
    common = dict(n_participants=12, groups=(6, 6), group_effect=0.0, seed=5, eeg_only=True,
                  montage="biosemi128", sfreq=512.0, **{**TINY, "n_channels": 32})  # fmt: skip
    controls = simulate_dataset(SimulationConfig(**common, ecg=False), root / "controls")
    patients = simulate_dataset(
        SimulationConfig(**{**common, "n_volumes": 30}, ecg=True), root / "patients"
    )
    shutil.copytree(controls, root / "ds")
    for i in range(7, 13):
        shutil.rmtree(root / "ds" / f"sub-{i:02d}")
        shutil.copytree(patients / f"sub-{i:02d}", root / "ds" / f"sub-{i:02d}")


def test_a_confound_in_channel_count_and_length_shows_in_nuisance_only(trained, tmp_path,
                                                                      capsys):  # fmt: skip
    _confounded(tmp_path)
    bids = tmp_path / "ds"
    _apply(bids, trained / "models" / "compact.keras", tmp_path)
    out = tmp_path / "out"
    code, errors = _group(bids, out, capsys, "--classify", "group", *FAST)
    assert code == 0, errors
    metrics = pd.read_csv(out / "group_desc-classify_metrics.tsv", sep="\t").set_index("view")
    assert metrics.loc["nuisance", "auc_ci_low"] > 0.5
    assert metrics.loc["nuisance", "p_permutation"] < 0.05
    others = metrics.drop(index="nuisance")
    assert list(others.index) == ["bandpower", "features", "latent", "synth"]
    assert (others["auc_ci_low"] <= 0.5).all(), others
    log = next((out / "logs").glob("*group*.log"), None) or max((out / "logs").glob("*.log"))
    assert "The nuisance view (channel count, length, line noise, eye movements) predicts" in (
        log.read_text()
    )
    assert "The other views may reflect recording differences" in (out / "group.html").read_text()


def _without_model_views(out: Path) -> None:
    for path in out.glob("sub-*/eeg/*_desc-views_features.tsv"):
        views = {k: val for k, val in read_views(path).items() if k not in ("latent", "synth")}
        write_views(path, views, sources=[], model=None)


@pytest.mark.parametrize(
    "change, extra, code, words",
    [
        (None, ["--classify", "diagnosis"], 2, "no column 'diagnosis' (--classify; the columns "
         "are participant_id, group)"),
        (None, ["--classify", "group", "--positive-label", "X"], 2, "--positive-label 'X'"),
        ("one class", ["--classify", "group"], 66, "one class only (HC)"),
        (None, ["--classify", "group", "--cv-folds", "7"], 66, "fewer than --cv-folds 7"),
        ("no model", ["--classify", "group", "--classify-views", "synth"], 66,
         "--classify-views synth: no participant has it"),
        (None, ["--classify", "group", "--classify-views", "latnet"], 2, "did you mean 'latent'"),
        ("latin-1", ["--classify", "group"], 65, "participants.tsv: not UTF-8 text (byte"),
        ("ragged", ["--classify", "group"], 65, "participants.tsv: line 3 has 3 column(s), "
         "the header 2"),
    ],
)  # fmt: skip
def test_bad_classification_requests(groups_dataset, applied, tmp_path, capsys, change, extra,
                                     code, words):  # fmt: skip
    bids = groups_dataset
    out = Path(shutil.copytree(applied, tmp_path / "out"))
    if change == "one class":
        bids = Path(shutil.copytree(groups_dataset, tmp_path / "ds", symlinks=True))
        table = pd.read_csv(bids / "participants.tsv", sep="\t")
        table["group"] = "HC"
        table.to_csv(bids / "participants.tsv", sep="\t", index=False)
    elif change == "no model":
        _without_model_views(out)
    elif change in ("latin-1", "ragged"):  # broken files: refused naming the file and line
        bids = Path(shutil.copytree(groups_dataset, tmp_path / "ds", symlinks=True))
        lines = (bids / "participants.tsv").read_text().splitlines()
        if change == "ragged":
            lines[2] += "\textra"
        else:
            lines[1] += "\u00e9"
        data = "\n".join(lines) + "\n"
        (bids / "participants.tsv").write_bytes(
            data.encode(change if change != "ragged" else "utf-8")
        )
    result, errors = _group(bids, out, capsys, *extra, "--permutations", "0")
    assert result == code and len(errors) == 1 and words in errors[0], errors
    assert not (out / "group_desc-classify_metrics.tsv").exists()


def test_views_tables_hold_each_view(applied):
    tables = sorted(applied.glob("sub-*/eeg/*_desc-views_features.tsv"))
    assert len(tables) == 12
    views = read_views(tables[0])
    assert set(views) == {"bandpower", "features", "latent", "synth", "nuisance"}
    assert len(views["bandpower"]) == 12 * 5 and views["nuisance"]["n_channels_file"] == 33
    assert np.isfinite(list(views["synth"].values())).all()


def test_another_cap_is_mapped_onto_the_models_channels_by_position(applied, trained):
    """None of the model's 12 channels (10-20 names) is on the biosemi128 recordings: all
    are interpolated from the recordings' electrodes.tsv, with the share and distances
    logged; the card kept the model's positions."""
    card = json.loads((trained / "models" / "compact.json").read_text())
    positions = card["channel_positions"]
    assert list(positions["positions_m"]) == card["channels"]
    assert positions["source"] == "sub-01_space-CapTrak_electrodes.tsv"
    log = max((applied / "logs").glob("*.log")).read_text()
    assert log.count("12 of the model's 12 channels (100 %), from 32 channels placed by") == 12
    assert "sub-01_task-rest_eeg.vhdr: interpolated missing channel(s) Fp1, Fp2" in log
    assert "cut on the model's TR grid (2.16 s, from its card" in log
    report = (applied / "sub-01.html").read_text()  # in the report's warnings too
    assert "12 of the model&#39;s 12 channels (100 %)" in report

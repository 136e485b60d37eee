"""Train then apply through the CLI: models, cards, synthesized BOLD, evaluation, errors."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import TINY, TRAIN, cli

from bids_eeg2fmri.simulate.generator import SimulationConfig
from bids_eeg2fmri.simulate.writer import simulate_dataset


def read_tsv(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def test_training_writes_a_model_its_card_and_synthesized_bold(dataset, trained):
    model, card_path = trained / "models/compact.keras", trained / "models/compact.json"
    card = json.loads(card_path.read_text())
    assert card["sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    assert card["training"]["participants"] == {
        "train": ["01", "02"],
        "validation": [],
        "holdout": ["03"],
    }
    assert card["preset"] == "compact" and card["n_windows"] == 10 and len(card["channels"]) == 12
    assert card["software"]["tensorflow"] and card["training"]["history"]["loss"]
    holdout = card["holdout_metrics"]["runs"]["sub-03_task-rest"]
    assert holdout["participant"] == "03" and float(holdout["noise_ceiling_mean"]) > 0
    for sub in ("01", "02", "03"):
        source = nib.load(dataset / f"sub-{sub}/func/sub-{sub}_task-rest_bold.nii.gz")
        synth = nib.load(trained / f"sub-{sub}/func/sub-{sub}_task-rest_desc-synth_bold.nii.gz")
        assert synth.shape == source.shape and np.allclose(synth.affine, source.affine)
        assert synth.header.get_zooms()[3] == pytest.approx(2.16)
        assert np.isfinite(synth.get_fdata()).all()
        meta = json.loads(
            (trained / f"sub-{sub}/func/sub-{sub}_task-rest_desc-synth_bold.json").read_text()
        )
        assert meta["ModelDigest"] == card["digest"] and meta["SkullStripped"] is False
        assert meta["Sources"] == [
            f"bids:raw:sub-{sub}/eeg/sub-{sub}_task-rest_eeg.vhdr",
            f"bids:raw:sub-{sub}/func/sub-{sub}_task-rest_bold.nii.gz",
        ]
    for sub, split in (("01", "train"), ("02", "train"), ("03", "holdout")):
        rows = read_tsv(trained / f"sub-{sub}/func/sub-{sub}_task-rest_desc-synth_metrics.tsv")
        model = [r for r in rows if r["method"] == "model"]
        assert {r["split"] for r in model} <= {"train", "validation", "holdout"}
        assert split in {r["split"] for r in model}
        assert 0 < float(model[0]["noise_ceiling_mean"]) < 1
        assert -1 <= float(model[0]["r_mask_mean"]) <= 1


def test_applying_the_saved_model_reproduces_the_synthesis(dataset, trained, tmp_path, capsys):
    code, errors = cli(
        dataset,
        tmp_path / "out",
        tmp_path / "work",
        capsys,
        "--model",
        trained / "models/compact.keras",
    )
    assert code == 0, errors
    for sub in ("01", "02", "03"):
        name = f"sub-{sub}/func/sub-{sub}_task-rest_desc-synth_bold.nii.gz"
        assert np.array_equal(
            nib.load(tmp_path / "out" / name).get_fdata(), nib.load(trained / name).get_fdata()
        )
        # the model's own data keeps its role (from the card), volume by volume
        table = f"sub-{sub}/func/sub-{sub}_task-rest_desc-synth_metrics.tsv"
        rows = read_tsv(tmp_path / "out" / table)
        assert {r["method"] for r in rows} == {"model"}  # no baselines for an applied model
        roles = [(r["volume"], r["split"], r["in_training"]) for r in rows]
        trained_roles = [
            (r["volume"], r["split"], r["in_training"])
            for r in read_tsv(trained / table)
            if r["method"] == "model"
        ]
        assert roles == trained_roles
    assert {r[1] for r in roles} != {"applied"}


def test_deterministic_training_gives_identical_outputs(dataset, tmp_path, capsys):
    """Two trainings in one process (the second reuses the work dir's preprocessing).

    Compared with each other, not with the session's ``trained`` fixture: once (a full run
    on 2 pytest-xdist workers, 2026-12-06) the fixture, built in another worker after other
    tests, differed from this training in its synthesized bytes, while the same comparison
    passed alone, next to test_split.py, and in fresh processes with TensorFlow imported
    first or not; the cause was not found (see the session notes)."""
    outs = [tmp_path / "out1", tmp_path / "out2"]
    for out in outs:
        code, errors = cli(dataset, out, tmp_path / "work", capsys, *TRAIN)
        assert code == 0, errors
    for sub in ("01", "02", "03"):
        name = f"sub-{sub}/func/sub-{sub}_task-rest_desc-synth_bold.nii.gz"
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes()
    manifest = (outs[1] / "logs/outputs.sha256").read_text()
    assert manifest == (outs[0] / "logs/outputs.sha256").read_text()  # every derivative
    assert "_desc-lrp_relevance.tsv" in manifest and "_desc-synth_metrics.tsv" in manifest
    cards = [json.loads((o / "models/compact.json").read_text()) for o in outs]
    assert cards[0]["digest"] == cards[1]["digest"]  # the saved files differ by their date


def test_eeg_only_runs_are_synthesized_on_the_model_grid(dataset, trained, tmp_path, capsys):
    bids = Path(shutil.copytree(dataset, tmp_path / "ds"))
    for path in bids.glob("sub-03/func/*"):
        path.unlink()
    (bids / "sub-03/sub-03_scans.tsv").unlink()
    code, errors = cli(
        bids,
        tmp_path / "out",
        tmp_path / "work",
        capsys,
        "--model",
        trained / "models/compact.keras",
        "--participant-label",
        "03",
    )
    assert code == 0, errors
    synth = nib.load(tmp_path / "out/sub-03/func/sub-03_task-rest_desc-synth_bold.nii.gz")
    card = json.loads((trained / "models/compact.json").read_text())
    assert synth.shape == (12, 13, 8, 40) and np.allclose(synth.affine, card["model_affine"])
    meta = json.loads(
        (tmp_path / "out/sub-03/func/sub-03_task-rest_desc-synth_bold.json").read_text()
    )
    assert meta["Units"].startswith("z-scores")


def test_a_model_that_does_not_fit_the_data(trained, tmp_path, capsys):
    other = simulate_dataset(SimulationConfig(n_participants=1, tr=2.0, **TINY), tmp_path / "ds")
    code, errors = cli(
        other,
        tmp_path / "out",
        tmp_path / "work",
        capsys,
        "--model",
        trained / "models/compact.keras",
    )
    assert code == 65 and len(errors) == 1
    assert errors[0].endswith(
        "sub-01_task-rest_bold.nii.gz: TR 2 s differs from the TR of --model compact.keras "
        "(its training data's 2.16 s: its spectra are read at multiples of 1 / TR)"
    )
    assert not list((tmp_path / "out").glob("sub-*/*/*"))  # checked before any step ran


def test_corrupted_or_foreign_model_files(dataset, trained, tmp_path, capsys):
    fake = tmp_path / "m.keras"
    fake.write_bytes(b"not a zip")
    card = json.loads((trained / "models/compact.json").read_text())
    (tmp_path / "m.json").write_text(json.dumps(card))
    code, errors = cli(dataset, tmp_path / "out", tmp_path / "work", capsys, "--model", fake)
    assert code == 2 and "not a Keras model archive" in errors[0]
    shutil.copyfile(trained / "models/compact.keras", fake)
    card["sha256"] = "0" * 64
    (tmp_path / "m.json").write_text(json.dumps(card))
    code, errors = cli(dataset, tmp_path / "out", tmp_path / "work", capsys, "--model", fake)
    assert code == 2 and 'm.json: key "sha256" differs from the SHA-256' in errors[0]
    (tmp_path / "m.json").unlink()
    code, errors = cli(dataset, tmp_path / "out", tmp_path / "work", capsys, "--model", fake)
    assert code == 2 and "m.json: no such file (the model card of --model" in errors[0]
    assert not (tmp_path / "out").exists()  # checked before anything is written


def test_train_and_model_exclude_each_other(dataset, tmp_path, capsys):
    code, errors = cli(
        dataset, tmp_path / "out", tmp_path / "work", capsys, "--train", "--model", "x.keras"
    )
    assert code == 2 and "not allowed with argument" in errors[0]


def test_train_only_saves_the_model_for_a_later_apply(dataset, tmp_path, capsys):
    code, errors = cli(dataset, tmp_path / "x", tmp_path / "w", capsys, "--train-only")
    assert code == 2 and "--train-only needs --train" in errors[0]
    out, work = tmp_path / "out", tmp_path / "work"
    two = ["--participant-label", "01", "02"]
    code, errors = cli(dataset, out, work, capsys, *TRAIN, *two, "--train-only")
    assert code == 0, errors
    assert (out / "models/compact.keras").is_file() and (out / "models/compact.json").is_file()
    assert not list(out.glob("sub-*/*/*_desc-synth_*"))  # no synthesis, metrics or maps
    assert (out / "sub-01.html").is_file()  # the reports still describe the runs
    # applied later, into the same output folder: sub-02 was the model's own data (its card
    # says how), sub-03 is new to it
    card = json.loads((out / "models/compact.json").read_text())
    args = ["--model", out / "models/compact.keras", "--participant-label", "02", "03"]
    code, errors = cli(dataset, out, work, capsys, *args, "--lrp-volumes", "0")
    assert code == 0, errors
    assert sorted(p.name for p in out.glob("sub-*/func/*_desc-synth_bold.nii.gz")) == [
        "sub-02_task-rest_desc-synth_bold.nii.gz",
        "sub-03_task-rest_desc-synth_bold.nii.gz",
    ]
    splits = {
        sub: {
            r["split"]
            for r in read_tsv(out / f"sub-{sub}/func/sub-{sub}_task-rest_desc-synth_metrics.tsv")
        }
        for sub in ("02", "03")
    }
    assert splits["03"] == {"applied"}
    named = {k: v for k, v in card["training"]["runs"].items() if "sub-02_task-rest" in v}
    assert splits["02"] == set(named) and "applied" not in splits["02"]


def test_the_variational_preset_writes_an_uncertainty_map(dataset, tmp_path, capsys):
    args = [*TRAIN, "--preset", "compact-variational", "--participant-label", "01", "02"]
    code, errors = cli(dataset, tmp_path / "out", tmp_path / "work", capsys, *args)
    assert code == 0, errors
    func = tmp_path / "out/sub-02/func"
    synth = nib.load(func / "sub-02_task-rest_desc-synth_bold.nii.gz")
    spread = nib.load(func / "sub-02_task-rest_desc-uncertainty_bold.nii.gz")
    assert spread.shape == synth.shape and np.allclose(spread.affine, synth.affine)
    values = spread.get_fdata()
    assert np.all(values >= 0) and values.max() > 0


def test_interrupted_training_resumes_from_its_checkpoint(trained, tmp_path):
    import keras

    from bids_eeg2fmri.models.data import load_run_arrays
    from bids_eeg2fmri.models.synthesizer import PRESETS
    from bids_eeg2fmri.models.training import train

    work = trained.parent / "work" / "bids_eeg2fmri_0_1_wf"
    runs = [
        load_run_arrays(work / f"sub_{s}_task_rest", name=s, subject=s, eeg_file="x", bold_file="x")
        for s in ("01", "02")
    ]
    volumes = {0: np.arange(40), 1: np.arange(40)}

    class Crash(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt("killed")

    settings = dict(
        arch=PRESETS["compact"],
        compat_loss=False,
        epochs=3,
        batch_size=8,
        learning_rate=1e-3,
        patience=3,
        seed=0,
        deterministic=True,
        backup_dir=tmp_path / "backup",
    )
    with pytest.raises(KeyboardInterrupt):
        train(runs, volumes, {}, callbacks=(Crash(),), **settings)
    resumed = train(runs, volumes, {}, **settings)
    assert len(resumed.history["loss"]) == 1  # epochs 1 and 2 came from the checkpoint
    assert not (tmp_path / "backup").exists() or not any((tmp_path / "backup").iterdir())


def test_the_output_dataset_is_valid_bids(trained, tmp_path):
    from bids_eeg2fmri.bidsio.validator import errors_of, run_validator

    description = json.loads((trained / "dataset_description.json").read_text())
    assert description["DatasetLinks"]["raw"].startswith("file://")
    assert "models" in (trained / ".bidsignore").read_text().split()
    assert errors_of(run_validator(trained, cache_dir=tmp_path / "deno")) == []


def test_a_card_keeps_roles_only_on_the_dataset_it_was_trained_on(tmp_path):
    from types import SimpleNamespace

    from bids_eeg2fmri.workflows.modeling import plan_from_card

    run = SimpleNamespace(name="sub-01_task-rest", bold=Path("b.nii.gz"), valid=np.ones(10, bool))
    card = {"training": {"dataset": str(tmp_path.resolve()), "runs": {"train": [run.name]}}}
    plan = plan_from_card([run], card, tmp_path)
    assert plan is not None and plan["train"][0].tolist() == list(range(10))
    # another dataset with a run of the same name is data the model has not seen
    assert plan_from_card([run], card, tmp_path / "other") is None
    assert plan_from_card([run], {"training": {"runs": {"train": [run.name]}}}, tmp_path) is None

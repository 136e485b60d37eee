"""Which participants train, validate (early stopping) and are held out: --holdout-label
and --validation-label, and the volumes each role gets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import cli

from bids_eeg2fmri.models.data import RunArrays, split_participants
from bids_eeg2fmri.workflows.modeling import plan_split

SIX = ["01", "02", "03", "04", "05", "06"]


def test_by_default_every_participant_not_held_out_trains():
    assert split_participants(SIX, ("05", "06")) == (["01", "02", "03", "04"], [], ["05", "06"])
    assert split_participants(SIX) == (["01", "02", "03", "04", "05"], [], ["06"])


def test_validation_participants_are_kept_out_of_training_and_never_held_out_by_default():
    named = split_participants(SIX, ("05", "06"), ("04",))
    assert named == (["01", "02", "03"], ["04"], ["05", "06"])
    assert split_participants(SIX, (), ("06",)) == (["01", "02", "03", "04"], ["06"], ["05"])


@pytest.mark.parametrize(
    ("holdout", "validation", "message"),
    [
        (("05",), ("05",), "--validation-label and --holdout-label both name 05"),
        ((), ("07",), "--validation-label: no selected run of 07"),
        (("01", "02", "03"), ("04", "05", "06"), "nothing to train on"),
    ],
)
def test_impossible_splits_are_refused(holdout, validation, message):
    with pytest.raises(ValueError, match=message):
        split_participants(SIX, holdout, validation)


def _run(subject: str, n: int) -> RunArrays:
    info = {"valid": [True] * n}
    return RunArrays(f"sub-{subject}_task-rest", subject, Path("f.npy"), info, bold=Path("b.nii"))


def test_without_a_validation_participant_the_end_of_each_training_run_validates():
    runs = [_run(s, 20) for s in ("01", "02", "03", "04")]
    plan = plan_split(runs, ("04",))
    assert sorted(plan["train"]) == [0, 1, 2] and sorted(plan["validation"]) == [0, 1, 2]
    for i in range(3):  # the last 10 %, never also trained on
        assert plan["validation"][i].tolist() == [18, 19]
        assert plan["train"][i].tolist() == list(range(18))
    assert np.array_equal(plan["holdout"][3], np.arange(20))

    named = plan_split(runs, ("04",), ("03",))
    assert sorted(named["train"]) == [0, 1] and list(named["validation"]) == [2]
    assert named["validation"][2].tolist() == list(range(20))
    assert named["train"][0].tolist() == list(range(20))


def test_bad_validation_labels_are_usage_errors_before_any_step(tiny, tmp_path, capsys):
    out, work = tmp_path / "out", tmp_path / "work"
    code, errors = cli(tiny, out, work, capsys, "--train", "--validation-label", "99")
    assert code == 2 and len(errors) == 1, errors
    assert "--validation-label: participant label(s) not found in" in errors[0], errors[0]
    code, errors = cli(
        tiny, out, work, capsys, "--train", "--validation-label", "01", "--holdout-label", "sub-01"
    )
    assert code == 2 and len(errors) == 1, errors
    assert "--validation-label and --holdout-label both name 01" in errors[0], errors[0]
    for flag in ("--validation-label", "--holdout-label"):  # ignored without --train: refused
        code, errors = cli(tiny, out, work, capsys, flag, "01")
        assert code == 2 and len(errors) == 1, errors
        assert f"{flag} needs --train" in errors[0], errors[0]
    assert not out.exists()


def test_the_trained_fixture_splits_in_time_and_the_ridge_leaves_participants_out(trained):
    """The fixture (3 participants, 03 held out): 01 and 02 train, the end of their runs
    validates, and the ridge's penalty is chosen by leaving 01, then 02, out."""
    log = next((trained / "logs").glob("bids-eeg2fmri-*.log")).read_text()
    assert "Participants: train 01, 02, validation (time split), held out 03" in log
    assert "chosen leaving each of the 2 training participants out in turn" in log


def test_eeg_only_runs_in_a_training_selection_are_synthesized_not_trained_on(
    dataset, tmp_path, capsys
):
    """A mixed selection (sub-03 recorded outside the scanner): the model trains on the runs
    with BOLD and synthesizes the EEG-only run too (it had crashed reading a BOLD it lacks)."""
    import json
    import shutil

    from conftest import TRAIN

    ds = Path(shutil.copytree(dataset, tmp_path / "ds", symlinks=True))
    shutil.rmtree(ds / "sub-03" / "func")
    (ds / "sub-03" / "sub-03_scans.tsv").unlink()
    out = tmp_path / "out"
    code, errors = cli(ds, out, tmp_path / "work", capsys, *TRAIN, "--lrp-volumes", "0")
    assert (code, errors) == (0, [])
    card = json.loads((out / "models" / "compact.json").read_text())
    assert card["training"]["participants"] == {
        "train": ["01"],
        "validation": [],
        "holdout": ["02"],
    }
    assert (out / "sub-03/func/sub-03_task-rest_desc-synth_bold.nii.gz").exists()
    assert not (out / "sub-03/func/sub-03_task-rest_desc-synth_metrics.tsv").exists()


def test_runs_too_short_for_the_windows_are_a_clear_error(tmp_path):
    from bids_eeg2fmri.models.training import train

    run = RunArrays("sub-01_task-rest", "01", Path("f.npy"), {"valid": [False] * 8}, bold=Path("b"))
    with pytest.raises(ValueError, match="none of the 1 training run.s. has a volume with a full"):
        train(
            [run],
            {0: np.arange(8)},
            {},
            arch=None,
            compat_loss=False,
            epochs=1,
            batch_size=8,
            learning_rate=0.001,
            patience=3,
            seed=0,
            deterministic=False,
            backup_dir=tmp_path,
        )

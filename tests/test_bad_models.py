"""Bad models, cards and data for ``--model``: each stops the run with its exit code and one
line naming the file (and key or option), leaves no outputs of the failed run and the input
unchanged. Reuses the session's trained model (no training here)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from conftest import TINY, cli, tree_digest

from bids_eeg2fmri.bidsio.files import sha256
from bids_eeg2fmri.errors import UsageError
from bids_eeg2fmri.models import cards
from bids_eeg2fmri.simulate.generator import SimulationConfig
from bids_eeg2fmri.simulate.writer import simulate_dataset
from bids_eeg2fmri.workflows.participant import workflow_name


def copy_model(trained: Path, folder: Path, name: str = "m") -> tuple[Path, dict]:
    """The trained model and its card under ``folder`` as ``<name>.keras/.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    model = folder / f"{name}.keras"
    shutil.copyfile(trained / "models/compact.keras", model)
    card = json.loads((trained / "models/compact.json").read_text())
    (folder / f"{name}.json").write_text(json.dumps(card))
    return model, card


def fails(bids, tmp_path, capsys, code, *args, created=False) -> str:
    """Run the participant level, check the exit code, the single error line, the input
    unchanged and (unless ``created``) that neither OUTPUT_DIR nor the work dir exist."""
    before = tree_digest(bids)
    out, work = tmp_path / "out", tmp_path / "work"
    got, errors = cli(bids, out, work, capsys, *args)
    assert got == code, errors
    assert len(errors) == 1, errors
    assert tree_digest(bids) == before, "BIDS_DIR changed"
    if not created:
        assert not out.exists() and not work.exists(), "written before the checks"
    return errors[0]


def no_run_outputs(out: Path) -> None:
    """Nothing of a failed run below sub-*/ but its crash reports (sub-*/log/)."""
    left = [
        p.relative_to(out).as_posix()
        for p in out.glob("sub-*/**/*")
        if p.is_file() and "log" not in p.relative_to(out).parts[1:]
    ]
    assert not left, left
    assert not list(out.glob("sub-*.html"))


# --------------------------------------------------------------------------- the model file
def _text(path: Path, model: Path) -> None:
    path.write_text("this is not a model\n")


def _empty(path: Path, model: Path) -> None:
    path.write_bytes(b"")


def _truncated(path: Path, model: Path) -> None:
    path.write_bytes(model.read_bytes()[:3000])


def _without_config(path: Path, model: Path) -> None:
    with zipfile.ZipFile(model) as src, zipfile.ZipFile(path, "w") as dst:
        for name in src.namelist():
            if name != "config.json":
                dst.writestr(name, src.read(name))


def _damaged(path: Path, model: Path) -> None:
    data = bytearray(model.read_bytes())
    with zipfile.ZipFile(model) as archive:
        info = archive.getinfo("model.weights.h5")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + 100
    data[start : start + 8] = bytes(8) if any(data[start : start + 8]) else b"\xff" * 8
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "make, fragment",
    [
        (_text, "not a Keras model archive: not a zip file, or truncated"),
        (_empty, "empty file"),
        (_truncated, "not a Keras model archive: not a zip file, or truncated"),
        (_without_config, "not a Keras model archive: no config.json in it"),
        (_damaged, "damaged Keras model archive: model.weights.h5 fails its CRC check"),
        (None, "no such file"),
        ("dir", "not a file"),
    ],
    ids=["text", "empty", "truncated", "no-config", "damaged", "missing", "folder"],
)
def test_a_model_file_that_is_not_a_model(dataset, trained, tmp_path, capsys, make, fragment):
    good, card = copy_model(trained, tmp_path / "good")
    bad = tmp_path / "bad" / "m.keras"
    bad.parent.mkdir()
    (bad.parent / "m.json").write_text(json.dumps(card))
    if make == "dir":
        bad.mkdir()
    elif make is not None:
        make(bad, good)
    error = fails(dataset, tmp_path, capsys, 2, "--model", bad)
    assert f"--model {bad}: {fragment}" in error and "(a .keras model" in error


def test_the_model_checks_import_no_tensorflow(trained, dataset, tmp_path):
    bad = tmp_path / "m.keras"
    bad.write_text("text")
    code = (
        "import sys\n"
        "from bids_eeg2fmri.cli.run import main\n"
        f"rc = main([{str(dataset)!r}, {str(tmp_path / 'out')!r}, 'participant', "
        f"'--skip-bids-validation', '--model', {str(bad)!r}])\n"
        "heavy = {'tensorflow', 'keras', 'nipype', 'bids'} & set(sys.modules)\n"
        "assert rc == 2 and not heavy, (rc, heavy)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("bids-eeg2fmri: error:") == 1
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- the model card
def _edit(key, value):
    def edit(card: dict) -> dict:
        if value is _DELETE:
            del card[key]
        else:
            card[key] = value
        return card

    return edit


_DELETE = object()


@pytest.mark.parametrize(
    "edit, fragment",
    [
        (None, "no such file (the model card of --model"),
        ("{not json", "not valid JSON: Expecting property name"),
        ("[1, 2]", "a JSON list, not an object"),
        (_edit("channels", _DELETE), 'key "channels" is missing (a non-empty list'),
        (_edit("n_windows", "ten"), 'key "n_windows" is "ten" (a positive integer'),
        (_edit("frequencies", [2.0, 1.0]), 'key "frequencies" is [2.0, 1.0] (a non-empty'),
        (_edit("grid", [12, 13]), 'key "grid" is [12, 13] (the model\'s BOLD grid'),
        (_edit("tr", True), 'key "tr" is true (the training data\'s repetition time'),
        (_edit("max_freq", 30.0), 'key "max_freq" is 30 Hz but the highest of "frequencies"'),
        (_edit("tr", 2.0), 'key "tr" is 2 s but "frequencies" start at 0.462963 Hz'),
        (_edit("sha256", "0" * 64), 'key "sha256" differs from the SHA-256 of --model'),
        (_edit("sha256", "abc"), 'key "sha256" is "abc" (the SHA-256 of the .keras file'),
        (_edit("channel_positions", []), 'key "channel_positions" is [] (null or {"source"'),
    ],
    ids=[
        "missing",
        "not-json",
        "not-object",
        "no-channels",
        "windows-type",
        "frequencies-order",
        "grid-length",
        "tr-bool",
        "max-freq",
        "tr-vs-frequencies",
        "sha256-differs",
        "sha256-type",
        "positions-type",
    ],
)
def test_a_bad_model_card(dataset, trained, tmp_path, capsys, edit, fragment):
    model, card = copy_model(trained, tmp_path / "models")
    card_path = model.with_suffix(".json")
    if edit is None:
        card_path.unlink()
    elif isinstance(edit, str):
        card_path.write_text(edit)
    else:
        card_path.write_text(json.dumps(edit(card)))
    error = fails(dataset, tmp_path, capsys, 2, "--model", model)
    assert error.startswith(f"bids-eeg2fmri: error: {card_path}: {fragment}"), error
    assert f"--model {model}" in error


def test_a_card_of_another_network(dataset, trained, tmp_path, capsys):
    """Channels in the card differ in number from the network's input: named before any
    step runs (the network's input shape is read from the archive without Keras)."""
    model, card = copy_model(trained, tmp_path / "models")
    card["channels"] = card["channels"][:-1]
    model.with_suffix(".json").write_text(json.dumps(card))
    error = fails(dataset, tmp_path, capsys, 2, "--model", model)
    assert f"{model.with_suffix('.json')}: 11 channels but --model {model} takes 12 channels" in (
        error
    )


def test_a_card_whose_grid_is_not_the_networks_fails_at_load_and_leaves_nothing(
    dataset, trained, tmp_path, capsys
):
    """The output grid is only known once Keras loads the network: the runs were
    preprocessed by then, and their outputs are removed when the model step fails."""
    model, card = copy_model(trained, tmp_path / "models")
    card["grid"] = [10, 13, 8]
    model.with_suffix(".json").write_text(json.dumps(card))
    args = ("--model", model, "--participant-label", "03")
    error = fails(dataset, tmp_path, capsys, 2, *args, created=True)
    assert f'{model.with_suffix(".json")}: key "grid" is [10, 13, 8] but --model {model}' in error
    assert "outputs [12, 13, 8]" in error
    assert (tmp_path / "work" / workflow_name() / "sub_03_task_rest" / "volume_timing").is_dir()
    log = next((tmp_path / "out/logs").glob("*.log")).read_text()
    assert "Removed the 4 output(s) of the failed run(s)" in log  # volume events, views
    no_run_outputs(tmp_path / "out")


def test_check_card_fits_network_names_both_numbers(tmp_path):
    card = {"channels": ["a", "b"], "frequencies": [0.5, 1.0, 1.5], "n_windows": 4}
    card["grid"] = [4, 5, 6]
    model = tmp_path / "m.keras"
    cards.check_card_fits_network(card, (2, 3, 4, 1), model=model, output_grid=(4, 5, 6))
    cards.check_card_fits_network(card, None, model=model)  # unknown: Keras checks
    with pytest.raises(
        UsageError,
        match=r"m.json: 2 channels, 3 frequencies but --model .*"
        r"m.keras takes 5 channels, 7 frequencies",
    ):
        cards.check_card_fits_network(card, (5, 7, 4, 1), model=model)
    with pytest.raises(UsageError, match=r"2 channels, 3 frequencies, 4 windows"):
        cards.check_card_fits_network(card, (5, 7, 9, 1), model=model)


# --------------------------------------------------------------------------- data vs model
def test_eeg_sampled_too_slowly_for_the_model(trained, tmp_path, capsys):
    slow = simulate_dataset(
        SimulationConfig(n_participants=1, sfreq=100.0, **TINY), tmp_path / "ds"
    )
    model, card = copy_model(trained, tmp_path / "models")
    error = fails(slow, tmp_path, capsys, 65, "--model", model, created=True)
    assert error == (
        "bids-eeg2fmri: error: sub-01_task-rest_eeg.vhdr: sampling rate 100 Hz is too low "
        "for --model m.keras, whose spectra reach 62.037 Hz (a rate above 124.074 Hz, twice "
        "the model's highest frequency)"
    )
    no_run_outputs(tmp_path / "out")
    assert not (tmp_path / "work" / workflow_name()).exists()  # no step ran


def test_remove_run_outputs_keeps_older_files_and_crash_reports(tmp_path):
    from bids_eeg2fmri.bidsio.pairing import RunPair
    from bids_eeg2fmri.workflows.participant import remove_run_outputs

    out = tmp_path / "out"
    old = out / "sub-01/func/sub-01_task-rest_desc-synth_bold.json"
    other = out / "sub-02/eeg/sub-02_task-rest_desc-volumes_events.tsv"
    for path in (old, other):
        path.parent.mkdir(parents=True)
        path.write_text("earlier run")
    since = time.time_ns()
    os.utime(old, ns=(since - 10**10, since - 10**10))
    new = out / "sub-01/eeg/sub-01_task-rest_desc-volumes_events.tsv"
    crash = out / "sub-01/log/x/crash.txt"
    model = out / "models/compact.keras"
    for path in (new, crash, model):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("this run")
    pair = RunPair(eeg=tmp_path / "sub-01_task-rest_eeg.vhdr", entities=(("subject", "01"),))
    removed = remove_run_outputs([pair], out, since_ns=since - 10**9, model_name="compact")
    assert sorted(removed) == sorted([new, model])
    assert old.is_file() and crash.is_file() and other.is_file()
    assert not (out / "sub-01/eeg").exists()  # the folder it emptied


def test_the_card_is_read_as_written_by_training(trained):
    card = cards.check_model(trained / "models/compact.keras")
    assert card["sha256"] == sha256(trained / "models/compact.keras")
    config = cards.check_model_archive(trained / "models/compact.keras")
    assert cards.input_shape(config) == (12, len(card["frequencies"]), 10, 1)

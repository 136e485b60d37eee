"""The BIDS-App command line: every misuse gets its exit code, one line, and BIDS_DIR intact."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import run_cli, tree_digest

from bids_eeg2fmri import __version__
from bids_eeg2fmri.cli.run import main

PROG = "bids-eeg2fmri"


def assert_fails(args, capsys, bids_dir: Path, code: int, *fragments: str) -> str:
    before = tree_digest(bids_dir) if bids_dir.is_dir() else None
    got, errors = run_cli(args, capsys)
    assert got == code, errors
    assert len(errors) == 1, errors
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    if before is not None:
        assert tree_digest(bids_dir) == before, "BIDS_DIR changed"
    return errors[0]


# --------------------------------------------------------------------------- cheap paths
def test_version_and_help_are_instant_and_import_nothing_heavy():
    code = (
        "import sys, contextlib, io\n"
        "from bids_eeg2fmri.cli.run import main\n"
        "for flag in ('--version', '--help'):\n"
        "    with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "        try:\n"
        "            main([flag])\n"
        "        except SystemExit as e:\n"
        "            assert e.code == 0\n"
        "    print(out.getvalue().splitlines()[0])\n"
        "heavy = {'tensorflow', 'mne', 'bids', 'nipype', 'nibabel', 'scipy'} & set(sys.modules)\n"
        "print('HEAVY', sorted(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    lines = out.stdout.splitlines()
    assert lines[0] == f"{PROG} v{__version__}"
    assert lines[1].startswith("usage: bids-eeg2fmri")
    assert lines[2] == "HEAVY []"


def test_python_dash_m_runs_the_app():
    out = subprocess.run(
        [sys.executable, "-m", "bids_eeg2fmri", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0 and out.stdout.strip() == f"{PROG} v{__version__}"


# --------------------------------------------------------------------------- misuse
def test_missing_bids_dir(tmp_path, capsys):
    assert_fails(
        [tmp_path / "nope", tmp_path / "out", "participant"],
        capsys,
        tmp_path / "nope",
        2,
        "does not exist",
    )
    assert not (tmp_path / "out").exists()


def test_bids_dir_without_description(sim_copy, tmp_path, capsys):
    (sim_copy / "dataset_description.json").unlink()
    assert_fails(
        [sim_copy, tmp_path / "out", "participant"],
        capsys,
        sim_copy,
        16,
        "dataset_description.json is missing",
    )
    assert not (tmp_path / "out").exists()


def test_output_dir_is_bids_dir(sim_dataset, capsys):
    msg = assert_fails(
        [sim_dataset, sim_dataset, "participant"], capsys, sim_dataset, 2, "OUTPUT_DIR is BIDS_DIR"
    )
    assert str(sim_dataset / "derivatives" / "bids-eeg2fmri") in msg


@pytest.mark.parametrize("inside", ["out", "sub-01/out", "derivatives"])
def test_output_dir_inside_bids_dir_outside_derivatives(sim_dataset, tmp_path, capsys, inside):
    msg = assert_fails(
        [sim_dataset, sim_dataset / inside, "participant", "-w", tmp_path / "w"],
        capsys,
        sim_dataset,
        2,
        "inside BIDS_DIR",
    )
    assert "derivatives/bids-eeg2fmri" in msg


def test_output_dir_through_a_symlink_into_bids_dir(sim_dataset, tmp_path, capsys):
    (tmp_path / "link").symlink_to(sim_dataset)
    assert_fails(
        [sim_dataset, tmp_path / "link" / "out", "participant"],
        capsys,
        sim_dataset,
        2,
        "inside BIDS_DIR",
    )


@pytest.mark.parametrize("flag", ["-w", "--bids-database-dir"])
def test_caches_inside_bids_dir(sim_dataset, tmp_path, capsys, flag):
    for where in (sim_dataset / "work", sim_dataset / "derivatives" / "work"):
        assert_fails(
            [sim_dataset, tmp_path / "out", "participant", flag, where],
            capsys,
            sim_dataset,
            2,
            "inside BIDS_DIR",
            flag,
        )


def test_unknown_participant_names_the_existing_ones(sim_dataset, tmp_path, capsys):
    msg = assert_fails(
        [sim_dataset, tmp_path / "out", "participant", "--participant-label", "sub-01", "07"],
        capsys,
        sim_dataset,
        2,
        "not found",
        "07",
    )
    assert msg.endswith("the dataset has: 01, 02")
    assert not (tmp_path / "out").exists()


def test_invalid_participant_label(sim_dataset, tmp_path, capsys):
    assert_fails(
        [sim_dataset, tmp_path / "out", "participant", "--participant-label", "0_1"],
        capsys,
        sim_dataset,
        2,
        "--participant-label",
        "not a sub label",
    )


@pytest.mark.parametrize(
    ("flag", "content", "fragment"),
    [
        ("--bids-filter-file", None, "cannot read the BIDS filter file"),
        ("--bids-filter-file", "{not json", "is not valid JSON"),
        ("--bids-filter-file", '{"eeeg": {}}', "did you mean 'eeg'"),
        ("--bids-filter-file", '{"eeg": {"run": {"a": 1}}}', "eeg.run"),
        ("--config-file", None, "cannot read the config file"),
        ("--config-file", "nprocs = ", "not valid TOML"),
        ("--config-file", "[execution]\nnproc = 2\n", "did you mean 'nprocs'"),
        ("--config-file", "[execution]\nnprocs = 0\n", "nprocs: expected a positive integer"),
        ("--config-file", b"seed = 1 # caf\xe9\n", "is not UTF-8 text (byte 14"),
    ],
)
def test_bad_filter_or_config_file(sim_dataset, tmp_path, capsys, flag, content, fragment):
    path = tmp_path / "file"
    if content is not None:
        (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    assert_fails(
        [sim_dataset, tmp_path / "out", "participant", flag, path],
        capsys,
        sim_dataset,
        2,
        str(path),
        fragment,
    )


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["--mem", "8"], 2, "--mem: expected memory with a unit"),
        (["--nprocs", "0"], 2, "--nprocs: expected a positive integer"),
        (["--seed", "-1"], 2, "--seed"),
        (["--participant-label"], 2, "expected at least one argument"),
        (["--no-such-flag"], 2, "unrecognized arguments"),
        (["--model-grid", "1", "1", "1"], 2, "each size between 8 and 256 voxels expected"),
        (["--model-grid", "4000", "64", "30"], 2, "each size between 8 and 256 voxels"),
    ],
)
def test_bad_option_values(sim_dataset, tmp_path, capsys, args, code, fragment):
    assert_fails(
        [sim_dataset, tmp_path / "out", "participant", *args], capsys, sim_dataset, code, fragment
    )


def test_unknown_analysis_level(sim_dataset, tmp_path, capsys):
    assert_fails(
        [sim_dataset, tmp_path / "out", "grop"], capsys, sim_dataset, 17, "did you mean 'group'"
    )


def test_invalid_bids_is_refused_by_the_validator(sim_copy, tmp_path, capsys):
    sidecar = sim_copy / "sub-01" / "func" / "sub-01_task-rest_bold.json"
    meta = json.loads(sidecar.read_text())
    del meta["RepetitionTime"]
    sidecar.write_text(json.dumps(meta))
    msg = assert_fails(
        [sim_copy, tmp_path / "out", "participant", "-w", tmp_path / "w"],
        capsys,
        sim_copy,
        16,
        "is not valid BIDS",
        "--skip-bids-validation",
    )
    report = msg.split("full report: ")[1].split(";")[0]
    assert Path(report).is_file()
    assert not (tmp_path / "out" / "dataset_description.json").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["--task-label", "nback"],
        ["--session-label", "01"],
        ["--participant-label", "01", "--task-label", "task-motor"],
    ],
)
def test_filters_that_select_nothing(sim_dataset, tmp_path, capsys, args):
    assert_fails(
        [
            sim_dataset,
            tmp_path / "out",
            "participant",
            "--skip-bids-validation",
            "-w",
            tmp_path / "w",
            *args,
        ],
        capsys,
        sim_dataset,
        18,
        "selected none of the 2 EEG recordings",
        "tasks: rest",
    )


def test_filter_file_that_selects_nothing(sim_dataset, tmp_path, capsys):
    path = tmp_path / "f.json"
    path.write_text(json.dumps({"eeg": {"run": 3}, "bold": {"session": None}}))
    assert_fails(
        [
            sim_dataset,
            tmp_path / "out",
            "participant",
            "--skip-bids-validation",
            "-w",
            tmp_path / "w",
            "--bids-filter-file",
            path,
        ],
        capsys,
        sim_dataset,
        18,
        "run=3",
    )


def test_no_eeg_at_all(sim_copy, tmp_path, capsys):
    for sub in ("sub-01", "sub-02"):
        shutil.rmtree(sim_copy / sub / "eeg")
        (sim_copy / sub / f"{sub}_scans.tsv").unlink()
    assert_fails(
        [sim_copy, tmp_path / "out", "participant", "-w", tmp_path / "w"],
        capsys,
        sim_copy,
        66,
        "has no EEG recording",
    )


@pytest.mark.parametrize("which", ["output", "work"])
def test_directories_that_cannot_be_created(sim_dataset, tmp_path, capsys, which):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = blocker / "out" if which == "output" else tmp_path / "out"
    work = blocker / "work" if which == "work" else tmp_path / "work"
    assert_fails(
        [sim_dataset, out, "participant", "-w", work],
        capsys,
        sim_dataset,
        73,
        "cannot create",
        str(blocker),
    )


def test_output_dir_of_another_dataset(sim_dataset, tmp_path, capsys):
    shutil.copy(sim_dataset / "dataset_description.json", tmp_path / "dataset_description.json")
    assert_fails(
        [sim_dataset, tmp_path, "participant"], capsys, sim_dataset, 2, "describes another dataset"
    )


def test_group_with_nothing_to_gather(sim_dataset, tmp_path, capsys):
    assert_fails(
        [sim_dataset, tmp_path / "out", "group", "-w", tmp_path / "w"],
        capsys,
        sim_dataset,
        66,
        "nothing to gather",
    )


def test_unexpected_failure_is_one_line_and_traceback_only_with_v(
    sim_dataset, tmp_path, capsys, monkeypatch
):
    import bids_eeg2fmri.cli.run as run

    def boom(config):
        raise KeyError("boom")

    monkeypatch.setattr(run, "_group", boom)
    args = [sim_dataset, tmp_path / "out", "group", "-w", tmp_path / "w"]
    assert_fails(args, capsys, sim_dataset, 1, "unexpected KeyError", "rerun with -v")
    assert main([str(a) for a in args] + ["-v"]) == 1
    assert "Traceback" in capsys.readouterr().err


# --------------------------------------------------------------------------- success
def test_participant_level_in_bids_derivatives(sim_dataset, tmp_path, capsys, monkeypatch):
    """Validation on, output under BIDS_DIR/derivatives: only that folder appears."""
    bids = Path(shutil.copytree(sim_dataset, tmp_path / "ds"))
    before = tree_digest(bids)
    out = bids / "derivatives" / "bids-eeg2fmri"
    monkeypatch.setenv("BIDS_EEG2FMRI_CONTAINER_TYPE", "docker")
    monkeypatch.setenv("BIDS_EEG2FMRI_CONTAINER_TAG", "bids-eeg2fmri:test")
    code, errors = run_cli(
        [
            bids,
            out,
            "participant",
            "-w",
            tmp_path / "work",
            "--participant-label",
            "sub-02",
            "--mem",
            "2G",
            "--nprocs",
            "2",
            "--omp-nthreads",
            "1",
            "--seed",
            "7",
        ],
        capsys,
    )
    assert code == 0, errors
    after = tree_digest(bids)
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    assert changed and all(k.startswith("derivatives/bids-eeg2fmri/") for k in changed)

    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    generated = description["GeneratedBy"][0]
    assert generated["Name"] == "bids-eeg2fmri" and generated["Name"] in out.name
    assert generated["Version"] == __version__ and generated["CodeURL"].startswith("https://")
    assert generated["Container"] == {"Type": "docker", "Tag": "bids-eeg2fmri:test"}

    (config_file,) = (out / "logs").glob("config-*.toml")
    config = tomllib.loads(config_file.read_text())
    assert config["selection"]["participant_label"] == ["02"]
    assert config["execution"]["mem_gb"] == 2.0 and config["execution"]["nprocs"] == 2
    assert config["workflow"]["seed"] == 7
    assert config["run"]["bids_dir"] == str(bids)
    assert list((out / "logs").glob("bids-validator-*.json"))
    log = next((out / "logs").glob("bids-eeg2fmri-*.log")).read_text()
    assert "Selected 1 EEG recording(s) of 1 participant(s)" in log


def test_config_file_replay_and_cli_override(sim_dataset, tmp_path, capsys):
    out = tmp_path / "out"
    filters = tmp_path / "filters.json"
    filters.write_text(json.dumps({"eeg": {"session": None}, "bold": {"run": "*"}}))
    first = [
        sim_dataset,
        out,
        "participant",
        "--skip-bids-validation",
        "-w",
        tmp_path / "w",
        "--nprocs",
        "1",
        "--task-label",
        "rest",
        "--bids-filter-file",
        filters,
    ]
    assert run_cli(first, capsys)[0] == 0
    (recorded,) = (out / "logs").glob("config-*.toml")
    assert (
        run_cli(
            [sim_dataset, out, "participant", "--config-file", recorded, "--nprocs", "2"], capsys
        )[0]
        == 0
    )
    latest = max((out / "logs").glob("config-*.toml"), key=os.path.getmtime)
    replayed = tomllib.loads(latest.read_text())
    assert replayed["execution"]["nprocs"] == 2  # the command line wins
    assert replayed["execution"]["skip_bids_validation"] is True  # from the file
    assert replayed["selection"]["task_label"] == ["rest"]
    assert json.loads(replayed["selection"]["bids_filters"]) == {
        "bold": {"run": "*"},
        "eeg": {"session": None},
    }


def test_labels_from_a_file(sim_dataset, tmp_path, capsys):
    labels = tmp_path / "labels.txt"
    labels.write_text("# participants to run\nsub-01\n\n02  # second\n")
    out = tmp_path / "out"
    code, errors = run_cli(
        [
            sim_dataset,
            out,
            "participant",
            "--skip-bids-validation",
            "-w",
            tmp_path / "w",
            "--participant-label",
            labels,
        ],
        capsys,
    )
    assert code == 0, errors
    (config_file,) = (out / "logs").glob("config-*.toml")
    assert tomllib.loads(config_file.read_text())["selection"]["participant_label"] == ["01", "02"]


def test_bids_database_dir_is_reused(sim_dataset, tmp_path, capsys):
    database = tmp_path / "db"
    args = [
        sim_dataset,
        tmp_path / "out",
        "participant",
        "--skip-bids-validation",
        "-w",
        tmp_path / "w",
        "--bids-database-dir",
        database,
    ]
    assert run_cli(args, capsys)[0] == 0
    assert any(database.iterdir())
    assert run_cli(args, capsys)[0] == 0
    logs = (tmp_path / "out" / "logs").glob("bids-eeg2fmri-*.log")
    first, second = sorted(logs, key=os.path.getmtime)
    assert "Building the pybids index" in first.read_text()
    assert "Reusing the pybids index" in second.read_text()


# --------------------------------------------------------------------------- quiet TensorFlow
def test_tensorflow_loads_without_its_cpp_lines_unless_verbose():
    code = (
        "import logging, sys\n"
        "log = logging.getLogger('bids_eeg2fmri')\n"
        "log.setLevel(logging.DEBUG)\n"
        "log.addHandler(logging.StreamHandler(sys.stdout))\n"
        "from bids_eeg2fmri.models.runtime import load_tensorflow\n"
        "load_tensorflow(verbose=False)\n"
        "import tensorflow as tf\n"
        "tf.zeros(1) + 1\n"  # the first op (device set-up: cuInit errors without a GPU)
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP")}
    quiet = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert quiet.stderr == ""
    # what TensorFlow printed while loading is in the log, not lost
    lines = quiet.stdout.splitlines()
    assert lines and all(line.startswith("TensorFlow: ") for line in lines), lines


def test_quiet_tensorflow_gives_other_lines_back(capsys, caplog):
    from bids_eeg2fmri.models.runtime import _replay

    caplog.set_level(logging.DEBUG, logger="bids_eeg2fmri")
    _replay(
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        "I0000 00:00:1796437600.921596    9324 port.cc:153] oneDNN custom operations are on.\n"
        "E0000 00:00:1796437528.117592    9125 cuda_platform.cc:52] failed call to cuInit\n"
        "something else the user must see\n"
    )
    assert capsys.readouterr().err == "something else the user must see\n"
    assert sum("TensorFlow: " in r.getMessage() for r in caplog.records) == 3

"""Shared fixtures: small simulated datasets, generated once per session."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from bids_eeg2fmri.simulate.generator import SimulationConfig
from bids_eeg2fmri.simulate.writer import simulate_dataset

#: Small enough for seconds, large enough to carry the coupling: 2 participants,
#: 60 volumes, 16 EEG channels + ECG, a 20 x 22 x 12 grid (uneven on purpose).
SMALL = SimulationConfig(n_participants=2, n_volumes=60, n_channels=16, grid=(20, 22, 12))


@pytest.fixture(scope="session")
def sim_dataset(tmp_path_factory) -> Path:
    """A read-only simulated dataset (copy it before changing anything)."""
    return simulate_dataset(SMALL, tmp_path_factory.mktemp("sim") / "ds")


@pytest.fixture
def sim_copy(sim_dataset, tmp_path) -> Path:
    """A private copy of the simulated dataset, for tests that alter it."""
    return Path(shutil.copytree(sim_dataset, tmp_path / "ds"))


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> Path:
    """One participant, 30 volumes, 8 channels, a small grid (read-only): a CLI run on it
    takes seconds; the bad-input tests break copies of it."""
    config = SimulationConfig(n_participants=1, n_volumes=30, n_channels=8, grid=(12, 13, 8))
    return simulate_dataset(config, tmp_path_factory.mktemp("tiny") / "ds")


@pytest.fixture
def ds(tiny, tmp_path) -> Path:
    """A private copy of ``tiny`` (symbolic links kept), for tests that break it."""
    return Path(shutil.copytree(tiny, tmp_path / "ds", symlinks=True))


#: The trained-model fixtures: 3 participants (the third held out), 40 volumes, 12 channels.
TINY = dict(n_volumes=40, n_channels=12, grid=(12, 13, 8))
TRAIN = ["--train", "--epochs", "1", "--batch-size", "8", "--model-grid", "12", "13", "8"]


def cli(bids, out, work, capsys, *extra):
    """``participant`` without validation, one process."""
    return run_cli(
        [bids, out, "participant", "--skip-bids-validation", "-w", work, "--nprocs", "1", *extra],
        capsys,
    )


def built_once(tmp_path_factory, name: str, build) -> Path:
    """``build(folder)`` once per test session, even when pytest-xdist runs the tests that
    need it on several workers (xdist's groups do not always keep them on one): the
    workers share the session's temporary root, and a file lock makes the others wait
    for the first one's result. Returns the folder."""
    import fcntl
    import os

    if "PYTEST_XDIST_WORKER" not in os.environ:
        folder = tmp_path_factory.mktemp(name)
        build(folder)
        return folder
    shared = tmp_path_factory.getbasetemp().parent  # this session's, shared by its workers
    folder = shared / f"built-{name}"
    with open(shared / f"built-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / ".done").exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            (folder / ".done").touch()
    return folder


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> Path:
    """A read-only simulated dataset for the trained-model tests."""
    config = SimulationConfig(n_participants=3, **TINY)
    return (
        built_once(tmp_path_factory, "synth", lambda f: simulate_dataset(config, f / "ds")) / "ds"
    )


@pytest.fixture(scope="session")
def trained(dataset, tmp_path_factory) -> Path:
    """OUTPUT_DIR of ``participant --train`` on :func:`dataset` (read-only: copy it to
    change it), trained once per session."""
    return built_once(tmp_path_factory, "trained", lambda root: _train(dataset, root)) / "out"


def _train(dataset: Path, root: Path) -> None:
    from bids_eeg2fmri.cli.run import main

    args = [
        dataset,
        root / "out",
        "participant",
        "--skip-bids-validation",
        "-w",
        root / "work",
        "--nprocs",
        "1",
        *TRAIN,
    ]
    assert main([str(a) for a in args]) == 0


def tree_digest(root: Path) -> dict[str, str]:
    """SHA-256 of every file below ``root`` (and the set of folders), by relative path."""
    digest = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_dir():
            digest[rel + "/"] = "dir"
        else:
            digest[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digest


def run_cli(args, capsys) -> tuple[int, list[str]]:
    """Run ``bids-eeg2fmri`` in-process; return the exit code and its error lines."""
    from bids_eeg2fmri.cli.run import main

    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse
        code = exc.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, [line for line in err.splitlines() if line.startswith("bids-eeg2fmri: error:")]


def input_bins(eeg_shape, tr: float = 2.0) -> dict:
    """``tr`` and ``frequencies`` for build_models: the FFT bins ``k / TR`` of TR-long
    windows, ``k = 1 ... freqs`` (as the features have them)."""
    return {"tr": tr, "frequencies": [k / tr for k in range(1, int(eeg_shape[1]) + 1)]}

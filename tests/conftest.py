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

"""The participant level end to end: pairing, volume onsets, features, BOLD, resume, bad input."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import run_cli, tree_digest

from bids_eeg2fmri.simulate.generator import SimulationConfig
from bids_eeg2fmri.simulate.writer import simulate_dataset

SMALL = dict(n_volumes=24, n_channels=12, grid=(12, 13, 8))
EXT = {"brainvision": ".vhdr", "edf": ".edf", "bdf": ".bdf", "eeglab": ".set"}


def participant(bids, tmp_path, capsys, *extra, out="out", work="work"):
    return run_cli(
        [
            bids,
            tmp_path / out,
            "participant",
            "--skip-bids-validation",
            "-w",
            tmp_path / work,
            "--nprocs",
            "1",
            *extra,
        ],
        capsys,
    )


def read_events(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def drop_bold(root: Path, stem: str) -> None:
    """Make a run EEG-only: remove its BOLD files and their scans.tsv row."""
    for path in root.rglob(f"{stem}_bold.*"):
        path.unlink()
    for scans in root.rglob("*_scans.tsv"):
        lines = scans.read_text().splitlines(keepends=True)
        scans.write_text("".join(line for line in lines if f"{stem}_bold" not in line))


# --------------------------------------------------------------------------- onsets = truth
@pytest.mark.parametrize("eeg_format", ["brainvision", "edf", "bdf", "eeglab"])
def test_volume_onsets_equal_the_truth_to_the_sample(tmp_path, capsys, eeg_format):
    config = SimulationConfig(
        n_participants=1, n_sessions=2, n_runs=2, n_dummy=2, seed=5, eeg_format=eeg_format, **SMALL
    )
    root = simulate_dataset(config, tmp_path / "ds")
    drop_bold(root, "sub-01_ses-02_task-rest_run-2")  # one EEG-only run
    code, errors = participant(root, tmp_path, capsys)
    assert code == 0, errors

    truth = json.loads((root / "derivatives/simulation/simulation.json").read_text())
    assert len(truth["runs"]) == 4
    for run in truth["runs"]:
        eeg = Path(run["eeg"])
        stem = eeg.name.rsplit("_eeg", 1)[0]
        events = read_events(tmp_path / "out" / eeg.parent / f"{stem}_desc-volumes_events.tsv")
        eeg_only = stem.endswith("ses-02_task-rest_run-2")
        first = run["first_marker_onset_s"] if eeg_only else run["first_volume_onset_s"]
        n = run["n_markers"] if eeg_only else config.n_volumes
        expected = np.round((first + config.tr * np.arange(n)) * config.sfreq).astype(int)
        assert [int(e["sample"]) for e in events] == expected.tolist(), stem
        assert {e["marker"] for e in events} == {"found"}
        assert [int(e["volume"]) for e in events] == list(range(n))


def test_features_and_bold_are_cached_for_the_next_steps(sim_dataset, tmp_path, capsys):
    assert participant(sim_dataset, tmp_path, capsys)[0] == 0
    run_dir = next((tmp_path / "work").glob("bids_eeg2fmri_*_wf/sub_01_task_rest"))
    features = np.load(run_dir / "eeg_features" / "features.npy", mmap_mode="r")
    info = json.loads((run_dir / "eeg_features" / "features.json").read_text())
    assert features.shape == (60 + 10 - 1, 16, 134) and features.dtype == np.float32
    assert len(info["channels"]) == 16 and "ECG" not in info["channels"]
    assert len(info["valid"]) == 60 and any(info["valid"])
    bold = nib.load(run_dir / "prepare_bold" / "bold.nii", mmap=True)
    assert bold.shape == (64, 64, 30, 60)
    mask = nib.load(run_dir / "prepare_bold" / "mask.nii.gz").get_fdata() > 0
    z = bold.get_fdata()
    assert 0.05 < mask.mean() < 0.8
    assert np.allclose(z[mask].mean(axis=-1), 0, atol=1e-3) and np.all(z[~mask] == 0)


# --------------------------------------------------------------------------- cache and resume
def test_a_crashed_run_resumes_and_a_rerun_recomputes_nothing(sim_dataset, tmp_path, capsys):
    clean = tmp_path / "clean"
    assert participant(sim_dataset, clean, capsys)[0] == 0

    bids = Path(shutil.copytree(sim_dataset, tmp_path / "ds"))
    bold = bids / "sub-02/func/sub-02_task-rest_bold.nii.gz"
    kept = bold.read_bytes()
    img = nib.load(bold)
    nib.Nifti1Image(np.asarray(img.dataobj)[..., 0], img.affine).to_filename(bold)  # 3-D
    code, errors = participant(bids, tmp_path, capsys)
    assert code == 65 and "must be 4-D" in errors[0]
    assert not (tmp_path / "out/sub-02/eeg/sub-02_task-rest_desc-volumes_events.tsv").exists()
    assert (tmp_path / "out/sub-01/eeg/sub-01_task-rest_desc-volumes_events.tsv").exists()

    bold.write_bytes(kept)
    assert participant(bids, tmp_path, capsys)[0] == 0
    resumed = max((tmp_path / "out/logs").glob("*.log"), key=os.path.getmtime).read_text()
    assert 'Cached "bids_eeg2fmri_0_1_wf.sub_01_task_rest.eeg_features"' in resumed
    nodes = ("volume_timing", "mr_correction", "eeg_features", "prepare_bold", "run_complete")
    for node in (*nodes, "volume_events", "mr_derivatives"):
        assert f'Cached "bids_eeg2fmri_0_1_wf.sub_01_task_rest.{node}"' in resumed
    assert resumed.count("Executing") == 7  # sub-02's seven nodes, now that its BOLD is 4-D

    assert participant(bids, tmp_path, capsys)[0] == 0
    rerun = max((tmp_path / "out/logs").glob("*.log"), key=os.path.getmtime).read_text()
    assert "Executing" not in rerun and rerun.count("Cached") == 14

    assert derivatives(tmp_path / "out") == derivatives(clean / "out")


def derivatives(root: Path) -> dict[str, str]:
    """Digest of the derivative files (crash reports under sub-*/log/, and the reports,
    which record the date, left out)."""
    return {
        k: v
        for k, v in tree_digest(root).items()
        if k.startswith("sub-")
        and "/log/" not in k
        and "/figures/" not in k
        and not k.endswith(".html")
    }


def test_a_killed_run_resumes_with_identical_outputs(sim_dataset, tmp_path, capsys):
    clean = tmp_path / "clean"
    assert participant(sim_dataset, clean, capsys)[0] == 0
    args = [
        sys.executable,
        "-m",
        "bids_eeg2fmri",
        str(sim_dataset),
        str(tmp_path / "out"),
        "participant",
        "--skip-bids-validation",
        "-w",
        str(tmp_path / "work"),
        "--nprocs",
        "1",
    ]
    proc = subprocess.Popen(args, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if list((tmp_path / "work").glob("*/*/volume_timing/result_volume_timing.pklz")):
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    assert proc.wait() == -signal.SIGKILL  # killed mid-way, not finished
    assert not list((tmp_path / "out").glob("sub-*/eeg/*_events.tsv"))
    assert participant(sim_dataset, tmp_path, capsys)[0] == 0
    log = max((tmp_path / "out/logs").glob("*.log"), key=os.path.getmtime).read_text()
    assert "Cached" in log

    assert derivatives(tmp_path / "out") == derivatives(clean / "out")


# --------------------------------------------------------------------------- bad input
def _vmrk(bids: Path, sub: str = "02") -> Path:
    return bids / f"sub-{sub}/eeg/sub-{sub}_task-rest_eeg.vmrk"


def _remove_markers(bids: Path, keep) -> None:
    """Keep only the volume markers whose index passes ``keep`` (vmrk and events.tsv)."""
    vmrk = _vmrk(bids)
    lines, index = [], 0
    for line in vmrk.read_text().splitlines():
        if ",R128," in line:
            index += 1
            if not keep(index - 1):
                continue
        lines.append(line)
    vmrk.write_text("\n".join(lines) + "\n")
    events = bids / "sub-02/eeg/sub-02_task-rest_events.tsv"
    rows = events.read_text().splitlines()
    events.write_text("\n".join([rows[0]] + [r for i, r in enumerate(rows[1:]) if keep(i)]) + "\n")


def _truncate_eeg(bids):
    data = bids / "sub-02/eeg/sub-02_task-rest_eeg.eeg"
    header = data.with_suffix(".vhdr").read_text(encoding="utf-8")
    frame = 4 * int(header.split("NumberOfChannels=")[1].split()[0])  # float32 samples
    keep = data.stat().st_size // 3  # whole samples (a partial one is a header error)
    data.write_bytes(data.read_bytes()[: keep - keep % frame])


def _garble_header(bids):
    (bids / "sub-02/eeg/sub-02_task-rest_eeg.vhdr").write_text(
        "DataFile=sub-02_task-rest_eeg.eeg\n"
    )


def _delete_eeg_data(bids):
    (bids / "sub-02/eeg/sub-02_task-rest_eeg.eeg").unlink()


def _bold_3d(bids):
    path = bids / "sub-02/func/sub-02_task-rest_bold.nii.gz"
    img = nib.load(path)
    nib.Nifti1Image(np.asarray(img.dataobj)[..., 0], img.affine).to_filename(path)


def _nan_bold(bids):
    path = bids / "sub-02/func/sub-02_task-rest_bold.nii.gz"
    img = nib.load(path)
    data = np.asarray(img.dataobj, dtype=np.float32)
    data[3, 4, 5, 6] = np.nan
    nib.Nifti1Image(data, img.affine).to_filename(path)  # float32: NaN survives


def _nan_eeg(bids):
    data = bids / "sub-02/eeg/sub-02_task-rest_eeg.eeg"
    samples = np.fromfile(data, dtype="<f4")
    samples[1000] = np.nan
    samples.tofile(data)


@pytest.mark.parametrize(
    ("breaker", "fragment"),
    [
        (_truncate_eeg, "shorter than the BOLD run"),
        (_garble_header, "cannot read the EEG"),
        (_delete_eeg_data, "its data file 'sub-02_task-rest_eeg.eeg' is missing"),
        (_bold_3d, "BOLD must be 4-D"),
        (_nan_bold, "BOLD holds NaN"),
        (_nan_eeg, "NaN or infinite samples"),
        (lambda b: _remove_markers(b, lambda i: False), "no volume markers match"),
        (lambda b: _remove_markers(b, lambda i: i >= 3), "57 volume markers for 60 BOLD volumes"),
        (lambda b: _remove_markers(b, lambda i: i != 20), None),  # repaired: not an error
    ],
    ids=[
        "truncated-eeg",
        "unreadable-eeg",
        "missing-data-file",
        "bold-3d",
        "nan-bold",
        "nan-eeg",
        "no-markers",
        "marker-count",
        "one-missing-marker",
    ],
)
def test_bad_runs_fail_alone_with_a_clear_message(sim_copy, tmp_path, capsys, breaker, fragment):
    breaker(sim_copy)
    code, errors = participant(sim_copy, tmp_path, capsys)
    broken = tmp_path / "out/sub-02/eeg/sub-02_task-rest_desc-volumes_events.tsv"
    assert (tmp_path / "out/sub-01/eeg/sub-01_task-rest_desc-volumes_events.tsv").exists()
    if fragment is None:
        assert code == 0, errors
        assert [e["marker"] for e in read_events(broken)][19:22] == ["found", "repaired", "found"]
        return
    assert code == 65, errors
    assert len(errors) == 1 and fragment in errors[0] and "sub-02_task-rest" in errors[0]
    assert "crash report" in errors[0]
    assert not broken.exists() and not broken.with_suffix(".json").exists()
    assert list((tmp_path / "out/sub-02/log").glob("*/crash-*.txt"))


def test_no_markers_with_a_given_first_onset(sim_copy, tmp_path, capsys):
    _remove_markers(sim_copy, lambda i: False)
    code, errors = participant(sim_copy, tmp_path, capsys, "--first-volume-onset", "12.5")
    assert code == 0, errors
    events = read_events(tmp_path / "out/sub-02/eeg/sub-02_task-rest_desc-volumes_events.tsv")
    assert float(events[0]["onset"]) == 12.5 and float(events[1]["onset"]) == pytest.approx(14.66)
    assert {e["marker"] for e in events} == {"given"}


def test_too_few_model_channels(sim_dataset, tmp_path, capsys):
    code, errors = participant(
        sim_dataset, tmp_path, capsys, "--channels", "Fp1", "Fp2", "X1", "X2", "X3"
    )
    assert code == 65 and "only 2 of the model's 5 channels" in errors[0]
    assert "missing: X1, X2, X3" in errors[0]
    assert not list((tmp_path / "out").glob("sub-*/eeg/*_events.tsv"))


def test_too_few_model_channels_named_by_the_users_file(tmp_path, capsys):
    # a 500 Hz recording is read from its downsampled working copy: the error still names
    # the file in BIDS_DIR, not the copy in the work directory
    config = SimulationConfig(n_participants=1, n_volumes=20, n_channels=8, grid=(12, 13, 8),
                              sfreq=500.0)  # fmt: skip
    bids = simulate_dataset(config, tmp_path / "ds")
    code, errors = participant(bids, tmp_path, capsys, "--channels", "Fp1", "X1", "X2")
    assert code == 65 and "only 1 of the model's 3 channels" in errors[0], errors
    assert errors[0].startswith("bids-eeg2fmri: error: sub-01_task-rest_eeg.vhdr: "), errors
    assert "desc-downsampled" not in errors[0]


def test_warnings_that_do_not_stop_a_run(sim_copy, tmp_path, capsys):
    vmrk = _vmrk(sim_copy)
    vmrk.write_text(
        vmrk.read_text().replace("DataFile=sub-02_task-rest_eeg.eeg", "DataFile=other.eeg")
    )
    bold = sim_copy / "sub-02/func/sub-02_task-rest_bold.nii.gz"
    img = nib.load(bold)
    img.header.set_zooms((*img.header.get_zooms()[:3], 3.0))
    img.to_filename(bold)
    code, errors = participant(sim_copy, tmp_path, capsys)
    assert code == 0, errors
    log = next((tmp_path / "out/logs").glob("*.log")).read_text()
    assert "names data file 'other.eeg'" in log and "using the header's" in log
    assert "sidecar TR 2.16 s, header TR 3 s: using the sidecar's" in log


def test_bold_without_eeg_is_skipped_and_acq_time_must_agree(sim_copy, tmp_path, capsys):
    scans = sim_copy / "sub-02/sub-02_scans.tsv"
    scans.write_text(
        scans.read_text().replace(
            "func/sub-02_task-rest_bold.nii.gz\t2024-01-02T09:00:00",
            "func/sub-02_task-rest_bold.nii.gz\t2024-01-02T11:00:00",
        )
    )
    code, errors = participant(sim_copy, tmp_path, capsys, "--participant-label", "02")
    assert code == 0, errors
    log = next((tmp_path / "out/logs").glob("*.log")).read_text()
    assert (
        "share entities but not acq_time" in log
        and "sub-02_task-rest_bold.nii.gz has no simultaneous EEG: skipped" in log
    )
    assert "(EEG only)" in log


def test_eeg_from_a_derivatives_dataset(sim_dataset, tmp_path, capsys):
    """--eeg-derivatives: the cleaned EEG with the same entities replaces the raw one."""
    deriv = tmp_path / "cleaned"
    for sub in ("01", "02"):
        folder = deriv / f"sub-{sub}" / "eeg"
        folder.mkdir(parents=True)
        for ext in ("vhdr", "vmrk", "eeg"):
            text = (sim_dataset / f"sub-{sub}/eeg/sub-{sub}_task-rest_eeg.{ext}").read_bytes()
            if ext != "eeg":
                text = text.replace(b"task-rest_eeg.", b"task-rest_desc-clean_eeg.")
            (folder / f"sub-{sub}_task-rest_desc-clean_eeg.{ext}").write_bytes(text)
    code, errors = participant(sim_dataset, tmp_path, capsys, "--eeg-derivatives", deriv)
    assert code == 0, errors
    sidecar = json.loads(
        (tmp_path / "out/sub-01/eeg/sub-01_task-rest_desc-volumes_events.json").read_text()
    )
    assert sidecar["Sources"] == [
        (deriv / "sub-01/eeg/sub-01_task-rest_desc-clean_eeg.vhdr").as_uri()
    ]
    clean = tmp_path / "plain"
    assert participant(sim_dataset, clean, capsys)[0] == 0
    assert (tmp_path / "out/sub-01/eeg/sub-01_task-rest_desc-volumes_events.tsv").read_text() == (
        clean / "out/sub-01/eeg/sub-01_task-rest_desc-volumes_events.tsv"
    ).read_text()
    (deriv / "sub-02/eeg/sub-02_task-rest_desc-clean_eeg.vhdr").unlink()
    code, errors = participant(
        sim_dataset, tmp_path, capsys, "--eeg-derivatives", deriv, out="out2", work="work2"
    )
    assert code == 65 and "expected one EEG file like" in errors[0]


def test_stop_on_first_crash(sim_copy, tmp_path, capsys):
    _bold_3d(sim_copy)  # sub-02 fails...
    (sim_copy / "sub-01/eeg/sub-01_task-rest_eeg.eeg").unlink()  # ...and sub-01 too
    code, errors = participant(sim_copy, tmp_path, capsys, "--stop-on-first-crash")
    assert code == 65
    crashes = list((tmp_path / "out").glob("sub-*/log/*/crash-*.txt"))
    assert len(crashes) == 1  # the run stopped at the first
    from bids_eeg2fmri.cli.run import main

    code = main([str(sim_copy), str(tmp_path / "all"), "participant", "--skip-bids-validation",
                 "-w", str(tmp_path / "work2"), "--nprocs", "1"])  # fmt: skip
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("bids-eeg2fmri: error:")]
    assert code == 65 and len(errors) == 1 and "(1 more step(s) failed: above)" in errors[0]
    # each failure's message once on stderr: the first in the error line, the other logged
    for name in ("sub-01_task-rest_eeg", "sub-02_task-rest_bold"):
        assert sum(name in line and "crash report" in line for line in err.splitlines()) == 1, err


def test_a_bold_filter_that_excludes_every_bold_leaves_eeg_only_runs(sim_dataset, tmp_path, capsys):
    filters = tmp_path / "f.json"
    filters.write_text(json.dumps({"bold": {"task": "other"}}))
    code, errors = participant(sim_dataset, tmp_path, capsys, "--bids-filter-file", filters)
    assert code == 0, errors
    log = next((tmp_path / "out/logs").glob("*.log")).read_text()
    assert log.count("(EEG only)") == 2
    events = read_events(tmp_path / "out/sub-01/eeg/sub-01_task-rest_desc-volumes_events.tsv")
    assert len(events) == 60  # every marker is a volume


def test_missing_model_channels_are_interpolated_and_reported(sim_dataset, tmp_path, capsys):
    channels = ["Fp1", "Fp2", "F3", "F4", "C3", "C4", "P3", "P4", "O1", "O2", "Oz", "Cz"]
    code, errors = participant(sim_dataset, tmp_path, capsys, "--channels", *channels)
    assert code == 0, errors  # the simulated 16-channel cap has neither Oz nor Cz
    run_dir = next((tmp_path / "work").glob("bids_eeg2fmri_*_wf/sub_01_task_rest"))
    info = json.loads((run_dir / "eeg_features" / "features.json").read_text())
    assert info["channels"] == channels and info["interpolated"] == ["Oz", "Cz"]
    assert np.load(run_dir / "eeg_features" / "features.npy").shape[1] == 12
    log = next((tmp_path / "out/logs").glob("*.log")).read_text()
    assert "interpolated missing channel(s) Oz, Cz" in log

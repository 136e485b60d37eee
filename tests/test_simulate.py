"""The simulator: valid BIDS in every EEG format, deterministic, and really coupled."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import mne
import nibabel as nib
import numpy as np
import pytest
from conftest import SMALL, tree_digest
from scipy import signal

from bids_eeg2fmri.bidsio.validator import errors_of, run_validator
from bids_eeg2fmri.simulate import physiology
from bids_eeg2fmri.simulate.cli import main as simulate_main
from bids_eeg2fmri.simulate.generator import SimulationConfig
from bids_eeg2fmri.simulate.writer import simulate_dataset

TINY = dict(n_participants=1, n_volumes=20, n_channels=8, grid=(12, 13, 8))
EXTENSION = {"brainvision": ".vhdr", "edf": ".edf", "bdf": ".bdf", "eeglab": ".set"}


# --------------------------------------------------------------------------- BIDS
@pytest.mark.parametrize("eeg_format", ["brainvision", "edf", "bdf", "eeglab"])
def test_valid_bids_and_byte_identical_for_a_seed(tmp_path, eeg_format):
    config = SimulationConfig(**TINY, eeg_format=eeg_format, seed=3, n_dummy=2)
    first = simulate_dataset(config, tmp_path / "a")
    second = simulate_dataset(config, tmp_path / "b")
    assert tree_digest(first) == tree_digest(second)

    report = run_validator(first, cache_dir=tmp_path / "deno")
    assert errors_of(report) == []
    assert report["summary"]["subjects"] == ["01"]

    eeg = first / "sub-01" / "eeg" / f"sub-01_task-rest_eeg{EXTENSION[eeg_format]}"
    raw = mne.io.read_raw(eeg, verbose=False)
    onsets = raw.annotations.onset[raw.annotations.description == "Response/R128"]
    assert len(onsets) == 2 + 20  # dummy volumes keep their markers
    assert np.allclose(np.diff(onsets), 2.16, atol=1.5 / raw.info["sfreq"])
    assert onsets[0] > 0  # the EEG starts before the first volume
    bold = nib.load(first / "sub-01" / "func" / "sub-01_task-rest_bold.nii.gz")
    assert bold.shape == (12, 13, 8, 20)
    assert bold.header.get_zooms()[3] == pytest.approx(2.16)
    meta = json.loads((first / "sub-01" / "func" / "sub-01_task-rest_bold.json").read_text())
    assert meta["RepetitionTime"] == 2.16 and meta["NumberOfVolumesDiscardedByScanner"] == 2


def test_another_seed_gives_other_data(tmp_path):
    a = tree_digest(simulate_dataset(SimulationConfig(**TINY, seed=1), tmp_path / "a"))
    b = tree_digest(simulate_dataset(SimulationConfig(**TINY, seed=2), tmp_path / "b"))
    assert (
        a["sub-01/func/sub-01_task-rest_bold.nii.gz"]
        != b["sub-01/func/sub-01_task-rest_bold.nii.gz"]
    )
    assert a["sub-01/eeg/sub-01_task-rest_eeg.eeg"] != b["sub-01/eeg/sub-01_task-rest_eeg.eeg"]


def test_participants_simulated_at_a_time_give_the_same_dataset(tmp_path):
    # in fresh processes (the CLI's): the workers are forked, and this pytest process may
    # run TensorFlow's threads
    for name, nprocs in (("one", "1"), ("three", "3")):
        args = [str(tmp_path / name), "--participants", "3", "--sessions", "2", "--volumes",
                "20", "--channels", "8", "--grid", "12", "13", "8", "--seed", "4",
                "--nprocs", nprocs]  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-m", "bids_eeg2fmri.simulate.cli", *args],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        said = re.findall(r"\[(\d+)/6\] sub-(\d+) ses-(\d+)", done.stderr)
        assert sorted(said) == sorted(
            (str(k), f"{p:02d}", f"{s:02d}")
            for k, (p, s) in enumerate(((p, s) for p in (1, 2, 3) for s in (1, 2)), start=1)
        )
    assert tree_digest(tmp_path / "one") == tree_digest(tmp_path / "three")


def test_no_forked_participants_beside_tensorflow(tmp_path, monkeypatch):
    import types

    from bids_eeg2fmri.simulate import writer

    def no_pool(*args, **kwargs):
        raise AssertionError("forked beside TensorFlow")

    monkeypatch.setattr(writer, "ProcessPoolExecutor", no_pool)
    monkeypatch.setitem(sys.modules, "tensorflow", types.ModuleType("tensorflow"))
    config = SimulationConfig(**{**TINY, "n_participants": 2})
    assert (simulate_dataset(config, tmp_path / "ds", nprocs=2) / "sub-02").is_dir()


def test_sessions_runs_and_simultaneity(tmp_path):
    config = SimulationConfig(**{**TINY, "n_participants": 2}, n_sessions=2, n_runs=2)
    root = simulate_dataset(config, tmp_path / "ds")
    assert errors_of(run_validator(root, cache_dir=tmp_path / "deno")) == []
    for sub in ("01", "02"):
        for ses in ("01", "02"):
            folder = root / f"sub-{sub}" / f"ses-{ses}"
            with open(folder / f"sub-{sub}_ses-{ses}_scans.tsv", newline="") as handle:
                rows = {
                    r["filename"]: r["acq_time"] for r in csv.DictReader(handle, delimiter="\t")
                }
            for run in (1, 2):
                stem = f"sub-{sub}_ses-{ses}_task-rest_run-{run}"
                eeg, bold = f"eeg/{stem}_eeg.vhdr", f"func/{stem}_bold.nii.gz"
                assert rows[eeg] == rows[bold]  # simultaneous: identical acq_time
    truth = json.loads((root / "derivatives/simulation/simulation.json").read_text())
    assert len(truth["runs"]) == 8


def test_channels_tsv_types_the_ecg(sim_dataset):
    with open(sim_dataset / "sub-01/eeg/sub-01_task-rest_channels.tsv", newline="") as handle:
        types = {r["name"]: r["type"] for r in csv.DictReader(handle, delimiter="\t")}
    assert types.pop("ECG") == "ECG"
    assert len(types) == 16 and set(types.values()) == {"EEG"}


def test_ground_truth_files(sim_dataset):
    truth = sim_dataset / "derivatives" / "simulation"
    description = json.loads((truth / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    func = truth / "sub-01" / "func"
    noiseless = nib.load(func / "sub-01_task-rest_desc-noiseless_bold.nii.gz")
    assert noiseless.shape == (20, 22, 12, 60)
    ceiling = json.loads((func / "sub-01_task-rest_noiseceiling.json").read_text())
    assert 0.2 < ceiling["noise_ceiling_median"] < 1.0
    assert set(ceiling["sources"]) == {"alpha", "beta", "theta"}
    r = nib.load(func / "sub-01_task-rest_noiseceiling.nii.gz").get_fdata()
    assert np.isfinite(r).sum() == ceiling["n_coupled_voxels"] > 0
    params = json.loads((truth / "simulation.json").read_text())
    assert params["config"]["seed"] == 0 and params["config"]["grid"] == [20, 22, 12]


# --------------------------------------------------------------------------- coupling
def _volume_band_power(raw, picks, band, onsets, tr):
    """Mean band power in the TR-long EEG window that ends at each volume onset."""
    data = raw.get_data(picks=picks)
    sos = signal.butter(4, band, btype="bandpass", fs=raw.info["sfreq"], output="sos")
    power = np.mean(np.abs(signal.hilbert(signal.sosfiltfilt(sos, data, axis=-1))) ** 2, axis=0)
    sf = raw.info["sfreq"]
    out = []
    for onset in onsets:
        stop = int(round(onset * sf))
        out.append(power[max(0, stop - int(round(tr * sf))) : stop].mean())
    return np.asarray(out)


@pytest.fixture(scope="module")
def long_run(tmp_path_factory) -> Path:
    """One participant, 160 volumes: long enough for stable correlations."""
    config = SimulationConfig(n_participants=1, n_volumes=160, n_channels=32, grid=(16, 18, 10))
    return simulate_dataset(config, tmp_path_factory.mktemp("long") / "ds")


def test_eeg_band_power_drives_its_voxels_only(long_run):
    """From the files alone: a source's HRF-convolved band power, measured on the EEG at the
    electrodes nearest to it, follows its BOLD region with the simulated sign, and does
    not follow the other sources' regions."""
    tr = SMALL.tr
    sim_dataset = long_run
    raw = mne.io.read_raw_brainvision(
        sim_dataset / "sub-01/eeg/sub-01_task-rest_eeg.vhdr", verbose=False
    )
    onsets = raw.annotations.onset[raw.annotations.description == "Response/R128"]
    bold = nib.load(sim_dataset / "sub-01/func/sub-01_task-rest_bold.nii.gz").get_fdata()
    anat = sim_dataset / "derivatives/simulation/sub-01/anat"
    maps = {
        s.name: nib.load(anat / f"sub-01_label-{s.name}_probseg.nii.gz").get_fdata()
        for s in SMALL.sources
    }
    electrodes = {
        "alpha": ["O1", "O2", "Oz", "POz"],
        "beta": ["C3", "FC1", "CP1"],
        "theta": ["Fz", "F3", "F4"],
    }
    hrf_times = np.arange(len(onsets)) * tr
    for source in SMALL.sources:
        picks = [c for c in electrodes[source.name] if c in raw.ch_names]
        power = _volume_band_power(raw, picks, source.band, onsets, tr)
        predicted = physiology.zscore(
            physiology.hrf_regressor(power / power.mean() - 1, 1 / tr, hrf_times + tr / 2)
        )
        r = {}
        for name, weights in maps.items():
            voxels = bold[weights >= 0.5]
            series = voxels.mean(axis=0)
            r[name] = np.corrcoef(predicted[10:], series[10:])[0, 1]
        assert np.sign(r[source.name]) == np.sign(source.coupling), r
        assert abs(r[source.name]) > 0.4, (source.name, r)
        others = [abs(v) for k, v in r.items() if k != source.name]
        assert max(others) < abs(r[source.name]) - 0.2, (source.name, r)


# --------------------------------------------------------------------------- signals
def test_pink_noise_has_a_one_over_f_spectrum():
    rng = np.random.default_rng(0)
    x = physiology.pink_noise(rng, 4, 2**15, 250.0)
    freqs, psd = signal.welch(x, fs=250.0, nperseg=2048)
    keep = (freqs > 2) & (freqs < 60)
    slope = np.polyfit(np.log(freqs[keep]), np.log(psd.mean(0)[keep]), 1)[0]
    assert slope == pytest.approx(-1.0, abs=0.15)


def test_ar1_process_has_the_requested_autocorrelation_and_variance():
    rng = np.random.default_rng(1)
    x = physiology.ar1_process(rng.standard_normal((200, 500)), 0.6)
    lag1 = np.mean([np.corrcoef(row[:-1], row[1:])[0, 1] for row in x])
    assert lag1 == pytest.approx(0.6, abs=0.03)
    assert x.var() == pytest.approx(1.0, abs=0.05)


def test_band_limited_noise_stays_in_its_band():
    x = physiology.band_limited_noise(np.random.default_rng(2), 2**14, 250.0, (8.0, 12.0))
    freqs, psd = signal.welch(x, fs=250.0, nperseg=1024)
    inside = psd[(freqs >= 8) & (freqs <= 12)].sum()
    assert inside / psd.sum() > 0.85


def test_hrf_regressor_peaks_about_five_seconds_after_an_impulse():
    rate = 10.0
    drive = np.zeros(400)
    drive[50] = 1.0  # an impulse at t = 5 s
    times = np.arange(0, 40, 0.1)
    response = physiology.hrf_regressor(drive, rate, times)
    assert times[np.argmax(response)] - 5.0 == pytest.approx(5.0, abs=1.0)


# --------------------------------------------------------------------------- its CLI
def test_simulate_cli_writes_a_dataset(tmp_path):
    out = tmp_path / "ds"
    assert (
        simulate_main(
            [
                str(out),
                "--participants",
                "1",
                "--volumes",
                "12",
                "--channels",
                "8",
                "--grid",
                "10",
                "10",
                "6",
                "--seed",
                "4",
                "--no-ecg",
                "--marker",
                "Scanner/Scan Start",
            ]
        )
        == 0
    )
    params = json.loads((out / "derivatives/simulation/simulation.json").read_text())
    assert params["config"]["seed"] == 4 and params["config"]["ecg"] is False
    raw = mne.io.read_raw(out / "sub-01/eeg/sub-01_task-rest_eeg.vhdr", verbose=False)
    assert "ECG" not in raw.ch_names
    assert (raw.annotations.description == "Scanner/Scan Start").sum() == 12


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["--volumes", "0"], 2, "--volumes"),
        (["--sfreq", "40"], 2, "too low"),
        (["--eeg-format", "fif"], 2, "invalid choice"),
        (["--task", "resting state"], 2, "task must be letters and digits"),
        (["--groups", "0", "2"], 2, "argument --groups: expected a positive integer"),
        (["--groups", "1", "1", "--group-effect", "-0.5"], 2, "expected a finite number >= 0"),
        (["--group-effect", "0.5"], 2, "--group-effect needs --groups N_POSITIVE N_NEGATIVE"),
        (["--group-effect", "0"], 2, "--group-effect needs --groups"),
        (["--montage", "biosemi-64"], 2, "montage 'biosemi-64' is not an MNE standard montage"),
        (["--montage", "biosemi16", "--channels", "20"], 2, "at most 16 EEG channels"),
        (["--eeg-only", "--mr-artifacts", "gradient"], 2, "EEG-only datasets have no MR"),
        (
            ["--groups", "2", "1", "--participants", "4"],
            2,
            "--groups 2 1 makes 3 participants but --participants says 4",
        ),
    ],
)
def test_simulate_cli_bad_arguments(tmp_path, capsys, args, code, fragment):
    try:
        got = simulate_main([str(tmp_path / "ds"), *args])
    except SystemExit as exc:
        got = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert got == code and len(err) == 1 and fragment in err[0], err
    assert not (tmp_path / "ds").exists()


def test_simulate_cli_never_clobbers(tmp_path, capsys):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    tiny = ["--participants", "1", "--volumes", "8", "--channels", "4", "--grid", "8", "8", "5"]
    assert simulate_main([str(out), *tiny]) == 73
    assert simulate_main([str(out), *tiny, "--overwrite"]) == 73  # not a simulated dataset
    assert (out / "precious.txt").read_text() == "keep me"
    other = tmp_path / "sim"
    assert simulate_main([str(other), *tiny]) == 0
    assert simulate_main([str(other), *tiny, "--seed", "9", "--overwrite"]) == 0
    assert "stopping" not in capsys.readouterr().err
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary folder left behind


@pytest.mark.parametrize("eeg_format", ["brainvision", "edf", "bdf", "eeglab"])
def test_default_dataset_is_valid_bids(tmp_path, eeg_format):
    """The issue's check, at the default size: simulate OUT --seed 0, then validate."""
    out = tmp_path / "ds"
    assert simulate_main([str(out), "--seed", "0", "--eeg-format", eeg_format]) == 0
    report = run_validator(out, cache_dir=tmp_path / "deno")
    assert errors_of(report) == []
    assert sorted(report["summary"]["subjects"]) == ["01", "02"]
    assert nib.load(out / "sub-01/func/sub-01_task-rest_bold.nii.gz").shape == (64, 64, 30, 100)


# --------------------------------------------------------------------------- groups
GROUP_OPTIONS = ["--volumes", "20", "--channels", "8", "--grid", "12", "13", "8", "--seed", "6"]
GROUP_RUNS = {
    "none": ["--participants", "3"],
    "null": ["--groups", "1", "2"],  # 1 patient, 2 controls: sets the count (3)
    "effect": ["--groups", "1", "2", "--group-effect", "1", "--participants", "3"],
}


@pytest.fixture(scope="module")
def group_datasets(tmp_path_factory) -> dict[str, Path]:
    """The same 3 participants (seed 6): without groups, with 2 controls and 1 patient and
    no group effect, and with a group effect of 1 (the patient's alpha amplitude x 2)."""
    folder = tmp_path_factory.mktemp("groups")
    for name, extra in GROUP_RUNS.items():
        assert simulate_main([str(folder / name), *GROUP_OPTIONS, *extra]) == 0
    return {name: folder / name for name in GROUP_RUNS}


def _alpha_share(vhdr: Path) -> float:
    """Mean over the EEG channels of the 8-12 Hz share of their power."""
    raw = mne.io.read_raw_brainvision(vhdr, verbose=False)
    data = raw.get_data(picks=[c for c in raw.ch_names if c != "ECG"])
    freqs, psd = signal.welch(data, fs=raw.info["sfreq"], nperseg=int(2 * raw.info["sfreq"]))
    alpha = (freqs >= 8) & (freqs <= 12)
    return float(np.mean(psd[:, alpha].sum(axis=1) / psd.sum(axis=1)))


def test_groups_write_a_group_column_controls_first(group_datasets, tmp_path):
    root = group_datasets["effect"]
    with open(root / "participants.tsv", newline="") as handle:
        rows = [(r["participant_id"], r["group"]) for r in csv.DictReader(handle, delimiter="\t")]
    assert rows == [("sub-01", "HC"), ("sub-02", "HC"), ("sub-03", "P")]
    column = json.loads((root / "participants.json").read_text())["group"]
    assert column["Levels"] == {
        "P": "patients (simulated group effect applied)",
        "HC": "healthy controls",
    }
    assert column["Description"]
    truth = json.loads((root / "derivatives/simulation/simulation.json").read_text())
    assert truth["groups"] == {"P": ["03"], "HC": ["01", "02"]}
    assert truth["group_effect"]["size"] == 1.0
    assert truth["group_effect"]["property"] == "alpha source amplitude x (1 + size) in P"
    assert truth["config"]["groups"] == [1, 2] and truth["config"]["group_effect"] == 1.0
    assert "multiplied by 2" in (root / "README").read_text()
    null = json.loads(
        (group_datasets["null"] / "derivatives/simulation/simulation.json").read_text()
    )
    assert null["group_effect"]["size"] == 0.0
    assert errors_of(run_validator(root, cache_dir=tmp_path / "deno")) == []

    plain = group_datasets["none"]  # no --groups: no group column, nothing to describe it
    assert (plain / "participants.tsv").read_text().splitlines()[0] == "participant_id"
    assert not (plain / "participants.json").exists()
    truth = json.loads((plain / "derivatives/simulation/simulation.json").read_text())
    assert "groups" not in truth and "groups" not in truth["config"]


def test_null_group_effect_changes_the_labels_only(group_datasets):
    """Groups with SIZE 0: the data of every participant is the dataset without groups'."""
    plain = tree_digest(group_datasets["none"])
    null = tree_digest(group_datasets["null"])
    differ = {f for f in plain.keys() | null.keys() if plain.get(f) != null.get(f)}
    assert differ == {
        "participants.tsv",
        "participants.json",
        "README",
        "dataset_description.json",
        "derivatives/simulation/dataset_description.json",
        "derivatives/simulation/simulation.json",
    }


def test_group_effect_raises_the_alpha_share_of_patients_only(group_datasets):
    null = tree_digest(group_datasets["null"])
    effect = tree_digest(group_datasets["effect"])
    for sub in ("01", "02"):  # healthy controls: the same EEG, byte for byte
        eeg = f"sub-{sub}/eeg/sub-{sub}_task-rest_eeg.eeg"
        assert null[eeg] == effect[eeg]
    patient = "sub-03/eeg/sub-03_task-rest_eeg"
    assert null[f"{patient}.eeg"] != effect[f"{patient}.eeg"]
    # the BOLD coupling is unchanged: the patient's BOLD and ground truth are the same
    assert (
        null["sub-03/func/sub-03_task-rest_bold.nii.gz"]
        == (effect["sub-03/func/sub-03_task-rest_bold.nii.gz"])
    )
    before = _alpha_share(group_datasets["null"] / f"{patient}.vhdr")
    after = _alpha_share(group_datasets["effect"] / f"{patient}.vhdr")
    assert after > before + 0.1, (before, after)
    controls = [
        _alpha_share(group_datasets["effect"] / f"sub-{s}/eeg/sub-{s}_task-rest_eeg.vhdr")
        for s in ("01", "02")
    ]
    assert after > max(controls), (after, controls)


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        (dict(groups=(1, 1), n_participants=3), "groups (1, 1) make 2 participants"),
        (dict(groups=(0, 2)), "groups must be two participant counts of at least 1"),
        (dict(groups=(1, 1), group_effect=-0.5), "group_effect must be a number >= 0"),
        (dict(groups=(1, 1), group_effect=float("inf")), "group_effect must be finite"),
        (dict(group_effect=0.5), "group_effect needs groups"),
    ],
)
def test_simulation_config_checks_the_groups(settings, fragment):
    with pytest.raises(ValueError, match=re.escape(fragment)):
        SimulationConfig(**{**TINY, "n_participants": 2, **settings}).check()


def test_eeg_only_dataset_on_another_cap(tmp_path):
    """``--eeg-only --montage biosemi128 --channels 16 --sfreq 512``: no BOLD, no markers,
    16 biosemi channels spread over the head, their positions in electrodes.tsv; valid."""
    out = tmp_path / "ds"
    assert simulate_main([str(out), "--eeg-only", "--montage", "biosemi128", "--channels",
                          "16", "--sfreq", "512", "--volumes", "20", "--participants",
                          "1"]) == 0  # fmt: skip
    assert not list(out.rglob("*_bold.*")) and not (out / "sub-01" / "func").exists()
    raw = mne.io.read_raw(out / "sub-01/eeg/sub-01_task-rest_eeg.vhdr", verbose=False)
    assert raw.info["sfreq"] == 512 and len(raw.annotations) == 0
    eeg = [n for n in raw.ch_names if n != "ECG"]  # BrainVision types every channel EEG
    biosemi = mne.channels.make_standard_montage("biosemi128").get_positions()["ch_pos"]
    assert len(eeg) == 16 and set(eeg) <= set(biosemi)
    xyz = np.array([biosemi[n] for n in eeg])
    assert xyz[:, 1].max() > 0.06 and xyz[:, 1].min() < -0.06  # front and back
    assert xyz[:, 0].max() > 0.06 and xyz[:, 0].min() < -0.06  # left and right
    rows = list(csv.DictReader(open(next((out / "sub-01/eeg").glob("*_electrodes.tsv"))),
                               delimiter="\t"))  # fmt: skip
    assert [r["name"] for r in rows][:16] == eeg
    assert (out / "README").read_text().startswith("Simulated EEG (no fMRI)")
    assert errors_of(run_validator(out, cache_dir=tmp_path / "deno")) == []

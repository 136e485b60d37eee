"""Bad EEG files: each defect stops its run with exit 65 and one line naming the file, or
is worked around with a WARNING naming the file (in the log and the participant's report).

The reader functions are tested on tiny files; a few defects end to end on a one-run
simulated dataset (input unchanged, no derivatives of the failed run).
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path

import mne
import numpy as np
import pytest
from conftest import cli, tree_digest

from bids_eeg2fmri.bidsio import eeg_checks
from bids_eeg2fmri.signals import eeg as eeg_mod
from bids_eeg2fmri.simulate.generator import SimulationConfig
from bids_eeg2fmri.simulate.writer import simulate_dataset

RUN = "sub-01_task-rest"
EEG_DIR = Path("sub-01") / "eeg"
#: One participant, 30 volumes, 8 EEG channels + ECG: a run of the app takes seconds.
ONE_RUN = SimulationConfig(n_participants=1, n_volumes=30, n_channels=8, grid=(12, 13, 8))


@pytest.fixture(scope="module")
def one_run(tmp_path_factory) -> Path:
    """A read-only one-run dataset (BrainVision, float32, 9 channels)."""
    return simulate_dataset(ONE_RUN, tmp_path_factory.mktemp("one_run") / "ds")


@pytest.fixture
def bids(one_run, tmp_path) -> Path:
    return Path(shutil.copytree(one_run, tmp_path / "ds"))


def _samples(ds: Path) -> np.ndarray:
    """The run's samples as written (time x 9 channels, float32), a view on a copy."""
    return np.fromfile(ds / EEG_DIR / f"{RUN}_eeg.eeg", "<f4").reshape(-1, 9)


def _run(bids: Path, tmp_path: Path, capsys, *extra) -> tuple[int, list[str], str]:
    """Run the app; check the input is unchanged; return code, error lines, log text."""
    before = tree_digest(bids)
    code, errors = cli(bids, tmp_path / "out", tmp_path / "work", capsys, *extra)
    assert tree_digest(bids) == before
    log = "\n".join(p.read_text() for p in (tmp_path / "out" / "logs").glob("bids-eeg2fmri-*.log"))
    return code, errors, log


def _assert_failed_without_outputs(code, errors, out: Path, named: str) -> None:
    assert code == 65
    assert len(errors) == 1 and named in errors[0], errors
    left = [p for p in (out / "sub-01").rglob("*") if p.is_file() and "log" not in p.parts]
    assert left == []  # no events, EEG or figures of the failed run
    assert not (out / "sub-01.html").exists()


# --------------------------------------------------------------------------- BrainVision
def _vhdr(folder: Path, *, n_channels=3, listed=3, n_bytes=3 * 4 * 10, fmt="IEEE_FLOAT_32"):
    """A minimal BrainVision triplet (the marker file only named)."""
    channels = "".join(f"Ch{i}=E{i},,0.1,µV\n" for i in range(1, listed + 1))
    vhdr = folder / "x_eeg.vhdr"
    vhdr.write_text(
        "Brain Vision Data Exchange Header File Version 1.0\n\n[Common Infos]\n"
        "DataFile=x_eeg.eeg\nMarkerFile=x_eeg.vmrk\nDataFormat=BINARY\n"
        f"DataOrientation=MULTIPLEXED\nNumberOfChannels={n_channels}\n"
        f"SamplingInterval=4000\n\n[Binary Infos]\nBinaryFormat={fmt}\n\n"
        f"[Channel Infos]\n; Ch<n>=<Name>,...\n{channels}",
        encoding="utf-8",
    )
    (folder / "x_eeg.eeg").write_bytes(b"\0" * n_bytes)
    return vhdr


def test_the_header_is_parsed_minimally(tmp_path):
    header = eeg_checks.read_brainvision_header(_vhdr(tmp_path, fmt="int_16"))
    assert header.common["numberofchannels"] == "3" and header.n_listed == 3
    assert header.binary_format == "INT_16"
    assert header.file("DataFile") == tmp_path / "x_eeg.eeg"


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        (dict(listed=4), r"NumberOfChannels=3 but \[Channel Infos\] lists 4 channel"),
        (
            dict(n_bytes=4 * 4 * 10 + 4),
            r"its data file x_eeg.eeg holds 164 bytes, not a whole number",
        ),
        (dict(n_bytes=3 * 2 * 7, fmt="INT_16"), None),  # a whole number of 2-byte samples
    ],
)
def test_a_channel_count_the_data_contradict_is_an_error(tmp_path, layout, message):
    vhdr = _vhdr(tmp_path, **layout)
    (tmp_path / "x_events.tsv").write_text("onset\tduration\n")
    if message is None:
        eeg_checks.check_brainvision(vhdr)
    else:
        with pytest.raises(eeg_mod.EEGError, match=rf"^{tmp_path}/x_eeg.vhdr: {message}"):
            eeg_checks.check_brainvision(vhdr)


def test_missing_data_or_marker_file(tmp_path, caplog):
    vhdr = _vhdr(tmp_path)
    with pytest.raises(eeg_mod.EEGError, match=r"marker file 'x_eeg.vmrk' is missing and"):
        eeg_checks.check_brainvision(vhdr)  # no events.tsv either
    (tmp_path / "x_events.tsv").write_text("onset\tduration\n")
    with caplog.at_level(logging.WARNING, logger="bids_eeg2fmri"):
        eeg_checks.check_brainvision(vhdr)
        eeg_checks.check_brainvision(vhdr)  # logged once
    warned = [r.getMessage() for r in caplog.records if "x_eeg.vmrk" in r.getMessage()]
    assert warned == [
        f"{tmp_path}/x_eeg.vmrk: missing (named by x_eeg.vhdr): the recording's markers "
        "are not read; the markers of x_events.tsv are used"
    ]
    (tmp_path / "x_eeg.eeg").unlink()
    with pytest.raises(eeg_mod.EEGError, match=r"x_eeg.vhdr: its data file 'x_eeg.eeg' is miss"):
        eeg_mod.read_raw(vhdr)


def test_a_marker_position_that_is_not_a_number_names_the_marker_file(tmp_path):
    vhdr = _vhdr(tmp_path)
    vmrk = tmp_path / "x_eeg.vmrk"
    entries = "Mk1=New Segment,,1,1,0\nMk2=Response,R128,5,1,0\n"
    vmrk.write_text(f"[Common Infos]\nDataFile=x_eeg.eeg\n[Marker Infos]\n{entries}")
    eeg_checks.check_brainvision(vhdr)  # whole numbers: fine
    vmrk.write_text(vmrk.read_text().replace("R128,5,", "R128,abc,"))
    with pytest.raises(eeg_mod.EEGError) as info:
        eeg_checks.check_brainvision(vhdr)
    assert str(info.value) == (
        f"{vmrk}: Mk2: position 'abc' is not a sample number (a whole number >= 1 expected)"
    )


def test_stale_file_names_after_a_rename(tmp_path, caplog):
    vhdr = _vhdr(tmp_path)
    vhdr.write_text(vhdr.read_text().replace("=x_eeg.", "=old_eeg."))  # names before a rename
    (tmp_path / "x_eeg.vmrk").write_text("Brain Vision Data Exchange Marker File, Version 1.0\n")
    with pytest.raises(eeg_mod.EEGError, match=r"x_eeg.eeg is beside it: correct DataFile="):
        eeg_checks.check_brainvision(vhdr)
    vhdr.write_text(vhdr.read_text().replace("DataFile=old_eeg.", "DataFile=x_eeg."))
    with caplog.at_level(logging.WARNING, logger="bids_eeg2fmri"):
        eeg_checks.check_brainvision(vhdr)  # MNE reads the sibling marker file: so do we
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path}/old_eeg.vmrk: missing (named by x_eeg.vhdr): the markers of x_eeg.vmrk "
        "beside it are read instead"
    ]


def test_a_header_for_fewer_channels_than_written_stops_the_run(bids, tmp_path, capsys):
    vhdr = bids / EEG_DIR / f"{RUN}_eeg.vhdr"
    text = vhdr.read_text(encoding="utf-8")  # 9 channels written, 8 declared and listed
    vhdr.write_text(
        text.replace("NumberOfChannels=9", "NumberOfChannels=8").replace("Ch9=ECG,,0.1,µV\n", ""),
        encoding="utf-8",
    )
    code, errors, _ = _run(bids, tmp_path, capsys)
    _assert_failed_without_outputs(code, errors, tmp_path / "out", f"{RUN}_eeg.vhdr")
    assert "not a whole number of samples" in errors[0]


def test_a_missing_data_file_stops_the_run_naming_both_files(bids, tmp_path, capsys):
    (bids / EEG_DIR / f"{RUN}_eeg.eeg").unlink()
    channels = ["Fp1", "Fp2", "F3", "F4", "C3", "C4", "P3", "P4"]  # the run's step fails
    code, errors, _ = _run(bids, tmp_path, capsys, "--channels", *channels)
    _assert_failed_without_outputs(code, errors, tmp_path / "out", f"{RUN}_eeg.vhdr")
    assert f"its data file '{RUN}_eeg.eeg' is missing" in errors[0]


def test_a_missing_marker_file_falls_back_to_events_tsv(bids, tmp_path, capsys):
    (bids / EEG_DIR / f"{RUN}_eeg.vmrk").unlink()
    code, errors, log = _run(bids, tmp_path, capsys)
    assert (code, errors) == (0, [])
    warning = f"{RUN}_eeg.vmrk: missing (named by {RUN}_eeg.vhdr)"
    assert f"WARNING | {bids / EEG_DIR}/{warning}" in log
    assert (tmp_path / "out" / "sub-01" / "eeg" / f"{RUN}_desc-volumes_events.tsv").is_file()
    assert warning in (tmp_path / "out" / "sub-01.html").read_text()


# --------------------------------------------------------------------------- flat EEG
def _raw(data: np.ndarray, sfreq: float = 100.0):
    names = ["Fp1", "Fp2", "F3", "F4", "C3", "C4", "P3", "P4", "O1"][: len(data)]
    return mne.io.RawArray(data, mne.create_info(names, sfreq, "eeg"), verbose="error")


def test_flat_rows_are_constant_or_below_a_picovolt():
    rng = np.random.default_rng(0)
    data = 1e-5 * rng.standard_normal((5, 301))
    data[1] = 0.0
    data[2] = 0.05  # a constant offset, 50 mV
    data[3] = 0.05 + 1e-13 * rng.standard_normal(301)
    assert eeg_mod.flat_rows(data).tolist() == [False, True, True, True, False]


def test_flat_channels_a_few_returned_most_an_error():
    rng = np.random.default_rng(1)
    data = 1e-5 * rng.standard_normal((7, 3000))  # 30 s at 100 Hz
    data[[2, 5]] = 0.0
    raw = _raw(data)
    assert eeg_mod.flat_channels(raw, raw.ch_names, label="x.vhdr") == ["F3", "C4"]
    data[0, :1000] = 0.0  # flat only before the middle 10 s: not judged flat
    raw = _raw(data)
    assert eeg_mod.flat_channels(raw, raw.ch_names, label="x.vhdr", seconds=10) == ["F3", "C4"]
    data[[0, 1]] = 0.0
    with pytest.raises(eeg_mod.EEGError, match=r"^x.vhdr: 4 of 7 EEG channels are flat"):
        eeg_mod.flat_channels(_raw(data), raw.ch_names, label="x.vhdr")
    with pytest.raises(eeg_mod.EEGError, match=r"^x.vhdr: all 7 EEG channels are flat"):
        eeg_mod.flat_channels(_raw(0 * data), raw.ch_names, label="x.vhdr")


@pytest.mark.filterwarnings("error::RuntimeWarning")  # the MR step's detection included
def test_all_flat_eeg_stops_the_run(bids, tmp_path, capsys):
    samples = _samples(bids)
    samples[:, :8] = 0.0  # ECG left: it is not EEG
    samples.tofile(bids / EEG_DIR / f"{RUN}_eeg.eeg")
    code, errors, _ = _run(bids, tmp_path, capsys)
    _assert_failed_without_outputs(code, errors, tmp_path / "out", f"{RUN}_eeg.vhdr")
    assert "all 8 EEG channels are flat" in errors[0]


def test_a_few_flat_channels_are_interpolated_with_a_warning(bids, tmp_path, capsys):
    samples = _samples(bids)
    samples[:, 2] = 0.0  # F3
    samples[:, 5] = 3.5  # C4, a constant offset
    samples.tofile(bids / EEG_DIR / f"{RUN}_eeg.eeg")
    code, errors, log = _run(bids, tmp_path, capsys)
    assert (code, errors) == (0, [])
    warning = f"{RUN}_eeg.vhdr: 2 of 8 EEG channels are flat (F3, C4): treated as missing"
    assert f"WARNING | {bids / EEG_DIR}/{warning}" in log
    assert "interpolated missing channel(s) F3, C4" in log
    assert warning in (tmp_path / "out" / "sub-01.html").read_text()


def test_a_channel_not_recorded_in_volts_is_interpolated_with_a_warning(bids, tmp_path, capsys):
    """A unit MNE does not know (a typo in the header) makes the channel misc without a
    unit; channels.tsv still types it EEG, and its amplitude would be off by 1e6."""
    _fp1_in_microwatts(bids)
    code, errors, log = _run(bids, tmp_path, capsys)
    assert (code, errors) == (0, [])
    assert f"WARNING | {bids / EEG_DIR}/{NOT_VOLTS}" in log
    assert "interpolated missing channel(s) Fp1" in log


#: the warning for :func:`_fp1_in_microwatts`
NOT_VOLTS = (
    f"{RUN}_eeg.vhdr: 1 of 8 EEG channels are not recorded in volts (Fp1: unit 'µW'): "
    "treated as missing"
)


def _fp1_in_microwatts(bids: Path) -> None:
    """A typo in the header's unit of Fp1."""
    vhdr = bids / EEG_DIR / f"{RUN}_eeg.vhdr"
    text = vhdr.read_text(encoding="utf-8")
    assert "Ch1=Fp1,,0.1,µV" in text
    vhdr.write_text(text.replace("Ch1=Fp1,,0.1,µV", "Ch1=Fp1,,0.1,µW"), encoding="utf-8")


def test_a_high_rate_recording_is_checked_on_its_own_header(tmp_path, capsys):
    """Above 250 Hz the features are read from a downsampled working copy, written as
    BrainVision in volts: the channel types and units still come from the user's file."""
    config = dataclasses.replace(ONE_RUN, sfreq=500.0)
    bids = simulate_dataset(config, tmp_path / "ds")
    channels = bids / EEG_DIR / f"{RUN}_channels.tsv"  # types Fp1 EEG; ECG left unlisted
    lines = channels.read_text(encoding="utf-8").splitlines(keepends=True)
    channels.write_text("".join(x for x in lines if not x.startswith("ECG\t")), encoding="utf-8")
    _fp1_in_microwatts(bids)
    code, errors, log = _run(bids, tmp_path, capsys)
    assert (code, errors) == (0, [])
    assert "desc-downsampled" in " ".join(p.name for p in (tmp_path / "work").rglob("*.vhdr"))
    assert f"WARNING | {bids / EEG_DIR}/{NOT_VOLTS}" in log
    # the simulator's ECG channel: typed EEG by the BrainVision file, not by channels.tsv
    assert f"{bids / EEG_DIR}/{RUN}_eeg.vhdr: ECG typed EEG, but the name says otherwise" in log


# --------------------------------------------------------------------------- EDF, BDF, EEGLAB
@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, bytes]:
    """The bytes of a 10 s, 4-channel recording in EDF, BDF and EEGLAB."""
    folder = tmp_path_factory.mktemp("formats")
    raw = _raw(1e-5 * np.random.default_rng(2).standard_normal((4, 2500)), sfreq=250.0)
    files = {}
    for fmt in ("edf", "bdf", "eeglab"):
        path = folder / f"ok.{'set' if fmt == 'eeglab' else fmt}"
        raw.export(path, fmt=fmt, overwrite=True, verbose="error")
        files[path.suffix] = path.read_bytes()
    return files


@pytest.mark.parametrize(
    ("ext", "damage"),
    [
        *[(e, d) for e in (".edf", ".bdf", ".set") for d in ("garbage", "empty", "header only")],
        (".set", "truncated"),  # EDF and BDF cut short are read, with a warning (below)
    ],
)
def test_unreadable_files_are_one_data_error_naming_them(tmp_path, exported, ext, damage):
    whole = exported[ext]
    damaged = {
        "garbage": np.random.default_rng(3).bytes(5000),
        "empty": b"",
        "header only": whole[:300],
        "truncated": whole[: len(whole) * 2 // 3],
    }[damage]
    path = tmp_path / f"y_eeg{ext}"
    path.write_bytes(damaged)
    with pytest.raises(eeg_mod.EEGError, match=rf"^{path}: cannot read the EEG: \w+") as info:
        eeg_mod.read_raw(path)
    assert "\n" not in str(info.value) and info.value.exit_code == 65


def test_a_short_fdt_is_found_before_its_samples_are_read(tmp_path, exported):
    from scipy.io import loadmat, savemat

    path = tmp_path / "w_eeg.set"
    path.write_bytes(exported[".set"])
    fields = {k: v for k, v in loadmat(path, appendmat=False).items() if not k.startswith("__")}
    samples = fields["data"].astype("<f4")  # (4 channels, 2500 samples), channels fastest
    fields["data"] = np.array(["w_eeg.fdt"])
    savemat(path, fields, appendmat=False)
    samples.T.tofile(tmp_path / "w_eeg.fdt")
    assert eeg_mod.read_raw(path, preload=False).get_data().shape == (4, 2500)
    (tmp_path / "w_eeg.fdt").write_bytes(samples.T.tobytes()[:20000])
    with pytest.raises(
        eeg_mod.EEGError,
        match=rf"^{path}: its data file w_eeg.fdt holds 20000 bytes, fewer than its 4 channels x "
        r"2500 samples \(x 4 bytes = 40000 bytes expected",
    ):
        eeg_mod.read_raw(path, preload=False)  # MNE would fail only in get_data()


def test_a_garbled_edf_stops_the_run(tmp_path, capsys):
    config = dataclasses.replace(ONE_RUN, eeg_format="edf", n_volumes=20)
    bids = simulate_dataset(config, tmp_path / "ds")
    edf = bids / EEG_DIR / f"{RUN}_eeg.edf"
    whole = edf.read_bytes()
    edf.write_bytes(whole[:256] + np.random.default_rng(4).bytes(len(whole) - 256))
    code, errors, _ = _run(bids, tmp_path, capsys)
    _assert_failed_without_outputs(code, errors, tmp_path / "out", f"{RUN}_eeg.edf")
    assert f"{edf}: cannot read the EEG: " in errors[0]


def test_mne_warnings_that_matter_are_logged_naming_the_file(tmp_path, exported, caplog):
    path = tmp_path / "z_eeg.edf"
    path.write_bytes(exported[".edf"][: len(exported[".edf"]) * 2 // 3])
    with caplog.at_level(logging.WARNING, logger="bids_eeg2fmri"):
        raw = eeg_mod.read_raw(path)
    assert raw.n_times < 2500
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}: read by MNE, which warns: Number of records from the header does not match "
        "the file size (perhaps the recording was not stopped before exiting). Inferring "
        "from the file size."
    ]
    assert eeg_checks.relevant_mne_warnings(
        [
            "Channels contain different highpass filters. Highest filter setting will be stored.",
            "MarkerFile 'x.vmrk' not found; no annotations.",
            "Invalid measurement date encountered in the header.",
            "Online software filter detected. Using software filter settings and ignoring "
            "hardware values",
            "Channel names are not unique, found duplicates for: {'x'}.",
        ]
    ) == ["Channel names are not unique, found duplicates for: {'x'}."]

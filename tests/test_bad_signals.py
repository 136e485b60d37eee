"""Bad signal files (EEG samples and headers): each defect stops its run with exit 65 and
one line naming the file (and key), before MNE fails on it with a bare Python error or a
fit fails on it deep in the MR step; no numpy warning leaks to stderr.

The checks are tested on tiny files; the defects that reached the MR step end to end on a
one-run simulated dataset (input unchanged, no derivatives of the failed run).
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

from bids_eeg2fmri.signals import eeg as eeg_mod
from bids_eeg2fmri.signals.bold import BoldError, check_bold
from bids_eeg2fmri.simulate.generator import SimulationConfig
from bids_eeg2fmri.simulate.writer import simulate_dataset

RUN = "sub-01_task-rest"
EEG_DIR = Path("sub-01") / "eeg"
#: One participant, 20 volumes, 8 EEG channels + ECG: a run of the app takes seconds.
ONE_RUN = SimulationConfig(n_participants=1, n_volumes=20, n_channels=8, grid=(12, 13, 8))
#: The same as raw in-scanner EEG (gradient artifacts, 1 kHz).
IN_SCANNER = dataclasses.replace(ONE_RUN, sfreq=1000.0, mr_artifacts=("gradient",))


# --------------------------------------------------------------------------- BrainVision
def _vhdr(folder: Path, channels: str, *, interval="4000", count="3") -> Path:
    """A BrainVision header for 3 float channels and its (empty) data and marker files."""
    vhdr = folder / "x_eeg.vhdr"
    vhdr.write_text(
        "Brain Vision Data Exchange Header File Version 1.0\n\n[Common Infos]\n"
        "DataFile=x_eeg.eeg\nMarkerFile=x_eeg.vmrk\nDataFormat=BINARY\n"
        f"DataOrientation=MULTIPLEXED\nNumberOfChannels={count}\n"
        f"SamplingInterval={interval}\n\n[Binary Infos]\nBinaryFormat=IEEE_FLOAT_32\n\n"
        f"[Channel Infos]\n{channels}",
        encoding="utf-8",
    )
    (folder / "x_eeg.eeg").write_bytes(b"\0" * 3 * 4 * 10)
    (folder / "x_eeg.vmrk").write_text("Brain Vision Data Exchange Marker File, Version 1.0\n")
    return vhdr


GOOD = "Ch1=Fp1,,0.1,µV\nCh2=Fp2,,0.1,µV\nCh3=F3,,,µV\n"  # no resolution: 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(channels=GOOD.replace("Fp2", "Fp1")), "channel name 'Fp1' is used by Ch1 and Ch2"),
        (dict(channels=GOOD.replace("=Fp2", "=")), "Ch2 has no channel name"),
        (dict(channels=GOOD.replace("0.1", "0", 1)), "Ch1=Fp1: resolution '0' (a non-zero"),
        (dict(channels=GOOD.replace("0.1", "abc", 1)), "Ch1=Fp1: resolution 'abc' (a non-zero"),
        (dict(interval="0"), "SamplingInterval=0 (a positive number of microseconds expected)"),
        (dict(interval="abc"), "SamplingInterval=abc (a positive number"),
        (dict(count="abc"), "NumberOfChannels=abc (a positive whole number expected)"),
    ],
)
def test_header_values_mne_would_fail_on_are_named(tmp_path, change, message):
    vhdr = _vhdr(tmp_path, **{"channels": GOOD, **change})
    with pytest.raises(eeg_mod.EEGError) as info:
        eeg_mod.read_raw(vhdr)
    assert str(info.value).startswith(f"{vhdr}: {message}"), str(info.value)
    assert "\n" not in str(info.value) and info.value.exit_code == 65


def test_a_good_header_is_read(tmp_path):
    raw = eeg_mod.read_raw(_vhdr(tmp_path, GOOD))
    assert raw.ch_names == ["Fp1", "Fp2", "F3"] and raw.n_times == 10


# --------------------------------------------------------------------------- EDF, BDF, EEGLAB
def _raw(names: list[str], sfreq: float = 250.0):
    data = 1e-5 * np.random.default_rng(0).standard_normal((len(names), int(4 * sfreq)))
    return mne.io.RawArray(data, mne.create_info(names, sfreq, "eeg"), verbose="error")


def _relabel(path: Path, old: str, new: str) -> None:
    """Rename a signal in an EDF/BDF header (16-byte labels after the 256-byte header)."""
    head = bytearray(path.read_bytes())
    n_signals = int(head[252:256].decode())
    for i in range(n_signals):
        at = 256 + 16 * i
        if head[at : at + 16].decode("latin-1").strip() == old:
            head[at : at + 16] = new.encode("latin-1").ljust(16)
    path.write_bytes(bytes(head))


@pytest.mark.parametrize("ext", [".edf", ".bdf"])
def test_a_duplicated_eeg_label_is_an_error(tmp_path, ext):
    path = tmp_path / f"d_eeg{ext}"
    _raw(["Fp1", "Fp2", "F3", "ECG", "EMG"]).export(path, overwrite=True, verbose="error")
    _relabel(path, "Fp2", "Fp1")
    with pytest.raises(
        eeg_mod.EEGError, match=rf"^{path}: channel name\(s\) used more than once: Fp1 x 2 \("
    ):
        eeg_mod.read_raw(path)
    _raw(["Fp1", "Fp2", "F3", "ECG", "EMG"]).export(path, overwrite=True, verbose="error")
    _relabel(path, "EMG", "ECG")  # two ECG: MNE's warning only, and neither taken as EEG
    raw = eeg_mod.read_raw(path)
    assert eeg_mod.eeg_channels(raw.ch_names, raw.get_channel_types()) == ["Fp1", "Fp2", "F3"]


def test_duplicated_names_are_those_mne_numbered():
    assert eeg_mod.duplicated_names(["Fp1-0", "Fp1-1", "E-1", "Cz", "A-0"]) == {
        "Fp1": ["Fp1-0", "Fp1-1"]
    }
    assert eeg_mod.duplicated_names(["X", "X-0", "X-1"]) == {}  # real names
    assert eeg_mod.NON_EEG_NAME.match("ECG-1") and not eeg_mod.NON_EEG_NAME.match("Fp1-1")


# --------------------------------------------------------------------------- NaN samples
def test_non_finite_samples_are_named_with_their_first_time():
    raw = _raw(["Fp1", "Fp2", "F3"], sfreq=100.0)
    eeg_mod.check_finite(raw, [0, 1, 2], label="x.vhdr")
    data = raw.get_data()
    data[1, 250] = np.inf
    data[2, 120:130] = np.nan
    raw = mne.io.RawArray(data, raw.info, verbose="error")
    with pytest.raises(
        eeg_mod.EEGError,
        match=r"^x.vhdr: NaN or infinite samples in channel\(s\) Fp2, F3, the first at 1.200 s "
        r"\(finite samples expected\)$",
    ):
        eeg_mod.check_finite(raw, [0, 1, 2], label="x.vhdr", seconds=1.0)
    eeg_mod.check_finite(raw, [0], label="x.vhdr")  # only the channels used are checked


def test_bold_defects_say_what_was_expected():
    data = np.random.default_rng(0).standard_normal((3, 3, 3, 5)).astype(np.float32)
    data[1, 1, 1, 2] = np.nan
    with pytest.raises(BoldError, match=r"in 1 of 27 voxels \(finite values expected\)$"):
        check_bold(data, name="b.nii.gz")
    with pytest.raises(BoldError, match=r"1 volume\(s\) \(at least 2 expected\)$"):
        check_bold(data[..., :1], name="b.nii.gz")


# --------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[str, Path]:
    """Read-only one-run datasets: out of the scanner, and raw in-scanner EEG."""
    root = tmp_path_factory.mktemp("signals")
    return {
        "plain": simulate_dataset(ONE_RUN, root / "plain"),
        "in-scanner": simulate_dataset(IN_SCANNER, root / "in-scanner"),
    }


def _run(bids: Path, tmp_path: Path, capsys) -> tuple[int, list[str], str]:
    before = tree_digest(bids)
    code, errors = cli(bids, tmp_path / "out", tmp_path / "work", capsys)
    assert tree_digest(bids) == before
    out = tmp_path / "out"
    left = [p for p in (out / "sub-01").rglob("*") if p.is_file() and "log" not in p.parts]
    assert left == [] and not (out / "sub-01.html").exists()  # nothing of the failed run
    return code, errors


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize(
    ("kind", "value", "misc"),
    [("plain", np.inf, False), ("in-scanner", np.nan, False), ("in-scanner", np.nan, True)],
    ids=["inf", "nan-in-scanner", "nan-misc-in-scanner"],
)
def test_non_finite_eeg_stops_the_run_before_the_mr_step(
    datasets, tmp_path, capsys, kind, value, misc
):
    bids = Path(shutil.copytree(datasets[kind], tmp_path / "ds"))
    data = bids / EEG_DIR / f"{RUN}_eeg.eeg"
    if misc:  # F4 typed MISC: not EEG, but the gradient step corrects it too
        tsv = bids / EEG_DIR / f"{RUN}_channels.tsv"
        tsv.write_text(tsv.read_text().replace("F4\tEEG", "F4\tMISC"))
    samples = np.fromfile(data, "<f4").reshape(-1, 9)
    samples[len(samples) // 2, 3] = value  # F4
    samples.tofile(data)
    code, errors = _run(bids, tmp_path, capsys)  # was: exit 1, "SVD did not converge"
    assert code == 65 and len(errors) == 1, errors
    assert f"{data.with_suffix('.vhdr')}: NaN or infinite samples in channel(s) F4" in errors[0]


def test_a_zero_resolution_stops_the_run_naming_the_channel(datasets, tmp_path, capsys):
    bids = Path(shutil.copytree(datasets["plain"], tmp_path / "ds"))
    vhdr = bids / EEG_DIR / f"{RUN}_eeg.vhdr"
    vhdr.write_text(vhdr.read_text("utf-8").replace("Ch3=F3,,0.1,", "Ch3=F3,,0,"), "utf-8")
    code, errors = _run(bids, tmp_path, capsys)  # was: "ValueError: Bad cals for channels"
    assert code == 65 and errors == [
        f"bids-eeg2fmri: error: {vhdr}: Ch3=F3: resolution '0' "
        "(a non-zero number of units per bit expected, or none "
        "for 1)"
    ], errors


def test_an_ecg_sampled_too_slowly_for_the_qrs_band_is_a_pulse_error():
    from bids_eeg2fmri.signals import mr_pulse

    ecg = np.random.default_rng(1).standard_normal(50 * 30)  # 30 s at 50 Hz
    with pytest.raises(  # was: MNE's "h_freq ([35.]) must be less than the Nyquist", exit 1
        mr_pulse.PulseError, match=r"^the ECG is sampled at 50 Hz, too slowly to find R peaks"
    ):
        mr_pulse.find_r_peaks(ecg, 50.0)


def test_an_ansi_marker_file_is_read_from_a_utf8_copy(tmp_path, caplog):
    vhdr = _vhdr(tmp_path, GOOD)
    (tmp_path / "x_eeg.vmrk").write_bytes(
        "Brain Vision Data Exchange Marker File, Version 1.0\n; exportiert für Müller\n\n"
        "[Common Infos]\nCodepage=ANSI\nDataFile=x_eeg.eeg\n\n[Marker Infos]\n"
        "Mk1=Response,R128,5,1,0\n".encode("cp1252")
    )
    with caplog.at_level(logging.WARNING, logger="bids_eeg2fmri"):
        raw = eeg_mod.read_raw(vhdr)  # was: "UnicodeDecodeError: 'utf-8' codec can't decode"
    assert list(raw.annotations.description) == ["Response/R128"]
    assert raw.filenames[0] == tmp_path / "x_eeg.eeg"
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path}/x_eeg.vmrk: not UTF-8 text, which MNE needs: read from a UTF-8 copy "
        "(decoded as cp1252)"
    ]


def test_max_freq_above_nyquist_is_a_warning_naming_where_spectra_stop(tiny, tmp_path, capsys):
    out = tmp_path / "out"
    code, errors = cli(tiny, out, tmp_path / "work", capsys, "--max-freq", "500")
    assert (code, errors) == (0, [])
    log = next((out / "logs").glob("bids-eeg2fmri-*.log")).read_text()
    assert (
        "sub-01_task-rest_eeg.vhdr: --max-freq 500 Hz is above the EEG's Nyquist frequency "
        "(125 Hz): its spectra stop at 124.5 Hz" in log
    )

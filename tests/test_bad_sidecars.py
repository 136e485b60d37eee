"""Bad sidecars, headers and dataset structure: a defect that makes results wrong stops the
run with its exit code and one line naming the file (and key); what can be worked around is,
with a warning in the log; the input is never changed, and a failed run leaves no outputs."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import cli

from bids_eeg2fmri.bidsio import reading, sidecars
from bids_eeg2fmri.bidsio.events import read_event_markers
from bids_eeg2fmri.bidsio.layout import scan_dataset
from bids_eeg2fmri.errors import BIDSValidationError, DataError
from bids_eeg2fmri.signals.bold import BoldError, check_bold

BOLD_JSON = "sub-01/func/sub-01_task-rest_bold.json"
BOLD = "sub-01/func/sub-01_task-rest_bold.nii.gz"
EEG = "sub-01/eeg/sub-01_task-rest_eeg"


def digest(root: Path) -> dict[str, str]:
    """Every entry below ``root`` without following links (links by their target text)."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                found[rel] = "-> " + os.readlink(path)
            elif path.is_file():
                found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def edit_json(path: Path, **changes) -> None:
    meta = json.loads(path.read_text())
    meta.update(changes)
    path.write_text(json.dumps({k: v for k, v in meta.items() if v is not None}))


def run(ds: Path, tmp_path: Path, capsys) -> tuple[int, list[str]]:
    before = digest(ds)
    code, errors = cli(ds, tmp_path / "out", tmp_path / "work", capsys)
    assert digest(ds) == before, "BIDS_DIR changed"
    return code, errors


def assert_refused(ds, tmp_path, capsys, code: int, *fragments: str) -> None:
    got, errors = run(ds, tmp_path, capsys)
    assert got == code and len(errors) == 1, errors
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    out = tmp_path / "out"
    left = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert all(p.startswith("logs/") for p in left), left  # nothing but the run's log


def log_text(tmp_path: Path) -> str:
    return next((tmp_path / "out" / "logs").glob("bids-eeg2fmri-*.log")).read_text()


# ----------------------------------------------------------------------------- CLI: refused
def _bold_discarded_two(ds):
    edit_json(ds / BOLD_JSON, NumberOfVolumesDiscardedByScanner="two")
    return ds / BOLD_JSON, 'NumberOfVolumesDiscardedByScanner is "two"'


def _bold_not_json(ds):
    (ds / BOLD_JSON).write_text('{"RepetitionTime": 2.16,')
    return ds / BOLD_JSON, "not valid JSON"


def _inherited_tr_string(ds):  # the bad value sits in the dataset root's sidecar
    edit_json(ds / BOLD_JSON, RepetitionTime=None)
    (ds / "task-rest_bold.json").write_text(json.dumps({"RepetitionTime": "2.16"}))
    return ds / "task-rest_bold.json", 'RepetitionTime is "2.16" (a number of seconds > 0)'


def _eeg_sfreq_string(ds):
    edit_json(ds / f"{EEG}.json", SamplingFrequency="250 Hz")
    return ds / f"{EEG}.json", 'SamplingFrequency is "250 Hz"'


def _channels_without_type(ds):
    path = ds / EEG.replace("_eeg", "_channels.tsv")
    path.write_text(path.read_text().replace("name\ttype\t", "name\tkind\t", 1))
    return path, "no name and type columns"


def _events_bad_onset(ds):
    path = ds / EEG.replace("_eeg", "_events.tsv")
    lines = path.read_text().splitlines()
    lines[3] = "abc" + lines[3][lines[3].index("\t") :]
    path.write_text("\n".join(lines) + "\n")
    return path, "column onset, line 4: 'abc'"


def _eeg_twice(ds):
    import mne

    raw = mne.io.read_raw_brainvision(ds / f"{EEG}.vhdr", preload=True, verbose="error")
    mne.export.export_raw(ds / f"{EEG}.edf", raw, verbose="error")
    return ds / f"{EEG}.vhdr", f"the same run as {ds / EEG}.edf (one EEG recording per run"


def _no_tr_anywhere(ds):
    edit_json(ds / BOLD_JSON, RepetitionTime=None)
    img = nib.load(ds / BOLD)
    img.header.set_xyzt_units("mm", "unknown")
    img.to_filename(ds / BOLD)
    return ds / BOLD, "no RepetitionTime in its sidecar(s) nor in its NIfTI header"


@pytest.mark.parametrize(
    "breaks",
    [
        _bold_discarded_two,
        _bold_not_json,
        _inherited_tr_string,
        _eeg_sfreq_string,
        _channels_without_type,
        _events_bad_onset,
        _eeg_twice,
        _no_tr_anywhere,
    ],
)
def test_defects_stop_the_run_with_65_naming_the_file(ds, tmp_path, capsys, breaks):
    path, fragment = breaks(ds)
    assert_refused(ds, tmp_path, capsys, 65, f"{path}: ", fragment)


def test_dataset_description_not_json_is_invalid_bids(ds, tmp_path, capsys):
    (ds / "dataset_description.json").write_text('{"Name": "x",, }')
    assert_refused(ds, tmp_path, capsys, 16, f"{ds / 'dataset_description.json'}: not valid JSON")
    assert not (tmp_path / "out").exists()  # refused before anything is created


@pytest.mark.parametrize("defect", ["flat", "truncated"])
def test_flat_or_truncated_bold_stops_the_run(ds, tmp_path, capsys, defect):
    img = nib.load(ds / BOLD)
    if defect == "flat":
        data = np.full(img.shape, 100, np.int16)
        nib.Nifti1Image(data, img.affine, img.header).to_filename(ds / BOLD)
        fragment = "a flat BOLD run, the same in every volume"
    else:
        raw = nib.Nifti1Image(np.asarray(img.dataobj), img.affine, img.header)
        nifti = ds / BOLD.replace(".nii.gz", ".nii")
        raw.to_filename(nifti)
        (ds / BOLD).write_bytes(gzip.compress(nifti.read_bytes()[:-5000]))
        nifti.unlink()
        fragment = "cannot read the BOLD, truncated or corrupt"
    code, errors = run(ds, tmp_path, capsys)
    assert code == 65 and len(errors) == 1, errors
    assert "sub-01_task-rest_bold.nii.gz: " in errors[0] and fragment in errors[0], errors[0]
    assert not list((tmp_path / "out").glob("sub-01/eeg/*desc-volumes_events.tsv"))
    assert not list((tmp_path / "out").glob("sub-01/eeg/*desc-mrcorrected*"))


# ----------------------------------------------------------------------------- CLI: worked around
def test_defects_worked_around_with_a_warning_each(ds, tmp_path, capsys):
    """TR from the header, channels.tsv that lists other channels, n/a onsets, and
    symbolic links that loop or lead nowhere: the run completes, each says so in the log."""
    edit_json(ds / BOLD_JSON, RepetitionTime=None)
    channels = ds / EEG.replace("_eeg", "_channels.tsv")
    header, *rows = channels.read_text().splitlines()
    assert rows[0].startswith("Fp1\t")
    rows = rows[1:][::-1]  # Fp1 left out, the others in another order
    rows.append("Xx9" + rows[-1][rows[-1].index("\t") :])  # a channel the EEG lacks
    channels.write_text("\n".join([header, *rows]) + "\n")
    events = ds / EEG.replace("_eeg", "_events.tsv")
    lines = events.read_text().splitlines()
    lines[2] = "n/a" + lines[2][lines[2].index("\t") :]
    events.write_text("\n".join(lines) + "\n")
    eeg_dir = ds / "sub-01" / "eeg"
    (eeg_dir / "up").symlink_to("..")  # pybids indexed 42 recordings through it
    (eeg_dir / "sub-01_task-rest_run-2_eeg.vhdr").symlink_to("sub-01_task-rest_run-2_eeg.vhdr")
    (eeg_dir / "sub-01_task-rest_run-3_eeg.vhdr").symlink_to("nowhere.vhdr")

    code, errors = run(ds, tmp_path, capsys)
    assert code == 0, errors
    log = log_text(tmp_path)
    warnings = [line for line in log.splitlines() if "| WARNING |" in line]
    expected = [
        f"{ds / BOLD}: no RepetitionTime in its sidecar(s): using the NIfTI header's, 2.16 s",
        f"{channels}: 9 row(s) for the 9 channels of sub-01_task-rest_eeg.vhdr; types "
        "taken from the 8 row(s) that match by name",
        "not listed: Fp1 as EEG (from the recording)",
        "no such channel in the recording: Xx9 (ignored)",
        f"{events}: 1 row(s) with onset n/a: skipped",
        f"{eeg_dir / 'up'}: a symbolic link that loops: skipped",
        f"{eeg_dir / 'sub-01_task-rest_run-2_eeg.vhdr'}: a symbolic link that loops: skipped",
        f"{eeg_dir / 'sub-01_task-rest_run-3_eeg.vhdr'}: a symbolic link that leads nowhere",
    ]
    for fragment in expected:
        assert sum(fragment in line for line in warnings) == 1, (fragment, warnings)
    assert "Selected 1 EEG recording(s)" in log


def test_channels_typed_eeg_but_named_ecg_stay_out_with_a_warning(ds, tmp_path, capsys):
    channels = ds / EEG.replace("_eeg", "_channels.tsv")
    text = channels.read_text()
    assert "\nECG\tECG\t" in text
    channels.write_text(text.replace("\nECG\tECG\t", "\nECG\tEEG\t"))
    code, errors = run(ds, tmp_path, capsys)
    assert code == 0, errors
    warnings = [line for line in log_text(tmp_path).splitlines() if "| WARNING |" in line]
    said = [line for line in warnings if f"{channels}: ECG typed EEG, but the name says" in line]
    assert len(said) == 1, warnings


def test_channels_the_file_types_eeg_but_named_ecg_stay_out_with_a_warning(ds, tmp_path, capsys):
    # without _channels.tsv the file's types apply: BrainVision types every channel EEG (as
    # ds004000's Biosemi EXG channels)
    (ds / EEG.replace("_eeg", "_channels.tsv")).unlink()
    code, errors = run(ds, tmp_path, capsys)
    assert code == 0, errors
    warnings = [line for line in log_text(tmp_path).splitlines() if "| WARNING |" in line]
    said = [line for line in warnings if f"{ds / EEG}.vhdr: ECG typed EEG, but the name" in line]
    assert len(said) == 1, warnings


# ----------------------------------------------------------------------------- readers
def test_json_that_is_not_an_object(tmp_path):
    path = tmp_path / "x_bold.json"
    for content, fragment in [
        (b"[1, 2]", "a JSON list, not an object"),
        (b'{"a": 1', "not valid JSON (Expecting ',' delimiter at line 1 column 8)"),
        (b'{"a": "\xff"}', "not UTF-8 text"),
    ]:
        path.write_bytes(content)
        with pytest.raises(DataError, match="x_bold.json: ") as info:
            reading.read_json_object(path)
        assert fragment in str(info.value)
    path.write_text("{")
    with pytest.raises(BIDSValidationError):
        reading.read_json_object(path, error=BIDSValidationError)


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("RepetitionTime", -2.16, "RepetitionTime is -2.16 (a number of seconds > 0)"),
        ("RepetitionTime", True, "RepetitionTime is true"),
        ("NumberOfVolumesDiscardedByUser", 2.5, "NumberOfVolumesDiscardedByUser is 2.5"),
        ("SliceTiming", ["0", "1"], 'SliceTiming is ["0", "1"] (a list of numbers'),
        ("SliceTiming", [], "SliceTiming is []"),
        ("SliceTiming", [0.0, 2.5], "SliceTiming holds 2.5 s, not less than the Repetition"),
    ],
)
def test_bold_sidecar_values_of_the_wrong_type(tmp_path, key, value, expected):
    func = tmp_path / "sub-01" / "func"
    func.mkdir(parents=True)
    (func / "sub-01_task-rest_bold.json").write_text(json.dumps({"RepetitionTime": 2.0}))
    (tmp_path / "task-rest_bold.json").write_text(json.dumps({key: value}))
    if key == "RepetitionTime":  # the subject's sidecar would override the root's
        (func / "sub-01_task-rest_bold.json").write_text("{}")
    with pytest.raises(DataError) as info:
        sidecars.bold_sidecar(func / "sub-01_task-rest_bold.nii.gz", tmp_path)
    assert str(info.value).startswith(f"{tmp_path / 'task-rest_bold.json'}: " + expected), str(
        info.value
    )


def test_inheritance_order_and_origin(tmp_path):
    func = tmp_path / "sub-01" / "ses-1" / "func"
    func.mkdir(parents=True)
    bold = func / "sub-01_ses-1_task-rest_run-1_bold.nii.gz"
    files = {
        tmp_path / "task-rest_bold.json": {"RepetitionTime": 3.0, "SliceTiming": [0, 1]},
        tmp_path / "sub-01" / "sub-01_task-rest_bold.json": {"RepetitionTime": 2.0},
        func / "sub-01_ses-1_task-rest_run-1_bold.json": {"NumberOfVolumesDiscardedByUser": 2},
        func / "sub-01_ses-1_task-other_bold.json": {"RepetitionTime": 9.0},  # other task
        func / "sub-01_ses-1_task-rest_run-1_events.json": {"RepetitionTime": 9.0},  # suffix
    }
    for path, meta in files.items():
        path.write_text(json.dumps(meta))
    typed, origin = sidecars.bold_sidecar(bold, tmp_path)
    assert typed == {
        "RepetitionTime": 2.0,
        "SliceTiming": (0.0, 1.0),
        "NumberOfVolumesDiscardedByUser": 2,
    }
    assert origin["RepetitionTime"] == tmp_path / "sub-01" / "sub-01_task-rest_bold.json"
    assert origin["SliceTiming"] == tmp_path / "task-rest_bold.json"


def test_tr_from_sidecar_or_header(tmp_path, caplog):
    bold, sidecar = tmp_path / "b_bold.nii.gz", tmp_path / "b_bold.json"
    caplog.set_level(logging.WARNING, logger="bids_eeg2fmri")
    assert sidecars.resolve_tr(sidecar_tr=2.0, nifti_tr=2.01, bold=bold, sidecar=sidecar) == 2.0
    assert not caplog.records  # within 1 %
    assert sidecars.resolve_tr(sidecar_tr=2.0, nifti_tr=2.1, bold=bold, sidecar=sidecar) == 2.0
    assert f"{sidecar}: sidecar TR 2 s, header TR 2.1 s: using the sidecar's" in caplog.text
    assert sidecars.resolve_tr(sidecar_tr=None, nifti_tr=1.5, bold=bold, sidecar=None) == 1.5
    assert f"{bold}: no RepetitionTime in its sidecar(s): using the NIfTI header's" in caplog.text
    with pytest.raises(DataError, match="no RepetitionTime in its sidecar"):
        sidecars.resolve_tr(sidecar_tr=None, nifti_tr=None, bold=bold, sidecar=None)


def test_header_tr_needs_time_units(tmp_path):
    path = tmp_path / "b_bold.nii"
    img = nib.Nifti1Image(np.zeros((2, 3, 4, 5), np.float32), np.eye(4))
    img.header.set_zooms((1, 1, 1, 1500))
    img.header.set_xyzt_units("mm", "msec")
    img.to_filename(path)
    assert sidecars.header_tr(path) == pytest.approx(1.5)
    img.header.set_xyzt_units("mm", "unknown")
    img.to_filename(path)
    assert sidecars.header_tr(path) is None
    path.write_bytes(b"not a nifti")
    with pytest.raises(DataError, match="b_bold.nii: cannot be opened as NIfTI"):
        sidecars.header_tr(path)


def test_channels_tsv_readable_or_refused(tmp_path):
    path = tmp_path / "x_channels.tsv"
    for content, fragment in [
        ("", "empty"),
        ("name\tunits\nFp1\tuV\n", "no name and type columns (header: name, units)"),
        ("name\ttype\tunits\nFp1\tEEG\n", "line 2 has 2 column(s), the header 3"),
        ("name\ttype\nFp1\tEEG\nFp1\tMISC\n", "Fp1 on lines 2 and 3"),
    ]:
        path.write_text(content)
        with pytest.raises(DataError, match="x_channels.tsv: ") as info:
            sidecars.read_channel_rows(path)
        assert fragment in str(info.value)
    path.write_text('"name" "type"\nFp1 eeg\n')  # space-separated, as signals.eeg reads it
    assert sidecars.read_channel_rows(path) == [("Fp1", "EEG")]


def test_channels_tsv_that_disagrees_with_the_recording(tmp_path, caplog):
    path = tmp_path / "x_channels.tsv"
    path.write_text("name\ttype\nCz\tEEG\nFp1\tEEG\n")
    caplog.set_level(logging.WARNING, logger="bids_eeg2fmri")
    names, kinds = ["Fp1", "Cz"], ["eeg", "eeg"]
    sidecars.check_channels(path, ch_names=names, ch_types=kinds, recording=tmp_path / "r.vhdr")
    assert f"{path}: the channels are listed in another order than in r.vhdr" in caplog.text
    caplog.clear()
    names, kinds = ["Fp1", "Cz", "EKG"], ["eeg", "eeg", "eeg"]
    sidecars.check_channels(path, ch_names=names, ch_types=kinds, recording=tmp_path / "r.vhdr")
    assert "2 row(s) for the 3 channels of r.vhdr" in caplog.text
    assert "not listed: EKG as non-EEG (by its name) (from the recording)" in caplog.text


def test_events_onsets(tmp_path, caplog):
    path = tmp_path / "x_events.tsv"
    caplog.set_level(logging.WARNING, logger="bids_eeg2fmri")
    path.write_text("onset\tduration\ttrial_type\n1.5\t0\tR\nn/a\t0\tR\nn/a\t0\tR\n3\t0\tR\n")
    names, onsets = read_event_markers(path)
    assert names == ["R", "R"] and onsets.tolist() == [1.5, 3.0]
    assert f"{path}: 2 row(s) with onset n/a: skipped" in caplog.text
    for content, fragment in [
        ("onset\ttrial_type\n1\tR\n2 s\tR\nx\tR\n", "column onset, line 3: '2 s'"),
        ("onset\ttrial_type\ninf\tR\n", "column onset, line 2: 'inf'"),
        ("time\ttrial_type\n1\tR\n", "no onset column (header: time, trial_type)"),
    ]:
        path.write_text(content)
        with pytest.raises(DataError, match="x_events.tsv: ") as info:
            read_event_markers(path)
        assert fragment in str(info.value)


def test_scan_skips_links_that_loop_or_lead_nowhere(tmp_path):
    root = tmp_path / "ds"
    (root / "sub-01" / "eeg").mkdir(parents=True)
    (root / "sub-01" / "eeg" / "a_eeg.json").write_text("{}")
    (root / "derivatives").mkdir()
    (root / "derivatives" / "loop").symlink_to("..")  # never indexed: not looked at
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "b_eeg.json").write_text("{}")
    (root / "sub-02").symlink_to(elsewhere)  # sound: followed
    (elsewhere / "back").symlink_to(elsewhere)  # loops, seen through sub-02
    (root / "sub-01" / "up").symlink_to(root)
    (root / "sub-01" / "top").symlink_to(tmp_path)  # holds the dataset
    (root / "sub-01" / "self.json").symlink_to("self.json")
    (root / "sub-01" / "gone.json").symlink_to("missing.json")
    bad, jsons = scan_dataset(root)
    assert dict(bad) == {
        root / "sub-01" / "gone.json": "leads nowhere",
        root / "sub-01" / "self.json": "loops",
        root / "sub-01" / "top": "loops",
        root / "sub-01" / "up": "loops",
        root / "sub-02" / "back": "loops",
    }
    assert jsons == [root / "sub-01" / "eeg" / "a_eeg.json", root / "sub-02" / "b_eeg.json"]


def test_flat_bold_is_refused():
    data = np.zeros((3, 4, 5, 6), np.float32)
    with pytest.raises(BoldError, match="b.nii.gz: a flat BOLD run, all zero"):
        check_bold(data, name="b.nii.gz")
    with pytest.raises(BoldError, match="the same in every volume"):
        check_bold(data + 7, name="b.nii.gz")
    data[1, 2, 3, 4] = 1.0
    check_bold(data, name="b.nii.gz")


def test_eeg_sidecar_values(tmp_path, caplog):
    eeg = tmp_path / "sub-01" / "eeg" / "sub-01_task-rest_eeg.vhdr"
    eeg.parent.mkdir(parents=True)
    sidecar = eeg.with_suffix(".json")
    sidecar.write_text(json.dumps({"SamplingFrequency": 500, "PowerLineFrequency": "n/a"}))
    caplog.set_level(logging.WARNING, logger="bids_eeg2fmri")
    typed = sidecars.check_eeg_sidecar(eeg, tmp_path, sfreq=250.0)
    assert typed == {"SamplingFrequency": 500.0, "PowerLineFrequency": None}
    assert f"{sidecar}: SamplingFrequency 500 Hz, but sub-01_task-rest_eeg.vhdr is" in caplog.text
    (tmp_path / "task-rest_eeg.json").write_text(json.dumps({"EEGChannelCount": -1}))
    with pytest.raises(DataError, match=r"task-rest_eeg.json: EEGChannelCount is -1 \(an int"):
        sidecars.check_eeg_sidecar(eeg, tmp_path)


# ----------------------------------------------------------------------------- fuzzed defects
def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.unlink()  # never through a link into the shared fixture
    path.write_text(text.replace(old, new), encoding="utf-8")


@pytest.mark.parametrize("key", ["Name", "BIDSVersion"])
def test_a_description_without_its_required_keys_is_invalid_bids(ds, tmp_path, capsys, key):
    path = ds / "dataset_description.json"
    meta = json.loads(path.read_text())
    path.unlink()
    path.write_text(json.dumps({k: v for k, v in meta.items() if k != key}))
    assert_refused(ds, tmp_path, capsys, 16, f"{path}: no {key} (REQUIRED")
    assert not (tmp_path / "out").exists()  # refused before anything is created


def test_eeg_misread_by_its_header_disagrees_with_its_recording_duration(ds, tmp_path, capsys):
    """Float samples declared INT_16 read as twice as many samples of noise: the sidecar's
    RecordingDuration (75 s) gives it away, and the run is refused before any step."""
    _replace(ds / f"{EEG}.vhdr", "BinaryFormat=IEEE_FLOAT_32", "BinaryFormat=INT_16")
    assert_refused(
        ds,
        tmp_path,
        capsys,
        65,
        "sub-01_task-rest_eeg.vhdr: holds 150.0 s of data (37500 samples at 250 Hz) but "
        f"RecordingDuration in {ds / EEG}.json is 74.996 s: does the header describe",
    )


def test_eeg_shorter_than_its_recording_duration_is_used_with_a_warning(ds, tmp_path, capsys):
    """Fewer samples than the sidecar says: a truncated file, used as it is (the steps check
    that it still covers the BOLD run; here it does)."""
    json_path = ds / f"{EEG}.json"
    meta = json.loads(json_path.read_text())
    json_path.unlink()
    json_path.write_text(json.dumps({**meta, "RecordingDuration": 150.0}))
    code, errors = run(ds, tmp_path, capsys)
    assert (code, errors) == (0, [])
    assert (
        "sub-01_task-rest_eeg.vhdr: holds 75.0 s of data (18750 samples at 250 Hz) but "
        f"RecordingDuration in {json_path} is 150 s: a truncated data file? (used as it is)"
    ) in log_text(tmp_path)


def test_a_complex_bold_run_is_refused(ds, tmp_path, capsys):
    img = nib.load(ds / BOLD)
    data = np.asarray(img.dataobj).astype(np.complex64)
    (ds / BOLD).unlink()
    nib.Nifti1Image(data, img.affine).to_filename(ds / BOLD)
    code, errors = run(ds, tmp_path, capsys)
    assert code == 65 and len(errors) == 1, errors
    assert "sub-01_task-rest_bold.nii.gz: BOLD of data type complex64 (a real-valued" in errors[0]

"""Bad tables, sidecars and options not covered elsewhere: ``scans.tsv``, SliceTiming against
the BOLD run, config-file values and ``--eeg-derivatives``. A defect that makes results
wrong stops the run with its exit code and one line naming the file (and key); what can be
worked around is, with a warning in the log; the input is never changed."""

from __future__ import annotations

import datetime
import json
import shutil
from pathlib import Path

import pytest
from conftest import cli
from test_bad_sidecars import BOLD_JSON, assert_refused, edit_json, log_text, run

from bids_eeg2fmri.bidsio.pairing import read_scans_tsv
from bids_eeg2fmri.errors import DataError

SCANS = "sub-01/sub-01_scans.tsv"
EEG_ROW = "eeg/sub-01_task-rest_eeg.vhdr"
BOLD_ROW = "func/sub-01_task-rest_bold.nii.gz"


def write_scans(ds: Path, *rows: str, header: str = "filename\tacq_time") -> Path:
    path = ds / SCANS
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


# ----------------------------------------------------------------------------- scans.tsv
_T = "2024-01-01T09:00:00"


@pytest.mark.parametrize(
    "rows, header, fragment",
    [
        ([f"{EEG_ROW}\t{_T}\textra", BOLD_ROW], None, "line 2 has 3 column(s), the header 2"),
        ([f"{EEG_ROW}\tyesterday", f"{BOLD_ROW}\t{_T}"], None, "acq_time on line 2 is 'yesterday'"),
        ([f"{EEG_ROW}\t{_T}", f"{EEG_ROW}\t{_T}"], None, f"{EEG_ROW} on lines 2 and 3"),
        ([f"{EEG_ROW}\t{_T}"], "file\tacq_time", "no filename column (header: file, acq_time)"),
    ],
    ids=["ragged", "acq_time-not-a-date", "listed-twice", "no-filename-column"],
)
def test_a_broken_scans_tsv_stops_the_run(ds, tmp_path, capsys, rows, header, fragment):
    path = write_scans(ds, *rows, header=header or "filename\tacq_time")
    assert_refused(ds, tmp_path, capsys, 65, f"{path}: {fragment}")


def test_a_scans_tsv_that_is_not_text_stops_the_run(ds, tmp_path, capsys):
    (ds / SCANS).write_bytes(b"\xff\xfe\x00binary")
    assert_refused(ds, tmp_path, capsys, 65, f"{ds / SCANS}: not UTF-8 text")


def test_acq_times_are_compared_as_times(tmp_path):
    """n/a is unknown (no verdict), not a different time; ``Z`` is UTC; the format is free."""
    (tmp_path / "func").mkdir()
    for name in ("a.nii.gz", "b.nii.gz", "c.nii.gz"):
        (tmp_path / "func" / name).touch()
    path = tmp_path / "sub-01_scans.tsv"
    path.write_text(
        "filename\tacq_time\nfunc/a.nii.gz\tn/a\nfunc/b.nii.gz\t2024-01-01T09:00:00.000000Z\n"
        "func/c.nii.gz\t2024-01-01T10:00:00+01:00\n"
    )
    times = read_scans_tsv(path)
    nine = datetime.datetime(2024, 1, 1, 9)
    assert times == {"func/a.nii.gz": None, "func/b.nii.gz": nine, "func/c.nii.gz": nine}
    path.write_text("filename\nfunc/a.nii.gz\n")  # no acq_time column: nothing known
    assert read_scans_tsv(path) == {"func/a.nii.gz": None}
    path.write_text("")
    with pytest.raises(DataError, match="no filename column"):
        read_scans_tsv(path)


def test_scans_slice_timing_and_bad_channels_worked_around(ds, tmp_path, capsys):
    """The same acq_time written two ways keeps the pair; a row for a file that is not there
    and a SliceTiming of another slice count are warnings; a channel whose status is bad is
    left out (and interpolated); the run completes."""
    channels = ds / "sub-01/eeg/sub-01_task-rest_channels.tsv"
    header, first, *rows = channels.read_text().splitlines()
    assert first.startswith("Fp1\t") and first.count("\tgood\t") == 1
    channels.write_text("\n".join([header, first.replace("\tgood\t", "\tbad\t"), *rows]) + "\n")
    write_scans(
        ds,
        f"{EEG_ROW}\t2024-01-01T09:00:00",
        f"{BOLD_ROW}\t2024-01-01T09:00:00.000000Z",
        "func/sub-01_task-other_bold.nii.gz\tn/a",
    )
    edit_json(ds / BOLD_JSON, SliceTiming=[i * 0.05 for i in range(30)])  # the NIfTI has 8
    code, errors = run(ds, tmp_path, capsys)
    assert code == 0, errors
    log = log_text(tmp_path)
    assert "BOLD sub-01_task-rest_bold.nii.gz" in log and "share entities but not" not in log
    assert (
        f"{ds / SCANS}: 1 listed file(s) not in {ds / 'sub-01'}: "
        "func/sub-01_task-other_bold.nii.gz (their rows ignored)"
    ) in log
    assert (
        f"{ds / BOLD_JSON}: SliceTiming has 30 onset(s), but sub-01_task-rest_bold.nii.gz has "
        "8 slices along k"
    ) in log
    assert f"{channels}: 1 of 8 EEG channels have status bad (Fp1): treated as missing" in log
    assert "interpolated missing channel(s) Fp1" in log


def test_slice_encoding_direction_not_an_axis_stops_the_run(ds, tmp_path, capsys):
    edit_json(ds / BOLD_JSON, SliceEncodingDirection="z")
    assert_refused(
        ds, tmp_path, capsys, 65, f'{ds / BOLD_JSON}: SliceEncodingDirection is "z" (one of i'
    )


# ----------------------------------------------------------------------------- config file
@pytest.mark.parametrize(
    "toml, fragment",
    [
        ('model = "{tmp}/none.keras"', "{tmp}/none.keras (model in {cfg}): no such file"),
        ('[workflow]\nmodel = "{cfg}"', "{cfg} (model in {cfg}): not a Keras model archive"),
        ("model = 3", "{cfg}: model is 3 (a path, as a string)"),
        ('train = "no"', '{cfg}: train is "no" (true or false)'),
        ('skip_bids_validation = "false"', '{cfg}: skip_bids_validation is "false" (true or'),
        ('verbose = "x"', "{cfg}: verbose: expected an integer >= 0, got 'x'"),
        ('mr_correction = "gradiant"', "{cfg}: mr_correction: unknown mode 'gradiant'"),
        ("eeg_derivatives = 5", "{cfg}: eeg_derivatives is 5 (a path, as a string)"),
    ],
    ids=[
        "model-missing",
        "model-not-keras",
        "model-int",
        "train-str",
        "skip-str",
        "verbose",
        "mr-mode",
        "derivatives-int",
    ],
)
def test_config_file_values_are_named_with_the_file_and_key(tiny, tmp_path, capsys, toml, fragment):
    cfg = tmp_path / "run.toml"
    cfg.write_text(toml.format(tmp=tmp_path, cfg=cfg) + "\n")
    code, errors = cli(tiny, tmp_path / "out", tmp_path / "work", capsys, "--config-file", cfg)
    assert code == 2 and len(errors) == 1, errors
    expected = "bids-eeg2fmri: error: " + fragment.format(tmp=tmp_path, cfg=cfg)
    assert errors[0].startswith(expected), errors[0]
    assert not (tmp_path / "out").exists() and not (tmp_path / "work").exists()


# ----------------------------------------------------------------------------- --eeg-derivatives
def test_eeg_derivatives_that_is_no_folder_is_a_usage_error(tiny, tmp_path, capsys):
    for folder, problem in ((tmp_path / "none", "no such folder"), (tiny / SCANS, "not a folder")):
        code, errors = cli(
            tiny, tmp_path / "out", tmp_path / "work", capsys, "--eeg-derivatives", folder
        )
        assert code == 2 and len(errors) == 1, errors
        assert f"--eeg-derivatives {folder}: {problem} (a BIDS derivatives dataset" in errors[0]
        assert not (tmp_path / "out").exists()


def test_eeg_derivatives_without_a_description_is_read_with_a_warning(ds, tmp_path, capsys):
    deriv = tmp_path / "cleaned"
    shutil.copytree(ds / "sub-01" / "eeg", deriv / "sub-01" / "eeg")
    code, errors = cli(ds, tmp_path / "out", tmp_path / "work", capsys, "--eeg-derivatives", deriv)
    assert code == 0, errors
    assert f"--eeg-derivatives {deriv}: no dataset_description.json" in log_text(tmp_path)


# ----------------------------------------------------------------------------- filter file
@pytest.mark.parametrize(
    "filters, fragment",
    [
        ({"eeg": {"foo": "x"}}, "eeg.foo is not a BIDS entity (e.g. subject, session"),
        ({"bold": {"datatpye": "func"}}, "bold.datatpye is not a BIDS entity (did you mean"),
    ],
)
def test_a_filter_on_an_unknown_entity_is_named(tiny, tmp_path, capsys, filters, fragment):
    path = tmp_path / "filters.json"
    path.write_text(json.dumps(filters))
    code, errors = cli(
        tiny, tmp_path / "out", tmp_path / "work", capsys, "--bids-filter-file", path
    )
    assert code == 2 and len(errors) == 1, errors
    assert f"error: --bids-filter-file: {fragment}" in errors[0], errors[0]
    assert "invalid_filters" not in errors[0]  # pybids' hint names its API, not the app's


# ----------------------------------------------------------------------------- events, BOLD
EVENTS = "sub-01/eeg/sub-01_task-rest_events.tsv"


def _events_ragged(ds):
    path = ds / EVENTS
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace("\tResponse/R128", "", 1)  # the columns after it shift
    path.write_text("\n".join(lines) + "\n")
    return path, "line 3 has 4 column(s), the header 5"


def _events_not_text(ds):
    (ds / EVENTS).write_bytes(b"onset\tduration\n\xff\xfe\x00\n")
    return ds / EVENTS, "not UTF-8 text"


def _bold_volume_timing(ds):
    edit_json(ds / BOLD_JSON, RepetitionTime=None, VolumeTiming=[0.0, 2.0, 5.0])
    return ds / BOLD_JSON, "VolumeTiming is given: a sparse or clustered acquisition"


@pytest.mark.parametrize("breaks", [_events_ragged, _events_not_text, _bold_volume_timing])
def test_events_and_bold_defects_stop_the_run(ds, tmp_path, capsys, breaks):
    path, fragment = breaks(ds)
    assert_refused(ds, tmp_path, capsys, 65, f"{path}: {fragment}")


def test_dummy_scans_that_leave_no_volumes_are_a_usage_error(tiny, tmp_path, capsys):
    """Was exit 1 (an IndexError deep in the volume timing)."""
    code, errors = cli(tiny, tmp_path / "out", tmp_path / "work", capsys, "--dummy-scans", 30)
    assert code == 2 and len(errors) == 1, errors
    assert errors[0].endswith(
        "--dummy-scans 30: sub-01_task-rest_bold.nii.gz has 30 volumes, 0 would be left "
        "(at least 2 volumes kept)"
    ), errors[0]
    left = [p for p in (tmp_path / "out").rglob("*") if p.is_file() and "logs" not in p.parts]
    assert not left, left


def test_a_holdout_label_not_in_the_dataset_is_a_usage_error(tiny, tmp_path, capsys):
    """Was 65 after every run's features were computed."""
    code, errors = cli(
        tiny, tmp_path / "out", tmp_path / "work", capsys, "--train", "--holdout-label", "99"
    )
    assert code == 2 and len(errors) == 1, errors
    assert "--holdout-label: participant label(s) not found in" in errors[0], errors[0]
    assert not (tmp_path / "out").exists()

"""The model's default channels: those common to every selected recording."""

from __future__ import annotations

import logging
import re

import pytest
from conftest import cli, tree_digest

from bids_eeg2fmri.bidsio.model_channels import choose_model_channels, common_channels
from bids_eeg2fmri.errors import DataError

CAP_A = ["Fp1", "Fp2", "C3", "C4", "O1", "O2"]


def test_common_channels_keep_the_first_recordings_order():
    sets = {"a": ["O1", "C3", "Fp1", "Cz"], "b": ["Fp1", "C3", "O1"], "c": ["C3", "O1", "Fp1"]}
    assert common_channels(sets) == ["O1", "C3", "Fp1"]
    assert common_channels({}) == []


def test_one_cap_gives_its_channels():
    assert choose_model_channels({"a": CAP_A, "b": list(CAP_A)}) == CAP_A


def test_a_larger_cap_is_reduced_to_the_common_channels():
    assert choose_model_channels({"big": [*CAP_A, "Cz", "Pz"], "small": CAP_A}) == CAP_A


def test_disjoint_caps_name_each_set_and_the_options():
    sets = {
        "sub-01_eeg.vhdr": CAP_A,
        "sub-02_eeg.vhdr": CAP_A,
        "sub-03_eeg.vhdr": ["A1", "A2", "A3"],
        "sub-04_eeg.vhdr": ["E1", "E2"],
    }
    with pytest.raises(DataError) as info:
        choose_model_channels(sets)
    message = str(info.value)
    assert "4 selected recordings share 0 EEG channel(s)" in message
    assert "3 channel sets" in message
    assert "2 recording(s) with 6 channels (e.g. sub-01_eeg.vhdr: Fp1, Fp2, C3, C4, ...)" in message
    assert "sub-03_eeg.vhdr: A1, A2, A3" in message and "sub-04_eeg.vhdr" in message
    assert "--participant-label" in message and "--channels" in message
    assert "\n" not in message


def test_a_recording_losing_more_than_half_its_channels_is_refused():
    with pytest.raises(DataError, match="share 2 EEG channel"):
        choose_model_channels({"a": CAP_A, "b": ["C3", "C4", "X1", "X2", "X3"]})
    # losing exactly half is accepted
    assert choose_model_channels({"a": CAP_A, "b": ["C3", "C4", "O1", "X1", "X2", "X3"]}) == [
        "C3",
        "C4",
        "O1",
    ]


def _rename_channels(bids, subject: str, names: dict[str, str]) -> None:
    eeg = bids / f"sub-{subject}" / "eeg"
    for path in [*eeg.glob("*_eeg.vhdr"), *eeg.glob("*_channels.tsv")]:
        text = path.read_text(encoding="utf-8")
        for old, new in names.items():
            text = re.sub(rf"(?m)(^Ch\d+=|^){old}([,\t])", rf"\g<1>{new}\g<2>", text)
        path.write_text(text, encoding="utf-8")


def test_a_pool_of_two_caps_stops_naming_both(sim_copy, tmp_path, capsys):
    names = ["Fp1", "Fp2", "F3", "F4", "C3", "C4", "P3", "P4", "O1", "O2", "F7", "F8"]
    names += ["T7", "T8", "P7", "P8"]
    _rename_channels(sim_copy, "02", {n: f"B{i}" for i, n in enumerate(names, 1)})
    before = tree_digest(sim_copy)
    code, errors = cli(sim_copy, tmp_path / "out", tmp_path / "work", capsys)
    assert code == 65
    assert len(errors) == 1
    assert "2 selected recordings share 0 EEG channel(s)" in errors[0]
    assert "sub-01_task-rest_eeg.vhdr: Fp1" in errors[0]
    assert "sub-02_task-rest_eeg.vhdr: B1" in errors[0]
    assert tree_digest(sim_copy) == before
    assert not list((tmp_path / "out").glob("sub-*"))


def test_a_pool_with_one_channel_less_trains_on_the_common_ones(sim_copy, tmp_path, caplog):
    from bids_eeg2fmri.bidsio.model_channels import default_model_channels

    _rename_channels(sim_copy, "02", {"P8": "X9"})

    class Pair:
        def __init__(self, subject):
            eeg = sim_copy / f"sub-{subject}" / "eeg"
            self.eeg = next(eeg.glob("*_eeg.vhdr"))
            self.channels_tsv = next(eeg.glob("*_channels.tsv"))

    with caplog.at_level(logging.INFO):
        channels = default_model_channels([Pair("01"), Pair("02")])
    assert len(channels) == 15 and "P8" not in channels and "X9" not in channels
    assert "sub-01_task-rest_eeg.vhdr: 1 of its 16 EEG channels" in caplog.text
    assert "left out of the model (P8)" in caplog.text
    assert "sub-02_task-rest_eeg.vhdr: 1 of its 16 EEG channels" in caplog.text
    assert "the 15 EEG channels common to the 2 readable recording(s)" in caplog.text

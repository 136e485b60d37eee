"""Electrode positions and the map of one cap onto another (signals/positions.py)."""

import json

import mne
import numpy as np
import pytest

from bids_eeg2fmri.signals import eeg as eeg_mod
from bids_eeg2fmri.signals import positions as pos_mod

SFREQ = 100.0


def _field(directions: np.ndarray, times: np.ndarray) -> np.ndarray:
    """A smooth scalp field: two broad blobs with their own time courses, sampled at the
    unit ``directions`` (n, 3)."""
    left, back = np.array([-0.7, 0.3, 0.65]), np.array([0.2, -0.8, 0.55])
    left, back = left / np.linalg.norm(left), back / np.linalg.norm(back)
    w1 = np.exp((directions @ left - 1) / 0.15)
    w2 = np.exp((directions @ back - 1) / 0.15)
    return (np.outer(w1, np.sin(2 * np.pi * 10 * times)) + np.outer(w2, np.cos(7 * times))) * 1e-5


def _montage_raw(montage_name: str, n_times: int = 400):
    """A smooth field on a montage's channels, and their positions (as an electrodes.tsv
    would give them: a recording's own, not a guess by name)."""
    placed = pos_mod.standard_positions(mne.channels.make_standard_montage(montage_name).ch_names)
    names = list(placed.xyz)
    times = np.arange(n_times) / SFREQ
    data = _field(placed.directions(names), times)
    raw = mne.io.RawArray(data, mne.create_info(names, SFREQ, "eeg"), verbose="error")
    return raw, times, pos_mod.Positions(f"{montage_name} positions", placed.xyz)


def test_standard_positions_pick_the_montage_that_fits_the_names():
    biosemi = [f"{row}{i}" for row in "ABCD" for i in range(1, 33)]
    assert pos_mod.standard_positions(biosemi).source == "standard montage biosemi128"
    ten_twenty = pos_mod.standard_positions(["fp1", "Cz", "O2"])  # any case
    # the smallest montage placing all three (biosemi16): the same spherical head as easycap
    easycap = mne.channels.make_standard_montage("easycap-M1").get_positions()["ch_pos"]
    directions = np.array([easycap[n] for n in ("Fp1", "Cz", "O2")])
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    assert np.allclose(ten_twenty.directions(["fp1", "Cz", "O2"]), directions, atol=0.02)
    assert set(ten_twenty.xyz) == {"fp1", "Cz", "O2"}
    # centred on the head: every position about one head radius from the centre
    radii = np.linalg.norm(np.array(list(ten_twenty.xyz.values())), axis=1)
    assert np.allclose(radii, radii.mean(), rtol=0.1)
    assert pos_mod.standard_positions(["Ch1", "Ch2"]) is None


def test_a_recording_on_another_cap_is_mapped_onto_the_models_channels():
    raw, times, positions = _montage_raw("biosemi128")
    model = ["Fp1", "Fz", "F3", "C3", "Cz", "C4", "P3", "Pz", "P4", "O1", "Oz", "O2", "T7", "T8"]
    with pytest.raises(
        eeg_mod.EEGError,
        match="placed by the standard montage biosemi128 "
        "and, elsewhere, by biosemi160, biosemi256.*_electrodes.tsv",
    ):
        eeg_mod.model_channel_data(raw.copy(), raw.ch_names, model)  # A1-D32: which cap?
    data, mapping = eeg_mod.model_channel_data(raw, raw.ch_names, model, positions=positions)
    assert mapping.targets == model and len(mapping.sources) == 128  # C3, C4 displaced
    assert mapping.positions_from == "biosemi128 positions"
    truth = _field(pos_mod.standard_positions(model).directions(model), times)
    r = [np.corrcoef(a, b)[0, 1] for a, b in zip(data, truth, strict=True)]
    assert min(r) > 0.99
    assert np.allclose(data, truth, atol=0.05 * np.abs(truth).max())
    # biosemi128's C29 sits where Fp1 does, A1 where Cz does: distances near 0 there
    assert mapping.distance_mm["Fp1"] < 2 and mapping.distance_mm["Cz"] < 2
    assert 0 <= max(mapping.distance_mm.values()) < pos_mod.FAR_MM


def test_the_map_is_applied_in_chunks_without_changing_the_result():
    raw, _, _ = _montage_raw("biosemi64", n_times=1000)
    model = ["Fp1", "Cz", "Oz", "FT9", "FT10"]  # FT9/FT10 are not on biosemi64
    whole, _ = eeg_mod.model_channel_data(raw.copy(), raw.ch_names, model, min_fraction=0.1)
    chunked, mapping = eeg_mod.model_channel_data(
        raw.copy(), raw.ch_names, model, min_fraction=0.1, chunk_seconds=0.37
    )
    assert mapping.targets == ["FT9", "FT10"]
    assert np.allclose(whole, chunked)
    assert np.array_equal(whole[1], raw.get_data(picks=["Cz"])[0])  # present: unchanged


def test_unplaced_recordings_and_models_are_errors_naming_what_is_missing():
    raw = mne.io.RawArray(
        np.random.default_rng(0).standard_normal((8, 100)),
        mne.create_info([f"Ch{i}" for i in range(8)], SFREQ, "eeg"),
        verbose="error",
    )
    with pytest.raises(
        eeg_mod.EEGError,
        match="only 0 of the model's 3 channels.*0 of the "
        "recording's 8 EEG channels have a position.*_electrodes.tsv",
    ):
        eeg_mod.model_channel_data(raw, raw.ch_names, ["Fp1", "Cz", "Oz"])


def _write_electrodes(tmp_path, names, xyz, *, units="mm", system="CapTrak"):
    tsv = tmp_path / "sub-01_electrodes.tsv"
    lines = ["name\tx\ty\tz"] + [
        f"{n}\t{p[0]:.4f}\t{p[1]:.4f}\t{p[2]:.4f}" for n, p in zip(names, xyz, strict=True)
    ]
    tsv.write_text("\n".join(lines) + "\nEXG1\tn/a\tn/a\tn/a\n")
    coords = tmp_path / "sub-01_coordsystem.json"
    coords.write_text(json.dumps({"EEGCoordinateSystem": system, "EEGCoordinateUnits": units}))
    return tsv, coords


@pytest.mark.parametrize(("units", "system"), [("mm", "CapTrak"), ("cm", "EEGLAB")])
def test_electrodes_tsv_positions_in_any_unit_and_axes(tmp_path, units, system):
    montage = mne.channels.make_standard_montage("biosemi32")
    ch_pos = montage.get_positions()["ch_pos"]
    names = list(ch_pos)
    ras = np.array([ch_pos[n] for n in names]) + [0.01, -0.02, 0.03]  # another origin
    scale = {"mm": 1000.0, "cm": 100.0}[units]
    stored = (
        ras * scale
        if system == "CapTrak"
        else np.column_stack([ras[:, 1], -ras[:, 0], ras[:, 2]]) * scale
    )  # ALS: x anterior, y left
    tsv, coords = _write_electrodes(tmp_path, names, stored, units=units, system=system)
    read = pos_mod.read_electrodes(tsv, coords)
    assert list(read.xyz) == names  # the n/a row is left out
    expected = pos_mod.standard_positions(names)
    assert np.allclose(read.directions(names), expected.directions(names), atol=1e-3)


def test_bad_electrodes_tables_name_the_file(tmp_path):
    tsv, coords = _write_electrodes(tmp_path, ["A", "B", "C", "D"], np.eye(4)[:, :3] * 90)
    tsv.write_text("name\tx\ty\tz\nA\t1\tfront\t3\n")
    with pytest.raises(pos_mod.PositionError, match=r"electrodes.tsv: line 2 \(A\).*not numbers"):
        pos_mod.read_electrodes(tsv, coords)
    tsv.write_text("label\tx\ty\n")
    with pytest.raises(pos_mod.PositionError, match="columns name, x, y, z expected"):
        pos_mod.read_electrodes(tsv, coords)
    tsv.write_bytes("name\tx\ty\tz\nC\u00f63\t1\t2\t3\n".encode("latin-1"))
    with pytest.raises(pos_mod.PositionError, match=r"electrodes.tsv: not UTF-8 text \(byte 12\)"):
        pos_mod.read_electrodes(tsv, coords)
    tsv.write_text("name\tx\ty\tz\nA\t1\t2\n")
    with pytest.raises(pos_mod.PositionError, match="line 2 has 3 column.s., the header 4"):
        pos_mod.read_electrodes(tsv, coords)
    coords.write_text(json.dumps({"EEGCoordinateUnits": "inch"}))
    tsv.write_text("name\tx\ty\tz\n" + "".join(f"E{i}\t{i}\t1\t2\n" for i in range(5)))
    with pytest.raises(pos_mod.PositionError, match="coordsystem.json: EEGCoordinateUnits 'inch'"):
        pos_mod.read_electrodes(tsv, coords)


def test_positions_survive_a_json_round_trip():
    placed = pos_mod.standard_positions(["Fp1", "Cz", "Oz", "T7"])
    again = pos_mod.positions_from_json(json.loads(json.dumps(placed.to_json())))
    assert again.source == placed.source
    names = list(placed.xyz)
    assert np.allclose(again.directions(names), placed.directions(names), atol=1e-4)  # 1 µm


def test_electrodes_on_axes_other_than_declared_are_refused(tmp_path):
    montage = mne.channels.make_standard_montage("biosemi32")
    ch_pos = montage.get_positions()["ch_pos"]
    names = list(ch_pos)
    als = np.array([[ch_pos[n][1], -ch_pos[n][0], ch_pos[n][2]] for n in names])  # ALS axes
    tsv, coords = _write_electrodes(tmp_path, names, als * 1000, system="CapTrak")
    with pytest.raises(
        pos_mod.PositionError,
        match=r"electrodes.tsv: its 32 electrodes lie a "
        r"median \d+ mm from where the standard montage biosemi32 puts",
    ):
        pos_mod.read_electrodes(tsv, coords)


def test_ten_twenty_names_on_any_montage_are_the_same_places():
    """A 10-20 recording with extra channels (T9, T10) and a 10-20 model: placed by
    different montages, the shared names are at the same places and taken as they are."""
    model = ["Fp1", "Fp2", "F7", "F3", "Fz", "F4", "F8", "T7", "C3", "Cz", "C4", "T8",
             "P7", "P3", "Pz", "P4", "P8", "O1", "O2"]  # fmt: skip
    names = [*model, "T9", "T10"]
    rng = np.random.default_rng(0)
    raw = mne.io.RawArray(
        rng.standard_normal((len(names), 300)) * 1e-5,
        mne.create_info(names, SFREQ, "eeg"),
        verbose="error",
    )
    data, mapping = eeg_mod.model_channel_data(raw.copy(), names, model)
    assert mapping is None and np.array_equal(data, raw.get_data(picks=model))

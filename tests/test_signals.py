"""EEG reading and channels, spectral features, BOLD preparation: the pure functions."""

from __future__ import annotations

import mne
import numpy as np
import pytest

from bids_eeg2fmri.signals import bold as bold_mod
from bids_eeg2fmri.signals import eeg as eeg_mod
from bids_eeg2fmri.signals import features as feat

TR, SFREQ = 2.16, 250.0


# --------------------------------------------------------------------------- features
def test_the_default_grid_is_the_originals_134_bins():
    bins = feat.frequency_bins(TR, SFREQ)
    assert bins.size == 134 and bins[0] == 1
    assert bins[-1] * SFREQ / feat.window_samples(TR, SFREQ) == pytest.approx(134 / TR)
    assert feat.frequency_bins(1.0, 100.0).max() < 50  # never above Nyquist


def test_spectra_find_a_sinusoid_and_scale_as_a_psd():
    rng = np.random.default_rng(0)
    n = int(60 * SFREQ)
    t = np.arange(n) / SFREQ
    eeg = np.vstack([np.sin(2 * np.pi * (10 / TR) * t), rng.normal(0, 2.0, n), np.zeros(n)])
    eeg[2] = 1e-6 * rng.standard_normal(n)
    bins = feat.frequency_bins(TR, SFREQ)
    ends = np.array([10.0, 20.0, 30.0, 40.0])
    psd = feat.window_spectra(eeg, SFREQ, ends, n_samples=feat.window_samples(TR, SFREQ), bins=bins)
    assert psd.shape == (4, 3, 134)
    assert np.all(np.argmax(psd[:, 0], axis=-1) == 9)  # bin k = 10 is index 9
    # white noise of variance 4: one-sided PSD 2 * 4 / sfreq
    assert psd[:, 1].mean() == pytest.approx(2 * 4.0 / SFREQ, rel=0.1)


def test_windows_outside_the_recording_are_nan_and_inputs_are_views():
    rng = np.random.default_rng(1)
    eeg = rng.standard_normal((5, int(30 * SFREQ)))
    onsets = 3.0 + TR * np.arange(9)
    ends = feat.window_ends(onsets, tr=TR, n_windows=3)
    assert ends.size == 11 and np.allclose(np.diff(ends), TR)
    psd = feat.window_spectra(
        eeg,
        SFREQ,
        ends,
        n_samples=feat.window_samples(TR, SFREQ),
        bins=feat.frequency_bins(TR, SFREQ, 40.0),
    )
    features = feat.standardize(psd)
    assert np.isnan(features[:2]).all()  # they start before the recording
    inputs, valid = feat.model_inputs(features, 3)
    assert inputs.shape == (9, 5, features.shape[2], 3)
    assert valid.tolist() == [False, False] + [True] * 7
    assert np.shares_memory(inputs, features)
    assert np.array_equal(inputs[4, :, :, -1], features[4 + 2])  # newest window last
    ok = features[~np.isnan(features).any(axis=(1, 2))]
    assert np.allclose(ok.mean(axis=0), 0, atol=1e-5) and np.allclose(ok.std(axis=0), 1, atol=1e-4)


# --------------------------------------------------------------------------- EEG
def test_channel_types_from_tsv_tolerate_common_defects(tmp_path, caplog):
    good = tmp_path / "good.tsv"
    good.write_text("name\ttype\tunits\nFp1\tEEG\tuV\nECG\tECG\tuV\n")
    assert eeg_mod.read_channel_types(good) == {"Fp1": "EEG", "ECG": "ECG"}
    spaced = tmp_path / "spaced.tsv"
    spaced.write_text('name type units\n"Fp1" eeg uV\n"ECG" ECG uV\n')
    assert eeg_mod.read_channel_types(spaced) == {"Fp1": "EEG", "ECG": "ECG"}
    assert "not tab-separated" in caplog.text
    broken = tmp_path / "broken.tsv"
    broken.write_text("channel\tkind\nFp1\tEEG\n")
    assert eeg_mod.read_channel_types(broken) is None


def test_non_eeg_channels_never_enter_the_model():
    names = ["Fp1", "ECG", "Cz", "EOG1", "Status", "Pz"]
    file_types = ["eeg"] * 6  # the file types everything as EEG
    assert eeg_mod.eeg_channels(names, file_types) == ["Fp1", "Cz", "Pz"]
    tsv = {"Fp1": "EEG", "Cz": "EEG", "Pz": "MISC"}
    assert eeg_mod.eeg_channels(names, file_types, tsv) == ["Fp1", "Cz"]
    # channels.tsv types them EEG, but their names say otherwise (Biosemi's EXG, ACC)
    names += ["EXG3", "ACCX", "AF3"]
    tsv |= {"ECG": "EEG", "EXG3": "EEG", "ACCX": "EEG", "AF3": "EEG"}
    assert eeg_mod.eeg_channels(names, ["eeg"] * 9, tsv) == ["Fp1", "Cz", "AF3"]
    # EOG1 and Status are not in channels.tsv: the file's type (EEG) applies to them
    assert eeg_mod.named_non_eeg(names, ["eeg"] * 9, tsv) == (
        ["ECG", "EXG3", "ACCX"],
        ["EOG1", "Status"],
    )
    # without channels.tsv, the file's types (a BrainVision file types every channel EEG)
    file_types = ["eeg", "eeg", "eeg", "eog", "stim", "eeg", "eeg", "misc", "eeg"]
    assert eeg_mod.named_non_eeg(names, file_types, None) == ([], ["ECG", "EXG3"])


def _smooth_raw():
    """EEG whose topography is smooth (one dipole-like field) so splines can recover it."""
    montage = mne.channels.make_standard_montage("easycap-M1")
    names = [
        "Fp1",
        "Fp2",
        "F3",
        "F4",
        "C3",
        "C4",
        "P3",
        "P4",
        "O1",
        "O2",
        "Fz",
        "Cz",
        "Pz",
        "T7",
        "T8",
        "FC1",
        "FC2",
        "CP1",
        "CP2",
    ]
    pos = np.array([montage.get_positions()["ch_pos"][n] for n in names])
    weights = np.exp(-np.sum((pos - pos[names.index("C3")]) ** 2, axis=1) / 0.004)
    rng = np.random.default_rng(3)
    data = np.outer(weights, rng.standard_normal(2000)) * 1e-5
    raw = mne.io.RawArray(data, mne.create_info(names, SFREQ, "eeg"), verbose="error")
    return raw, names


def test_missing_model_channels_are_interpolated_and_reported():
    raw, names = _smooth_raw()
    truth = raw.get_data(picks=["FC1"])[0]
    raw.drop_channels(["FC1"])
    data, mapping = eeg_mod.model_channel_data(raw, raw.ch_names, names)
    assert mapping.targets == ["FC1"] and data.shape == (len(names), 2000)
    assert np.corrcoef(data[names.index("FC1")], truth)[0, 1] > 0.9
    assert np.array_equal(data[names.index("Cz")], raw.get_data(picks=["Cz"])[0])


def test_too_few_model_channels_is_an_error_naming_them():
    raw, names = _smooth_raw()
    with pytest.raises(
        eeg_mod.EEGError, match="only 3 of the model's 6 channels.*missing: X1, X2, X3"
    ):
        eeg_mod.model_channel_data(raw, raw.ch_names, ["Fp1", "Fp2", "Cz", "X1", "X2", "X3"])


def test_unreadable_and_non_finite_eeg(tmp_path):
    bad = tmp_path / "x_eeg.edf"
    bad.write_bytes(b"0       not an edf file")
    with pytest.raises(eeg_mod.EEGError, match="cannot read the EEG"):
        eeg_mod.read_raw(bad)
    vhdr = tmp_path / "y_eeg.vhdr"
    vhdr.write_text("Brain Vision Data Exchange Header File Version 1.0\nDataFile=gone.eeg\n")
    with pytest.raises(eeg_mod.EEGError, match="data file 'gone.eeg' is missing"):
        eeg_mod.read_raw(vhdr)


# --------------------------------------------------------------------------- BOLD
def test_bold_checks():
    with pytest.raises(bold_mod.BoldError, match="must be 4-D"):
        bold_mod.check_bold(np.zeros((4, 5, 6)), name="b.nii.gz")
    data = np.ones((4, 5, 6, 3))
    data[1, 1, 1, 1] = np.nan
    with pytest.raises(bold_mod.BoldError, match="NaN"):
        bold_mod.check_bold(data, name="b.nii.gz")
    assert bold_mod.header_tr((3.0, 3.0, 3.0, 2160.0), "msec") == pytest.approx(2.16)
    assert bold_mod.header_tr((3.0, 3.0, 3.0), None) is None


def test_model_grid_round_trip_keeps_smooth_images():
    shape = (20, 22, 12)
    affine = np.diag([3.5, 3.5, 4.5, 1.0])
    ijk = np.indices(shape).astype(float)
    image = np.sin(ijk[0] / 6) + np.cos(ijk[1] / 7) + ijk[2] / 12
    data = np.stack([image, 2 * image], axis=-1)
    target = bold_mod.model_grid_affine(affine, shape, (16, 16, 10))
    down = bold_mod.resample(data, affine, target, (16, 16, 10))
    assert down.shape == (16, 16, 10, 2)
    back = bold_mod.resample(down, target, affine, shape)
    inner = (slice(3, -3), slice(3, -3), slice(2, -2))
    assert np.corrcoef(back[inner][..., 0].ravel(), image[inner].ravel())[0, 1] > 0.98
    same = bold_mod.resample(data, affine, affine, shape)
    assert np.array_equal(same, data.astype(np.float32))


@pytest.mark.filterwarnings("error")
def test_a_mask_is_resampled_as_fractions_without_a_warning():
    mask = np.zeros((20, 22, 12), np.float32)
    mask[5:15, 5:17, 3:9] = 1.0
    affine = np.diag([3.5, 3.5, 4.5, 1.0])
    target = bold_mod.model_grid_affine(affine, mask.shape, (16, 16, 10))
    fractions = bold_mod.resample(mask, affine, target, (16, 16, 10))
    assert fractions.min() >= -1e-6 and fractions.max() <= 1 + 1e-6
    assert 0 < np.mean((fractions > 0) & (fractions < 1))  # edges fall between voxels


def test_normalisation_round_trip():
    rng = np.random.default_rng(4)
    data = (1000 + 10 * rng.standard_normal((6, 7, 5, 30))).astype(np.float32)
    original = data.copy()
    mask = np.zeros((6, 7, 5), bool)
    mask[1:5, 1:6, 1:4] = True
    z, mean, std = bold_mod.normalize(data, mask)
    assert np.allclose(z[mask].mean(axis=-1), 0, atol=1e-5) and np.all(z[~mask] == 0)
    back = bold_mod.denormalize(z, mean, std)
    assert np.allclose(back[mask], original[mask], atol=1e-2)


def test_remove_drift_takes_out_slow_cosines_and_keeps_the_mean():
    rng = np.random.default_rng(5)
    n, tr = 200, 2.0
    t = np.arange(n) * tr
    fast = np.sin(2 * np.pi * t / 20.0)  # 0.05 Hz: kept
    slow = 3 * np.cos(np.pi * (np.arange(n) + 0.5) / n)  # the slowest DCT regressor
    data = (100 + fast + slow + 0.01 * rng.standard_normal(n))[None, None, None].astype(np.float32)
    data = np.repeat(data, 3, axis=0)
    clean = bold_mod.remove_drift(data.copy(), tr, 128.0)
    assert np.allclose(clean.mean(axis=-1), 100, atol=0.05)
    assert np.corrcoef(clean[0, 0, 0], fast)[0, 1] > 0.97
    assert bold_mod.dct_drift_basis(10, 2.0, 128.0).shape == (10, 0)  # 20 s: nothing to remove


@pytest.mark.filterwarnings("error")
def test_a_mean_image_without_a_brain_is_refused_naming_the_run():
    noise = np.random.default_rng(0).standard_normal((12, 13, 8))  # a mean-removed run's mean
    with pytest.raises(bold_mod.BoldError, match=r"^r_bold.nii.gz: no brain found in the mean"):
        bold_mod.brain_mask(noise, np.eye(4), name="r_bold.nii.gz")
    head = np.zeros((12, 13, 8))
    head[3:9, 3:10, 2:6] = 1000.0
    mask = bold_mod.brain_mask(head + noise, np.eye(4))
    assert mask[6, 6, 4] and mask[head > 0].sum() > 0.8 * mask.sum()  # mostly the box

"""The HRF path's initial weights (models/priors.py) and the path in the built model."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from bids_eeg2fmri.evaluation.baselines import band_power, hrf_design, hrf_kernel
from bids_eeg2fmri.models.priors import band_matrix, hrf_window_weights


def test_band_matrix_is_the_baselines_band_power():
    rng = np.random.default_rng(0)
    frequencies = np.arange(1, 135) / 2.16
    features = rng.normal(size=(7, 5, frequencies.size))
    matrix, names = band_matrix(frequencies)
    expected, expected_names = band_power(features, frequencies)
    assert names == expected_names == ["delta", "theta", "alpha", "beta", "gamma"]
    np.testing.assert_allclose(features @ matrix, expected, rtol=1e-12)


def test_band_matrix_drops_bands_without_bins_and_refuses_none():
    matrix, names = band_matrix(np.arange(1, 41) / 2.0)  # 0.5 ... 20 Hz
    assert names == ["delta", "theta", "alpha", "beta"] and matrix.shape == (40, 4)
    with pytest.raises(ValueError, match="no band contains"):
        band_matrix([0.1, 0.2])


@pytest.mark.parametrize("n_windows", [1, 10, 20])
def test_window_weights_are_the_ridges_lag_0_hrf(n_windows):
    """On the windows of one input, the weights give the ridge design's lag-0 column (the
    HRF-convolved band power at the volume), truncated to the input's windows."""
    tr = 2.16
    weights = hrf_window_weights(tr, n_windows)
    kernel = hrf_kernel(tr)
    assert weights.shape == (n_windows,)
    n = min(n_windows, kernel.size)
    np.testing.assert_allclose(weights[::-1][:n], kernel[:n])
    assert not weights[: n_windows - n].any()
    # one band power series over rows; the design's lag-0 value at the last volume
    power = np.random.default_rng(1).normal(size=(40, 1, 1))
    design, _ = hrf_design(power, tr=tr, n_windows=n_windows, lags=(0,))
    last = power[-n_windows:, 0, 0] @ weights
    if n_windows >= kernel.size:
        assert last == pytest.approx(design[-1, 0])
    with pytest.raises(ValueError, match="n_windows"):
        hrf_window_weights(tr, 0)


def test_the_compact_model_starts_from_the_prior_and_needs_the_bins():
    pytest.importorskip("keras")
    from conftest import input_bins

    from bids_eeg2fmri.models.synthesizer import PRESETS, build_models

    shape, grid = (12, 40, 4), (12, 13, 8)
    bins = input_bins(shape, tr=2.0)
    model = build_models(PRESETS["compact"], eeg_shape=shape, grid=grid, **bins).synthesis
    windows = model.get_layer("hrf_windows").get_weights()[0]
    bands = model.get_layer("hrf_bands").get_weights()[0]
    np.testing.assert_allclose(windows[:, 0], hrf_window_weights(2.0, 4), rtol=1e-6)
    np.testing.assert_allclose(bands, band_matrix(bins["frequencies"])[0], rtol=1e-6)
    with pytest.raises(ValueError, match="HRF path needs the TR and the 40 frequencies"):
        build_models(PRESETS["compact"], eeg_shape=shape, grid=grid)
    # without the path (the paper's presets), no bins are needed
    plain = dataclasses.replace(PRESETS["compact"], hrf_path=False)
    assert not PRESETS["noddi-tafp"].hrf_path
    without = build_models(plain, eeg_shape=shape, grid=grid).synthesis
    assert "hrf_windows" not in {layer.name for layer in without.layers}

"""Metrics on arrays."""

from __future__ import annotations

import numpy as np

from bids_eeg2fmri.evaluation.metrics import voxelwise_pearson


def test_voxelwise_pearson_matches_corrcoef_and_flags_constant_series():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 3, 4, 2, 30))
    b[0, 0, 0] = 5.0  # constant
    r = voxelwise_pearson(a, b)
    assert r.shape == (3, 4, 2) and np.isnan(r[0, 0, 0])
    assert np.isclose(r[1, 2, 1], np.corrcoef(a[1, 2, 1], b[1, 2, 1])[0, 1])
    assert np.allclose(voxelwise_pearson(a, 2 * a + 1), 1)

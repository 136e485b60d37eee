"""Volume metrics (RMSE, SSIM, PSNR, r summaries) and the baselines (band power, HRF design,
ridge, mean volume), on tiny synthetic arrays with uneven shapes."""

from __future__ import annotations

import numpy as np
import pytest

from bids_eeg2fmri.evaluation.baselines import (
    BANDS,
    RidgeBaseline,
    band_power,
    design_columns,
    hrf_design,
    hrf_kernel,
    mean_volume,
)
from bids_eeg2fmri.evaluation.metrics import (
    psnr,
    rmse,
    ssim3d,
    ssim_original,
    summarize_r,
)

SHAPE = (7, 8, 9, 4)


@pytest.fixture
def volumes() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    obs = rng.standard_normal(SHAPE)
    mask = np.zeros(SHAPE[:3], dtype=bool)
    mask[1:6, 2:7, 1:8] = True
    return obs, mask


# ---------------------------------------------------------------- metrics


def test_identical_volumes_are_perfect(volumes):
    obs, mask = volumes
    assert np.array_equal(rmse(obs, obs.copy(), mask), np.zeros(SHAPE[-1]))
    assert np.all(psnr(obs, obs.copy(), mask) == np.inf)
    assert np.allclose(ssim3d(obs, obs.copy(), mask), 1.0)
    big = np.random.default_rng(2).random((13, 12, 5, 3))
    assert np.allclose(ssim_original(big, big.copy()), 1.0)


def test_rmse_and_psnr_known_values_and_mask(volumes):
    obs, mask = volumes
    pred = obs + np.where(mask, 1.0, 3.0)[..., None]
    assert np.allclose(rmse(pred, obs, mask), 1.0)
    n_in, n_all = mask.sum(), mask.size
    expected = np.sqrt((n_in * 1.0 + (n_all - n_in) * 9.0) / n_all)
    assert np.allclose(rmse(pred, obs), expected)
    data_range = np.array([np.ptp(obs[..., t][mask]) for t in range(SHAPE[-1])])
    assert np.allclose(psnr(pred, obs, mask), 20 * np.log10(data_range / 1.0))
    whole_range = np.ptp(obs.reshape(-1, SHAPE[-1]), axis=0)
    assert np.allclose(psnr(pred, obs), 20 * np.log10(whole_range / expected))


def test_metrics_reject_mismatched_shapes(volumes):
    obs, mask = volumes
    with pytest.raises(ValueError, match="same shape"):
        rmse(obs, obs[:-1])
    with pytest.raises(ValueError, match="spatial shape"):
        ssim3d(obs, obs, mask[:-1])


def test_ssim_original_matches_tensorflow():
    import tensorflow as tf

    rng = np.random.default_rng(3)
    obs = rng.random((23, 19, 7, 2))
    pred = obs + 0.3 * rng.standard_normal(obs.shape)
    expected = []
    for t in range(obs.shape[-1]):
        per_slice = []
        for z in range(0, obs.shape[2], 3):
            a = pred[:, :, z, t] + 1e-9
            b = obs[:, :, z, t] + 1e-9
            value = tf.image.ssim(
                a[None, :, :, None], b[None, :, :, None], max_val=max(a.max(), b.max())
            )
            per_slice.append(float(value[0]))
        expected.append(np.mean(per_slice))
    got = ssim_original(pred, obs)
    assert got.shape == (2,)
    assert np.allclose(got, expected, atol=1e-5)
    assert not np.allclose(ssim_original(pred, obs, step=1), got, atol=1e-5)  # step matters


def test_ssim_original_refuses_slices_smaller_than_the_window(volumes):
    obs, _ = volumes
    with pytest.raises(ValueError, match="at least 11 x 11"):
        ssim_original(obs, obs)


def test_ssim3d_decreases_with_noise(volumes):
    obs, mask = volumes
    rng = np.random.default_rng(4)
    noise = rng.standard_normal(SHAPE)
    values = [ssim3d(obs + level * noise, obs, mask).mean() for level in (0.05, 0.3, 1.0, 3.0)]
    assert np.all(np.diff(values) < 0), values
    assert values[0] < 1.0


def test_summarize_r_ignores_outside_mask_and_non_finite():
    r = np.full((3, 4, 5), 9.0)
    mask = np.zeros(r.shape, dtype=bool)
    mask[0, :, 0] = True  # 4 voxels
    r[0, :, 0] = [0.1, 0.2, np.nan, 0.6]
    summary = summarize_r(r, mask)
    assert summary["mean"] == pytest.approx(0.3)
    assert summary["median"] == pytest.approx(0.2)
    assert summary["p90"] == pytest.approx(np.percentile([0.1, 0.2, 0.6], 90))
    r[0, :, 0] = np.nan
    assert all(np.isnan(v) for v in summarize_r(r, mask).values())


# ---------------------------------------------------------------- baselines


def test_band_power_averages_band_bins_and_drops_empty_bands():
    frequencies = np.arange(1, 41) / 2.0  # 0.5 ... 20 Hz: no gamma bin
    rng = np.random.default_rng(5)
    features = rng.standard_normal((6, 3, frequencies.size)).astype(np.float32)
    alpha = (frequencies >= 8) & (frequencies < 13)
    features[..., alpha] = 3.0
    features[2] = np.nan
    power, names = band_power(features, frequencies)
    assert names == ["delta", "theta", "alpha", "beta"]
    assert power.shape == (6, 3, 4)
    assert np.allclose(power[[0, 1, 3, 4, 5], :, 2], 3.0)
    theta = (frequencies >= 4) & (frequencies < 8)  # 4.0 in theta, 8.0 not
    assert np.allclose(power[0, :, 1], features[0][:, theta].mean(axis=-1))
    assert np.isnan(power[2]).all()
    assert BANDS["gamma"][1] == np.inf


def test_hrf_design_is_causal_lagged_and_ordered():
    tr, n_windows, n_volumes = 2.0, 3, 25
    first = n_windows - 1
    power = np.zeros((n_volumes + first, 2, 3))
    power[first + 5, 1, 0] = 1.0  # impulse: channel 1, band 0, window of volume 5
    power[first - 1, 0, 2] = 1.0  # impulse in the window before volume 0
    power[first + 8, 0, 1] = np.nan
    X, valid = hrf_design(power, tr=tr, n_windows=n_windows, lags=(0, 1, 2))
    columns = design_columns(["c0", "c1"], ["b0", "b1", "b2"], (0, 1, 2))
    assert X.shape == (n_volumes, len(columns)) == (25, 18)
    assert columns[:4] == [("c0", "b0", 0), ("c0", "b0", 1), ("c0", "b0", 2), ("c0", "b1", 0)]
    h = hrf_kernel(tr)
    assert h.shape == (16,) and np.isclose(h.sum(), 1.0) and 1 <= np.argmax(h) <= 2  # ~5 s

    def response(onset: int, lag: int) -> np.ndarray:
        """HRF starting at volume ``onset + lag``, zero before (and after its support)."""
        k = np.arange(n_volumes) - onset - lag
        inside = (k >= 0) & (k < h.size)
        return np.where(inside, h[np.clip(k, 0, h.size - 1)], 0.0)

    for lag in (0, 1, 2):
        col = X[:, columns.index(("c1", "b0", lag))]
        assert np.all(col[: 5 + lag] == 0)  # causal
        assert np.allclose(col, response(5, lag))
        # the window before volume 0 reaches volume 0 through h[1] (and lag 2 zero-fills)
        assert np.allclose(X[:, columns.index(("c0", "b2", lag))], response(-1, lag))
    assert X[0, columns.index(("c0", "b2", 0))] == pytest.approx(h[1])
    assert X[0, columns.index(("c0", "b2", 2))] == 0
    untouched = [i for i, c in enumerate(columns) if c[:2] in {("c0", "b0"), ("c1", "b1")}]
    assert np.all(X[:, untouched] == 0)
    assert np.isfinite(X).all()
    assert valid.tolist() == [t != 8 for t in range(n_volumes)]


def _linear_data(rng, n, p, v, noise, weights):
    X = rng.standard_normal((n, p)) * rng.uniform(0.5, 3, p) + rng.uniform(-2, 2, p)
    Y = X @ weights + 0.5 + noise * rng.standard_normal((n, v))
    return X, Y.astype(np.float32)


def test_ridge_recovers_a_linear_map_and_matches_sklearn():
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(6)
    weights = rng.standard_normal((12, 40))
    X, Y = _linear_data(rng, 80, 12, 40, 0.05, weights)
    X_val, Y_val = _linear_data(rng, 30, 12, 40, 0.05, weights)
    X_test, Y_test = _linear_data(rng, 30, 12, 40, 0.05, weights)
    model = RidgeBaseline().fit(X, Y, X_val, Y_val)
    assert model.selection_ == "validation" and model.alpha_ in model.alphas
    pred = model.predict(X_test)
    assert pred.dtype == np.float32 and pred.shape == Y_test.shape
    r = [np.corrcoef(pred[:, j], Y_test[:, j])[0, 1] for j in range(Y_test.shape[1])]
    assert min(r) > 0.95

    Z = (X - X.mean(0)) / X.std(0)
    reference = Ridge(alpha=model.alpha_).fit(Z, Y.astype(np.float64))
    assert np.allclose(model.coef_, reference.coef_.T, atol=1e-4)
    assert np.allclose(model.intercept_, reference.intercept_, atol=1e-4)
    Z_test = (X_test - X.mean(0)) / X.std(0)
    assert np.allclose(pred, reference.predict(Z_test), atol=1e-3)


def test_ridge_chooses_more_regularisation_for_noisier_training_data():
    rng = np.random.default_rng(7)
    weights = 0.3 * rng.standard_normal((20, 150))
    chosen = {}
    for name, noise in (("clean", 0.05), ("noisy", 5.0)):
        X, Y = _linear_data(rng, 40, 20, 150, noise, weights)
        X_val, Y_val = _linear_data(rng, 40, 20, 150, noise, weights)
        chosen[name] = RidgeBaseline().fit(X, Y, X_val, Y_val).alpha_
        chosen[name + "_gcv"] = RidgeBaseline().fit(X, Y).alpha_
    assert chosen["noisy"] > chosen["clean"], chosen
    assert chosen["noisy_gcv"] > chosen["clean_gcv"], chosen


def test_ridge_gcv_scores_match_the_hat_matrix_definition():
    rng = np.random.default_rng(8)
    weights = rng.standard_normal((6, 10))
    X, Y = _linear_data(rng, 30, 6, 10, 1.0, weights)
    model = RidgeBaseline(alphas=(0.1, 10.0, 1e4)).fit(X, Y)
    assert model.selection_ == "gcv" and model.scores_.shape == (3,)
    Z = (X - X.mean(0)) / X.std(0)
    Yc = Y - Y.mean(0)
    n = X.shape[0]
    for alpha, score in zip(model.alphas, model.scores_, strict=True):
        hat = Z @ np.linalg.solve(Z.T @ Z + alpha * np.eye(6), Z.T) + np.full((n, n), 1 / n)
        rss = np.sum((Yc - (hat - 1 / n) @ Yc) ** 2, axis=0)
        expected = np.mean(rss / np.sum(Yc**2, axis=0)) / (1 - np.trace(hat) / n) ** 2
        assert score == pytest.approx(expected, rel=1e-5)
    assert model.alpha_ == model.alphas[int(np.argmin(model.scores_))]
    assert np.isfinite(model.predict(X)).all()


def test_ridge_chooses_alpha_for_unseen_groups_by_leaving_each_out():
    rng = np.random.default_rng(10)
    shared = 0.3 * rng.standard_normal((8, 30))
    parts = []  # each group: the shared map plus a strong map of its own
    for _ in range(4):
        own = rng.standard_normal((8, 30))
        parts.append(_linear_data(rng, 25, 8, 30, 0.5, shared + own))
    X = np.concatenate([x for x, _ in parts])
    Y = np.concatenate([y for _, y in parts])
    groups = np.repeat(["a", "b", "c", "d"], 25)
    alphas = (0.1, 10.0, 1e3, 1e5)
    model = RidgeBaseline(alphas=alphas).fit(X, Y, groups=groups)
    assert model.selection_ == "groups"
    folds = [
        RidgeBaseline(alphas=alphas)
        .fit(X[groups != g], Y[groups != g], X[groups == g], Y[groups == g])
        .scores_
        for g in "abcd"
    ]
    assert np.allclose(model.scores_, np.mean(folds, axis=0))
    assert model.alpha_ == alphas[int(np.argmax(model.scores_))]
    # the samples' own groups would ask for less penalty than unseen groups need
    within = RidgeBaseline(alphas=alphas).fit(X[::2], Y[::2], X[1::2], Y[1::2])
    assert model.alpha_ > within.alpha_, (model.alpha_, within.alpha_)
    with pytest.raises(ValueError, match="at least 2 distinct"):
        RidgeBaseline().fit(X, Y, groups=np.zeros(len(X)))
    with pytest.raises(ValueError, match="one label per sample"):
        RidgeBaseline().fit(X, Y, groups=groups[:-1])
    with pytest.raises(ValueError, match="not both"):
        RidgeBaseline().fit(X, Y, X, Y, groups=groups)


def test_ridge_rejects_bad_shapes():
    X, Y = np.zeros((10, 3)), np.zeros((10, 5), np.float32)
    with pytest.raises(ValueError, match="same n_samples"):
        RidgeBaseline().fit(X, Y[:-1])
    with pytest.raises(ValueError, match="at least 3"):
        RidgeBaseline().fit(X[:2], Y[:2])
    with pytest.raises(ValueError, match="both X_val and Y_val"):
        RidgeBaseline().fit(X, Y, X_val=X)
    model = RidgeBaseline().fit(np.random.default_rng(0).standard_normal((10, 4)), Y)
    with pytest.raises(ValueError, match=r"\(n_samples, 4\); received shape \(10, 3\)"):
        model.predict(X)


def test_mean_volume_accumulates_runs_of_any_layout(tmp_path):
    rng = np.random.default_rng(9)
    a = rng.standard_normal((7, 8, 9, 5)).astype(np.float32)
    b = np.asfortranarray(rng.standard_normal((7, 8, 9, 3)))
    mapped = np.lib.format.open_memmap(
        tmp_path / "c.npy", mode="w+", dtype=np.float32, shape=(7, 8, 9, 2)
    )
    mapped[:] = rng.standard_normal(mapped.shape)
    expected = np.concatenate([a, b, mapped], axis=-1).astype(np.float64).mean(axis=-1)
    assert np.allclose(mean_volume([a, b, mapped]), expected)
    with pytest.raises(ValueError, match="spatial shape"):
        mean_volume([a, b[:-1]])


# ----------------------------------------------------------------------------- tables
def test_the_run_level_r_uses_held_out_volumes_when_there_are_any():
    from bids_eeg2fmri.evaluation.tables import evaluation_volumes

    assert evaluation_volumes(["train", "holdout", "validation", "holdout"]).tolist() == [1, 3]
    assert evaluation_volumes(["train", "train", "validation"]).tolist() == [0, 1, 2]


def test_temporal_metrics_against_a_noise_ceiling():
    from bids_eeg2fmri.evaluation.tables import temporal_metrics

    rng = np.random.default_rng(3)
    obs = rng.standard_normal((5, 6, 7, 50))
    pred = obs + rng.standard_normal(obs.shape)  # r = 1/sqrt(2) in expectation
    mask = np.zeros((5, 6, 7), bool)
    mask[1:4, 1:5, 2:6] = True
    ceiling = np.full((5, 6, 7), np.nan)
    ceiling[2, 2, 2:4] = 0.8
    per_run, r = temporal_metrics(pred, obs, mask, ceiling=ceiling)
    assert r.shape == (5, 6, 7)
    assert per_run["r_mask_mean"] == pytest.approx(np.mean(r[mask]), rel=1e-5)
    assert per_run["r_mask_median"] <= per_run["r_mask_p90"]
    assert per_run["noise_ceiling_mean"] == pytest.approx(0.8)
    assert per_run["fraction_of_ceiling"] == pytest.approx(np.mean(r[2, 2, 2:4]) / 0.8, rel=1e-5)
    constant, no_map = temporal_metrics(None, obs, mask, ceiling=ceiling)
    assert no_map is None and constant["noise_ceiling_mean"] == pytest.approx(0.8)
    assert all(np.isnan(v) for k, v in constant.items() if k != "noise_ceiling_mean")


def test_table_rows_mark_what_training_saw():
    from bids_eeg2fmri.evaluation.tables import COLUMNS, RUN_COLUMNS, table_rows

    per_volume = {
        c: np.array([0.5, np.nan, np.inf])
        for c in COLUMNS
        if c.startswith(("rmse", "ssim", "psnr"))
    }
    per_run = dict.fromkeys(RUN_COLUMNS, np.nan) | {"r_mask_mean": 0.25}
    rows = table_rows("ridge", [4, 5, 6], ["train", "validation", "holdout"], per_volume, per_run)
    assert [row[:4] for row in rows] == [
        ["ridge", "4", "train", "true"],
        ["ridge", "5", "validation", "true"],
        ["ridge", "6", "holdout", "false"],
    ]
    assert all(len(row) == len(COLUMNS) for row in rows)
    assert rows[0][4] == "0.5" and rows[1][4] == "n/a" and rows[2][4] == "inf"
    assert rows[0][list(COLUMNS).index("r_mask_mean")] == "0.25"

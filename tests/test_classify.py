"""The classification protocol and the views, on arrays (evaluation/classify.py, views.py)."""

import re

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from bids_eeg2fmri.evaluation import classify as clf
from bids_eeg2fmri.evaluation import views as v

FAST = clf.Protocol(n_folds=4, n_repeats=3, n_permutations=30, n_bootstrap=500)


def _groups(n_per_class: int, n_features: int, effect: float, seed: int):
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n_per_class)  # sorted, like ds004000
    x = rng.normal(size=(y.size, n_features))
    x[y == 1, :3] += effect
    return x, y


@pytest.mark.parametrize("c", [0.01, 1.0, 100.0])
def test_logistic_is_scikit_learns_objective(c):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(25, 6))
    y = (x[:, 0] + rng.normal(size=25) > 0).astype(int)
    w, b = clf.fit_logistic(x, y, np.array([c]))
    ref = LogisticRegression(C=c, tol=1e-12, max_iter=10_000).fit(x, y)
    assert np.allclose(w[0], ref.coef_[0], atol=1e-5) and np.isclose(b[0], ref.intercept_[0])


def test_many_features_give_the_same_probabilities_as_the_full_fit():
    rng = np.random.default_rng(4)
    x, test = rng.normal(size=(18, 700)), rng.normal(size=(5, 700))
    y = (x[:, :4].sum(axis=1) > 0).astype(int)
    mean, std = x.mean(axis=0), x.std(axis=0)
    ref = LogisticRegression(C=0.05, tol=1e-12, max_iter=10_000).fit((x - mean) / std, y)
    ours = clf._probabilities(x, y, test, [0.05])[0]
    assert np.allclose(ours, ref.predict_proba((test - mean) / std)[:, 1], atol=1e-6)


def test_folds_are_stratified_and_refuse_too_small_classes():
    y = np.array([0] * 11 + [1] * 7)
    fold = clf.stratified_folds(y, 5, np.random.default_rng(0))
    for k in range(5):
        assert 2 <= np.sum((fold == k) & (y == 0)) <= 3
        assert 1 <= np.sum((fold == k) & (y == 1)) <= 2
    with pytest.raises(ValueError, match="4 participant"):
        clf.stratified_folds(np.array([0] * 8 + [1] * 4), 5, np.random.default_rng(0))


def test_a_participant_never_helps_predict_itself():
    """Identity features: each participant is described only by itself. Any leak of the
    test participant into its training fold would let the model memorise it."""
    y = np.repeat([0, 1], 10)
    folds = clf.repeated_folds(y, FAST, seed=0)
    probability, _ = clf.out_of_fold(np.eye(20), y, folds, FAST, seed=1)
    assert clf.auc(y, probability.mean(axis=0)) <= 0.5


def test_auc_with_ties_matches_scikit_learn():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 40)
    score = np.round(rng.normal(size=40), 1)
    assert np.isclose(clf.auc(y, score), roc_auc_score(y, score))
    assert np.isnan(clf.auc(np.ones(5), np.arange(5)))


def test_a_strong_effect_is_found_and_a_null_one_is_not():
    x, y = _groups(12, 20, effect=2.0, seed=0)
    folds = clf.repeated_folds(y, FAST, seed=0)
    probability, chosen = clf.out_of_fold(x, y, folds, FAST, seed=1)
    observed = clf.auc(y, probability.mean(axis=0))
    null = clf.permutation_aucs(x, y, FAST, seed=2)
    assert observed > 0.85 and clf.permutation_p(observed, null) < 0.05
    assert set(np.unique(chosen)) <= set(FAST.cs)
    low, high = clf.interval(clf.bootstrap_aucs(y, probability.mean(axis=0)[None],
                                                n_boot=500, seed=0)[:, 0])  # fmt: skip
    assert 0.5 < low <= observed <= high

    x, y = _groups(12, 40, effect=0.0, seed=1)
    probability, _ = clf.out_of_fold(x, y, clf.repeated_folds(y, FAST, seed=0), FAST, seed=1)
    observed = clf.auc(y, probability.mean(axis=0))
    assert clf.permutation_p(observed, clf.permutation_aucs(x, y, FAST, seed=2)) > 0.05


def test_permutations_on_two_processes_equal_those_on_one():
    x, y = _groups(8, 10, effect=0.5, seed=4)
    protocol = clf.Protocol(n_folds=3, n_repeats=2, n_permutations=9)
    seen: list[tuple[int, int]] = []
    serial = clf.permutation_aucs(x, y, protocol, seed=7)
    parallel = clf.permutation_aucs(x, y, protocol, seed=7, n_jobs=2,
                                    progress=lambda i, n: seen.append((i, n)))  # fmt: skip
    assert np.array_equal(serial, parallel) and serial.shape == (9,)
    assert seen[-1] == (9, 9) and [i for i, _ in seen] == sorted({i for i, _ in seen})


def test_paired_bootstrap_and_threshold_metrics():
    y = np.repeat([0, 1], 6)
    score = np.linspace(0.1, 0.9, 12)
    boot = clf.bootstrap_aucs(y, np.stack([score, score]), n_boot=200, seed=0)
    assert np.all(boot[:, 0] == boot[:, 1])  # same resamples for every view
    metrics = clf.threshold_metrics(y, np.r_[0.2, 0.6, 0.1, 0.3, 0.4, 0.45, 0.7, 0.8, 0.2,
                                             0.9, 0.6, 0.55])  # fmt: skip
    assert metrics["sensitivity"] == 5 / 6 and metrics["specificity"] == 5 / 6
    assert clf.permutation_p(0.9, np.array([0.5, 0.95, 0.9, 0.3])) == 3 / 5


# ----------------------------------------------------------------------------- views
def test_band_power_shares_are_relative_and_named():
    freqs = np.arange(1, 46, 0.5)
    psd = np.ones((2, freqs.size))
    psd[1, (freqs >= 8) & (freqs < 13)] = 10.0  # a strong alpha on the second channel
    out = v.band_power(np.log10(psd), freqs, ["C3", "O1"])
    for channel in ("C3", "O1"):
        total = sum(10 ** out[f"{channel}_{band}"] for band in v.BANDS)
        assert np.isclose(total, 1.0)
    assert out["O1_alpha"] > out["C3_alpha"] and out["O1_theta"] < out["C3_theta"]


def test_line_noise_and_eye_power():
    freqs = np.arange(0.5, 62.5, 0.5)
    log_psd = np.zeros((2, freqs.size))
    assert abs(v.line_noise(log_psd, freqs)) < 1e-12
    log_psd[:, freqs == 50] = 2.0
    assert np.isclose(v.line_noise(log_psd, freqs), 2.0)
    assert np.isnan(v.eye_power(log_psd, freqs, ["C3", "C4"]))
    assert np.isfinite(v.eye_power(log_psd, freqs, ["Fp1", "C4"]))


def test_block_means_on_uneven_grids():
    volume = np.arange(7 * 8 * 9, dtype=float).reshape(7, 8, 9)
    out = v.block_means(volume, 4)
    assert out.shape == (2, 2, 3)
    assert np.isclose(out[1, 1, 2], volume[4:, 4:, 8:].mean())
    assert np.isclose(out[0, 0, 0], volume[:4, :4, :4].mean())
    z = np.random.default_rng(0).normal(size=(7, 8, 9, 10))
    summary = v.synth_summary(z, np.r_[False, [True] * 9], block=4)
    assert len(summary) == 2 * 2 * 2 * 3 and "b1_1_2_sd" in summary


def test_features_cached_by_an_earlier_version_give_no_views_and_a_warning(tmp_path, caplog):
    from bids_eeg2fmri.models.data import RunArrays
    from bids_eeg2fmri.workflows import views as wv

    run = RunArrays(name="sub-01_task-rest", subject="01", features=tmp_path / "f.npy",
                    features_info={"channels": ["C3"], "frequencies": [1.0]})  # fmt: skip
    assert wv.eeg_views(run) == {}
    assert "rerun with a new -w/--work-dir" in caplog.text


def test_weights_and_their_pattern_tell_a_suppressor_from_a_signal():
    """x0 = signal + distractor, x1 = distractor, x2 = noise; the label follows the
    signal. The weights use x1 to cancel the distractor (w1 about -w0); the Haufe pattern
    shows that only x0 carries the label (pattern[1] about 0)."""
    rng = np.random.default_rng(0)
    n = 400
    signal, distractor = rng.standard_normal(n), 2 * rng.standard_normal(n)
    y = (signal + 0.3 * rng.standard_normal(n) > 0).astype(int)
    x = np.column_stack([signal + distractor, distractor, rng.standard_normal(n)])
    protocol = clf.Protocol(n_folds=5, n_repeats=1, n_permutations=0, seed=0)
    weights, pattern, c = clf.weights_and_pattern(x, y, protocol, seed=1)
    assert c in protocol.cs and weights[0] > 0
    assert weights[1] < -0.5 * weights[0]  # the suppressor's weight is large
    assert abs(pattern[1]) < 0.3 * pattern[0] and abs(pattern[2]) < 0.3 * pattern[0]
    # the decision the weights give ranks participants as the fitted pipeline does
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    full = clf._probabilities(x, y, x, [c])[0]
    assert np.corrcoef(z @ weights, np.log(full / (1 - full)))[0, 1] > 0.999


def test_block_features_go_back_onto_every_voxel_of_their_block():
    from bids_eeg2fmri.workflows.classify_maps import block_maps

    shape, block = (5, 4, 3), 2  # blocks 3 x 2 x 2, the last ones partial
    names = ["b0_0_0_mean", "b2_1_1_mean", "b2_1_1_sd"]
    maps = block_maps(names, np.array([1.0, 2.0, 3.0]), shape, block)
    assert maps.shape == (*shape, 2)
    assert (maps[:2, :2, :2, 0] == 1).all() and maps[:2, :2, :2, 1].sum() == 0
    assert (maps[4, 2:, 2, 0] == 2).all() and (maps[4, 2:, 2, 1] == 3).all()
    assert maps.sum() == 8 * 1 + 2 * 2 + 2 * 3  # nothing else is set
    with pytest.raises(ValueError, match="'alpha' is not a synth block feature"):
        block_maps(["alpha"], np.array([1.0]), shape, block)


def test_broken_views_tables_are_refused_naming_the_file(tmp_path):
    from bids_eeg2fmri.workflows.views import read_views, write_views

    path = write_views(
        tmp_path / "sub-01_task-rest_desc-views_features.tsv",
        {"bandpower": {"Fp1_alpha": 0.5, "Fp1_beta": -1.0}},
        sources=[],
        model=None,
    )
    assert read_views(path) == {"bandpower": {"Fp1_alpha": 0.5, "Fp1_beta": -1.0}}
    text = path.read_text()
    for broken, message in [
        (text.encode("utf-8") + "é\n".encode("latin-1"), "not UTF-8 text"),
        (text + "bandpower\tFp1_theta\n", "line 4 has 2 column(s), the header 3"),
        (text + "bandpower\tFp1_theta\tlots\n", "line 4: value 'lots' is not a number"),
    ]:
        (path.write_bytes if isinstance(broken, bytes) else path.write_text)(broken)
        with pytest.raises(ValueError, match=re.escape(f"{path.name}: {message}")):
            read_views(path)

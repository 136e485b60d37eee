"""The original's classification heads in Keras (models/heads.py), on arrays."""

import numpy as np
import pytest

from bids_eeg2fmri.evaluation import classify as clf
from bids_eeg2fmri.models import heads


def _windows(effect: float, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """12 participants (6 positive), 20 windows of 30 features each; the positives'
    first three features shifted by ``effect``, every participant's by its own offset."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], 6)
    windows = []
    for label in y:
        w = rng.normal(size=(20, 30))
        w[:, :3] += effect * label + rng.normal(scale=0.5, size=3)
        windows.append(w)
    return windows, y


@pytest.mark.parametrize("kind", heads.HEADS)
def test_a_head_finds_a_strong_effect_out_of_fold_and_not_a_null_one(kind):
    protocol = clf.Protocol(n_folds=3, n_repeats=1)
    settings = heads.HeadSettings(kind, epochs=5)
    found = []
    for effect in (1.5, 0.0):
        windows, y = _windows(effect, seed=0)
        folds = clf.repeated_folds(y, protocol, seed=0)
        probability = heads.out_of_fold(windows, y, folds, settings, seed=1)
        assert probability.shape == (1, 12) and ((probability > 0) & (probability < 1)).all()
        found.append(clf.auc(y, probability.mean(axis=0)))
    # under the null, each participant's own offset (which a leak of its windows into
    # training would exploit) must not separate the classes: an AUC near chance
    assert found[0] > 0.9 and found[1] < 0.9, found


def test_the_fitted_head_is_linear_in_the_standardised_features():
    windows, y = _windows(1.5, seed=2)
    x = np.concatenate(windows)
    labels = np.repeat(y, 20)
    fitted = heads.fit_head(x, labels, np.repeat(np.arange(12), 20),
                            heads.HeadSettings("likelihood"), seed=0)  # fmt: skip
    assert fitted.weights.shape == (30,) and np.allclose(fitted.mean, x.mean(axis=0))
    # the effect's features carry the largest weights, towards the positive class
    assert fitted.weights[:3].min() > np.abs(fitted.weights[3:]).max()
    # the linear form is the Keras head's: same logits as its layers give
    _, project, head, mean, scale = heads.train_head(
        x, labels, np.repeat(np.arange(12), 20), heads.HeadSettings("likelihood"), seed=0
    )
    keras_logits = np.asarray(head(project(((x - mean) / scale).astype("float32"))))[:, 0]
    assert np.allclose(keras_logits, fitted.logits(x), atol=1e-4)
    logits = fitted.logits(x)
    assert np.isclose(fitted.probability(x[:20]), np.mean(1 / (1 + np.exp(-logits[:20]))))
    with pytest.raises(ValueError, match="one class only"):
        heads.fit_head(x, np.zeros(len(x)), labels, heads.HeadSettings("contrastive"), seed=0)
    with pytest.raises(ValueError, match="unknown head 'svm'"):
        heads.fit_head(x, labels, labels, heads.HeadSettings("svm"), seed=0)


def test_pairs_join_windows_of_different_participants_half_with_the_same_label():
    labels = np.repeat([0, 1], 40)
    owners = np.repeat(np.arange(8), 10)
    first, second, same = heads.pairs(labels, owners, 200, np.random.default_rng(0))
    assert (owners[first] != owners[second]).all()
    assert np.array_equal(same, (labels[first] == labels[second]).astype(float))
    assert same.mean() == 0.5 and np.array_equal(same[::2], np.ones(100))


def _synth_run(root, subject, data, meta):
    import json

    import nibabel as nib

    func = root / f"sub-{subject}" / "func"
    func.mkdir(parents=True)
    nib.save(nib.Nifti1Image(data, np.eye(4)), func / f"sub-{subject}_desc-synth_bold.nii.gz")
    (func / f"sub-{subject}_desc-synth_bold.json").write_text(json.dumps(meta))


def test_windows_are_the_blocks_of_every_volume_with_eeg_and_bold_runs_are_refused(tmp_path):
    from bids_eeg2fmri.errors import DataError, NoInputError
    from bids_eeg2fmri.workflows.classify_heads import synth_windows, window_names

    grid = ((4, 4, 2), np.eye(4), 2)
    data = np.zeros((4, 4, 2, 5), np.float32)
    data[:2, :2, :, :] = np.arange(5)  # block (0, 0, 0) holds the volume's index
    z = {"Units": "z-scores (no BOLD to take units from)", "VolumesWithoutEEG": [0, 3]}
    _synth_run(tmp_path, "01", data, z)
    (windows,) = synth_windows(tmp_path, ["01"], grid, "contrastive")
    assert windows.shape == (3, 4) and len(window_names(*grid[::2])) == 4
    assert np.array_equal(windows[:, 0], [1, 2, 4]) and not windows[:, 1:].any()

    cases = [
        ("02", {"Units": "those of the source BOLD"}, DataError, "needs EEG-only runs"),
        ("03", {**z, "VolumesWithoutEEG": [7]}, DataError, "not a list of volume indices"),
        ("04", {**z, "VolumesWithoutEEG": [0, 1, 2, 3, 4]}, NoInputError, "for sub-04"),
    ]
    for subject, meta, error, words in cases:
        _synth_run(tmp_path, subject, data, meta)
        with pytest.raises(error, match=words):
            synth_windows(tmp_path, [subject], grid, "contrastive")
    with pytest.raises(DataError, match="not the model's z-scores on its grid"):
        synth_windows(tmp_path, ["01"], ((4, 4, 3), np.eye(4), 2), "likelihood")
    with pytest.raises(NoInputError, match="records the model grid"):
        synth_windows(tmp_path, ["01"], None, "likelihood")

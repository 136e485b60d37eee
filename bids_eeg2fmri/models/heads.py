"""The original's classification heads on the synthesized view, in Keras (``group
--classify ... --classifier contrastive|likelihood``; ORIGINAL.md section 6).

Both are linear in a window's view (the block-averaged synthesized z-scores of one
volume, standardised on the training windows): a projection ``s = W z + a`` of
``units`` values and a logit ``v . s + c``. They differ in what shapes ``W`` besides the
logit's binary cross-entropy:

* ``contrastive``: pairs of windows of different participants, as many with the same
  label as with different ones; the element-wise distance ``D = |s1 - s2|`` is pulled to 0
  for a pair with the same label and to the margin ``m`` (pi, the original's) otherwise:
  ``mean_d[same * D + (1 - same) * |D - m|]`` plus the cross-entropy of both windows.
* ``likelihood``: every value of ``(s - pi/2) / ||s - pi/2||`` (per window) is a logit of
  the label (the original's separation entropy), plus the head's cross-entropy.

Choices made here where the original is silent or buggy: the norm is per window (the
original's is over the whole batch); the original's EEG encoder is not retrained (the
model stays as it was applied at the participant level: only the head learns); Adam
1e-3, batch 8 and 10 epochs are the original notebook's. A fitted head collapses to
one weight per feature and a bias (:class:`LinearHead`), so predicting needs no Keras.

TensorFlow is imported inside the fitting function only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

HEADS = ("contrastive", "likelihood")


@dataclass(frozen=True)
class HeadSettings:
    """How a head is trained."""

    kind: str
    units: int = 8
    margin: float = math.pi
    epochs: int = 10
    batch_size: int = 8
    learning_rate: float = 1e-3


@dataclass(frozen=True)
class LinearHead:
    """A fitted head: ``logit = ((x - mean) / scale) @ weights + bias`` per window."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float

    def logits(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, float) - self.mean) / self.scale) @ self.weights + self.bias

    def probability(self, x: np.ndarray) -> float:
        """The participant's probability: the mean over its windows ``x`` (n, features)."""
        return float(np.mean(1.0 / (1.0 + np.exp(-self.logits(x)))))


def pairs(
    labels: np.ndarray, owners: np.ndarray, n_pairs: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n_pairs`` pairs of windows (indices ``first``, ``second``) of different owners,
    alternately with the same label and with different ones (as far as both exist),
    and ``same`` (1.0 where the pair's labels agree)."""
    labels, owners = np.asarray(labels), np.asarray(owners)
    first = rng.integers(labels.size, size=n_pairs)
    second = np.empty(n_pairs, int)
    same = np.empty(n_pairs)
    for i, a in enumerate(first):
        want_same = i % 2 == 0
        match = (labels == labels[a]) if want_same else (labels != labels[a])
        candidates = np.flatnonzero(match & (owners != owners[a]))
        if candidates.size == 0:
            candidates = np.flatnonzero(owners != owners[a])
        second[i] = rng.choice(candidates)
        same[i] = float(labels[second[i]] == labels[a])
    return first, second, same


def fit_head(
    x: np.ndarray, labels: np.ndarray, owners: np.ndarray, settings: HeadSettings, *, seed: int
) -> LinearHead:
    """Train a head on windows ``x`` (n_windows, n_features) with the label of each and
    its participant (``owners``); returns its linear form.

    Raises
    ------
    ValueError
        An unknown ``settings.kind``, or windows of one class only.
    """
    _, project, head, mean, scale = train_head(x, labels, owners, settings, seed=seed)
    w, a_bias = (np.asarray(t, float) for t in project.get_weights())
    v, c_bias = (np.asarray(t, float) for t in head.get_weights())
    # logit = (z W + a) v + c = z (W v) + (a v + c)
    return LinearHead(mean, scale, (w @ v)[:, 0], float(a_bias @ v[:, 0] + c_bias[0]))


def train_head(
    x: np.ndarray, labels: np.ndarray, owners: np.ndarray, settings: HeadSettings, *, seed: int
):
    """The Keras side of :func:`fit_head`: ``(model, projection layer, logit layer,
    mean, scale)``; a window's logit is ``logit(projection((x - mean) / scale))``."""
    if settings.kind not in HEADS:
        raise ValueError(f"unknown head {settings.kind!r} (one of {', '.join(HEADS)})")
    labels = np.asarray(labels, float)
    if np.unique(labels).size < 2:
        raise ValueError("the training windows hold one class only")
    import keras
    from keras import layers, ops

    x = np.asarray(x, float)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    z = ((x - mean) / scale).astype("float32")
    keras.backend.clear_session()  # thousands of heads in a permutation test
    keras.utils.set_random_seed(seed)
    project = layers.Dense(settings.units, name="projection")
    head = layers.Dense(1, name="logit")
    bce = keras.losses.BinaryCrossentropy(from_logits=True)
    rng = np.random.default_rng(seed)
    y = labels.astype("float32")[:, None]
    if settings.kind == "contrastive":
        first_in = keras.Input((z.shape[1],))
        second_in = keras.Input((z.shape[1],))
        s1, s2 = project(first_in), project(second_in)
        distance = ops.abs(s1 - s2)
        model = keras.Model([first_in, second_in], [head(s1), head(s2), distance])
        margin = settings.margin

        def contrastive(same, d):
            return ops.mean(same * d + (1.0 - same) * ops.abs(d - margin), axis=-1)

        model.compile(
            keras.optimizers.Adam(settings.learning_rate), [bce, bce, contrastive],
            jit_compile=False,
        )  # fmt: skip
        # fresh pairs for every epoch, drawn at once: one pass over them all
        a, b, same = pairs(labels, owners, max(1, len(z) // 2) * settings.epochs, rng)
        model.fit(
            [z[a], z[b]], [y[a], y[b], same[:, None].astype("float32")],
            batch_size=settings.batch_size, epochs=1, verbose=0, shuffle=False,
        )  # fmt: skip
    else:
        window_in = keras.Input((z.shape[1],))
        s = project(window_in)
        centred = s - math.pi / 2
        spread = ops.sqrt(ops.sum(centred**2, axis=-1, keepdims=True) + 1e-12)
        model = keras.Model(window_in, [centred / spread, head(s)])
        model.compile(keras.optimizers.Adam(settings.learning_rate), [bce, bce], jit_compile=False)
        # every epoch a fresh order of the windows, drawn at once: one pass over them all
        order = np.concatenate([rng.permutation(len(z)) for _ in range(settings.epochs)])
        model.fit(
            z[order], [np.repeat(y[order], settings.units, axis=1), y[order]],
            batch_size=settings.batch_size, epochs=1, verbose=0, shuffle=False,
        )  # fmt: skip
    return model, project, head, mean, scale


def out_of_fold(
    windows: list[np.ndarray], y: np.ndarray, folds: np.ndarray, settings: HeadSettings, *,
    seed: int
) -> np.ndarray:  # fmt: skip
    """Out-of-fold probabilities (n_repeats, n_participants): in each fold, a head trained
    on the training participants' windows, each test participant's windows averaged.
    ``windows[j]`` holds participant j's windows (n_j, n_features)."""
    y = np.asarray(y)
    n_folds = int(folds.max()) + 1
    probability = np.empty(folds.shape)
    for r, fold in enumerate(folds):
        for k in range(n_folds):
            train = np.flatnonzero(fold != k)
            x = np.concatenate([windows[j] for j in train])
            labels = np.concatenate([np.full(len(windows[j]), y[j]) for j in train])
            owners = np.concatenate([np.full(len(windows[j]), j) for j in train])
            fitted = fit_head(x, labels, owners, settings, seed=seed + r * n_folds + k)
            for j in np.flatnonzero(fold == k):
                probability[r, j] = fitted.probability(windows[j])
    return probability


def permutation_aucs(
    windows: list[np.ndarray], y: np.ndarray, protocol, settings: HeadSettings, *, seed: int,
    progress=None,
) -> np.ndarray:  # fmt: skip
    """The AUC of the whole head pipeline (new folds, a head per fold) under
    ``protocol.n_permutations`` permutations of the labels across participants, drawn as
    evaluation/classify.py draws them. ``progress(i, n)`` after each when given."""
    from bids_eeg2fmri.evaluation import classify as clf

    draws = clf.permutation_draws(y, protocol.n_permutations, seed=seed)
    out = np.empty(len(draws))
    for i, (shuffled, sub) in enumerate(draws):
        folds = clf.repeated_folds(shuffled, protocol, seed=sub)
        probability = out_of_fold(windows, shuffled, folds, settings, seed=sub + 1)
        out[i] = clf.auc(shuffled, probability.mean(axis=0))
        if progress is not None:
            progress(i + 1, len(draws))
    return out

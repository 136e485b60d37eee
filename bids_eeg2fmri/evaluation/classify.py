"""Classifying participants from one feature set (a "view"), with a protocol a reviewer
accepts (CLASSIFICATION.md): the participant is the unit; repeated stratified K-fold;
scaling and the choice of the L2 penalty fitted inside each training fold (the penalty by
an inner stratified cross-validation on the training participants only); out-of-fold
probabilities averaged over repeats; AUC with a stratified bootstrap interval over
participants; a permutation p-value from the whole pipeline rerun on labels permuted
across participants.

The classifier is L2-penalised logistic regression with an unpenalised intercept,
minimising ``0.5 ||w||^2 + C * sum_i log(1 + exp(-s_i (w . x_i + b)))`` with
``s_i = +-1`` (scikit-learn's ``LogisticRegression`` objective). With far more features
than participants (a voxel map), the optimal ``w`` lies in the span of the standardised
training rows, so each fold fits in the coordinates of that span (from the Gram matrix):
the same solution, at the cost of the number of participants.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Inverse penalties tried by the inner cross-validation (the smallest wins ties).
DEFAULT_CS = (0.001, 0.01, 0.1, 1.0, 10.0)


@dataclass(frozen=True)
class Protocol:
    """How the folds, the penalty search and the statistics are run."""

    n_folds: int = 5
    n_repeats: int = 10
    inner_folds: int = 3
    cs: tuple[float, ...] = DEFAULT_CS
    n_bootstrap: int = 2000
    n_permutations: int = 1000
    seed: int = 0


def stratified_folds(y: np.ndarray, n_folds: int, rng: np.random.Generator) -> np.ndarray:
    """Fold index (0..n_folds-1) of each participant: each class shuffled, then dealt
    round-robin from a random starting fold, so every fold gets its share of each class.

    Raises ValueError when a class has fewer participants than folds.
    """
    y = np.asarray(y)
    fold = np.empty(y.size, int)
    start = int(rng.integers(n_folds))
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        if members.size < n_folds:
            raise ValueError(
                f"{members.size} participant(s) of one class for {n_folds} folds "
                "(need at least one per fold)"
            )
        fold[members] = (start + np.arange(members.size)) % n_folds
        start = (start + members.size) % n_folds
    return fold


def repeated_folds(y: np.ndarray, protocol: Protocol, *, seed: int) -> np.ndarray:
    """Fold of each participant in each repeat, shape (n_repeats, n_participants)."""
    rng = np.random.default_rng(seed)
    return np.stack([stratified_folds(y, protocol.n_folds, rng) for _ in range(protocol.n_repeats)])


# ----------------------------------------------------------------------------- one fold
def _standardised(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """``train`` and ``others`` scaled by ``train``'s mean and standard deviation."""
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return [(a - mean) / std for a in (train, *others)]


def _row_basis(z_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal basis (n_train, r) of the rows' Gram matrix and the root of its
    eigenvalues (r,), the null directions dropped."""
    values, vectors = np.linalg.eigh(z_train @ z_train.T)
    keep = values > values.max(initial=0.0) * 1e-10
    return vectors[:, keep], np.sqrt(values[keep])


def _embed(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Standardise on ``train``; coordinates of both in the orthonormal basis of the
    standardised training rows (shapes (n_train, r) and (n_test, r), r <= n_train - 1)."""
    z_train, z_test = _standardised(train, test)
    basis, root = _row_basis(z_train)
    return basis * root, (z_test @ z_train.T) @ basis / root


def fit_logistic(
    x: np.ndarray, y: np.ndarray, cs: np.ndarray, *, n_iter: int = 100
) -> tuple[np.ndarray, np.ndarray]:
    """L2 logistic regression for several ``C`` at once, by damped Newton steps.

    Parameters
    ----------
    x : ndarray, shape (n_samples, n_features)
    y : ndarray of {0, 1}, shape (n_samples,)
    cs : ndarray, shape (n_c,)
        Inverse penalty strengths.

    Returns
    -------
    w : ndarray, shape (n_c, n_features)
    b : ndarray, shape (n_c,)
    """
    cs = np.asarray(cs, float)
    n, d = x.shape
    design = np.hstack([x, np.ones((n, 1))])
    theta = np.zeros((cs.size, d + 1))
    ridge = np.ones(d + 1)
    ridge[-1] = 0.0  # the intercept is not penalised
    target = np.asarray(y, float)

    def objective(t: np.ndarray) -> np.ndarray:
        margin = design @ t.T  # (n, n_c)
        loss = np.logaddexp(0, margin) - target[:, None] * margin
        return 0.5 * np.sum(t[:, :-1] ** 2, axis=1) + cs * loss.sum(axis=0)

    value = objective(theta)
    for _ in range(n_iter):
        p = 1.0 / (1.0 + np.exp(-(design @ theta.T)))  # (n, n_c)
        grad = theta * ridge + cs[:, None] * ((p - target[:, None]).T @ design)
        weights = cs[:, None] * p.T * (1 - p.T)  # (n_c, n)
        hessian = (design.T[None] * weights[:, None, :]) @ design
        hessian += np.diag(ridge + 1e-10)[None]
        step = np.linalg.solve(hessian, grad[..., None])[..., 0]
        scale = np.ones(cs.size)
        for _ in range(30):  # backtrack where the step overshoots
            trial = objective(theta - scale[:, None] * step)
            worse = trial > value + 1e-12
            if not worse.any():
                break
            scale[worse] /= 2
        theta -= scale[:, None] * step
        new = objective(theta)
        done = np.all(np.abs(value - new) <= 1e-10 * (1 + np.abs(new)))
        value = new
        if done:
            break
    return theta[:, :-1], theta[:, -1]


def _probabilities(x_train, y_train, x_test, cs) -> np.ndarray:
    """P(positive) of ``x_test`` for each C, shape (n_c, n_test), fitted on ``x_train``."""
    e_train, e_test = _embed(x_train, x_test)
    w, b = fit_logistic(e_train, y_train, cs)
    return 1.0 / (1.0 + np.exp(-(e_test @ w.T + b).T))


def choose_c(x: np.ndarray, y: np.ndarray, protocol: Protocol, rng: np.random.Generator) -> float:
    """The C whose inner stratified cross-validation on ``x`` (training participants only)
    gives the highest AUC of the out-of-fold probabilities; the smallest C wins ties."""
    cs = np.asarray(protocol.cs, float)
    n_inner = min(protocol.inner_folds, int(np.bincount(y).min()))
    if cs.size == 1 or n_inner < 2:
        return float(cs.min())
    fold = stratified_folds(y, n_inner, rng)
    probs = np.empty((cs.size, y.size))
    for k in range(n_inner):
        test = fold == k
        probs[:, test] = _probabilities(x[~test], y[~test], x[test], cs)
    scores = [auc(y, p) for p in probs]
    return float(cs[int(np.argmax(np.round(scores, 12)))])


def weights_and_pattern(
    x: np.ndarray, y: np.ndarray, protocol: Protocol, *, seed: int
) -> tuple[np.ndarray, np.ndarray, float]:
    """The fold pipeline fitted on every participant, as maps over the features.

    Returns
    -------
    weights : ndarray, shape (n_features,)
        The classifier's weights on the standardised features (decision = z @ w + b).
    pattern : ndarray, shape (n_features,)
        Their activation pattern (Haufe et al. 2014): the covariance of each standardised
        feature with the decision, cov(z) w / var(z w). A feature that only cancels noise
        in others (a suppressor) has weight but no pattern.
    c : float
        The penalty chosen by the inner cross-validation on all participants.
    """
    x = np.asarray(x, float)
    c = choose_c(x, y, protocol, np.random.default_rng(seed))
    (z,) = _standardised(x)
    basis, root = _row_basis(z)
    if root.size == 0:
        zeros = np.zeros(x.shape[1])
        return zeros, zeros, c
    w_embedded, _ = fit_logistic(basis * root, y, np.array([c]))
    weights = z.T @ (basis / root) @ w_embedded[0]
    decision = z @ weights
    spread = decision.var()
    pattern = z.T @ (decision - decision.mean()) / len(z) / spread if spread > 0 else weights * 0
    return weights, pattern, c


def out_of_fold(x: np.ndarray, y: np.ndarray, folds: np.ndarray, protocol: Protocol, *,
                seed: int) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Out-of-fold probabilities and the penalty chosen in each fold.

    Parameters
    ----------
    x : ndarray, shape (n_participants, n_features)
    y : ndarray of {0, 1}, shape (n_participants,)
    folds : ndarray of int, shape (n_repeats, n_participants)
        From :func:`repeated_folds`.

    Returns
    -------
    probability : ndarray, shape (n_repeats, n_participants)
    chosen_c : ndarray, shape (n_repeats, n_folds)
    """
    rng = np.random.default_rng(seed)
    x = np.asarray(x, float)
    n_folds = int(folds.max()) + 1
    probability = np.empty(folds.shape)
    chosen = np.empty((folds.shape[0], n_folds))
    for r, fold in enumerate(folds):
        for k in range(n_folds):
            test = fold == k
            c = choose_c(x[~test], y[~test], protocol, rng)
            probability[r, test] = _probabilities(x[~test], y[~test], x[test], [c])[0]
            chosen[r, k] = c
    return probability, chosen


# ----------------------------------------------------------------------------- statistics
def auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve: the probability that a positive outscores a negative
    (ties count half), from the rank sum (Mann-Whitney U); NaN with one class only."""
    from scipy.stats import rankdata

    y = np.asarray(y).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def bootstrap_aucs(y: np.ndarray, scores: np.ndarray, *, n_boot: int, seed: int) -> np.ndarray:
    """AUC of each score on the same stratified resamples of participants (each class
    resampled with replacement to its own size).

    scores : ndarray, shape (n_scores, n_participants). Returns (n_boot, n_scores).
    """
    rng = np.random.default_rng(seed)
    y = np.asarray(y).astype(bool)
    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
    out = np.empty((n_boot, len(scores)))
    for i in range(n_boot):
        pick = np.concatenate([rng.choice(pos, pos.size), rng.choice(neg, neg.size)])
        out[i] = [auc(y[pick], s[pick]) for s in scores]
    return out


def interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of ``values`` (NaNs ignored)."""
    tail = (1 - level) / 2 * 100
    low, high = np.nanpercentile(values, [tail, 100 - tail])
    return float(low), float(high)


def threshold_metrics(y: np.ndarray, probability: np.ndarray, threshold: float = 0.5) -> dict:
    """Balanced accuracy, sensitivity and specificity of ``probability >= threshold``."""
    y = np.asarray(y).astype(bool)
    predicted = np.asarray(probability) >= threshold
    sensitivity = float(predicted[y].mean()) if y.any() else float("nan")
    specificity = float((~predicted[~y]).mean()) if (~y).any() else float("nan")
    return {
        "balanced_accuracy": (sensitivity + specificity) / 2,
        "sensitivity": sensitivity,
        "specificity": specificity,
    }


def permutation_aucs(
    x: np.ndarray, y: np.ndarray, protocol: Protocol, *, seed: int, progress=None,
    n_jobs: int = 1,
) -> np.ndarray:  # fmt: skip
    """AUC of the whole pipeline (new stratified folds, inner penalty search, repeats
    averaged) on ``protocol.n_permutations`` permutations of the labels across
    participants. ``progress(i, n)`` is called as permutations finish when given.

    The permutations and their seeds are drawn here, in order, so ``n_jobs`` worker
    processes (joblib) give the same values as one.
    """
    n = protocol.n_permutations
    draws = permutation_draws(y, n, seed=seed)
    if n_jobs <= 1 or n < 2:
        out = np.empty(n)
        for i, draw in enumerate(draws):
            out[i] = _permuted_auc(x, protocol, draw)
            if progress is not None:
                progress(i + 1, n)
        return out
    from joblib import Parallel, delayed

    size = max(1, -(-n // (4 * n_jobs)))  # a few batches per worker, for the progress
    batches = [draws[i : i + size] for i in range(0, n, size)]
    run = Parallel(n_jobs=n_jobs, return_as="generator")(
        delayed(_permuted_batch)(x, protocol, batch) for batch in batches
    )
    values: list[float] = []
    for found in run:
        values.extend(found)
        if progress is not None:
            progress(len(values), n)
    return np.asarray(values)


def permutation_draws(y: np.ndarray, n: int, *, seed: int) -> list[tuple[np.ndarray, int]]:
    """``n`` permutations of the labels across participants, each with the seed of its
    folds and fits."""
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n):
        shuffled = rng.permutation(y)
        draws.append((shuffled, int(rng.integers(2**31))))
    return draws


def _permuted_auc(x: np.ndarray, protocol: Protocol, draw: tuple[np.ndarray, int]) -> float:
    shuffled, sub = draw
    folds = repeated_folds(shuffled, protocol, seed=sub)
    probability, _ = out_of_fold(x, shuffled, folds, protocol, seed=sub + 1)
    return auc(shuffled, probability.mean(axis=0))


def _permuted_batch(x: np.ndarray, protocol: Protocol, batch: list) -> list[float]:
    return [_permuted_auc(x, protocol, draw) for draw in batch]


def permutation_p(observed: float, null: np.ndarray) -> float:
    """``(C + 1) / (n + 1)`` with C the null statistics at or above the observed one."""
    null = np.asarray(null, float)
    return float((np.sum(null >= observed - 1e-12) + 1) / (null.size + 1))

"""Baselines the synthesizer must beat: the mean training volume, and per-voxel ridge
regression on HRF-convolved EEG band power (plain functions on arrays, one small estimator).

Features come from :mod:`bids_eeg2fmri.signals.features`: ``features`` has shape
``(n_volumes + n_windows - 1, n_channels, n_freqs)`` and row ``t + n_windows - 1`` holds the
standardised log10 PSD of the TR-long EEG window that ends at the onset of volume ``t``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from bids_eeg2fmri.evaluation.metrics import voxelwise_pearson

#: Canonical EEG bands, Hz, each the half-open interval ``[lo, hi)``.
BANDS: dict[str, tuple[float, float]] = {
    "delta": (1.0, 4.0),
    "theta": (4.0, 8.0),
    "alpha": (8.0, 13.0),
    "beta": (13.0, 30.0),
    "gamma": (30.0, np.inf),
}

#: Length of the HRF kernel, s.
HRF_LENGTH = 32.0


def band_power(
    features: np.ndarray,
    frequencies: np.ndarray,
    bands: Mapping[str, tuple[float, float]] = BANDS,
) -> tuple[np.ndarray, list[str]]:
    """Mean feature over the frequency bins of each band.

    ``P[r, c, b] = mean over {f : lo_b <= f < hi_b} of features[r, c, f]``. With the cached
    features this is the mean standardised log10 PSD of the band (not log of the summed power).

    Parameters
    ----------
    features : ndarray, shape (n_rows, n_channels, n_freqs)
        NaN rows (no EEG) stay NaN.
    frequencies : ndarray, shape (n_freqs,)
        Hz, of the last axis of ``features``.
    bands : mapping of str to (float, float)
        Band name -> ``(lo, hi)`` in Hz. Bands without any bin are dropped.

    Returns
    -------
    power : ndarray, shape (n_rows, n_channels, n_bands), float64
    names : list of str
        The kept bands, in the order of ``bands``.
    """
    features = np.asarray(features)
    frequencies = np.asarray(frequencies, dtype=np.float64)
    if features.ndim != 3 or frequencies.shape != (features.shape[-1],):
        raise ValueError(
            f"features must be (n_rows, n_channels, n_freqs) and frequencies (n_freqs,); "
            f"received {features.shape} and {frequencies.shape}."
        )
    columns, names = [], []
    for name, (lo, hi) in bands.items():
        if not lo < hi:
            raise ValueError(f"band {name!r} must have lo < hi (Hz); received ({lo}, {hi}).")
        selected = (frequencies >= lo) & (frequencies < hi)
        if selected.any():
            columns.append(np.mean(features[..., selected], axis=-1, dtype=np.float64))
            names.append(name)
    if not names:
        raise ValueError(
            f"no band contains any of the frequencies {frequencies.min()}-{frequencies.max()} "
            f"Hz; received bands {dict(bands)}."
        )
    return np.stack(columns, axis=-1), names


def hrf_kernel(tr: float, *, time_length: float = HRF_LENGTH) -> np.ndarray:
    """Canonical (SPM) HRF for TR-long EEG windows, one sample per TR.

    ``h[k] = hrf((k + 1) TR) / sum_j hrf((j + 1) TR)`` for ``(k + 1) TR <= time_length``,
    where ``hrf`` is nilearn's ``spm_hrf`` (difference of gammas, peak near 5 s, undershoot
    near 15 s), read at finely sampled times (TR / 100) by linear interpolation. The delay
    ``(k + 1) TR`` is the mean time from a point of the window that ends at the onset of
    volume ``t - k`` to a point of the acquisition of volume ``t``; ``h[0]`` weights the
    volume's own window. (``spm_hrf(t_r=tr, oversampling=1)`` is not used: nilearn samples
    it on ``linspace(0, time_length, n)``, not on multiples of TR, and delays it by one
    sample, i.e. by a whole TR at that oversampling.)

    Parameters
    ----------
    tr : float
        Repetition time, s.
    time_length : float
        Support of the HRF, s.

    Returns
    -------
    ndarray, shape (floor(time_length / tr),), float64
        Sums to 1.
    """
    from nilearn.glm.first_level import spm_hrf

    if not tr > 0 or tr > time_length:
        raise ValueError(f"tr must be in (0, {time_length}] s; received {tr}.")
    oversampling = 100
    fine = spm_hrf(t_r=tr, oversampling=oversampling, time_length=time_length)
    fine_times = np.linspace(0.0, time_length, fine.size)  # nilearn's own time grid
    delays = tr * np.arange(1, int(np.floor(time_length / tr + 1e-9)) + 1)
    kernel = np.interp(delays, fine_times, fine)
    return kernel / kernel.sum()


def design_columns(
    channels: Sequence[str], band_names: Sequence[str], lags: Sequence[int]
) -> list[tuple[str, str, int]]:
    """Names of the columns of :func:`hrf_design`: ``(channel, band, lag)``, channel slowest,
    lag fastest (column ``(c n_bands + b) n_lags + l``)."""
    return [(c, b, int(lag)) for c in channels for b in band_names for lag in lags]


def hrf_design(
    power: np.ndarray, *, tr: float, n_windows: int, lags: Sequence[int] = (0, 1, 2)
) -> tuple[np.ndarray, np.ndarray]:
    """Design matrix of HRF-convolved band power, one row per BOLD volume.

    For every (channel, band) series ``p[r]`` over the feature rows (NaN set to 0),
    ``q[r] = sum_k h[k] p[r - k]`` (causal, zero before the first row; ``h`` from
    :func:`hrf_kernel`), and the column of lag ``l`` at volume ``t`` is
    ``q[t + n_windows - 1 - l]``: the convolved series delayed by ``l`` TRs, taken from the
    rows before the first volume when there are some, zero before the first row.

    Parameters
    ----------
    power : ndarray, shape (n_volumes + n_windows - 1, n_channels, n_bands)
        From :func:`band_power`; row ``t + n_windows - 1`` is the window ending at the onset
        of volume ``t``.
    tr : float
        Repetition time, s (the rows are one TR apart).
    n_windows : int
        The ``W`` of the features (rows before the first volume: ``W - 1``).
    lags : sequence of int
        Delays, in TRs (>= 0).

    Returns
    -------
    X : ndarray, shape (n_volumes, n_channels * n_bands * len(lags)), float64
        Columns ordered (channel, band, lag), lag fastest: see :func:`design_columns`.
    valid : ndarray of bool, shape (n_volumes,)
        False where the volume's own window (row ``t + n_windows - 1``) has a NaN.
    """
    from scipy.signal import lfilter

    power = np.asarray(power, dtype=np.float64)
    lags = [int(lag) for lag in lags]
    if power.ndim != 3:
        raise ValueError(
            f"power must be (n_rows, n_channels, n_bands); received shape {power.shape}."
        )
    if n_windows < 1 or power.shape[0] < n_windows:
        raise ValueError(
            f"power must have at least n_windows = {n_windows} >= 1 rows (n_volumes + "
            f"n_windows - 1); received {power.shape[0]}."
        )
    if not lags or min(lags) < 0:
        raise ValueError(f"lags must be non-negative integers (TRs); received {lags}.")
    n_rows, n_channels, n_bands = power.shape
    first = n_windows - 1
    missing = np.isnan(power)
    valid = ~missing[first:].any(axis=(1, 2))
    series = np.where(missing, 0.0, power).reshape(n_rows, n_channels * n_bands)
    convolved = lfilter(hrf_kernel(tr), [1.0], series, axis=0)
    n_volumes = n_rows - first
    X = np.zeros((n_volumes, n_channels * n_bands, len(lags)))
    for i, lag in enumerate(lags):
        rows = np.arange(n_volumes) + first - lag
        ok = rows >= 0
        X[ok, :, i] = convolved[rows[ok]]
    return X.reshape(n_volumes, -1), valid


class RidgeBaseline:
    """Per-voxel ridge regression with one shared, data-chosen regularisation.

    For standardised features ``Z = (X - x_mean_) / x_scale_`` and centred targets
    ``Y - mean(Y)``, ``coef_ = argmin_B ||Y_c - Z B||^2 + alpha ||B||^2``, solved for every
    alpha from one thin SVD ``Z = U diag(s) V^T``: ``B(alpha) = V diag(s / (s^2 + alpha))
    U^T Y_c``; ``intercept_ = mean(Y)``.

    Alpha is chosen once for all voxels:

    * with validation data, the alpha maximising the mean (over voxels with a finite value)
      voxelwise Pearson r between ``predict(X_val)`` and ``Y_val``;
    * with ``groups`` (e.g. the participant of each sample), the alpha maximising that mean r
      averaged over leave-one-group-out folds (standardisation and SVD refitted in each), so
      that the penalty is chosen for unseen groups, not for unseen samples of seen ones;
    * otherwise by generalised cross-validation. With ``f_i = s_i^2 / (s_i^2 + alpha)``,
      ``df = 1 + sum_i f_i`` (the 1 is the intercept), ``Q = U^T Y_c`` and, per voxel,
      ``RSS_v = ||Y_c,v||^2 - sum_i Q_iv^2 + sum_i (1 - f_i)^2 Q_iv^2``,
      ``GCV(alpha) = mean_v [ RSS_v / ||Y_c,v||^2 ] / (1 - df / n)^2`` over the voxels that
      are not constant (normalised so every voxel counts equally); ``inf`` where
      ``df >= n``. The alpha of smallest GCV wins.

    Parameters
    ----------
    alphas : sequence of float
        Candidate regularisation strengths (> 0), in units of the standardised features.

    Attributes
    ----------
    alpha_ : float
        The chosen alpha.
    scores_ : ndarray, shape (n_alphas,)
        Mean validation r (``"validation"``, ``"groups"``: mean over folds) or GCV per alpha.
    selection_ : str
        ``"validation"``, ``"groups"`` or ``"gcv"``.
    coef_ : ndarray, shape (n_features, n_voxels), float32
        Weights of the standardised features.
    intercept_ : ndarray, shape (n_voxels,), float32
    x_mean_, x_scale_ : ndarray, shape (n_features,), float64
        Training mean and standard deviation of the features (constant features: scale 1).
    """

    def __init__(self, alphas: Sequence[float] = (1e-1, 1, 10, 100, 1e3, 1e4, 1e5)):
        self.alphas = alphas

    def fit(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        X_val: np.ndarray | None = None,
        Y_val: np.ndarray | None = None,
        groups: np.ndarray | None = None,
    ) -> RidgeBaseline:
        """Fit on ``X`` (n_samples, n_features) and ``Y`` (n_samples, n_voxels); choose alpha
        on ``(X_val, Y_val)`` when given, else across ``groups`` (one label per sample, at
        least 2 distinct) when given, else by GCV. Returns self."""
        alphas = np.asarray(self.alphas, dtype=np.float64).reshape(-1)
        if alphas.size == 0 or not np.all(alphas > 0):
            raise ValueError(f"alphas must be positive numbers; received {self.alphas}.")
        X = self._check_pair(X, Y, "X", "Y")
        n, _ = X.shape
        if n < 3:
            raise ValueError(f"RidgeBaseline needs at least 3 training samples; received {n}.")
        if (X_val is None) != (Y_val is None):
            raise ValueError("pass both X_val and Y_val, or neither.")
        if groups is not None:
            if X_val is not None:
                raise ValueError("pass validation data or groups, not both.")
            groups = np.asarray(groups).reshape(-1)
            if groups.shape != (n,) or np.unique(groups).size < 2:
                raise ValueError(
                    f"groups must give one label per sample ({n}) with at least 2 distinct "
                    f"labels; received {groups.size} label(s), {np.unique(groups).size} distinct."
                )

        self.x_mean_, self.x_scale_, U, s, Vt = _standardised_svd(X)
        y_mean, Q, ss_total = _project_targets(U, Y)
        if groups is not None:
            folds = [
                _fold_scores(X, Y, groups != g, groups == g, alphas) for g in np.unique(groups)
            ]
            with np.errstate(invalid="ignore"):
                self.scores_ = np.nanmean(np.where(np.isfinite(folds), folds, np.nan), axis=0)
            self.selection_ = "groups"
            if not np.isfinite(self.scores_).any():
                raise ValueError("no group gives a finite correlation for any alpha.")
            best = int(np.nanargmax(self.scores_))
        elif X_val is not None:
            X_val = self._check_pair(X_val, Y_val, "X_val", "Y_val")
            if X_val.shape[1] != X.shape[1] or Y_val.shape[1] != Y.shape[1]:
                raise ValueError(
                    f"validation data must have {X.shape[1]} features and {Y.shape[1]} "
                    f"voxels like the training data; received X_val {X_val.shape} and "
                    f"Y_val {Y_val.shape}."
                )
            if X_val.shape[0] < 2:
                raise ValueError(
                    f"validation data need at least 2 samples; received {X_val.shape[0]}."
                )
            A = ((X_val - self.x_mean_) / self.x_scale_) @ Vt.T  # (n_val, k)
            self.scores_ = np.array([_mean_r(A, s / (s**2 + a), Q, Y_val) for a in alphas])
            self.selection_ = "validation"
            if not np.isfinite(self.scores_).any():
                raise ValueError(
                    "the validation targets give no finite correlation for any alpha (are "
                    "all validation voxel series constant?); fit without validation data "
                    "to choose alpha by GCV."
                )
            best = int(np.nanargmax(self.scores_))
        else:
            self.scores_ = _gcv(s, Q, ss_total, n, alphas)
            self.selection_ = "gcv"
            best = int(np.argmin(self.scores_))

        self.alpha_ = float(alphas[best])
        d = s / (s**2 + self.alpha_)
        self.coef_ = (Vt.T @ (d[:, None] * Q)).astype(np.float32)
        self.intercept_ = y_mean.astype(np.float32)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predictions, shape (n_samples, n_voxels), float32."""
        if not hasattr(self, "coef_"):
            raise ValueError("this RidgeBaseline is not fitted yet; call fit(X, Y) first.")
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.coef_.shape[0]:
            raise ValueError(
                f"X must be (n_samples, {self.coef_.shape[0]}); received shape {X.shape}."
            )
        Z = ((X - self.x_mean_) / self.x_scale_).astype(np.float32)
        return Z @ self.coef_ + self.intercept_

    @staticmethod
    def _check_pair(X: np.ndarray, Y: np.ndarray, x_name: str, y_name: str) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or np.ndim(Y) != 2 or X.shape[0] != np.shape(Y)[0] or 0 in X.shape[1:]:
            raise ValueError(
                f"{x_name} must be (n_samples, n_features) and {y_name} (n_samples, n_voxels) "
                f"with the same n_samples and n_features >= 1; received {X.shape} and "
                f"{np.shape(Y)}."
            )
        if not np.isfinite(X).all():
            raise ValueError(f"{x_name} has NaN or inf; drop the invalid samples first.")
        return X


def _standardised_svd(X: np.ndarray):
    """Feature means and scales (constant features: 1) and the thin SVD ``U, s, Vt`` of the
    standardised ``X``, without its null directions."""
    mean = X.mean(axis=0)
    std = X.std(axis=0)
    scale = np.where(std > 0, std, 1.0)
    Z = (X - mean) / scale
    U, s, Vt = np.linalg.svd(Z, full_matrices=False)
    keep = s > s.max() * max(Z.shape) * np.finfo(float).eps
    return mean, scale, U[:, keep], s[keep], Vt[keep]


def _fold_scores(
    X: np.ndarray, Y: np.ndarray, fit: np.ndarray, test: np.ndarray, alphas: np.ndarray
) -> np.ndarray:
    """Mean voxelwise r per alpha on the ``test`` rows of a ridge fitted on the ``fit`` rows
    (boolean masks); ``Y`` is read by voxel chunks, never copied whole."""
    mean, scale, U, s, Vt = _standardised_svd(X[fit])
    rows_fit, rows_test = np.flatnonzero(fit), np.flatnonzero(test)
    _, Q, _ = _project_targets(U, _Rows(Y, rows_fit))
    A = ((X[test] - mean) / scale) @ Vt.T
    return np.array([_mean_r(A, s / (s**2 + a), Q, _Rows(Y, rows_test)) for a in alphas])


class _Rows:
    """Some rows of a 2-D array, sliced by voxel chunks as ``view[:, part]`` without a copy
    of the whole."""

    def __init__(self, array, rows: np.ndarray):
        self.array, self.rows = array, rows
        self.shape = (rows.size, np.shape(array)[1])

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        rows, columns = key
        return np.asarray(self.array[self.rows[rows], columns])


def _chunks(n_voxels: int, n_samples: int) -> list[slice]:
    """Voxel slices whose float64 (n_samples, chunk) blocks take about 64 MB."""
    size = max(1, (8 << 20) // max(n_samples, 1))
    return [slice(i, min(i + size, n_voxels)) for i in range(0, n_voxels, size)]


def _project_targets(U: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voxel means, ``Q = U^T (Y - mean)`` (k, n_voxels) and ``||Y_c,v||^2``, voxel chunk by
    voxel chunk (``Y`` may be float32 and memory-mapped)."""
    n, n_voxels = np.shape(Y)
    y_mean = np.empty(n_voxels)
    Q = np.empty((U.shape[1], n_voxels))
    ss_total = np.empty(n_voxels)
    for part in _chunks(n_voxels, n):
        block = np.asarray(Y[:, part], dtype=np.float64)
        if not np.isfinite(block).all():
            raise ValueError("Y has NaN or inf; drop the invalid samples or voxels first.")
        y_mean[part] = block.mean(axis=0)
        block -= y_mean[part]
        Q[:, part] = U.T @ block
        ss_total[part] = np.sum(block**2, axis=0)
    return y_mean, Q, ss_total


def _mean_r(A: np.ndarray, d: np.ndarray, Q: np.ndarray, Y_val: np.ndarray) -> float:
    """Mean finite voxelwise r of ``A diag(d) Q`` against ``Y_val``, by voxel chunks."""
    total, count = 0.0, 0
    for part in _chunks(Q.shape[1], A.shape[0]):
        pred = A @ (d[:, None] * Q[:, part])
        r = voxelwise_pearson(pred.T, np.asarray(Y_val[:, part]).T)
        finite = np.isfinite(r)
        total += float(r[finite].sum())
        count += int(finite.sum())
    return total / count if count else np.nan


def _gcv(
    s: np.ndarray, Q: np.ndarray, ss_total: np.ndarray, n: int, alphas: np.ndarray
) -> np.ndarray:
    """Voxel-normalised generalised cross-validation per alpha (see :class:`RidgeBaseline`)."""
    varying = ss_total > 0
    if not varying.any():
        return np.zeros(alphas.size)  # constant targets: every alpha fits them exactly
    weights = Q[:, varying] ** 2 / ss_total[varying]  # (k, n_varying)
    explained = weights.sum(axis=0)  # fraction of each voxel's variance in span(U)
    scores = np.empty(alphas.size)
    for i, alpha in enumerate(alphas):
        f = s**2 / (s**2 + alpha)
        rss = 1.0 - explained + ((1.0 - f) ** 2) @ weights
        denom = 1.0 - (1.0 + f.sum()) / n
        scores[i] = np.mean(rss) / denom**2 if denom > 0 else np.inf
    return scores


def mean_volume(volumes_list: Sequence[np.ndarray]) -> np.ndarray:
    """Mean over time of all training volumes, accumulated run by run (no concatenation).

    ``M[v] = sum_runs sum_t V_run[v, t] / sum_runs n_t``.

    Parameters
    ----------
    volumes_list : sequence of ndarray, each shape (x, y, z, t_run)
        One per run, same spatial shape; may be memory-mapped (read in contiguous pieces:
        a volume at a time when Fortran-ordered, an x-slab at a time otherwise).

    Returns
    -------
    ndarray, shape (x, y, z), float64
    """
    if len(volumes_list) == 0:
        raise ValueError("mean_volume needs at least one (x, y, z, t) array; received none.")
    shape = np.shape(volumes_list[0])[:3]
    total = np.zeros(shape)
    count = 0
    for i, volumes in enumerate(volumes_list):
        if np.ndim(volumes) != 4 or np.shape(volumes)[:3] != shape:
            raise ValueError(
                f"every array must be (x, y, z, t) with spatial shape {shape}; array {i} has "
                f"shape {np.shape(volumes)}."
            )
        if isinstance(volumes, np.ndarray) and volumes.flags.f_contiguous:
            for t in range(volumes.shape[3]):  # contiguous volumes (e.g. NIfTI memory maps)
                total += volumes[..., t]
        else:
            for i in range(shape[0]):  # contiguous x-slabs of C-ordered arrays
                total[i] += np.sum(np.asarray(volumes[i]), axis=-1, dtype=np.float64)
        count += np.shape(volumes)[3]
    if count == 0:
        raise ValueError("mean_volume received only arrays with no volume (t = 0).")
    return total / count

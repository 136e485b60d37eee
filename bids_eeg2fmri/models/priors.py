"""Initial weights of the synthesizer's HRF path: the ridge baseline's prior (band power
of the EEG windows weighted by the canonical HRF) as two linear maps the training may move.

The model input of a volume holds ``W`` TR-long windows, oldest first (window ``W - 1`` ends
at the volume's onset: :mod:`bids_eeg2fmri.signals.features`), and ``F`` frequency bins.
The HRF path reads it as ``s[c, f] = sum_w x[c, f, w] a[w]`` with ``a`` from
:func:`hrf_window_weights`, then ``p[c, b] = sum_f s[c, f] M[f, b]`` with ``M`` from
:func:`band_matrix`: at initialisation, the band power of
:func:`bids_eeg2fmri.evaluation.baselines.band_power` convolved with the HRF of
:func:`bids_eeg2fmri.evaluation.baselines.hrf_kernel` (the ridge's lag-0 column, truncated
to the ``W`` windows).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from bids_eeg2fmri.evaluation.baselines import BANDS, hrf_kernel


def hrf_window_weights(tr: float, n_windows: int) -> np.ndarray:
    """Canonical HRF weights of the ``n_windows`` windows of a model input, oldest first.

    ``a[W - 1 - k] = h[k]`` for ``k < min(W, len(h))`` (``h`` = :func:`hrf_kernel` at
    ``tr``, summing to 1 over 32 s), 0 for windows beyond the HRF's support.

    Returns
    -------
    ndarray, shape (n_windows,), float64
    """
    if int(n_windows) < 1:
        raise ValueError(f"n_windows must be at least 1; received {n_windows}.")
    h = hrf_kernel(float(tr))
    weights = np.zeros(int(n_windows))
    n = min(int(n_windows), h.size)
    weights[int(n_windows) - n :] = h[:n][::-1]
    return weights


def band_matrix(
    frequencies: Sequence[float], bands: Mapping[str, tuple[float, float]] = BANDS
) -> tuple[np.ndarray, list[str]]:
    """The mean over each band's bins as a matrix: ``features @ M`` equals
    :func:`bids_eeg2fmri.evaluation.baselines.band_power` (bands without a bin dropped).

    Returns
    -------
    M : ndarray, shape (n_freqs, n_bands), float64
    names : list of str
    """
    hz = np.asarray(frequencies, dtype=np.float64)
    if hz.ndim != 1 or hz.size == 0:
        raise ValueError(f"frequencies must be a non-empty 1-D sequence; received {hz.shape}.")
    columns, names = [], []
    for name, (lo, hi) in bands.items():
        selected = (hz >= lo) & (hz < hi)
        if selected.any():
            columns.append(selected / selected.sum())
            names.append(name)
    if not names:
        raise ValueError(
            f"no band contains any of the frequencies {hz.min()}-{hz.max()} Hz; received "
            f"bands {dict(bands)}."
        )
    return np.stack(columns, axis=1), names

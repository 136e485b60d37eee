"""EEG features per BOLD volume: tapered spectra of TR-long windows, and model inputs.

For volume ``t`` with onset ``o_t`` (s, EEG clock), window ``t`` holds the ``N = round(TR *
sfreq)`` samples that end at ``o_t`` (the EEG recorded while the previous volume was
acquired). The model input of volume ``t`` is the ``W`` windows ending at the onsets of
volumes ``t - W + 1 ... t`` (oldest first); before the first volume the onsets are
extrapolated on the TR grid, so early volumes are usable when the EEG started early enough.

Spectrum of a window, per channel: Hann taper, one-sided power spectral density
(V^2/Hz, ``2 |FFT(x w)|^2 / (sfreq * sum(w^2))``), read at the FFT bins ``k * sfreq / N``
(= ``k / TR``) for ``k = 1 ... K`` with ``k / TR < max_freq``. The default ``max_freq`` of
62.5 Hz gives 134 bins at TR 2.16 s, the original model's grid (which used an untapered
magnitude spectrum instead). Features are ``log10(PSD)``, standardised per (channel,
frequency) over the windows of the run, so amplifier gains and 1/f offsets that differ
between participants do not reach the model.
"""

from __future__ import annotations

import numpy as np

DEFAULT_MAX_FREQ = 62.5
DEFAULT_N_WINDOWS = 10


def frequency_bins(tr: float, sfreq: float, max_freq: float = DEFAULT_MAX_FREQ) -> np.ndarray:
    """FFT bin indices ``k >= 1`` of a TR-long window whose frequency is below ``max_freq``
    (and below Nyquist)."""
    n = window_samples(tr, sfreq)
    top = min(max_freq, sfreq / 2)
    k = np.arange(1, n // 2 + 1)
    return k[k * sfreq / n < top]


def window_samples(tr: float, sfreq: float) -> int:
    """Samples in a TR-long window."""
    return int(round(tr * sfreq))


def window_ends(onsets: np.ndarray, *, tr: float, n_windows: int) -> np.ndarray:
    """End times (s) of every window the model inputs need: ``n_windows - 1`` extrapolated
    before the first onset, then one per volume. Shape (n_windows - 1 + n_volumes,)."""
    before = onsets[0] - tr * np.arange(n_windows - 1, 0, -1)
    return np.concatenate([before, onsets])


def window_spectra(
    eeg: np.ndarray,
    sfreq: float,
    ends: np.ndarray,
    *,
    n_samples: int,
    bins: np.ndarray,
    chunk: int = 128,
) -> np.ndarray:
    """Hann-tapered PSD of the windows of ``n_samples`` samples ending at ``ends`` (s).

    Parameters
    ----------
    eeg : ndarray, shape (n_channels, n_times)
    ends : ndarray, shape (n_windows,)
        Window end times in seconds from the first sample.
    bins : ndarray of int
        FFT bins to keep (see :func:`frequency_bins`).

    Returns
    -------
    ndarray, shape (n_windows, n_channels, len(bins)), float64
        V^2/Hz; NaN for windows that are not entirely inside the recording.
    """
    taper = np.hanning(n_samples)
    scale = 2.0 / (sfreq * np.sum(taper**2))
    stops = np.round(np.asarray(ends) * sfreq).astype(int)
    out = np.full((stops.size, eeg.shape[0], bins.size), np.nan)
    valid = np.flatnonzero((stops - n_samples >= 0) & (stops <= eeg.shape[1]))
    offsets = np.arange(-n_samples, 0)
    for start in range(0, valid.size, chunk):
        rows = valid[start : start + chunk]
        segments = eeg[:, stops[rows, None] + offsets]  # (n_channels, n_rows, n_samples)
        spectrum = np.fft.rfft(segments * taper, axis=-1)[..., bins]
        out[rows] = np.moveaxis(scale * np.abs(spectrum) ** 2, 0, 1)
    return out


def standardize(psd: np.ndarray) -> np.ndarray:
    """``log10(psd)`` z-scored per (channel, frequency) over the valid windows.

    Returns float32 of the same shape; NaN windows stay NaN.
    """
    logs = np.log10(np.maximum(psd, np.finfo(float).tiny))
    mean = np.nanmean(logs, axis=0, keepdims=True)
    std = np.nanstd(logs, axis=0, keepdims=True)
    return ((logs - mean) / np.where(std > 0, std, 1.0)).astype(np.float32)


def mean_spectrum(psd: np.ndarray) -> np.ndarray:
    """Mean PSD over the complete windows, shape (n_channels, n_freqs) (V^2/Hz), floored
    at the smallest positive float so that its log is finite."""
    return np.maximum(np.nanmean(psd, axis=0), np.finfo(float).tiny)


def model_inputs(features: np.ndarray, n_windows: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-volume model inputs as a view (no copy) and which volumes have full inputs.

    Parameters
    ----------
    features : ndarray, shape (n_windows - 1 + n_volumes, n_channels, n_freqs)
        From :func:`window_spectra` on :func:`window_ends`.

    Returns
    -------
    inputs : ndarray, shape (n_volumes, n_channels, n_freqs, n_windows)
        Oldest window first along the last axis.
    valid : ndarray of bool, shape (n_volumes,)
    """
    from numpy.lib.stride_tricks import sliding_window_view

    inputs = sliding_window_view(features, n_windows, axis=0)
    window_ok = ~np.isnan(features).any(axis=(1, 2))
    valid = sliding_window_view(window_ok, n_windows).all(axis=-1)
    return inputs, valid

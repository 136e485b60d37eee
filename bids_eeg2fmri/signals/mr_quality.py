"""How much MR artifact is in EEG: detection and quality measures on arrays.

Every function takes ``data`` of shape (n_channels, n_times) and ``sfreq`` in Hz and
returns one value per channel (MR_ARTIFACTS.md, "How quality is measured"):

* :func:`comb_contrast`: the gradient artifact repeats every volume, so its power sits at
  the harmonics ``k / TR`` of the volume rate. Welch spectrum with segments of 4 TR
  (harmonic ``k`` on bin ``4k``); contrast of harmonic ``k`` =
  ``P(4k) / mean(P(4k - 2), P(4k + 2))`` (the bins half-way to the next harmonics);
  the median over the harmonics below ``fmax``, in dB. EEG without the artifact is near
  0 dB; raw in-scanner EEG is tens of dB.
* :func:`harmonic_power_db`: ``10 log10`` of the mean power spectral density (V^2/Hz)
  within ``half_width`` Hz of harmonics 1..``n`` of ``f0`` (Welch, ``segment`` s).
* :func:`band_correlation`: Pearson r of two recordings band-passed to ``band`` Hz.
* :func:`band_power_error`: ``100 (P_x / P_clean - 1)`` per band, P the Welch band power.
* :func:`pulse_contrast`: RMS of the EEG averaged over heart beats (``lag`` s after each R
  peak) over the median RMS of the same average at as many random times.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

#: Bands of the band-power error (Hz), MR_ARTIFACTS.md.
BANDS = {"delta": (0.8, 4.0), "theta": (4.0, 8.0), "alpha": (8.0, 12.0), "beta": (12.0, 24.0)}
#: Contrast (dB) above which the gradient artifact counts as present.
GRADIENT_PRESENT_DB = 3.0
#: Beat-locked over random-time RMS above which the pulse artifact counts as present.
PULSE_PRESENT_RATIO = 3.0


def welch(data: np.ndarray, sfreq: float, nperseg: int) -> tuple[np.ndarray, np.ndarray]:
    """One-sided Welch PSD (V^2/Hz): periodic Hann segments of ``nperseg`` samples, half
    overlapping, each demeaned; as ``scipy.signal.welch`` but a segment at a time (memory
    and time stay small on long multichannel data).

    Returns
    -------
    freqs : ndarray, shape (nperseg // 2 + 1,)
    psd : ndarray, shape (n_channels, nperseg // 2 + 1)
    """
    from scipy import fft

    data = np.atleast_2d(data)
    nperseg = int(min(nperseg, data.shape[-1]))
    step = max(1, nperseg // 2)
    window = signal.get_window("hann", nperseg)
    total = np.zeros((data.shape[0], nperseg // 2 + 1))
    starts = range(0, data.shape[-1] - nperseg + 1, step)
    for start in starts:
        segment = data[:, start : start + nperseg]
        segment = (segment - segment.mean(axis=-1, keepdims=True)) * window
        total += np.abs(fft.rfft(segment, axis=-1)) ** 2
    psd = total / (len(starts) * sfreq * np.sum(window**2))
    psd[:, 1 : (nperseg + 1) // 2] *= 2.0  # one-sided: all but DC (and Nyquist when even)
    return np.fft.rfftfreq(nperseg, 1.0 / sfreq), psd


_welch = welch


def comb_contrast(data: np.ndarray, sfreq: float, *, tr: float, fmax: float = 250.0) -> np.ndarray:
    """Median contrast (dB) of the power at the volume harmonics ``k / tr`` over the
    power half-way between them, per channel. NaN if the data are shorter than 8 TR."""
    nperseg = int(round(4 * tr * sfreq))
    if data.shape[-1] < 2 * nperseg:
        return np.full(data.shape[0], np.nan)
    freqs, psd = _welch(data, sfreq, nperseg)
    step = freqs[1]
    top = min(fmax, 0.45 * sfreq)
    k = np.arange(1, int(top * tr) + 1)
    centre = np.round(k / tr / step).astype(int)
    ok = centre + 2 < freqs.size
    centre = centre[ok]
    if centre.size == 0:
        return np.full(data.shape[0], np.nan)
    tiny = np.finfo(float).tiny
    on = psd[:, centre]
    off = 0.5 * (psd[:, centre - 2] + psd[:, centre + 2])
    return np.median(10 * np.log10(np.maximum(on, tiny) / np.maximum(off, tiny)), axis=1)


def harmonic_power_db(
    data: np.ndarray,
    sfreq: float,
    *,
    f0: float,
    n_harmonics: int = 5,
    half_width: float = 0.5,
    segment: float = 4.0,
) -> np.ndarray:
    """``10 log10`` of the mean PSD within ``half_width`` Hz of harmonics 1..n of ``f0``
    (below Nyquist), per channel. NaN when no harmonic is below Nyquist."""
    freqs, psd = _welch(data, sfreq, int(round(segment * sfreq)))
    near = np.zeros(freqs.size, bool)
    for k in range(1, n_harmonics + 1):
        if k * f0 < sfreq / 2:
            near |= np.abs(freqs - k * f0) <= half_width + 1e-9
    if not near.any():
        return np.full(data.shape[0], np.nan)
    return 10 * np.log10(np.maximum(psd[:, near].mean(axis=1), np.finfo(float).tiny))


def band_correlation(
    data: np.ndarray, clean: np.ndarray, sfreq: float, *, band=(1.0, 45.0)
) -> np.ndarray:
    """Pearson r per channel of ``data`` and ``clean`` band-passed to ``band`` (4th-order
    Butterworth, zero phase)."""
    sos = signal.butter(4, band, btype="bandpass", fs=sfreq, output="sos")
    a = signal.sosfiltfilt(sos, data, axis=-1)
    b = signal.sosfiltfilt(sos, clean, axis=-1)
    a -= a.mean(axis=-1, keepdims=True)
    b -= b.mean(axis=-1, keepdims=True)
    denominator = np.sqrt(np.sum(a * a, axis=-1) * np.sum(b * b, axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, np.sum(a * b, axis=-1) / denominator, np.nan)


def band_power_error(
    data: np.ndarray, clean: np.ndarray, sfreq: float, *, bands=None, segment: float = 4.0
) -> dict[str, np.ndarray]:
    """Relative band-power error (%) per band and channel: ``100 (P / P_clean - 1)``."""
    bands = BANDS if bands is None else bands
    nperseg = int(round(segment * sfreq))
    freqs, p_data = _welch(data, sfreq, nperseg)
    _, p_clean = _welch(clean, sfreq, nperseg)
    errors = {}
    for name, (lo, hi) in bands.items():
        sel = (freqs >= lo) & (freqs < hi)
        ref = p_clean[:, sel].sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            errors[name] = np.where(ref > 0, 100 * (p_data[:, sel].sum(axis=1) / ref - 1), np.nan)
    return errors


def pulse_contrast(
    data: np.ndarray,
    sfreq: float,
    r_peaks: np.ndarray,
    *,
    lag: tuple[float, float] = (0.05, 0.65),
    n_surrogates: int = 20,
    seed: int = 0,
) -> np.ndarray:
    """Beat-locked average RMS over random-time average RMS, per channel.

    ``r_peaks`` in seconds. About 1 without a pulse artifact (or with too few beats to
    tell); several times more with one. NaN with fewer than 10 beats inside the data.
    """
    start, stop = int(round(lag[0] * sfreq)), int(round(lag[1] * sfreq))
    beats = np.round(np.asarray(r_peaks) * sfreq).astype(int)
    beats = beats[(beats + start >= 0) & (beats + stop <= data.shape[-1])]
    if beats.size < 10:
        return np.full(data.shape[0], np.nan)
    centred = data - data.mean(axis=-1, keepdims=True)
    offsets = np.arange(start, stop)

    def average_rms(onsets):
        mean = centred[:, onsets[:, None] + offsets[None, :]].mean(axis=1)
        return np.sqrt(np.mean(mean**2, axis=-1))

    locked = average_rms(beats)
    rng = np.random.default_rng(seed)
    low, high = max(0, -start), data.shape[-1] - stop
    surrogate = np.median(
        [average_rms(rng.integers(low, high, beats.size)) for _ in range(n_surrogates)], axis=0
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(surrogate > 0, locked / surrogate, np.nan)

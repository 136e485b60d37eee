"""Signal generators of the simulator: pure functions on arrays (no I/O, no MNE).

Conventions: ``sfreq`` in Hz, times in seconds, ``rng`` a ``numpy.random.Generator``.
"""

from __future__ import annotations

import numpy as np
from scipy import signal


def slow_amplitude(
    rng: np.random.Generator, n_times: int, sfreq: float, *, cutoff: float, depth: float
) -> np.ndarray:
    """A positive, slowly fluctuating amplitude: ``exp(depth * z(t))``.

    ``z`` is white noise low-passed at ``cutoff`` Hz (4th-order Butterworth, zero phase)
    and scaled to unit variance, so ``log(amplitude)`` has standard deviation ``depth``.

    Returns
    -------
    ndarray, shape (n_times,)
    """
    sos = signal.butter(4, cutoff, btype="lowpass", fs=sfreq, output="sos")
    z = signal.sosfiltfilt(sos, rng.standard_normal(n_times))
    z = (z - z.mean()) / z.std()
    return np.exp(depth * z)


def band_limited_noise(
    rng: np.random.Generator, n_times: int, sfreq: float, band: tuple[float, float]
) -> np.ndarray:
    """Gaussian noise band-passed to ``band`` (Hz), unit root-mean-square.

    Returns
    -------
    ndarray, shape (n_times,)
    """
    sos = signal.butter(4, band, btype="bandpass", fs=sfreq, output="sos")
    x = signal.sosfiltfilt(sos, rng.standard_normal(n_times))
    return x / np.sqrt(np.mean(x**2))


def pink_noise(
    rng: np.random.Generator, n_signals: int, n_times: int, sfreq: float, *, fmin: float = 0.5
) -> np.ndarray:
    """1/f ("pink") noise: power spectral density proportional to 1/f above ``fmin``.

    Shaped in the frequency domain; each signal has zero mean and unit variance.

    Returns
    -------
    ndarray, shape (n_signals, n_times)
    """
    freqs = np.fft.rfftfreq(n_times, 1.0 / sfreq)
    spectrum = rng.standard_normal((n_signals, freqs.size)) + 1j * rng.standard_normal(
        (n_signals, freqs.size)
    )
    spectrum /= np.sqrt(np.maximum(freqs, fmin))
    spectrum[:, 0] = 0.0
    x = np.fft.irfft(spectrum, n=n_times, axis=-1)
    x -= x.mean(axis=-1, keepdims=True)
    return x / x.std(axis=-1, keepdims=True)


def ecg_trace(
    rng: np.random.Generator, n_times: int, sfreq: float, *, heart_rate: float = 65.0
) -> np.ndarray:
    """A schematic electrocardiogram in volts (P, QRS and T waves as Gaussians).

    Beat-to-beat intervals vary by about 5 % around ``60 / heart_rate`` seconds.

    Returns
    -------
    ndarray, shape (n_times,)
    """
    #: (delay after the R peak in s, width in s, amplitude in mV) of P, Q, R, S, T
    waves = (
        (-0.2, 0.025, 0.15),
        (-0.03, 0.01, -0.1),
        (0.0, 0.012, 1.0),
        (0.03, 0.01, -0.25),
        (0.3, 0.05, 0.3),
    )
    t = np.arange(-0.35, 0.55, 1.0 / sfreq)
    template = sum(a * np.exp(-0.5 * ((t - d) / w) ** 2) for d, w, a in waves) * 1e-3
    trace = np.zeros(n_times + template.size)
    period = 60.0 / heart_rate
    beat = rng.uniform(0, period)
    while beat * sfreq < n_times:
        start = int(round(beat * sfreq))
        trace[start : start + template.size] += template
        beat += period * (1 + 0.05 * rng.standard_normal())
    offset = int(round(0.35 * sfreq))
    return trace[offset : offset + n_times]


def hrf_regressor(
    drive: np.ndarray, rate: float, sample_times: np.ndarray, *, start: float = 0.0
) -> np.ndarray:
    """Convolve ``drive`` with the canonical (SPM) HRF and sample it at ``sample_times``.

    Parameters
    ----------
    drive
        Neural drive sampled at ``rate`` Hz, shape (n,); its first sample is at ``start`` s.
    rate
        Sampling rate of ``drive`` in Hz.
    sample_times
        Times in seconds (same clock as ``start``) at which to read the response.

    Returns
    -------
    ndarray, shape (len(sample_times),)
        The haemodynamic response (HRF normalised to unit sum), linearly interpolated.
    """
    from nilearn.glm.first_level import spm_hrf

    hrf = spm_hrf(1.0 / rate, oversampling=1)
    response = np.convolve(drive, hrf)[: drive.size]
    grid = start + np.arange(drive.size) / rate
    return np.interp(sample_times, grid, response)


def zscore(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Standardise to zero mean and unit variance along ``axis``."""
    x = np.asarray(x, dtype=float)
    return (x - x.mean(axis=axis, keepdims=True)) / x.std(axis=axis, keepdims=True)


def ar1_process(innovations: np.ndarray, phi: float) -> np.ndarray:
    """Stationary AR(1) series along the last axis from unit-variance innovations.

    ``x[0] = e[0]``, ``x[t] = phi * x[t-1] + sqrt(1 - phi**2) * e[t]``: every ``x[t]`` has
    the variance of the innovations.
    """
    e = np.asarray(innovations)
    zi = phi * e[..., :1]  # filter state that continues from x[0] = e[0]
    x, _ = signal.lfilter([np.sqrt(1 - phi**2)], [1.0, -phi], e[..., 1:], axis=-1, zi=zi)
    return np.concatenate([e[..., :1], x], axis=-1)


def slow_drift(rng: np.random.Generator, n_volumes: int, tr: float, *, period: float = 128.0):
    """Scanner drift: a random combination of DCT regressors slower than ``period`` s.

    Returns
    -------
    ndarray, shape (n_volumes,)
        Zero mean, unit variance (a straight line when the run is shorter than ``period``).
    """
    order = max(1, int(np.floor(2 * n_volumes * tr / period)))
    t = (np.arange(n_volumes) + 0.5) / n_volumes
    basis = np.cos(np.pi * np.outer(np.arange(1, order + 1), t))
    drift = rng.standard_normal(order) @ basis
    return zscore(drift)

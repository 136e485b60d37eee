"""MR artifacts of EEG recorded inside the scanner: pure functions on arrays (no I/O).

Two artifacts (MR_ARTIFACTS.md), each made hard enough that a perfectly periodic
template would fail:

* **gradient** (imaging) artifact: every slice of every volume induces the same few
  band-limited pulses (derivative-of-Gaussian ramps and an EPI read-out burst) on three
  gradient axes; each channel mixes the axes with its own weights (so shape and size vary
  over the scalp) and scales them to 20-50 times its EEG's standard deviation. The scanner
  runs on its own clock: volumes start every ``TR * (1 + drift)`` seconds of the EEG clock
  with a little jitter, slices every ``slice_period`` (not a whole number of samples),
  a gap closes each volume, each slice position has its own small gain, the amplitude
  follows slow head motion, and a few volumes before the first marked one make artifacts
  without a marker. Markers fall on the first EEG sample at or after each onset.
* **pulse** (ballistocardiogram) artifact: heart beats with heart-rate variability
  (respiratory sinus arrhythmia, slow drift, beat-to-beat noise); an ECG whose beats vary
  in size and T wave; on the EEG channels a mixture of three temporal waveforms starting
  about 0.2 s after each R peak, with a spatial pattern per waveform and beat-to-beat
  variation of delay, size and mixture.

Conventions: ``sfreq`` in Hz, times in seconds on the EEG clock (0 = first sample),
``rng`` a ``numpy.random.Generator``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Artifacts the simulator can add (``--mr-artifacts``).
MR_ARTIFACT_KINDS = ("gradient", "pulse")


@dataclass(frozen=True)
class ScannerTiming:
    """When the scanner acquired each volume and slice, on the EEG clock.

    Attributes
    ----------
    volume_onsets : ndarray, shape (n_unmarked + n_marked,)
        True (continuous) onsets in seconds, the unmarked volumes first.
    slice_offsets : ndarray, shape (n_slices,)
        Acquisition time of the k-th acquired slice after its volume's onset (s, scanner
        clock scaled to the EEG clock).
    n_unmarked : int
        Volumes before the first marked one (artifacts without a marker).
    """

    volume_onsets: np.ndarray
    slice_offsets: np.ndarray
    n_unmarked: int

    @property
    def slice_period(self) -> float:
        return float(self.slice_offsets[1] - self.slice_offsets[0])

    def marked_onsets(self) -> np.ndarray:
        """True onsets of the marked volumes (s)."""
        return self.volume_onsets[self.n_unmarked :]

    def marker_samples(self, sfreq: float) -> np.ndarray:
        """EEG samples of the volume markers: the first sample at or after each onset."""
        return np.ceil(self.marked_onsets() * sfreq - 1e-9).astype(np.int64)

    def slice_marker_samples(self, sfreq: float) -> np.ndarray:
        """EEG samples of a marker at every slice of every marked volume."""
        onsets = self.marked_onsets()[:, None] + self.slice_offsets[None, :]
        return np.ceil(onsets.ravel() * sfreq - 1e-9).astype(np.int64)


def scanner_timing(
    rng: np.random.Generator,
    *,
    first_marked: float,
    n_marked: int,
    n_unmarked: int,
    tr: float,
    n_slices: int,
    drift_ppm: float,
    jitter_s: float,
    acquisition_fraction: float = 0.985,
) -> ScannerTiming:
    """Volume and slice onsets of a run whose first marked volume starts at ``first_marked``.

    The scanner's TR measured on the EEG clock is ``tr * (1 + drift_ppm * 1e-6)``; the
    slices of a volume fill ``acquisition_fraction`` of it (the rest is the gap before the
    next volume); every volume onset gets Gaussian jitter of ``jitter_s`` seconds.
    """
    scanner_tr = tr * (1.0 + drift_ppm * 1e-6)
    index = np.arange(-n_unmarked, n_marked)
    onsets = first_marked + index * scanner_tr + jitter_s * rng.standard_normal(index.size)
    onsets[n_unmarked] = first_marked  # the first marker's onset is the one asked for
    period = scanner_tr * acquisition_fraction / n_slices
    return ScannerTiming(onsets, period * np.arange(n_slices), n_unmarked)


def interleaved_slice_timing(timing: ScannerTiming) -> list[float]:
    """BIDS ``SliceTiming`` (s, per slice index) of an interleaved ascending acquisition:
    slices 0, 2, 4, ... first, then 1, 3, 5, ..."""
    n = timing.slice_offsets.size
    order = [*range(0, n, 2), *range(1, n, 2)]
    times = np.empty(n)
    times[order] = timing.slice_offsets
    return [round(float(t), 6) for t in times]


def _slice_pulses(rng: np.random.Generator, period: float, sfreq: float, n_axes: int = 3):
    """Per axis, the pulses of one slice: (centre in s, width in s, amplitude, kind).

    ``kind`` 0: derivative of a Gaussian (a gradient ramp); 1: an oscillating read-out
    burst at ``readout`` Hz. Widths are at least 1.5 samples, so that the waveform is
    band-limited below Nyquist at any sampling rate.
    """
    min_width = 1.5 / sfreq
    readout = min(800.0, 0.3 * sfreq)
    axes = []
    for _ in range(n_axes):
        pulses = []
        for _k in range(6):
            centre = period * rng.uniform(0.08, 0.55)
            width = max(min_width, period * rng.uniform(0.004, 0.015))
            pulses.append((centre, width, rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.0), 0))
        burst_width = max(3 * min_width, 0.12 * period)
        pulses.append((0.72 * period, burst_width, rng.uniform(0.3, 0.8), 1))
        axes.append(pulses)
    return axes, readout


def _axis_waveform(tau: np.ndarray, pulses, readout: float) -> np.ndarray:
    """One gradient axis at ``tau`` seconds after the start of the current slice."""
    out = np.zeros_like(tau)
    for centre, width, amplitude, kind in pulses:
        x = (tau - centre) / width
        envelope = np.exp(-0.5 * x * x)
        if kind == 0:
            out += amplitude * (-x) * envelope
        else:
            out += amplitude * envelope * np.sin(2 * np.pi * readout * (tau - centre))
    return out


def gradient_artifact(
    rng: np.random.Generator,
    timing: ScannerTiming,
    *,
    n_times: int,
    sfreq: float,
    channel_positions: np.ndarray,
    channel_std: np.ndarray,
    scale_range: tuple[float, float] = (20.0, 50.0),
    motion: float = 0.05,
    chunk: int = 1 << 18,
) -> np.ndarray:
    """The gradient artifact of every channel, in volts.

    Parameters
    ----------
    timing
        From :func:`scanner_timing`; every volume in it makes an artifact.
    channel_positions : ndarray, shape (n_channels, 3)
        Electrode positions (any unit; only directions and relative sizes matter).
    channel_std : ndarray, shape (n_channels,)
        Standard deviation of each channel's clean signal (V): the artifact's RMS over
        the scan is ``scale * channel_std`` with ``scale`` drawn from ``scale_range``.
    motion
        Standard deviation of the slow relative change (head motion) of each channel's
        artifact size and of each axis's share in it (its shape).

    Returns
    -------
    ndarray, shape (n_channels, n_times), float64
    """
    n_channels = channel_positions.shape[0]
    period = timing.slice_period
    axes, readout = _slice_pulses(rng, period, sfreq)
    slice_gain = 1.0 + 0.05 * rng.standard_normal(timing.slice_offsets.size)
    positions = np.asarray(channel_positions, float)
    norms = np.linalg.norm(positions, axis=1, keepdims=True)
    positions = positions / np.where(norms > 0, norms, 1.0)
    mixing = positions + 0.4 * rng.standard_normal((n_channels, 3))  # (n_channels, 3)

    # slow head motion, sampled per volume: the size of each channel's artifact (a shared
    # and an own component) and the mixture of the three axes (its shape) drift
    n_vol = timing.volume_onsets.size
    shared = _slow(rng, n_vol, 1)[0]
    own = _slow(rng, n_vol, n_channels)
    gain_per_volume = 1.0 + motion * (0.7 * shared[None] + 0.7 * own)
    axis_drift = motion * _slow(rng, n_vol, 3 * n_channels).reshape(n_channels, 3, n_vol)

    times = np.arange(n_times) / sfreq
    starts = timing.volume_onsets
    scanner_tr = float(np.median(np.diff(starts))) if starts.size > 1 else 1.0
    waveform = np.zeros((3, n_times))
    for begin in range(0, n_times, chunk):
        t = times[begin : begin + chunk]
        volume = np.searchsorted(starts, t, side="right") - 1
        inside = (volume >= 0) & (volume < n_vol)
        volume = np.clip(volume, 0, n_vol - 1)
        since = t - starts[volume]
        slice_index = np.floor(since / period).astype(int)
        inside &= (since < scanner_tr) & (slice_index < timing.slice_offsets.size)
        slice_index = np.clip(slice_index, 0, timing.slice_offsets.size - 1)
        tau = since - slice_index * period
        gain = np.where(inside, slice_gain[slice_index], 0.0)
        for a, pulses in enumerate(axes):
            waveform[a, begin : begin + chunk] = gain * _axis_waveform(tau, pulses, readout)

    scanning = (times >= starts[0]) & (times < starts[-1] + scanner_tr)
    scales = rng.uniform(*scale_range, n_channels)
    artifact = np.empty((n_channels, n_times))
    for c in range(n_channels):
        row = artifact[c]
        row[:] = 0.0
        for a in range(3):
            weight = mixing[c, a] * (1.0 + np.interp(times, starts, axis_drift[c, a]))
            row += weight * waveform[a]
        rms = np.sqrt(np.mean(row[scanning] ** 2)) if scanning.any() else 1.0
        row *= scales[c] * channel_std[c] / max(rms, 1e-30)
        row *= np.interp(times, starts, gain_per_volume[c])
        row[~scanning] = 0.0
    return artifact


def _slow(rng: np.random.Generator, n: int, n_signals: int) -> np.ndarray:
    """Unit-variance signals that change over about ten samples (volumes)."""
    x = rng.standard_normal((n_signals, n + 20))
    kernel = np.hanning(11)
    x = np.apply_along_axis(lambda v: np.convolve(v, kernel / kernel.sum(), "same"), 1, x)
    x = x[:, 10 : 10 + n]
    x = x - x.mean(axis=1, keepdims=True)
    std = x.std(axis=1, keepdims=True)
    return x / np.where(std > 0, std, 1.0)


# ----------------------------------------------------------------------------- pulse
def heartbeats(
    rng: np.random.Generator,
    duration: float,
    *,
    heart_rate: float = 65.0,
    respiration_hz: float = 0.25,
) -> np.ndarray:
    """R-peak times (s) in ``[0, duration)`` with heart-rate variability.

    Each interval is ``60 / heart_rate`` times ``1 + 0.04 sin(2 pi f_resp t)`` (respiratory
    sinus arrhythmia) ``+ 0.05`` times a slow unit-variance drift ``+ 0.02`` white noise.
    """
    period = 60.0 / heart_rate
    n_max = int(duration / period * 1.5) + 4
    drift = _slow(rng, n_max, 1)[0]
    phase = rng.uniform(0, 2 * np.pi)
    beats = [rng.uniform(0.1, period)]
    for i in range(n_max):
        t = beats[-1]
        factor = (
            1.0
            + 0.04 * np.sin(2 * np.pi * respiration_hz * t + phase)
            + 0.05 * drift[i]
            + 0.02 * rng.standard_normal()
        )
        beats.append(t + period * max(factor, 0.6))
        if beats[-1] >= duration:
            break
    beats = np.asarray(beats)
    return beats[beats < duration]


def ecg_from_beats(
    rng: np.random.Generator, beats: np.ndarray, *, n_times: int, sfreq: float
) -> np.ndarray:
    """An ECG (V) with a P-QRS-T complex at every beat; sizes vary from beat to beat.

    Returns
    -------
    ndarray, shape (n_times,)
    """
    waves = (  # (delay after the R peak in s, width in s, amplitude in mV) of P, Q, R, S, T
        (-0.2, 0.025, 0.15),
        (-0.03, 0.01, -0.1),
        (0.0, 0.012, 1.0),
        (0.03, 0.01, -0.25),
        (0.3, 0.05, 0.3),
    )
    trace = np.zeros(n_times)
    half = int(np.ceil(0.55 * sfreq))
    for beat in beats:
        centre = int(round(beat * sfreq))
        lo, hi = max(0, centre - half), min(n_times, centre + half)
        if lo >= hi:
            continue
        t = np.arange(lo, hi) / sfreq - beat
        size = 1.0 + 0.08 * rng.standard_normal()
        t_wave = 1.0 + 0.2 * rng.standard_normal()
        for k, (delay, width, amplitude) in enumerate(waves):
            a = amplitude * size * (t_wave if k == 4 else 1.0)
            trace[lo:hi] += a * 1e-3 * np.exp(-0.5 * ((t - delay) / width) ** 2)
    return trace


def _pulse_basis(tau: np.ndarray) -> np.ndarray:
    """Three temporal waveforms of the pulse artifact, ``tau`` s after its onset.

    Returns shape (3, len(tau)): a damped 5 Hz wave, a slow 1.8 Hz hump, a damped 9 Hz wave.
    """
    on = tau >= 0
    t = np.where(on, tau, 0.0)
    rise = 1.0 - np.exp(-t / 0.02)
    return on * np.stack(
        [
            rise * np.sin(2 * np.pi * 5.0 * t) * np.exp(-t / 0.12),
            rise * np.sin(np.pi * np.clip(t / 0.45, 0, 1)) * (t < 0.45),
            rise * np.sin(2 * np.pi * 9.0 * t + 0.5) * np.exp(-t / 0.07),
        ]
    )


def pulse_artifact(
    rng: np.random.Generator,
    beats: np.ndarray,
    *,
    n_times: int,
    sfreq: float,
    channel_positions: np.ndarray,
    peak_uv: float = 50.0,
    delay: float = 0.2,
) -> np.ndarray:
    """The pulse artifact of every EEG channel (V), beginning ``delay`` s after each beat.

    The strongest channel's largest deflection is about ``peak_uv`` µV; each beat's delay
    varies by 10 ms, its size by 12 % and each waveform's share by 15 %.

    Returns
    -------
    ndarray, shape (n_channels, n_times)
    """
    positions = np.asarray(channel_positions, float)
    norms = np.linalg.norm(positions, axis=1, keepdims=True)
    unit = positions / np.where(norms > 0, norms, 1.0)
    # spatial patterns: lateral (temporal sites), anterior-posterior, and a random one
    patterns = np.stack(
        [
            np.abs(unit[:, 0]) + 0.3,
            unit[:, 1],
            0.5 * rng.standard_normal(unit.shape[0]),
        ],
        axis=1,
    )  # (n_channels, 3)
    length = int(np.ceil(0.7 * sfreq))
    offsets = np.arange(length) / sfreq
    out = np.zeros((unit.shape[0], n_times))
    for beat in beats:
        onset = beat + delay + 0.01 * rng.standard_normal()
        start = int(np.ceil(onset * sfreq))
        if start >= n_times or start + length <= 0:
            continue
        tau = start / sfreq + offsets - onset
        basis = _pulse_basis(tau)
        weights = (1.0 + 0.12 * rng.standard_normal()) * (1.0 + 0.15 * rng.standard_normal(3))
        lo, hi = max(0, start), min(n_times, start + length)
        out[:, lo:hi] += (patterns * weights) @ basis[:, lo - start : hi - start]
    peak = np.abs(out).max() if out.size else 0.0
    return out * (peak_uv * 1e-6 / peak) if peak > 0 else out

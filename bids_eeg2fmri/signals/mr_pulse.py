"""Pulse (ballistocardiogram) artifact: R peaks from the ECG, then a beat-locked template
subtracted from every EEG channel. Functions on arrays (MNE's QRS detector inside).

The artifact follows each heart beat by about 0.2 s and lasts a few hundred ms; it varies
from beat to beat in size and timing, the same way on every channel (one heart moves the
whole head). :func:`remove_pulse`, per block of beats:

1. epochs of every channel from ``start`` to ``stop`` s after each R peak (each epoch is
   applied only up to the next beat's epoch);
2. template of beat ``i`` per channel: the mean of its ``window`` nearest beats, ``i``
   itself excluded (a sliding average, FMRIB's; near the ends, the nearest ``window``);
3. per beat, one gain and one time shift shared by all channels, fitted by least squares
   on the template and its time derivative over every channel at once (two numbers per
   beat, so the fit cannot take the EEG with it).

Principal components of the beats (an optimal basis set, as in MNE's ``apply_pca_obs``)
were measured worse on simulated data where the EEG is as large as the artifact: the
components follow the EEG's own oscillations, and their per-beat fit removes EEG
(benchmarks/NOTES.md, "Pulse artifact defaults").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_WINDOW = 60
DEFAULT_START = 0.0
DEFAULT_STOP = 0.8
#: Plausible resting heart rates (beats per minute) and beat-to-beat variability.
HEART_RATE_RANGE = (40.0, 160.0)
MAX_RR_CV = 0.25
#: Band (Hz) of the QRS detection (MNE's find_ecg_events defaults, passed explicitly).
ECG_BAND = (5.0, 35.0)


class PulseError(ValueError):
    """The ECG cannot give the heart beats (the message says why)."""


@dataclass(frozen=True)
class Heartbeats:
    """R peaks (s) and what they say of the heart."""

    peaks: np.ndarray
    duration: float  # s of ECG searched

    @property
    def n_beats(self) -> int:
        return int(self.peaks.size)

    @property
    def heart_rate(self) -> float:
        """Beats per minute from the median interval (NaN with fewer than 2 beats)."""
        if self.peaks.size < 2:
            return float("nan")
        return 60.0 / float(np.median(np.diff(self.peaks)))

    @property
    def rr_cv(self) -> float:
        """Coefficient of variation of the intervals (missed or extra beats raise it)."""
        if self.peaks.size < 3:
            return float("nan")
        rr = np.diff(self.peaks)
        return float(np.std(rr) / np.mean(rr))

    def problems(self) -> list[str]:
        """Why these beats are not plausible (empty: plausible)."""
        found = []
        expected = self.duration * HEART_RATE_RANGE[0] / 60.0
        if self.n_beats < max(10, 0.5 * expected):
            found.append(
                f"only {self.n_beats} R peak(s) in {self.duration:.0f} s (at least "
                f"{max(10, int(0.5 * expected))} expected)"
            )
        rate = self.heart_rate
        if np.isfinite(rate) and not HEART_RATE_RANGE[0] <= rate <= HEART_RATE_RANGE[1]:
            found.append(
                f"heart rate {rate:.0f} bpm outside {HEART_RATE_RANGE[0]:.0f}-"
                f"{HEART_RATE_RANGE[1]:.0f}"
            )
        if np.isfinite(self.rr_cv) and self.rr_cv > MAX_RR_CV:
            found.append(
                f"beat intervals vary by {100 * self.rr_cv:.0f} % (more than "
                f"{100 * MAX_RR_CV:.0f} %: missed or spurious beats)"
            )
        return found


def find_r_peaks(ecg: np.ndarray, sfreq: float) -> Heartbeats:
    """R peaks of an ECG trace (any polarity): MNE's QRS detector (5-35 Hz band) finds
    most beats; their average QRS complex then serves as a matched filter, whose peaks
    above 40 % of the detected beats' median (at least 0.3 s apart) are the R peaks. The
    second pass recovers beats the first missed (MNE's detector skips weak ones and the
    first seconds) and keeps each peak on the same point of the complex.

    Parameters
    ----------
    ecg : ndarray, shape (n_times,)
        Gradient-corrected, at a few hundred Hz (MNE's detector loops in Python).

    Raises
    ------
    PulseError
        A flat or non-finite trace, or one sampled too slowly for MNE's QRS band.
    """
    import mne

    ecg = np.asarray(ecg, float)
    duration = ecg.size / sfreq
    if not np.all(np.isfinite(ecg)):
        raise PulseError("the ECG holds NaN or infinite samples")
    if np.ptp(ecg) <= 0:
        raise PulseError("the ECG is flat")
    if sfreq <= 2 * ECG_BAND[1]:
        raise PulseError(
            f"the ECG is sampled at {sfreq:g} Hz, too slowly to find R peaks (more than "
            f"{2 * ECG_BAND[1]:g} Hz expected)"
        )
    raw = mne.io.RawArray(ecg[None], mne.create_info(["ECG"], sfreq, "ecg"), verbose="error")
    events, _, _ = mne.preprocessing.find_ecg_events(
        raw, ch_name="ECG", l_freq=ECG_BAND[0], h_freq=ECG_BAND[1], verbose="error"
    )
    first = np.unique(events[:, 0] - raw.first_samp) if len(events) else np.empty(0, int)
    return Heartbeats(_matched_peaks(ecg, sfreq, first) / sfreq, duration)


def _matched_peaks(ecg: np.ndarray, sfreq: float, first: np.ndarray) -> np.ndarray:
    """R peaks (samples) by a matched filter built from the beats found first."""
    from scipy import signal

    half = int(round(0.05 * sfreq))
    first = first[(first >= half) & (first + half < ecg.size)]
    if first.size < 3:
        return first
    sos = signal.butter(3, [5.0, min(35.0, 0.45 * sfreq)], btype="bandpass", fs=sfreq, output="sos")
    band = signal.sosfiltfilt(sos, ecg)
    template = np.mean([band[i - half : i + half + 1] for i in first], axis=0)
    score = signal.correlate(band, template, mode="same")
    # each first-pass peak's score: the best within 20 ms (the template's centre may sit
    # a sample or two away from MNE's peak)
    near = int(round(0.02 * sfreq))
    level = np.median([score[max(0, i - near) : i + near + 1].max() for i in first])
    peaks, _ = signal.find_peaks(score, height=0.4 * level, distance=int(round(0.3 * sfreq)))
    return peaks


def remove_pulse(
    data: np.ndarray,
    sfreq: float,
    r_peaks: np.ndarray,
    *,
    window: int = DEFAULT_WINDOW,
    start: float = DEFAULT_START,
    stop: float = DEFAULT_STOP,
    block: int = 256,
) -> np.ndarray:
    """EEG without the pulse artifact (see the module's docstring).

    Parameters
    ----------
    data : ndarray, shape (n_channels, n_times)
        EEG channels (no ECG), gradient-corrected.
    r_peaks : ndarray, shape (n_beats,)
        Seconds.

    Returns
    -------
    ndarray, shape (n_channels, n_times), float64

    Raises
    ------
    PulseError
        Fewer than 3 beats inside the data.
    """
    data = np.asarray(data, dtype=np.float64)
    out = data.copy()
    n_channels, n_times = out.shape
    first, length = int(round(start * sfreq)), int(round((stop - start) * sfreq))
    onsets = np.round(np.asarray(r_peaks) * sfreq).astype(np.int64) + first
    onsets = onsets[(onsets >= 0) & (onsets + length <= n_times)]
    n = onsets.size
    if n < 3:
        raise PulseError(f"{n} heart beat(s) inside the recording: too few for a template")
    window = int(min(window, n - 1))
    reach = np.minimum(np.append(np.diff(onsets), length), length)  # up to the next beat
    offsets = np.arange(length)
    half = window // 2 + 1
    for a in range(0, n, block):
        b = min(n, a + block)
        lo, hi = max(0, a - half), min(n, b + half)
        epochs = data[:, onsets[lo:hi, None] + offsets[None, :]]  # (channels, beats, length)
        epochs -= epochs.mean(axis=2, keepdims=True)
        sums = np.zeros((n_channels, hi - lo + 1, length))
        np.cumsum(epochs, axis=1, out=sums[:, 1:])
        targets = np.arange(a, b)
        begin = np.clip(targets - window // 2, 0, n - window - 1)
        end = begin + window + 1
        templates = (sums[:, end - lo] - sums[:, begin - lo] - epochs[:, targets - lo]) / window
        slopes = np.gradient(templates, axis=2)
        for j, i in enumerate(targets):
            design = np.stack([templates[:, j].ravel(), slopes[:, j].ravel()], axis=1)
            coef, *_ = np.linalg.lstsq(design, epochs[:, i - lo].ravel(), rcond=None)
            fit = (design @ coef).reshape(n_channels, length)
            span = int(reach[i])
            out[:, onsets[i] : onsets[i] + span] -= fit[:, :span]
    return out

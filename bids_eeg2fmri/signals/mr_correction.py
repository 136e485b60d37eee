"""Raw in-scanner EEG -> EEG without gradient and pulse artifacts, at the features' rate.

:func:`correct_recording` decides what to correct (``auto`` detects each artifact),
streams the recording a few channels at a time (a 5 kHz hour never sits in memory whole:
at most ``group`` channels in float64, plus the output at the low rate), corrects the
gradient artifact per channel (:mod:`mr_gradient`), low-passes and downsamples, finds the
R peaks on the corrected ECG and removes the pulse artifact (:mod:`mr_pulse`), and
measures the result (:mod:`mr_quality`), against the clean EEG when it is known.

It reads through an MNE ``Raw`` opened without preloading; everything else is arrays.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
from scipy import signal

from bids_eeg2fmri.errors import DataError
from bids_eeg2fmri.signals import mr_gradient, mr_pulse, mr_quality

LOGGER = logging.getLogger(__name__)

MODES = ("auto", "none", "gradient", "gradient+pulse")
#: Default rate of the corrected EEG (Hz): four times the features' default 62.5 Hz.
DEFAULT_SFREQ = 250.0
#: Seconds of the scan read to detect the gradient artifact.
DETECTION_SECONDS = 120.0
#: Epochs must correlate with their template at least this much (median over epochs).
MIN_LOCK = 0.5


class MRArtifactError(DataError, ValueError):
    """Raw in-scanner EEG that cannot be corrected as asked (the message says why)."""


@dataclass(frozen=True)
class MRSettings:
    """What to correct and how; the defaults are the measured ones (benchmarks/NOTES.md)."""

    mode: str = "auto"
    sfreq: float = DEFAULT_SFREQ
    window: int = mr_gradient.DEFAULT_WINDOW
    n_components: int = mr_gradient.DEFAULT_COMPONENTS
    obs_high_pass: float = mr_gradient.DEFAULT_OBS_HIGH_PASS
    obs_artifact_db: float = mr_gradient.DEFAULT_OBS_ARTIFACT_DB
    pulse_window: int = mr_pulse.DEFAULT_WINDOW
    pulse_span: tuple[float, float] = (mr_pulse.DEFAULT_START, mr_pulse.DEFAULT_STOP)
    group: int = 4  # channels read (float64) at once
    threads: int = 1

    def record(self) -> dict:
        """The settings that change results, for the sidecar."""
        return {
            "GradientTemplateEpochs": self.window,
            "GradientAlignment": "sub-sample, phase ramp per epoch (common to all channels)",
            "GradientOBSComponents": self.n_components,
            "GradientOBSHighPass": self.obs_high_pass,
            "GradientOBSArtifactBins": f"template power >= {self.obs_artifact_db:g} dB above "
            "the residual's median",
            "PulseTemplateBeats": self.pulse_window,
            "PulseEpoch": list(self.pulse_span),
            "SamplingFrequency": self.sfreq,
        }


@dataclass
class MRResult:
    """The corrected recording at ``sfreq`` and everything measured on the way."""

    data: np.ndarray  # (n_channels, n_out) float32, volts; all channels of the recording
    sfreq: float
    ch_names: list[str]
    gradient: dict = field(default_factory=dict)
    pulse: dict = field(default_factory=dict)
    channels: dict = field(default_factory=dict)  # column -> per-channel values
    qc: dict = field(default_factory=dict)  # arrays for the report's figures
    r_peaks: np.ndarray = field(default_factory=lambda: np.empty(0))
    warnings: list[str] = field(default_factory=list)  # for the log and the report

    @property
    def corrected(self) -> bool:
        return bool(self.gradient.get("corrected") or self.pulse.get("corrected"))


def resampling_ratio(sfreq: float, target: float) -> Fraction:
    """``up / down`` to go from ``sfreq`` to (about) ``target``; 1 when already at or below."""
    if sfreq <= target:
        return Fraction(1)
    return Fraction(target / sfreq).limit_denominator(1000)


def downsample(x: np.ndarray, ratio: Fraction) -> np.ndarray:
    """Anti-aliased polyphase resampling of the last axis (Kaiser FIR, beta 8: about
    -80 dB past the new Nyquist), time zero kept."""
    if ratio == 1:
        return np.asarray(x, float)
    return signal.resample_poly(
        x, ratio.numerator, ratio.denominator, axis=-1, window=("kaiser", 8.0)
    )


def correct_recording(
    raw,
    *,
    markers: np.ndarray,
    tr: float,
    eeg_picks: Sequence[int],
    ecg_pick: int | None,
    settings: MRSettings,
    slice_markers: np.ndarray | None = None,
    slice_frequency: float | None = None,
    clean=None,
    progress: Callable[[str], None] | None = None,
) -> MRResult:
    """Detect and correct the MR artifacts of ``raw`` (see the module's docstring).

    Parameters
    ----------
    raw : mne.io.BaseRaw
        Opened without preloading.
    markers : ndarray of int
        Samples of every scanned volume's marker (discarded volumes included).
    tr : float
        Repetition time (s).
    eeg_picks
        Indices of the EEG channels (pulse correction, detection, metrics).
    ecg_pick
        Index of the ECG channel, or None.
    slice_markers : ndarray of int, optional
        Samples of slice markers (epochs are then slices).
    slice_frequency : float, optional
        Slices per second (from SliceTiming), for the slice-harmonic metrics.
    clean : mne.io.BaseRaw, optional
        The same recording without artifacts (simulated data): correlation and
        band-power error against it.

    Raises
    ------
    MRArtifactError
        ``none`` on data with evident gradient artifacts; markers that do not fit the
        artifact; ``gradient+pulse`` without a usable ECG.
    """
    say = progress or LOGGER.info
    if settings.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {settings.mode!r}")
    sfreq = float(raw.info["sfreq"])
    markers = np.asarray(markers, np.int64)
    if settings.mode == "gradient+pulse" and ecg_pick is None:
        raise MRArtifactError(
            "--mr-correction gradient+pulse needs an ECG channel and the recording has none "
            "typed ECG (name one with --ecg-channel, or use --mr-correction gradient)"
        )
    probe_start, probe = _probe(raw, markers, tr)
    contrast = mr_quality.comb_contrast(probe[list(eeg_picks)], sfreq, tr=tr)
    notes: list[str] = []  # what the user must hear of (warnings), in words
    level = _finite_median(contrast)
    present = bool(level >= mr_quality.GRADIENT_PRESENT_DB)
    gradient = {
        "contrast_db": _round(level),
        "detected": present,
        "corrected": False,
    }
    if settings.mode == "none" and present:
        raise MRArtifactError(
            f"the EEG holds gradient artifacts (its power at the volume harmonics is "
            f"{level:.1f} dB above the frequencies between them; clean EEG "
            f"is near 0 dB): pass --mr-correction auto (or gradient) to correct them"
        )
    do_gradient = settings.mode in ("gradient", "gradient+pulse") or (
        settings.mode == "auto" and present
    )
    plan = None
    if do_gradient:
        if settings.mode != "auto" and not present:
            notes.append(
                f"no gradient artifact detected ({level:.1f} dB at the volume "
                f"harmonics) but --mr-correction {settings.mode} asks to correct it: correcting"
            )
        plan, grid_info = _gradient_plan(raw, markers, slice_markers, eeg_picks, settings)
        gradient.update(grid_info, corrected=True)
        per_template = grid_info["n_epochs"] // plan.grid.stride - 1
        if per_template < settings.window:
            notes.append(
                f"{grid_info['n_epochs']} {grid_info['epochs']} epochs: templates average "
                f"{per_template} epochs, not {settings.window} (the run is shorter than the "
                "template window)"
            )
        say(
            f"gradient artifact: {gradient['contrast_db']} dB at the volume harmonics; "
            f"{grid_info['n_epochs']} {grid_info['epochs']} epochs "
            f"({grid_info['n_unmarked']} unmarked volume(s)), template of {settings.window}"
        )

    ratio = resampling_ratio(sfreq, settings.sfreq)
    out_sfreq = sfreq * ratio.numerator / ratio.denominator
    # the probe, downsampled as the output, less a second at each end (the filter's edges)
    n_probe = probe.shape[1] * ratio.numerator // ratio.denominator
    trim = max(1, min(int(round(out_sfreq)), n_probe // 4))
    before = downsample(probe, ratio)[:, trim:-trim].astype(np.float32)
    offset = int(round(probe_start * ratio.numerator / ratio.denominator)) + trim
    del probe
    example = raw.ch_names.index(gradient["reference_channels"][0]) if plan else None
    result = _stream(raw, plan, ratio, settings, clean=clean, say=say, example=example)
    result.sfreq, result.gradient = out_sfreq, gradient
    result.qc["before"], result.qc["probe"] = before, slice(offset, offset + before.shape[1])
    span = _scan_span(markers, plan, tr, sfreq, out_sfreq, result.data.shape[1])
    result.warnings = notes
    result.pulse = _pulse_step(result, eeg_picks, ecg_pick, settings, span)
    _measure(result, eeg_picks, tr, slice_frequency, span)
    return result


# --------------------------------------------------------------------------- detection
def _probe(raw, markers: np.ndarray, tr: float) -> tuple[int, np.ndarray]:
    """Up to DETECTION_SECONDS of every channel from the middle of the scan (of the
    marked volumes; of the recording without markers): the first sample and the data.
    The gradient artifact is detected on it, and the "before" measures are made on it."""
    sfreq = raw.info["sfreq"]
    if markers.size >= 2:
        first, last = int(markers[0]), int(min(markers[-1] + round(tr * sfreq), raw.n_times))
    else:
        first, last = 0, raw.n_times
    length = int(min(last - first, DETECTION_SECONDS * sfreq))
    start = first + (last - first - length) // 2
    return start, raw.get_data(start=start, stop=start + length)


# --------------------------------------------------------------------------- gradient
def _gradient_plan(raw, markers, slice_markers, eeg_picks, settings):
    n_times = raw.n_times
    if markers.size < 2:
        raise MRArtifactError(
            "the EEG holds gradient artifacts but has no volume markers to locate them "
            "(check --volume-marker)"
        )
    try:
        grid = mr_gradient.epoch_grid(markers, n_times=n_times)
    except mr_gradient.GradientError as err:
        raise MRArtifactError(str(err)) from None
    # reference channels: the two EEG channels with the largest artifact
    probe = raw.get_data(
        picks=list(eeg_picks),
        start=int(grid.starts[0]),
        stop=int(grid.starts[min(8, grid.n_epochs - 1)]),
    )
    order = np.argsort(probe.std(axis=1))[::-1][:2]
    references = raw.get_data(picks=[int(eeg_picks[i]) for i in order])
    grid = mr_gradient.extend_grid(grid, references)
    kind = "volume"
    if slice_markers is not None and slice_markers.size:
        slices = _check_slices(np.sort(slice_markers), markers)
        grid = mr_gradient.slice_grid(grid, slices, n_times=n_times)
        kind = "slice"
    shifts = mr_gradient.estimate_shifts(references, grid)
    lock = _lock(references, grid, shifts)
    if lock < MIN_LOCK:
        raise MRArtifactError(
            f"the gradient artifact is not locked to the {kind} markers: epochs correlate "
            f"with their neighbours' average at a median of {lock:.2f} (at least "
            f"{MIN_LOCK} expected); check --volume-marker, RepetitionTime and the markers"
        )
    plan = mr_gradient.make_plan(grid, shifts)
    return plan, {
        "epochs": kind,
        "n_epochs": grid.n_epochs,
        "n_unmarked": int((~grid.marked).sum() // grid.stride),
        "epoch_samples": grid.length,
        "lock": _round(lock),
        "shift_range_samples": _round(float(np.ptp(shifts))),
        "reference_channels": [raw.ch_names[int(eeg_picks[i])] for i in order],
        "first_sample": int(grid.starts[0]),
        "last_sample": int(min(grid.starts[-1] + grid.length, n_times)),
    }


def _check_slices(slices: np.ndarray, volumes: np.ndarray) -> np.ndarray:
    """Slice markers inside the marked volumes, the same number in each; else an error
    naming the first volume that differs."""
    edges = np.append(volumes, volumes[-1] + int(np.median(np.diff(volumes))))
    counts = np.histogram(slices, bins=edges)[0]
    expected = int(np.bincount(counts).argmax())
    if expected < 2:
        raise MRArtifactError(
            f"slice markers: {slices.size} of them for {volumes.size} volume markers, fewer "
            "than 2 per volume"
        )
    odd = np.flatnonzero(counts != expected)
    if odd.size:
        v = int(odd[0])
        raise MRArtifactError(
            f"slice markers: volume {v + 1} (marker at sample {volumes[v]}) has "
            f"{counts[v]} slice markers, the others {expected}"
        )
    return slices[(slices >= edges[0]) & (slices < edges[-1])]


def _lock(references: np.ndarray, grid, shifts) -> float:
    """Median correlation of a sample of epochs with the mean of their 8 neighbours."""
    picks = np.linspace(4, grid.n_epochs - 5, num=min(24, max(grid.n_epochs - 8, 1))).astype(int)
    values = []
    for k in np.unique(np.clip(picks, 0, grid.n_epochs - 1)):
        neighbours = [j for j in range(k - 4, k + 5) if j != k and 0 <= j < grid.n_epochs]
        segment = lambda j: references[:, grid.starts[j] : grid.starts[j] + grid.length]  # noqa: E731
        if any(segment(j).shape[1] < grid.length for j in [k, *neighbours]):
            continue
        template = np.mean([segment(j) for j in neighbours], axis=0)
        values.append(mr_gradient._correlation(segment(k), template))
    return float(np.median(values)) if values else 0.0


# --------------------------------------------------------------------------- streaming
def _stream(raw, plan, ratio, settings: MRSettings, *, clean, say, example=None) -> MRResult:
    """Every channel, a group at a time: corrected (with a plan), downsampled; the RMS of
    raw and corrected over the epochs, the clean recording downsampled alike, and the
    middle epoch of channel ``example`` before and after (full rate)."""
    sfreq = raw.info["sfreq"]
    n_channels = len(raw.ch_names)
    n_out = int(np.ceil(raw.n_times * ratio.numerator / ratio.denominator))
    out = np.empty((n_channels, n_out), np.float32)
    clean_out = np.empty((n_channels, n_out), np.float32) if clean is not None else None
    rms = np.full((2, n_channels), np.nan)
    qc: dict = {}
    span = slice(plan.grid.starts[0], plan.grid.starts[-1] + plan.grid.length) if plan else None

    def one(c: int, x: np.ndarray):
        if plan is None:
            out[c] = downsample(x, ratio)[:n_out]
            return
        y = mr_gradient.correct_channel(
            x,
            plan,
            sfreq=sfreq,
            window=settings.window,
            n_components=settings.n_components,
            obs_high_pass=settings.obs_high_pass,
            obs_artifact_db=settings.obs_artifact_db,
        )
        rms[:, c] = np.std(x[span]), np.std(y[span])
        out[c] = downsample(y, ratio)[:n_out]
        if c == example:
            k = plan.grid.n_epochs // 2
            epoch = slice(plan.grid.starts[k], plan.grid.starts[k] + plan.grid.length)
            qc["epoch"] = {
                "channel": raw.ch_names[c],
                "sfreq": sfreq,
                "before": x[epoch].copy(),
                "after": y[epoch].copy(),
            }

    with ThreadPoolExecutor(max_workers=max(1, settings.threads)) as pool:
        for first in range(0, n_channels, settings.group):
            picks = list(range(first, min(n_channels, first + settings.group)))
            block = raw.get_data(picks=picks)
            list(pool.map(one, picks, block))
            del block
            if clean is not None:
                clean_block = clean.get_data(picks=picks)
                for c, x in zip(picks, clean_block, strict=True):
                    clean_out[c] = downsample(x, ratio)[:n_out]
            if plan is not None:
                say(f"gradient correction: {picks[-1] + 1} of {n_channels} channels")
    result = MRResult(out, 0.0, list(raw.ch_names))
    result.qc.update(qc, clean=clean_out)
    with np.errstate(invalid="ignore", divide="ignore"):
        result.channels["rms_ratio"] = np.where(rms[1] > 0, rms[0] / rms[1], np.nan)
    return result


def _scan_span(markers, plan, tr, sfreq, out_sfreq, n_out) -> slice:
    """The scan (first to last artifact epoch, else the marked volumes) at ``out_sfreq``."""
    if plan is not None:
        first, last = plan.grid.starts[0], plan.grid.starts[-1] + plan.grid.length
    elif markers.size:
        first, last = markers[0], markers[-1] + tr * sfreq
    else:
        first, last = 0, n_out * sfreq / out_sfreq
    scale = out_sfreq / sfreq
    return slice(int(np.ceil(first * scale)), int(min(n_out, np.floor(last * scale))))


# --------------------------------------------------------------------------- pulse
def _pulse_step(result: MRResult, eeg_picks, ecg_pick, settings, span: slice) -> dict:
    mode, sfreq = settings.mode, result.sfreq
    info = {"detected": False, "corrected": False}
    if mode in ("none", "gradient"):
        info["skipped"] = f"--mr-correction {mode}"
        return info
    if ecg_pick is None:
        info["skipped"] = "no ECG channel"
        result.warnings.append(
            "no ECG channel: the pulse artifact is not corrected (name one with --ecg-channel)"
        )
        return info
    name = result.ch_names[ecg_pick]
    try:
        beats = mr_pulse.find_r_peaks(result.data[ecg_pick], sfreq)
    except mr_pulse.PulseError as err:
        return _pulse_unusable(result, info, mode, f"ECG channel {name}: {err}")
    info.update(
        ecg_channel=name,
        n_r_peaks=beats.n_beats,
        heart_rate_bpm=_round(beats.heart_rate),
        rr_cv=_round(beats.rr_cv),
    )
    result.r_peaks = beats.peaks
    problems = beats.problems()
    if problems:
        return _pulse_unusable(result, info, mode, f"ECG channel {name}: {'; '.join(problems)}")
    eeg = result.data[list(eeg_picks)]
    contrast = mr_quality.pulse_contrast(eeg[:, span], sfreq, beats.peaks - span.start / sfreq)
    median = _finite_median(contrast)
    info["contrast"] = _round(median)
    info["detected"] = bool(median >= mr_quality.PULSE_PRESENT_RATIO)
    if mode == "auto" and not info["detected"]:
        info["skipped"] = "no pulse artifact detected"
        return info
    corrected = mr_pulse.remove_pulse(
        eeg,
        sfreq,
        beats.peaks,
        window=settings.pulse_window,
        start=settings.pulse_span[0],
        stop=settings.pulse_span[1],
    )
    result.data[list(eeg_picks)] = corrected.astype(np.float32)
    info["corrected"] = True
    return info


def _pulse_unusable(result: MRResult, info: dict, mode: str, reason: str) -> dict:
    if mode == "gradient+pulse":
        raise MRArtifactError(f"{reason}: the pulse artifact cannot be corrected")
    result.warnings.append(f"{reason}: the pulse artifact is not corrected")
    info["skipped"] = reason
    return info


# --------------------------------------------------------------------------- metrics
def _measure(result: MRResult, eeg_picks, tr, slice_frequency, span: slice) -> None:
    """Per-channel metrics into ``result.channels`` and spectra into ``result.qc``."""
    sfreq = result.sfreq
    probe = result.qc["probe"]
    before, after = result.qc["before"], result.data[:, probe]
    channels = result.channels
    channels["volume_contrast_before_db"] = mr_quality.comb_contrast(before, sfreq, tr=tr)
    channels["volume_contrast_after_db"] = mr_quality.comb_contrast(after, sfreq, tr=tr)
    volume = dict(f0=1.0 / tr, segment=4 * tr, half_width=1.0 / (8 * tr))
    channels["volume_power_before_db"] = mr_quality.harmonic_power_db(before, sfreq, **volume)
    channels["volume_power_after_db"] = mr_quality.harmonic_power_db(after, sfreq, **volume)
    if slice_frequency:
        channels["slice_power_before_db"] = mr_quality.harmonic_power_db(
            before, sfreq, f0=slice_frequency
        )
        channels["slice_power_after_db"] = mr_quality.harmonic_power_db(
            after, sfreq, f0=slice_frequency
        )
    clean = result.qc.get("clean")
    if clean is not None:
        clean_probe = clean[:, probe]
        channels["volume_power_clean_db"] = mr_quality.harmonic_power_db(
            clean_probe, sfreq, **volume
        )
        if slice_frequency:
            channels["slice_power_clean_db"] = mr_quality.harmonic_power_db(
                clean_probe, sfreq, f0=slice_frequency
            )
        # over the whole scan
        scan, clean = result.data[:, span], clean[:, span]
        channels["r_clean"] = mr_quality.band_correlation(scan, clean, sfreq)
        for band, error in mr_quality.band_power_error(scan, clean, sfreq).items():
            channels[f"{band}_power_error_pct"] = error
    freqs, psd_before = mr_quality.welch(before[list(eeg_picks)], sfreq, int(4 * sfreq))
    _, psd_after = mr_quality.welch(after[list(eeg_picks)], sfreq, int(4 * sfreq))
    result.qc["spectra"] = {
        "freqs": freqs,
        "before": np.median(psd_before, axis=0),
        "after": np.median(psd_after, axis=0),
    }
    if clean is not None:
        _, psd_clean = mr_quality.welch(clean_probe[list(eeg_picks)], sfreq, int(4 * sfreq))
        result.qc["spectra"]["clean"] = np.median(psd_clean, axis=0)


def _finite_median(values: np.ndarray) -> float:
    """Median of the finite values (flat channels give none); NaN when there are none."""
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if finite.size else float("nan")


def _round(value, digits: int = 4):
    value = float(value)
    return round(value, digits) if np.isfinite(value) else None

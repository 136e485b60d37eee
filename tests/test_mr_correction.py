"""MR artifact correction on arrays: quality against the clean truth, detection, the pulse
step and bad inputs (small sizes: a few channels, a minute of EEG)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from bids_eeg2fmri.signals import mr_gradient, mr_pulse, mr_quality
from bids_eeg2fmri.signals.mr_correction import downsample, resampling_ratio
from bids_eeg2fmri.simulate import mr_artifacts, physiology

SFREQ, TR, N_SLICES = 2000.0, 1.2, 16
N_CHANNELS, N_VOLUMES, LEAD = 5, 56, 6.0


def _clean(rng, n_times):
    """EEG-like signals (µV scale): pink noise plus an alpha rhythm."""
    x = 10e-6 * physiology.pink_noise(rng, N_CHANNELS, n_times, SFREQ)
    alpha = physiology.band_limited_noise(rng, n_times, SFREQ, (8.0, 12.0))
    return x + 8e-6 * np.outer(rng.uniform(0.5, 1.0, N_CHANNELS), alpha)


@pytest.fixture(scope="module")
def scan():
    """Clean EEG, the same with the gradient artifact, the scanner's truth and markers."""
    rng = np.random.default_rng(7)
    n_times = int((LEAD + (N_VOLUMES + 2) * TR) * SFREQ)
    clean = _clean(rng, n_times)
    timing = mr_artifacts.scanner_timing(
        rng,
        first_marked=LEAD,
        n_marked=N_VOLUMES,
        n_unmarked=3,
        tr=TR,
        n_slices=N_SLICES,
        drift_ppm=40.0,
        jitter_s=2e-6,
    )
    positions = rng.standard_normal((N_CHANNELS, 3))
    artifact = mr_artifacts.gradient_artifact(
        rng,
        timing,
        n_times=n_times,
        sfreq=SFREQ,
        channel_positions=positions,
        channel_std=clean.std(axis=1),
    )
    return {
        "clean": clean,
        "raw": clean + artifact,
        "timing": timing,
        "markers": timing.marker_samples(SFREQ),
    }


def _band_r(corrected, clean, span):
    down = resampling_ratio(SFREQ, 250.0)
    a, b = downsample(corrected, down), downsample(clean, down)
    cut = slice(int(span.start / 8), int(span.stop / 8))
    return mr_quality.band_correlation(a[:, cut], b[:, cut], 250.0)


def _correct(raw, grid, shifts, **kwargs):
    plan = mr_gradient.make_plan(grid, shifts)
    return np.stack([mr_gradient.correct_channel(x, plan, sfreq=SFREQ, **kwargs) for x in raw])


def test_the_simulated_artifact_is_large_and_off_the_sample_grid(scan):
    artifact = scan["raw"] - scan["clean"]
    scanning = slice(int(LEAD * SFREQ), int((LEAD + N_VOLUMES * TR) * SFREQ))
    ratio = artifact[:, scanning].std(axis=1) / scan["clean"][:, scanning].std(axis=1)
    assert np.all((ratio > 15) & (ratio < 60))
    period = scan["timing"].slice_period * SFREQ
    assert abs(period - round(period)) > 0.05  # not a whole number of samples
    # the unmarked volumes before the first marker carry the artifact too
    before = slice(int((LEAD - 2 * TR) * SFREQ), int(LEAD * SFREQ))
    assert np.all(artifact[:, before].std(axis=1) > 10 * scan["clean"][:, before].std(axis=1))


def test_alignment_recovers_the_true_sub_sample_delays(scan):
    grid = mr_gradient.epoch_grid(scan["markers"], n_times=scan["raw"].shape[1])
    shifts = mr_gradient.estimate_shifts(scan["raw"][:2], grid)
    # the artifact starts up to a sample before its marker (the next EEG sample)
    true = scan["timing"].marked_onsets() * SFREQ - scan["markers"]
    error = (true - np.median(true)) - shifts
    assert np.std(error) < 0.02
    assert np.ptp(true) > 0.8  # the delays really do spread over a sample


def test_gradient_correction_matches_the_clean_eeg(scan):
    raw, clean = scan["raw"], scan["clean"]
    grid = mr_gradient.epoch_grid(scan["markers"], n_times=raw.shape[1])
    grid = mr_gradient.extend_grid(grid, raw[:2])
    assert (~grid.marked).sum() == 3  # the unmarked volumes before the first marker
    shifts = mr_gradient.estimate_shifts(raw[:2], grid)
    corrected = _correct(raw, grid, shifts)
    span = slice(int(grid.starts[0]), int(grid.starts[-1] + grid.length))
    r = _band_r(corrected, clean, span)
    assert np.median(r) > 0.95, r

    # the slice harmonics hold the artifact: down to the clean EEG's power there; the
    # volume harmonics (low frequencies, little artifact) stay at the clean EEG's
    slice_f0 = 1 / scan["timing"].slice_period
    power = _harmonics(raw, clean, corrected, span, f0=slice_f0)
    assert np.all(power["raw"] - power["corrected"] > 15)
    excess = power["corrected"] - power["clean"]
    assert np.all(np.abs(excess) < 2.5) and np.median(np.abs(excess)) < 1.0
    power = _harmonics(raw, clean, corrected, span, f0=1 / TR, segment=4 * TR)
    assert np.all(np.abs(power["corrected"] - power["clean"]) < 1.0)
    down = resampling_ratio(SFREQ, 250.0)
    cut = slice(int(span.start / 8), int(span.stop / 8))
    contrast = mr_quality.comb_contrast(downsample(corrected, down)[:, cut], 250.0, tr=TR)
    assert np.all(np.abs(contrast) < 1.5)


def _harmonics(raw, clean, corrected, span, *, f0, segment=4.0):
    """Power (dB) at harmonics 1-5 of ``f0`` of each, downsampled to 250 Hz."""
    down = resampling_ratio(SFREQ, 250.0)
    cut = slice(int(span.start / 8), int(span.stop / 8))
    width = 0.5 if segment == 4.0 else 1 / (2 * segment)
    return {
        name: mr_quality.harmonic_power_db(
            downsample(x, down)[:, cut], 250.0, f0=f0, segment=segment, half_width=width
        )
        for name, x in (("raw", raw), ("corrected", corrected), ("clean", clean))
    }


def test_sub_sample_alignment_is_what_makes_it_work(scan):
    raw, clean = scan["raw"], scan["clean"]
    grid = mr_gradient.epoch_grid(scan["markers"], n_times=raw.shape[1])
    span = slice(int(grid.starts[0]), int(grid.starts[-1] + grid.length))
    # without the basis set, which also takes up some of what misalignment leaves
    shifts = mr_gradient.estimate_shifts(raw[:2], grid)
    aligned = _correct(raw, grid, shifts, n_components=0)
    unaligned = _correct(raw, grid, np.zeros(grid.n_epochs), n_components=0)
    r_aligned, r_unaligned = _band_r(aligned, clean, span), _band_r(unaligned, clean, span)
    assert np.all(r_aligned > r_unaligned)
    f0 = 1 / scan["timing"].slice_period
    with_shifts = _harmonics(raw, clean, aligned, span, f0=f0)["corrected"]
    without = _harmonics(raw, clean, unaligned, span, f0=f0)["corrected"]
    gain = without - with_shifts  # dB of residual at the slice harmonics
    assert np.all(gain > 2) and np.median(gain) > 3


def test_slice_epochs_from_slice_markers(scan):
    raw, clean = scan["raw"], scan["clean"]
    volumes = mr_gradient.extend_grid(
        mr_gradient.epoch_grid(scan["markers"], n_times=raw.shape[1]), raw[:2]
    )
    slices = np.sort(scan["timing"].slice_marker_samples(SFREQ))
    grid = mr_gradient.slice_grid(volumes, slices, n_times=raw.shape[1])
    assert grid.stride == N_SLICES and grid.n_epochs == N_SLICES * volumes.n_epochs
    corrected = _correct(raw, grid, mr_gradient.estimate_shifts(raw[:2], grid))
    span = slice(int(grid.starts[0]), int(grid.starts[-1] + grid.length))
    assert np.median(_band_r(corrected, clean, span)) > 0.95


def test_detection_tells_raw_from_clean(scan):
    tr_data = slice(int(LEAD * SFREQ), int((LEAD + 40 * TR) * SFREQ))
    raw = mr_quality.comb_contrast(scan["raw"][:, tr_data], SFREQ, tr=TR)
    clean = mr_quality.comb_contrast(scan["clean"][:, tr_data], SFREQ, tr=TR)
    assert np.all(raw > 10)
    assert np.all(np.abs(clean) < 1.0)
    assert mr_quality.GRADIENT_PRESENT_DB < raw.min()


def test_welch_equals_scipys():
    x = np.random.default_rng(0).standard_normal((3, 5000))
    freqs, psd = mr_quality.welch(x, 250.0, 500)
    f2, p2 = signal.welch(x, fs=250.0, nperseg=500, noverlap=250, detrend="constant")
    assert np.allclose(freqs, f2) and np.allclose(psd, p2)


# --------------------------------------------------------------------------- pulse
@pytest.fixture(scope="module")
def heart():
    rng = np.random.default_rng(3)
    sfreq, n_times = 250.0, int(240 * 250)
    beats = mr_artifacts.heartbeats(rng, n_times / sfreq, heart_rate=70.0)
    ecg = mr_artifacts.ecg_from_beats(rng, beats, n_times=n_times, sfreq=sfreq)
    ecg += 20e-6 * rng.standard_normal(n_times)  # what the gradient correction leaves
    clean = 6e-6 * physiology.pink_noise(rng, 6, n_times, sfreq)
    pulse = mr_artifacts.pulse_artifact(
        rng,
        beats,
        n_times=n_times,
        sfreq=sfreq,
        channel_positions=rng.standard_normal((6, 3)),
        peak_uv=40.0,
    )
    return {"sfreq": sfreq, "beats": beats, "ecg": ecg, "clean": clean, "raw": clean + pulse}


def test_r_peaks_are_found_on_the_ecg(heart):
    found = mr_pulse.find_r_peaks(heart["ecg"], heart["sfreq"])
    assert found.n_beats == heart["beats"].size
    error = np.abs(found.peaks[:, None] - heart["beats"][None]).min(axis=1)
    assert np.max(error) < 0.012
    assert found.problems() == []
    assert 60 < found.heart_rate < 80


def test_pulse_correction_and_its_detection(heart):
    sfreq, beats = heart["sfreq"], heart["beats"]
    before = mr_quality.band_correlation(heart["raw"], heart["clean"], sfreq)
    corrected = mr_pulse.remove_pulse(heart["raw"], sfreq, beats)
    after = mr_quality.band_correlation(corrected, heart["clean"], sfreq)
    assert np.median(after) > 0.9 and np.all(after > before)
    assert np.median(mr_quality.pulse_contrast(heart["raw"], sfreq, beats)) > 5
    assert np.median(mr_quality.pulse_contrast(heart["clean"], sfreq, beats)) < 2
    assert np.median(mr_quality.pulse_contrast(corrected, sfreq, beats)) < 2


def test_implausible_heartbeats_are_named():
    few = mr_pulse.Heartbeats(np.array([1.0, 2.0, 3.0]), duration=120.0)
    assert any("only 3 R peak" in p for p in few.problems())
    fast = mr_pulse.Heartbeats(np.arange(0, 60, 0.25), duration=60.0)
    assert any("heart rate 240" in p for p in fast.problems())
    with pytest.raises(mr_pulse.PulseError, match="flat"):
        mr_pulse.find_r_peaks(np.zeros(5000), 250.0)


# --------------------------------------------------------------------------- bad input
def test_too_few_epochs_for_a_template():
    with pytest.raises(mr_gradient.GradientError, match="at least 4"):
        mr_gradient.epoch_grid(np.array([100, 300, 500]), n_times=1000)
    with pytest.raises(mr_gradient.GradientError, match="outside the recording"):
        mr_gradient.epoch_grid(np.array([100, 300, 500, 700, 900]), n_times=800)


# --------------------------------------------------------------------------- the whole step
def _raw(data, sfreq, names):
    import mne

    info = mne.create_info(list(names), sfreq, ["eeg"] * (len(names) - 1) + ["ecg"])
    return mne.io.RawArray(data, info, verbose="error")


def _recording(scan, heart=None):
    """The scan's raw EEG plus a flat-ish ECG channel, as an MNE Raw."""
    rng = np.random.default_rng(1)
    ecg = 1e-6 * rng.standard_normal(scan["raw"].shape[1])
    names = [f"E{i}" for i in range(N_CHANNELS)] + ["ECG"]
    return _raw(np.vstack([scan["raw"], ecg]), SFREQ, names)


def _run(raw, markers, **kwargs):
    from bids_eeg2fmri.signals import mr_correction as mr

    settings = mr.MRSettings(**{"mode": "gradient", **kwargs.pop("settings", {})})
    return mr.correct_recording(
        raw,
        markers=markers,
        tr=TR,
        eeg_picks=list(range(N_CHANNELS)),
        ecg_pick=kwargs.pop("ecg_pick", N_CHANNELS),
        settings=settings,
        progress=lambda text: None,
        **kwargs,
    )


def test_markers_that_do_not_fit_the_artifact_fail(scan):
    from bids_eeg2fmri.signals.mr_correction import MRArtifactError

    rng = np.random.default_rng(2)
    jittered = scan["markers"] + rng.integers(-40, 40, scan["markers"].size)  # +-20 ms
    with pytest.raises(MRArtifactError, match="not locked to the volume markers"):
        _run(_recording(scan), jittered)


def test_slice_markers_must_be_regular(scan):
    from bids_eeg2fmri.signals.mr_correction import MRArtifactError

    slices = np.sort(scan["timing"].slice_marker_samples(SFREQ))
    slices = np.delete(slices, N_SLICES * 5 + 3)  # one slice of the sixth volume lost
    with pytest.raises(MRArtifactError, match=r"volume 6 \(marker at sample \d+\) has 15 slice"):
        _run(_recording(scan), scan["markers"], slice_markers=slices)


def test_a_short_run_warns_and_none_refuses(scan):
    from bids_eeg2fmri.signals.mr_correction import MRArtifactError

    result = _run(_recording(scan), scan["markers"], settings={"window": 80})
    assert any("shorter than the template window" in w for w in result.warnings)
    assert result.gradient["corrected"] and not result.pulse["corrected"]
    with pytest.raises(MRArtifactError, match="pass --mr-correction auto"):
        _run(_recording(scan), scan["markers"], settings={"mode": "none"})
    clean = _raw(
        np.vstack([scan["clean"], scan["clean"][:1]]), SFREQ, [*map(str, range(N_CHANNELS)), "ECG"]
    )
    result = _run(clean, scan["markers"], settings={"mode": "auto"})
    assert not result.corrected and not result.gradient["detected"]
    with pytest.raises(MRArtifactError, match="needs an ECG channel"):
        _run(_recording(scan), scan["markers"], ecg_pick=None, settings={"mode": "gradient+pulse"})

"""Simultaneous EEG-fMRI with a known coupling: the arrays, before any file is written.

The model (DESIGN.md, "How we know it works"):

* each source's oscillation has a slowly fluctuating amplitude ``a_k(t)``; its band power
  ``p_k(t) = a_k(t)**2`` is the neural drive;
* EEG = lead field @ oscillations + lead field @ 1/f background dipoles + sensor noise
  (+ an ECG channel);
* BOLD(v, t) = baseline(v) * (1 + sum_k c_k * map_k(v) * z(HRF * p_k)(t) / 100
  + physiological AR(1) noise + drift) + thermal noise, where ``z`` standardises the
  HRF-convolved power over the run and ``c_k`` is the coupling in percent;
* the noiseless BOLD leaves out noise and drift; the noise ceiling of a voxel is the
  correlation of its noiseless and observed time courses.
* with groups (simulate/groups.py), the alpha oscillation of patients is ``1 + size``
  times larger; its standardised drive, hence BOLD, is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from bids_eeg2fmri.evaluation.metrics import voxelwise_pearson
from bids_eeg2fmri.simulate import anatomy, groups, mr_artifacts, physiology
from bids_eeg2fmri.simulate.sources import (
    DEFAULT_SOURCES,
    MONTAGE,
    Source,
    cap_channels,
    head_model,
    lead_field,
    sphere_center_mm,
)

#: Sampling rate (Hz) of the neural drive (band-power envelopes) and of its TSV.
ENVELOPE_RATE = 4.0
#: Seconds of neural activity simulated before the EEG starts, so that the first volumes
#: already carry a full haemodynamic history.
PRE_ROLL = 32.0
#: A voxel counts as coupled to a source when its map weight is at least this.
COUPLED_THRESHOLD = 0.5
EEG_FORMATS = ("brainvision", "edf", "bdf", "eeglab")


@dataclass(frozen=True)
class SimulationConfig:
    """Everything that defines a simulated dataset (recorded in simulation.json)."""

    n_participants: int = 2
    n_sessions: int = 1
    n_runs: int = 1
    n_volumes: int = 100
    n_dummy: int = 0
    tr: float = 2.16
    sfreq: float = 250.0
    n_channels: int = 64
    ecg: bool = True
    grid: tuple[int, int, int] = (64, 64, 30)
    voxel_size: tuple[float, float, float] | None = None
    eeg_format: str = "brainvision"
    marker: str = "Response/R128"
    task: str = "rest"
    line_freq: float = 50.0
    lead_range: tuple[float, float] = (5.0, 25.0)
    tail_range: tuple[float, float] = (2.0, 6.0)
    seed: int = 0
    sources: tuple[Source, ...] = DEFAULT_SOURCES
    position_jitter_mm: float = 3.0
    coupling_jitter: float = 0.1
    n_background_dipoles: int = 24
    background_uv: float = 8.0
    sensor_noise_uv: float = 1.5
    envelope_cutoff: float = 0.08
    envelope_depth: float = 0.5
    physio_noise_pct: float = 1.0
    physio_ar: float = 0.5
    thermal_noise_pct: float = 0.5
    drift_pct: float = 1.0
    # raw in-scanner EEG (simulate/mr_artifacts.py): which artifacts, and the scanner
    mr_artifacts: tuple[str, ...] = ()
    n_slices: int | None = None  # None: the BOLD grid's slices (one SliceTiming per slice)
    slice_markers: bool = False
    n_unmarked: int = 3  # volumes before the first marker: artifacts, no marker
    clock_drift_ppm: float = 20.0
    timing_jitter_s: float = 2e-6
    gradient_scale: tuple[float, float] = (20.0, 50.0)
    heart_rate: float = 65.0
    pulse_uv: float = 50.0
    slice_marker: str = "Scanner/Slice"
    # participant groups (simulate/groups.py): (n_positive, n_negative), HC first, then P
    groups: tuple[int, int] | None = None
    group_effect: float = 0.0  # in P, the alpha source's amplitude x (1 + group_effect)
    # an EEG-only dataset on another cap: no BOLD and no markers; the cap's MNE montage
    eeg_only: bool = False
    montage: str = MONTAGE

    def resolved_voxel_size(self) -> tuple[float, float, float]:
        """Voxel size in mm: given, or the default field of view divided by the grid."""
        if self.voxel_size is not None:
            return tuple(float(v) for v in self.voxel_size)
        return tuple(
            round(f / n, 4) for f, n in zip(anatomy.DEFAULT_FOV_MM, self.grid, strict=True)
        )

    def slices(self) -> int:
        """Slices per volume: ``n_slices``, else the BOLD grid's third size."""
        return int(self.n_slices) if self.n_slices is not None else int(self.grid[2])

    def check(self) -> None:
        """Raise ValueError naming the first invalid setting."""
        positive_ints = ("n_participants", "n_sessions", "n_runs", "n_volumes", "n_channels")
        for name in positive_ints:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.n_dummy < 0:
            raise ValueError(f"n_dummy must be >= 0, got {self.n_dummy}")
        if self.tr <= 0 or self.sfreq <= 0:
            raise ValueError("tr and sfreq must be positive")
        top = max(max(s.band) for s in self.sources)
        if self.sfreq <= 2.5 * top:
            raise ValueError(
                f"sfreq {self.sfreq} Hz is too low for the {top} Hz source band: "
                f"use at least {2.5 * top:g} Hz"
            )
        if len(self.grid) != 3 or min(self.grid) < 4:
            raise ValueError(f"grid must be three sizes of at least 4 voxels, got {self.grid}")
        if self.voxel_size is not None and (len(self.voxel_size) != 3 or min(self.voxel_size) <= 0):
            raise ValueError(f"voxel_size must be three positive sizes, got {self.voxel_size}")
        if self.eeg_format not in EEG_FORMATS:
            raise ValueError(f"eeg_format must be one of {EEG_FORMATS}, got {self.eeg_format!r}")
        if not self.marker.strip():
            raise ValueError("the volume marker text is empty")
        import mne

        if self.montage not in mne.channels.get_builtin_montages():
            raise ValueError(
                f"montage {self.montage!r} is not an MNE standard montage (one of "
                f"{', '.join(mne.channels.get_builtin_montages())})"
            )
        if self.eeg_only and self.mr_artifacts:
            raise ValueError("EEG-only datasets have no MR artifacts: drop --mr-artifacts")
        if not self.task.isalnum():
            raise ValueError(f"task must be letters and digits (a BIDS label), got {self.task!r}")
        if not 0 <= self.lead_range[0] <= self.lead_range[1]:
            raise ValueError(f"lead_range must be 0 <= min <= max, got {self.lead_range}")
        unknown = set(self.mr_artifacts) - set(mr_artifacts.MR_ARTIFACT_KINDS)
        if unknown:
            raise ValueError(
                f"unknown MR artifact(s) {', '.join(sorted(unknown))}: expected "
                f"{' and/or '.join(mr_artifacts.MR_ARTIFACT_KINDS)}"
            )
        if self.slices() < 2:
            raise ValueError(f"n_slices must be at least 2, got {self.slices()}")
        if "gradient" in self.mr_artifacts:
            period = self.tr * 0.985 / self.slices()
            if period * self.sfreq < 8:
                raise ValueError(
                    f"{self.slices()} slices per {self.tr:g} s TR last {period * 1e3:.1f} ms "
                    f"each, under 8 samples at {self.sfreq:g} Hz: raise --sfreq or lower "
                    "--slices"
                )
        if self.slice_markers and "gradient" not in self.mr_artifacts:
            raise ValueError("slice markers need the gradient artifact (--mr-artifacts gradient)")
        groups.check(self)


@dataclass
class Head:
    """One participant's anatomy and forward model (shared by their runs)."""

    ch_names: list[str]
    info: object  # mne.Info with the montage
    affine: np.ndarray
    mask: np.ndarray
    baseline: np.ndarray
    maps: dict[str, np.ndarray]
    gains: np.ndarray  # (n_channels, n_sources), V per unit source
    background_gains: np.ndarray  # (n_channels, n_background), V per A·m
    source_positions_mm: dict[str, list[float]]
    couplings: dict[str, float]


@dataclass
class RunData:
    """One simulated run: the EEG, the BOLD and their ground truth."""

    eeg: np.ndarray  # (n_channels, n_times) in V, EEG channels then ECG if any
    ch_types: list[str]
    ch_names: list[str]
    marker_onsets: np.ndarray  # (n_dummy + n_volumes,) seconds on the EEG clock
    volume_onsets: np.ndarray  # (n_volumes,) seconds on the EEG clock
    bold: np.ndarray  # (*grid, n_volumes) int16, observed
    noiseless: np.ndarray  # (*grid, n_volumes) float32
    envelope_times: np.ndarray  # (n_env,) seconds on the EEG clock (negative: pre-roll)
    envelopes: dict[str, np.ndarray]  # band power per source at ENVELOPE_RATE
    regressors: dict[str, np.ndarray]  # z-scored HRF-convolved power per volume
    noise_ceiling: np.ndarray  # (*grid,) r in coupled voxels, NaN elsewhere
    summary: dict = field(default_factory=dict)
    # raw in-scanner EEG only: the EEG before the artifacts, and when they happened
    clean_eeg: np.ndarray | None = None  # (n_channels, n_times) in V, as ``eeg``
    r_peaks: np.ndarray | None = None  # (n_beats,) s
    scanner: mr_artifacts.ScannerTiming | None = None
    slice_marker_onsets: np.ndarray | None = None  # (n_markers * n_slices,) s


def rng_for(seed: int, *keys: int) -> np.random.Generator:
    """An independent generator per (participant, session, run, stream): adding
    participants or runs never changes the ones simulated before."""
    return np.random.default_rng([seed, *keys])


def make_head(config: SimulationConfig, participant: int) -> Head:
    """Anatomy, source positions and lead fields of participant number ``participant``."""
    rng = rng_for(config.seed, participant, 0, 0, 1)
    ch_names = cap_channels(config.n_channels, config.montage)
    info, sphere = head_model(ch_names, config.sfreq, config.montage)
    center = sphere_center_mm(sphere)
    voxel_size = config.resolved_voxel_size()
    affine = anatomy.grid_affine(config.grid, voxel_size, center)
    xyz = anatomy.voxel_coordinates(config.grid, affine)
    baseline, mask = anatomy.baseline_image(xyz, center, voxel_size=voxel_size, rng=rng)

    positions, maps, couplings = {}, {}, {}
    for source in config.sources:
        pos = (
            center
            + np.asarray(source.offset_mm)
            + config.position_jitter_mm * rng.standard_normal(3)
        )
        positions[source.name] = pos
        maps[source.name] = anatomy.source_map(xyz, pos, mask, radius_mm=source.region_mm)
        couplings[source.name] = source.coupling * (
            1 + config.coupling_jitter * rng.standard_normal()
        )
    names = [s.name for s in config.sources]
    pos_array = np.array([positions[n] for n in names])
    gains = lead_field(info, sphere, pos_array, pos_array - center)  # radial dipoles
    # scale each source so that its oscillation has the requested rms at its peak channel
    amplitudes = np.array([s.amplitude_uv for s in config.sources]) * 1e-6
    gains = gains / np.abs(gains).max(axis=0) * amplitudes

    bg_dirs = rng.standard_normal((config.n_background_dipoles, 3))
    bg_radius = 55.0 * rng.uniform(0.3, 1.0, config.n_background_dipoles) ** (1 / 3)
    bg_pos = center + bg_dirs / np.linalg.norm(bg_dirs, axis=1, keepdims=True) * bg_radius[:, None]
    bg_gains = lead_field(
        info, sphere, bg_pos, rng.standard_normal((config.n_background_dipoles, 3))
    )
    return Head(
        ch_names=ch_names,
        info=info,
        affine=affine,
        mask=mask,
        baseline=baseline,
        maps=maps,
        gains=gains,
        background_gains=bg_gains,
        source_positions_mm={n: [round(float(x), 2) for x in p] for n, p in positions.items()},
        couplings=couplings,
    )


def simulate_run(
    config: SimulationConfig, head: Head, participant: int, session: int, run: int
) -> RunData:
    """EEG and BOLD of one run, with the ground truth that produced them."""
    rng = rng_for(config.seed, participant, session, run, 2)
    sfreq, tr = config.sfreq, config.tr
    n_markers = config.n_dummy + config.n_volumes
    lead = round(float(rng.uniform(*config.lead_range)) * sfreq) / sfreq  # on a sample
    tail = float(rng.uniform(*config.tail_range))
    mr_rng = rng_for(config.seed, participant, session, run, 3)
    scanner = None
    if "gradient" in config.mr_artifacts:  # the scanner's own clock; markers on EEG samples
        scanner = mr_artifacts.scanner_timing(
            mr_rng,
            first_marked=lead,
            n_marked=n_markers,
            n_unmarked=config.n_unmarked,
            tr=tr,
            n_slices=config.slices(),
            drift_ppm=config.clock_drift_ppm,
            jitter_s=config.timing_jitter_s,
        )
        marker_onsets = scanner.marker_samples(sfreq) / sfreq
    else:  # scanners trigger on EEG samples: onsets are whole samples
        marker_onsets = np.round((lead + tr * np.arange(n_markers)) * sfreq) / sfreq
    volume_onsets = marker_onsets[config.n_dummy :]
    # whole seconds, so that EDF/BDF (1-s data records) need no padding
    n_times = int(round(np.ceil(lead + n_markers * tr + tail) * sfreq))

    # neural drive, from PRE_ROLL seconds before the EEG starts
    n_env = int(np.ceil((PRE_ROLL + n_times / sfreq) * ENVELOPE_RATE)) + 1
    env_times = -PRE_ROLL + np.arange(n_env) / ENVELOPE_RATE
    eeg_times = np.arange(n_times) / sfreq
    sources = np.empty((len(config.sources), n_times))
    envelopes, regressors = {}, {}
    acquisition = volume_onsets + tr / 2  # BOLD is read at the middle of each volume
    for k, source in enumerate(config.sources):
        amplitude = physiology.slow_amplitude(
            rng, n_env, ENVELOPE_RATE, cutoff=config.envelope_cutoff, depth=config.envelope_depth
        )
        power = amplitude**2
        envelopes[source.name] = power
        carrier = physiology.band_limited_noise(rng, n_times, sfreq, source.band)
        sources[k] = (
            carrier * np.interp(eeg_times, env_times, amplitude) / np.sqrt(np.mean(amplitude**2))
        )
        # the group effect scales the oscillation only: its band power's BOLD drive is
        # standardised, so the coupling (and every random draw) stays the same
        sources[k] *= groups.amplitude_factor(config, participant, source.name)
        drive = power / power.mean() - 1.0
        regressors[source.name] = physiology.zscore(
            physiology.hrf_regressor(drive, ENVELOPE_RATE, acquisition, start=-PRE_ROLL)
        )

    background = physiology.pink_noise(rng, head.background_gains.shape[1], n_times, sfreq)
    bg = head.background_gains @ background
    bg *= config.background_uv * 1e-6 / np.sqrt(np.mean(bg**2))
    eeg = head.gains @ sources + bg
    eeg += config.sensor_noise_uv * 1e-6 * rng.standard_normal(eeg.shape)
    ch_names, ch_types = list(head.ch_names), ["eeg"] * len(head.ch_names)
    if config.ecg:
        eeg = np.vstack([eeg, physiology.ecg_trace(rng, n_times, sfreq)[None]])
        ch_names.append("ECG")
        ch_types.append("ecg")
    clean, r_peaks = None, None
    if config.mr_artifacts:
        eeg, clean, r_peaks = _add_mr_artifacts(config, head, eeg, scanner, mr_rng)

    bold, noiseless, ceiling = _bold(config, head, regressors, rng)
    coupled = np.zeros(head.mask.shape, bool)
    summary = {"sources": {}}
    for name, weights in head.maps.items():
        region = weights >= COUPLED_THRESHOLD
        coupled |= region
        summary["sources"][name] = {
            "n_coupled_voxels": int(region.sum()),
            "noise_ceiling_mean": _round(np.nanmean(ceiling[region])),
            "noise_ceiling_median": _round(np.nanmedian(ceiling[region])),
        }
    summary.update(
        n_coupled_voxels=int(coupled.sum()),
        noise_ceiling_mean=_round(np.nanmean(ceiling[coupled])),
        noise_ceiling_median=_round(np.nanmedian(ceiling[coupled])),
        eeg_lead_s=round(lead, 6),
        first_marker_onset_s=round(float(marker_onsets[0]), 6),
        first_volume_onset_s=round(float(volume_onsets[0]), 6),
        n_markers=n_markers,
        n_dummy_volumes=config.n_dummy,
        eeg_duration_s=round(n_times / sfreq, 6),
    )
    if config.mr_artifacts:
        summary["mr_artifacts"] = list(config.mr_artifacts)
    if scanner is not None:
        summary.update(
            n_slices=config.slices(),
            slice_period_s=round(scanner.slice_period, 9),
            n_unmarked_volumes=config.n_unmarked,
            clock_drift_ppm=config.clock_drift_ppm,
        )
    if r_peaks is not None:
        summary.update(
            n_r_peaks=int(r_peaks.size),
            heart_rate_bpm=round(60.0 / float(np.median(np.diff(r_peaks))), 2),
        )
    return RunData(
        eeg=eeg,
        ch_types=ch_types,
        ch_names=ch_names,
        marker_onsets=marker_onsets,
        volume_onsets=volume_onsets,
        bold=bold,
        noiseless=noiseless,
        envelope_times=env_times,
        envelopes=envelopes,
        regressors=regressors,
        noise_ceiling=np.where(coupled, ceiling, np.nan).astype(np.float32),
        summary=summary,
        clean_eeg=clean,
        r_peaks=r_peaks,
        scanner=scanner,
        slice_marker_onsets=(
            scanner.slice_marker_samples(sfreq) / sfreq if config.slice_markers else None
        ),
    )


def _add_mr_artifacts(config: SimulationConfig, head: Head, eeg: np.ndarray, scanner, rng):
    """EEG recorded in the scanner: ``(raw, clean, r_peaks)``; the clean EEG is ``eeg``
    with the ECG of the simulated heart beats (when there is a pulse artifact)."""
    sfreq, n_times = config.sfreq, eeg.shape[1]
    n_eeg = len(head.ch_names)
    positions = np.array([ch["loc"][:3] for ch in head.info["chs"]])
    r_peaks = None
    if "pulse" in config.mr_artifacts:
        r_peaks = mr_artifacts.heartbeats(rng, n_times / sfreq, heart_rate=config.heart_rate)
        if config.ecg:
            eeg[n_eeg] = mr_artifacts.ecg_from_beats(rng, r_peaks, n_times=n_times, sfreq=sfreq)
    clean = eeg.copy()
    if r_peaks is not None:
        eeg[:n_eeg] += mr_artifacts.pulse_artifact(
            rng,
            r_peaks,
            n_times=n_times,
            sfreq=sfreq,
            channel_positions=positions,
            peak_uv=config.pulse_uv,
        )
    if scanner is not None:
        if eeg.shape[0] > n_eeg:  # the ECG electrode, on the chest
            positions = np.vstack([positions, [[0.0, 0.05, -0.25]]])
        eeg += mr_artifacts.gradient_artifact(
            rng,
            scanner,
            n_times=n_times,
            sfreq=sfreq,
            channel_positions=positions,
            channel_std=clean.std(axis=1),
            scale_range=config.gradient_scale,
        )
    return eeg, clean, r_peaks


def _bold(config: SimulationConfig, head: Head, regressors, rng):
    """Observed (int16) and noiseless (float32) BOLD, and the voxelwise noise ceiling."""
    n = config.n_volumes
    shape = (*head.mask.shape, n)
    signal_pct = np.zeros(shape)
    for name, weights in head.maps.items():
        signal_pct += head.couplings[name] * weights[..., None] * regressors[name][None, None, None]
    noiseless = head.baseline[..., None] * (1.0 + signal_pct / 100.0)

    voxel = np.array(config.resolved_voxel_size())
    innovations = rng.standard_normal(shape, dtype=np.float32)
    innovations = ndimage.gaussian_filter(innovations, sigma=(*(4.0 / voxel), 0.0))
    innovations /= innovations.std(axis=-1, keepdims=True)
    physio = physiology.ar1_process(innovations, config.physio_ar)
    drift = physiology.slow_drift(rng, n, config.tr)
    drift_gain = 1.0 + 0.3 * ndimage.gaussian_filter(rng.standard_normal(head.mask.shape), 2.0)
    modulation = (
        config.physio_noise_pct * physio * head.mask[..., None]
        + config.drift_pct * drift_gain[..., None] * drift
    ) / 100.0
    observed = noiseless + head.baseline[..., None] * modulation
    brain_level = float(np.median(head.baseline[head.mask]))
    observed += config.thermal_noise_pct / 100.0 * brain_level * rng.standard_normal(shape)
    bold = np.clip(np.round(observed), 0, np.iinfo(np.int16).max).astype(np.int16)

    ceiling = voxelwise_pearson(noiseless, bold)
    return bold, noiseless.astype(np.float32), ceiling


def _round(x: float) -> float | None:
    return None if not np.isfinite(x) else round(float(x), 4)

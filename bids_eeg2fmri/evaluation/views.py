"""A run's feature sets ("views") for classifying participants, from arrays.

* ``bandpower``: log10 relative band power per channel and band (the EEG baseline, no model);
* ``features``: log10 of the run's mean PSD per channel and frequency bin, the spectra the
  model's inputs are standardised from (the standardised inputs average to 0 over a run, so
  their time average would carry nothing);
* ``latent``: the model's latent per unit, its mean and standard deviation over the run's
  volumes;
* ``synth``: the synthesized z-scored volumes on the model grid, their mean and standard
  deviation over the run, averaged in blocks of voxels (a participant-level map small
  enough for tens of participants);
* ``nuisance``: properties of the recording that should not predict a group: its channel
  count, its length, line-noise power (against its neighbouring frequencies), and the
  power below 4 Hz at the frontal-pole channels (eye movements).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Bands of the ``bandpower`` view (Hz, [low, high)).
BANDS = {"delta": (1.0, 4.0), "theta": (4.0, 8.0), "alpha": (8.0, 13.0),
         "beta": (13.0, 30.0), "gamma": (30.0, 45.0)}  # fmt: skip
#: Channels over the eyes: their power below 4 Hz stands for eye movements.
FRONTAL_POLE = ("fp1", "fp2", "fpz", "af7", "af8", "fp1h", "fp2h")
#: Edge, in voxels, of the blocks the ``synth`` view averages.
SYNTH_BLOCK = 4
VIEWS = ("bandpower", "features", "latent", "synth", "nuisance")
#: Views that need a model applied at the participant level.
MODEL_VIEWS = ("latent", "synth")


def band_power(log_psd: np.ndarray, freqs: np.ndarray, channels: Sequence[str]) -> dict[str, float]:
    """log10 of each band's share of the power between the lowest and highest band edge.

    log_psd : ndarray, shape (n_channels, n_freqs), log10 V^2/Hz. Bands without a bin
    are left out.
    """
    psd = 10.0 ** np.asarray(log_psd, float)
    freqs = np.asarray(freqs, float)
    low, high = min(b[0] for b in BANDS.values()), max(b[1] for b in BANDS.values())
    total = psd[:, (freqs >= low) & (freqs < high)].sum(axis=1)
    out = {}
    for band, (lo, hi) in BANDS.items():
        inside = (freqs >= lo) & (freqs < hi)
        if not inside.any():
            continue
        share = psd[:, inside].sum(axis=1) / np.where(total > 0, total, np.nan)
        for channel, value in zip(channels, np.log10(share), strict=True):
            out[f"{channel}_{band}"] = float(value)
    return out


def spectrum_features(
    log_psd: np.ndarray, freqs: np.ndarray, channels: Sequence[str]
) -> dict[str, float]:
    """The run's mean log10 PSD, one value per (channel, frequency)."""
    return {
        f"{channel}_{f:g}Hz": float(v)
        for channel, row in zip(channels, np.asarray(log_psd, float), strict=True)
        for f, v in zip(freqs, row, strict=True)
    }


def line_noise(log_psd: np.ndarray, freqs: np.ndarray, line_freqs=(50.0, 60.0)) -> float:
    """log10 of the PSD at the mains frequency over the median of its neighbours 2-5 Hz
    away, the larger of 50 and 60 Hz, averaged over channels; NaN above the spectrum."""
    freqs = np.asarray(freqs, float)
    values = []
    for line in line_freqs:
        at = np.abs(freqs - line) < 0.5
        around = (np.abs(freqs - line) >= 2) & (np.abs(freqs - line) <= 5)
        if at.any() and around.any():
            peak = np.asarray(log_psd)[:, at].max(axis=1)
            values.append(float(np.mean(peak - np.median(np.asarray(log_psd)[:, around], axis=1))))
    return max(values) if values else float("nan")


def eye_power(log_psd: np.ndarray, freqs: np.ndarray, channels: Sequence[str]) -> float:
    """log10 of the mean PSD below 4 Hz (V^2/Hz) at the frontal-pole channels, averaged
    over them; NaN without such channels. Absolute, not a share of the total: a share
    would move with any other band (an alpha effect, say) and stop being a nuisance."""
    pole = [i for i, c in enumerate(channels) if c.lower() in FRONTAL_POLE]
    slow = np.asarray(freqs, float) < 4
    if not pole or not slow.any():
        return float("nan")
    psd = 10.0 ** np.asarray(log_psd, float)[np.ix_(pole, slow)]
    return float(np.mean(np.log10(psd.mean(axis=1))))


def nuisance(
    log_psd: np.ndarray,
    freqs: np.ndarray,
    channels: Sequence[str],
    *,
    n_channels_file: int,
    duration_s: float,
) -> dict[str, float]:
    """The ``nuisance`` view (see the module's description)."""
    return {
        "n_channels_file": float(n_channels_file),
        "duration_s": float(duration_s),
        "line_noise": line_noise(log_psd, freqs),
        "eye_power": eye_power(log_psd, freqs, channels),
    }


def temporal_summary(values: np.ndarray, prefix: str) -> dict[str, float]:
    """Mean and standard deviation over the last axis of ``values`` (n_units, n_times)."""
    values = np.asarray(values, float)
    out = {f"{prefix}{i}_mean": float(v) for i, v in enumerate(values.mean(axis=-1))}
    out.update({f"{prefix}{i}_sd": float(v) for i, v in enumerate(values.std(axis=-1))})
    return out


def block_means(volumes: np.ndarray, block: int = SYNTH_BLOCK) -> np.ndarray:
    """Average ``volumes`` (x, y, z, ...) in blocks of ``block`` voxels per axis (the
    last, partial block of an axis averages what it has). Shape (ceil(x/b), ceil(y/b),
    ceil(z/b), ...)."""
    out = np.asarray(volumes, float)
    for axis in range(3):
        edges = np.arange(0, out.shape[axis], block)
        out = np.add.reduceat(out, edges, axis=axis)
        sizes = np.diff(np.append(edges, volumes.shape[axis]))
        shape = [1] * out.ndim
        shape[axis] = sizes.size
        out = out / sizes.reshape(shape)
    return out


def synth_summary(z: np.ndarray, valid: np.ndarray, block: int = SYNTH_BLOCK) -> dict[str, float]:
    """Block-averaged mean and standard deviation over the valid volumes of the
    synthesized z-scores ``z`` (x, y, z, n_volumes); keys ``b<x>_<y>_<z>_mean|sd``."""
    chosen = np.asarray(z)[..., np.asarray(valid, bool)]
    maps = {"mean": block_means(chosen.mean(axis=-1), block),
            "sd": block_means(chosen.std(axis=-1), block)}  # fmt: skip
    out = {}
    for stat, grid in maps.items():
        for index in np.ndindex(grid.shape):
            out["b{}_{}_{}_{}".format(*index, stat)] = float(grid[index])
    return out

"""The metrics table of a run: every method (the model and the baselines) against the
observed BOLD, per volume and per run, as plain columns (no I/O).

Per volume: RMSE inside the brain mask and over the whole volume, the original package's
SSIM (2-D, every third axial slice), a 3-D SSIM inside the mask and the PSNR inside the mask.
Per run (repeated on each row of a method): the voxelwise temporal Pearson r inside the mask
(mean, median, 90th percentile) and, for simulated data, r in the coupled voxels beside the
noise ceiling.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bids_eeg2fmri.evaluation.metrics import (
    SSIM_WINDOW,
    psnr,
    rmse,
    ssim3d,
    ssim_original,
    summarize_r,
    voxelwise_pearson,
)

#: Columns of ``*_desc-synth_metrics.tsv``, in order, with their sidecar entries.
COLUMNS: dict[str, dict[str, str]] = {
    "method": {
        "Description": "What produced the volume: 'model' (the synthesizer), 'mean-volume' "
        "(baseline: the mean z-scored training volume) or 'ridge' (baseline: per-voxel ridge "
        "regression on HRF-convolved EEG band power, fitted on the training participants).",
    },
    "volume": {"Description": "Index of the stored BOLD volume (0 = first kept volume)."},
    "split": {
        "Description": "Use of this volume when the model was trained: train, validation, "
        "holdout (for a model applied with --model, as its card records for this run), or "
        "applied (a run the model was not trained on)."
    },
    "in_training": {
        "Description": "Whether the volume was used to fit the model or to stop its "
        "training (train or validation).",
        "Levels": {"true": "used in training", "false": "never seen in training"},
    },
    "rmse_mask": {
        "Description": "Root mean square error inside the brain mask. Like every per-volume "
        "metric, on the model grid in z-scores (the observed BOLD preprocessed as for "
        "training: resampled, drifts removed, z-scored per voxel), as the original package "
        "computed its metrics.",
        "Units": "standard deviations",
    },
    "rmse_volume": {
        "Description": "Root mean square error over the whole volume (background included).",
        "Units": "standard deviations",
    },
    "ssim_original": {
        "Description": "SSIM as the original eeg_to_fmri package computed it: 2-D SSIM "
        "(11x11 Gaussian window, sigma 1.5) of every third axial slice, dynamic range the "
        "slices' maximum, averaged over the slices (n/a for slices under 11 x 11 voxels).",
    },
    "ssim_mask": {
        "Description": "3-D SSIM (Gaussian window, sigma 1.5 voxels), dynamic range the "
        "observed volume's range inside the mask, averaged over the mask.",
    },
    "psnr_mask": {
        "Description": "Peak signal-to-noise ratio inside the mask: 20 log10(range / RMSE).",
        "Units": "dB",
    },
    "r_mask_mean": {
        "Description": "Mean over the brain mask of the voxelwise temporal Pearson r of this "
        "method's BOLD (in source units, on the source grid) and the observed BOLD as stored, "
        "over the run's evaluated volumes (its held-out "
        "volumes when it has any, else all volumes with EEG). n/a for a method constant in "
        "time (mean-volume).",
    },
    "r_mask_median": {"Description": "Median of the same r inside the mask."},
    "r_mask_p90": {"Description": "90th percentile of the same r inside the mask."},
    "r_coupled_mean": {
        "Description": "Simulated data: mean r in the voxels the simulation couples to an "
        "EEG source, 0 where the method is constant (n/a otherwise).",
    },
    "noise_ceiling_mean": {
        "Description": "Simulated data: mean r of the noiseless and the observed BOLD in the "
        "same voxels, the best any method can reach (n/a otherwise).",
    },
    "fraction_of_ceiling": {
        "Description": "r_coupled_mean / noise_ceiling_mean (n/a without a ceiling).",
    },
}

VOLUME_COLUMNS = ("rmse_mask", "rmse_volume", "ssim_original", "ssim_mask", "psnr_mask")
RUN_COLUMNS = (
    "r_mask_mean",
    "r_mask_median",
    "r_mask_p90",
    "r_coupled_mean",
    "noise_ceiling_mean",
    "fraction_of_ceiling",
)


def evaluation_volumes(splits: Sequence[str]) -> np.ndarray:
    """Indices (into ``splits``) of the volumes the run-level r is computed over: the
    held-out ones when there are any, else all."""
    splits = np.asarray(splits)
    held = np.flatnonzero(splits == "holdout")
    return held if held.size else np.arange(splits.size)


def volume_metrics(pred: np.ndarray, obs: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    """The per-volume metrics (:data:`VOLUME_COLUMNS`) of one method.

    Parameters
    ----------
    pred, obs : ndarray, shape (x, y, z, t)
        Predicted and observed volumes, same grid and units (the pipeline passes z-scores on
        the model grid, as the original package computed its metrics).
    mask : ndarray of bool, shape (x, y, z)

    Returns
    -------
    dict of ndarray, shape (t,)
    """
    mask = np.asarray(mask, bool)
    return {
        "rmse_mask": rmse(pred, obs, mask),
        "rmse_volume": rmse(pred, obs),
        # the original's 2-D SSIM needs axial slices of at least its window (else n/a)
        "ssim_original": ssim_original(pred, obs)
        if min(pred.shape[:2]) >= SSIM_WINDOW
        else np.full(pred.shape[-1], np.nan),
        "ssim_mask": ssim3d(pred, obs, mask),
        "psnr_mask": psnr(pred, obs, mask),
    }


def temporal_metrics(
    pred: np.ndarray | None,
    obs: np.ndarray,
    mask: np.ndarray,
    *,
    ceiling: np.ndarray | None = None,
) -> tuple[dict[str, float], np.ndarray | None]:
    """The run-level metrics (:data:`RUN_COLUMNS`) of one method and its voxelwise r map.

    Parameters
    ----------
    pred : ndarray, shape (x, y, z, t), or None
        None for a method constant in time (every value NaN, no map).
    obs : ndarray, shape (x, y, z, t)
    mask : ndarray of bool, shape (x, y, z)
    ceiling : ndarray, shape (x, y, z), optional
        Simulated data: the noise ceiling, finite in the coupled voxels only.

    Returns
    -------
    per_run : dict of float
        NaN where undefined.
    r : ndarray, shape (x, y, z), or None
        NaN where a series is constant.
    """
    per_run = dict.fromkeys(RUN_COLUMNS, np.nan)
    if pred is None:
        if ceiling is not None and np.isfinite(ceiling).any():  # a property of the run
            per_run["noise_ceiling_mean"] = float(np.nanmean(ceiling))
        return per_run, None
    r = voxelwise_pearson(pred, obs).astype(np.float32)
    summary = summarize_r(r, np.asarray(mask, bool))
    per_run.update(r_mask_mean=summary["mean"], r_mask_median=summary["median"])
    per_run["r_mask_p90"] = summary["p90"]
    if ceiling is not None:
        coupled = np.isfinite(ceiling)
        if coupled.any():
            # a constant prediction (NaN r) in a coupled voxel explains nothing there: r = 0
            r_coupled = float(np.mean(np.nan_to_num(r[coupled], nan=0.0)))
            ceil = float(np.mean(ceiling[coupled]))
            per_run.update(
                r_coupled_mean=r_coupled,
                noise_ceiling_mean=ceil,
                fraction_of_ceiling=r_coupled / ceil if ceil > 0 else np.nan,
            )
    return per_run, r


def table_rows(
    method: str,
    volumes: Sequence[int],
    splits: Sequence[str],
    per_volume: dict[str, np.ndarray],
    per_run: dict[str, float],
) -> list[list[str]]:
    """Rows of the metrics TSV for one method (strings, ``n/a`` for missing values)."""
    rows = []
    for k, (volume, split) in enumerate(zip(volumes, splits, strict=True)):
        rows.append(
            [
                method,
                str(int(volume)),
                split,
                "true" if split in ("train", "validation") else "false",
                *(fmt(per_volume[c][k]) for c in VOLUME_COLUMNS),
                *(fmt(per_run[c]) for c in RUN_COLUMNS),
            ]
        )
    return rows


def fmt(value: float) -> str:
    """A TSV cell: 6 significant digits, ``n/a`` for NaN, ``inf`` kept."""
    value = float(value)
    if np.isnan(value):
        return "n/a"
    return f"{value:.6g}"

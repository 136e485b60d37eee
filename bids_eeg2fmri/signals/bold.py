"""BOLD for the model: checks, the model grid (and the way back), brain mask, scaling."""

from __future__ import annotations

import logging
import warnings

import numpy as np

from bids_eeg2fmri.errors import DataError

LOGGER = logging.getLogger(__name__)
DEFAULT_GRID = (64, 64, 30)


class BoldError(DataError, ValueError):
    """The BOLD run cannot be used (the message names the problem)."""


def check_bold_dtype(dtype: np.dtype, *, name: str) -> None:
    """BOLD values must be real numbers: complex (magnitude and phase) or structured (RGB)
    images would lose a part silently when read as floats."""
    if np.dtype(dtype).kind not in "biuf":
        raise BoldError(
            f"{name}: BOLD of data type {np.dtype(dtype)} (a real-valued image expected: "
            "the magnitude of a complex acquisition)"
        )


def check_bold(data: np.ndarray, *, name: str) -> None:
    """A BOLD run must be 4-D with at least two volumes, finite values, and not be flat
    (every voxel constant over time: nothing to learn or to evaluate against)."""
    if data.ndim != 4:
        raise BoldError(
            f"{name}: BOLD must be 4-D (x, y, z, time), got shape {data.shape} (a 4-D run expected)"
        )
    if data.shape[3] < 2:
        raise BoldError(f"{name}: BOLD has {data.shape[3]} volume(s) (at least 2 expected)")
    finite = np.isfinite(data).all(axis=3)
    if not finite.all():
        raise BoldError(
            f"{name}: BOLD holds NaN or infinite values in {finite.size - finite.sum()} of "
            f"{finite.size} voxels (finite values expected)"
        )
    first = data[..., 0]
    if all(np.array_equal(data[..., t], first) for t in range(1, data.shape[3])):
        what = "all zero" if not np.any(first) else "the same in every volume"
        raise BoldError(
            f"{name}: a flat BOLD run, {what} (a signal that varies over time in some voxels)"
        )


def header_tr(zooms: tuple[float, ...], units: str | None) -> float | None:
    """TR in seconds from a NIfTI header's 4th zoom, or None if absent."""
    if len(zooms) < 4 or zooms[3] <= 0:
        return None
    scale = {"msec": 1e-3, "usec": 1e-6}.get(units or "sec", 1.0)
    return float(zooms[3]) * scale


def model_grid_affine(native_affine: np.ndarray, native_shape, model_shape) -> np.ndarray:
    """Affine of a grid of ``model_shape`` covering the native field of view.

    Voxel centres are placed so that both grids span the same box (corner to corner).
    """
    native_shape = np.asarray(native_shape[:3], float)
    model_shape = np.asarray(model_shape, float)
    scale = native_shape / model_shape
    affine = native_affine.copy()
    affine[:3, :3] = native_affine[:3, :3] * scale
    # the corner (-0.5 voxel) of both grids coincides
    affine[:3, 3] = native_affine[:3, :3] @ (-0.5 + 0.5 * scale) + native_affine[:3, 3]
    return affine


def resample(data: np.ndarray, affine: np.ndarray, target_affine, target_shape) -> np.ndarray:
    """Resample 3-D or 4-D ``data`` to a target grid (trilinear); float32.

    On the same grid, ``data`` itself is returned (converted to float32 if needed).
    """
    if np.allclose(affine, target_affine) and data.shape[:3] == tuple(target_shape):
        return np.asarray(data, dtype=np.float32)
    import nibabel as nib
    from nilearn.image import resample_img

    img = nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine)
    # a mask is resampled as fractions on purpose (the caller thresholds them): nilearn's
    # warning about binary images would print on every run whose grid is not the model's
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Resampling binary images", UserWarning)
        out = resample_img(
            img,
            target_affine=target_affine,
            target_shape=tuple(target_shape),
            interpolation="continuous",
            force_resample=True,
            copy_header=True,
        )
    return np.asarray(out.get_fdata(dtype=np.float32))


def brain_mask(mean: np.ndarray, affine: np.ndarray, *, name: str = "BOLD") -> np.ndarray:
    """Brain mask of a mean EPI image (nilearn's ``compute_epi_mask``).

    Raises
    ------
    BoldError
        The mask is empty: the mean image has no bright region (``name`` starts the
        message), e.g. a BOLD run already mean-removed or detrended.
    """
    import nibabel as nib
    from nilearn.masking import compute_epi_mask

    img = nib.Nifti1Image(np.asarray(mean, np.float32), affine)
    with warnings.catch_warnings():  # an empty mask is raised below, with the file's name
        warnings.filterwarnings("ignore", "Computed an empty mask", Warning)
        mask = np.asarray(compute_epi_mask(img).get_fdata() > 0)
    if not mask.any():
        raise BoldError(
            f"{name}: no brain found in the mean BOLD image (nilearn's EPI mask is empty): "
            "is the run already mean-removed, detrended or masked? (a raw BOLD run expected)"
        )
    return mask


def dct_drift_basis(n_volumes: int, tr: float, cutoff_s: float) -> np.ndarray:
    """Discrete cosine regressors of drifts slower than ``cutoff_s`` seconds (as SPM and
    fMRIPrep's ``cosine`` confounds), shape (n_volumes, K); K may be 0."""
    order = int(np.floor(2 * n_volumes * tr / cutoff_s))
    t = (np.arange(n_volumes) + 0.5) / n_volumes
    return np.cos(np.pi * np.outer(t, np.arange(1, order + 1)))


def remove_drift(data: np.ndarray, tr: float, cutoff_s: float = 128.0) -> np.ndarray:
    """High-pass ``data`` (x, y, z, t), in place: regress out the DCT drift basis voxelwise
    (each voxel's mean is kept). Returns ``data``."""
    basis = dct_drift_basis(data.shape[-1], tr, cutoff_s)
    if basis.shape[1] == 0:
        return data
    # the fit through the (t, K) pseudo-inverse, not a (t, t) projector: K << t, and an
    # hour-long run (t = 1667) costs 2 K / t of the projector's multiplications
    unmix = np.linalg.pinv(basis).T  # (t, K): slab @ unmix = each voxel's drift coefficients
    for i in range(data.shape[0]):
        slab = data[i].astype(np.float64)
        data[i] = slab - (slab @ unmix) @ basis.T
    return data


def normalize(data: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voxelwise temporal z-score inside the mask (0 outside), in place.

    ``data`` (float32, x, y, z, t) is overwritten slab by slab (statistics in float64), so
    memory stays at one copy of the run.

    Returns
    -------
    z : ndarray, float32: ``data`` itself, now z-scored
    mean, std : ndarray, float32, shape (x, y, z)
        Parameters to put model outputs back in the source units: ``z * std + mean``.
    """
    if data.dtype != np.float32:
        raise TypeError(f"expected float32 data, got {data.dtype}")
    mean = np.zeros(data.shape[:3], np.float32)
    std = np.zeros(data.shape[:3], np.float32)
    for i in range(data.shape[0]):
        slab = data[i].astype(np.float64)
        m, s = slab.mean(axis=-1), slab.std(axis=-1)
        usable = mask[i] & (s > 0)
        slab = np.where(
            usable[..., None], (slab - m[..., None]) / np.where(usable, s, 1)[..., None], 0
        )
        data[i] = slab
        mean[i], std[i] = m, np.where(usable, s, 0)
    return data, mean, std


def denormalize(z: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Inverse of :func:`normalize` (voxels outside the mask get their mean)."""
    return z * std[..., None] + mean[..., None]

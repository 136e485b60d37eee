"""The simulated head on the BOLD grid: affine, brain mask, baseline image, source maps.

World coordinates are MNE head coordinates in millimetres (x right, y anterior, z up),
so the EEG forward model and the BOLD maps share one frame.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: Field of view (mm) that a default grid covers: 64 x 64 x 30 voxels of 3.5 x 3.5 x 4.5 mm.
DEFAULT_FOV_MM = (224.0, 224.0, 135.0)
#: Semi-axes (mm) of the brain ellipsoid, centred on the head sphere's centre.
BRAIN_SEMI_AXES_MM = (68.0, 84.0, 60.0)


def grid_affine(
    shape: tuple[int, int, int], voxel_size: tuple[float, ...], center_mm
) -> np.ndarray:
    """RAS affine of a grid whose central voxel sits at ``center_mm``.

    Returns
    -------
    ndarray, shape (4, 4)
    """
    affine = np.diag([*map(float, voxel_size), 1.0])
    affine[:3, 3] = np.asarray(center_mm, float) - affine[:3, :3] @ ((np.array(shape) - 1) / 2)
    return affine


def voxel_coordinates(shape: tuple[int, int, int], affine: np.ndarray) -> np.ndarray:
    """World coordinates (mm) of every voxel centre, shape ``shape + (3,)``."""
    ijk = np.stack(np.meshgrid(*(np.arange(n) for n in shape), indexing="ij"), axis=-1)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def ellipsoid_distance(xyz: np.ndarray, center, semi_axes) -> np.ndarray:
    """Normalised ellipsoid radius: < 1 inside, 1 on the surface."""
    d = (xyz - np.asarray(center)) / np.asarray(semi_axes)
    return np.sqrt(np.sum(d**2, axis=-1))


def baseline_image(
    xyz: np.ndarray,
    center_mm,
    *,
    semi_axes_mm=BRAIN_SEMI_AXES_MM,
    voxel_size=(3.5, 3.5, 4.5),
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """An EPI-like mean image and its brain mask.

    T2*-weighted contrast: cerebrospinal fluid (ventricles, outer rim) brightest, grey
    matter (a cortical ribbon about 7 mm thick) brighter than white matter, dark
    background; a smooth receive-field bias; edges blurred by about one voxel.

    Returns
    -------
    image : ndarray, float, shape xyz.shape[:-1]
    mask : ndarray, bool, same shape
    """
    semi = np.asarray(semi_axes_mm) * (1 + 0.02 * rng.standard_normal(3))
    r = ellipsoid_distance(xyz, center_mm, semi)
    mask = r <= 1.0
    depth_mm = (1.0 - r) * semi.min()  # approximate distance under the brain surface
    image = np.full(r.shape, 30.0)
    image[mask] = 780.0  # white matter
    image[mask & (depth_mm < 9.0)] = 1050.0  # cortical grey matter
    image[mask & (depth_mm < 2.0)] = 1300.0  # sulcal CSF at the surface
    for side in (-1, 1):  # lateral ventricles
        ventricle = np.asarray(center_mm) + np.array([side * 0.12, 0.05, 0.1]) * semi
        vr = ellipsoid_distance(xyz, ventricle, semi * np.array([0.07, 0.3, 0.12]))
        image[vr <= 1.0] = 1400.0
    gradient = (xyz - np.asarray(center_mm)) @ (0.08 * rng.standard_normal(3) / semi.max())
    image *= 1.0 + gradient
    sigma = 0.6 * np.array([3.5, 3.5, 4.5]) / np.asarray(voxel_size, float)
    return ndimage.gaussian_filter(image, sigma), mask


def source_map(xyz: np.ndarray, center_mm, mask: np.ndarray, *, radius_mm: float) -> np.ndarray:
    """Coupling weights in [0, 1] around ``center_mm``: a Gaussian blob cut to the brain.

    ``radius_mm`` is the Gaussian's full width at half maximum; weights below 0.05 are
    set to 0 so that uncoupled voxels are exactly uncoupled.
    """
    sigma = radius_mm / 2.3548
    d2 = np.sum((xyz - np.asarray(center_mm)) ** 2, axis=-1)
    weights = np.exp(-0.5 * d2 / sigma**2) * mask
    weights[weights < 0.05] = 0.0
    peak = weights.max()
    return weights / peak if peak > 0 else weights

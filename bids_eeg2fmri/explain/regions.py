"""Regions whose synthesized signal LRP explains: a coarse parcellation of the brain mask
(no atlas download needed), or the simulator's source maps."""

from __future__ import annotations

import numpy as np


def coarse_parcellation(mask: np.ndarray, affine: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Split a brain mask into octants around its centroid (scanner coordinates, RAS+).

    Parameters
    ----------
    mask : ndarray of bool, shape (x, y, z)
    affine : ndarray, shape (4, 4)
        Voxel to scanner (mm) transform of the mask.

    Returns
    -------
    names : list of str
        ``left|right-anterior|posterior-inferior|superior``, octants with voxels only.
    regions : ndarray of float32, shape (n_regions, x, y, z)
        Binary region masks.
    """
    mask = np.asarray(mask, bool)
    ijk = np.argwhere(mask)
    if ijk.size == 0:
        raise ValueError("the brain mask is empty: no region to explain")
    xyz = ijk @ np.asarray(affine)[:3, :3].T + np.asarray(affine)[:3, 3]
    centre = xyz.mean(axis=0)
    names, regions = [], []
    for side, right in (("left", False), ("right", True)):
        for front, anterior in (("posterior", False), ("anterior", True)):
            for level, superior in (("inferior", False), ("superior", True)):
                chosen = (
                    ((xyz[:, 0] >= centre[0]) == right)
                    & ((xyz[:, 1] >= centre[1]) == anterior)
                    & ((xyz[:, 2] >= centre[2]) == superior)
                )
                if not chosen.any():
                    continue
                region = np.zeros(mask.shape, np.float32)
                region[tuple(ijk[chosen].T)] = 1.0
                names.append(f"{side}-{front}-{level}")
                regions.append(region)
    return names, np.stack(regions)

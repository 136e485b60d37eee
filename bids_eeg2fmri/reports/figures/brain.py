"""Brain-slice figures, drawn with :mod:`nilearn.plotting` on axial cuts spread over the
grid: a synthesized volume beside the observed one (same cuts, same grey scale), and the
voxelwise correlation map of synthesized with observed BOLD on the mean observed volume.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bids_eeg2fmri.reports.figures.common import (
    _DIVERGING,
    _finite,
    _new_figure,
    _save,
    _symmetric_limit,
)


def axial_cuts(shape: Sequence[int], affine: np.ndarray, n_slices: int = 6) -> list[float]:
    """World z (mm) of ``n_slices`` axial cuts spread evenly over a grid's extent."""
    shape = np.asarray(shape[:3], dtype=float)
    corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)]) * (shape - 1)
    z = corners @ np.asarray(affine)[2, :3] + np.asarray(affine)[2, 3]
    low, high = float(z.min()), float(z.max())
    if high - low < 1e-6:
        return [low]
    n = max(1, min(int(n_slices), int(shape.max())))
    return [round(float(c), 1) for c in np.linspace(low, high, n + 2)[1:-1]]


def _image(data: np.ndarray, affine: np.ndarray):
    import nibabel as nib

    data = np.nan_to_num(np.asarray(data, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    return nib.Nifti1Image(data, np.asarray(affine, dtype=float))


def plot_synthesized_vs_observed(
    synthesized: np.ndarray,
    observed: np.ndarray | None,
    *,
    affine: np.ndarray,
    path: Path,
    n_slices: int = 6,
    labels: tuple[str, str] = ("observed", "synthesized"),
) -> Path:
    """Axial slices of an observed and a synthesized volume, same cuts and grey scale.

    Parameters
    ----------
    synthesized : ndarray, shape (x, y, z)
    observed : ndarray, shape (x, y, z), or None
        ``None`` (EEG-only run): only the synthesized row is drawn.
    affine : ndarray, shape (4, 4)
        Voxel to scanner (mm) transform shared by both.
    path : Path
        Figure file (``.png`` advised).
    n_slices : int
        Axial cuts per row.
    labels : tuple of str
        Row titles.
    """
    from nilearn import plotting

    rows = (
        [(labels[1], synthesized)]
        if observed is None
        else [(labels[0], observed), (labels[1], synthesized)]
    )
    reference = np.asarray(rows[0][1], dtype=float)
    inside = _finite(reference[reference != 0]) if np.any(reference != 0) else _finite(reference)
    vmin, vmax = np.percentile(inside, [1.0, 99.5]) if inside.size else (0.0, 1.0)
    if vmax <= vmin:
        vmax = vmin + 1.0
    cuts = axial_cuts(np.shape(synthesized), affine, n_slices)
    figure = _new_figure(1.9 * len(cuts) + 1.2, 2.3 * len(rows), facecolor="black")
    height = 1.0 / len(rows)
    for i, (label, data) in enumerate(rows):
        ax = figure.add_axes((0.0, 1.0 - (i + 1) * height, 1.0, height))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            plotting.plot_img(
                _image(data, affine),
                display_mode="z",
                cut_coords=cuts,
                axes=ax,
                figure=figure,
                cmap="gray",
                vmin=float(vmin),
                vmax=float(vmax),
                colorbar=True,
                black_bg=True,
                title=label,
                annotate=True,
                draw_cross=False,
                cbar_tick_format="%.4g",
            )
    return _save(figure, path)


def plot_correlation_map(
    r_map: np.ndarray,
    *,
    affine: np.ndarray,
    path: Path,
    background: np.ndarray | None = None,
    n_slices: int = 6,
) -> Path:
    """Voxelwise r on axial slices of the mean observed BOLD, symmetric colour scale.

    Parameters
    ----------
    r_map : ndarray, shape (x, y, z)
        Pearson r (NaN where undefined; NaN and exact zeros are not coloured).
    affine : ndarray, shape (4, 4)
    path : Path
        Figure file (``.png`` advised).
    background : ndarray, shape (x, y, z), optional
        Mean observed BOLD on the same grid.
    """
    r_map = np.asarray(r_map, dtype=float)
    limit = _symmetric_limit(r_map, percentile=99.5)
    limit = min(1.0, math.ceil(max(limit, 0.05) * 20.0) / 20.0)
    return plot_symmetric_map(
        r_map, affine=affine, path=path, limit=limit, background=background, n_slices=n_slices
    )


def plot_symmetric_map(
    values: np.ndarray,
    *,
    affine: np.ndarray,
    path: Path,
    limit: float | None = None,
    background: np.ndarray | None = None,
    n_slices: int = 6,
) -> Path:
    """A signed map on axial slices with a colour scale symmetric about 0 (``limit``:
    its end; default the 99.5th percentile of |values|); NaN and zeros not coloured."""
    from nilearn import plotting

    values = np.asarray(values, dtype=float)
    if limit is None:
        limit = max(_symmetric_limit(values, percentile=99.5), 1e-12)
    cuts = axial_cuts(values.shape, affine, n_slices)
    figure = _new_figure(1.9 * len(cuts) + 1.2, 2.4, facecolor="black")
    ax = figure.add_axes((0.0, 0.0, 1.0, 1.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plotting.plot_stat_map(
            _image(values, affine),
            bg_img=_image(background, affine) if background is not None else None,
            display_mode="z",
            cut_coords=cuts,
            axes=ax,
            figure=figure,
            vmax=limit,
            symmetric_cbar=True,
            threshold=1e-6 * limit,
            cmap=_DIVERGING,
            colorbar=True,
            black_bg=True,
            annotate=True,
            draw_cross=False,
            cbar_tick_format="%.2g",
        )
    return _save(figure, path)

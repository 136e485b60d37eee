"""Metrics of synthesized against observed BOLD: plain functions on arrays."""

from __future__ import annotations

import numpy as np


def voxelwise_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r along the last (time) axis, for every voxel.

    ``r = sum((a - mean a)(b - mean b)) / sqrt(sum (a - mean a)^2 sum (b - mean b)^2)``,
    NaN where either series is constant. Shapes ``(..., t)`` -> ``(...)``; float64.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    denom = np.sqrt(np.sum(a**2, axis=-1) * np.sum(b**2, axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, np.sum(a * b, axis=-1) / denom, np.nan)


#: SSIM stabilising constants (Wang et al. 2004): ``c1 = (K1 L)^2``, ``c2 = (K2 L)^2``.
K1 = 0.01
K2 = 0.03
#: Side of the Gaussian window of the 2-D SSIM (``tf.image.ssim``'s default), pixels.
SSIM_WINDOW = 11


def _check_volumes(
    pred: np.ndarray, obs: np.ndarray, mask: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Validate ``(x, y, z, t)`` volumes of one shape and an optional ``(x, y, z)`` mask."""
    pred = np.asarray(pred)
    obs = np.asarray(obs)
    if pred.ndim != 4 or pred.shape != obs.shape:
        raise ValueError(
            f"pred and obs must be 4-D (x, y, z, t) arrays of the same shape; received "
            f"{pred.shape} and {obs.shape}. Resample both onto one grid first."
        )
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != pred.shape[:3]:
            raise ValueError(
                f"mask must have the spatial shape of the volumes {pred.shape[:3]}; received "
                f"{mask.shape}."
            )
        if not mask.any():
            raise ValueError("mask selects no voxel; pass a brain mask with at least one voxel.")
    return pred, obs, mask


def _voxels(volume: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Values of one ``(x, y, z)`` volume inside ``mask`` (all when None), float64, 1-D."""
    values = volume[mask] if mask is not None else volume.reshape(-1)
    return np.asarray(values, dtype=np.float64)


def rmse(pred: np.ndarray, obs: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Root mean squared error of every volume.

    ``RMSE_t = sqrt(mean_v (pred[v, t] - obs[v, t])^2)`` over the voxels ``v`` of ``mask``,
    or over the whole volume when ``mask`` is None.

    Parameters
    ----------
    pred, obs : ndarray, shape (x, y, z, t)
        Synthesized and observed BOLD on the same grid (any float unit; RMSE has that unit).
    mask : ndarray of bool, shape (x, y, z), optional

    Returns
    -------
    ndarray, shape (t,), float64
    """
    pred, obs, mask = _check_volumes(pred, obs, mask)
    out = np.empty(pred.shape[-1])
    for t in range(pred.shape[-1]):
        diff = _voxels(pred[..., t], mask) - _voxels(obs[..., t], mask)
        out[t] = np.sqrt(np.mean(diff**2))
    return out


def psnr(pred: np.ndarray, obs: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Peak signal-to-noise ratio of every volume, in dB.

    ``PSNR_t = 20 log10(L_t / RMSE_t)`` with ``L_t = max obs - min obs`` (the range of the
    observed volume) and ``RMSE_t`` as in :func:`rmse`, both over the voxels of ``mask`` (the
    whole volume when None). ``+inf`` when ``RMSE_t == 0``; ``-inf`` when ``L_t == 0`` but
    ``RMSE_t > 0``.

    Parameters
    ----------
    pred, obs : ndarray, shape (x, y, z, t)
    mask : ndarray of bool, shape (x, y, z), optional

    Returns
    -------
    ndarray, shape (t,), float64
    """
    pred, obs, mask = _check_volumes(pred, obs, mask)
    error = rmse(pred, obs, mask)
    out = np.empty(pred.shape[-1])
    for t in range(pred.shape[-1]):
        values = _voxels(obs[..., t], mask)
        data_range = values.max() - values.min()
        if error[t] == 0:
            out[t] = np.inf
        else:
            with np.errstate(divide="ignore"):
                out[t] = 20.0 * np.log10(data_range / error[t])
    return out


def _gaussian_window(size: int, sigma: float) -> np.ndarray:
    """1-D Gaussian weights on ``size`` points centred on the middle one, summing to 1."""
    coords = np.arange(size) - (size - 1) / 2.0
    g = np.exp(-0.5 * coords**2 / sigma**2)
    return g / g.sum()


def _filter_valid(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted moving sum over the first two axes, 'valid' part only.

    ``x`` (nx, ny, ...) -> (nx - w + 1, ny - w + 1, ...) with ``w = weights.size``; the 2-D
    window is ``outer(weights, weights)`` (separable).
    """
    from numpy.lib.stride_tricks import sliding_window_view

    w = weights.size
    x = sliding_window_view(x, w, axis=0) @ weights
    return sliding_window_view(x, w, axis=1) @ weights


def ssim_original(pred: np.ndarray, obs: np.ndarray, *, step: int = 3) -> np.ndarray:
    """SSIM of every volume as the original package computed it (2-D, axial slices).

    For volume ``t``: ``a = pred[..., t] + 1e-9``, ``b = obs[..., t] + 1e-9``; for the axial
    slices ``z = 0, step, 2 step, ...`` the 2-D SSIM of ``a[:, :, z]`` and ``b[:, :, z]`` as
    ``tf.image.ssim(a, b, max_val=L)`` computes it with ``L = max(a.max(), b.max())`` over
    the slice (the larger maximum, *not* a range); then the mean over those slices.

    The 2-D SSIM (TensorFlow's ``_ssim_per_channel``): with ``G`` the 11 x 11 Gaussian
    window (sigma 1.5 pixels, weights summing to 1) applied in 'valid' mode (no padding, so
    the map has ``(nx - 10) x (ny - 10)`` pixels), ``mu_a = G * a``, ``mu_b = G * b``,
    ``s_ab = G * (a b) - mu_a mu_b``, ``s_aa = G * a^2 - mu_a^2`` (likewise ``s_bb``),
    ``c1 = (0.01 L)^2``, ``c2 = (0.03 L)^2`` (TensorFlow's covariance compensation factor
    is 1, i.e. biased weighted covariances)::

        SSIM = mean over the map of
               (2 mu_a mu_b + c1) / (mu_a^2 + mu_b^2 + c1)
             * (2 s_ab + c2) / (s_aa + s_bb + c2)

    TensorFlow computes in float32; this function computes in float64 (they agree to about
    1e-6 on data of unit scale).

    Parameters
    ----------
    pred, obs : ndarray, shape (x, y, z, t)
        Synthesized and observed BOLD on the same grid.
    step : int
        Every ``step``-th axial slice is used, starting with slice 0.

    Returns
    -------
    ndarray, shape (t,), float64

    Raises
    ------
    ValueError
        If a slice is smaller than the 11 x 11 window (``x < 11`` or ``y < 11``), as
        ``tf.image.ssim`` also refuses; no smaller window is substituted, because the value
        would no longer be comparable with the original. Use :func:`ssim3d` on such grids.
    """
    pred, obs, _ = _check_volumes(pred, obs, None)
    if step < 1:
        raise ValueError(f"step must be a positive integer; received {step}.")
    if min(pred.shape[:2]) < SSIM_WINDOW:
        raise ValueError(
            f"ssim_original needs axial slices of at least {SSIM_WINDOW} x {SSIM_WINDOW} "
            f"voxels (the window of tf.image.ssim); received {pred.shape[0]} x "
            f"{pred.shape[1]}. Use ssim3d for grids this small."
        )
    weights = _gaussian_window(SSIM_WINDOW, 1.5)
    out = np.empty(pred.shape[-1])
    for t in range(pred.shape[-1]):
        a = np.asarray(pred[:, :, ::step, t], dtype=np.float64) + 1e-9  # (x, y, n_slices)
        b = np.asarray(obs[:, :, ::step, t], dtype=np.float64) + 1e-9
        top = np.maximum(a.max(axis=(0, 1)), b.max(axis=(0, 1)))  # (n_slices,)
        c1 = (K1 * top) ** 2
        c2 = (K2 * top) ** 2
        mu_a = _filter_valid(a, weights)
        mu_b = _filter_valid(b, weights)
        mu_ab = mu_a * mu_b
        mu_sq = mu_a**2 + mu_b**2
        luminance = (2.0 * mu_ab + c1) / (mu_sq + c1)
        cross = _filter_valid(a * b, weights)
        squares = _filter_valid(a**2 + b**2, weights)
        structure = (2.0 * (cross - mu_ab) + c2) / (squares - mu_sq + c2)
        out[t] = np.mean(np.mean(luminance * structure, axis=(0, 1)))
    return out


def ssim3d(
    pred: np.ndarray, obs: np.ndarray, mask: np.ndarray, *, sigma: float = 1.5
) -> np.ndarray:
    """3-D structural similarity of every volume, averaged inside the mask.

    With ``G`` a 3-D Gaussian filter of standard deviation ``sigma`` voxels
    (``scipy.ndimage.gaussian_filter``, truncated at 3.5 sigma: 11 voxels wide for
    sigma 1.5, borders reflected), ``x = pred[..., t]``, ``y = obs[..., t]``::

        mu_x = G x,   s_xx = G x^2 - mu_x^2,   s_xy = G (x y) - mu_x mu_y   (likewise y)
        SSIM(v) = (2 mu_x mu_y + c1)(2 s_xy + c2) / ((mu_x^2 + mu_y^2 + c1)(s_xx + s_yy + c2))
        SSIM_t  = mean of SSIM(v) over the voxels v of mask

    with ``c1 = (0.01 L)^2``, ``c2 = (0.03 L)^2`` and ``L = max obs - min obs`` inside the
    mask (per volume). The whole volume is filtered (voxels outside the mask enter the local
    moments near the mask's edge); only the average is restricted to the mask. NaN when
    ``L == 0`` and the local moments are all equal (0 / 0).

    Parameters
    ----------
    pred, obs : ndarray, shape (x, y, z, t)
    mask : ndarray of bool, shape (x, y, z)
    sigma : float
        Width of the Gaussian window, voxels.

    Returns
    -------
    ndarray, shape (t,), float64
    """
    from scipy.ndimage import gaussian_filter

    pred, obs, mask = _check_volumes(pred, obs, mask)
    if mask is None:
        raise ValueError("ssim3d needs a brain mask of shape (x, y, z); received None.")

    def smooth(v: np.ndarray) -> np.ndarray:
        return gaussian_filter(v, sigma, truncate=3.5, mode="reflect")

    out = np.empty(pred.shape[-1])
    for t in range(pred.shape[-1]):
        x = np.asarray(pred[..., t], dtype=np.float64)
        y = np.asarray(obs[..., t], dtype=np.float64)
        inside = y[mask]
        data_range = inside.max() - inside.min()
        c1 = (K1 * data_range) ** 2
        c2 = (K2 * data_range) ** 2
        mu_x = smooth(x)[mask]
        mu_y = smooth(y)[mask]
        s_xx = smooth(x * x)[mask] - mu_x**2
        s_yy = smooth(y * y)[mask] - mu_y**2
        s_xy = smooth(x * y)[mask] - mu_x * mu_y
        with np.errstate(invalid="ignore", divide="ignore"):
            ssim_map = ((2 * mu_x * mu_y + c1) * (2 * s_xy + c2)) / (
                (mu_x**2 + mu_y**2 + c1) * (s_xx + s_yy + c2)
            )
        out[t] = np.mean(ssim_map)
    return out


def summarize_r(r: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Mean, median and 90th percentile of voxelwise r inside a mask.

    Parameters
    ----------
    r : ndarray, shape (x, y, z)
        E.g. from :func:`voxelwise_pearson`; NaN (constant series) and inf are ignored.
    mask : ndarray of bool, shape (x, y, z)

    Returns
    -------
    dict
        ``{"mean": ..., "median": ..., "p90": ...}`` over the finite values of ``r[mask]``;
        each NaN when there is none.
    """
    r = np.asarray(r, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    if r.shape != mask.shape:
        raise ValueError(f"r and mask must have one shape; received {r.shape} and {mask.shape}.")
    values = r[mask]
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {"mean": float("nan"), "median": float("nan"), "p90": float("nan")}
    return {
        "mean": float(np.mean(values)),
        "median": float(np.median(values)),
        "p90": float(np.percentile(values, 90)),
    }

"""Report figures: plain functions that take arrays or tables and write one figure file.

Every function draws on its own :class:`matplotlib.figure.Figure` with an Agg canvas
attached, never through :mod:`matplotlib.pyplot`: no global backend is set, no figure is
left open in pyplot's registry, and the report can be built from any process (a notebook
with an interactive backend included). Files are written atomically (temporary name in the
same folder, then renamed); the format follows the suffix of ``path`` (``.svg`` for line
art, ``.png`` for brain slices).

Brain slices are drawn with :mod:`nilearn.plotting`, scalp maps with
:func:`mne.viz.plot_topomap`; channel positions come from MNE's template 10-05 montage,
looked up by name (case-insensitive). Channels it does not know are left out of scalp
figures, and the figure says so.
"""

from __future__ import annotations

import functools
import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from bids_eeg2fmri.bidsio.files import write_atomic
from bids_eeg2fmri.evaluation.tables import RUN_COLUMNS

LOGGER = logging.getLogger(__name__)

#: EEG frequency bands (name, lowest Hz included, highest Hz excluded) of the relevance maps.
BANDS: tuple[tuple[str, float, float], ...] = (
    ("delta", 1.0, 4.0),
    ("theta", 4.0, 8.0),
    ("alpha", 8.0, 13.0),
    ("beta", 13.0, 30.0),
    ("gamma", 30.0, math.inf),
)

#: Metrics of ``*_desc-synth_metrics.tsv`` that hold one value per run (repeated on rows).
RUN_LEVEL_METRICS = RUN_COLUMNS

#: Axis labels of the metrics.
METRIC_LABELS = {
    "r_mask_mean": "mean r in the brain mask",
    "r_mask_median": "median r in the brain mask",
    "r_mask_p90": "90th percentile of r (mask)",
    "r_coupled_mean": "mean r, coupled voxels",
    "noise_ceiling_mean": "noise ceiling (mean r)",
    "fraction_of_ceiling": "fraction of the noise ceiling",
    "rmse_mask": "RMSE in the brain mask",
    "rmse_volume": "RMSE, whole volume",
    "ssim_original": "SSIM (original, 2-D slices)",
    "ssim_mask": "SSIM (3-D, brain mask)",
    "psnr_mask": "PSNR in the brain mask (dB)",
}

#: Baselines after the model, in this order; other methods follow alphabetically.
METHOD_ORDER = ("model", "ridge", "mean-volume")

_MONTAGE_NAMES = ("colin27_1005", "standard_1005")
_DIVERGING = "RdBu_r"


# --------------------------------------------------------------------------------------
# Plumbing


def _new_figure(width: float, height: float, **kwargs):
    """A figure with its own Agg canvas (no pyplot, no global backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), **kwargs)
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: Path, *, dpi: int = 100) -> Path:
    """Write ``figure`` to ``path`` atomically; the format is the suffix of ``path``."""
    import matplotlib

    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in ("svg", "png"):
        raise ValueError(f"figure path must end in .svg or .png, got {path.name!r}")
    # Fixed ids and no date: the same figure gives the same bytes.
    metadata = {"Date": None} if fmt == "svg" else {"Software": None}

    def writer(tmp: Path) -> None:
        with matplotlib.rc_context({"svg.hashsalt": "bids-eeg2fmri"}):
            figure.savefig(
                tmp,
                format=fmt,
                dpi=dpi,
                bbox_inches="tight",
                metadata=metadata,
                facecolor=figure.get_facecolor(),
            )

    try:
        return write_atomic(path, writer, suffix=path.suffix)
    finally:
        figure.clear()


def _finite(values) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    return values[np.isfinite(values)]


def _symmetric_limit(values, *, percentile: float = 100.0) -> float:
    """Largest absolute value (or a percentile of it): the ends of a symmetric colour scale."""
    finite = np.abs(_finite(values))
    if finite.size == 0 or finite.max() == 0:
        return 1.0
    limit = float(np.percentile(finite, percentile))
    return limit if limit > 0 else float(finite.max())


def order_methods(methods: Sequence[str]) -> list[str]:
    """Methods in report order: the model, then the known baselines, then the others."""
    unique = list(dict.fromkeys(str(m) for m in methods))
    known = [m for m in METHOD_ORDER if m in unique]
    return known + sorted(m for m in unique if m not in METHOD_ORDER)


def _truthy(values) -> np.ndarray:
    """``true``/``false`` column (strings or booleans) as bool."""
    return np.array([str(v).strip().lower() in ("true", "1", "yes") for v in values], bool)


# --------------------------------------------------------------------------------------
# Channel positions


@functools.lru_cache(maxsize=1)
def _template_positions() -> tuple[dict[str, tuple[str, np.ndarray]], tuple[float, ...]]:
    """Head-frame positions (m) of MNE's template 10-05 montage, by lower-case name, and
    the sphere (x, y, z, radius) whose equator passes through Fpz, Oz, T7 and T8."""
    import mne

    builtin = set(mne.channels.get_builtin_montages())
    name = next((n for n in _MONTAGE_NAMES if n in builtin), _MONTAGE_NAMES[-1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        montage = mne.channels.make_standard_montage(name)
    info = mne.create_info(montage.ch_names, 1000.0, "eeg")
    with mne.utils.use_log_level("error"):
        info.set_montage(montage)
    lookup = {ch["ch_name"].lower(): (ch["ch_name"], ch["loc"][:3].copy()) for ch in info["chs"]}
    fpz, oz, t7, t8 = (lookup[c][1] for c in ("fpz", "oz", "t7", "t8"))
    centre = np.array(
        [(t7[0] + t8[0]) / 2, (fpz[1] + oz[1]) / 2, (fpz[2] + oz[2] + t7[2] + t8[2]) / 4]
    )
    radius = (np.linalg.norm(fpz - oz) + np.linalg.norm(t7 - t8)) / 4
    return lookup, (*(float(c) for c in centre), float(radius))


def known_channels(channels: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split channel names into those the template 10-05 montage places and the others.

    Returns
    -------
    kept, dropped : list of str
        In input order; a name met twice (case-insensitively) is kept once.
    """
    lookup, _ = _template_positions()
    kept, dropped, seen = [], [], set()
    for channel in channels:
        key = str(channel).lower()
        if key in seen:
            continue
        seen.add(key)
        (kept if key in lookup else dropped).append(str(channel))
    return kept, dropped


def _eeg_info(channels: Sequence[str]):
    """An MNE ``Info`` for the known ``channels`` (template positions, head frame)."""
    import mne

    lookup, _ = _template_positions()
    montage = mne.channels.make_dig_montage(
        ch_pos={c: lookup[c.lower()][1] for c in channels}, coord_frame="head"
    )
    info = mne.create_info(list(channels), 1000.0, "eeg")
    with mne.utils.use_log_level("error"):
        info.set_montage(montage)
    return info


def _project(channels: Sequence[str]) -> np.ndarray:
    """2-D positions (azimuthal equidistant from the vertex): the Fpz-T7-Oz-T8 circle has
    radius 1, the nose points up (+y), the right ear right (+x). Shape (n, 2)."""
    lookup, sphere = _template_positions()
    xyz = np.array([lookup[c.lower()][1] for c in channels]) - np.asarray(sphere[:3])
    polar = np.arccos(np.clip(xyz[:, 2] / np.linalg.norm(xyz, axis=1), -1.0, 1.0))
    azimuth = np.arctan2(xyz[:, 1], xyz[:, 0])
    rho = polar / (np.pi / 2)
    return np.column_stack([rho * np.cos(azimuth), rho * np.sin(azimuth)])


def _draw_head(ax) -> None:
    """Head outline (unit circle), nose and ears on ``ax``, in :func:`_project` units."""
    theta = np.linspace(0, 2 * np.pi, 181)
    style = {"color": "0.25", "lw": 1.2}
    ax.plot(np.cos(theta), np.sin(theta), **style)
    ax.plot([-0.09, 0.0, 0.09], [0.995, 1.11, 0.995], **style)
    ear = np.linspace(-0.5, 0.5, 40) * np.pi
    for side in (-1, 1):
        ax.plot(side * (1.0 + 0.06 * np.cos(ear)), 0.16 * np.sin(ear), **style)
    ax.set_aspect("equal")
    ax.set_axis_off()


def _dropped_note(figure, dropped: Sequence[str]) -> None:
    if dropped:
        shown = ", ".join(dropped[:12]) + (" ..." if len(dropped) > 12 else "")
        figure.text(
            0.01,
            0.0,
            f"Not shown (no template 10-05 position): {shown}",
            fontsize=8,
            color="0.35",
            va="top",
        )


def _colour_scale(values: np.ndarray, limit: float) -> tuple[str, float, float]:
    """Colour map and range: sequential from 0 for values that are never negative (e.g.
    an absolute relevance), else diverging and symmetric around 0."""
    finite = np.asarray(values)[np.isfinite(values)]
    if finite.size and finite.min() >= 0:
        return "Reds", 0.0, limit
    return _DIVERGING, -limit, limit


def _topomap(ax, values: np.ndarray, info, limit: float, nonnegative: bool = False):
    import mne

    _, sphere = _template_positions()
    with mne.utils.use_log_level("error"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        image, _ = mne.viz.plot_topomap(
            values,
            info,
            axes=ax,
            show=False,
            cmap="Reds" if nonnegative else _DIVERGING,
            vlim=(0.0, limit) if nonnegative else (-limit, limit),
            sphere=sphere,
            contours=4,
            sensors=len(values) <= 64,
        )
    return image


# --------------------------------------------------------------------------------------
# a. Volume onsets


def plot_volume_onsets(
    onsets: np.ndarray,
    *,
    tr: float,
    path: Path,
    volumes: np.ndarray | None = None,
    how: Sequence[str] | None = None,
) -> Path:
    """Deviation of each volume onset from the straight line fitted through them.

    Top: ``onset - (t0 + TR_fit * volume)`` (ms) against the volume index; bottom: the
    interval to the previous onset minus the nominal ``tr`` (ms). Onsets are coloured by
    how they were obtained (``how``: e.g. ``found`` markers, ``repaired`` ones).

    Parameters
    ----------
    onsets : ndarray, shape (n_volumes,)
        Volume onsets on the EEG clock, in s.
    tr : float
        Nominal repetition time, in s.
    path : Path
        Figure file (``.svg`` or ``.png``).
    volumes : ndarray of int, shape (n_volumes,), optional
        Volume indices (default ``0 .. n_volumes - 1``).
    how : sequence of str, shape (n_volumes,), optional
        How each onset was obtained.
    """
    onsets = np.asarray(onsets, dtype=float)
    volumes = np.arange(onsets.size) if volumes is None else np.asarray(volumes, dtype=float)
    how = np.array(["onset"] * onsets.size if how is None else [str(h) for h in how])
    finite = np.isfinite(onsets) & np.isfinite(volumes)
    onsets, volumes, how = onsets[finite], volumes[finite], how[finite]
    if onsets.size >= 2:
        slope, intercept = np.polyfit(volumes, onsets, 1)
    else:
        slope, intercept = float(tr), float(onsets[0]) if onsets.size else 0.0
    deviation = (onsets - (intercept + slope * volumes)) * 1000.0
    interval = np.diff(onsets) - float(tr)

    figure = _new_figure(8.0, 4.6)
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    palette = {"found": "C0", "marker": "C0", "repaired": "C3", "given": "C2", "assumed": "C4"}
    for i, kind in enumerate(dict.fromkeys(how)):
        chosen = how == kind
        colour = palette.get(kind, f"C{(i + 5) % 10}")
        marker = "x" if kind == "repaired" else "o"
        top.scatter(
            volumes[chosen],
            deviation[chosen],
            s=14,
            color=colour,
            marker=marker,
            label=f"{kind} ({chosen.sum()})",
            zorder=3,
        )
        later = chosen[1:]
        bottom.scatter(
            volumes[1:][later],
            interval[later] * 1000.0,
            s=10,
            color=colour,
            marker=marker,
            zorder=3,
        )
    for ax in (top, bottom):
        ax.axhline(0.0, color="0.4", lw=0.8)
        ax.grid(True, color="0.9")
    top.set_ylabel("deviation from\nfitted grid (ms)")
    bottom.set_ylabel("interval - TR (ms)")
    bottom.set_xlabel("volume")
    top.legend(loc="best", fontsize=8, frameon=False)
    top.set_title(
        f"{onsets.size} volumes; fitted TR {slope:.6g} s (nominal {tr:.6g} s), "
        f"first onset {intercept:.3f} s",
        fontsize=10,
    )
    figure.tight_layout()
    return _save(figure, path)


# --------------------------------------------------------------------------------------
# b, c. Brain slices


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
    from nilearn import plotting

    r_map = np.asarray(r_map, dtype=float)
    limit = _symmetric_limit(r_map, percentile=99.5)
    limit = min(1.0, math.ceil(max(limit, 0.05) * 20.0) / 20.0)
    cuts = axial_cuts(r_map.shape, affine, n_slices)
    figure = _new_figure(1.9 * len(cuts) + 1.2, 2.4, facecolor="black")
    ax = figure.add_axes((0.0, 0.0, 1.0, 1.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plotting.plot_stat_map(
            _image(r_map, affine),
            bg_img=_image(background, affine) if background is not None else None,
            display_mode="z",
            cut_coords=cuts,
            axes=ax,
            figure=figure,
            vmax=limit,
            symmetric_cbar=True,
            threshold=1e-6,
            cmap=_DIVERGING,
            colorbar=True,
            black_bg=True,
            annotate=True,
            draw_cross=False,
            cbar_tick_format="%.2g",
        )
    return _save(figure, path)


# --------------------------------------------------------------------------------------
# d. Metrics of the model and the baselines


def plot_method_metrics(
    table,
    *,
    path: Path,
    metrics: Sequence[str] = ("r_mask_mean", "rmse_mask", "ssim_original", "ssim_mask"),
) -> Path:
    """One panel per metric, one column per method (the model first).

    Per-volume metrics are drawn as a box plot with one point per volume (grey: volumes
    the model was trained on, coloured: the others); run-level metrics (the r summaries)
    as one marker with its value.

    Parameters
    ----------
    table : pandas.DataFrame
        Rows of ``*_desc-synth_metrics.tsv``: ``method``, the ``metrics`` columns and,
        optionally, ``in_training``.
    path : Path
        Figure file.
    metrics : sequence of str
        Columns to draw; missing ones are skipped.
    """
    metrics = [m for m in metrics if m in table.columns]
    methods = order_methods(table["method"])
    figure = _new_figure(max(3.0, 2.9 * max(len(metrics), 1)), 3.4)
    axes = figure.subplots(1, max(len(metrics), 1), squeeze=False)[0]
    trained = (
        _truthy(table["in_training"]) if "in_training" in table else np.zeros(len(table), bool)
    )
    rng = np.random.default_rng(0)
    for ax, metric in zip(axes, metrics, strict=False):
        values = np.asarray(table[metric], dtype=float)
        for x, method in enumerate(methods):
            rows = np.asarray(table["method"] == method)
            colour = f"C{x}"
            finite = np.isfinite(values) & rows
            if not finite.any():
                ax.text(
                    x,
                    0.5,
                    "n/a",
                    transform=ax.get_xaxis_transform(),
                    ha="center",
                    color="0.4",
                    fontsize=9,
                )
                continue
            if metric in RUN_LEVEL_METRICS:
                value = float(values[finite][0])
                ax.bar([x], [value], width=0.55, color=colour, alpha=0.8, zorder=2)
                ax.annotate(
                    f"{value:.3f}",
                    (x, value),
                    textcoords="offset points",
                    xytext=(0, 3 if value >= 0 else -3),
                    ha="center",
                    va="bottom" if value >= 0 else "top",
                    fontsize=8,
                )
                continue
            ax.boxplot(
                [values[finite]],
                positions=[x],
                widths=0.55,
                showfliers=False,
                medianprops={"color": "k"},
                boxprops={"color": "0.3"},
            )
            jitter = rng.uniform(-0.18, 0.18, size=finite.sum())
            ax.scatter(
                x + jitter,
                values[finite],
                s=6,
                alpha=0.6,
                zorder=3,
                linewidths=0,
                color=np.where(trained[finite], "0.65", colour).tolist(),
                rasterized=True,
            )
        ax.set_xticks(range(len(methods)), methods, rotation=20)
        ax.set_xlim(-0.6, len(methods) - 0.4)
        ax.set_title(METRIC_LABELS.get(metric, metric), fontsize=10)
        ax.grid(True, axis="y", color="0.9")
        if metric in RUN_LEVEL_METRICS:
            ax.axhline(0.0, color="0.5", lw=0.8)
            ax.margins(y=0.15)
    if trained.any():
        figure.text(
            0.01, 0.0, "grey points: volumes used in training", fontsize=8, color="0.35", va="top"
        )
    figure.tight_layout()
    return _save(figure, path)


# --------------------------------------------------------------------------------------
# e. Relevance


def band_of(frequency: float, bands=BANDS) -> str | None:
    """Name of the band holding ``frequency`` (Hz), or ``None``."""
    for name, low, high in bands:
        if low <= frequency < high:
            return name
    return None


def band_relevance(relevance, *, bands=BANDS, by: Sequence[str] = ("region", "channel")):
    """Relevance per band: summed over everything not in ``by`` at each frequency, then
    averaged over the frequency bins of the band (a density: bands span different numbers
    of bins, and a sum would favour the wide ones, gamma above all).

    Parameters
    ----------
    relevance : pandas.DataFrame
        Long table with ``frequency`` (Hz), ``relevance`` and the ``by`` columns (e.g.
        ``*_desc-lrp_relevance.tsv``: region, channel, frequency, lag, relevance).
    bands : sequence of (name, low, high)
        Frequencies outside every band are left out.
    by : sequence of str
        Columns kept apart besides the band.

    Returns
    -------
    pandas.DataFrame
        Columns ``*by``, ``band`` (ordered categorical), ``relevance``.
    """
    import pandas as pd

    table = relevance.copy()
    freqs = pd.to_numeric(table["frequency"], errors="coerce")
    names = [name for name, _, _ in bands]
    lookup = {f: band_of(f, bands) for f in freqs.dropna().unique()}
    table["band"] = pd.Categorical(freqs.map(lookup), categories=names, ordered=True)
    table["relevance"] = pd.to_numeric(table["relevance"], errors="coerce")
    table = table.dropna(subset=["band", "relevance"])
    keys = [*by, "band"]
    per_bin = table.groupby([*keys, "frequency"], observed=True, sort=False)["relevance"].sum()
    return per_bin.groupby(level=keys, observed=True, sort=False).mean().reset_index()


def _ordered_regions(regions) -> list[str]:
    unique = list(dict.fromkeys(str(r) for r in regions))
    return (["volume"] if "volume" in unique else []) + [r for r in unique if r != "volume"]


def plot_relevance_topomaps(bands_table, *, path: Path, title: str | None = None) -> Path:
    """Scalp maps of relevance: one row per region, one column per frequency band.

    Each row has its own colour scale (shown at its right; symmetric around 0 unless every
    value is positive), so that the spatial pattern of every region is readable; values
    compare within a row only.

    Parameters
    ----------
    bands_table : pandas.DataFrame
        Columns ``region``, ``channel``, ``band``, ``relevance`` (see
        :func:`band_relevance`).
    path : Path
        Figure file.
    title : str, optional
    """
    regions = _ordered_regions(bands_table["region"])
    band_names = [n for n, _, _ in BANDS if n in set(bands_table["band"].astype(str))]
    kept, dropped = known_channels(list(dict.fromkeys(bands_table["channel"].astype(str))))
    if len(kept) < 4:
        raise ValueError(
            f"a scalp map needs at least 4 channels with a template 10-05 position; got "
            f"{len(kept)} ({', '.join(kept) or 'none'}) of {len(kept) + len(dropped)}"
        )
    info = _eeg_info(kept)
    index = {c.lower(): i for i, c in enumerate(kept)}
    n_rows, n_cols = len(regions), max(len(band_names), 1)
    figure = _new_figure(1.75 * n_cols + 1.6, 1.75 * n_rows + (0.5 if title else 0.2))
    grid = figure.add_gridspec(
        n_rows, n_cols + 1, width_ratios=[1.0] * n_cols + [0.08], wspace=0.08, hspace=0.12
    )
    for row, region in enumerate(regions):
        sub = bands_table[bands_table["region"].astype(str) == region]
        maps = np.full((n_cols, len(kept)), np.nan)
        for _, entry in sub.iterrows():
            key = str(entry["channel"]).lower()
            if key in index and str(entry["band"]) in band_names:
                maps[band_names.index(str(entry["band"])), index[key]] = entry["relevance"]
        limit = _symmetric_limit(maps)
        nonnegative = _colour_scale(maps, limit)[1] == 0.0
        image = None
        for col, band in enumerate(band_names):
            ax = figure.add_subplot(grid[row, col])
            values = np.nan_to_num(maps[col], nan=0.0)
            image = _topomap(ax, values, info, limit, nonnegative)
            if row == 0:
                low, high = next((lo, hi) for n, lo, hi in BANDS if n == band)
                span = f"{low:g}-{high:g} Hz" if np.isfinite(high) else f">= {low:g} Hz"
                ax.set_title(f"{band}\n{span}", fontsize=9)
            if col == 0:
                ax.text(
                    -0.08,
                    0.5,
                    region.replace("-", "\n"),
                    transform=ax.transAxes,
                    ha="right",
                    va="center",
                    fontsize=9,
                )
        if image is not None:
            bar = figure.colorbar(image, cax=figure.add_subplot(grid[row, n_cols]))
            bar.ax.tick_params(labelsize=7)
            bar.formatter.set_powerlimits((-2, 3))
    if title:
        figure.suptitle(title, fontsize=11)
    _dropped_note(figure, dropped)
    return _save(figure, path)


def plot_relevance_lags(relevance, *, path: Path) -> Path:
    """Relevance by frequency band and lag, summed over channels: one heat map per region.

    Parameters
    ----------
    relevance : pandas.DataFrame
        The long table of ``*_desc-lrp_relevance.tsv`` (region, channel, frequency, lag,
        relevance).
    path : Path
        Figure file.
    """
    import pandas as pd

    table = band_relevance(relevance, by=("region", "lag"))
    table["lag"] = pd.to_numeric(table["lag"], errors="coerce")
    regions = _ordered_regions(table["region"])
    band_names = [n for n, _, _ in BANDS if n in set(table["band"].astype(str))]
    lags = sorted(table["lag"].dropna().unique())
    n_cols = min(len(regions), 3)
    n_rows = math.ceil(len(regions) / n_cols)
    figure = _new_figure(3.3 * n_cols + 0.8, 2.3 * n_rows + 0.3)
    axes = figure.subplots(n_rows, n_cols, squeeze=False)
    for ax in axes.flat[len(regions) :]:
        ax.set_axis_off()
    for ax, region in zip(axes.flat, regions, strict=False):
        sub = table[table["region"].astype(str) == region]
        grid = np.zeros((len(band_names), len(lags)))
        for _, entry in sub.iterrows():
            if str(entry["band"]) in band_names and entry["lag"] in lags:
                grid[band_names.index(str(entry["band"])), lags.index(entry["lag"])] = entry[
                    "relevance"
                ]
        cmap, vmin, vmax = _colour_scale(grid, _symmetric_limit(grid))
        image = ax.imshow(
            grid, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest"
        )
        ax.set_yticks(range(len(band_names)), band_names, fontsize=8)
        ax.set_xticks(range(len(lags)), [f"{lag:.0f}" for lag in lags], fontsize=8)
        ax.set_xlabel("lag before the volume onset (s)", fontsize=8)
        ax.set_title(region, fontsize=9)
        bar = figure.colorbar(image, ax=ax, fraction=0.05, pad=0.03)
        bar.ax.tick_params(labelsize=7)
        bar.formatter.set_powerlimits((-2, 3))
    figure.tight_layout()
    return _save(figure, path)


# --------------------------------------------------------------------------------------
# f. Attention graph


def plot_attention_graph(
    weights: np.ndarray,
    *,
    channels: Sequence[str],
    path: Path,
    top_fraction: float = 0.01,
) -> Path:
    """The strongest channel-to-channel attention weights on the scalp, and the matrix.

    Left: channels at their template positions; a line joins channel i to channel j for
    the largest ``top_fraction`` of the off-diagonal weights (at least 3), thicker for
    larger weights. Right: the whole matrix (row i: how channel i weighs channels j).

    Parameters
    ----------
    weights : ndarray, shape (n_channels, n_channels)
        Row-stochastic attention matrix (mean over volumes).
    channels : sequence of str, shape (n_channels,)
    path : Path
        Figure file.
    top_fraction : float
        Fraction of the off-diagonal weights drawn as edges.
    """
    weights = np.asarray(weights, dtype=float)
    channels = [str(c) for c in channels]
    n = len(channels)
    if weights.shape != (n, n):
        raise ValueError(f"weights must be ({n}, {n}) for {n} channels, got {weights.shape}")
    kept, dropped = known_channels(channels)
    position = dict(zip(kept, _project(kept), strict=True)) if kept else {}

    figure = _new_figure(11.0, 5.4)
    head, matrix = figure.subplots(1, 2, gridspec_kw={"width_ratios": [1.0, 1.15]})
    _draw_head(head)
    idx = [channels.index(c) for c in kept]
    sub = weights[np.ix_(idx, idx)] if idx else np.zeros((0, 0))
    off = ~np.eye(len(idx), dtype=bool)
    candidates = np.flatnonzero(off.ravel() & np.isfinite(sub.ravel()))
    if candidates.size:
        n_edges = min(candidates.size, max(3, math.ceil(top_fraction * candidates.size)))
        strongest = candidates[np.argsort(sub.ravel()[candidates])[::-1][:n_edges]]
        top = sub.ravel()[strongest]
        span = max(float(top.max() - top.min()), 1e-12)
        for flat, value in zip(strongest[::-1], top[::-1], strict=True):
            i, j = divmod(int(flat), len(idx))
            (x0, y0), (x1, y1) = position[kept[i]], position[kept[j]]
            strength = (value - top.min()) / span
            head.annotate(
                "",
                xy=(x1, y1),
                xytext=(x0, y0),
                zorder=2,
                arrowprops={
                    "arrowstyle": "-|>",
                    "lw": 0.6 + 2.4 * strength,
                    "alpha": 0.35 + 0.6 * strength,
                    "color": "C3",
                    "shrinkA": 3,
                    "shrinkB": 3,
                    "mutation_scale": 8,
                },
            )
        head.set_title(
            f"strongest {n_edges} of {candidates.size} weights "
            f"({top.min():.3g}-{top.max():.3g}; uniform = {1 / n:.3g})",
            fontsize=9,
        )
    if kept:
        xy = np.array([position[c] for c in kept])
        head.scatter(xy[:, 0], xy[:, 1], s=14, color="k", zorder=3)
        for c, (x, y) in zip(kept, xy, strict=True):
            head.text(
                x, y + 0.035, c, fontsize=6 if n > 32 else 8, ha="center", va="bottom", zorder=4
            )
    head.set_xlim(-1.25, 1.25)
    head.set_ylim(-1.25, 1.25)

    image = matrix.imshow(weights, cmap="viridis", interpolation="nearest", vmin=0.0)
    size = 8 if n <= 16 else 6 if n <= 32 else 4
    matrix.set_xticks(range(n), channels, rotation=90, fontsize=size)
    matrix.set_yticks(range(n), channels, fontsize=size)
    matrix.set_xlabel("attended channel j")
    matrix.set_ylabel("channel i")
    bar = figure.colorbar(image, ax=matrix, fraction=0.046, pad=0.03)
    bar.set_label("weight", fontsize=8)
    _dropped_note(figure, dropped)
    figure.tight_layout()
    return _save(figure, path)


# --------------------------------------------------------------------------------------
# g. Training curves


def plot_training_history(history: Mapping[str, Sequence[float]], *, path: Path) -> Path:
    """Training curves: one panel per quantity, training and validation (``val_``) together.

    The y axis is logarithmic when a panel's positive values span more than a factor 30;
    a dotted line marks the epoch of the lowest ``val_loss`` (the kept weights, with early
    stopping).

    Parameters
    ----------
    history : mapping of str to sequence of float
        Per-epoch values, as Keras' ``History.history``.
    path : Path
        Figure file.
    """
    curves = {
        str(k): np.asarray(v, dtype=float)
        for k, v in history.items()
        if isinstance(v, Sequence) and not isinstance(v, str) and len(v) > 0
    }
    if not curves:
        raise ValueError("the training history holds no per-epoch values")
    names = list(dict.fromkeys(k.removeprefix("val_") for k in curves))
    names = (["loss"] if "loss" in names else []) + sorted(n for n in names if n != "loss")
    names = names[:9]
    best = None
    if "val_loss" in curves and np.isfinite(curves["val_loss"]).any():
        best = int(np.nanargmin(curves["val_loss"])) + 1
    n_cols = min(len(names), 3)
    n_rows = math.ceil(len(names) / n_cols)
    figure = _new_figure(3.6 * n_cols, 2.7 * n_rows)
    axes = figure.subplots(n_rows, n_cols, squeeze=False)
    for ax in axes.flat[len(names) :]:
        ax.set_axis_off()
    for ax, name in zip(axes.flat, names, strict=False):
        shown = []
        for key, label, style in ((name, "training", "-"), (f"val_{name}", "validation", "--")):
            if key in curves:
                values = curves[key]
                ax.plot(np.arange(1, values.size + 1), values, style, label=label, lw=1.4)
                shown.append(values)
        positive = _finite(np.concatenate(shown))
        positive = positive[positive > 0]
        if positive.size and positive.size == _finite(np.concatenate(shown)).size:
            if positive.max() / positive.min() > 30:
                ax.set_yscale("log")
        if best is not None:
            ax.axvline(best, color="0.5", ls=":", lw=1)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("epoch", fontsize=8)
        ax.grid(True, color="0.92")
        ax.legend(fontsize=7, frameon=False)
    figure.tight_layout()
    return _save(figure, path)


# --------------------------------------------------------------------------------------
# h. Group


def participant_means(table, metrics: Sequence[str]):
    """Mean of each metric per (participant, method), over the participant's runs."""
    import pandas as pd

    columns = [m for m in metrics if m in table.columns]
    numeric = table[["participant", "method"]].copy()
    for m in columns:
        numeric[m] = pd.to_numeric(table[m], errors="coerce")
    return numeric.groupby(["participant", "method"], sort=False)[columns].mean().reset_index()


def plot_group_metrics(
    table,
    *,
    path: Path,
    metrics: Sequence[str] = ("r_mask_mean", "rmse_mask", "ssim_original", "ssim_mask"),
) -> Path:
    """Metrics per method across participants: one point per participant (the mean of
    their runs), grey lines joining the same participant, the mean +/- sd beside.

    Parameters
    ----------
    table : pandas.DataFrame
        ``group_desc-synth_metrics.tsv``: ``participant``, ``method`` and the metrics.
    path : Path
        Figure file.
    metrics : sequence of str
        Columns to draw; missing ones are skipped.
    """
    metrics = [m for m in metrics if m in table.columns]
    means = participant_means(table, metrics)
    methods = order_methods(means["method"])
    figure = _new_figure(max(3.0, 2.9 * max(len(metrics), 1)), 3.4)
    axes = figure.subplots(1, max(len(metrics), 1), squeeze=False)[0]
    for ax, metric in zip(axes, metrics, strict=False):
        wide = means.pivot_table(
            index="participant", columns="method", values=metric, aggfunc="mean", dropna=False
        ).reindex(columns=methods)
        values = wide.to_numpy(dtype=float)
        for row in values:
            ok = np.isfinite(row)
            if ok.sum() > 1:
                ax.plot(np.flatnonzero(ok), row[ok], color="0.75", lw=0.8, zorder=1)
        for x in range(len(methods)):
            column = _finite(values[:, x])
            if column.size == 0:
                ax.text(
                    x,
                    0.5,
                    "n/a",
                    transform=ax.get_xaxis_transform(),
                    ha="center",
                    color="0.4",
                    fontsize=9,
                )
                continue
            ax.scatter(np.full(column.size, x), column, s=18, color=f"C{x}", zorder=3)
            ax.errorbar(
                x + 0.22,
                column.mean(),
                yerr=column.std(ddof=1) if column.size > 1 else 0.0,
                fmt="D",
                color="k",
                ms=4,
                capsize=3,
                zorder=3,
            )
        ax.set_xticks(range(len(methods)), methods, rotation=20)
        ax.set_xlim(-0.5, len(methods) - 0.3)
        ax.set_title(METRIC_LABELS.get(metric, metric), fontsize=10)
        ax.grid(True, axis="y", color="0.9")
    figure.tight_layout()
    return _save(figure, path)

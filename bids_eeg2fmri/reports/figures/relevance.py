"""Figures of the LRP relevance of the EEG inputs: the EEG frequency bands, relevance per
band from the long ``*_desc-lrp_relevance.tsv`` table, scalp maps per region and band,
and heat maps of relevance by band and lag. The group report averages the same band
table over participants and draws it with the same scalp maps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bids_eeg2fmri.reports.figures.common import (
    _colour_scale,
    _new_figure,
    _save,
    _symmetric_limit,
)
from bids_eeg2fmri.reports.figures.scalp import _dropped_note, _eeg_info, _topomap, known_channels

#: EEG frequency bands (name, lowest Hz included, highest Hz excluded) of the relevance maps.
BANDS: tuple[tuple[str, float, float], ...] = (
    ("delta", 1.0, 4.0),
    ("theta", 4.0, 8.0),
    ("alpha", 8.0, 13.0),
    ("beta", 13.0, 30.0),
    ("gamma", 30.0, math.inf),
)


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

"""Figure of the volume onsets found on the EEG clock: each onset's deviation from the
straight line fitted through all of them, and each interval minus the nominal TR,
coloured by how the onset was obtained (found, repaired, ...). It shows whether the
scanner markers were detected steadily, before anything is synthesized from them.

Onsets found on the EEG clock are known to a sample at best: the y axes never zoom in
below one sample period, so that deviations of a fraction of a sample (floating-point
noise of 1e-11 ms included) are not drawn as if they were data.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bids_eeg2fmri.reports.figures.common import _new_figure, _save

#: Smallest half-range of the y axes (ms) when the sampling rate is not known: 1 µs, the
#: precision of the onsets in ``*_desc-volumes_events.tsv``.
_FLOOR_WITHOUT_SFREQ_MS = 1e-3


def plot_volume_onsets(
    onsets: np.ndarray,
    *,
    tr: float,
    path: Path,
    volumes: np.ndarray | None = None,
    how: Sequence[str] | None = None,
    sfreq: float | None = None,
) -> Path:
    """Deviation of each volume onset from the straight line fitted through them.

    Top: ``onset - (t0 + TR_fit * volume)`` (ms) against the volume index; bottom: the
    interval to the previous onset minus the nominal ``tr`` (ms). Onsets are coloured by
    how they were obtained (``how``: e.g. ``found`` markers, ``repaired`` ones).

    Both y axes span at least +/- one sample period (``1000 / sfreq`` ms; 1 µs without
    ``sfreq``); when every deviation from the fitted grid is below one sample period, the
    plot says so ("all onsets within one sample of the fitted grid").

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
    sfreq : float, optional
        Sampling rate of the EEG clock the onsets were found on, in Hz.
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
    # Never zoom in below a sample: a smaller deviation is not measurable on this clock.
    floor = 1000.0 / float(sfreq) if sfreq and sfreq > 0 else _FLOOR_WITHOUT_SFREQ_MS
    for ax in (top, bottom):
        low, high = ax.get_ylim()
        ax.set_ylim(min(low, -floor), max(high, floor))
    if sfreq and sfreq > 0 and deviation.size and np.max(np.abs(deviation)) < floor:
        top.text(
            0.99,
            0.04,
            f"all onsets within one sample ({floor:.3g} ms at {sfreq:.4g} Hz) of the fitted grid",
            transform=top.transAxes,
            ha="right",
            va="bottom",
            fontsize=8,
            color="0.3",
        )
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

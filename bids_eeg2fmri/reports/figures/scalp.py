"""Channel positions and scalp drawing: MNE's template 10-05 montage looked up by name
(case-insensitive), the split into channels it places and those it does not, a 2-D
projection with a drawn head outline, and one scalp map (:func:`mne.viz.plot_topomap`).
Figures that draw on the scalp (relevance maps, the attention graph) use these; channels
without a template position are left out and named by :func:`_dropped_note`.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence

import numpy as np

from bids_eeg2fmri.reports.figures.common import _DIVERGING

_MONTAGE_NAMES = ("colin27_1005", "standard_1005")


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

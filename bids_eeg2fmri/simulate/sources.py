"""Neural sources, the EEG cap and the forward model (MNE spherical head model)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Channel order of a 64-channel MR-compatible cap (BrainCap MR layout without ECG):
#: the first 20 are 10-20 positions, so smaller caps keep a sensible coverage.
CAP_64 = (
    "Fp1 Fp2 F3 F4 C3 C4 P3 P4 O1 O2 F7 F8 T7 T8 P7 P8 Fz Cz Pz Oz FC1 FC2 CP1 CP2 FC5 FC6 "
    "CP5 CP6 TP9 TP10 POz F1 F2 C1 C2 P1 P2 AF3 AF4 FC3 FC4 CP3 CP4 PO3 PO4 F5 F6 C5 C6 P5 P6 "
    "AF7 AF8 FT7 FT8 TP7 TP8 PO7 PO8 FT9 FT10 Fpz CPz AFz"
).split()
MONTAGE = "easycap-M1"


@dataclass(frozen=True)
class Source:
    """A neural source whose band power drives BOLD in a region around it.

    Attributes
    ----------
    name
        Label used in file names (letters and digits).
    band
        Frequency band (Hz) of its oscillation.
    offset_mm
        Position relative to the centre of the head sphere (MNE head frame, mm).
    amplitude_uv
        Root-mean-square amplitude of its oscillation at its strongest electrode (µV).
    coupling
        Sign and size of its BOLD coupling, in percent signal change per standard
        deviation of the HRF-convolved band power (negative: power up, BOLD down).
    region_mm
        Full width at half maximum of its BOLD region (mm).
    """

    name: str
    band: tuple[float, float]
    offset_mm: tuple[float, float, float]
    amplitude_uv: float
    coupling: float
    region_mm: float = 24.0


DEFAULT_SOURCES = (
    Source("alpha", (8.0, 12.0), (0.0, -66.0, -5.0), 12.0, -2.0),
    Source("beta", (15.0, 25.0), (-38.0, -8.0, 42.0), 5.0, -1.5),
    Source("theta", (4.0, 7.0), (0.0, 48.0, 32.0), 6.0, 1.5),
)


def cap_channels(n_channels: int, montage: str = MONTAGE) -> list[str]:
    """The cap's first ``n_channels``.

    On the default montage: the 64-channel MR cap's order, then more from the montage.
    On another montage: all its channels in its order when ``n_channels`` is their number,
    else a subset spread over the head (farthest-point sampling from the vertex), so that
    a small cap still covers the scalp.
    """
    import mne

    names = mne.channels.make_standard_montage(montage).ch_names
    if montage == MONTAGE:
        extra = [c for c in names if c not in CAP_64]
        names = [*CAP_64, *extra]
    if n_channels > len(names):
        raise ValueError(
            f"at most {len(names)} EEG channels can be simulated on {montage}, got {n_channels}"
        )
    if montage == MONTAGE or n_channels == len(names):
        return list(names[:n_channels])
    pos = mne.channels.make_standard_montage(montage).get_positions()["ch_pos"]
    xyz = np.array([pos[n] for n in names])
    xyz = xyz - xyz.mean(axis=0)
    chosen = [int(np.argmax(xyz[:, 2]))]
    nearest = np.linalg.norm(xyz - xyz[chosen[0]], axis=1)
    while len(chosen) < n_channels:
        chosen.append(int(np.argmax(nearest)))
        nearest = np.minimum(nearest, np.linalg.norm(xyz - xyz[chosen[-1]], axis=1))
    return [names[i] for i in sorted(chosen)]


def head_model(ch_names: list[str], sfreq: float, montage_name: str = MONTAGE):
    """An MNE Info with the cap's positions and a spherical head model.

    The sphere is fitted to every electrode of the montage, not only to the simulated
    ones, so the head (and the source positions relative to it) does not depend on the
    channel count.

    Returns
    -------
    info : mne.Info
    sphere : mne.bem.ConductorModel
    """
    import mne

    montage = mne.channels.make_standard_montage(montage_name)
    full = mne.create_info(montage.ch_names, sfreq, "eeg")
    full.set_montage(montage)
    sphere = mne.make_sphere_model("auto", "auto", full, verbose=False)
    info = mne.create_info(ch_names, sfreq, "eeg")
    info.set_montage(montage)
    return info, sphere


def sphere_center_mm(sphere) -> np.ndarray:
    """Centre of a fitted sphere model in millimetres."""
    return np.asarray(sphere["r0"]) * 1000.0


def lead_field(info, sphere, positions_mm: np.ndarray, orientations: np.ndarray) -> np.ndarray:
    """Scalp potentials (V) of unit dipoles (1 A·m) at ``positions_mm``.

    Parameters
    ----------
    positions_mm, orientations
        Shape (n_dipoles, 3), head frame; orientations are normalised here.

    Returns
    -------
    ndarray, shape (n_channels, n_dipoles)
        Average-referenced gains.
    """
    import mne

    positions = np.atleast_2d(positions_mm) / 1000.0
    orientations = np.atleast_2d(orientations)
    orientations = orientations / np.linalg.norm(orientations, axis=1, keepdims=True)
    n = len(positions)
    dipoles = mne.Dipole(np.zeros(n), positions, np.ones(n), orientations, np.ones(n))
    fwd, _ = mne.make_forward_dipole(dipoles, sphere, info, verbose=False)
    gain = fwd["sol"]["data"]  # (n_channels, n_dipoles): fixed orientations
    return gain - gain.mean(axis=0, keepdims=True)

"""Electrode positions, and the map of a recording's channels onto a model's channels.

A model is trained on one cap; a recording made with another cap is mapped onto the
model's channels by position with spherical splines (MNE's ``Raw.interpolate_to``).
Positions come from a dataset's ``_electrodes.tsv`` (with its ``_coordsystem.json``), or
from an MNE standard montage matched by channel name. Each source of positions has its own
frame and scale (a digitiser's, a template head's), so every set is centred on the sphere
fitted to all of that source's electrodes and only directions from that centre are
compared; orientation is taken as RAS (x right, y anterior, z superior), with the BIDS
coordinate systems that use ALS axes turned into it.

Functions here work on names and arrays; files are read by :func:`read_electrodes` only.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

LOGGER = logging.getLogger(__name__)

#: Standard montages that may place channels by name, tried in this order (the one that
#: places the most names wins, then the smallest: ``A1`` is Cz on biosemi128 but a
#: mastoid on the 10-05 system, and a 128-channel A1-D32 recording fits biosemi128 best).
#: All put 10-20 names at the same places (MNE's spherical_1005 does not: left out).
STANDARD_MONTAGES = (
    "easycap-M1",
    "biosemi16",
    "biosemi32",
    "biosemi64",
    "biosemi128",
    "biosemi160",
    "biosemi256",
    "easycap-M10",
    "brainproducts-RNP-BA-128",
    "GSN-HydroCel-32",
    "GSN-HydroCel-64_1.0",
    "GSN-HydroCel-65_1.0",
    "GSN-HydroCel-128",
    "GSN-HydroCel-129",
    "GSN-HydroCel-256",
    "GSN-HydroCel-257",
)
#: BIDS EEG coordinate systems whose axes are ALS (x anterior, y left, z superior).
ALS_SYSTEMS = frozenset({"EEGLAB", "EEGLAB-HJ", "CTF", "4DBti", "KitYokogawa"})
#: Metres per unit of ``EEGCoordinateUnits``.
UNITS = {"m": 1.0, "cm": 0.01, "mm": 0.001}
#: Radius (mm) used to express angular distances as lengths on the scalp.
HEAD_RADIUS_MM = 95.0
#: Nearest-electrode distance (mm) above which an interpolated channel is a warning.
FAR_MM = 40.0
#: Two positions of one name closer than this (mm) are the same electrode; farther, the
#: name means another place on the recording's cap.
SAME_PLACE_MM = 25.0
#: Median distance (mm) from a standard montage's places for the same names beyond which
#: an _electrodes.tsv's axes or units are taken to be wrong.
MISPLACED_MM = 30.0


class PositionError(ValueError):
    """Positions that cannot be read or used; the message names the file or channels."""


@dataclass(frozen=True)
class Positions:
    """Channel positions from one source, centred on the sphere fitted to that source.

    ``xyz`` maps channel names to positions (m, RAS, relative to the fitted centre);
    ``source`` says where they came from (a file, or ``standard montage NAME``).
    """

    source: str
    xyz: Mapping[str, np.ndarray] = field(default_factory=dict)
    #: Other standard montages that place the same names elsewhere (a guess by name that
    #: cannot be trusted: biosemi128, 160 and 256 all name channels A1-D32).
    ambiguous: tuple[str, ...] = ()

    def directions(self, names: Sequence[str]) -> np.ndarray:
        """Unit vectors from the centre to ``names``, shape (len(names), 3)."""
        pos = np.array([self.xyz[n] for n in names], dtype=float).reshape(-1, 3)
        return pos / np.linalg.norm(pos, axis=1, keepdims=True)

    def to_json(self) -> dict:
        """``{"source": ..., "positions_m": {name: [x, y, z]}}`` (for model cards)."""
        return {
            "source": self.source,
            "positions_m": {n: [round(float(v), 6) for v in p] for n, p in self.xyz.items()},
        }


def positions_from_json(value: Mapping) -> Positions:
    """The inverse of :meth:`Positions.to_json`."""
    return Positions(
        source=str(value["source"]),
        xyz={str(n): np.asarray(p, dtype=float) for n, p in value["positions_m"].items()},
    )


def fit_sphere(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares sphere through ``points`` (n, 3): ``(centre, radius)``.

    Solves ``|p|^2 = 2 c.p + (r^2 - |c|^2)``, linear in ``c`` and the constant.
    """
    points = np.asarray(points, dtype=float)
    design = np.column_stack([2 * points, np.ones(len(points))])
    target = (points**2).sum(axis=1)
    solution, *_ = np.linalg.lstsq(design, target, rcond=None)
    centre = solution[:3]
    radius = float(np.sqrt(max(solution[3] + centre @ centre, 0.0)))
    return centre, radius


def _centred(source: str, xyz: Mapping[str, np.ndarray]) -> Positions:
    """``xyz`` relative to the sphere fitted to all of them."""
    if len(xyz) < 4:
        raise PositionError(f"{source}: {len(xyz)} electrode position(s), too few to fit a head")
    centre, _ = fit_sphere(np.array(list(xyz.values())))
    return Positions(source, {n: np.asarray(p, dtype=float) - centre for n, p in xyz.items()})


@functools.cache
def _montage_positions(montage_name: str) -> dict[str, np.ndarray]:
    """A standard montage's positions (read once per process)."""
    import mne

    return dict(mne.channels.make_standard_montage(montage_name).get_positions()["ch_pos"])


def standard_positions(names: Sequence[str]) -> Positions | None:
    """Positions of ``names`` from the standard montage that places the most of them
    (names matched without regard to case; the smallest such montage); None when no
    montage places any.

    Names the montage does not place are absent from the result. Other montages that
    place the same names at other places are listed in ``ambiguous``: then the names alone
    do not say where the electrodes were.
    """
    candidates = []
    for rank, montage_name in enumerate(STANDARD_MONTAGES):
        ch_pos = _montage_positions(montage_name)
        by_lower = {n.lower(): n for n in ch_pos}
        placed = {n: by_lower[n.lower()] for n in names if n.lower() in by_lower}
        if placed:
            candidates.append(((-len(placed), len(ch_pos), rank), montage_name, ch_pos, placed))
    if not candidates:
        return None
    candidates.sort(key=lambda c: c[0])
    _, montage_name, ch_pos, placed = candidates[0]
    chosen = _centred_montage(montage_name, placed)
    others = []
    for score, other_name, _, other_placed in candidates[1:]:
        if score[0] != candidates[0][0][0] or other_placed.keys() != placed.keys():
            continue
        other = _centred_montage(other_name, other_placed)
        if displaced_names(chosen, other, list(placed)):
            others.append(other_name)
    return Positions(chosen.source, chosen.xyz, tuple(others))


def _centred_montage(montage_name: str, placed: Mapping[str, str]) -> Positions:
    """``placed`` names ({name: montage name}) on ``montage_name``, centred on the
    sphere fitted to all of its electrodes."""
    ch_pos = _montage_positions(montage_name)
    centre, _ = fit_sphere(np.array(list(ch_pos.values())))
    return Positions(
        f"standard montage {montage_name}",
        {n: np.asarray(ch_pos[m]) - centre for n, m in placed.items()},
    )


def read_electrodes(path: Path, coordsystem: Path | None = None) -> Positions:
    """Positions in a BIDS ``_electrodes.tsv`` (rows with ``n/a`` coordinates left out).

    Units and axes come from ``coordsystem`` (``EEGCoordinateUnits``,
    ``EEGCoordinateSystem``); without it, or with units ``n/a``, the units are guessed
    from the head's size and the axes taken as RAS, with a warning.

    Raises
    ------
    PositionError
        The table lacks name/x/y/z columns, holds non-numbers, or places fewer than 4
        electrodes.
    """
    from bids_eeg2fmri.bidsio.reading import read_tsv_rows

    path = Path(path)
    header, rows = read_tsv_rows(path, error=PositionError)
    header = [h.lower() for h in header]
    if not {"name", "x", "y", "z"} <= set(header):
        raise PositionError(f"{path}: columns name, x, y, z expected (found {', '.join(header)})")
    cols = [header.index(k) for k in ("name", "x", "y", "z")]
    xyz: dict[str, np.ndarray] = {}
    for line, row in rows:
        name, *coords = (row[c].strip() for c in cols)
        if any(c.lower() == "n/a" for c in coords):
            continue
        try:
            xyz[name] = np.array([float(c) for c in coords])
        except ValueError:
            raise PositionError(
                f"{path}: line {line} ({name}): coordinates {', '.join(coords)} are not "
                "numbers (numbers or n/a expected)"
            ) from None
    system, units = _coordinate_system(path, coordsystem)
    if units is None:
        _, radius = fit_sphere(np.array(list(xyz.values()))) if len(xyz) >= 4 else (None, 0.0)
        units = "m" if radius < 1 else "cm" if radius < 30 else "mm"
        LOGGER.warning(
            "%s: no EEGCoordinateUnits; the head's size says %s", coordsystem or path, units
        )
    scale = UNITS[units]
    xyz = {n: p * scale for n, p in xyz.items()}
    if system in ALS_SYSTEMS:
        xyz = {n: np.array([-p[1], p[0], p[2]]) for n, p in xyz.items()}
    positions = _centred(path.name, xyz)
    _check_against_standard(positions, path, system)
    return positions


def _check_against_standard(positions: Positions, path: Path, system: str | None) -> None:
    """Refuse positions far from where a standard montage puts the same names: axes that
    are not what the coordinate system says (or no coordinate system and not RAS)."""
    names = list(positions.xyz)
    standard = standard_positions(names)
    both = [n for n in names if standard is not None and n in standard.xyz]
    if len(both) < 4 or standard.ambiguous:  # no standard place to hold them to
        return
    median_mm = float(np.median(_apart_mm(positions, standard, both)))
    if median_mm > MISPLACED_MM:
        raise PositionError(
            f"{path}: its {len(both)} electrodes lie a median {median_mm:.0f} mm from where "
            f"the {standard.source} puts the same names (EEGCoordinateSystem "
            f"{system or 'missing'}: axes RAS, or ALS for {', '.join(sorted(ALS_SYSTEMS))}, "
            "expected)"
        )


def _coordinate_system(path: Path, coordsystem: Path | None) -> tuple[str | None, str | None]:
    """``(EEGCoordinateSystem, EEGCoordinateUnits)`` from the sidecar (None when unknown)."""
    if coordsystem is None:
        LOGGER.warning("%s: no _coordsystem.json; axes taken as RAS", path)
        return None, None
    try:
        meta = json.loads(Path(coordsystem).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise PositionError(f"{coordsystem}: not valid JSON ({err})") from None
    system = meta.get("EEGCoordinateSystem")
    units = meta.get("EEGCoordinateUnits")
    if units is not None and units not in UNITS and units != "n/a":
        raise PositionError(
            f"{coordsystem}: EEGCoordinateUnits {units!r} (one of m, cm, mm expected)"
        )
    return system, (units if units in UNITS else None)


def displaced_names(
    recording: Positions | None, model: Positions | None, names: Sequence[str]
) -> list[str]:
    """The ``names`` both sets place more than :data:`SAME_PLACE_MM` apart (a name that
    means another place on the recording's cap); none when either set is unknown."""
    if recording is None or model is None:
        return []
    both = [n for n in names if n in recording.xyz and n in model.xyz]
    apart = _apart_mm(recording, model, both)
    return [n for n, mm in zip(both, apart, strict=True) if mm > SAME_PLACE_MM]


def _apart_mm(first: Positions, second: Positions, names: Sequence[str]) -> np.ndarray:
    """How far apart (mm, along a head of radius :data:`HEAD_RADIUS_MM`) the two sets
    place each of ``names``."""
    if not names:
        return np.zeros(0)
    cosines = (first.directions(names) * second.directions(names)).sum(axis=1)
    return np.arccos(np.clip(cosines, -1.0, 1.0)) * HEAD_RADIUS_MM


@dataclass(frozen=True)
class ChannelMap:
    """How a recording's channels become the model's.

    ``matrix`` (len(targets), len(sources)) rebuilds ``targets`` (model channels absent
    from the recording) from ``sources`` (the recording's placed channels);
    ``distance_mm`` is each target's distance to its nearest source electrode, on a head
    of radius :data:`HEAD_RADIUS_MM`.
    """

    sources: list[str]
    targets: list[str]
    matrix: np.ndarray
    distance_mm: dict[str, float]
    positions_from: str


def interpolation_map(
    recording: Positions, sources: Sequence[str], model: Positions, targets: Sequence[str]
) -> ChannelMap:
    """Spherical-spline weights from the recording's ``sources`` to the model's ``targets``.

    Computed once by interpolating an identity recording with ``Raw.interpolate_to``
    (linear in the data), so that a long recording can then be mapped in chunks.
    """
    import mne

    sources, targets = list(sources), list(targets)
    src, tgt = recording.directions(sources), model.directions(targets)
    with mne.utils.use_log_level("error"):
        identity = mne.io.RawArray(
            np.eye(len(sources)), mne.create_info(sources, 100.0, "eeg"), verbose="error"
        )
        identity.set_montage(
            mne.channels.make_dig_montage(dict(zip(sources, src, strict=True)), coord_frame="head")
        )
        target = mne.channels.make_dig_montage(
            dict(zip(targets, tgt, strict=True)), coord_frame="head"
        )
        mapped = identity.interpolate_to(target, origin=(0.0, 0.0, 0.0), method="spline")
    matrix = mapped.get_data(picks=targets)
    angles = np.arccos(np.clip(tgt @ src.T, -1.0, 1.0)).min(axis=1)
    return ChannelMap(
        sources=sources,
        targets=targets,
        matrix=matrix,
        distance_mm={
            n: round(float(a * HEAD_RADIUS_MM), 1) for n, a in zip(targets, angles, strict=True)
        },
        positions_from=recording.source,
    )

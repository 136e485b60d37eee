"""Read BIDS EEG (four formats), type channels, and build the model's channel set."""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bids_eeg2fmri.bidsio.eeg_checks import (
    EEGError,
    check_brainvision,
    check_eeglab_data,
    read_or_fail,
    readable_markers,
)
from bids_eeg2fmri.signals.positions import (
    ChannelMap,
    Positions,
    displaced_names,
    interpolation_map,
    standard_positions,
)

LOGGER = logging.getLogger(__name__)

#: Names of non-EEG channels that recorders often type as EEG in the data file.
NON_EEG_NAME = re.compile(
    r"^(?:ECG|EKG|EOG|[VH]EOG|EMG|EXG\d*|TRIG(?:GER)?|STI\d*|STATUS|RESP|GSR|PULSE"
    r"|ACC(?:EL(?:EROMETER)?)?[_ ]?[XYZ]?)\d*"
    r"(?:-\d+)?$",  # MNE numbers duplicated names: ECG-0, ECG-1
    re.IGNORECASE,
)


def read_raw(path: Path, *, preload: bool = True):
    """Read an EEG recording (BrainVision, EDF, BDF or EEGLAB) with MNE.

    The recording's own annotations are kept (mne-bids would replace them with
    ``events.tsv``, losing markers that only the data file holds).

    With ``preload`` (the default) the samples are read; without, only the header and
    annotations are. BrainVision files are checked first (``eeg_checks.check_brainvision``);
    MNE's warnings that matter are logged as WARNINGs naming the file.

    Raises
    ------
    EEGError
        Unreadable, truncated, inconsistent, or with a missing data file.
    """
    import mne

    path = Path(path)
    readers = {
        ".vhdr": mne.io.read_raw_brainvision,
        ".edf": mne.io.read_raw_edf,
        ".bdf": mne.io.read_raw_bdf,
        ".set": mne.io.read_raw_eeglab,
    }
    if path.suffix not in readers:
        raise EEGError(f"{path}: not a BIDS EEG format ({', '.join(readers)} expected)")
    if path.suffix == ".vhdr":
        check_brainvision(path)
        with readable_markers(path) as header:
            raw = read_or_fail(readers[path.suffix], header, preload=preload, named=path)
    else:
        raw = read_or_fail(readers[path.suffix], path, preload=preload)
    if path.suffix == ".set" and not preload:
        check_eeglab_data(raw, path)
    if raw.n_times == 0:
        raise EEGError(f"{path}: the recording holds no samples (at least one expected)")
    _refuse_duplicated_eeg_names(raw.ch_names, path)
    return raw


def duplicated_names(ch_names: Sequence[str]) -> dict[str, list[str]]:
    """Names MNE made unique with running numbers (``Fp1`` twice -> ``Fp1-0``, ``Fp1-1``):
    stem -> the numbered names, for the stems not themselves a channel name."""
    numbered: dict[str, list[str]] = {}
    for name in ch_names:
        stem, sep, number = name.rpartition("-")
        if sep and number.isdigit():
            numbered.setdefault(stem, []).append(name)
    return {
        stem: names
        for stem, names in numbered.items()
        if stem not in ch_names
        and sorted(n.rpartition("-")[2] for n in names) == [str(i) for i in range(len(names))]
        and len(names) > 1
    }


def _refuse_duplicated_eeg_names(ch_names: Sequence[str], path: Path) -> None:
    """Two channels with one EEG name: which electrode each is cannot be known (duplicated
    non-EEG names, ``ECG`` or ``EMG``, only get MNE's warning)."""
    eeg = [stem for stem in duplicated_names(ch_names) if not NON_EEG_NAME.match(stem)]
    if eeg:
        counts = ", ".join(f"{s} x {len(duplicated_names(ch_names)[s])}" for s in eeg)
        raise EEGError(
            f"{path}: channel name(s) used more than once: {counts} (a unique name per EEG "
            "channel expected: which electrode each is cannot be told)"
        )


def read_channel_types(path: Path) -> dict[str, str] | None:
    """Channel name -> BIDS type from a ``_channels.tsv``, or None if it cannot be used.

    Tolerates what is common in the wild: quoted names and columns separated by spaces
    instead of tabs (with a warning); returns None (with a warning) when no ``name`` and
    ``type`` columns can be found.
    """
    text = Path(path).read_text(encoding="utf-8-sig", errors="replace")
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        LOGGER.warning("%s is empty: channel types come from the recording", path)
        return None
    if "\t" in lines[0]:
        rows = list(csv.reader(lines, delimiter="\t"))
    else:
        LOGGER.warning("%s is not tab-separated: reading it as space-separated", path)
        rows = [line.split() for line in lines]
    header = [h.strip().strip("\"'").lower() for h in rows[0]]
    if "name" not in header or "type" not in header:
        LOGGER.warning("%s has no name/type columns: channel types come from the recording", path)
        return None
    i_name, i_type = header.index("name"), header.index("type")
    types = {}
    for row in rows[1:]:
        if len(row) > max(i_name, i_type):
            types[row[i_name].strip().strip("\"'")] = row[i_type].strip().strip("\"'").upper()
    return types


def bad_channels(path: Path) -> list[str]:
    """The channels a ``_channels.tsv`` marks ``bad`` in its ``status`` column (BIDS), read
    as :func:`read_channel_types` reads the file; none when it has no such column."""
    text = Path(path).read_text(encoding="utf-8-sig", errors="replace")
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return []
    tabs = "\t" in lines[0]
    rows = list(csv.reader(lines, delimiter="\t")) if tabs else [line.split() for line in lines]
    header = [h.strip().strip("\"'").lower() for h in rows[0]]
    if "name" not in header or "status" not in header:
        return []
    i_name, i_status = header.index("name"), header.index("status")
    return [
        row[i_name].strip().strip("\"'")
        for row in rows[1:]
        if len(row) > max(i_name, i_status) and row[i_status].strip().strip("\"'").lower() == "bad"
    ]


def eeg_channels(ch_names: Sequence[str], file_types: Sequence[str], tsv_types=None) -> list[str]:
    """The channels that may enter the model: EEG, never ECG/EOG/EMG/EXG/accelerometer/
    misc/trigger.

    ``tsv_types`` (from ``_channels.tsv``) wins over the types in the file; a channel whose
    name says it is not EEG (``ECG``, ``EOG``, ``EXG3``, ``ACCX``...) is left out even when
    the file or ``_channels.tsv`` types it EEG (:func:`named_non_eeg` lists those, for the
    warning).
    """
    chosen = []
    for name, file_type in zip(ch_names, file_types, strict=True):
        if tsv_types and name in tsv_types:
            is_eeg = tsv_types[name] == "EEG"
        else:
            is_eeg = file_type == "eeg"
        if is_eeg and not NON_EEG_NAME.match(name):
            chosen.append(name)
    return chosen


def named_non_eeg(
    ch_names: Sequence[str], file_types: Sequence[str], tsv_types=None
) -> tuple[list[str], list[str]]:
    """The channels typed EEG whose name says otherwise (left out of the model by
    :func:`eeg_channels`): (those ``_channels.tsv`` types EEG, those the file types EEG
    and ``_channels.tsv`` does not list, e.g. Biosemi's ``EXG1`` in a BrainVision file,
    which types every channel EEG)."""
    by_tsv, by_file = [], []
    for name, file_type in zip(ch_names, file_types, strict=True):
        if not NON_EEG_NAME.match(name):
            continue
        if tsv_types and name in tsv_types:
            if tsv_types[name] == "EEG":
                by_tsv.append(name)
        elif file_type == "eeg":
            by_file.append(name)
    return by_tsv, by_file


def non_voltage_channels(raw, names: Sequence[str]) -> dict[str, str]:
    """The channels among ``names`` whose samples are not in volts, with the unit their
    file gives (MNE reads a BrainVision channel whose unit is not a voltage, e.g. a typo, as
    ``misc`` without a unit; ``_channels.tsv`` may still type it EEG): their amplitude is
    not comparable with the other channels'."""
    from mne.io.constants import FIFF

    units = getattr(raw, "_orig_units", None) or {}
    wanted = set(names)
    return {
        ch["ch_name"]: str(units.get(ch["ch_name"]) or "none")
        for ch in raw.info["chs"]
        if ch["ch_name"] in wanted and ch["unit"] != FIFF.FIFF_UNIT_V
    }


#: Longest stretch (s) of a recording the flatness check reads, from its middle.
FLAT_CHECK_SECONDS = 120.0
#: Standard deviation (V) below which a channel is flat.
FLAT_STD = 1e-12


def flat_rows(data: np.ndarray, *, tol: float = FLAT_STD) -> np.ndarray:
    """Which rows of ``data`` are flat: exactly constant, or with a standard deviation
    below ``tol + 1e-6 * |mean|`` (the second term allows for the float rounding of a
    constant offset).

    Parameters
    ----------
    data : ndarray, shape (n_channels, n_times), volts

    Returns
    -------
    flat : ndarray of bool, shape (n_channels,)
    """
    data = np.asarray(data, dtype=float)
    if data.shape[1] == 0:
        return np.ones(data.shape[0], dtype=bool)
    spread = data.std(axis=1)
    return (np.ptp(data, axis=1) == 0) | (spread < tol + 1e-6 * np.abs(data.mean(axis=1)))


def flat_channels(
    raw, names: Sequence[str], *, label: str, seconds: float = FLAT_CHECK_SECONDS
) -> list[str]:
    """The flat channels among the EEG channels ``names``, judged on at most ``seconds``
    from the middle of the recording (recordings can hold gigabytes).

    ``label`` names the recording in the error. A few flat channels are returned for the
    caller to treat as missing; more than half flat make the run an error.

    Raises
    ------
    EEGError
        All, or more than half, of ``names`` are flat.
    """
    names = list(names)
    if not names:
        return []
    sfreq = float(raw.info["sfreq"])
    length = min(raw.n_times, max(1, int(round(seconds * sfreq))))
    start = (raw.n_times - length) // 2
    data = raw.get_data(picks=names, start=start, stop=start + length)
    flat = [name for name, is_flat in zip(names, flat_rows(data), strict=True) if is_flat]
    span = f"constant over {start / sfreq:.0f}-{(start + length) / sfreq:.0f} s"
    if len(flat) == len(names):
        raise EEGError(
            f"{label}: all {len(names)} EEG channels are flat ({span}; EEG that varies expected)"
        )
    if 2 * len(flat) > len(names):
        raise EEGError(
            f"{label}: {len(flat)} of {len(names)} EEG channels are flat ({', '.join(flat)}: "
            f"{span}; at most half of them flat expected, so that the others can stand in)"
        )
    return flat


def check_finite(raw, picks: Sequence[int], *, label: str, seconds: float = 60.0) -> None:
    """Refuse NaN or infinite samples in the channels ``picks`` (read ``seconds`` at a
    time): the MR correction's fits and the features would fail on them or spread them.

    Raises
    ------
    EEGError
        Naming the channels (at most five) and the time of the first such sample.
    """
    picks = [int(p) for p in picks]
    if not picks:
        return
    sfreq = float(raw.info["sfreq"])
    step = max(1, int(seconds * sfreq))
    bad: dict[str, float] = {}
    for start in range(0, raw.n_times, step):
        block = raw.get_data(picks=picks, start=start, stop=min(start + step, raw.n_times))
        finite = np.isfinite(block)
        if finite.all():
            continue
        for pick, row in zip(picks, finite, strict=True):
            name = raw.ch_names[pick]
            if name not in bad and not row.all():
                bad[name] = (start + int(np.argmin(row))) / sfreq
    if bad:
        ordered = [raw.ch_names[p] for p in picks if raw.ch_names[p] in bad]
        names = ", ".join(ordered[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise EEGError(
            f"{label}: NaN or infinite samples in channel(s) {names}, the first at "
            f"{min(bad.values()):.3f} s (finite samples expected)"
        )


def model_channel_data(
    raw,
    eeg_names: Sequence[str],
    model_channels: Sequence[str],
    *,
    min_fraction: float = 0.75,
    positions: Positions | None = None,
    model_positions: Positions | None = None,
    chunk_seconds: float = 60.0,
) -> tuple[np.ndarray, ChannelMap | None]:
    """EEG of the model's channels, in the model's order; missing ones interpolated.

    A model channel the recording has by name, at the same place, is taken as it is; the
    others are rebuilt by spherical splines from every placed EEG channel of the
    recording: a few missing channels, or a whole other cap. A name at another place
    (biosemi128's ``C3`` is not the 10-20 ``C3``) counts as missing. Positions of the
    recording come from ``positions`` (its ``_electrodes.tsv``), else from a standard
    montage by name; those of the model from ``model_positions`` (its card), else from a
    standard montage by name. The map is applied ``chunk_seconds`` at a time. ``raw`` is
    reduced to the channels used, in place.

    Returns
    -------
    data : ndarray, shape (len(model_channels), n_times), volts
    mapping : ChannelMap or None
        How the missing model channels were interpolated (None when none was missing).

    Raises
    ------
    EEGError
        Missing model channels that cannot be interpolated: no position for them, or
        fewer than ``min_fraction`` of the model's channel count placed in the recording.
    """
    rec_pos = positions if positions is not None else standard_positions(eeg_names)
    model_pos = (
        model_positions if model_positions is not None else standard_positions(model_channels)
    )
    names = set(eeg_names)
    elsewhere = set(displaced_names(rec_pos, model_pos, [c for c in model_channels if c in names]))
    present = [c for c in model_channels if c in names and c not in elsewhere]
    missing = [c for c in model_channels if c not in present]
    mapping = None
    if missing:
        mapping = _interpolation(
            eeg_names, model_channels, present, missing, min_fraction, rec_pos, model_pos
        )
    used = list(dict.fromkeys([*present, *(mapping.sources if mapping else [])]))
    raw.pick(used)  # in place: a copy of the whole recording is not needed
    data = np.empty((len(model_channels), raw.n_times))
    row = {c: i for i, c in enumerate(model_channels)}
    if present:
        data[[row[c] for c in present]] = raw.get_data(picks=present)
    if mapping is not None:
        rows = [row[c] for c in mapping.targets]
        step = max(1, int(chunk_seconds * raw.info["sfreq"]))
        for start in range(0, raw.n_times, step):
            stop = min(start + step, raw.n_times)
            block = raw.get_data(picks=mapping.sources, start=start, stop=stop)
            data[rows, start:stop] = mapping.matrix @ block
    if not np.all(np.isfinite(data)):
        bad = [c for c, r in zip(model_channels, data, strict=True) if not np.isfinite(r).all()]
        raise EEGError(
            f"NaN or infinite samples in channel(s) {', '.join(bad[:5])} (finite samples expected)"
        )
    return data, mapping


def _interpolation(
    eeg_names, model_channels, present, missing, min_fraction, rec_pos, model_pos
) -> ChannelMap:
    """The map that rebuilds ``missing`` model channels (see :func:`model_channel_data`)."""
    if len(present) < min_fraction * len(model_channels):
        elsewhere = [c for c in missing if c in set(eeg_names)]
        lead = (
            f"only {len(present)} of the model's {len(model_channels)} channels are in the "
            f"recording; missing: {', '.join(missing)}"
            + (f" ({', '.join(elsewhere)} at other places on this cap)" if elsewhere else "")
        )
    else:
        lead = f"cannot interpolate {', '.join(missing)}"
    unplaced = [c for c in missing if model_pos is None or c not in model_pos.xyz]
    if unplaced:
        raise EEGError(
            f"{lead}: no position for the model's {', '.join(unplaced)} (positions in the "
            "model card, or names of a standard montage, expected)"
        )
    for whose, placed in (("the recording's", rec_pos), ("the model's", model_pos)):
        if placed is not None and placed.ambiguous:
            raise EEGError(
                f"{lead}: {whose} channel names are placed by the {placed.source} and, "
                f"elsewhere, by {', '.join(placed.ambiguous)} (an _electrodes.tsv with the "
                "recording's positions expected)"
            )
    sources = [c for c in eeg_names if rec_pos is not None and c in rec_pos.xyz]
    needed = int(np.ceil(min_fraction * len(model_channels)))
    if len(sources) < needed:
        where = rec_pos.source if rec_pos is not None else "no _electrodes.tsv or standard montage"
        raise EEGError(
            f"{lead}: {len(sources)} of the recording's {len(eeg_names)} EEG channels have a "
            f"position ({where}) to interpolate from, at least {needed} needed (an "
            "_electrodes.tsv, or channel names of a standard montage, expected)"
        )
    return interpolation_map(rec_pos, sources, model_pos, missing)


def recording_eeg_channels(eeg_file: Path, channels_tsv: Path | None) -> list[str]:
    """The EEG channels of a recording, in file order (types from channels.tsv first)."""
    raw = read_raw(eeg_file, preload=False)
    tsv = read_channel_types(channels_tsv) if channels_tsv else None
    return eeg_channels(raw.ch_names, raw.get_channel_types(), tsv)

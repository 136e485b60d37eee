"""Sidecars read strictly: JSON that parses, values of the types BIDS gives them, TSVs whose
columns can be read, all resolved by BIDS inheritance so that a message names the file that
holds the bad value.

Every error is one line, ``<file>: <what is wrong> (<what was expected>)``; what the app can
work around is worked around with a warning that names the file and what was done.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bids_eeg2fmri.bidsio.reading import read_json_object
from bids_eeg2fmri.errors import DataError

LOGGER = logging.getLogger(__name__)


def check_json_files(paths: Sequence[Path]) -> None:
    """Every file must hold a JSON object (pybids parses them all when it indexes)."""
    for path in paths:
        read_json_object(path)


def _entities(filename: str) -> tuple[frozenset[tuple[str, str]], str]:
    """(key, label) pairs and suffix of a BIDS name: ``sub-01_task-rest_bold.json``."""
    parts = filename.split(".", 1)[0].split("_")
    pairs = frozenset(tuple(p.split("-", 1)) for p in parts[:-1] if "-" in p)
    return pairs, parts[-1]  # type: ignore[return-value]


def sidecar_chain(data_file: Path, bids_dir: Path) -> list[Path]:
    """The JSON sidecars that apply to ``data_file`` by the BIDS inheritance principle,
    the most general first (dataset root, subject, session, datatype folder).

    A sidecar applies when its suffix is the data file's and its entities are a subset of
    the data file's; within a folder, the one with fewer entities comes first.
    """
    data_file, root = Path(data_file), Path(bids_dir)
    entities, suffix = _entities(data_file.name)
    try:
        relative = data_file.parent.relative_to(root)
    except ValueError:
        folders = [data_file.parent]
    else:
        folders = [
            root,
            *(root.joinpath(*relative.parts[: i + 1]) for i in range(len(relative.parts))),
        ]
    chain = []
    for folder in folders:
        found = []
        for candidate in folder.glob("*.json"):
            keys, kind = _entities(candidate.name)
            if kind == suffix and keys <= entities and candidate.is_file():
                found.append((len(keys), candidate.name, candidate))
        chain += [path for *_, path in sorted(found)]
    return chain


def merged_sidecars(data_file: Path, bids_dir: Path) -> tuple[dict[str, Any], dict[str, Path]]:
    """The metadata of ``data_file`` (inheritance applied) and, per key, the file holding it."""
    values: dict[str, Any] = {}
    origin: dict[str, Path] = {}
    for path in sidecar_chain(data_file, bids_dir):
        for key, value in read_json_object(path).items():
            values[key] = value
            origin[key] = path
    return values, origin


# ----------------------------------------------------------------------------- typed values
def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(value)
    return float(value)


def positive_number(value: Any) -> float:
    """A finite number > 0 (JSON booleans and strings refused)."""
    number = _number(value)
    if number <= 0:
        raise ValueError(value)
    return number


def non_negative_number(value: Any) -> float:
    number = _number(value)
    if number < 0:
        raise ValueError(value)
    return number


def count(value: Any) -> int:
    """An integer >= 0 (``2.0`` accepted as 2)."""
    number = non_negative_number(value)
    if number != int(number):
        raise ValueError(value)
    return int(number)


def times(value: Any) -> tuple[float, ...]:
    """A non-empty list of numbers >= 0 (seconds)."""
    if not isinstance(value, list) or not value:
        raise ValueError(value)
    return tuple(non_negative_number(v) for v in value)


def number_or_na(value: Any) -> float | None:
    return None if value == "n/a" else positive_number(value)


def text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(value)
    return value


def direction(value: Any) -> str:
    """A BIDS phase or slice encoding direction: ``i``, ``j`` or ``k``, ``-`` optional."""
    if value not in ("i", "j", "k", "i-", "j-", "k-"):
        raise ValueError(value)
    return value


def object_or_na(value: Any) -> dict | None:
    if value == "n/a":
        return None
    if not isinstance(value, dict):
        raise ValueError(value)
    return value


Rule = tuple[Callable[[Any], Any], str]
#: The BOLD sidecar keys the app reads, with the type each must have.
BOLD_RULES: dict[str, Rule] = {
    "RepetitionTime": (positive_number, "a number of seconds > 0"),
    "NumberOfVolumesDiscardedByScanner": (count, "an integer >= 0"),
    "NumberOfVolumesDiscardedByUser": (count, "an integer >= 0"),
    "SliceTiming": (times, "a list of numbers of seconds >= 0"),
    "SliceEncodingDirection": (direction, "one of i, j, k, i-, j-, k-"),
}
_CHANNEL_COUNTS = ("EEG", "EOG", "ECG", "EMG", "Misc", "Trigger")
#: The EEG sidecar keys the app reads or copies into its outputs.
EEG_RULES: dict[str, Rule] = {
    "SamplingFrequency": (positive_number, "a number of Hz > 0"),
    "PowerLineFrequency": (number_or_na, 'a number of Hz > 0 or "n/a"'),
    "RecordingDuration": (non_negative_number, "a number of seconds >= 0"),
    "SoftwareFilters": (object_or_na, 'an object of filters or "n/a"'),
    "EEGReference": (text, "a string"),
    **{f"{kind}ChannelCount": (count, "an integer >= 0") for kind in _CHANNEL_COUNTS},
}


def _show(value: Any) -> str:
    shown = json.dumps(value, ensure_ascii=False)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def typed_values(
    values: Mapping[str, Any], origin: Mapping[str, Path], rules: Mapping[str, Rule]
) -> dict[str, Any]:
    """The values ``rules`` name, converted; a wrong one stops the run naming its file.

    Raises
    ------
    DataError
        ``<file>: <Key> is <value> (<the type expected>)``.
    """
    typed = {}
    for key, (convert, expected) in rules.items():
        if key not in values:
            continue
        try:
            typed[key] = convert(values[key])
        except (TypeError, ValueError):
            raise DataError(f"{origin[key]}: {key} is {_show(values[key])} ({expected})") from None
    return typed


def bold_sidecar(bold: Path, bids_dir: Path) -> tuple[dict[str, Any], dict[str, Path]]:
    """The typed values of :data:`BOLD_RULES` a BOLD run's sidecars hold, and their files.

    SliceTiming must also lie within the TR when both are given; VolumeTiming (volumes at
    irregular times) is refused.
    """
    values, origin = merged_sidecars(bold, bids_dir)
    if "VolumeTiming" in values:
        raise DataError(
            f"{origin['VolumeTiming']}: VolumeTiming is given: a sparse or clustered "
            "acquisition, which the app cannot model (volumes at a constant rate: "
            "RepetitionTime)"
        )
    typed = typed_values(values, origin, BOLD_RULES)
    tr, slices = typed.get("RepetitionTime"), typed.get("SliceTiming")
    if tr is not None and slices is not None and max(slices) >= tr:
        raise DataError(
            f"{origin['SliceTiming']}: SliceTiming holds {max(slices):g} s, not less than the "
            f"RepetitionTime {tr:g} s (slice onsets within the volume, from 0 to the TR)"
        )
    return typed, origin


def header_tr(bold: Path) -> float | None:
    """The TR (s) of a NIfTI header: pixdim[4] with time units set (xyzt_units), else None.

    Raises
    ------
    DataError
        The file is not an image nibabel can open.
    """
    import nibabel as nib

    try:
        header = nib.load(bold).header
    except Exception as err:  # noqa: BLE001 - nibabel raises many types for bad files
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataError(
            f"{bold}: cannot be opened as NIfTI ({reason}) (a NIfTI-1/2 image)"
        ) from None
    zooms = header.get_zooms()
    units = header.get_xyzt_units()[1]
    scale = {"sec": 1.0, "msec": 1e-3, "usec": 1e-6}.get(units)
    if len(zooms) < 4 or scale is None or not zooms[3] > 0:
        return None
    return float(zooms[3]) * scale


def check_slice_count(bold: Path, typed: Mapping[str, Any], origin: Mapping[str, Path]) -> None:
    """Warn when SliceTiming does not hold one onset per slice along SliceEncodingDirection
    (``k`` if absent): the slice rate of the MR-quality metrics is still read from its
    onsets (the acquisition's), but the sidecar may describe another sequence."""
    import nibabel as nib

    onsets = typed.get("SliceTiming")
    if onsets is None:
        return
    axis = "ijk".index(typed.get("SliceEncodingDirection", "k")[0])
    shape = nib.load(bold).shape
    if len(shape) > axis and len(onsets) != shape[axis]:
        LOGGER.warning(
            "%s: SliceTiming has %d onset(s), but %s has %d slices along %s (BIDS: one onset "
            "per slice): the slice rate of the MR-quality metrics is taken from its onsets",
            origin["SliceTiming"],
            len(onsets),
            Path(bold).name,
            shape[axis],
            "ijk"[axis],
        )


def resolve_tr(
    *, sidecar_tr: float | None, nifti_tr: float | None, bold: Path, sidecar: Path | None
) -> float:
    """The TR of a BOLD run: its sidecar's (BIDS: the sidecar wins), else its header's.

    A missing sidecar TR and one more than 1 % away from the header's are warnings.

    Raises
    ------
    DataError
        Neither the sidecars nor the header give a TR.
    """
    if sidecar_tr is None and nifti_tr is None:
        raise DataError(
            f"{bold}: no RepetitionTime in its sidecar(s) nor in its NIfTI header "
            "(RepetitionTime in the _bold.json, or pixdim[4] with time units)"
        )
    if sidecar_tr is None:
        LOGGER.warning(
            "%s: no RepetitionTime in its sidecar(s): using the NIfTI header's, %g s",
            bold,
            nifti_tr,
        )
        return float(nifti_tr)
    if nifti_tr is not None and abs(sidecar_tr - nifti_tr) > 0.01 * sidecar_tr:
        LOGGER.warning(
            "%s: sidecar TR %g s, header TR %g s: using the sidecar's, as BIDS says "
            "(the header of %s differs by more than 1 %%)",
            sidecar,
            sidecar_tr,
            nifti_tr,
            Path(bold).name,
        )
    return float(sidecar_tr)


# ----------------------------------------------------------------------------- channels.tsv
def read_channel_rows(path: Path) -> list[tuple[str, str]]:
    """(name, type) of each row of a ``_channels.tsv``, read as ``signals.eeg`` reads it
    (tab-separated, or space-separated when the header holds no tab).

    Raises
    ------
    DataError
        Empty, no ``name`` or ``type`` column, a row whose length is not the header's, or
        a name listed twice.
    """
    text_ = Path(path).read_text(encoding="utf-8-sig", errors="replace")
    lines = [(i, line) for i, line in enumerate(text_.splitlines(), start=1) if line.strip()]
    if not lines:
        raise DataError(f"{path}: empty (a header with name and type, one row per channel)")
    if "\t" in lines[0][1]:
        rows = [(i, next(csv.reader([line], delimiter="\t"))) for i, line in lines]
    else:
        rows = [(i, line.split()) for i, line in lines]
    header = [h.strip().strip("\"'").lower() for h in rows[0][1]]
    if "name" not in header or "type" not in header:
        raise DataError(
            f"{path}: no name and type columns (header: {', '.join(header)}) "
            "(a tab-separated header with name and type)"
        )
    i_name, i_type = header.index("name"), header.index("type")
    found: dict[str, int] = {}
    table = []
    for line, row in rows[1:]:
        if len(row) != len(header):
            raise DataError(
                f"{path}: line {line} has {len(row)} column(s), the header {len(header)} "
                "(one tab-separated value per column, n/a when unknown)"
            )
        name = row[i_name].strip().strip("\"'")
        if name in found:
            raise DataError(
                f"{path}: {name} on lines {found[name]} and {line} (one row per channel)"
            )
        found[name] = line
        table.append((name, row[i_type].strip().strip("\"'").upper()))
    return table


def check_channels(
    path: Path, *, ch_names: Sequence[str], ch_types: Sequence[str], recording: Path
) -> None:
    """Warn when a readable channels.tsv does not list the recording's channels as they are.

    Types are matched by name; the recording's channels the table leaves out get the type
    the app infers from the recording (EEG unless the file or the name says otherwise).
    """
    table = dict(read_channel_rows(path))
    listed = [name for name in table if name in ch_names]
    missing = [
        (name, kind) for name, kind in zip(ch_names, ch_types, strict=True) if name not in table
    ]
    unknown = [name for name in table if name not in set(ch_names)]
    if missing or unknown:
        assumed = ", ".join(f"{name} as {_assumed(name, kind)}" for name, kind in missing[:20])
        LOGGER.warning(
            "%s: %d row(s) for the %d channels of %s; types taken from the %d row(s) that "
            "match by name%s%s",
            path,
            len(table),
            len(ch_names),
            Path(recording).name,
            len(listed),
            f"; not listed: {assumed} (from the recording)" if missing else "",
            f"; no such channel in the recording: {', '.join(unknown[:20])} (ignored)"
            if unknown
            else "",
        )
    elif listed != [name for name in ch_names if name in table]:
        LOGGER.warning(
            "%s: the channels are listed in another order than in %s: types matched by name",
            path,
            Path(recording).name,
        )


def _assumed(name: str, kind: str) -> str:
    """The type the app gives a channel channels.tsv does not list (as ``signals.eeg``)."""
    from bids_eeg2fmri.signals.eeg import NON_EEG_NAME

    if kind != "eeg":
        return kind.upper()
    return "non-EEG (by its name)" if NON_EEG_NAME.match(name) else "EEG"


# ----------------------------------------------------------------------------- per run
#: a RecordingDuration further than this share (and 2 s) from the data's: the data are misread
DURATION_TOLERANCE = 0.1


def check_eeg_sidecar(
    eeg: Path, bids_dir: Path, *, sfreq: float | None = None, n_times: int | None = None
) -> dict:
    """The typed values of :data:`EEG_RULES` an EEG recording's sidecars hold; a
    SamplingFrequency other than the recording's is a warning (the recording's is used).

    Raises
    ------
    DataError
        The recording's ``n_times`` samples at ``sfreq`` last longer than RecordingDuration
        by more than :data:`DURATION_TOLERANCE` of it and 2 s: the header does not describe
        the data file (binary format, channel count, orientation), or the sidecar is wrong;
        either way the samples cannot be trusted. As much shorter is a warning (a
        truncated file; the run's steps check what it still covers).
    """
    values, origin = merged_sidecars(eeg, bids_dir)
    typed = typed_values(values, origin, EEG_RULES)
    stated_s = typed.get("RecordingDuration")
    if sfreq and n_times and stated_s:
        held = n_times / sfreq
        held_text = (
            f"{Path(eeg).name}: holds {held:.1f} s of data ({n_times} samples at {sfreq:g} Hz) "
            f"but RecordingDuration in {origin['RecordingDuration']} is {stated_s:g} s"
        )
        margin = max(2.0, DURATION_TOLERANCE * stated_s)
        if held > stated_s + margin:  # more samples than recorded: read with the wrong layout
            raise DataError(
                f"{held_text}: does the header describe the data file (its binary format, "
                "channel count and orientation)? (the two must agree)"
            )
        if held < stated_s - margin:
            LOGGER.warning("%s: a truncated data file? (used as it is)", held_text)
    stated = typed.get("SamplingFrequency")
    if sfreq and stated and abs(stated - sfreq) > 1e-6 * sfreq:
        LOGGER.warning(
            "%s: SamplingFrequency %g Hz, but %s is sampled at %g Hz: using the recording's",
            origin["SamplingFrequency"],
            stated,
            Path(eeg).name,
            sfreq,
        )
    return typed


def check_run_inputs(pairs: Sequence, bids_dir: Path, *, dummy_scans: int = 0) -> None:
    """Before any work: the EEG sidecars, channels.tsv and events.tsv of every run, and
    that ``--dummy-scans`` leaves volumes in every BOLD run.

    BOLD sidecars are checked when the runs are paired (they give the TR).

    Raises
    ------
    DataError
        A defect that would make the run's results wrong (named with its file).
    UsageError
        ``--dummy-scans`` leaves fewer than two volumes of a BOLD run.
    """
    from bids_eeg2fmri.bidsio.events import read_event_markers
    from bids_eeg2fmri.signals.eeg import EEGError, read_raw

    root = Path(bids_dir).resolve()
    for pair in pairs:
        if pair.bold is not None and dummy_scans:
            _check_dummy_scans(pair.bold, dummy_scans)
        raw_eeg = root in Path(pair.eeg).resolve().parents  # not an --eeg-derivatives file
        try:
            raw = read_raw(pair.eeg, preload=False)
        except EEGError:
            raw = None  # the run's steps say why (and the run fails there)
        sfreq = raw.info["sfreq"] if raw is not None and raw_eeg else None
        n_times = raw.n_times if raw is not None and raw_eeg else None
        check_eeg_sidecar(pair.eeg, bids_dir, sfreq=sfreq, n_times=n_times)
        if pair.channels_tsv is not None:
            if raw is not None and raw_eeg:
                check_channels(
                    pair.channels_tsv,
                    ch_names=raw.ch_names,
                    ch_types=raw.get_channel_types(),
                    recording=pair.eeg,
                )
            else:
                read_channel_rows(pair.channels_tsv)
        if pair.events_tsv is not None:
            read_event_markers(pair.events_tsv)


def _check_dummy_scans(bold: Path, dummy_scans: int) -> None:
    import nibabel as nib

    from bids_eeg2fmri.errors import UsageError

    shape = nib.load(bold).shape
    if len(shape) == 4 and shape[3] - dummy_scans < 2:
        raise UsageError(
            f"--dummy-scans {dummy_scans}: {Path(bold).name} has {shape[3]} volumes, "
            f"{max(0, shape[3] - dummy_scans)} would be left (at least 2 volumes kept)"
        )

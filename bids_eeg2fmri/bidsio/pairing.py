"""Pair each EEG recording with the BOLD run recorded with it."""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bids_eeg2fmri.bidsio.reading import read_tsv_rows
from bids_eeg2fmri.errors import DataError

LOGGER = logging.getLogger(__name__)
#: Entities a simultaneous EEG and BOLD run share.
PAIRING_ENTITIES = ("subject", "session", "task", "acquisition", "run")
_SHORT = {"subject": "sub", "session": "ses", "task": "task", "acquisition": "acq", "run": "run"}


@dataclass(frozen=True)
class RunPair:
    """One EEG recording, with its BOLD run when there is one, and what they say of time."""

    entities: tuple[tuple[str, str], ...]  # (entity, label) in BIDS order, absent ones left out
    eeg: Path
    bold: Path | None = None
    channels_tsv: Path | None = None
    events_tsv: Path | None = None
    electrodes_tsv: Path | None = None  # electrode positions, with their coordsystem.json
    coordsystem_json: Path | None = None
    tr: float | None = None  # the BOLD's: its sidecar's, else its NIfTI header's
    n_discarded: int = 0  # NumberOfVolumesDiscardedByScanner + ByUser
    slice_timing: tuple[float, ...] | None = None  # the BOLD's SliceTiming (s)

    @property
    def name(self) -> str:
        """``sub-01_ses-1_task-rest_run-1``: the source entities of derivative names."""
        return "_".join(f"{_SHORT[k]}-{v}" for k, v in self.entities)

    @property
    def subject(self) -> str:
        return dict(self.entities)["subject"]

    @property
    def session(self) -> str | None:
        return dict(self.entities).get("session")


def scans_tsv(data_file: Path) -> Path:
    """The ``scans.tsv`` that lists ``data_file`` (``sub-X[/ses-Y]/<datatype>/<file>``)."""
    folder = Path(data_file).parent.parent  # sub-X or sub-X/ses-Y
    prefix = (
        folder.name if folder.name.startswith("sub-") else f"{folder.parent.name}_{folder.name}"
    )
    return folder / f"{prefix}_scans.tsv"


def bids_uri(path: Path, bids_dir: Path) -> str:
    """``bids:raw:<relative path>`` for a file of the input dataset, else a file URI."""
    try:
        relative = Path(path).resolve().relative_to(Path(bids_dir).resolve())
    except ValueError:
        return Path(path).resolve().as_uri()
    return f"bids:raw:{relative.as_posix()}"


def read_scans_tsv(path: Path) -> dict[str, datetime.datetime | None]:
    """filename -> acq_time (None when ``n/a`` or no acq_time column) of a ``scans.tsv``.

    Files it lists that are not beside it are a warning (their rows are ignored).

    Raises
    ------
    DataError
        Not UTF-8, no ``filename`` column, a row whose length is not the header's, a file
        listed twice, or an ``acq_time`` that is not a date-time.
    """
    path = Path(path)
    header, rows = read_tsv_rows(path)
    if "filename" not in header:
        raise DataError(
            f"{path}: no filename column (header: {', '.join(header) or 'none'}) "
            "(a tab-separated header with filename and acq_time)"
        )
    i_file = header.index("filename")
    i_time = header.index("acq_time") if "acq_time" in header else None
    times: dict[str, datetime.datetime | None] = {}
    found: dict[str, int] = {}
    for number, row in rows:
        name = row[i_file].strip()
        if name in found:
            raise DataError(
                f"{path}: {name} on lines {found[name]} and {number} (one row per file)"
            )
        found[name] = number
        value = row[i_time].strip() if i_time is not None else "n/a"
        times[name] = _acq_time_value(value, path, number)
    absent = [name for name in times if not os.path.lexists(path.parent / name)]
    if absent:
        LOGGER.warning(
            "%s: %d listed file(s) not in %s: %s%s (their rows ignored)",
            path,
            len(absent),
            path.parent,
            ", ".join(absent[:5]),
            ", ..." if len(absent) > 5 else "",
        )
    return times


def _acq_time_value(value: str, path: Path, line: int) -> datetime.datetime | None:
    """A scans.tsv acq_time as a naive date-time (UTC when it says so); None for n/a."""
    if value in ("n/a", ""):
        return None
    try:
        when = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise DataError(
            f"{path}: acq_time on line {line} is {value!r} "
            "(a date-time YYYY-MM-DDThh:mm:ss[.000000][Z], or n/a)"
        ) from None
    if when.tzinfo is not None:
        when = when.astimezone(datetime.UTC).replace(tzinfo=None)
    return when


def _acq_time(path: Path, tables: dict) -> datetime.datetime | None:
    """The acq_time of a data file in the scans.tsv of its subject (session), if any."""
    scans = scans_tsv(path)
    if scans not in tables:
        tables[scans] = read_scans_tsv(scans) if scans.is_file() else {}
    return tables[scans].get(f"{path.parent.name}/{path.name}")


def pair_runs(
    layout,
    eeg_files: Sequence[Path],
    *,
    bold_filters: Mapping[str, Any] | None = None,
    eeg_derivatives: Path | None = None,
) -> list[RunPair]:
    """Pair EEG recordings with BOLD runs sharing subject, session, task, acquisition, run.

    An identical ``acq_time`` in scans.tsv confirms a pair; a different one breaks it
    (with a warning). EEG without BOLD is kept (EEG-only); selected BOLD runs without EEG
    are logged and skipped. Two EEG files of one run (two formats, say) stop the run, as
    BOLD sidecars that are not JSON or hold values of the wrong type, or a BOLD run
    without a TR (see :mod:`bids_eeg2fmri.bidsio.sidecars`). With ``eeg_derivatives``,
    the EEG is read from the derivative dataset's file with the same entities (e.g.
    gradient-artifact-corrected EEG).
    """
    from bids.layout import Query

    from bids_eeg2fmri.bidsio.layout import EEG_EXTENSIONS, filter_error, to_query

    bold_kinds = {"datatype": "func", "suffix": "bold", "extension": [".nii", ".nii.gz"]}
    try:  # the BOLD runs the filter file allows (it may name pairing entities too)
        allowed = set(
            layout.get(
                return_type="filename",
                **{k: to_query(v) for k, v in dict(bold_filters or {}).items()},
                **bold_kinds,
            )
        )
    except ValueError as err:
        raise filter_error(err, "bold") from None
    if eeg_derivatives and not (Path(eeg_derivatives) / "dataset_description.json").is_file():
        LOGGER.warning(
            "--eeg-derivatives %s: no dataset_description.json, not a BIDS derivatives "
            "dataset: its EEG files are matched by their names all the same",
            eeg_derivatives,
        )
    pairs, used_bold, seen, tables = [], set(), {}, {}
    for eeg in eeg_files:
        found = layout.get_file(str(eeg))
        entities = found.get_entities() if found else layout.parse_file_entities(str(eeg))
        key = tuple((e, str(entities[e])) for e in PAIRING_ENTITIES if entities.get(e) is not None)
        if key in seen:
            raise DataError(
                f"{eeg}: the same run as {seen[key]} (one EEG recording per run: remove one "
                "or give them different acq-/run- labels)"
            )
        seen[key] = eeg
        query = {e: entities.get(e, Query.NONE) for e in PAIRING_ENTITIES}
        bolds = [
            b for b in layout.get(return_type="filename", **query, **bold_kinds) if b in allowed
        ]
        bold = Path(bolds[0]) if len(bolds) == 1 else None
        if len(bolds) > 1:
            raise DataError(f"{eeg}: several BOLD runs match it: {', '.join(map(str, bolds))}")
        if bold is not None:
            eeg_time, bold_time = _acq_time(Path(eeg), tables), _acq_time(bold, tables)
            if eeg_time and bold_time and eeg_time != bold_time:
                LOGGER.warning(
                    "%s and %s share entities but not acq_time (%s vs %s): not simultaneous, "
                    "EEG used alone",
                    Path(eeg).name,
                    bold.name,
                    eeg_time.isoformat(),
                    bold_time.isoformat(),
                )
                bold = None
        meta, tr = _bold_timing(bold, Path(layout.root)) if bold else ({}, None)
        stem = Path(eeg).name.rsplit("_eeg", 1)[0]
        channels = Path(eeg).parent / f"{stem}_channels.tsv"
        events = Path(eeg).parent / f"{stem}_events.tsv"
        source = (
            _derivative_eeg(eeg_derivatives, Path(eeg), EEG_EXTENSIONS)
            if eeg_derivatives
            else Path(eeg)
        )
        if bold is not None:
            used_bold.add(bold)
        electrodes, coordsystem = electrode_files(Path(eeg))
        pairs.append(
            RunPair(
                entities=key,
                eeg=source,
                bold=bold,
                channels_tsv=channels if channels.is_file() else None,
                events_tsv=events if events.is_file() and source == Path(eeg) else None,
                electrodes_tsv=electrodes,
                coordsystem_json=coordsystem,
                tr=tr,
                n_discarded=meta.get("NumberOfVolumesDiscardedByScanner", 0)
                + meta.get("NumberOfVolumesDiscardedByUser", 0),
                slice_timing=meta.get("SliceTiming"),
            )
        )
    subjects = sorted({p.subject for p in pairs})
    for bold in layout.get(
        return_type="filename",
        subject=subjects,
        datatype="func",
        suffix="bold",
        extension=[".nii", ".nii.gz"],
    ):
        if Path(bold) not in used_bold:
            LOGGER.info("%s has no simultaneous EEG: skipped", Path(bold).name)
    return pairs


def _entity_pairs(path: Path) -> tuple[set[str], str]:
    """The ``key-value`` parts of a BIDS file name, and its stem before the suffix."""
    stem = path.name.split(".", 1)[0].rsplit("_", 1)[0]
    return {part for part in stem.split("_") if "-" in part}, stem


def electrode_files(eeg: Path) -> tuple[Path | None, Path | None]:
    """The ``_electrodes.tsv`` (and its ``_coordsystem.json``) that apply to ``eeg``: in
    its folder, the one whose entities (``space-`` aside) are the most of the recording's
    and none other (None, None when there is none)."""
    own, _ = _entity_pairs(eeg)
    best, best_score = None, -1
    for candidate in sorted(eeg.parent.glob("*_electrodes.tsv")):
        pairs, _ = _entity_pairs(candidate)
        pairs = {p for p in pairs if not p.startswith("space-")}
        if pairs <= own and len(pairs) > best_score:
            best, best_score = candidate, len(pairs)
    if best is None:
        return None, None
    coordsystem = best.parent / f"{_entity_pairs(best)[1]}_coordsystem.json"
    return best, coordsystem if coordsystem.is_file() else None


def _bold_timing(bold: Path, bids_dir: Path) -> tuple[dict[str, Any], float]:
    """The typed timing values of a BOLD run's sidecars and its TR (sidecar, else header).

    Raises
    ------
    DataError
        A sidecar that is not JSON or holds a value of the wrong type, a header that cannot
        be opened, or no TR at all.
    """
    from bids_eeg2fmri.bidsio.sidecars import (
        bold_sidecar,
        check_slice_count,
        header_tr,
        resolve_tr,
    )

    meta, origin = bold_sidecar(bold, bids_dir)
    tr = resolve_tr(
        sidecar_tr=meta.get("RepetitionTime"),
        nifti_tr=header_tr(bold),
        bold=bold,
        sidecar=origin.get("RepetitionTime"),
    )
    check_slice_count(bold, meta, origin)
    return meta, tr


def _derivative_eeg(root: Path, raw_eeg: Path, extensions: Sequence[str]) -> Path:
    """The file in a derivatives dataset with the raw recording's entities."""
    stem = raw_eeg.name.rsplit("_eeg", 1)[0]
    subject_dir = next(p for p in raw_eeg.parents if p.name.startswith("sub-"))
    folder = Path(root) / raw_eeg.parent.relative_to(subject_dir.parent)
    candidates = sorted(p for p in folder.glob(f"{stem}*_eeg.*") if p.suffix in extensions)
    if len(candidates) != 1:
        raise DataError(
            f"--eeg-derivatives: expected one EEG file like {folder / stem}*_eeg.* for "
            f"{raw_eeg.name}, found {len(candidates)}"
        )
    return candidates[0]

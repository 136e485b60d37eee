"""Index a BIDS dataset with pybids (index kept outside it) and select EEG recordings."""

from __future__ import annotations

import errno
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bids_eeg2fmri.errors import NoInputError, NothingSelectedError, UsageError

LOGGER = logging.getLogger(__name__)

#: EEG data files of the four BIDS-EEG formats (BrainVision via its header).
EEG_EXTENSIONS = (".vhdr", ".edf", ".bdf", ".set")
#: Folders never indexed: not raw data (derivatives may hold our own outputs).
_IGNORED = re.compile(r"^/(code|derivatives|sourcedata|stimuli|models|\..*)(/|$)")


def participants_in(bids_dir: Path) -> list[str]:
    """Participant labels present in a dataset (its ``sub-*`` folders), sorted."""
    return sorted(p.name[4:] for p in Path(bids_dir).glob("sub-*") if p.is_dir())


def check_participant_labels(bids_dir: Path, labels: Sequence[str], *, option: str = "") -> None:
    """Raise a usage error naming unknown labels and the ones that exist (``option``, e.g.
    ``"--holdout-label: "``, starts the message)."""
    present = participants_in(bids_dir)
    if not present:
        raise NoInputError(f"{bids_dir} has no participants (no sub-* folder)")
    missing = [label for label in labels if label not in present]
    if missing:
        shown = ", ".join(present[:20]) + (
            f", ... ({len(present)} in all)" if len(present) > 20 else ""
        )
        raise UsageError(
            f"{option}participant label(s) not found in {bids_dir}: {', '.join(missing)}; "
            f"the dataset has: {shown}"
        )


def index_dataset(bids_dir: Path, database_dir: Path, *, reset: bool):
    """A pybids layout of ``bids_dir`` whose SQLite index lives in ``database_dir``.

    The index is never written inside the dataset (users mount it read only).
    ``reset=False`` reuses an existing index (``--bids-database-dir``). Symbolic links
    that loop or lead nowhere are left out, with a warning each; JSON files must parse.

    Raises
    ------
    DataError
        A JSON file that is not a JSON object (pybids would fail on it).
    """
    from bids import BIDSLayout, BIDSLayoutIndexer

    database_dir.mkdir(parents=True, exist_ok=True)
    reuse = not reset and any(database_dir.iterdir())
    LOGGER.info(
        "%s the pybids index of %s in %s",
        "Reusing" if reuse else "Building",
        bids_dir,
        database_dir,
    )
    from bids_eeg2fmri.bidsio.sidecars import check_json_files

    bad_links, json_files = scan_dataset(bids_dir)
    for link, problem in bad_links[:_SHOWN]:
        LOGGER.warning("%s: a symbolic link that %s: skipped (not indexed)", link, problem)
    if len(bad_links) > _SHOWN:
        LOGGER.warning("... and %d more such links: skipped", len(bad_links) - _SHOWN)
    check_json_files(json_files)
    ignore = [_IGNORED]
    if bad_links:
        names = "|".join(re.escape(link.relative_to(bids_dir).as_posix()) for link, _ in bad_links)
        ignore.append(re.compile(rf"^/(?:{names})(/|$)"))
    indexer = BIDSLayoutIndexer(validate=False, ignore=ignore, index_metadata=True)
    return BIDSLayout(
        bids_dir,
        indexer=indexer,
        database_path=database_dir,
        reset_database=not reuse,
    )


_SHOWN = 20  # bad links named one by one in the log


def scan_dataset(bids_dir: Path) -> tuple[list[tuple[Path, str]], list[Path]]:
    """Walk a dataset as pybids will (ignored folders left out), without following loops.

    Symbolic links are followed only when they resolve to a folder that does not hold the
    one being walked; the others are returned with what is wrong with them.

    Returns
    -------
    bad_links : list of (path, problem)
        Links that ``loops`` (to itself, or to a folder above it) or that ``leads nowhere``.
    json_files : list of Path
        The JSON files pybids will read (through sound links too).
    """
    root = Path(bids_dir)
    bad, json_files = [], []
    stack = [(root, os.path.realpath(root))]
    while stack:
        folder, real = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as err:
            LOGGER.warning("%s: cannot be listed (%s): skipped", folder, err.strerror or err)
            continue
        for entry in entries:
            path = Path(entry.path)
            if _IGNORED.search("/" + path.relative_to(root).as_posix()):
                continue
            target = os.path.join(real, entry.name)
            if entry.is_symlink():
                try:
                    target = str(path.resolve(strict=True))
                except RuntimeError:  # Python < 3.13: "Symlink loop from ..."
                    bad.append((path, "loops"))
                    continue
                except OSError as err:
                    bad.append((path, "loops" if err.errno == errno.ELOOP else "leads nowhere"))
                    continue
                if os.path.isdir(target) and (real + os.sep).startswith(
                    target.rstrip(os.sep) + os.sep
                ):
                    bad.append((path, "loops"))
                    continue
            if entry.is_dir():  # follows sound links
                stack.append((path, target))
            elif entry.name.endswith(".json"):
                json_files.append(path)
    return sorted(bad), sorted(json_files)


def to_query(value: Any):
    """fMRIPrep's filter language: ``null`` = entity absent, ``"*"`` = any value."""
    from bids.layout import Query

    if value is None:
        return Query.NONE
    if value == "*":
        return Query.ANY
    if isinstance(value, list):
        return [to_query(v) for v in value]
    return value


def filter_error(err: ValueError, query: str) -> UsageError:
    """A one-line usage error for a filter pybids refuses (its hint names an API option)."""
    text = str(err).split(" If you're sure", 1)[0]
    match = re.match(r"'(.+)' is not a recognized entity\.(?: Did you mean \[(.*)\]\?)?", text)
    if not match:
        return UsageError(f"--bids-filter-file ({query}): {text}")
    close = match.group(2)
    return UsageError(
        f"--bids-filter-file: {query}.{match.group(1)} is not a BIDS entity "
        + (
            f"(did you mean {close}?)"
            if close
            else "(e.g. subject, session, task, acquisition, run)"
        )
    )


@dataclass(frozen=True)
class Selection:
    """EEG recordings selected for processing, as absolute paths."""

    eeg_files: tuple[Path, ...]

    @property
    def participants(self) -> list[str]:
        return sorted({re.search(r"sub-([A-Za-z0-9]+)", f.name).group(1) for f in self.eeg_files})


def select_eeg_recordings(
    layout,
    *,
    participant_label: Sequence[str] = (),
    session_label: Sequence[str] = (),
    task_label: Sequence[str] = (),
    bids_filters: Mapping[str, Mapping[str, Any]] | None = None,
) -> Selection:
    """EEG recordings matching the labels and the ``eeg`` query of the filter file.

    Raises
    ------
    NoInputError
        The dataset has no EEG recording at all (exit 66).
    NothingSelectedError
        EEG recordings exist but the filters exclude them all (exit 18).
    UsageError
        The filter file names an entity pybids does not know.
    """
    base = {"datatype": "eeg", "suffix": "eeg", "extension": list(EEG_EXTENSIONS)}
    query = {k: to_query(v) for k, v in dict((bids_filters or {}).get("eeg", {})).items()}
    for key, labels in (
        ("subject", participant_label),
        ("session", session_label),
        ("task", task_label),
    ):
        if labels:
            query[key] = list(labels)
    try:
        found = layout.get(return_type="filename", **{**query, **base})
    except ValueError as err:  # unknown entity in the filter file
        raise filter_error(err, "eeg") from None
    if found:
        return Selection(tuple(sorted(Path(f) for f in found)))

    everything = layout.get(return_type="filename", **base)
    if not everything:
        raise NoInputError(
            f"{layout.root} has no EEG recording (eeg/*_eeg{{{','.join(EEG_EXTENSIONS)}}}): "
            "nothing to work on"
        )
    available = {
        "participants": layout.get_subjects(datatype="eeg"),
        "sessions": layout.get_sessions(datatype="eeg"),
        "tasks": layout.get_tasks(datatype="eeg"),
    }
    asked = ", ".join(f"{k}={v}" for k, v in query.items())
    offer = "; ".join(f"{k}: {', '.join(map(str, v)) or 'none'}" for k, v in available.items())
    raise NothingSelectedError(
        f"the filters ({asked}) selected none of the {len(everything)} EEG recordings "
        f"in {layout.root}; available {offer}"
    )

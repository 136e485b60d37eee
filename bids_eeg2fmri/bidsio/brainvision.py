"""Write EEG as BrainVision (float32, with its markers) without leaving half-written files.

pybv writes the three files (``.vhdr``, ``.vmrk``, ``.eeg``) into a hidden folder beside
the destination; they are then moved into place, the header last, so that a reader never
finds a header whose data or markers are incomplete. Markers keep their BrainVision type:
pybv writes only Stimulus, Response and Comment markers, so other types (``Scanner``,
``Sync On``...) are written as comments and given their type back in the ``.vmrk``;
commas in descriptions are coded as ``\\1``, as BrainVision does.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

_NUMBERED = re.compile(r"^(Stimulus|Response)/([SR])\s*(\d+)$")


def marker_events(descriptions: Sequence[str], samples: Sequence[int]):
    """pybv events from MNE annotation descriptions (``TYPE/DESCRIPTION``) and samples,
    and per event the BrainVision type pybv cannot write (None when it can)."""
    events, types = [], []
    for description, sample in zip(descriptions, samples, strict=True):
        description = str(description)
        numbered = _NUMBERED.match(description)
        kind, _, text = description.partition("/")
        if numbered:
            event = {"type": numbered.group(1), "description": int(numbered.group(3))}
            other = None
        elif kind == "New Segment":
            continue  # pybv writes the recording's own
        elif text and kind not in ("Comment", "Stimulus", "Response"):
            event, other = {"type": "Comment", "description": text}, kind
        else:
            event, other = {"type": "Comment", "description": text or kind}, None
        event["description"] = (
            event["description"].replace(",", r"\1")
            if isinstance(event["description"], str)
            else event["description"]
        )
        events.append({"onset": int(sample), **event})
        types.append(other)
    return events, types


def write_brainvision(
    vhdr: Path,
    data: np.ndarray,
    *,
    sfreq: float,
    ch_names: Sequence[str],
    descriptions: Sequence[str] = (),
    onsets: Sequence[float] = (),
    meas_date=None,
) -> Path:
    """Write ``vhdr`` (and its ``.vmrk`` and ``.eeg``): float32 samples in µV.

    Parameters
    ----------
    data : ndarray, shape (n_channels, n_times)
        Volts.
    descriptions, onsets
        Markers as MNE names them (``Response/R128``, ``Scanner/Slice``) and their onsets
        in seconds from the first sample.
    """
    from pybv import write_brainvision as pybv_write

    vhdr = Path(vhdr)
    folder, base = vhdr.parent, vhdr.name.removesuffix(".vhdr")
    folder.mkdir(parents=True, exist_ok=True)
    samples = np.clip(np.round(np.asarray(onsets, float) * sfreq).astype(int), 0, None)
    keep = samples < data.shape[1]
    events, types = marker_events(np.asarray(descriptions, dtype=object)[keep], samples[keep])
    tmp = Path(tempfile.mkdtemp(prefix=f".{base}.", dir=folder))
    try:
        pybv_write(
            data=np.asarray(data),
            sfreq=float(sfreq),
            ch_names=list(ch_names),
            fname_base=base,
            folder_out=tmp,
            events=events or None,
            resolution=0.01,
            unit="µV",
            fmt="binary_float32",
            meas_date=meas_date,
        )
        if any(types):
            _restore_marker_types(tmp / f"{base}.vmrk", types)
        for suffix in (".eeg", ".vmrk", ".vhdr"):
            os.replace(tmp / f"{base}{suffix}", folder / f"{base}{suffix}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return vhdr


def _restore_marker_types(vmrk: Path, types: Sequence[str | None]) -> None:
    """Give the i-th written marker (New Segment markers aside) its type ``types[i]``."""
    lines = vmrk.read_text(encoding="utf-8").splitlines(keepends=True)
    marker = re.compile(r"^(Mk\d+=)([^,]*),(.*)$", re.DOTALL)
    i = 0
    for n, line in enumerate(lines):
        match = marker.match(line)
        if not match or match.group(2) == "New Segment":
            continue
        if i < len(types) and types[i]:
            lines[n] = f"{match.group(1)}{types[i]},{match.group(3)}"
        i += 1
    vmrk.write_text("".join(lines), encoding="utf-8")

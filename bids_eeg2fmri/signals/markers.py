"""Scanner volume markers -> the onset of every stored BOLD volume on the EEG clock.

Pure functions on arrays of onsets (seconds from the first EEG sample). The rules:

1. markers closer than the tolerance to the previous one are duplicates and dropped;
2. markers much denser than the TR (slice-level triggers) are thinned to the first marker
   of each volume;
3. a gap of k TRs (k >= 2, within the tolerance) is a run of k - 1 missing markers, which
   are put back on the TR grid; any other irregular spacing is an error;
4. the count must then equal the stored volumes, or the stored volumes plus the volumes
   discarded after triggering (``NumberOfVolumesDiscardedByScanner`` / ``ByUser``), whose
   leading markers are dropped; anything else is an error.

Every repair is reported; every error names both counts and the first discrepancy.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from bids_eeg2fmri.errors import DataError

#: Matches the usual volume triggers as MNE names them: BrainVision ``Response/R128``
#: (or ``R128``, ``R 128``), ``Scanner/Scan Start``, and bare ``V``, ``Volume``, ``TR``.
DEFAULT_VOLUME_MARKER = (
    r"^(?:(?:Response|Stimulus)/)?R\s*128$|^(?:Scanner/)?Scan Start$|^(?:Comment/)?(?:V|Volume|TR)$"
)

#: Matches slice markers (``Scanner/Slice``, ``Slice``, ``Comment/Slice``): when present,
#: the gradient artifact is corrected slice by slice.
DEFAULT_SLICE_MARKER = r"^(?:(?:Scanner|Comment)/)?Slice$"

FOUND, REPAIRED, GIVEN, ASSUMED = "found", "repaired", "given", "assumed"


class MarkerError(DataError, ValueError):
    """The markers cannot be reconciled with the BOLD run (the message says why)."""


@dataclass(frozen=True)
class VolumeTiming:
    """Onsets of the stored volumes and how each was obtained.

    Attributes
    ----------
    onsets : ndarray, shape (n_volumes,)
        Seconds from the first EEG sample.
    how : ndarray of str, shape (n_volumes,)
        ``found`` (a marker), ``repaired`` (a missing marker put back on the TR grid),
        ``given`` (``--first-volume-onset``) or ``assumed`` (EEG starts with volume 0).
    repairs : tuple of str
        What was changed, in words, for the log and the report.
    scan_onsets : ndarray, shape (n_scanned,)
        Every volume the markers show (discarded ones included, missing markers put
        back): where the scanner's gradient artifact is. Empty without markers.
    """

    onsets: np.ndarray
    how: np.ndarray
    repairs: tuple[str, ...] = ()
    scan_onsets: np.ndarray = field(default_factory=lambda: np.empty(0))


def matching_onsets(
    descriptions: Sequence[str], onsets: Sequence[float], pattern: str
) -> np.ndarray:
    """Sorted onsets of the annotations whose description matches ``pattern`` (regex)."""
    regex = re.compile(pattern)
    onsets = np.asarray(onsets, dtype=float)
    keep = np.array([bool(regex.search(str(d))) for d in descriptions], dtype=bool)
    return np.sort(onsets[keep]) if keep.size else np.empty(0)


def merge_onsets(*groups: np.ndarray, tolerance: float) -> np.ndarray:
    """Union of several marker lists (e.g. the file's annotations and events.tsv), with
    markers that coincide within ``tolerance`` counted once."""
    merged = np.sort(np.concatenate([np.asarray(g, float) for g in groups]))
    return _drop_duplicates(merged, tolerance)[0]


def _drop_duplicates(onsets: np.ndarray, tolerance: float) -> tuple[np.ndarray, int]:
    if onsets.size == 0:
        return onsets, 0
    keep = [0]
    for i in range(1, onsets.size):
        if onsets[i] - onsets[keep[-1]] > tolerance:
            keep.append(i)
    return onsets[keep], onsets.size - len(keep)


def default_tolerance(tr: float, sfreq: float) -> float:
    """Timing tolerance: 2 % of the TR, at least 2.5 samples."""
    return max(2.5 / sfreq, 0.02 * tr)


def volume_onsets(
    markers: np.ndarray,
    *,
    n_volumes: int | None,
    tr: float,
    sfreq: float,
    n_discarded: int = 0,
    tolerance: float | None = None,
) -> VolumeTiming:
    """Onsets of the ``n_volumes`` stored volumes from the marker onsets.

    Parameters
    ----------
    markers
        Onsets (s) of the markers matching the volume pattern, any order.
    n_volumes
        Volumes stored in the BOLD file (after the user's dummy scans are dropped, the
        caller adds those to ``n_discarded``); ``None`` for EEG-only runs: every marker
        then stands for a volume.
    tr
        Repetition time (s).
    sfreq
        EEG sampling rate (Hz), for the tolerance.
    n_discarded
        Volumes acquired (so possibly marked) before the first stored one.
    tolerance
        Seconds of timing jitter accepted; default :func:`default_tolerance`.

    Raises
    ------
    MarkerError
        No markers, irregular spacing, or a count that cannot be reconciled.
    """
    tol = default_tolerance(tr, sfreq) if tolerance is None else tolerance
    onsets, n_dupes = _drop_duplicates(np.sort(np.asarray(markers, float)), tol)
    if onsets.size == 0:
        raise MarkerError("no volume markers")
    repairs = []
    if n_dupes:
        repairs.append(f"dropped {n_dupes} duplicated marker(s)")

    steps = np.diff(onsets)
    if steps.size >= 2 and np.median(steps) < tr / 2:
        before = onsets.size
        keep = [0]
        for i in range(1, onsets.size):
            if onsets[i] - onsets[keep[-1]] >= tr - tol:
                keep.append(i)
        onsets = onsets[keep]
        repairs.append(
            f"kept the first of every ~{round(tr / np.median(steps))} slice-level markers "
            f"({onsets.size} of {before})"
        )

    how = [FOUND]
    filled = [onsets[0]]
    for i, step in enumerate(np.diff(onsets)):
        k = int(round(step / tr))
        if k >= 1 and abs(step - k * tr) <= tol:
            for j in range(1, k):
                filled.append(onsets[i] + j * tr)
                how.append(REPAIRED)
            filled.append(onsets[i + 1])
            how.append(FOUND)
        else:
            raise MarkerError(
                f"markers {i + 1} and {i + 2} (at {onsets[i]:.3f} s and {onsets[i + 1]:.3f} s) "
                f"are {step:.3f} s apart, not a multiple of the TR ({tr:g} s)"
            )
    n_repaired = how.count(REPAIRED)
    if n_repaired:
        repairs.append(f"put back {n_repaired} missing marker(s) on the TR grid")
    onsets, how = np.asarray(filled), np.asarray(how)

    if n_volumes is None:
        return VolumeTiming(onsets, how, tuple(repairs), onsets)
    if onsets.size == n_volumes + n_discarded:
        if n_discarded:
            repairs.append(f"skipped the markers of {n_discarded} discarded volume(s)")
        return VolumeTiming(onsets[n_discarded:], how[n_discarded:], tuple(repairs), onsets)
    if onsets.size == n_volumes and n_discarded:
        repairs.append(f"no markers for the {n_discarded} discarded volume(s)")
        return VolumeTiming(onsets, how, tuple(repairs), onsets)
    expected = f"{n_volumes}" + (f" (+{n_discarded} discarded)" if n_discarded else "")
    if onsets.size < n_volumes:
        detail = (
            f"the last marker is at {onsets[-1]:.3f} s; volume {onsets.size + 1} would start "
            f"at {onsets[-1] + tr:.3f} s"
        )
    else:
        detail = (
            f"{onsets.size - n_volumes - n_discarded} marker(s) too many, from "
            f"{onsets[0]:.3f} s to {onsets[-1]:.3f} s: are volumes discarded by the scanner "
            "missing from NumberOfVolumesDiscardedByScanner?"
        )
    raise MarkerError(f"{onsets.size} volume markers for {expected} BOLD volumes: {detail}")


def grid_onsets(first_onset: float, *, n_volumes: int, tr: float, how: str) -> VolumeTiming:
    """Onsets on a regular grid when there are no markers (``given`` or ``assumed``)."""
    onsets = first_onset + tr * np.arange(n_volumes)
    return VolumeTiming(
        onsets, np.full(n_volumes, how), (f"volume onsets {how}: first at {first_onset:g} s",)
    )


def check_coverage(timing: VolumeTiming, *, eeg_duration: float) -> None:
    """Raise if the EEG ends before the last volume's onset (its window ends there)."""
    last = float(timing.onsets[-1])
    if last > eeg_duration + 1e-9:
        raise MarkerError(
            f"the EEG ({eeg_duration:.3f} s) is shorter than the BOLD run: volume "
            f"{int(np.argmax(timing.onsets > eeg_duration)) + 1} of {timing.onsets.size} "
            f"starts at {float(timing.onsets[timing.onsets > eeg_duration][0]):.3f} s"
        )
    if timing.onsets[0] < 0:
        raise MarkerError(f"the first volume starts before the EEG ({timing.onsets[0]:.3f} s)")

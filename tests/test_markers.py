"""Volume markers -> volume onsets: repairs that are unambiguous, errors that are clear."""

from __future__ import annotations

import numpy as np
import pytest

from bids_eeg2fmri.signals.markers import (
    DEFAULT_VOLUME_MARKER,
    MarkerError,
    check_coverage,
    grid_onsets,
    matching_onsets,
    merge_onsets,
    volume_onsets,
)

TR, SFREQ = 2.16, 250.0
GRID = 7.3 + TR * np.arange(12)


@pytest.mark.parametrize(
    "description",
    [
        "Response/R128",
        "R128",
        "R 128",
        "Scanner/Scan Start",
        "Scan Start",
        "V",
        "Volume",
        "TR",
        "Comment/V",
    ],
)
def test_default_pattern_matches_the_usual_triggers(description):
    assert matching_onsets(
        [description, "Stimulus/S  1", "Scanner/s"], [1.0, 2.0, 3.0], DEFAULT_VOLUME_MARKER
    ).tolist() == [1.0]


def test_clean_markers_are_found():
    timing = volume_onsets(GRID, n_volumes=12, tr=TR, sfreq=SFREQ)
    assert np.allclose(timing.onsets, GRID) and set(timing.how) == {"found"}
    assert timing.repairs == ()


def test_missing_markers_are_put_back_on_the_grid():
    markers = np.delete(GRID, [3, 7, 8])
    timing = volume_onsets(markers, n_volumes=12, tr=TR, sfreq=SFREQ)
    assert np.allclose(timing.onsets, GRID)
    assert timing.how[[3, 7, 8]].tolist() == ["repaired"] * 3
    assert "put back 3 missing" in timing.repairs[0]


def test_duplicates_and_jitter_are_tolerated():
    markers = np.sort(
        np.concatenate([GRID + np.random.default_rng(0).normal(0, 0.002, 12), GRID[[2, 5]] + 0.004])
    )
    timing = volume_onsets(markers, n_volumes=12, tr=TR, sfreq=SFREQ)
    assert timing.onsets.size == 12 and "dropped 2 duplicated" in timing.repairs[0]


def test_slice_level_markers_are_thinned_to_volume_starts():
    slices = (GRID[:, None] + np.arange(30) * TR / 30).ravel()
    timing = volume_onsets(slices, n_volumes=12, tr=TR, sfreq=SFREQ)
    assert np.allclose(timing.onsets, GRID)
    assert "slice-level" in timing.repairs[0]


def test_markers_of_discarded_volumes_are_skipped():
    timing = volume_onsets(GRID, n_volumes=10, tr=TR, sfreq=SFREQ, n_discarded=2)
    assert np.allclose(timing.onsets, GRID[2:])
    assert "discarded" in timing.repairs[0]
    unmarked = volume_onsets(GRID[2:], n_volumes=10, tr=TR, sfreq=SFREQ, n_discarded=2)
    assert np.allclose(unmarked.onsets, GRID[2:])


def test_irregular_spacing_names_the_first_discrepancy():
    markers = GRID.copy()
    markers[5:] += 0.9
    with pytest.raises(MarkerError, match=r"markers 5 and 6 .* 3\.060 s apart"):
        volume_onsets(markers, n_volumes=12, tr=TR, sfreq=SFREQ)


def test_counts_that_cannot_be_reconciled():
    with pytest.raises(MarkerError, match="10 volume markers for 12 BOLD volumes"):
        volume_onsets(GRID[:10], n_volumes=12, tr=TR, sfreq=SFREQ)
    with pytest.raises(MarkerError, match="12 volume markers for 10 BOLD volumes: 2 marker"):
        volume_onsets(GRID, n_volumes=10, tr=TR, sfreq=SFREQ)
    with pytest.raises(MarkerError, match="no volume markers"):
        volume_onsets(np.empty(0), n_volumes=10, tr=TR, sfreq=SFREQ)


def test_merge_counts_coinciding_markers_once():
    merged = merge_onsets(GRID[:6], GRID[4:] + 0.001, tolerance=0.01)
    assert merged.size == 12


def test_grid_and_coverage():
    timing = grid_onsets(0.0, n_volumes=5, tr=2.0, how="assumed")
    assert timing.onsets.tolist() == [0, 2, 4, 6, 8] and set(timing.how) == {"assumed"}
    check_coverage(timing, eeg_duration=8.0)
    with pytest.raises(MarkerError, match="shorter than the BOLD run: volume 5 of 5"):
        check_coverage(timing, eeg_duration=7.0)

"""Participant and group HTML reports, built from the derivatives on disk.

Like fMRIPrep's reportlets, the reports read only what the run wrote in OUTPUT_DIR (and
the observed BOLD of the input dataset): they can be rebuilt at any time, and show what
was written, not what was meant to be. Figures go to ``OUTPUT_DIR/sub-<label>/figures/``
(participant) and ``OUTPUT_DIR/figures/`` (group) and are linked by relative paths, so a
moved OUTPUT_DIR keeps working reports. A missing piece (no BOLD, no relevance file, no
model card...) gives a short note in its place, never an exception; a figure that fails
to draw is logged and replaced by a note.

One module per part; this package re-exports their public names:

- :mod:`.participant`: ``write_participant_report``, the page of one participant;
- :mod:`.batch`: ``write_participant_reports``, the pages of many, ``--nprocs`` at a time;
- :mod:`.run`: one run's summary row and section;
- :mod:`.group`: ``write_group_report``, the page across participants;
- :mod:`.metrics`: the metrics tables (run and group);
- :mod:`.common_sections`: training, warnings (``read_log_warnings``) and about;
- :mod:`.outputs`: finding and reading the derivative files;
- :mod:`.items`: page building blocks and rendering of the template.

The figures themselves are drawn by :mod:`bids_eeg2fmri.reports.figures`.
"""

from __future__ import annotations

from bids_eeg2fmri.reports.html.common_sections import METHODS_TEXT, read_log_warnings
from bids_eeg2fmri.reports.html.group import write_group_report
from bids_eeg2fmri.reports.html.metrics import FIGURE_METRICS, TABLE_METRICS
from bids_eeg2fmri.reports.html.outputs import RunFiles, find_runs
from bids_eeg2fmri.reports.html.participant import write_participant_report

__all__ = [
    "FIGURE_METRICS",
    "METHODS_TEXT",
    "TABLE_METRICS",
    "RunFiles",
    "find_runs",
    "read_log_warnings",
    "write_group_report",
    "write_participant_report",
]

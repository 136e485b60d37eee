"""HTML reports of a bids-eeg2fmri output, built from the derivatives on disk.

``write_participant_report(output_dir, subject, bids_dir=...)`` writes
``OUTPUT_DIR/sub-<label>.html`` (figures in ``OUTPUT_DIR/sub-<label>/figures/``);
``write_group_report(output_dir)`` writes ``OUTPUT_DIR/group.html`` (figures in
``OUTPUT_DIR/figures/``). The figure functions live in :mod:`.figures`.

Importing this package is cheap: matplotlib, nilearn, MNE and jinja2 are imported when
a report is written.
"""

from __future__ import annotations

__all__ = ["write_group_report", "write_participant_report"]


def __getattr__(name: str):
    if name in __all__:
        from bids_eeg2fmri.reports import html

        return getattr(html, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""The participant report, ``OUTPUT_DIR/sub-<label>.html``: a summary of how each EEG
recording was paired with a BOLD run, one section per run (:mod:`.run`), then training,
warnings and about (:mod:`.common_sections`). Figures go to
``OUTPUT_DIR/sub-<label>/figures/``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from bids_eeg2fmri.reports.html.common_sections import _about_items, _training_items, _warning_items
from bids_eeg2fmri.reports.html.items import _facts, _guarded, _note, _render, _section, _table
from bids_eeg2fmri.reports.html.outputs import _Context, _model_cards, find_runs
from bids_eeg2fmri.reports.html.run import _RunReport

LOGGER = logging.getLogger(__name__)


def write_participant_report(output_dir: Path, subject: str, *, bids_dir: Path) -> Path:
    """Write ``OUTPUT_DIR/sub-<label>.html`` and its figures.

    Parameters
    ----------
    output_dir : Path
        The derivative dataset (the App's OUTPUT_DIR).
    subject : str
        Participant label, with or without ``sub-``.
    bids_dir : Path
        The input dataset (read only), for the observed BOLD.

    Returns
    -------
    Path
        The HTML file.
    """
    output_dir, bids_dir = Path(output_dir), Path(bids_dir)
    label = str(subject).removeprefix("sub-")
    page = output_dir / f"sub-{label}.html"
    context = _Context(
        output_dir=output_dir,
        bids_dir=bids_dir,
        html_dir=output_dir,
        figures=output_dir / f"sub-{label}" / "figures",
        cards=_model_cards(output_dir),
    )
    runs = find_runs(output_dir, label)
    LOGGER.info("Writing the report of sub-%s (%d run(s))", label, len(runs))

    summary_rows, run_sections, shas = [], [], set()
    for run in runs:
        report = _RunReport(run, context)
        summary_rows.append(report.summary_row())
        run_sections.append(report.section())
        if report.meta.get("ModelDigest"):
            shas.add(report.meta["ModelDigest"])

    summary: list[dict] = [
        _facts(
            [
                ("Participant", f"sub-{label}"),
                ("Runs", str(len(runs))),
                ("Input dataset", str(bids_dir)),
                ("Output dataset", str(output_dir)),
            ]
        )
    ]
    if runs:
        summary.append(
            _table(
                ["Run", "EEG", "BOLD", "Volumes", "Without EEG", "Split (volumes)", "Model"],
                summary_rows,
                caption="How each EEG recording was paired with a BOLD run. 'EEG only': no "
                "BOLD was paired, so the synthesized BOLD cannot be compared with an observed "
                "one. 'Without EEG': volumes whose EEG window was incomplete (not predicted "
                "from EEG). The split says how the model used the volumes: train and "
                "validation volumes were seen in training, holdout volumes were not; "
                "'applied' means a model trained on other data.",
                css="runs",
            )
        )
    else:
        summary.append(
            _note(f"No outputs were found for sub-{label} in {output_dir}: nothing to report.")
        )

    used = [c for c in context.cards if not shas or c.get("digest") in shas]
    sections = [
        _section("summary", "Summary", summary),
        *run_sections,
        _section(
            "training",
            "Training",
            _guarded(
                lambda: _training_items(used, context, label=label, stem=f"sub-{label}"),
                "the training summary",
            ),
        ),
        _section("warnings", "Warnings", _warning_items(output_dir, label)),
        _section("about", "About", _about_items(context)),
    ]
    if not used:
        sections = [s for s in sections if s["id"] != "training"]
    return _render(
        page,
        title=f"sub-{label}",
        subtitle="bids-eeg2fmri participant report: fMRI synthesized from EEG",
        sections=sections,
    )

"""The group report, ``OUTPUT_DIR/group.html``: the participants and links to their
reports, the metrics per method across participants (figure and summary table), the mean
LRP relevance across participants, the classification of participants (``group
--classify``, :mod:`.classification`), then training, warnings and about. Figures go to
``OUTPUT_DIR/figures/``.
"""

from __future__ import annotations

from pathlib import Path

from bids_eeg2fmri.reports.html.classification import classification_section
from bids_eeg2fmri.reports.html.common_sections import _about_items, _training_items, _warning_items
from bids_eeg2fmri.reports.html.items import (
    _facts,
    _figure_item,
    _guarded,
    _href,
    _note,
    _render,
    _section,
    _table,
)
from bids_eeg2fmri.reports.html.metrics import FIGURE_METRICS, _group_metrics, _group_summary_tables
from bids_eeg2fmri.reports.html.outputs import (
    _Context,
    _has_values,
    _model_cards,
    _read_tsv,
    find_runs,
)


def write_group_report(output_dir: Path) -> Path:
    """Write ``OUTPUT_DIR/group.html`` and its figures (``OUTPUT_DIR/figures/``).

    Reads ``group_desc-synth_metrics.tsv`` (or, without it, the participants' metrics
    tables), every ``*_desc-lrp_relevance.tsv`` and the model cards.

    Parameters
    ----------
    output_dir : Path
        The derivative dataset (the App's OUTPUT_DIR).

    Returns
    -------
    Path
        The HTML file.
    """
    import pandas as pd

    from bids_eeg2fmri.reports import figures as fig

    output_dir = Path(output_dir)
    context = _Context(
        output_dir=output_dir,
        bids_dir=None,
        html_dir=output_dir,
        figures=output_dir / "figures",
        cards=_model_cards(output_dir),
    )
    table, origin = _group_metrics(output_dir)
    participants = sorted(
        {p.name.removeprefix("sub-") for p in output_dir.glob("sub-*") if p.is_dir()}
        | (set(table["participant"].astype(str)) if table is not None else set())
    )

    rows = []
    for label in participants:
        html = output_dir / f"sub-{label}.html"
        n_runs = len(find_runs(output_dir, label))
        link = {"text": f"sub-{label}", "href": _href(html, output_dir)}
        rows.append([link if html.is_file() else f"sub-{label}", str(n_runs)])
    summary = [
        _facts(
            [
                ("Participants", str(len(participants))),
                ("Output dataset", str(output_dir)),
                ("Metrics from", origin or "none found"),
            ]
        ),
        _table(["Participant", "Runs"], rows, caption="Each participant's report, where written.")
        if rows
        else _note("No participant outputs were found."),
    ]

    metrics_items: list[dict] = []
    if table is None:
        metrics_items.append(
            _note("No metrics table was found: no run had an observed BOLD to compare with.")
        )
    else:
        table["participant"] = table["participant"].astype(str).str.removeprefix("sub-")
        shown = [m for m in FIGURE_METRICS if _has_values(table, m)]
        metrics_items.extend(_guarded(lambda: _group_summary_tables(table), "summary table"))
        metrics_items.append(
            _figure_item(
                "Metrics per method across participants",
                context.figures / "group_desc-synth_metrics.svg",
                context,
                "One point per participant (the mean over their runs) and method, grey lines "
                "joining the same participant, the black diamond the mean +/- sd across "
                "participants. Better synthesis means higher r and SSIM and lower RMSE; the "
                "model should beat both baselines for the same participants, most clearly on "
                "r, which the mean-volume baseline cannot score.",
                lambda path: fig.plot_group_metrics(table, path=path, metrics=shown),
            )
        )

    relevance_items = _guarded(
        lambda: _group_relevance_items(output_dir, context, pd), "mean relevance"
    )

    sections = [
        _section("summary", "Summary", summary),
        _section("metrics", "Synthesis quality", metrics_items),
        _section("relevance", "EEG relevance", relevance_items),
        classification_section(output_dir, context),
        _section(
            "training",
            "Training",
            _guarded(
                lambda: _training_items(context.cards, context, stem="group"),
                "the training summary",
            ),
        ),
        _section("warnings", "Warnings", _warning_items(output_dir, None)),
        _section("about", "About", _about_items(context)),
    ]
    sections = [s for s in sections if s is not None]  # no classification table, no section
    if not context.cards:
        sections = [s for s in sections if s["id"] != "training"]
    return _render(
        output_dir / "group.html",
        title="Group report",
        subtitle="bids-eeg2fmri group report: fMRI synthesized from EEG",
        sections=sections,
    )


def _group_relevance_items(output_dir: Path, context: _Context, pd) -> list[dict]:
    from bids_eeg2fmri.reports import figures as fig

    per_participant, older = [], []
    needed = {"region", "channel", "frequency", "relevance", "absolute_relevance"}
    for tsv in sorted(output_dir.glob("sub-*/**/eeg/*_desc-lrp_relevance.tsv")):
        table = _read_tsv(tsv)
        if table is None or not needed <= set(table):
            older += [tsv.name] if table is not None and "relevance" in table else []
            continue
        bands = fig.band_relevance(table)
        bands["participant"] = tsv.name.split("_")[0]
        per_participant.append(bands)
    notes = (
        [
            _note(
                f"Left out of the mean: {', '.join(older)}, written by a version whose relevance "
                "column had another meaning (no absolute_relevance column)."
            )
        ]
        if older
        else []
    )
    if not per_participant:
        return notes or [_note("No *_desc-lrp_relevance.tsv was found: no relevance to average.")]
    every = pd.concat(per_participant, ignore_index=True)
    keys = ["region", "channel", "band"]
    # Mean over a participant's runs, then over participants.
    means = (
        every.groupby(["participant", *keys], observed=True, sort=False)["relevance"]
        .mean()
        .reset_index()
        .groupby(keys, observed=True, sort=False)["relevance"]
        .mean()
        .reset_index()
    )
    n = every["participant"].nunique()
    return [
        *notes,
        _figure_item(
            "Mean relevance across participants",
            context.figures / "group_desc-lrp_relevance.png",
            context,
            f"Scalp maps of the LRP relevance (signed by the way each signal moved, as in the "
            f"participants' reports), summed over lags and averaged "
            f"over the frequency bins of each band, then over each participant's runs and {n} "
            "participant(s). Rows: the explained signal ('volume': the whole synthesized "
            "volume, then regions); each row has its own colour scale, symmetric around 0 "
            "unless every value is positive. A pattern seen at group level is shared across "
            "people rather than the trait of one.",
            lambda path: fig.plot_relevance_topomaps(means, path=path),
        ),
    ]

"""Report figures: plain functions that take arrays or tables and write one figure file.

Every function draws on its own :class:`matplotlib.figure.Figure` with an Agg canvas
attached, never through :mod:`matplotlib.pyplot`: no global backend is set, no figure is
left open in pyplot's registry, and the report can be built from any process (a notebook
with an interactive backend included). Files are written atomically (temporary name in the
same folder, then renamed); the format follows the suffix of ``path`` (``.svg`` for line
art, ``.png`` for brain slices).

Brain slices are drawn with :mod:`nilearn.plotting`, scalp maps with
:func:`mne.viz.plot_topomap`; channel positions come from MNE's template 10-05 montage,
looked up by name (case-insensitive). Channels it does not know are left out of scalp
figures, and the figure says so.

One module per part of the report; this package re-exports their public names, so
``from bids_eeg2fmri.reports import figures as fig; fig.plot_volume_onsets(...)`` works:

- :mod:`.common`: figure plumbing (own canvas, atomic save), colour limits, method order,
  metric labels;
- :mod:`.scalp`: template channel positions, head outline, one scalp map;
- :mod:`.onsets`: the volume onsets on the EEG clock;
- :mod:`.brain`: brain slices (synthesized and observed BOLD, correlation map);
- :mod:`.metrics`: one run's metrics, the model against the baselines;
- :mod:`.relevance`: frequency bands, relevance per band, scalp and lag maps;
- :mod:`.attention`: the attention graph between channels;
- :mod:`.training`: training curves;
- :mod:`.group`: metrics across participants;
- :mod:`.classification`: the classification of participants (ROC curves, probabilities).
"""

from __future__ import annotations

from bids_eeg2fmri.reports.figures.attention import plot_attention_graph
from bids_eeg2fmri.reports.figures.brain import (
    axial_cuts,
    plot_correlation_map,
    plot_symmetric_map,
    plot_synthesized_vs_observed,
)
from bids_eeg2fmri.reports.figures.classification import (
    plot_classification_probabilities,
    plot_classification_roc,
    repeat_means,
    roc_curve,
)
from bids_eeg2fmri.reports.figures.common import (
    METHOD_ORDER,
    METRIC_LABELS,
    RUN_LEVEL_METRICS,
    order_methods,
)
from bids_eeg2fmri.reports.figures.group import participant_means, plot_group_metrics
from bids_eeg2fmri.reports.figures.metrics import plot_method_metrics
from bids_eeg2fmri.reports.figures.onsets import plot_volume_onsets
from bids_eeg2fmri.reports.figures.relevance import (
    BANDS,
    band_of,
    band_relevance,
    plot_relevance_lags,
    plot_relevance_topomaps,
)
from bids_eeg2fmri.reports.figures.scalp import known_channels
from bids_eeg2fmri.reports.figures.training import plot_training_history

__all__ = [
    "BANDS",
    "METHOD_ORDER",
    "METRIC_LABELS",
    "RUN_LEVEL_METRICS",
    "axial_cuts",
    "band_of",
    "band_relevance",
    "known_channels",
    "order_methods",
    "participant_means",
    "plot_attention_graph",
    "plot_classification_probabilities",
    "plot_classification_roc",
    "plot_correlation_map",
    "plot_symmetric_map",
    "plot_group_metrics",
    "plot_method_metrics",
    "plot_relevance_lags",
    "plot_relevance_topomaps",
    "plot_synthesized_vs_observed",
    "plot_training_history",
    "plot_volume_onsets",
    "repeat_means",
    "roc_curve",
]

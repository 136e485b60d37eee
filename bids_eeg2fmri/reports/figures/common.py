"""Drawing plumbing shared by every report figure: a figure with its own Agg canvas
(:func:`_new_figure`), its atomic write (:func:`_save`), colour-scale limits, the order
of the methods and the metric labels. No figure is drawn here; every other module of
:mod:`bids_eeg2fmri.reports.figures` builds on these helpers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bids_eeg2fmri.bidsio.files import write_atomic
from bids_eeg2fmri.evaluation.tables import RUN_COLUMNS

#: Metrics of ``*_desc-synth_metrics.tsv`` that hold one value per run (repeated on rows).
RUN_LEVEL_METRICS = RUN_COLUMNS

#: Axis labels of the metrics.
METRIC_LABELS = {
    "r_mask_mean": "mean r in the brain mask",
    "r_mask_median": "median r in the brain mask",
    "r_mask_p90": "90th percentile of r (mask)",
    "r_coupled_mean": "mean r, coupled voxels",
    "noise_ceiling_mean": "noise ceiling (mean r)",
    "fraction_of_ceiling": "fraction of the noise ceiling",
    "rmse_mask": "RMSE in the brain mask",
    "rmse_volume": "RMSE, whole volume",
    "ssim_original": "SSIM (original, 2-D slices)",
    "ssim_mask": "SSIM (3-D, brain mask)",
    "psnr_mask": "PSNR in the brain mask (dB)",
}

#: Baselines after the model, in this order; other methods follow alphabetically.
METHOD_ORDER = ("model", "ridge", "mean-volume")

_DIVERGING = "RdBu_r"


# --------------------------------------------------------------------------------------
# Plumbing


def _new_figure(width: float, height: float, **kwargs):
    """A figure with its own Agg canvas (no pyplot, no global backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), **kwargs)
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: Path, *, dpi: int = 100) -> Path:
    """Write ``figure`` to ``path`` atomically; the format is the suffix of ``path``."""
    import matplotlib

    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in ("svg", "png"):
        raise ValueError(f"figure path must end in .svg or .png, got {path.name!r}")
    # Fixed ids and no date: the same figure gives the same bytes.
    metadata = {"Date": None} if fmt == "svg" else {"Software": None}

    def writer(tmp: Path) -> None:
        with matplotlib.rc_context({"svg.hashsalt": "bids-eeg2fmri"}):
            figure.savefig(
                tmp,
                format=fmt,
                dpi=dpi,
                bbox_inches="tight",
                metadata=metadata,
                facecolor=figure.get_facecolor(),
            )

    try:
        return write_atomic(path, writer, suffix=path.suffix)
    finally:
        figure.clear()


def _finite(values) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    return values[np.isfinite(values)]


def _symmetric_limit(values, *, percentile: float = 100.0) -> float:
    """Largest absolute value (or a percentile of it): the ends of a symmetric colour scale."""
    finite = np.abs(_finite(values))
    if finite.size == 0 or finite.max() == 0:
        return 1.0
    limit = float(np.percentile(finite, percentile))
    return limit if limit > 0 else float(finite.max())


def order_methods(methods: Sequence[str]) -> list[str]:
    """Methods in report order: the model, then the known baselines, then the others."""
    unique = list(dict.fromkeys(str(m) for m in methods))
    known = [m for m in METHOD_ORDER if m in unique]
    return known + sorted(m for m in unique if m not in METHOD_ORDER)


def _truthy(values) -> np.ndarray:
    """``true``/``false`` column (strings or booleans) as bool."""
    return np.array([str(v).strip().lower() in ("true", "1", "yes") for v in values], bool)


def _colour_scale(values: np.ndarray, limit: float) -> tuple[str, float, float]:
    """Colour map and range: sequential from 0 for values that are never negative (e.g.
    an absolute relevance), else diverging and symmetric around 0."""
    finite = np.asarray(values)[np.isfinite(values)]
    if finite.size and finite.min() >= 0:
        return "Reds", 0.0, limit
    return _DIVERGING, -limit, limit

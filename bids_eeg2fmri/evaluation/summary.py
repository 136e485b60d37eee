"""Group summaries that keep the splits apart.

A participant whose volumes trained the model scores optimistically; one held out (or a
model applied to participants it never saw) measures generalisation. The two are never
averaged together: each (split group, method) gets its own mean over participants and a
percentile bootstrap interval over participants.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Split groups, in the order they are reported (generalisation first).
GROUPS = ("held out", "applied", "in training")
#: The metrics table's split values for each group.
SPLITS = {"holdout": "held out", "applied": "applied", "train": "in training",
          "validation": "in training"}  # fmt: skip


#: How each group is introduced in logs and reports.
GROUP_WORDS = {
    "held out": "Held out",
    "applied": "Applied (participants the model did not train on)",
    "in training": "In training (optimistic: these participants trained the model; never "
    "averaged with the held out)",
}
#: The headline metric, and the ones used where it is not available.
HEADLINE = (
    ("fraction_of_ceiling", "fraction of the noise ceiling"),
    ("r_coupled_mean", "r in the coupled voxels"),
    ("r_mask_mean", "r in the brain mask"),
)


def headline_metric(table) -> tuple[str, str] | None:
    """The first metric of :data:`HEADLINE` with a finite value in ``table``, and its words."""
    import pandas as pd

    for metric, words in HEADLINE:
        if metric in table and pd.to_numeric(table[metric], errors="coerce").notna().any():
            return metric, words
    return None


@dataclass(frozen=True)
class GroupMean:
    """One method's mean of a metric over the participants of one split group."""

    group: str
    method: str
    n: int
    mean: float
    low: float  # bootstrap 95 % interval; NaN with fewer than 2 participants
    high: float

    @property
    def optimistic(self) -> bool:
        """Participants the model trained on: their scores overstate generalisation."""
        return self.group == "in training"


def bootstrap_interval(
    values: np.ndarray, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (resampled with
    replacement); NaN, NaN for fewer than 2 values."""
    values = np.asarray(values, float)
    if values.size < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(n_boot, values.size))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def split_means(table, metric: str, methods: Sequence[str], *, seed: int = 0) -> list[GroupMean]:
    """Per split group and method: participants' means of ``metric`` (over their runs of
    that group), their mean and bootstrap interval.

    ``table``: the group metrics table (columns participant, method, split, ``metric``).
    Rows whose split is unknown or whose metric is not finite are left out.
    """
    import pandas as pd

    data = pd.DataFrame(
        {
            "participant": table["participant"].astype(str),
            "method": table["method"].astype(str),
            "group": table["split"].astype(str).map(SPLITS),
            "value": pd.to_numeric(table[metric], errors="coerce"),
        }
    ).dropna()
    per_participant = data.groupby(["group", "method", "participant"], sort=False)["value"].mean()
    values_of = {
        key: series.to_numpy(float)
        for key, series in per_participant.groupby(level=["group", "method"], sort=False)
    }
    found = []
    for group in GROUPS:
        for method in methods:
            values = values_of.get((group, method))
            if values is None:
                continue
            low, high = bootstrap_interval(values, seed=seed)
            found.append(GroupMean(group, method, values.size, float(values.mean()), low, high))
    return found


def describe(mean: GroupMean, digits: int = 3) -> str:
    """``0.812 [0.79, 0.83]`` (or the value alone for one participant)."""
    text = f"{mean.mean:.{digits}f}"
    if np.isfinite(mean.low):
        text += f" [{mean.low:.{digits}f}, {mean.high:.{digits}f}]"
    return text

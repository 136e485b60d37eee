"""Group summaries keep held-out and training participants apart."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bids_eeg2fmri.evaluation.summary import bootstrap_interval, describe, split_means
from bids_eeg2fmri.workflows.group import summary_lines


def _table() -> pd.DataFrame:
    rows = []
    # participants 01-04 trained the model (scores high), 05-06 held out (scores low)
    for participant, split, model, ridge in [
        ("01", "train", 0.9, 0.8),
        ("02", "train", 0.8, 0.7),
        ("03", "validation", 0.85, 0.75),
        ("04", "train", 0.95, 0.7),
        ("05", "holdout", 0.2, 0.5),
        ("06", "holdout", 0.4, 0.6),
    ]:
        for run, shift in (("run-1", 0.0), ("run-2", 0.02)):
            for method, value in (("model", model), ("ridge", ridge), ("mean", np.nan)):
                rows.append(
                    {
                        "participant": participant,
                        "run": f"sub-{participant}_{run}",
                        "method": method,
                        "split": split,
                        "fraction_of_ceiling": value + shift,
                    }
                )
    return pd.DataFrame(rows)


def test_held_out_and_training_are_never_averaged():
    means = {(m.group, m.method): m for m in split_means(_table(), "fraction_of_ceiling",
                                                        ["model", "ridge", "mean"])}  # fmt: skip
    held, trained = means[("held out", "model")], means[("in training", "model")]
    assert held.n == 2 and trained.n == 4
    assert held.mean == pytest.approx((0.21 + 0.41) / 2)  # each participant's runs averaged
    assert trained.mean == pytest.approx(np.mean([0.91, 0.81, 0.86, 0.96]))
    assert trained.optimistic and not held.optimistic
    assert ("held out", "mean") not in means  # no finite value: no line
    assert held.low <= held.mean <= held.high
    assert [m.group for m in means.values()] == ["held out"] * 2 + ["in training"] * 2


def test_summary_lines_put_the_held_out_first_and_mark_training_optimistic():
    lines = summary_lines(_table())
    assert len(lines) == 3
    assert lines[0].startswith("Held out, 2 participant(s), fraction of the noise ceiling")
    assert "model 0.310 [" in lines[0] and "ridge 0.560 [" in lines[0]
    # the ridge wins on the held out (not in training, where the model leads): said plainly
    assert lines[1].startswith("Held out: the ridge baseline scores above the model")
    assert "(0.560 vs 0.310)" in lines[1]
    assert lines[2].startswith("In training (optimistic")
    assert "4 participant(s)" in lines[2]
    winning = _table()
    winning.loc[winning["method"] == "model", "fraction_of_ceiling"] += 0.5
    assert not any("baseline scores above" in line for line in summary_lines(winning))


def test_bootstrap_interval_covers_the_mean_and_needs_two_values():
    values = np.random.default_rng(1).normal(0.5, 0.1, size=40)
    low, high = bootstrap_interval(values)
    assert low < values.mean() < high
    assert high - low == pytest.approx(2 * 1.96 * values.std() / np.sqrt(40), rel=0.2)
    assert np.isnan(bootstrap_interval(np.array([0.3]))).all()


def test_one_participant_is_described_without_an_interval():
    (mean,) = split_means(_table().query("participant == '05' and method == 'model'"),
                          "fraction_of_ceiling", ["model"])  # fmt: skip
    assert describe(mean) == "0.210"

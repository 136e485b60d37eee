"""LRP on simulated data: does the relevance of each source's region point at that source's
channels and band? Ground truth: the simulator's lead field and source bands.

The dataset is small for CI (5 participants x 150 volumes, 16 channels: 3 train, 1
validates, 1 is held out) with the default sources' BOLD coupling made 4 times stronger and
every source at least 10 uV, so that the compact model learns the coupling in a minute; the
relevance is read from the pipeline's own ``eeg/*_desc-lrp_relevance.tsv`` of the held-out
participant: the ``relevance`` column, signed by the way each region's signal moved (the
``absolute_relevance`` column, mean |R| per input, left every band at the same level in the
beta region; lrp module docstring). With 3 training participants and training seeds 0, 1,
2, each band won its region by 1.8 times the next band or more (beta, the weakest source)
and 4 times or more (alpha, theta).
"""

from __future__ import annotations

import csv
import dataclasses
from collections import defaultdict

import numpy as np
import pytest

from bids_eeg2fmri.evaluation.baselines import BANDS
from bids_eeg2fmri.simulate.generator import SimulationConfig, make_head
from bids_eeg2fmri.simulate.sources import DEFAULT_SOURCES
from bids_eeg2fmri.simulate.writer import simulate_dataset

CONFIG = SimulationConfig(
    n_participants=5,
    n_volumes=150,
    n_channels=16,
    grid=(20, 22, 12),
    sources=tuple(
        dataclasses.replace(s, coupling=4 * s.coupling, amplitude_uv=max(s.amplitude_uv, 10.0))
        for s in DEFAULT_SOURCES
    ),
)


@pytest.fixture(scope="module")
def relevance(tmp_path_factory) -> tuple[dict, np.ndarray]:
    """(region, channel, frequency) -> relevance summed over lags; and every row's
    (relevance, absolute_relevance)."""
    from conftest import built_once

    from bids_eeg2fmri.cli.run import main

    def build(root):
        bids = simulate_dataset(CONFIG, root / "ds")
        args = [bids, root / "out", "participant", "--skip-bids-validation", "-w", root / "work"]
        args += ["--train", "--epochs", "30", "--patience", "30", "--batch-size", "16"]
        args += ["--model-grid", "20", "22", "12", "--no-baselines", "--nprocs", "2"]
        assert main([str(a) for a in args]) == 0

    root = built_once(tmp_path_factory, "lrp-sim", build)
    table, rows = defaultdict(float), []
    path = root / "out/sub-05/eeg/sub-05_task-rest_desc-lrp_relevance.tsv"  # held out
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            table[row["region"], row["channel"], float(row["frequency"])] += float(row["relevance"])
            rows.append((float(row["relevance"]), float(row["absolute_relevance"])))
    return table, np.array(rows)


def _scores(tables, region: str):
    table, _ = tables
    channels = sorted({c for r, c, _ in table if r == region})
    freqs = np.array(sorted({f for r, _, f in table if r == region}))
    values = np.array([[table[region, c, f] for f in freqs] for c in channels])
    return channels, freqs, values  # (channels, frequencies)


def _strongest_channels(source: int, n: int = 3) -> list[str]:
    """The source's ``n`` strongest channels in the held-out head, and those tied with the
    strongest (gain within 10 %): symmetric channels tie (sub-05's theta source: F3 1.0,
    Fp1 0.99, Fp2 0.95, F4 0.92), and their order is chance."""
    head = make_head(CONFIG, CONFIG.n_participants - 1)
    gains = np.abs(head.gains[:, source])
    chosen = set(np.argsort(gains)[::-1][:n]) | set(np.flatnonzero(gains >= 0.9 * gains.max()))
    return [head.ch_names[i] for i in sorted(chosen)]


@pytest.mark.parametrize(
    "source", range(len(DEFAULT_SOURCES)), ids=lambda i: CONFIG.sources[i].name
)
def test_each_region_is_explained_by_its_source_channels(relevance, source):
    spec = CONFIG.sources[source]
    channels, freqs, values = _scores(relevance, spec.name)
    in_band = (freqs >= spec.band[0]) & (freqs < spec.band[1])
    top = channels[int(np.argmax(values[:, in_band].sum(axis=1)))]
    assert top in _strongest_channels(source), (spec.name, top)


@pytest.mark.parametrize("band", [s.name for s in DEFAULT_SOURCES])
def test_the_region_is_explained_by_its_source_band(relevance, band):
    # bands compared by their mean relevance per frequency bin (they span different numbers)
    _, freqs, values = _scores(relevance, band)
    per_band = {
        name: values[:, (freqs >= lo) & (freqs < hi)].mean()
        for name, (lo, hi) in BANDS.items()
        if ((freqs >= lo) & (freqs < hi)).any()
    }
    assert max(per_band, key=per_band.get) == band, per_band
    second = sorted(per_band.values())[-2]
    assert per_band[band] > 1.3 * second, per_band


def test_the_relevance_table_covers_every_input(relevance):
    table, rows = relevance
    regions = {r for r, _, _ in table}
    assert regions == {"volume", *(s.name for s in CONFIG.sources)}
    assert np.isfinite(rows).all()
    signed, absolute = rows.T
    # a mean of R * sign is at most the mean of |R| (up to the 6 digits written)
    assert (np.abs(signed) <= absolute * (1 + 1e-5) + 1e-12).all()
    assert (signed < 0).any() and (signed < absolute).any()  # inputs that held a region back

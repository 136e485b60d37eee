"""HTML reports and their figures, on a small fake OUTPUT_DIR written here file by file."""

from __future__ import annotations

import json
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bids_eeg2fmri.reports import figures as fig
from bids_eeg2fmri.reports.html import (
    read_log_warnings,
    write_group_report,
    write_participant_report,
)

CHANNELS = ["Fp1", "Fz", "Cz", "Pz", "O1", "O2", "C3", "C4"]
REGIONS = ["volume", "left-anterior-superior", "right-posterior-inferior"]
SHAPE = (9, 10, 7)  # uneven on purpose
N_VOLUMES = 12
N_DUMMY = 2
TR = 2.0
SHA = "0" * 64


# --------------------------------------------------------------------------------------
# A fake output


def _nifti(path: Path, data: np.ndarray, sidecar: dict | None = None) -> None:
    import nibabel as nib

    affine = np.diag([3.0, 3.0, 4.0, 1.0])
    affine[:3, 3] = [-12.0, -15.0, -12.0]
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data.astype(np.float32), affine), path)
    if sidecar is not None:
        path.with_name(path.name.replace(".nii.gz", ".json")).write_text(json.dumps(sidecar))


def _tsv(path: Path, table: pd.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, sep="\t", index=False, na_rep="n/a")


def _brain(rng, n_volumes: int) -> np.ndarray:
    x, y, z = np.meshgrid(*(np.linspace(-1, 1, n) for n in SHAPE), indexing="ij")
    inside = (x**2 + y**2 + z**2) < 0.8
    base = np.where(inside, 1000.0, 20.0)[..., None]
    return base + rng.normal(0, 15, (*SHAPE, n_volumes))


def _metrics(rng, name: str, split: str) -> pd.DataFrame:
    rows = []
    for method in ("mean-volume", "model", "ridge"):  # not in report order on purpose
        for volume in range(N_VOLUMES):
            in_training = split in ("train", "validation")
            rows.append(
                {
                    "method": method,
                    "volume": volume,
                    "split": split,
                    "in_training": "true" if in_training else "false",
                    "rmse_mask": rng.uniform(10, 30),
                    "rmse_volume": rng.uniform(5, 20),
                    "ssim_original": rng.uniform(0.2, 0.9),
                    "ssim_mask": rng.uniform(0.2, 0.9),
                    "psnr_mask": rng.uniform(15, 30),
                    "r_mask_mean": np.nan if method == "mean-volume" else 0.3,
                    "r_mask_median": np.nan if method == "mean-volume" else 0.25,
                    "r_mask_p90": np.nan if method == "mean-volume" else 0.6,
                    "r_coupled_mean": np.nan,
                    "noise_ceiling_mean": np.nan,
                    "fraction_of_ceiling": np.nan,
                }
            )
    return pd.DataFrame(rows)


def _relevance(rng) -> pd.DataFrame:
    rows = [
        {
            "region": region,
            "channel": channel,
            "frequency": f,
            "lag": lag,
            "relevance": r,
            "absolute_relevance": abs(r) + 0.1,
        }
        for region in REGIONS
        for channel in [*CHANNELS, "EXG1"]  # EXG1: no template position
        for f in np.arange(0.5, 45.0, 1.5)
        for lag in (0.0, TR, 2 * TR)
        for r in [rng.normal()]
    ]
    return pd.DataFrame(rows)


def _volumes(onsets: np.ndarray, how_column: str, repaired: tuple[int, ...]) -> pd.DataFrame:
    how = ["repaired" if i in repaired else "found" for i in range(onsets.size)]
    return pd.DataFrame(
        {
            "onset": onsets,
            "duration": TR,
            "trial_type": "volume",
            "sample": np.round(onsets * 250).astype(int),
            "volume": np.arange(onsets.size),
            how_column: how,
        }
    )


def make_run(
    output: Path,
    bids: Path,
    subject: str,
    name: str,
    *,
    rng,
    bold: bool = True,
    split: str = "holdout",
    how_column: str = "source",
) -> None:
    """Every derivative of one run (the observed BOLD too, when ``bold``)."""
    func, eeg = output / f"sub-{subject}" / "func", output / f"sub-{subject}" / "eeg"
    sources = [f"bids:raw:sub-{subject}/eeg/{name}_eeg.vhdr"]
    if bold:
        raw = f"sub-{subject}/func/{name}_bold.nii.gz"
        observed = _brain(rng, N_DUMMY + N_VOLUMES)
        _nifti(bids / raw, observed)
        sources.append(f"bids:raw:{raw}")
        synth = observed[..., N_DUMMY:] * 0.9 + rng.normal(0, 10, (*SHAPE, N_VOLUMES))
    else:
        synth = rng.normal(0, 1, (*SHAPE, N_VOLUMES))
    _nifti(
        func / f"{name}_desc-synth_bold.nii.gz",
        synth,
        {
            "Description": "BOLD synthesized from EEG by the model demo (noddi).",
            "ModelDigest": SHA,
            "RepetitionTime": TR,
            "VolumesWithoutEEG": [0],
            "Sources": sources,
        },
    )
    onsets = 3.0 + TR * np.arange(N_VOLUMES) + rng.normal(0, 0.002, N_VOLUMES)
    _tsv(eeg / f"{name}_desc-volumes_events.tsv", _volumes(onsets, how_column, (4,)))
    if not bold:
        return
    _nifti(func / f"{name}_desc-corr_statmap.nii.gz", rng.uniform(-0.6, 0.8, SHAPE))
    _tsv(func / f"{name}_desc-synth_metrics.tsv", _metrics(rng, name, split))
    _tsv(eeg / f"{name}_desc-lrp_relevance.tsv", _relevance(rng))
    bands = [b for b, _, _ in fig.BANDS]
    _nifti(
        func / f"{name}_desc-lrp_relevance.nii.gz",
        rng.normal(0, 1, (*SHAPE, len(bands))),
        {"Bands": bands},
    )
    weights = rng.uniform(0, 1, (len(CHANNELS), len(CHANNELS)))
    weights /= weights.sum(axis=1, keepdims=True)
    graph = pd.DataFrame(weights, columns=CHANNELS)
    graph.insert(0, "channel", CHANNELS)
    _tsv(eeg / f"{name}_desc-attention_graph.tsv", graph)


LOG = """\
2026-01-02 10:00:00,001 | bids_eeg2fmri | INFO | bids-eeg2fmri v0.1.0, run x
2026-01-02 10:00:01,002 | x | WARNING | sub-01: 1 volume marker missing <script>alert(1)</script>
2026-01-02 10:00:02,003 | bids_eeg2fmri.models | WARNING | Training stopped early
2026-01-02 10:00:02,004 | bids_eeg2fmri.models | WARNING | Training stopped early
2026-01-02 10:00:03,004 | bids_eeg2fmri.bidsio | WARNING | sub-02: EEG ends before the last volume
2026-01-02 10:00:04,005 | bids_eeg2fmri | ERROR | Report of something failed
Traceback (most recent call last):
  ValueError: boom
"""


@pytest.fixture
def fake(tmp_path) -> tuple[Path, Path]:
    """(OUTPUT_DIR, BIDS_DIR): sub-01 with a run with BOLD and an EEG-only run, sub-02 with
    a run with BOLD, a model card, a log and the group table."""
    rng = np.random.default_rng(42)
    output, bids = tmp_path / "out", tmp_path / "ds"
    make_run(output, bids, "01", "sub-01_task-rest_run-1", rng=rng)
    make_run(output, bids, "01", "sub-01_task-rest_run-2", rng=rng, bold=False)
    make_run(
        output, bids, "02", "sub-02_task-rest_run-1", rng=rng, split="train", how_column="marker"
    )
    card = {
        "name": "demo",
        "preset": "noddi",
        "digest": SHA,
        "trainable_parameters": 12345,
        "training": {
            "participants": {"train": ["02"], "validation": [], "holdout": ["01"]},
            "epochs": 5,
            "history": {
                "loss": [10.0, 3.0, 1.0, 0.5, 0.2],
                "val_loss": [11.0, 4.0, 2.0, 1.5, 1.6],
                "synth_loss": [1.0, 0.8, 0.7, 0.6, 0.55],
                "val_synth_loss": [1.1, 0.9, 0.8, 0.75, 0.76],
            },
        },
    }
    (output / "models").mkdir(parents=True)
    (output / "models" / "demo.json").write_text(json.dumps(card))
    (output / "models" / "demo_evaluation.json").write_text(json.dumps({"run": {}}))
    (output / "logs").mkdir()
    (output / "logs" / "bids-eeg2fmri-20260102-100000_abcd1234.log").write_text(LOG)
    group = []
    for subject, name, split in (
        ("01", "sub-01_task-rest_run-1", "holdout"),
        ("02", "sub-02_task-rest_run-1", "train"),
    ):
        table = _metrics(rng, name, split)
        means = table.groupby("method").mean(numeric_only=True).reset_index()
        means.insert(0, "participant", subject)
        means.insert(1, "run", name)
        means.insert(2, "split", split)
        means["n_volumes"] = N_VOLUMES
        group.append(means.drop(columns=["volume"]))
    _tsv(output / "group_desc-synth_metrics.tsv", pd.concat(group))
    return output, bids


# --------------------------------------------------------------------------------------
# Helpers


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.links, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        if tag == "a":
            self.links.append(attrs["href"])
        assert tag not in ("script", "link"), f"<{tag}> in a self-contained report"

    def handle_data(self, data):
        self.text.append(data)


def _parse(page: Path) -> _Page:
    parser = _Page()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def _assert_images_exist(page: Path, parsed: _Page) -> None:
    assert parsed.images
    for src in parsed.images:
        assert not src.startswith(("/", "http", "file:")), src
        target = page.parent / src
        assert target.is_file() and target.stat().st_size > 500, src


def _no_temporary_files(root: Path) -> None:
    leftovers = [p for p in root.rglob(".*") if p.is_file()]
    assert leftovers == []


# --------------------------------------------------------------------------------------
# Tests


def test_participant_report(fake):
    import matplotlib.pyplot as plt

    output, bids = fake
    before = plt.get_fignums()
    page = write_participant_report(output, "sub-01", bids_dir=bids)
    assert page == output / "sub-01.html"
    parsed = _parse(page)
    text = " ".join(parsed.text)
    html = page.read_text(encoding="utf-8")

    _assert_images_exist(page, parsed)
    assert all(src.startswith("sub-01/figures/sub-01_") for src in parsed.images)
    for title in ("Summary", "Training", "Warnings", "About"):
        assert f">{title}</h2>" in html
    for run in ("sub-01_task-rest_run-1", "sub-01_task-rest_run-2"):
        assert f'id="{run}"' in html
    assert "sub-02_task-rest_run-1" not in html
    # Pairing, the EEG-only run and the split.
    assert "sub-01/func/sub-01_task-rest_run-1_bold.nii.gz" in text
    assert "EEG only" in text
    assert "holdout 12" in text
    assert "demo (noddi)" in text
    # Warnings: this participant's and the general ones, escaped; not sub-02's.
    assert "1 volume marker missing" in text
    assert "Training stopped early" in text
    assert "Report of something failed" in text and "ValueError: boom" in text
    assert "EEG ends before the last volume" not in text
    assert "<script>" not in html and "&lt;script&gt;" in html
    # Figures of the run with BOLD, notes for the EEG-only run, nothing failed.
    names = {Path(src).name for src in parsed.images}
    run1 = "sub-01_task-rest_run-1"
    for figure in (
        f"{run1}_desc-onsets_events.svg",
        f"{run1}_desc-synth_bold.png",
        f"{run1}_desc-corr_statmap.png",
        f"{run1}_desc-synth_metrics.svg",
        f"{run1}_desc-lrp_relevance.png",
        f"{run1}_desc-lrplag_relevance.svg",
        f"{run1}_desc-attention_graph.svg",
        "sub-01_task-rest_run-2_desc-synth_bold.png",
        "sub-01_desc-training_curves.svg",
    ):
        assert figure in names
    assert "sub-01_task-rest_run-2_desc-corr_statmap.png" not in names
    assert "EEG-only run" in text
    assert "could not be" not in text
    assert "sub-01 was in the holdout split" in text
    assert plt.get_fignums() == before
    _no_temporary_files(output)


def test_report_survives_moving_the_output(fake, tmp_path):
    output, bids = fake
    write_participant_report(output, "01", bids_dir=bids)
    moved = Path(shutil.move(output, tmp_path / "elsewhere"))
    page = moved / "sub-01.html"
    _assert_images_exist(page, _parse(page))


def test_missing_pieces_give_notes(fake):
    output, bids = fake
    run = "sub-02_task-rest_run-1"
    for path in (
        output / "sub-02" / "eeg" / f"{run}_desc-lrp_relevance.tsv",
        output / "sub-02" / "eeg" / f"{run}_desc-attention_graph.tsv",
        output / "sub-02" / "func" / f"{run}_desc-synth_metrics.tsv",
        bids / "sub-02" / "func" / f"{run}_bold.nii.gz",
    ):
        path.unlink()
    shutil.rmtree(output / "models")
    shutil.rmtree(output / "logs")
    page = write_participant_report(output, "02", bids_dir=bids)
    parsed = _parse(page)
    text = " ".join(parsed.text)
    _assert_images_exist(page, parsed)
    assert f"no {run}_desc-lrp_relevance.tsv" in text
    assert f"no {run}_desc-attention_graph.tsv" in text
    assert "was not found under the input dataset" in text
    assert "hold no warning" in text
    assert ">Training</h2>" not in page.read_text(encoding="utf-8")
    # A participant without any output still gets a page.
    empty = write_participant_report(output, "03", bids_dir=bids)
    assert "No outputs were found for sub-03" in empty.read_text(encoding="utf-8")


def test_broken_files_give_notes(fake):
    output, bids = fake
    run = "sub-02_task-rest_run-1"
    graph = output / "sub-02" / "eeg" / f"{run}_desc-attention_graph.tsv"
    graph.write_text(graph.read_text().replace("\t0.", "\tx", 1))
    synth = output / "sub-02" / "func" / f"{run}_desc-synth_bold.nii.gz"
    synth.write_bytes(synth.read_bytes()[:200])  # truncated
    page = write_participant_report(output, "02", bids_dir=bids)
    text = " ".join(_parse(page).text)
    assert "Synthesized and observed BOLD: the images could not be read" in text
    assert "Attention between channels: the figure could not be drawn" in text
    assert f"{run}_desc-lrp_relevance.png" in page.read_text()  # the rest is still there
    _no_temporary_files(output)


def test_group_report(fake):
    output, bids = fake
    for subject in ("01", "02"):
        write_participant_report(output, subject, bids_dir=bids)
    page = write_group_report(output)
    assert page == output / "group.html"
    parsed = _parse(page)
    text = " ".join(parsed.text)
    _assert_images_exist(page, parsed)
    assert {Path(s).name for s in parsed.images} >= {
        "group_desc-synth_metrics.svg",
        "group_desc-lrp_relevance.png",
        "group_desc-training_curves.svg",
    }
    assert all(s.startswith("figures/") for s in parsed.images)
    assert {"sub-01.html", "sub-02.html"} <= set(parsed.links)
    assert "could not be" not in text
    # The headline first: held-out participants, then those the model trained on, apart.
    html = page.read_text()
    headline = html[html.index("Headline") :]
    assert headline.index("Held out") < headline.index("In training (optimistic")
    assert "95 % interval" in headline and "never averaged" in headline
    # Then one table per split group, the model row first in each, one participant each.
    for who in ("Held out</", "In training (optimistic"):
        part = html[html.index(who, html.index("Mean ± sd") - 2000) :]
        methods = re.findall(r"<tr[^>]*>\s*<td>(model|ridge|mean-volume)</td>\s*<td>(\d)", part)
        assert methods[:3] == [("model", "1"), ("ridge", "1"), ("mean-volume", "1")]
    _no_temporary_files(output)


def test_relevance_tables_of_an_older_version_are_not_shown_as_the_new_meaning(fake):
    # before absolute_relevance, the relevance column held the mean |R|: not comparable
    output, bids = fake
    run = "sub-02_task-rest_run-1"
    path = output / "sub-02" / "eeg" / f"{run}_desc-lrp_relevance.tsv"
    older = pd.read_csv(path, sep="\t").drop(columns="absolute_relevance")
    _tsv(path, older.assign(relevance=older["relevance"].abs()))
    for subject in ("01", "02"):
        write_participant_report(output, subject, bids_dir=bids)
    text = " ".join(_parse(output / "sub-02.html").text)
    assert "written by a version whose relevance column had another meaning" in text
    assert f"{run}_desc-lrp_relevance.png" not in (output / "sub-02.html").read_text()
    group = write_group_report(output)
    text = " ".join(_parse(group).text)
    assert f"Left out of the mean: {run}_desc-lrp_relevance.tsv" in text
    assert "group_desc-lrp_relevance.png" in group.read_text()  # sub-01's still averaged


def test_group_report_without_group_table(fake):
    output, _ = fake
    (output / "group_desc-synth_metrics.tsv").unlink()
    page = write_group_report(output)
    text = " ".join(_parse(page).text)
    assert "participants' *_desc-synth_metrics.tsv" in text
    assert "could not be" not in text


def test_log_warnings_both_formats(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.log").write_text(
        "2026-01-02 10:00:00,001 WARNING plain format\n"
        "2026-01-02 10:00:00,002 | x | INFO | not a warning\n"
        "2026-01-02 10:00:00,003 | x | ERROR | sub-07 broke\n"
    )
    records = read_log_warnings(tmp_path)
    assert [(r["level"], r["message"]) for r in records] == [
        ("WARNING", "plain format"),
        ("ERROR", "sub-07 broke"),
    ]
    assert [r["message"] for r in read_log_warnings(tmp_path, "01")] == ["plain format"]


def test_band_relevance_sums_lags_and_averages_the_bins_of_a_band():
    table = pd.DataFrame(
        {
            "region": "volume",
            "channel": "Cz",
            "frequency": [0.5, 2.0, 3.5, 10.0, 10.0, 45.0],
            "lag": [0.0, 0.0, 2.0, 0.0, 2.0, 0.0],
            "relevance": [100.0, 1.0, 2.0, 3.0, 4.0, 5.0],
        }
    )
    bands = fig.band_relevance(table).set_index("band")["relevance"]
    # delta: bins 2 and 3.5 Hz (1 and 2) -> 1.5; alpha: one bin, lags 3 + 4; 0.5 Hz: no band
    assert bands.to_dict() == {"delta": 1.5, "alpha": 7.0, "gamma": 5.0}


def test_known_channels_is_case_insensitive():
    kept, dropped = fig.known_channels(["FP1", "cz", "EXG1", "Cz"])
    assert kept == ["FP1", "cz"] and dropped == ["EXG1"]


def test_figure_functions_write_files(tmp_path):
    rng = np.random.default_rng(0)
    affine = np.diag([3.0, 3.0, 4.0, 1.0])
    volume = _brain(rng, 1)[..., 0]
    onsets = 1.0 + TR * np.arange(10)
    relevance = _relevance(rng)
    calls = {
        "onsets.svg": lambda p: fig.plot_volume_onsets(onsets, tr=TR, path=p),
        "slices.png": lambda p: fig.plot_synthesized_vs_observed(
            volume, volume, affine=affine, path=p
        ),
        "slices_eeg_only.png": lambda p: fig.plot_synthesized_vs_observed(
            volume, None, affine=affine, path=p
        ),
        "r.png": lambda p: fig.plot_correlation_map(
            rng.uniform(-1, 1, SHAPE), affine=affine, background=volume, path=p
        ),
        "metrics.svg": lambda p: fig.plot_method_metrics(_metrics(rng, "x", "holdout"), path=p),
        "topomaps.svg": lambda p: fig.plot_relevance_topomaps(
            fig.band_relevance(relevance), path=p
        ),
        "lags.svg": lambda p: fig.plot_relevance_lags(relevance, path=p),
        "graph.svg": lambda p: fig.plot_attention_graph(
            np.full((3, 3), 1 / 3), channels=["Cz", "Pz", "EXG1"], path=p
        ),
        "history.svg": lambda p: fig.plot_training_history({"loss": [3.0, 2.0]}, path=p),
    }
    for name, call in calls.items():
        path = call(tmp_path / name)
        assert path == tmp_path / name and path.stat().st_size > 1000, name
    _no_temporary_files(tmp_path)
    with pytest.raises(ValueError, match="at least 4 channels"):
        fig.plot_relevance_topomaps(
            fig.band_relevance(relevance[relevance["channel"].isin(["Cz", "EXG1"])]),
            path=tmp_path / "few.svg",
        )
    assert not (tmp_path / "few.svg").exists()


def test_onset_axes_never_zoom_in_below_one_sample(tmp_path, monkeypatch):
    """Onsets on the TR grid deviate from the fitted line by floating-point noise (about
    1e-11 ms): the axes span at least one sample period either side and the plot says that
    every onset is within one sample, instead of drawing the noise as if it were data."""
    from bids_eeg2fmri.reports.figures import onsets as onsets_module
    from bids_eeg2fmri.reports.html.run import _sampling_rate

    drawn = {}
    save = onsets_module._save

    def keep(figure, path, **kwargs):
        drawn["ylims"] = [ax.get_ylim() for ax in figure.axes]
        drawn["texts"] = [t.get_text() for ax in figure.axes for t in ax.texts]
        return save(figure, path, **kwargs)

    monkeypatch.setattr(onsets_module, "_save", keep)
    sfreq = 250.0
    period_ms = 1000.0 / sfreq
    rng = np.random.default_rng(0)
    onsets = 1.0 + TR * np.arange(10) + rng.normal(0.0, 1e-14, 10)
    fig.plot_volume_onsets(onsets, tr=TR, sfreq=sfreq, path=tmp_path / "flat.svg")
    assert len(drawn["ylims"]) == 2
    for low, high in drawn["ylims"]:
        assert low <= -period_ms and high >= period_ms
    assert any("all onsets within one sample" in t for t in drawn["texts"])

    onsets[5] += 0.010  # 10 ms: a real deviation, drawn as data
    fig.plot_volume_onsets(onsets, tr=TR, sfreq=sfreq, path=tmp_path / "jump.svg")
    assert drawn["ylims"][0][1] > 5.0
    assert not any("within one sample" in t for t in drawn["texts"])

    # The report finds the sampling rate in the onsets table (sample = onset * sfreq).
    table = _volumes(3.0 + TR * np.arange(N_VOLUMES), "marker", ())
    assert _sampling_rate(table) == pytest.approx(250.0, rel=1e-3)
    assert _sampling_rate(table.drop(columns="sample")) is None


def test_a_run_with_seen_and_unseen_volumes_reports_the_unseen_ones():
    """One participant split in time: its run's table mixes training and held-out volumes
    (pandas gives read-only arrays: the selection must not be changed in place)."""
    from bids_eeg2fmri.reports.html.metrics import _run_metrics_rows

    table = _metrics(np.random.default_rng(3), "sub-01_task-rest", "train")
    table.loc[table["volume"] >= N_VOLUMES - 2, ["split", "in_training"]] = ["holdout", "false"]
    rows, _, basis = _run_metrics_rows(table)
    assert basis == "the volumes never seen in training"
    assert [row[:2] for row in rows] == [["model", "2"], ["ridge", "2"], ["mean-volume", "2"]]


def test_reports_on_two_processes_are_the_ones_written_on_one(fake, tmp_path):
    import logging

    from bids_eeg2fmri.reports.html.batch import write_participant_reports

    output, bids = fake
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    shutil.copytree(output, serial)
    shutil.copytree(output, parallel)
    logger = logging.getLogger("bids_eeg2fmri")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        pages = {}
        for folder, nprocs in ((serial, 1), (parallel, 2)):
            records.clear()
            pages[nprocs] = list(
                write_participant_reports(
                    folder, ["01", "02"], bids_dir=bids, nprocs=nprocs, mem_gb=8.0
                )
            )
            written = [r for r in records if r.name.endswith(".participant")]
            said = sorted(r.getMessage() for r in written)
            assert said == ["Writing the report of sub-01 (2 run(s))",
                            "Writing the report of sub-02 (1 run(s))"], said  # fmt: skip
            # written here, or by the worker processes (their records sent back)
            assert {r.process == os.getpid() for r in written} == {nprocs == 1}
            assert not [r for r in records if r.levelno >= logging.WARNING]
        assert "Writing 2 reports, 2 at a time" in records[0].getMessage()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    assert pages[1] == [serial / "sub-01.html", serial / "sub-02.html"]
    assert pages[2] == [parallel / "sub-01.html", parallel / "sub-02.html"]
    stamp = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d\+00:00)?|/serial|/parallel")
    for name in ("sub-01.html", "sub-02.html"):
        one, two = ((f / name).read_text(encoding="utf-8") for f in (serial, parallel))
        assert stamp.sub("", one) == stamp.sub("", two)
    figures = sorted(p.relative_to(serial) for p in serial.rglob("figures/*"))
    assert figures and figures == sorted(
        p.relative_to(parallel) for p in parallel.rglob("figures/*")
    )
    for figure in figures:
        assert (serial / figure).read_bytes() == (parallel / figure).read_bytes(), figure


def test_reports_run_as_many_at_a_time_as_memory_holds(fake, tmp_path, caplog):
    from bids_eeg2fmri.reports.html.batch import report_memory_gb, write_participant_reports

    output, bids = fake
    need = report_memory_gb(output, "01")
    assert need > 0.5  # the synthesized BOLD counts
    assert report_memory_gb(tmp_path, "01") == 0.5  # no run: the base
    caplog.set_level("INFO", logger="bids_eeg2fmri")
    pages = list(
        write_participant_reports(output, ["01", "02"], bids_dir=bids, nprocs=2, mem_gb=need)
    )
    assert [p.name for p in pages] == ["sub-01.html", "sub-02.html"]
    assert "at a time" not in caplog.text  # one at a time, in this process


def test_reports_left_when_the_processes_stop_are_written_here(fake, monkeypatch, caplog):
    from concurrent.futures.process import BrokenProcessPool

    from bids_eeg2fmri.reports.html import batch

    class StoppingPool:  # the first report comes back, then the workers die
        def __init__(self, *args, **kwargs):
            pass

        def map(self, function, *arguments):
            yield Path(arguments[0][0]) / "sub-01.html"
            raise BrokenProcessPool("a worker was killed")

        def shutdown(self, wait=True, cancel_futures=False):
            pass

    monkeypatch.setattr(batch, "ProcessPoolExecutor", StoppingPool)
    output, bids = fake
    caplog.set_level("INFO", logger="bids_eeg2fmri")
    pages = list(
        batch.write_participant_reports(output, ["01", "02"], bids_dir=bids, nprocs=2, mem_gb=8)
    )
    assert [p.name for p in pages] == ["sub-01.html", "sub-02.html"]
    assert (output / "sub-02.html").is_file() and not (output / "sub-01.html").exists()
    assert "The report processes stopped (a worker was killed): the 1 report(s) left" in (
        caplog.text
    )


def test_reports_from_a_script_without_a_main_guard_are_written_here(fake, tmp_path):
    """Spawned processes run the calling script again from the top; one without
    ``if __name__ == "__main__":`` stops them at their start: the reports come from this
    process, with a warning, and not from a rerun of the script."""
    import subprocess
    import sys

    output, bids = fake
    script = tmp_path / "unguarded.py"
    script.write_text(
        "import logging, sys\n"
        "from pathlib import Path\n"
        "from bids_eeg2fmri.reports.html.batch import write_participant_reports\n"
        "logging.basicConfig(level='WARNING')\n"
        f"out, ds = Path({str(output)!r}), Path({str(bids)!r})\n"
        "pages = write_participant_reports(out, ['01', '02'], bids_dir=ds, nprocs=2, mem_gb=8)\n"
        "print('PAGES', *[p.name for p in pages])\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["PAGES sub-01.html sub-02.html"]
    assert "No report process could start" in done.stderr
    assert 'needs `if __name__ == "__main__":`' in done.stderr
    assert (output / "sub-01.html").is_file() and (output / "sub-02.html").is_file()

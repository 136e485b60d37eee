"""The derivatives of a full simulated run (participant --train, then group): metrics
against baselines, r maps, LRP outputs, reports, the group table, a valid dataset."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import run_cli

SUBJECTS = ("01", "02", "03")


def read_tsv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


@pytest.fixture(scope="module")
def full(dataset, trained, tmp_path_factory) -> Path:
    """A copy of the trained output after the group level."""
    from bids_eeg2fmri.cli.run import main

    out = Path(shutil.copytree(trained, tmp_path_factory.mktemp("full") / "out"))
    assert main([str(dataset), str(out), "group", "-w", str(out.parent / "work")]) == 0
    return out


def test_every_run_has_its_metrics_maps_and_relevance(dataset, full):
    card = json.loads((full / "models/compact.json").read_text())
    channels, freqs = card["channels"], card["frequencies"]
    for sub in SUBJECTS:
        stem = f"sub-{sub}_task-rest"
        func, eeg = full / f"sub-{sub}/func", full / f"sub-{sub}/eeg"
        observed = nib.load(dataset / f"sub-{sub}/func/{stem}_bold.nii.gz")
        corr = nib.load(func / f"{stem}_desc-corr_statmap.nii.gz")
        assert corr.shape == observed.shape[:3] and np.allclose(corr.affine, observed.affine)
        r = corr.get_fdata()
        assert np.nanmax(np.abs(r)) <= 1 and np.isfinite(r).sum() > 0

        relevance = read_tsv(eeg / f"{stem}_desc-lrp_relevance.tsv")
        regions = list(dict.fromkeys(row["region"] for row in relevance))
        assert regions == ["volume", "alpha", "beta", "theta"]  # the simulated sources
        assert len(relevance) == len(regions) * len(channels) * len(freqs) * card["n_windows"]
        assert {row["channel"] for row in relevance} == set(channels)
        lags = sorted({float(row["lag"]) for row in relevance})
        assert lags[0] == 0 and lags[1] == pytest.approx(card["tr"], abs=1e-3)
        assert all(np.isfinite(float(row["relevance"])) for row in relevance)
        sidecar = json.loads((eeg / f"{stem}_desc-lrp_relevance.json").read_text())
        assert {"region", "channel", "frequency", "lag", "relevance"} <= set(sidecar)

        volume = nib.load(func / f"{stem}_desc-lrp_relevance.nii.gz")
        bands = json.loads((func / f"{stem}_desc-lrp_relevance.json").read_text())["Bands"]
        assert bands[:4] == ["delta", "theta", "alpha", "beta"]
        assert volume.shape == (*observed.shape[:3], len(bands))

        graph = read_tsv(eeg / f"{stem}_desc-attention_graph.tsv")
        assert [row["channel"] for row in graph] == channels
        weights = np.array([[float(row[c]) for c in channels] for row in graph])
        assert np.allclose(weights.sum(axis=1), 1, atol=1e-4) and (weights >= 0).all()


def test_the_metrics_table_compares_the_model_with_both_baselines(full):
    card = json.loads((full / "models/compact.json").read_text())
    for sub in SUBJECTS:
        path = full / f"sub-{sub}/func/sub-{sub}_task-rest_desc-synth_metrics.tsv"
        rows = read_tsv(path)
        sidecar = json.loads(path.with_suffix(".json").read_text())
        assert all(column in sidecar for column in rows[0])  # every column described
        by_method = {
            m: [r for r in rows if r["method"] == m] for m in ("model", "mean-volume", "ridge")
        }
        synth = json.loads(path.with_name(f"sub-{sub}_task-rest_desc-synth_bold.json").read_text())
        with_eeg = [v for v in range(40) if v not in synth["VolumesWithoutEEG"]]
        for method_rows in by_method.values():  # one row per volume with EEG
            assert [int(r["volume"]) for r in method_rows] == with_eeg
        held = sub in card["training"]["participants"]["holdout"]
        for method_rows in by_method.values():
            splits = {r["split"] for r in method_rows}
            assert splits == {"holdout"} if held else splits <= {"train", "validation"}
            assert {r["in_training"] for r in method_rows} == ({"false"} if held else {"true"})
            for row in method_rows:
                assert float(row["rmse_mask"]) > 0 and float(row["rmse_volume"]) > 0
                assert -1 <= float(row["ssim_original"]) <= 1
                assert -1 <= float(row["ssim_mask"]) <= 1
                assert float(row["noise_ceiling_mean"]) > 0  # simulated data
        assert {r["r_mask_mean"] for r in by_method["mean-volume"]} == {"n/a"}  # constant
        for method in ("model", "ridge"):
            assert -1 <= float(by_method[method][0]["r_mask_p90"]) <= 1
            assert float(by_method[method][0]["r_mask_median"]) <= float(
                by_method[method][0]["r_mask_p90"]
            )
        # the mean-volume baseline is constant in time: its per-volume error tracks the
        # observed BOLD's deviation from its mean, not the model's
        assert len({r["rmse_mask"] for r in by_method["mean-volume"]}) > 1


def test_the_group_level_gathers_every_participant(full):
    rows = read_tsv(full / "group_desc-synth_metrics.tsv")
    assert sorted((r["participant"], r["method"]) for r in rows) == sorted(
        (s, m) for s in SUBJECTS for m in ("model", "mean-volume", "ridge")
    )
    sidecar = json.loads((full / "group_desc-synth_metrics.json").read_text())
    assert all(column in sidecar for column in rows[0])
    held = [r for r in rows if r["participant"] == "03"]
    per_run = read_tsv(full / "sub-03/func/sub-03_task-rest_desc-synth_metrics.tsv")
    model = [float(r["rmse_mask"]) for r in per_run if r["method"] == "model"]
    assert {r["split"] for r in held} == {"holdout"}
    assert {r["n_volumes"] for r in held} == {str(len(model))}
    group_model = next(r for r in held if r["method"] == "model")
    assert float(group_model["rmse_mask"]) == pytest.approx(np.mean(model), rel=1e-4)
    assert {r["in_training"] for r in rows} == {"true", "false"}  # as the run tables write it


@pytest.mark.parametrize(
    ("breaker", "message"),
    [
        (
            lambda text: b"\x98\x00" + text.encode(),
            "sub-01_task-rest_desc-synth_metrics.tsv: not UTF-8",
        ),
        (
            lambda text: text.splitlines()[0] + "\n",
            "sub-01_task-rest_desc-synth_metrics.tsv: no rows",
        ),
        (
            lambda text: text.replace("\tfalse\t", "\tfalse\tbroken\t", 1).replace(
                "\ttrue\t", "\ttrue\tbroken\t", 1
            ),
            "line 2 has",
        ),
        (
            lambda text: "\n".join(
                [text.splitlines()[0], text.splitlines()[1].rsplit("\t", 1)[0] + "\tabc"]
                + text.splitlines()[2:]
            ),
            ", line 2: 'abc' (a number or n/a)",
        ),
    ],
    ids=["not-utf8", "no-rows", "ragged", "text-value"],
)
def test_a_broken_run_table_stops_the_group_level_naming_it(
    dataset, full, tmp_path, capsys, breaker, message
):
    out = Path(shutil.copytree(full, tmp_path / "out"))
    table = out / "sub-01/func/sub-01_task-rest_desc-synth_metrics.tsv"
    broken = breaker(table.read_text())
    table.unlink()
    (table.write_bytes if isinstance(broken, bytes) else table.write_text)(broken)
    code, errors = run_cli([dataset, out, "group", "-w", tmp_path / "w"], capsys)
    assert code == 65 and len(errors) == 1 and message in errors[0], errors


def test_reports_link_only_existing_figures(full):
    pages = [full / f"sub-{s}.html" for s in SUBJECTS] + [full / "group.html"]
    for page in pages:
        html = page.read_text(encoding="utf-8")
        images = re.findall(r'<img[^>]+src="([^"]+)"', html)
        assert images, page
        for src in images:
            assert not src.startswith(("/", "http")) and (page.parent / src).is_file(), src
    assert "sub-03_task-rest" in (full / "sub-03.html").read_text()


def test_the_output_is_a_valid_derivative_dataset(full, tmp_path):
    from bids_eeg2fmri.bidsio.validator import errors_of, run_validator

    assert errors_of(run_validator(full, cache_dir=tmp_path / "deno")) == []
    described = {
        row["desc_id"].removeprefix("desc-") for row in read_tsv(full / "descriptions.tsv")
    }
    used = {
        m.group(1)
        for p in full.rglob("*")
        for m in [re.search(r"_desc-([a-zA-Z0-9]+)_", p.name)]
        if m and "logs" not in p.parts and "figures" not in p.parts  # reports: not data
    }
    assert used and used <= described
    leftovers = [p for p in full.rglob(".*") if p.name != ".bidsignore"]
    assert leftovers == []  # no temporary file left behind


def test_the_manifest_checks_out_and_lists_the_derivatives(full):
    manifest = (full / "logs/outputs.sha256").read_text().splitlines()
    listed = {line.split("  ", 1)[1] for line in manifest}
    assert "group_desc-synth_metrics.tsv" in listed
    assert "sub-03/func/sub-03_task-rest_desc-synth_bold.nii.gz" in listed
    assert not any(
        name.startswith(("logs/", "models/")) or name.endswith(".html") for name in listed
    )
    check = subprocess.run(
        ["sha256sum", "--check", "--quiet", "logs/outputs.sha256"],
        cwd=full,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_group_without_participant_outputs_exits_66(dataset, tmp_path, capsys):
    code, errors = run_cli([dataset, tmp_path / "out", "group", "-w", tmp_path / "w"], capsys)
    assert code == 66 and "nothing to gather" in errors[0]


def test_relevance_rows_go_region_channel_frequency_lag():
    from bids_eeg2fmri.workflows.explain import relevance_rows

    towards = np.random.default_rng(1).standard_normal((2, 3, 4, 5)).astype(np.float32)
    freqs, lags = np.array([0.5, 1.0, 1.5, 2.0]), np.array([8.0, 6.0, 4.0, 2.0, 0.0])
    rows = relevance_rows(["volume", "alpha"], ["Fp1", "Cz", "O2"], freqs, lags, towards, -towards)
    assert len(rows) == 2 * 3 * 4 * 5
    r, c, f, w = 1, 2, 3, 1
    row = rows[((r * 3 + c) * 4 + f) * 5 + w]
    assert row == ["alpha", "O2", "2.0000", "6.0000", f"{towards[r, c, f, w]:.6g}",
                   f"{-towards[r, c, f, w]:.6g}"]  # fmt: skip

"""The benchmark harness's arithmetic and verdicts (benchmarks/report.py) on made-up figures:
the targets it declares met or missed, the ours/original ratios, and the study's cost.
Running the harness itself is `make bench-quick` (minutes), not a test."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import report  # noqa: E402  (benchmarks/ is not a package)


def _run(model: float, ridge: float, *, rmse_model: float = 0.9) -> dict:
    return {
        "wall_s": 1000.0,
        "training_s": 400.0,
        "epochs_run": 8,
        "training_samples": 3000,
        "samples_per_s_end_to_end": 60.0,
        "validation_loss_first": 1.0,
        "validation_loss_best": 0.99,
        "noise_ceiling": 0.65,
        "model_train_fraction_of_ceiling": 0.9,
        "methods": {
            "model": {"fraction_of_ceiling": model, "rmse_mask": rmse_model},
            "ridge": {"fraction_of_ceiling": ridge, "rmse_mask": 0.95},
            "mean-volume": {"fraction_of_ceiling": None, "rmse_mask": 1.0},
        },
    }


RESULTS = {
    "quick": False,
    "machine": {
        "command": "python benchmarks/bench.py",
        "date": "2026-11-25",
        "cpu": "CPU",
        "cores": 2,
        "memory_gib": 8,
        "gpus": [],
        "python": "3.11",
        "versions": {"tensorflow": "2.21"},
    },
    "seconds": {"total": 3000.0},
    "preprocessing": {
        "volumes": 1667,
        "eeg_hours": 1.0,
        "channels": 64,
        "grid": [64, 64, 30],
        "nprocs1": {
            "wall_s": [20.0, 21.0, 19.0],
            "wall_s_median": 20.0,
            "s_per_eeg_hour": 20.0,
            "peak_rss_mb_median": 1000,
        },
        "nprocs2": {
            "wall_s": [12.0, 13.0, 11.0],
            "wall_s_median": 12.0,
            "s_per_eeg_hour": 12.0,
            "peak_rss_mb_median": 1000,
        },
    },
    "quality": {
        "participants": 16,
        "volumes": 300,
        "held_out": ["13", "14", "15", "16"],
        "epochs": 8,
        "channels": 64,
        "grid": [64, 64, 30],
        "runs": {f"compact/seed{s}": _run(0.85, 0.7) for s in range(3)},
    },
    "models": {
        "devices": ["CPU"],
        "matmul_gflops": 200.0,
        "steps": 10,
        "repeats": 3,
        "noddi-tafp": {
            "trainable_parameters": 44_741_047,
            "train_samples_per_s": 18.0,
            "fit_samples_per_s": 24.0,
            "synthesis_volumes_per_s": 400.0,
            "synthesis_mflop_per_volume": 146.2,
            "training_mflop_per_sample": 2000.0,
            "training_fraction_of_matmul": 0.18,
        },
        "spectra": {"eeg_hours": 1.0, "seconds": 0.5, "s_per_eeg_hour": 0.5},
    },
    "original": {
        "train_samples_per_s": 6.0,
        "train_step_samples_per_s": 9.0,
        "synthesis_volumes_per_s": 100.0,
        "stft_seconds_per_hour_64ch": 2.0,
    },
}


def test_targets_met_are_reported_met():
    results = copy.deepcopy(RESULTS)
    assert report.quality_checks(results) == {"ceiling": True, "ridge": True, "mean-volume": True}
    results["original"]["stft_seconds_per_hour_64ch"] = 5.0  # 10x ours
    results["original"]["train_step_samples_per_s"] = 5.0  # 3.6x
    text = report.markdown(results | {"scale": report.scale(results)})
    assert "**no**" not in text
    assert "What limits the default model" not in text


def test_one_seed_below_the_ceiling_or_the_ridge_fails_the_target_and_is_explained():
    results = copy.deepcopy(RESULTS)
    results["quality"]["runs"]["compact/seed1"] = _run(0.5, 0.7)
    checks = report.quality_checks(results)
    assert checks == {"ceiling": False, "ridge": False, "mean-volume": True}
    text = report.markdown(results | {"scale": report.scale(results)})
    assert "**no**" in text
    assert "What limits the default model" in text
    assert "0.500-0.850" in text  # the spread over seeds, not only the median
    assert "fell by 1.0-1.0 %" in text and "barely moves" in text  # from the loss history


def test_a_model_worse_than_the_mean_volume_in_rmse_fails():
    results = copy.deepcopy(RESULTS)
    results["quality"]["runs"]["compact/seed0"] = _run(0.9, 0.7, rmse_model=1.1)
    assert report.quality_checks(results)["mean-volume"] is False


def test_a_baseline_that_was_not_fitted_is_not_measured_rather_than_beaten():
    results = copy.deepcopy(RESULTS)
    for run in results["quality"]["runs"].values():
        del run["methods"]["ridge"]
    assert report.quality_checks(results)["ridge"] is None
    assert report.quality_checks(results)["ceiling"] is True
    text = report.markdown(results | {"scale": report.scale(results)})
    assert "| beats the ridge baseline in every seed (r and RMSE) | not measured |" in text


def test_a_failed_seed_is_left_out_of_the_figures():
    results = copy.deepcopy(RESULTS)
    results["quality"]["runs"]["compact/seed2"] = {"failed": "RuntimeError: exited 1"}
    assert len(report._quality_runs(results, "compact")) == 2
    assert report.quality_checks(results)["ceiling"] is True


def test_targets_without_the_original_package_are_not_measured():
    results = {k: v for k, v in RESULTS.items() if k != "original"}
    text = report.markdown(results | {"scale": report.scale(results)})
    for name in report.RATIO_TARGETS:
        assert f"| {name} ours/original >= {report.RATIO_TARGETS[name]}x | not measured |" in text


def test_ratios_are_ours_over_the_original_with_their_targets():
    ratios = report.ratios(RESULTS)
    assert ratios["training steps (train_on_batch / train_step) at noddi-tafp"] == pytest.approx(
        (2.0, 3)
    )
    assert ratios["training loops (Keras fit / train.train) at noddi-tafp"] == pytest.approx(
        (4.0, 3)
    )
    assert ratios["synthesis volumes/s at noddi-tafp"] == pytest.approx((4.0, 2))
    assert ratios["EEG spectra of an hour (speed)"] == pytest.approx((4.0, 5))
    text = report.markdown(RESULTS | {"scale": report.scale(RESULTS)})
    assert "2.0x: **no**" in text  # one step at a time misses its 3x
    assert "4.0x: yes" in text


def test_the_study_cost_follows_from_the_measured_rates():
    scale = report.scale(RESULTS)
    study = scale["study"]
    assert study["volumes"] == 100 * 2 * int(600 / 2.16)
    cpu, cluster = scale["this_machine"], scale["slurm_cluster"]
    assert cpu["preprocess_h"] == pytest.approx(study["eeg_hours"] * 12.0 / 3600, abs=0.01)
    samples = 0.7 * study["volumes"] * 10
    assert cpu["train_h"] == pytest.approx(samples / 60.0 / 3600, abs=0.01)
    evaluation = (1000.0 - 400.0) / (16 * 300)  # seconds per volume after training
    assert cpu["evaluate_h"] == pytest.approx(study["volumes"] * evaluation / 3600, abs=0.01)
    total = cpu["preprocess_h"] + cpu["train_h"] + cpu["evaluate_h"]
    assert cpu["total_h"] == pytest.approx(total, abs=0.01)
    # the cluster spreads preprocessing and evaluation over participants, not training
    assert cluster["train_h"] == cpu["train_h"]
    assert cluster["total_h"] < cpu["total_h"]
    assert cpu["core_hours"] == pytest.approx(2 * cpu["total_h"], abs=0.1)  # 2 cores
    assert scale["gpu_node"]["train_h"] is None  # no GPU figure measured: none invented
    with_gpu = copy.deepcopy(RESULTS)
    with_gpu["models"]["gpu"] = {"compact": {"fit_samples_per_s": 600.0}}
    gpu = report.scale(with_gpu)["gpu_node"]
    assert gpu["train_h"] == pytest.approx(samples / 600.0 / 3600, abs=0.01)
    assert gpu["total_h"] == pytest.approx(
        gpu["preprocess_h"] + gpu["train_h"] + gpu["evaluate_h"], abs=0.01
    )


def test_without_the_needed_sections_nothing_is_derived():
    results = {k: v for k, v in RESULTS.items() if k != "quality"}
    assert "missing" in report.scale(results)


def test_a_section_measured_again_says_so_in_the_header():
    results = copy.deepcopy(RESULTS)
    results["remeasured"] = {
        "preprocessing": {"date": "2026-11-26", "command": "python b.py", "commit": "abc"}
    }
    text = report.markdown(results | {"scale": report.scale(results)})
    header = text.split("## Targets")[0]
    assert "Section `preprocessing` measured again later, alone: 2026-11-26" in header


def _one_baseline_run(results: dict) -> dict:
    """The current layout: baselines fitted in the first (full) run only; the other runs
    trained with --train-only and evaluated the held-out participants alone."""
    quality = results["quality"]
    first = quality["runs"]["compact/seed0"]
    quality["baselines"] = {
        "from": "compact/seed0",
        "methods": {m: v for m, v in first["methods"].items() if m != "model"},
    }
    for name, run in quality["runs"].items():
        run["full_path"] = name == "compact/seed0"
        if not run["full_path"]:
            run["methods"] = {"model": run["methods"]["model"]}
            run["wall_s"] = 5000.0  # an apply run's wall time says nothing of evaluation
    quality["runs"]["compact-plain/seed0"] = _run(0.6, 0.7)
    quality["runs"]["compact-plain/seed0"]["methods"] = {
        "model": {"fraction_of_ceiling": 0.6, "rmse_mask": 0.97}
    }
    quality["not_run"] = ["noddi-tafp", "plain"]
    return results


def test_baselines_fitted_once_judge_every_seed_and_other_presets_are_listed():
    results = _one_baseline_run(copy.deepcopy(RESULTS))
    assert report.quality_checks(results) == {"ceiling": True, "ridge": True, "mean-volume": True}
    results["quality"]["baselines"]["methods"]["ridge"]["fraction_of_ceiling"] = 0.86
    assert report.quality_checks(results)["ridge"] is False  # every seed against the one fit
    text = report.markdown(results | {"scale": report.scale(results)})
    quality = text.split("## Quality on the simulator")[1].split("\n## ")[0]
    assert quality.count("| ridge |") == 1 and "| compact-plain | model | 1 | 0.600 |" in quality
    # the skipped presets, with what one seed would cost at the measured rate
    hours = 3000 * 8 / 24.0 / 3600
    assert "Not run on this machine: noddi-tafp, plain" in quality
    assert f"would train for up to {hours:.1f} h" in quality
    # evaluation cost per volume from the full run only
    scale = report.scale(results)
    evaluation = (1000.0 - 400.0) / (16 * 300)
    assert scale["this_machine"]["evaluate_h"] == pytest.approx(
        scale["study"]["volumes"] * evaluation / 3600, abs=0.01
    )


def test_a_missed_training_target_is_explained_from_the_step_profile():
    results = copy.deepcopy(RESULTS)
    results["models"]["noddi-tafp"]["step_profile"] = {
        "steps": 10,
        "wall_s_per_step": 0.2,
        "cpu_s_per_step": 0.36,
        "op_s_per_step": 0.3,
        "fractions": {
            "optimizer": 0.1,
            "convolution gradients": 0.35,
            "convolutions": 0.25,
            "element-wise and other": 0.3,
        },
    }
    text = report.markdown(results | {"scale": report.scale(results)})
    assert "### Why training misses its target" in text  # step ratio 2.0x < 3x
    gaps = text.split("### Why training misses its target")[1]
    assert "convolution gradients 35%, element-wise and other 30%, convolutions 25%" in gaps
    assert "together 60%" in gaps  # both kinds of convolution
    assert "on 2 cores (90% of them): the step is bound by that compute" in gaps
    del results["models"]["noddi-tafp"]["training_fraction_of_matmul"]  # no matmul figure
    assert "### Why training misses its target" in report.markdown(
        results | {"scale": report.scale(results)}
    )
    results["original"]["train_step_samples_per_s"] = 5.0  # 3.6x: nothing to explain
    text = report.markdown(results | {"scale": report.scale(results)})
    assert "### Why training misses its target" not in text

"""Benchmark sections that run the BIDS-App as users do: preprocessing speed, training
memory against the number of participants, synthesis quality against the baselines and the
noise ceiling, and the README's demo."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from common import Context, app, median, run, simulate

TR = 2.16
HELD_OUT = 4  # the last participants of the quality dataset, never trained on
QUALITY_METRICS = (
    "fraction_of_ceiling",
    "r_coupled_mean",
    "rmse_mask",
    "ssim_original",
    "ssim_mask",
)


def _shapes(ctx: Context) -> tuple[int, tuple[int, int, int]]:
    """EEG channels and BOLD grid: NODDI's (the simulator's defaults), or small in quick mode."""
    return (16, (20, 22, 12)) if ctx.quick else (64, (64, 64, 30))


def _shape_options(ctx: Context) -> list[str]:
    channels, grid = _shapes(ctx)
    return ["--channels", str(channels), "--grid", *(str(n) for n in grid)]


def preprocessing(ctx: Context) -> dict:
    """Wall time and peak memory of the participant level (no model) on one hour of
    EEG with its BOLD run, in a fresh work dir each time, with 1 and 2 processes."""
    volumes = 120 if ctx.quick else 1667  # 1667 x 2.16 s = one hour
    repeats = 1 if ctx.quick else 3
    data = simulate(
        ctx, "hour", "--participants", "1", "--volumes", str(volumes), *_shape_options(ctx)
    )
    hours = volumes * TR / 3600
    figures: dict = {"eeg_hours": round(hours, 3), "volumes": volumes}
    figures |= {"channels": _shapes(ctx)[0], "grid": _shapes(ctx)[1]}
    for nprocs in (1, 2):
        runs = [
            app(
                ctx,
                data,
                ctx.root / f"hour-out-{nprocs}-{i}",
                "participant",
                "-w",
                str(ctx.root / f"hour-work-{nprocs}-{i}"),
                "--nprocs",
                str(nprocs),
                sample_memory=True,
            )
            for i in range(repeats)
        ]
        wall = median([r["wall_s"] for r in runs])
        figures[f"nprocs{nprocs}"] = {
            "wall_s": [r["wall_s"] for r in runs],
            "wall_s_median": round(wall, 1),
            "s_per_eeg_hour": round(wall / hours, 1),
            "peak_rss_mb_median": round(median([r["peak_rss_mb"] for r in runs])),
        }
    return figures


def study_size(ctx: Context) -> tuple[int, int]:
    """Participants and volumes per participant of the memory and quality dataset."""
    return (6, 60) if ctx.quick else (20, 300)


def study_dataset(ctx: Context) -> Path:
    """The dataset of the memory and quality sections (20 participants x 300 volumes at
    NODDI's shapes), preprocessed once into a shared work dir."""
    count, volumes = study_size(ctx)
    data = simulate(
        ctx,
        "study",
        "--participants",
        str(count),
        "--volumes",
        str(volumes),
        "--seed",
        "0",
        *_shape_options(ctx),
    )
    prep = ctx.root / "study-prep"
    if not prep.exists():
        app(
            ctx, data, prep, "participant", "-w", str(ctx.root / "study-work"), "--lrp-volumes", "0"
        )
    return data


def memory(ctx: Context) -> dict:
    """Peak memory of one epoch of ``participant --train --train-only`` (compact preset,
    batch 8) on the first 5, 10 and 20 participants, each in a fresh process (/proc sampled
    every 0.2 s).

    Anonymous memory is what the process allocated; the resident set also counts the pages
    of the memory-mapped caches it read (reclaimable)."""
    data = study_dataset(ctx)
    figures = {}
    for count in (2, 4, 6) if ctx.quick else (5, 10, 20):
        labels = [f"{i:02d}" for i in range(1, count + 1)]
        options = ["-w", str(ctx.root / "study-work"), "--participant-label", *labels, "--train"]
        options += ["--train-only", "--epochs", "1", "--batch-size", "8"]  # no baselines either
        figures[str(count)] = app(
            ctx, data, ctx.root / f"memory-{count}", "participant", *options, sample_memory=True
        )
    return figures


def _training_samples(log: Path) -> int:
    """The number of training samples the app logged."""
    found = re.search(r"Training on (\d+) samples", log.read_text(errors="replace"))
    if not found:
        raise ValueError(f"{log}: no 'Training on N samples' line")
    return int(found.group(1))


def quality(ctx: Context, plan: tuple[tuple[str, tuple[int, ...]], ...], epochs: int) -> dict:
    """Held-out quality of each (preset, seeds) of ``plan``, beside the baselines.

    Every run trains on the first 16 participants with the last 4 held out (the app's
    default split: the last 10 % of each training run validates). The first run is the
    product's whole path: ``participant --train`` (baselines fitted, every participant
    synthesized and evaluated), then ``group``. The baselines do not depend on the preset
    or the seed, so the other runs train with ``--train-only`` (no baselines either) and
    apply the model to the held-out participants alone (``--model``), which evaluates them
    with the same code.
    Figures are the mean over held-out participants of the group table's rows."""
    data = study_dataset(ctx)
    count = 6 if ctx.quick else 16
    labels = [f"{i:02d}" for i in range(1, count + 1)]
    held = labels[-(2 if ctx.quick else HELD_OUT) :]
    figures: dict = {"participants": count, "volumes": study_size(ctx)[1], "held_out": held}
    figures |= {"epochs": epochs, "channels": _shapes(ctx)[0], "grid": _shapes(ctx)[1], "runs": {}}
    figures["validation"] = "time split"  # the app's default since 781da8a (no participant)
    for preset, seeds in plan:
        for seed in seeds:
            key = f"{preset}/seed{seed}"
            full = "baselines" not in figures  # until one full run has succeeded
            try:  # a failed run must not lose the others
                run_figures = _quality_run(ctx, data, labels, held, preset, seed, epochs, full)
            except Exception as error:
                figures["runs"][key] = {"failed": f"{type(error).__name__}: {error}"}
                continue
            if full:
                baselines = {m: v for m, v in run_figures["methods"].items() if m != "model"}
                figures["baselines"] = {"from": key, "methods": baselines}
            figures["runs"][key] = run_figures
    return figures


def _quality_run(
    ctx: Context,
    data: Path,
    labels: list[str],
    held: list[str],
    preset: str,
    seed: int,
    epochs: int,
    full: bool,
) -> dict:
    """One run of the quality section (see :func:`quality`) and its figures."""
    out = ctx.root / f"quality-{preset}-{seed}"
    shutil.rmtree(out, ignore_errors=True)  # a reused --scratch: no earlier run's tables
    work = ["-w", str(ctx.root / "study-work")]
    options = [*work, "--participant-label", *labels, "--train", "--preset", preset]
    options += ["--seed", str(seed), "--holdout-label", *held]
    options += ["--epochs", str(epochs), "--batch-size", "8", "--learning-rate", "0.001"]
    options += ["--lrp-volumes", "0"]
    if not full:
        options.append("--train-only")
    wall = app(ctx, data, out, "participant", *options)["wall_s"]
    if not full:
        model = str(out / "models" / f"{preset}.keras")
        apply = [*work, "--model", model, "--participant-label", *held, "--lrp-volumes", "0"]
        wall += app(ctx, data, out, "participant", *apply, step="-apply")["wall_s"]
    app(ctx, data, out, "group", *work)
    table = pd.read_csv(
        out / "group_desc-synth_metrics.tsv", sep="\t", na_values="n/a", dtype={"participant": str}
    )
    rows = table[table["split"] == "holdout"]  # the card keeps the role of applied runs
    if set(rows["participant"]) != set(held):
        raise ValueError(f"{out}: the held-out rows are not those of {held}")
    card = json.loads(next((out / "models").glob("*.json")).read_text())
    history = card["training"]["history"]
    samples = _training_samples(out.with_name(out.name + "-participant.log"))
    run_figures = {
        "full_path": full,
        "wall_s": round(wall, 2),
        "epochs_run": len(history["loss"]),
        "training_s": card["training"]["seconds"],
        "training_samples": samples,
        "samples_per_s_end_to_end": round(
            samples * len(history["loss"]) / card["training"]["seconds"], 1
        ),
        "methods": {},
    }
    validation = history.get("val_synth_loss") or []
    if validation:  # how much the early-stopping criterion moved during training
        run_figures["validation_loss_first"] = round(validation[0], 5)
        run_figures["validation_loss_best"] = round(min(validation), 5)
    for method, group in rows.groupby("method"):
        run_figures["methods"][method] = {
            m: None if group[m].isna().all() else round(float(group[m].mean()), 4)
            for m in QUALITY_METRICS
        }
    run_figures["noise_ceiling"] = round(float(rows["noise_ceiling_mean"].mean()), 4)
    train_rows = table[(table["split"] == "train") & (table["method"] == "model")]
    run_figures["model_train_fraction_of_ceiling"] = (
        round(float(train_rows["fraction_of_ceiling"].mean()), 4) if len(train_rows) else None
    )
    return run_figures


def demo_options(makefile: Path = Path(__file__).parents[1] / "Makefile") -> dict[str, list]:
    """The demo's options as the Makefile sets them (DEMO_SIMULATE, DEMO_TRAIN)."""
    text = makefile.read_text(encoding="utf-8")
    return {
        name: re.search(rf"^{name}\s*=(.*)$", text, re.MULTILINE).group(1).split()
        for name in ("DEMO_SIMULATE", "DEMO_TRAIN")
    }


def demo(ctx: Context) -> dict:
    """The three steps of ``make demo`` after installation, in a fresh folder, and the
    held-out summary line that its group level logs."""
    base = ctx.root / "demo"
    data, out, work = base / "data", base / "out", base / "work"
    options = demo_options()
    tool = ctx.bin("bids-eeg2fmri")
    steps = {
        "simulate": run(
            [ctx.bin("bids-eeg2fmri-simulate"), str(data), *options["DEMO_SIMULATE"]],
            log=base / "simulate.log",
        ),
        "participant": run(
            [tool, str(data), str(out), "participant", "-w", str(work), *options["DEMO_TRAIN"]],
            log=base / "participant.log",
        ),
        "group": run([tool, str(data), str(out), "group", "-w", str(work)], log=base / "group.log"),
    }
    figures = {name: step["wall_s"] for name, step in steps.items()}
    figures["total"] = round(float(np.sum(list(figures.values()))), 1)
    log = (base / "group.log").read_text(encoding="utf-8", errors="replace")
    held = [line.split("| ")[-1] for line in log.splitlines() if "Held out" in line]
    figures["held_out_summary"] = held
    figures["options"] = options
    return figures

"""RESULTS.md from the harness's figures, and the cost of a study derived from them."""

from __future__ import annotations

import statistics

import classify
import mr_report
from pipeline import QUALITY_METRICS

#: The preset whose quality targets are judged (the app's default)
DEFAULT_PRESET = "compact"
# An OpenNeuro-sized study: participants x runs of minutes each
STUDY = {
    "participants": 100,
    "runs": 2,
    "minutes": 10,
    "tr": 2.16,
    "epochs": 10,
    "train_fraction": 0.7,
    "lrp_volumes": 48,  # explained per run (the CLI's --lrp-volumes default)
}
# Assumed on-demand prices, only to turn core- and GPU-hours into money (not measured)
USD_PER_CORE_HOUR = 0.025
USD_PER_GPU_HOUR = 2.5
GPU_NODE_CORES = 16
CLUSTER_JOBS = 100  # one participant per SLURM array task, 2 cores each


def _get(results: dict, *keys, default=None):
    node = results
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return default
        node = node[key]
    return node


def _quality_runs(results: dict, preset: str) -> list[dict]:
    """The quality runs of a preset that did not fail, by seed."""
    runs = _get(results, "quality", "runs", default={}) or {}
    return [
        run
        for name, run in sorted(runs.items())
        if name.split("/")[0] == preset and "failed" not in run
    ]


def _baselines(results: dict) -> dict:
    """The baselines' held-out figures by method: fitted once, in the quality section's
    full run (older results: inside each run's methods)."""
    fitted = _get(results, "quality", "baselines", "methods")
    if fitted is not None:
        return fitted
    runs = _quality_runs(results, DEFAULT_PRESET)
    return {m: v for m, v in (runs[0]["methods"] if runs else {}).items() if m != "model"}


def scale(results: dict) -> dict:
    """Wall time and cost of STUDY on the benchmarked machine, a GPU node and a SLURM
    cluster, from the measured preprocessing, training and evaluation rates (None where a
    rate was not measured)."""
    s = STUDY
    volumes_per_run = int(s["minutes"] * 60 / s["tr"])
    volumes = s["participants"] * s["runs"] * volumes_per_run
    eeg_hours = s["participants"] * s["runs"] * s["minutes"] / 60
    samples = s["train_fraction"] * volumes * s["epochs"]
    prep_2 = _get(results, "preprocessing", "nprocs2", "s_per_eeg_hour")
    prep_1 = _get(results, "preprocessing", "nprocs1", "s_per_eeg_hour")
    runs = _quality_runs(results, DEFAULT_PRESET)
    train_rate = statistics.median(r["samples_per_s_end_to_end"] for r in runs) if runs else None
    evaluation = None  # seconds per volume after training: synthesis, metrics, baselines, reports
    full = [r for r in runs if r.get("full_path", True)]  # every participant evaluated
    if full:
        q = results["quality"]
        volumes_done = q["participants"] * q["volumes"]
        per_run = [(r["wall_s"] - r["training_s"]) / volumes_done for r in full]
        evaluation = statistics.median(per_run)
    lrp_rate = _get(results, "lrp", DEFAULT_PRESET, "lrp_volumes_per_s")
    if evaluation is not None and lrp_rate:  # the quality runs ran with --lrp-volumes 0
        evaluation += s["lrp_volumes"] / volumes_per_run / lrp_rate
    gpu_rate = _get(results, "models", "gpu", DEFAULT_PRESET, "fit_samples_per_s")
    cores = _get(results, "machine", "cores", default=2)
    out = {"study": s | {"volumes": volumes, "eeg_hours": round(eeg_hours, 1)}}
    if None in (prep_1, prep_2, train_rate, evaluation):
        out["missing"] = "needs the preprocessing and quality sections"
        return out

    def hours(seconds: float) -> float:
        return round(seconds / 3600, 2)

    # the benchmarked machine: everything in sequence
    cpu = {"preprocess_h": hours(eeg_hours * prep_2), "train_h": hours(samples / train_rate)}
    cpu["evaluate_h"] = hours(volumes * evaluation)
    cpu["total_h"] = round(cpu["preprocess_h"] + cpu["train_h"] + cpu["evaluate_h"], 2)
    cpu["core_hours"] = round(cores * cpu["total_h"], 1)
    cpu["usd"] = round(cpu["core_hours"] * USD_PER_CORE_HOUR, 2)
    # a GPU node: preprocessing one participant per core, training on the GPU when measured
    gpu = {"preprocess_h": hours(eeg_hours * prep_1 / GPU_NODE_CORES)}
    gpu["train_h"] = hours(samples / gpu_rate) if gpu_rate else None
    gpu["evaluate_h"] = hours(volumes * evaluation * 2 / GPU_NODE_CORES)
    # a cluster: preprocessing and evaluation one participant per task; training one task
    per_participant = s["runs"] * s["minutes"] / 60
    cluster = {"preprocess_h": hours(per_participant * prep_2), "train_h": cpu["train_h"]}
    cluster["evaluate_h"] = hours(volumes / s["participants"] * evaluation)
    cluster["total_h"] = round(
        cluster["preprocess_h"] + cluster["train_h"] + cluster["evaluate_h"], 2
    )
    cluster["core_hours"] = round(
        cores * (cpu["preprocess_h"] + cpu["evaluate_h"] + cluster["train_h"]), 1
    )
    cluster["usd"] = round(cluster["core_hours"] * USD_PER_CORE_HOUR, 2)
    if gpu["train_h"] is not None:
        gpu["total_h"] = round(gpu["preprocess_h"] + gpu["train_h"] + gpu["evaluate_h"], 2)
        gpu["usd"] = round(gpu["total_h"] * USD_PER_GPU_HOUR, 2)
    return out | {"this_machine": cpu, "gpu_node": gpu, "slurm_cluster": cluster}


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _spread(values: list) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]


def quality_checks(results: dict) -> dict | None:
    """Per target, whether the default preset meets it in every seed: 0.8 of the noise
    ceiling; above the ridge (fraction of the ceiling) and below it (RMSE in the mask);
    below the mean volume (RMSE in the mask). None for a target whose figures are missing
    (a baseline not fitted): not measured is not met, and not failed either."""
    runs = _quality_runs(results, DEFAULT_PRESET)
    if not runs:
        return None
    baselines = _baselines(results)

    def every(test) -> bool | None:
        outcomes = [test(baselines | run["methods"]) for run in runs]
        return None if None in outcomes else all(outcomes)

    def value(methods: dict, method: str, metric: str):
        return methods.get(method, {}).get(metric)

    def above(methods, metric, other=None, threshold=None):
        mine = value(methods, "model", metric)
        theirs = threshold if other is None else value(methods, other, metric)
        return None if mine is None or theirs is None else mine > theirs

    return {
        "ceiling": every(lambda m: above(m, "fraction_of_ceiling", threshold=0.8 - 1e-12)),
        "ridge": every(
            lambda m: (
                None
                if None in (above(m, "fraction_of_ceiling", "ridge"), _below(m, "ridge"))
                else above(m, "fraction_of_ceiling", "ridge") and _below(m, "ridge")
            )
        ),
        "mean-volume": every(lambda m: _below(m, "mean-volume")),
    }


def _below(methods: dict, other: str) -> bool | None:
    """Whether the model's RMSE in the mask is below another method's (None if missing)."""
    mine = methods.get("model", {}).get("rmse_mask")
    theirs = methods.get(other, {}).get("rmse_mask")
    return None if mine is None or theirs is None else mine < theirs


def _verdict(met: bool | None) -> str:
    return "not measured" if met is None else "yes" if met else "**no**"


def markdown(results: dict) -> str:
    m = results["machine"]
    lines = [
        "# Benchmark results",
        "",
        "Written by `make bench` (`python benchmarks/bench.py`); do not edit by hand (the notes",
        "of earlier, separate measurements are in benchmarks/NOTES.md). Every figure below comes",
        "from the one run described here; ratios compare figures of this run only.",
        "",
        f"- Command: `{m['command']}`"
        + (" (**quick mode: tiny sizes, figures mean nothing**)" if results["quick"] else ""),
        f"- Date: {m['date']}; wall time of the whole run: "
        f"{results['seconds']['total'] / 60:.0f} min",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, "
        f"GPU: {', '.join(m['gpus']) or 'none'}",
        f"- Commit: {m.get('commit') or 'not recorded (a harness older than the commit line)'}",
        f"- Software: Python {m['python']}, "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v),
        "",
    ]
    for name, when in results.get("remeasured", {}).items():
        lines.insert(
            -1,
            f"- Section `{name}` measured again later, alone: {when['date']}, "
            f"`{when['command']}` at commit {when['commit']} (see benchmarks/NOTES.md)",
        )
    lines += _targets(results) + _quality(results) + _limits(results)
    lines += _models(results) + _lrp(results) + _original(results) + _speed_gaps(results)
    lines += _pipeline(results) + mr_report.section(results) + classify.section(results)
    lines += _scale(results)
    return "\n".join(lines) + "\n"


def _targets(results: dict) -> list[str]:
    checks = quality_checks(results) or dict.fromkeys(("ceiling", "ridge", "mean-volume"))
    rows = [
        ["default preset >= 0.8 of the noise ceiling (held out, every seed)", checks["ceiling"]],
        ["beats the ridge baseline in every seed (r and RMSE)", checks["ridge"]],
        ["beats the mean-volume baseline in every seed (RMSE)", checks["mean-volume"]],
    ]
    rows = [[name, _verdict(met)] for name, met in rows]
    measured = ratios(results)
    for name, goal in RATIO_TARGETS.items():
        if name in measured:
            value = measured[name][0]
            rows.append(
                [f"{name} ours/original >= {goal}x", f"{value:.1f}x: " + _verdict(value >= goal)]
            )
        else:
            rows.append([f"{name} ours/original >= {goal}x", _verdict(None)])
    demo = _get(results, "demo", "total")
    demo_verdict = _verdict(None) if demo is None else f"{demo:.0f} s: " + _verdict(demo < 300)
    rows.append(["the demo in under 5 minutes", demo_verdict])
    lrp_rate = _get(results, "lrp", DEFAULT_PRESET, "lrp_volumes_per_s")
    lrp_verdict = (
        _verdict(None)
        if lrp_rate is None
        else f"{lrp_rate:.1f}: " + _verdict(lrp_rate >= LRP_TARGET)
    )
    rows.append([f"relevance maps >= {LRP_TARGET} volumes/s ({DEFAULT_PRESET})", lrp_verdict])
    rows += mr_report.target_rows(results)
    return ["## Targets", "", *_table(["target", "met"], rows), ""]


#: volumes/s of the pipeline's relevance maps (5 regions + 5 bands), once compiled (issue 18)
LRP_TARGET = 10


def _lrp(results: dict) -> list[str]:
    section = results.get("lrp")
    if not section:
        return []
    if "failed" in section:
        return ["## Relevance maps (LRP)", "", f"Failed: {section['failed']}", ""]
    lines = [
        "## Relevance maps (LRP)",
        "",
        "The pipeline's relevance maps of one run (`explain.lrp.relevance_maps`: relevance "
        "of every EEG input for the whole volume and 4 regions, and per voxel for 5 frequency "
        "bands; zero reference, aligned; batches of 16), beside synthesis (`predict`, batch "
        "16), in one process on the same random EEG at NODDI's shapes, random weights with "
        "non-zero biases. First call: tracing included (the first run of a participant level); "
        "compiled: every later run (the pipeline explains all runs with one model). Medians of "
        "the repeats.",
        "",
    ]
    header = ["preset", "volumes", "LRP volumes/s (first call)", "LRP volumes/s (compiled)"]
    header += ["synthesis volumes/s", "synthesis / LRP"]
    rows = [
        [
            preset,
            f["volumes"],
            f["lrp_first_call_volumes_per_s"],
            f["lrp_volumes_per_s"],
            f["synthesis_volumes_per_s"],
            f"{f['synthesis_volumes_per_s'] / f['lrp_volumes_per_s']:.0f}x",
        ]
        for preset, f in section.items()
        if isinstance(f, dict)
    ]
    return lines + _table(header, rows) + [""]


#: ours/original speed targets of issue 8
RATIO_TARGETS = {
    "training steps (train_on_batch / train_step) at noddi-tafp": 3,
    "training loops (Keras fit / train.train) at noddi-tafp": 3,
    "synthesis volumes/s at noddi-tafp": 2,
    "EEG spectra of an hour (speed)": 5,
}


def ratios(results: dict) -> dict:
    """ours/original speed ratios measured in this run, with their targets (RATIO_TARGETS)."""
    original = results.get("original") or {}
    ours = _get(results, "models", "noddi-tafp", default={}) or {}
    pairs = {  # (ours, original), each a rate: higher is faster
        "training steps (train_on_batch / train_step) at noddi-tafp": (
            ours.get("train_samples_per_s"),
            original.get("train_step_samples_per_s"),
        ),
        "training loops (Keras fit / train.train) at noddi-tafp": (
            ours.get("fit_samples_per_s"),
            original.get("train_samples_per_s"),
        ),
        "synthesis volumes/s at noddi-tafp": (
            ours.get("synthesis_volumes_per_s"),
            original.get("synthesis_volumes_per_s"),
        ),
        "EEG spectra of an hour (speed)": (  # seconds per hour: the inverse of a rate
            original.get("stft_seconds_per_hour_64ch"),
            _get(results, "models", "spectra", "s_per_eeg_hour"),
        ),
    }
    return {
        name: (mine / theirs, RATIO_TARGETS[name])
        for name, (mine, theirs) in pairs.items()
        if mine and theirs
    }


def _quality(results: dict) -> list[str]:
    q = results.get("quality")
    if not q:
        return []
    if "failed" in q:
        return ["## Quality", "", f"Failed: {q['failed']}", ""]
    lines = [
        "## Quality on the simulator",
        "",
        f"`bids-eeg2fmri-simulate` (seed 0, {q['channels']} channels at 250 Hz, "
        f"{' x '.join(map(str, q['grid']))}, TR 2.16 s), "
        f"{q['participants']} participants x {q['volumes']} volumes; "
        f"`participant --train --preset P --epochs {q['epochs']} --batch-size 8 "
        f"--learning-rate 0.001 --holdout-label {' '.join(q['held_out'])} --seed S`. "
        + (
            "Every other participant trains; the last 10 % of each training run validates "
            "(early stopping). "
            if q.get("validation") == "time split"
            else "One more participant validates (early stopping); the rest train. "
        )
        + f"{_get(q, 'baselines', 'from', default='The first run')} is the whole "
        "product path (baselines fitted, every participant synthesized and evaluated, then "
        "`group`); the others add `--train-only` and apply the model to the "
        "held-out participants with `--model` (the same evaluation code). The baselines do not "
        "depend on the preset or the seed: fitted once, on the same training participants. "
        "Figures: mean over the held-out participants, then median (min-max) over seeds. r is "
        "the voxelwise temporal Pearson r in the voxels the simulator couples to an EEG source; "
        "the fraction divides it by the simulator's noise ceiling (the r of the noiseless BOLD "
        "with the observed one).",
        "",
    ]
    header = [
        "preset",
        "method",
        "seeds",
        "fraction of ceiling",
        "r coupled",
        "RMSE mask",
        "SSIM (original)",
        "SSIM 3-D",
    ]
    rows = []
    for preset in dict.fromkeys(name.split("/")[0] for name in q["runs"]):
        runs = _quality_runs(results, preset)
        values = [r["methods"].get("model", {}) for r in runs]
        rows.append(
            [preset, "model", len(runs)]
            + [_spread([v.get(k) for v in values]) for k in QUALITY_METRICS]
        )
    for method, values in _baselines(results).items():
        rows.append(["", method, "-"] + [_spread([values.get(k)]) for k in QUALITY_METRICS])
    lines += _table(header, rows)
    failed = [name for name, run in q["runs"].items() if "failed" in run]
    if failed:
        lines += ["", "Failed runs: " + "; ".join(f"{n}: {q['runs'][n]['failed']}" for n in failed)]
    lines += _not_run(results)
    compact = _quality_runs(results, DEFAULT_PRESET)
    if compact:
        ceiling = _spread([r["noise_ceiling"] for r in compact])
        train = _spread([r["model_train_fraction_of_ceiling"] for r in compact])
        epochs = ", ".join(str(r["epochs_run"]) for r in compact)
        rate = _spread([r["samples_per_s_end_to_end"] for r in compact])
        lines += [
            "",
            f"Noise ceiling of the held-out participants: {ceiling}. The default model on its own "
            f"training participants: {train} of the ceiling. Epochs run before early stopping: "
            f"{epochs}; training throughput end to end (tf.data from the caches, validation "
            f"passes and checkpoints included): {rate} samples/s.",
        ]
    return lines + [""]


def _not_run(results: dict) -> list[str]:
    """The presets the quality section left out on this machine, and what one seed would
    have cost here at the measured training rate of noddi-tafp (their network's size)."""
    q = results["quality"]
    skipped = q.get("not_run") or []
    if not skipped:
        return []
    rate = _get(results, "models", "noddi-tafp", "fit_samples_per_s")
    runs = _quality_runs(results, DEFAULT_PRESET)
    large = [p for p in skipped if not p.startswith("compact")]  # the original's network
    line = f"Not run on this machine: {', '.join(skipped)}."
    if large and rate and runs:
        samples = runs[0]["training_samples"]
        hours = samples * q["epochs"] / rate / 3600
        line += (
            f" {', '.join(large)} are the original's network and its variants (tens of "
            f"millions of parameters). At noddi-tafp's training rate measured here ({rate} "
            f"samples/s, Keras fit at batch 4), one seed of up to {q['epochs']} epochs on "
            f"{samples} samples would train for up to {hours:.1f} h, {len(large)} presets x 3 "
            f"seeds up to {3 * len(large) * hours:.0f} h: beyond the hour of the whole "
            "benchmark. On a GPU machine `make bench` runs every preset with 3 seeds."
        )
    return ["", line]


def _limits(results: dict) -> list[str]:
    """What this run's figures say about why the default preset misses its quality targets
    (only when it misses one); what was tried before is in NOTES.md."""
    checks = quality_checks(results)
    runs = _quality_runs(results, DEFAULT_PRESET)
    if not checks or not runs or all(checks.values()):
        return []

    def med(values) -> float | None:
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    held = med(r["methods"].get("model", {}).get("fraction_of_ceiling") for r in runs)
    ridge = _baselines(results).get("ridge", {}).get("fraction_of_ceiling")
    lines = ["## What limits the default model", ""]
    # training participants are evaluated by the full run only: compare within that run
    full = [r for r in runs if r.get("model_train_fraction_of_ceiling") is not None]
    if full:
        train = full[0]["model_train_fraction_of_ceiling"]
        held_full = full[0]["methods"].get("model", {}).get("fraction_of_ceiling")
    if full and held_full is not None:
        verdict = (
            "the gap is generalisation to new participants (new heads, amplitudes, noise)"
            if train - held_full > 0.1
            else "the model does not fit its own training participants much better: it "
            "underfits, and more data alone would not close the gap"
        )
        lines.append(
            f"- On its training participants the model reaches {train:.2f} of the noise "
            f"ceiling, on the held-out ones {held_full:.2f} (the run that evaluated both): "
            f"{verdict}."
        )
    if ridge is not None and held is not None:
        lines.append(
            f"- The ridge baseline (linear in HRF-convolved band power per channel, 3 lags) "
            f"reaches {ridge:.2f} from the same EEG spectra"
            + (
                ": the information is in the features; the network has not learnt to "
                f"extract it from {runs[0]['training_samples']} training samples."
                if ridge > held
                else "."
            )
        )
    moved = [
        1 - r["validation_loss_best"] / r["validation_loss_first"]
        for r in runs
        if r.get("validation_loss_first")
    ]
    if moved:
        epochs = ", ".join(str(r["epochs_run"]) for r in runs)
        lines.append(
            f"- Early stopping watches the validation loss over the whole grid (background "
            f"and uncoupled voxels included); from the first epoch to the best it fell by "
            f"{100 * min(moved):.1f}-{100 * max(moved):.1f} % (epochs run per seed: {epochs})"
            + ("; a criterion that barely moves." if max(moved) < 0.05 else ".")
        )
    lines += [
        "- What was tried on the model and how much each step gave, with the commands and "
        "data: benchmarks/NOTES.md (latent term, drift removal, squared error, a linear "
        "spectral encoder).",
        "",
    ]
    return lines


def _models(results: dict) -> list[str]:
    models = results.get("models")
    if not models or "failed" in models:
        return ["## Model speed", "", f"Failed: {models['failed']}", ""] if models else []
    lines = [
        "## Model speed and FLOPs on this machine",
        "",
        "Random arrays in memory at NODDI's shapes (EEG 64 x 134 x 10, BOLD 64 x 64 x 30): "
        "`train_on_batch` with batch 4 (the original's), `predict` with batch 16; medians of "
        f"{models['repeats']} repeats of {models['steps']} steps; also `fit` (epochs of 5 x "
        f"{models['steps']} steps) on a tf.data pipeline from memory (the app's "
        "training loop). FLOPs: TensorFlow's profiler on one sample's forward graph; a "
        "training step counted as 3 forward passes of the training model (EEG and fMRI "
        f"branches). This CPU's float32 matmul (2048 x 2048, TensorFlow): "
        f"{models['matmul_gflops']} GFLOP/s. Devices: {', '.join(models['devices'])}.",
        "",
    ]
    header = [
        "preset",
        "parameters",
        "training samples/s (train_on_batch)",
        "training samples/s (fit)",
        "synthesis volumes/s",
        "MFLOP/volume (synthesis)",
        "MFLOP/sample (training)",
        "fraction of matmul throughput",
    ]
    rows = []
    for preset, f in models.items():
        if isinstance(f, dict) and "train_samples_per_s" in f:
            rows.append(
                [
                    preset,
                    f["trainable_parameters"],
                    f["train_samples_per_s"],
                    f.get("fit_samples_per_s"),
                    f["synthesis_volumes_per_s"],
                    f["synthesis_mflop_per_volume"],
                    f["training_mflop_per_sample"],
                    f.get("training_fraction_of_matmul"),
                ]
            )
    lines += _table(header, rows)
    spectra = models.get("spectra", {})
    if spectra:
        lines += [
            "",
            f"EEG spectra (`signals.features`: Hann-tapered PSD of every TR window, log, z-score, "
            f"model inputs) of {spectra['eeg_hours']} h of 64-channel EEG at 250 Hz: "
            f"{spectra['seconds']} s ({spectra['s_per_eeg_hour']} s per hour).",
        ]
    gpu = models.get("gpu")
    lines += ["", "### GPU", ""]
    if gpu:
        rows = [
            [p, f["train_samples_per_s"], f.get("fit_samples_per_s"), f["synthesis_volumes_per_s"]]
            for p, f in gpu.items()
        ]
        header = ["preset", "training samples/s (train_on_batch)", "(fit)", "synthesis volumes/s"]
        lines += _table(header, rows)
    else:
        lines += [
            "No GPU on this machine: the same section runs on the GPU when TensorFlow sees one "
            "(`make bench` on a GPU box with TensorFlow's CUDA wheels, `pip install "
            "tensorflow[and-cuda]`, as in the image's cuda variant)."
        ]
    return lines + [""]


def _speed_gaps(results: dict) -> list[str]:
    """What this run's figures say about a missed training-speed target."""
    measured = ratios(results)
    missed = [n for n, (v, goal) in measured.items() if v < goal and n.startswith("training")]
    ours = _get(results, "models", "noddi-tafp", default={}) or {}
    profile = ours.get("step_profile") or {}
    if not missed or not profile.get("fractions"):
        return []
    fractions = sorted(profile["fractions"].items(), key=lambda item: -item[1])
    shares = ", ".join(f"{name} {share:.0%}" for name, share in fractions)
    convolutions = sum(v for k, v in fractions if k.startswith("convolution"))
    first = (
        f"- Where noddi-tafp's step goes (TensorFlow's profiler, {profile['steps']} steps of "
        f"`train_on_batch`, op time summed over the executor's threads): {shares}; the 3-D "
        f"convolutions and their gradients together {convolutions:.0%}. These are "
        "TensorFlow's kernels running the same layers as the original's."
    )
    cores = _get(results, "machine", "cores", default=1)
    if profile.get("cpu_s_per_step"):
        busy = profile["cpu_s_per_step"] / (profile["wall_s_per_step"] * cores)
        first += (
            f" The process used {profile['cpu_s_per_step']:.3f} s of CPU per "
            f"{profile['wall_s_per_step']:.3f} s step on {cores} cores ({busy:.0%} of them)"
            + (": the step is bound by that compute." if busy > 0.85 else ".")
        )
    lines = ["### Why training misses its target", "", first]
    if ours.get("training_fraction_of_matmul"):
        lines.append(
            f"- The network: {ours['trainable_parameters']:,} parameters, "
            f"{ours['training_mflop_per_sample']:.0f} MFLOP per training sample, trained at "
            f"{ours['training_fraction_of_matmul']:.0%} of this CPU's float32 matmul "
            "throughput; its 3-D convolutions have 1 to 4 channels and kernels as large as "
            "12 x 47 x 5."
        )
    lines += [
        "- What this package changed in the step: the optimizer (TensorFlow's fused Adam "
        "kernel instead of Keras's element-wise passes) and the input pipeline (tf.data "
        "autotuning off: its clean-up idled seconds after every epoch); measured in "
        "benchmarks/NOTES.md. Tried and not kept: XLA compilation of the step (0.42 "
        "samples/s on this CPU; NOTES.md).",
        "",
    ]
    return lines


def _original(results: dict) -> list[str]:
    original = results.get("original")
    if not original:
        return []
    lines = ["## The original package side by side", ""]
    if "skipped" in original or "failed" in original:
        return lines + [f"Not measured: {original.get('skipped') or original.get('failed')}", ""]
    lines += [
        "`eeg-to-fmri==0.0.9` in its own Python 3.10 environment (benchmarks/original/setup.sh, "
        "pins of ORIGINAL.md §7), timed by benchmarks/original/measure.py with its own code on "
        "the same arrays, in the same run: "
        + ", ".join(f"`{name}`" for name in original.get("original_functions", [])),
        "",
    ]
    ours = results.get("models", {}).get("noddi-tafp", {})
    rows = [
        [
            "training samples/s, one step at a time (train_on_batch / train.train_step)",
            ours.get("train_samples_per_s"),
            original.get("train_step_samples_per_s"),
        ],
        [
            "training samples/s, the training loop (Keras fit / train.train)",
            ours.get("fit_samples_per_s"),
            original.get("train_samples_per_s"),
        ],
        [
            "synthesis volumes/s (noddi-tafp)",
            ours.get("synthesis_volumes_per_s"),
            original.get("synthesis_volumes_per_s"),
        ],
        [
            "EEG spectra, s per hour of 64 channels",
            _get(results, "models", "spectra", "s_per_eeg_hour"),
            original.get("stft_seconds_per_hour_64ch"),
        ],
        [
            "trainable parameters",
            ours.get("trainable_parameters"),
            original.get("trainable_parameters"),
        ],
    ]
    lines += _table(["figure", "ours", "original"], rows)
    lines += [
        "",
        *[
            f"- {name}: ours/original {value:.2f}x (target {goal}x)"
            for name, (value, goal) in ratios(results).items()
        ],
    ]
    for key, what in (("stft_timing_includes", "Spectra timed"), ("patches", "Patches")):
        if original.get(key):
            lines.append(f"- {what}: {original[key]}")
    return lines + [""]


def _pipeline(results: dict) -> list[str]:
    lines = []
    prep = results.get("preprocessing")
    if prep and "failed" not in prep:
        lines += [
            "## Preprocessing",
            "",
            "`bids-eeg2fmri DS OUT participant -w WORK --nprocs N` (no model) on one simulated "
            "run "
            f"of {prep['volumes']} volumes ({prep['eeg_hours']} h of {prep['channels']}-channel "
            f"EEG at 250 Hz, BOLD {' x '.join(map(str, prep['grid']))}), fresh work dir each "
            "time: marker onsets, spectra, BOLD on the "
            f"model grid, caches. Medians of {len(prep['nprocs1']['wall_s'])}; peak memory: "
            "the largest resident set among "
            "the app's processes (its workflow workers included, as GNU time's %M).",
            "",
        ]
        rows = [
            [
                f"--nprocs {n}",
                prep[f"nprocs{n}"]["wall_s_median"],
                prep[f"nprocs{n}"]["s_per_eeg_hour"],
                prep[f"nprocs{n}"]["peak_rss_mb_median"],
            ]
            for n in (1, 2)
        ]
        lines += _table(["", "wall s", "s per EEG hour", "peak RSS MB"], rows) + [""]
    memory = results.get("memory")
    if memory and "failed" not in memory:
        lines += [
            "## Training memory",
            "",
            "One epoch of `participant --train --train-only` (compact, batch 8: training, no "
            "synthesis) on the first N participants of the quality section's dataset, after "
            "preprocessing; one run each, /proc sampled "
            "every 0.2 s. Peak anonymous memory: what the app's main process (where TensorFlow "
            "trains) allocated; peak RSS: the largest resident set among its processes, which "
            "also counts the pages of the memory-mapped caches read (reclaimable).",
            "",
        ]
        rows = [
            [n, f["peak_anonymous_mb"], f["peak_rss_mb"], f["wall_s"]] for n, f in memory.items()
        ]
        lines += _table(["participants", "peak anonymous MB", "peak RSS MB", "wall s"], rows) + [""]
    demo = results.get("demo")
    if demo and "failed" not in demo:
        options = demo.get("options") or {}
        simulate = " ".join(options.get("DEMO_SIMULATE", ["(older run: 2 x 100 volumes)"]))
        train = " ".join(options.get("DEMO_TRAIN", ["--train --epochs 5"]))
        lines += [
            "## The demo",
            "",
            f"The three steps of `make demo` after installation (`bids-eeg2fmri-simulate DS "
            f"{simulate}`, `participant {train}` with LRP, `group`), in a fresh folder; one run.",
            "",
        ]
        steps = [[k, v] for k, v in demo.items() if isinstance(v, (int, float))]
        lines += _table(["step", "wall s"], steps) + [""]
        lines += [f"- {line}" for line in demo.get("held_out_summary", [])]
        lines += [""] if demo.get("held_out_summary") else []
    failed = [
        f"- {name}: {results[name]['failed']}"
        for name in ("preprocessing", "memory", "demo")
        if "failed" in (results.get(name) or {})
    ]
    return lines + (["## Failed sections", "", *failed, ""] if failed else [])


def _scale(results: dict) -> list[str]:
    sc = results.get("scale", {})
    s = sc.get("study", STUDY)
    lines = [
        "## Scale on paper",
        "",
        f"A study of {s['participants']} participants x {s['runs']} runs of {s['minutes']} min "
        f"(TR {s['tr']} s: {s.get('volumes', 'n/a')} volumes, "
        f"{s.get('eeg_hours', 'n/a')} h of EEG), "
        f"the compact preset trained {s['epochs']} epochs on {s['train_fraction']:.0%} of the "
        "volumes, derived from this run's figures: preprocessing s per EEG hour (--nprocs 2; "
        "--nprocs 1 per core on the GPU node), end-to-end training samples/s of the quality runs, "
        "and their seconds per volume after training (synthesis, metrics, baselines, reports, "
        "start-up; not the group level), plus the relevance maps of "
        f"{s.get('lrp_volumes', 48)} volumes per run at the compact preset's LRP rate of the "
        "relevance maps section (the quality runs skip LRP). On the GPU node "
        "training runs at the measured GPU `fit` rate (arrays in memory) when there is one. "
        f"Money at assumed prices (not measured): ${USD_PER_CORE_HOUR}/core-hour, "
        f"${USD_PER_GPU_HOUR}/GPU-hour. The cluster runs one participant per SLURM array task "
        "(as many cores as this machine; singularity/slurm_participants.sh), then one "
        "training task and one group task; "
        "queueing not counted.",
        "",
    ]
    if "missing" in sc:
        return lines + [f"Not derived: {sc['missing']}.", ""]
    header = ["where", "preprocess h", "train h", "evaluate h", "wall h", "cost"]
    cpu, gpu, cluster = sc["this_machine"], sc["gpu_node"], sc["slurm_cluster"]
    cores = _get(results, "machine", "cores", default="?")
    rows = [
        [
            f"this machine ({cores} cores)",
            cpu["preprocess_h"],
            cpu["train_h"],
            cpu["evaluate_h"],
            cpu["total_h"],
            f"{cpu['core_hours']} core-h, ${cpu['usd']}",
        ],
        [
            f"one GPU node ({GPU_NODE_CORES} cores)",
            gpu["preprocess_h"],
            gpu["train_h"] if gpu["train_h"] is not None else "not measured (no GPU here)",
            gpu["evaluate_h"],
            gpu.get("total_h"),
            f"${gpu['usd']}" if "usd" in gpu else "n/a",
        ],
        [
            f"SLURM, {CLUSTER_JOBS} array tasks",
            cluster["preprocess_h"],
            cluster["train_h"],
            cluster["evaluate_h"],
            cluster["total_h"],
            f"{cluster['core_hours']} core-h, ${cluster['usd']}",
        ],
    ]
    return lines + _table(header, rows) + [""]

"""Benchmark sections on arrays in memory: this machine's matmul throughput, each preset's
FLOPs, training and synthesis speed at NODDI's shapes, the EEG spectra of one hour, and the
original eeg_to_fmri package measured on the very same arrays in its own environment."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import numpy as np
from common import Context, median

EEG_SHAPE = (64, 134, 10)  # channels, frequency bins, windows: the original's model input
GRID = (64, 64, 30)
TR = 2.16  # s: the original's; the input's bins are k / TR Hz (the HRF path's weights)
BINS = {"tr": TR, "frequencies": [k / TR for k in range(1, EEG_SHAPE[1] + 1)]}
SFREQ, TR = 250.0, 2.16
TRAIN_BATCH, SYNTH_BATCH = 4, 16  # the original's training batch; synthesis in batches of 16
ORIGINAL = Path(__file__).parent / "original"


def arrays(ctx: Context) -> Path:
    """The arrays both packages are timed on (written once): model inputs and targets at
    NODDI's shapes, and one hour of 64-channel EEG (a sum of sinusoids in noise, in volts)."""
    path = ctx.root / "arrays.npz"
    if path.exists():
        return path
    rng = np.random.default_rng(0)
    n = 64
    seconds = 60 if ctx.quick else 3600
    t = np.arange(int(seconds * SFREQ)) / SFREQ
    raw = 10e-6 * rng.standard_normal((64, t.size)).astype(np.float32)
    raw += (20e-6 * np.sin(2 * np.pi * 10 * t)).astype(np.float32)
    np.savez(
        path,
        eeg=rng.standard_normal((n, *EEG_SHAPE, 1)).astype(np.float32),
        bold=rng.standard_normal((n, *GRID, 1)).astype(np.float32),
        raw=raw,
        sfreq=np.float64(SFREQ),
        tr=np.float64(TR),
    )
    return path


def matmul_gflops(repeats: int = 3, size: int = 2048, steps: int = 10) -> float:
    """Median float32 matmul throughput of TensorFlow on this machine (GFLOP/s)."""
    import tensorflow as tf

    a = tf.random.normal((size, size))
    b = tf.random.normal((size, size))
    tf.linalg.matmul(a, b).numpy()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            c = tf.linalg.matmul(a, b)
        c.numpy()
        rates.append(2 * size**3 * steps / (time.perf_counter() - start) / 1e9)
    return round(median(rates), 1)


def forward_flops(model, input_shapes) -> int:
    """Floating-point operations of one forward pass of ``model`` on one sample, counted by
    TensorFlow's profiler on the traced graph (convolutions, matmuls, element-wise ops)."""
    import tensorflow as tf
    from tensorflow.python.profiler.model_analyzer import profile
    from tensorflow.python.profiler.option_builder import ProfileOptionBuilder

    specs = [tf.TensorSpec((1, *shape), tf.float32) for shape in input_shapes]

    @tf.function
    def forward(*inputs):
        return model(list(inputs) if len(inputs) > 1 else inputs[0], training=False)

    graph = forward.get_concrete_function(*specs).graph
    options = (
        ProfileOptionBuilder(ProfileOptionBuilder.float_operation()).with_empty_output().build()
    )
    return int(profile(graph, options=options).total_float_ops)


#: Op categories of the step profile: (category, test on the op's name scope and type);
#: the optimizer's ops are under its name (e.g. ``fused_adam/``, ``fused_adam_1/``)
OP_CATEGORIES = (
    ("optimizer", lambda name, kind, optimizer: re.match(rf"{optimizer}(_\d+)?/", name)),
    ("convolution gradients", lambda name, kind, _: "Conv" in kind and "Backprop" in kind),
    ("convolutions", lambda name, kind, _: "Conv" in kind),
    ("matrix products", lambda name, kind, _: "MatMul" in kind),
    ("pooling", lambda name, kind, _: "Pool" in kind),
    ("element-wise and other", lambda name, kind, _: True),
)


def step_profile(model, inputs, targets, steps: int, logdir: Path) -> dict:
    """Where a training step's time goes: TensorFlow's profiler over ``steps`` calls of
    ``train_on_batch``, op execution time summed over the executor's threads, by
    :data:`OP_CATEGORIES` (fractions), beside the wall time and the process's CPU time per
    step (the CPU time over wall time x cores: how busy the cores were)."""
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2  # TensorFlow's own protobuf

    tf.profiler.experimental.start(str(logdir))
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        model.train_on_batch(inputs, targets)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    tf.profiler.experimental.stop()
    traces = sorted(logdir.rglob("*.xplane.pb"))
    if not traces:
        raise RuntimeError(f"the profiler wrote no trace into {logdir}")
    space = xplane_pb2.XSpace()
    space.ParseFromString(traces[-1].read_bytes())
    seconds = dict.fromkeys((c for c, _ in OP_CATEGORIES), 0.0)
    for plane in space.planes:
        names = {key: meta.name for key, meta in plane.event_metadata.items()}
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):  # the executor's op events
                continue
            for event in line.events:
                name = names.get(event.metadata_id, "")
                if name.count(":") != 1:  # not "scope/name:OpType": the executor's own spans,
                    continue  # e.g. ExecutorState::Process, which enclose the op events
                op, kind = name.rsplit(":", 1)
                category = next(
                    c for c, test in OP_CATEGORIES if test(op, kind, model.optimizer.name)
                )
                seconds[category] += event.duration_ps * 1e-12
    total = sum(seconds.values())
    return {
        "steps": steps,
        "wall_s_per_step": round(wall / steps, 4),
        "cpu_s_per_step": round(cpu / steps, 4),
        "op_s_per_step": round(total / steps, 4),
        "fractions": {c: round(v / total, 3) for c, v in seconds.items()} if total else {},
    }


def models(ctx: Context, presets: tuple[str, ...]) -> dict:
    """Training samples/s (``train_on_batch``, batch 4) and synthesis volumes/s
    (``predict``, batch 16) of each preset on the shared arrays; FLOPs per sample and the
    fraction of the matmul throughput that training reaches (training ~ 3 x forward)."""
    import tensorflow as tf

    data = np.load(arrays(ctx))
    steps, repeats = _steps(ctx)
    with tf.device("/CPU:0"):
        gflops = matmul_gflops(repeats)
    figures: dict = {
        "devices": [d.device_type for d in tf.config.list_logical_devices()],
        "matmul_gflops": gflops,
        "steps": steps,
        "repeats": repeats,
    }
    for preset in presets:
        with tf.device("/CPU:0"):
            figures[preset] = _preset_speed(
                ctx, preset, data["eeg"], data["bold"], figures["matmul_gflops"]
            )
    if tf.config.list_logical_devices("GPU"):
        with tf.device("/GPU:0"):
            figures["gpu"] = {
                p: _preset_speed(ctx, p, data["eeg"], data["bold"], None) for p in presets
            }
    return figures


def _steps(ctx: Context) -> tuple[int, int]:
    """Timed steps per repeat, and repeats."""
    return (2, 1) if ctx.quick else (10, 3)


def _preset_speed(
    ctx: Context, preset: str, eeg: np.ndarray, bold: np.ndarray, gflops: float | None
) -> dict:
    import keras
    import tensorflow as tf

    from bids_eeg2fmri.models.synthesizer import PRESETS, build_models, count_trainable
    from bids_eeg2fmri.models.training import ORIGINAL_LEARNING_RATE, batched, compile_training

    steps, repeats = _steps(ctx)
    built = build_models(PRESETS[preset], eeg_shape=EEG_SHAPE, grid=GRID, **BINS)
    compile_training(built, PRESETS[preset], ORIGINAL_LEARNING_RATE)
    x, y = eeg[:TRAIN_BATCH], bold[:TRAIN_BATCH]
    zero = np.zeros(TRAIN_BATCH, np.float32)
    for _ in range(2):  # tracing
        built.training.train_on_batch([x, y], [y, zero])
    train_rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            built.training.train_on_batch([x, y], [y, zero])
        train_rates.append(TRAIN_BATCH * steps / (time.perf_counter() - start))
    # the product's path: Keras fit on a tf.data pipeline (here from memory, not the caches)
    targets = (bold, np.zeros(len(bold), np.float32))
    data = tf.data.Dataset.from_tensor_slices(((eeg, bold), targets)).repeat()
    data = batched(data, TRAIN_BATCH)  # the app's batching, prefetch and tf.data options
    built.training.fit(data, steps_per_epoch=2, epochs=1, verbose=0)  # tracing
    fit_rates = []
    fit_steps = 5 * steps  # an epoch long enough for fit's per-epoch set-up not to dominate
    for _ in range(repeats):
        start = time.perf_counter()
        built.training.fit(data, steps_per_epoch=fit_steps, epochs=1, verbose=0)
        fit_rates.append(TRAIN_BATCH * fit_steps / (time.perf_counter() - start))
    built.synthesis.predict(eeg[:SYNTH_BATCH], batch_size=SYNTH_BATCH, verbose=0)
    synth_rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        built.synthesis.predict(eeg, batch_size=SYNTH_BATCH, verbose=0)
        synth_rates.append(len(eeg) / (time.perf_counter() - start))
    profile = None
    if gflops:  # the CPU pass: op events on the host threads are the whole story
        try:
            logdir = ctx.root / f"profile-{preset}-{time.time_ns()}"
            profile = step_profile(built.training, [x, y], [y, zero], steps, logdir)
        except Exception as error:  # a private protobuf module may move: keep the rest
            profile = {"failed": f"{type(error).__name__}: {error}"}
    training_flops = 3 * forward_flops(built.training, [(*EEG_SHAPE, 1), (*GRID, 1)])
    figures = {
        "trainable_parameters": count_trainable(built.training),
        "train_samples_per_s": round(median(train_rates), 2),
        "fit_samples_per_s": round(median(fit_rates), 2),
        "synthesis_volumes_per_s": round(median(synth_rates), 1),
        "synthesis_mflop_per_volume": round(
            forward_flops(built.synthesis, [(*EEG_SHAPE, 1)]) / 1e6, 1
        ),
        "training_mflop_per_sample": round(training_flops / 1e6, 1),
        "step_profile": profile,
    }
    if gflops:
        figures["training_fraction_of_matmul"] = round(
            median(train_rates) * training_flops / 1e9 / gflops, 4
        )
    keras.backend.clear_session()
    return figures


#: What the pipeline explains per run (workflows/explain.py): the whole volume and 4 regions
#: (simulated sources or octants), 5 frequency bands, 48 volumes by default
LRP_REGIONS, LRP_BANDS, LRP_VOLUMES = 5, 5, 48


def lrp(ctx: Context, preset: str = "compact") -> dict:
    """Volumes/s of the pipeline's relevance maps of a run (``lrp.relevance_maps``: region
    and voxel-band relevance, zero reference, aligned, batches of 16) beside synthesis
    volumes/s (``predict``, batch 16), in one process on the shared arrays: the first call
    (tracing included: the first run of a participant level) and once compiled (every
    later run; the pipeline explains all runs with the same model), medians of the repeats.
    Random weights with non-zero biases and normalization statistics, as after training."""
    import keras
    import tensorflow as tf

    from bids_eeg2fmri.explain import lrp as relevance
    from bids_eeg2fmri.models.synthesizer import PRESETS, build_models

    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    eeg = np.load(arrays(ctx))["eeg"][: 16 if ctx.quick else LRP_VOLUMES]
    regions = np.concatenate(
        [np.ones((1, *GRID)), rng.random((LRP_REGIONS - 1, *GRID)) > 0.8]
    ).astype(np.float32)
    edges = np.linspace(0, EEG_SHAPE[1], LRP_BANDS + 1).astype(int)
    bands = np.zeros((LRP_BANDS, EEG_SHAPE[1]), bool)
    for b, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        bands[b, lo:hi] = True
    repeats = _steps(ctx)[1]
    with tf.device("/CPU:0"):
        model = build_models(PRESETS[preset], eeg_shape=EEG_SHAPE, grid=GRID, **BINS).synthesis
        for w in model.weights:
            if any(k in w.path for k in ("bias", "beta", "moving_mean")):
                w.assign(0.1 * rng.standard_normal(w.shape).astype(np.float32))

        def rate(fn) -> float:
            start = time.perf_counter()
            fn()
            return len(eeg) / (time.perf_counter() - start)

        def maps():
            relevance.relevance_maps(model, eeg, regions, bands, reference="zero", aligned=True)

        def synthesis():
            model.predict(eeg, batch_size=SYNTH_BATCH, verbose=0)

        first = rate(maps)
        compiled = median([rate(maps) for _ in range(repeats)])
        rate(synthesis)
        synth = median([rate(synthesis) for _ in range(repeats)])
    keras.backend.clear_session()
    return {
        preset: {
            "volumes": len(eeg),
            "regions": LRP_REGIONS,
            "bands": LRP_BANDS,
            "repeats": repeats,
            "lrp_first_call_volumes_per_s": round(first, 2),
            "lrp_volumes_per_s": round(compiled, 2),
            "synthesis_volumes_per_s": round(synth, 1),
        }
    }


def spectra(ctx: Context) -> dict:
    """Our EEG features of the shared hour (Hann-tapered spectra of every TR window, log
    and z-scored), the step the original does with its STFT; median seconds."""
    from bids_eeg2fmri.signals import features

    data = np.load(arrays(ctx))
    raw, sfreq, tr = data["raw"], float(data["sfreq"]), float(data["tr"])
    n_volumes = int(raw.shape[1] / sfreq / tr) - features.DEFAULT_N_WINDOWS
    onsets = tr * (features.DEFAULT_N_WINDOWS + np.arange(n_volumes))
    bins = features.frequency_bins(tr, sfreq)
    seconds = []
    for _ in range(1 if ctx.quick else 3):
        start = time.perf_counter()
        ends = features.window_ends(onsets, tr=tr, n_windows=features.DEFAULT_N_WINDOWS)
        psd = features.window_spectra(
            raw, sfreq, ends, n_samples=features.window_samples(tr, sfreq), bins=bins
        )
        features.model_inputs(features.standardize(psd), features.DEFAULT_N_WINDOWS)
        seconds.append(time.perf_counter() - start)
    hours = raw.shape[1] / sfreq / 3600
    return {
        "eeg_hours": round(hours, 3),
        "seconds": round(median(seconds), 2),
        "s_per_eeg_hour": round(median(seconds) / hours, 2),
    }


def original(ctx: Context, *, install: bool) -> dict:
    """The original package (eeg-to-fmri 0.0.9, Python 3.10, TensorFlow 2.9) timed by its
    own training step, synthesis and STFT on the shared arrays (benchmarks/original/)."""
    venv = Path(os.environ.get("ORIGINAL_VENV", Path(__file__).parent / ".original-venv"))
    python = venv / "bin" / "python"
    installed = (venv / ".eeg-to-fmri-0.0.9").exists()  # setup.sh's stamp
    if install and not installed:
        log = ctx.root / "original-setup.log"
        with log.open("w") as out:
            done = subprocess.run(
                ["bash", str(ORIGINAL / "setup.sh"), str(venv)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        if done.returncode:
            return {
                "failed": f"benchmarks/original/setup.sh failed (exit {done.returncode}); see {log}"
            }
    elif not installed:
        return {"skipped": f"no environment at {venv}: run benchmarks/original/setup.sh"}
    result = ctx.root / "original.json"
    argv = [
        str(python),
        str(ORIGINAL / "measure.py"),
        "--arrays",
        str(arrays(ctx)),
        "--out",
        str(result),
    ]
    steps, repeats = _steps(ctx)
    argv += ["--steps", str(steps), "--repeats", str(repeats)]
    log = ctx.root / "original.log"
    with log.open("w") as out:
        done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode:
        return {
            "failed": f"benchmarks/original/measure.py failed (exit {done.returncode}); see {log}"
        }
    return json.loads(result.read_text())

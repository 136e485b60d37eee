"""Benchmark: training samples/s and synthesis volumes/s at NODDI shapes, on this machine.

Builds each preset for EEG inputs of 64 channels x 134 frequencies x 10 windows and a
64 x 64 x 30 grid, compiles it as ``participant --train`` does (Adam, MAE + latent cosine),
and times ``train_on_batch`` (batch 4, the original's) and ``predict`` (batch 16) on random
arrays in memory, so that only the model is measured. Medians of 3 repeats.

Usage: python benchmarks/model_speed.py [--presets compact noddi-tafp] [--steps 10]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["compact", "noddi-tafp"])
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()

    import keras
    import numpy as np
    import tensorflow as tf

    from bids_eeg2fmri.models.synthesizer import PRESETS, build_models, count_trainable
    from bids_eeg2fmri.models.training import latent_loss, mae_loss

    rng = np.random.default_rng(0)
    results = {}
    for preset in args.presets:
        models = build_models(PRESETS[preset], eeg_shape=(64, 134, 10), grid=(64, 64, 30))
        models.training.compile(
            optimizer=keras.optimizers.Adam(1e-3), loss={"synth": mae_loss, "latent": latent_loss}
        )
        batch = 4
        x = rng.standard_normal((batch, 64, 134, 10, 1)).astype("float32")
        y = rng.standard_normal((batch, 64, 64, 30, 1)).astype("float32")
        zero = np.zeros(batch, "float32")
        for _ in range(2):  # warm-up (tracing)
            models.training.train_on_batch([x, y], [y, zero])
        train_rates = []
        for _ in range(3):
            start = time.perf_counter()
            for _ in range(args.steps):
                models.training.train_on_batch([x, y], [y, zero])
            train_rates.append(batch * args.steps / (time.perf_counter() - start))
        xs = rng.standard_normal((64, 64, 134, 10, 1)).astype("float32")
        models.synthesis.predict(xs[:16], batch_size=16, verbose=0)
        synth_rates = []
        for _ in range(3):
            start = time.perf_counter()
            models.synthesis.predict(xs, batch_size=16, verbose=0)
            synth_rates.append(len(xs) / (time.perf_counter() - start))
        results[preset] = {
            "trainable_parameters": count_trainable(models.training),
            "train_samples_per_s": round(statistics.median(train_rates), 2),
            "synthesis_volumes_per_s": round(statistics.median(synth_rates), 1),
        }
        print(preset, results[preset], flush=True)
    print(
        json.dumps(
            {
                "benchmark": "model speed at NODDI shapes",
                "date": time.strftime("%Y-%m-%d"),
                "devices": [d.name for d in tf.config.list_logical_devices()],
                "cores": len(os.sched_getaffinity(0)),
                "python": platform.python_version(),
                "tensorflow": tf.__version__,
                "results": results,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

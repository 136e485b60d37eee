"""Speed of the ORIGINAL ``eeg_to_fmri`` package (PyPI 0.0.9) on given arrays, CPU only.

Run with the venv made by ``benchmarks/original/setup.sh`` (Python 3.10, TF 2.9)::

    benchmarks/.original-venv/bin/python benchmarks/original/measure.py \
        --arrays ARRAYS.npz --out RESULT.json [--steps 10] [--repeats 3]
    benchmarks/.original-venv/bin/python benchmarks/original/measure.py --make-arrays ARRAYS.npz

Everything timed is the original's own code (the names called are listed in the result
under ``original_functions``):

* training: the canonical model (iv) of the paper (``EEG_to_fMRI`` with topographical
  attention, random Fourier features and conditional attention style, built as in its
  ``examples/synthesis.ipynb``), trained with ``learning.train.train`` (its epoch loop:
  dataset iteration, ``train_step``, ``.numpy()`` and ``gc.collect()`` per batch) and its
  ``mae_cosine`` loss, Adam at ``parameters[0]``, batch 4 (``parameters[4]``), on ``steps``
  batches of the npz arrays after 2 warm-up steps. Also the bare ``train_step`` loop.
* synthesis: ``model(eeg, bold)[0]`` over the N volumes, as its ``src/main.py`` and
  ``metrics`` code do (the BOLD input only feeds the unused fMRI encoder), batch 16 and
  also its own test batch 1.
* preprocessing: the EEG branch of ``data.data_utils.get_data``: ``data.eeg_utils.stft``
  per channel (window = TR, no overlap) on an mne ``RawArray`` holding ``raw``, then
  ``scipy.stats.zscore`` across channels. Building the RawArray is timed separately.

Medians over ``repeats``. Threads = available cores; CUDA hidden. By default
``EEG_to_fMRI.call`` runs as the ``tf.function`` it is declared as; ``--run-eagerly`` runs it
eagerly, as the package's example notebook configures TF (``tf_config.setup_tensorflow``).
No patches: the package imports once ``EEG_FMRI`` and ``EEG_FMRI_DATASETS`` are set.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def make_arrays(path: str, n: int = 64, seconds: int = 3600, seed: int = 0) -> None:
    """Write a test npz with the layout the harness uses (random data)."""
    rng = np.random.default_rng(seed)
    sfreq = 250.0
    np.savez(
        path,
        eeg=rng.standard_normal((n, 64, 134, 10, 1), dtype=np.float32),
        bold=rng.standard_normal((n, 64, 64, 30, 1), dtype=np.float32),
        raw=(20e-6 * rng.standard_normal((64, int(seconds * sfreq)), dtype=np.float32)),
        sfreq=np.array(sfreq),
        tr=np.array(2.16),
    )


def n_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def timed(fn: Callable[[], Any], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arrays", help="npz with eeg, bold, raw, sfreq, tr")
    parser.add_argument("--out", help="result JSON")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--run-eagerly",
        action="store_true",
        help="run tf.functions eagerly, as examples/synthesis.ipynb does (setup_tensorflow)",
    )
    parser.add_argument("--make-arrays", metavar="PATH", help="write a random test npz and exit")
    args = parser.parse_args()
    if args.make_arrays:
        make_arrays(args.make_arrays)
        return 0
    if not (args.arrays and args.out):
        parser.error("--arrays and --out are required")

    cores = n_cores()
    workdir = tempfile.mkdtemp(prefix="eeg_fmri_original_")
    os.makedirs(os.path.join(workdir, "datasets"), exist_ok=True)
    # The original reads these at import time (data/eeg_utils.py, data/fmri_utils.py).
    os.environ["EEG_FMRI"] = workdir
    os.environ["EEG_FMRI_DATASETS"] = os.path.join(workdir, "datasets")
    os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(cores)

    import mne
    import scipy
    import tensorflow as tf
    from scipy.stats import zscore

    tf.config.threading.set_intra_op_parallelism_threads(cores)
    tf.config.threading.set_inter_op_parallelism_threads(cores)

    import eeg_to_fmri
    from eeg_to_fmri.data import eeg_utils
    from eeg_to_fmri.learning import losses, train
    from eeg_to_fmri.models.fmri_ae import na_specification_fmri
    from eeg_to_fmri.models.synthesizers import EEG_to_fMRI, na_specification_eeg, parameters
    from eeg_to_fmri.utils import tf_config

    data = np.load(args.arrays)
    eeg = np.ascontiguousarray(data["eeg"], dtype=np.float32)
    bold = np.ascontiguousarray(data["bold"], dtype=np.float32)
    raw = np.asarray(data["raw"])
    sfreq, tr = float(data["sfreq"]), float(data["tr"])
    n = eeg.shape[0]

    # --- model (iv), built exactly as examples/synthesis.ipynb does -------------------
    tf_config.set_seed(seed=2)
    if args.run_eagerly:
        tf_config.setup_tensorflow(memory_limit=None, device="CPU", run_eagerly=True)
    # fmt: off
    (learning_rate, weight_decay, kernel_size, stride_size, batch_size, latent_dimension,
     n_channels, max_pool, batch_norm, skip_connections, dropout, n_stacks, outfilter,
     _local) = parameters
    fmri_args = (latent_dimension, bold.shape[1:], kernel_size, stride_size, n_channels,
                 max_pool, batch_norm, weight_decay, skip_connections, n_stacks, True, False,
                 outfilter, dropout, None, False, na_specification_fmri)
    model = EEG_to_fMRI(latent_dimension, eeg.shape[1:], na_specification_eeg, n_channels,
                        weight_decay=weight_decay, skip_connections=True, batch_norm=True,
                        fourier_features=True, random_fourier=True,
                        topographical_attention=True, conditional_attention_style=True,
                        conditional_attention_style_prior=False, local=True, seed=None,
                        fmri_args=fmri_args)
    # fmt: on
    model.build((None,) + eeg.shape[1:], (None,) + bold.shape[1:])
    optimizer = tf.keras.optimizers.Adam(learning_rate)
    n_params = int(sum(np.prod(v.shape) for v in model.trainable_weights))

    def batches(start: int, count: int) -> tf.data.Dataset:
        idx = np.arange(start, start + count * batch_size) % n
        return tf.data.Dataset.from_tensor_slices((eeg[idx], bold[idx])).batch(batch_size)

    def fit(dataset: tf.data.Dataset) -> None:
        train.train(dataset, model, optimizer, losses.mae_cosine, epochs=1, u_architecture=True)

    # --- a. training ---------------------------------------------------------------
    samples = args.steps * batch_size
    fit(batches(0, 2))  # warm-up: traces EEG_to_fMRI.call, creates the Adam slots
    train_times = []
    for r in range(args.repeats):
        dataset = batches(r * samples, args.steps)
        start = time.perf_counter()
        fit(dataset)
        train_times.append(time.perf_counter() - start)
    step_idx = [np.arange(i, i + batch_size) % n for i in range(0, samples, batch_size)]
    step_data = [(tf.constant(eeg[i]), tf.constant(bold[i])) for i in step_idx]

    def bare_steps() -> None:
        for x in step_data:
            train.train_step(model, x, optimizer, losses.mae_cosine, u_architecture=True).numpy()

    step_times = timed(bare_steps, args.repeats)

    # --- b. synthesis (model(eeg, bold)[0], training-mode trace as in the original) -----
    def synthesize(batch: int) -> Callable[[], None]:
        chunks = [
            (tf.constant(eeg[i : i + batch]), tf.constant(bold[i : i + batch]))
            for i in range(0, n, batch)
        ]

        def run() -> None:
            for x, y in chunks:
                model(x, y)[0].numpy()

        return run

    synth16, synth1 = synthesize(16), synthesize(1)
    synth16()
    synth1()
    synth16_times = timed(synth16, args.repeats)
    synth1_times = timed(synth1, args.repeats)

    # --- c. preprocessing: the EEG branch of data_utils.get_data --------------------------
    names = [f"EEG{i:03d}" for i in range(raw.shape[0])]
    info = mne.create_info(names, sfreq, "eeg", verbose=False)

    def to_raw() -> mne.io.RawArray:
        return mne.io.RawArray(raw.astype(np.float64), info, verbose=False)

    rawarray_times = timed(to_raw, args.repeats)
    raw_mne = to_raw()
    shape: list[tuple[int, ...]] = []

    def spectra() -> None:
        # as data_utils.get_data for dataset 01: window = TR, eeg_limit=False, f_limit=135
        x = [
            eeg_utils.stft(raw_mne, c, window_size=tr, fs=int(sfreq), limit=False, f_limit=135)[1]
            for c in range(len(raw_mne.ch_names))
        ]
        shape[:] = [zscore(np.array(x)).shape]

    stft_times = timed(spectra, args.repeats)
    hours = raw.shape[1] / sfreq / 3600.0
    stft_s = statistics.median(stft_times)

    result = {
        "package": f"eeg-to-fmri {eeg_to_fmri.__version__}",
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "mne": mne.__version__,
        "cores": cores,
        "threads": cores,
        "device": "CPU (CUDA_VISIBLE_DEVICES=-1)",
        "run_eagerly": args.run_eagerly,
        "machine": platform.machine(),
        "platform": platform.platform(),
        "arrays": os.path.abspath(args.arrays),
        "n_volumes": n,
        "steps": args.steps,
        "repeats": args.repeats,
        "batch_size": int(batch_size),
        "learning_rate": float(learning_rate),
        "trainable_parameters": n_params,
        "train_samples_per_s": samples / statistics.median(train_times),
        "train_seconds": train_times,
        "train_step_samples_per_s": samples / statistics.median(step_times),
        "train_step_seconds": step_times,
        "synthesis_volumes_per_s": n / statistics.median(synth16_times),
        "synthesis_batch": 16,
        "synthesis_seconds": synth16_times,
        "synthesis_batch1_volumes_per_s": n / statistics.median(synth1_times),
        "synthesis_batch1_seconds": synth1_times,
        "stft_seconds": stft_s,
        "stft_seconds_all": stft_times,
        "stft_seconds_per_hour_64ch": stft_s / hours * (64 / raw.shape[0]),
        "stft_input": {
            "channels": raw.shape[0],
            "samples": raw.shape[1],
            "sfreq": sfreq,
            "tr": tr,
            "hours": hours,
        },
        "stft_output_shape": list(shape[0]),
        "rawarray_seconds": statistics.median(rawarray_times),
        "stft_timing_includes": "per-channel eeg_utils.stft on an in-memory mne RawArray "
        "(raw[channel] read, windowing, scipy.fft.fft, abs) and "
        "scipy.stats.zscore across channels; not the RawArray build "
        "(rawarray_seconds) nor file reading",
        "original_functions": [
            "eeg_to_fmri.utils.tf_config.set_seed",
            "eeg_to_fmri.utils.tf_config.setup_tensorflow (only with --run-eagerly)",
            "eeg_to_fmri.models.synthesizers.parameters",
            "eeg_to_fmri.models.synthesizers.na_specification_eeg",
            "eeg_to_fmri.models.fmri_ae.na_specification_fmri",
            "eeg_to_fmri.models.synthesizers.EEG_to_fMRI (+ .build, .call)",
            "eeg_to_fmri.learning.train.train (training, train_samples_per_s)",
            "eeg_to_fmri.learning.train.train_step (train_step_samples_per_s)",
            "eeg_to_fmri.learning.losses.mae_cosine",
            "eeg_to_fmri.data.eeg_utils.stft (-> eeg_utils.compute_fft)",
        ],
        "patches": "none: the package imports once EEG_FMRI and EEG_FMRI_DATASETS are set",
    }
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=2)
    json.dump(
        {k: v for k, v in result.items() if k.endswith(("per_s", "_64ch", "parameters"))},
        sys.stdout,
        indent=2,
    )
    print()
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

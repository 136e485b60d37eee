"""Training: a tf.data pipeline streaming from the cached arrays, Keras fit with early
stopping, checkpoints that let an interrupted training resume, seeds and determinism."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bids_eeg2fmri.models.data import RunArrays

LOGGER = logging.getLogger("bids_eeg2fmri")
#: The original's Adam learning rate (Bayesian optimisation, Calhas & Henriques 2022).
ORIGINAL_LEARNING_RATE = 0.002980911194116198


def sample_pairs(runs: list[RunArrays], volumes: dict[int, np.ndarray]) -> np.ndarray:
    """(run index, volume index) of the usable samples: a full EEG input and a target."""
    rows = []
    for i, selected in volumes.items():
        valid = runs[i].valid
        rows += [(i, int(t)) for t in selected if valid[t]]
    return np.asarray(rows, dtype=np.int64).reshape(-1, 2)


def make_dataset(
    runs: list[RunArrays], pairs: np.ndarray, *, batch_size: int, shuffle: bool, seed: int
):
    """A tf.data pipeline of ((eeg, bold), (bold, 0)) batches read from memory maps.

    Memory does not grow with the number of runs: samples are read when needed.
    Shuffling draws a new order every epoch from ``seed``.
    """
    import tensorflow as tf

    used = sorted({int(i) for i in pairs[:, 0]})  # EEG-only runs have no target to read
    inputs = {i: runs[i].inputs() for i in used}
    targets = {i: runs[i].targets() for i in used}
    eeg_shape = inputs[pairs[0, 0]].shape[1:]
    grid = targets[pairs[0, 0]].shape[:3]
    epoch = {"n": 0}

    def generate():
        order = pairs
        if shuffle:
            order = pairs[np.random.default_rng([seed, epoch["n"]]).permutation(len(pairs))]
            epoch["n"] += 1
        for run, t in order:
            x = np.asarray(inputs[run][t], dtype=np.float32)[..., None]
            y = np.asarray(targets[run][..., t], dtype=np.float32)[..., None]
            yield (x, y), (y, np.float32(0))

    signature = (
        (tf.TensorSpec((*eeg_shape, 1), tf.float32), tf.TensorSpec((*grid, 1), tf.float32)),
        (tf.TensorSpec((*grid, 1), tf.float32), tf.TensorSpec((), tf.float32)),
    )
    dataset = tf.data.Dataset.from_generator(generate, output_signature=signature)
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(len(pairs)))
    return batched(dataset, batch_size)


def batched(dataset, batch_size: int):
    """Batches of ``dataset``, two prefetched, with tf.data's autotuning off.

    The pipeline has nothing to tune (one generator, a fixed prefetch), and an autotuned
    iterator's clean-up waits for the tuner's next wake-up: idle seconds at the end of
    every training epoch and validation pass (up to ~9 s after 50 steps at noddi-tafp's
    shapes on a 2-core CPU; benchmarks/NOTES.md).
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.batch(batch_size).prefetch(2).with_options(options)


def mae_loss(y_true, y_pred):
    """Mean absolute error over the voxels of each sample."""
    from keras import ops

    return ops.mean(ops.abs(y_true - y_pred), axis=(1, 2, 3, 4))


def laplace_nll(y_true, y_pred, *, reduce: bool = True):
    """Laplace negative log-likelihood per sample (per voxel without ``reduce``);
    ``y_pred[..., 0]`` mean, ``[..., 1]`` scale."""
    from keras import ops

    mu, scale = y_pred[..., :1], y_pred[..., 1:] + 1e-6
    terms = ops.abs(y_true - mu) / scale + ops.log(2 * scale)
    return ops.mean(terms, axis=(1, 2, 3, 4)) if reduce else terms


def mse_loss(y_true, y_pred):
    """Mean squared error over the voxels of each sample."""
    from keras import ops

    return ops.mean(ops.square(y_true - y_pred), axis=(1, 2, 3, 4))


def gaussian_nll(y_true, y_pred, *, reduce: bool = True):
    """Gaussian negative log-likelihood per sample (per voxel without ``reduce``; without
    the constant ``log(2 pi) / 2``); ``y_pred[..., 0]`` mean, ``[..., 1]`` standard deviation."""
    from keras import ops

    mu, scale = y_pred[..., :1], y_pred[..., 1:] + 1e-6
    terms = ops.square(y_true - mu) / (2 * ops.square(scale)) + ops.log(scale)
    return ops.mean(terms, axis=(1, 2, 3, 4)) if reduce else terms


def _scale_weighted(nll, power: int):
    """``nll`` weighted per voxel by its predicted scale to the ``power``, held constant
    (beta-NLL with beta = 1, Seitzer et al. 2022).

    The plain likelihoods scale the mean's gradient by ``1 / b`` (Laplace) or ``1 / sigma^2``
    (Gaussian). Outside the brain the targets are exactly 0, the scale there shrinks without
    bound, and those weights grow until the mean (a smooth decoder's output) stays constant
    in time: compact-variational trained with the plain Gaussian likelihood predicted a
    constant mean, r undefined on every held-out participant (benchmarks/NOTES.md). With the
    weight, the mean's gradient is the point loss's (absolute or squared error), and the
    scale's still vanishes where it equals the residual (``b = |y - mu|``,
    ``sigma^2 = (y - mu)^2``)."""

    def loss(y_true, y_pred):
        from keras import ops

        scale = ops.stop_gradient(y_pred[..., 1:] + 1e-6)
        return ops.mean(scale**power * nll(y_true, y_pred, reduce=False), axis=(1, 2, 3, 4))

    loss.__name__ = f"{nll.__name__}_scale_weighted"
    return loss


#: (point estimate, variational) voxel losses of each ``Architecture.loss``
VOXEL_LOSSES = {
    "mae": (mae_loss, _scale_weighted(laplace_nll, 1)),
    "mse": (mse_loss, _scale_weighted(gaussian_nll, 2)),
}


def latent_loss(y_true, y_pred):
    """The latent distance is computed by the model; the loss is that output itself."""
    return y_pred


def compile_training(models, arch, learning_rate: float) -> None:
    """Compile the training model with Adam (TensorFlow's fused update, the same formula
    as Keras's), the architecture's voxel loss and the latent term at its weight."""
    from bids_eeg2fmri.models.optimizers import FusedAdam

    models.training.compile(
        optimizer=FusedAdam(learning_rate),
        loss={"synth": VOXEL_LOSSES[arch.loss][arch.variational], "latent": latent_loss},
        loss_weights={"synth": 1.0, "latent": float(arch.latent_weight)},
    )


@dataclass
class TrainResult:
    models: object  # BuiltModels
    history: dict
    seconds: float


def _progress(epochs: int):
    """A Keras callback logging epoch, losses, elapsed and remaining time."""
    import keras

    class Progress(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.start = time.monotonic()

        def on_epoch_end(self, epoch, logs=None):
            elapsed = time.monotonic() - self.start
            left = elapsed / (epoch + 1) * (epochs - epoch - 1)
            values = ", ".join(f"{k} {v:.4f}" for k, v in (logs or {}).items())
            LOGGER.info(
                "epoch %d/%d: %s (%.0f s, about %.0f s left at most)",
                epoch + 1,
                epochs,
                values,
                elapsed,
                left,
            )

    return Progress()


def train(
    runs: list[RunArrays],
    train_volumes: dict[int, np.ndarray],
    validation_volumes: dict[int, np.ndarray],
    *,
    arch,
    compat_loss: bool,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    patience: int,
    seed: int,
    deterministic: bool,
    backup_dir: Path,
    callbacks: tuple = (),
) -> TrainResult:
    """Fit the synthesizer; the best weights on the validation samples are kept."""
    import keras
    import tensorflow as tf

    from bids_eeg2fmri.models.synthesizer import build_models

    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    train_pairs = sample_pairs(runs, train_volumes)
    validation_pairs = sample_pairs(runs, validation_volumes)
    if len(train_pairs) == 0:
        raise ValueError(
            f"no training sample: none of the {len(train_volumes)} training run(s) has a volume "
            "with a full EEG input (the --n-windows TR-long windows before it) and a BOLD "
            "target: are the runs shorter than the windows, or does the EEG start too late?"
        )
    first = runs[train_pairs[0, 0]]
    eeg_shape = first.inputs().shape[1:]
    grid = tuple(int(n) for n in first.targets().shape[:3])

    gpus = tf.config.list_logical_devices("GPU")
    strategy = tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    LOGGER.info(
        "Training on %d samples (validation %d) on %s",
        len(train_pairs),
        len(validation_pairs),
        f"{len(gpus)} GPU(s)" if gpus else "the CPU",
    )
    with strategy.scope():
        models = build_models(
            arch,
            eeg_shape=eeg_shape,
            grid=grid,
            compat_loss=compat_loss,
            seed=seed,
            tr=float(first.features_info["tr"]),
            frequencies=first.features_info["frequencies"],
        )
        compile_training(models, arch, learning_rate)
    train_data = make_dataset(runs, train_pairs, batch_size=batch_size, shuffle=True, seed=seed)
    callbacks = [
        keras.callbacks.BackupAndRestore(str(backup_dir)),
        _progress(epochs),
        *callbacks,
    ]
    validation_data = None
    if len(validation_pairs):
        validation_data = make_dataset(
            runs, validation_pairs, batch_size=batch_size, shuffle=False, seed=seed
        )
        callbacks.append(
            keras.callbacks.EarlyStopping(patience=patience, restore_best_weights=True)
        )
    start = time.monotonic()
    history = models.training.fit(
        train_data,
        validation_data=validation_data,
        epochs=epochs,
        callbacks=callbacks,
        shuffle=False,  # the pipeline shuffles (per epoch, from the seed)
        verbose=0,
    )
    return TrainResult(
        models,
        {k: [float(v) for v in vs] for k, vs in history.history.items()},
        time.monotonic() - start,
    )

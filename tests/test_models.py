"""Keras layers (shapes, math, serialisation), the presets, and the loss terms."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from conftest import input_bins  # noqa: E402

from bids_eeg2fmri.models import layers as L  # noqa: E402
from bids_eeg2fmri.models.synthesizer import PRESETS, build_models, count_trainable  # noqa: E402

RNG = np.random.default_rng(0)


def roundtrip(layer):
    """A layer rebuilt from its config has the same config."""
    clone = layer.__class__.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    return clone


def test_topographical_attention_is_a_convex_mix_of_channels():
    x = RNG.standard_normal((3, 5, 7)).astype("float32")
    layer = L.TopographicalAttention()
    out, graph = (np.asarray(t) for t in layer(x))
    assert out.shape == (3, 5, 7) and graph.shape == (3, 5, 5)
    assert np.allclose(graph.sum(axis=-1), 1, atol=1e-5) and (graph >= 0).all()
    a = np.asarray(layer.attention)
    scores = np.einsum("bif,jf->bij", x, a)
    expected = np.exp(scores) / np.exp(scores).sum(-1, keepdims=True)
    assert np.allclose(graph, expected, atol=1e-5)
    assert np.allclose(out, expected @ x, atol=1e-4)
    assert layer.count_params() == 5 * 7
    roundtrip(layer)


def test_resblock_shapes_and_the_originals_parameter_count():
    block = L.ResBlock3D(4, (7, 37, 2), (3, 5, 1), (2, 2, 1), (1, 1, 1))
    out = block(np.zeros((1, 64, 134, 10, 1), "float32"))
    assert out.shape == (1, 19, 19, 9, 4)
    trainable = sum(int(np.prod(w.shape)) for w in block.trainable_weights)
    assert trainable == 4612 and block.count_params() == 4636  # the original's 4,636
    roundtrip(block)
    with pytest.raises(ValueError, match="larger than its input"):
        L.ResBlock3D(4, (9, 9, 9))(np.zeros((1, 5, 5, 5, 1), "float32"))


def test_resblock_identity_skip_passes_the_input_through():
    x = np.abs(RNG.standard_normal((2, 6, 7, 5, 3))).astype("float32")
    block = L.ResBlock3D(3, projection=False)
    block(x)
    for weight in block.trainable_weights:  # zero convolutions: the residual branch is 0
        if "kernel" in weight.path or "bias" in weight.path:
            weight.assign(np.zeros(weight.shape, "float32"))
    assert np.allclose(np.asarray(block(x, training=False)), x, atol=1e-5)
    assert roundtrip(block).projection is False


def test_random_fourier_features():
    x = RNG.standard_normal((4, 9)).astype("float32")
    layer = L.RandomFourierFeatures(6, normalization=False, seed=1)
    out = np.asarray(layer(x))
    kernel, bias, scale = (np.asarray(w) for w in (layer.kernel, layer.bias, layer.kernel_scale))
    assert np.allclose(out, np.cos(x @ (kernel / scale) + bias), atol=1e-5)
    assert scale[0] == pytest.approx(np.sqrt(9 / 2))
    assert [w.name for w in layer.trainable_weights] == ["kernel_scale"]
    normed = L.RandomFourierFeatures(6, seed=1)
    normed(x)
    assert sum(int(np.prod(w.shape)) for w in normed.trainable_weights) == 1 + 2 * 6
    assert np.all(np.abs(np.asarray(normed(x))) <= 1)
    assert np.allclose(np.asarray(L.RandomFourierFeatures(6, seed=1)(x)), np.asarray(normed(x)))
    roundtrip(normed)


def test_deterministic_fourier_features_apply_one_cosine():
    x = RNG.standard_normal((3, 4)).astype("float32")
    layer = L.FourierFeatures(5)
    kernel = np.tile(np.pi * 2.0 ** (np.arange(5) / 5), (4, 1))
    assert np.allclose(np.asarray(layer(x)), np.cos(x @ kernel), atol=1e-5)
    assert layer.count_params() == 0
    roundtrip(layer)


def test_style_prior_scales_each_unit():
    layer = L.StylePrior()
    x = RNG.standard_normal((2, 5)).astype("float32")
    assert np.allclose(np.asarray(layer(x)), x * np.asarray(layer.style))


def test_latent_cosine_distance_per_sample_and_compat():
    a = RNG.standard_normal((4, 2, 3, 2)).astype("float32")
    b = RNG.standard_normal((4, 2, 3, 2)).astype("float32")
    got = np.asarray(L.LatentCosineDistance()([a, b]))
    fa, fb = a.reshape(4, -1), b.reshape(4, -1)
    expected = 1 - (fa * fb).sum(1) / (np.linalg.norm(fa, axis=1) * np.linalg.norm(fb, axis=1))
    assert np.allclose(got, expected, atol=1e-5)
    assert np.allclose(np.asarray(L.LatentCosineDistance()([a, a])), 0, atol=1e-5)
    assert np.allclose(np.asarray(L.LatentCosineDistance()([a, -a])), 2, atol=1e-5)
    # the original: a (B, B) batch-cross product with b transposed, batch-global norms
    cross = np.einsum("aijk,ckji->ac", a, b) / (np.linalg.norm(a) * np.linalg.norm(b))
    compat = np.asarray(L.LatentCosineDistance(compat=True)([a, b]))
    assert np.allclose(compat, (1 - cross).sum(axis=1), atol=1e-4)


def test_dct_round_trip_and_low_frequency_reconstruction():
    x = RNG.standard_normal((2, 6, 5, 4, 1)).astype("float32")
    coeffs = L.DCT3D()(x)
    back = L.InverseDCT3D((6, 5, 4))(coeffs)
    assert np.allclose(np.asarray(back), x, atol=1e-4)
    i, j, k = np.meshgrid(np.arange(16), np.arange(12), np.arange(8), indexing="ij")
    smooth = (
        np.cos(np.pi * (2 * i + 1) / 32)[None, ..., None].astype("float32")
        + 0 * j[None, ..., None]
        + 0 * k[None, ..., None]
    )
    low = np.asarray(L.DCT3D()(smooth))[:, :4, :4, :4]
    rebuilt = np.asarray(L.InverseDCT3D((16, 12, 8))(low))
    assert np.allclose(rebuilt, smooth, atol=1e-4)
    assert roundtrip(L.InverseDCT3D((16, 12, 8))).shape == (16, 12, 8)


def test_dense_variational_samples_in_training_and_adds_its_kl():
    import tensorflow_probability as tfp

    layer = L.DenseVariational(3, kl_weight=0.5, seed=2)
    x = RNG.standard_normal((4, 5)).astype("float32")
    mean = np.asarray(layer(x, training=False))
    assert np.allclose(mean, x @ np.asarray(layer.kernel_mu) + np.asarray(layer.bias_mu), atol=1e-5)
    first, second = (np.asarray(layer(x, training=True)) for _ in range(2))
    assert not np.allclose(first, second)  # noise per weight, drawn at every call
    tfd = tfp.distributions
    kl = sum(
        float(
            np.sum(tfd.kl_divergence(tfd.Normal(mu, keras.ops.softplus(rho)), tfd.Normal(0.0, 1.0)))
        )
        for mu, rho in ((layer.kernel_mu, layer.kernel_rho), (layer.bias_mu, layer.bias_rho))
    )
    assert float(layer.losses[-1]) == pytest.approx(0.5 * kl, rel=1e-4)
    roundtrip(layer)


# --------------------------------------------------------------------------- presets
def test_noddi_tafp_has_the_originals_parameter_count():
    models = build_models(
        PRESETS["noddi-tafp"],
        eeg_shape=(64, 134, 10),
        grid=(64, 64, 30),
        **input_bins((64, 134, 10)),
    )
    assert count_trainable(models.training) == 44_741_047
    assert models.synthesis.output_shape == (None, 64, 64, 30, 1)


@pytest.mark.parametrize("preset", sorted(set(PRESETS) - {"noddi-tafp"}))
def test_every_preset_builds_at_small_shapes_or_says_why(preset):
    try:
        models = build_models(
            PRESETS[preset], eeg_shape=(12, 40, 4), grid=(12, 13, 8), **input_bins((12, 40, 4))
        )
    except ValueError as err:  # the original's kernels do not fit tiny inputs
        assert preset != "compact" and "larger than its input" in str(err)
        return
    out = models.synthesis.predict(np.zeros((2, 12, 40, 4, 1), "float32"), verbose=0)
    assert out.shape == (2, 12, 13, 8, 2 if PRESETS[preset].variational else 1)


def test_the_latent_term_is_the_originals_only_in_its_architecture():
    # at 1 the cosine term swamps the voxel error on small data and the compact models
    # did not learn the EEG-BOLD coupling of simulated data (held-out r 0.23 against 0.64)
    assert PRESETS["noddi-tafp"].latent_weight == 1.0
    for name in ("compact", "compact-variational", "compact-plain"):
        assert PRESETS[name].latent_weight == 0.0


def test_batchnorm_runs_in_inference_mode_at_synthesis():
    models = build_models(
        PRESETS["compact"], eeg_shape=(12, 40, 4), grid=(12, 13, 8), **input_bins((12, 40, 4))
    )
    x = RNG.standard_normal((4, 12, 40, 4, 1)).astype("float32")
    alone = models.synthesis.predict(x[:1], verbose=0)
    batched = models.synthesis.predict(x, batch_size=4, verbose=0)
    assert np.allclose(alone[0], batched[0], atol=1e-5)  # the original's outputs differed


@pytest.mark.parametrize("preset", ["compact", "compact-variational"])
def test_a_saved_model_reloads_in_a_new_process_in_safe_mode(tmp_path, preset):
    models = build_models(
        PRESETS[preset], eeg_shape=(12, 40, 4), grid=(12, 13, 8), seed=3, **input_bins((12, 40, 4))
    )
    path = tmp_path / "m.keras"
    models.synthesis.save(path)
    x = RNG.standard_normal((2, 12, 40, 4, 1)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", models.synthesis.predict(x, verbose=0))
    code = (
        "import numpy as np, keras, sys\n"
        "import bids_eeg2fmri.models.layers\n"
        "m = keras.saving.load_model(sys.argv[1], safe_mode=True)\n"
        "y = m.predict(np.load(sys.argv[2]), verbose=0)\n"
        "assert np.array_equal(y, np.load(sys.argv[3])), abs(y - np.load(sys.argv[3])).max()\n"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(path), str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
        check=True,
        capture_output=True,
    )


def test_reconstruction_losses():
    from bids_eeg2fmri.models.training import gaussian_nll, laplace_nll, mae_loss, mse_loss

    y = RNG.standard_normal((3, 4, 5, 2, 1)).astype("float32")
    y_hat = RNG.standard_normal((3, 4, 5, 2, 1)).astype("float32")
    assert np.allclose(
        np.asarray(mae_loss(y, y_hat)), np.abs(y - y_hat).mean(axis=(1, 2, 3, 4)), atol=1e-6
    )
    scale = np.full_like(y, 0.5)
    nll = np.asarray(laplace_nll(y, np.concatenate([y_hat, scale], axis=-1)))
    expected = (np.abs(y - y_hat) / 0.5 + np.log(2 * 0.5)).mean(axis=(1, 2, 3, 4))
    assert np.allclose(nll, expected, atol=1e-4)
    assert np.allclose(
        np.asarray(mse_loss(y, y_hat)), ((y - y_hat) ** 2).mean(axis=(1, 2, 3, 4)), atol=1e-5
    )
    nll = np.asarray(gaussian_nll(y, np.concatenate([y_hat, scale], axis=-1)))
    expected = ((y - y_hat) ** 2 / (2 * 0.25) + np.log(0.5)).mean(axis=(1, 2, 3, 4))
    assert np.allclose(nll, expected, atol=1e-4)


@pytest.mark.parametrize("loss", ["mse", "mae"])
def test_variational_training_moves_the_mean_as_the_point_loss_does(loss):
    import tensorflow as tf

    from bids_eeg2fmri.models.training import VOXEL_LOSSES

    point, variational = VOXEL_LOSSES[loss]
    y = tf.constant(RNG.standard_normal((2, 3, 4, 2, 1)).astype("float32"))
    mu = tf.Variable(RNG.standard_normal((2, 3, 4, 2, 1)).astype("float32"))

    def gradients(scale: float):
        sigma = tf.Variable(tf.fill(y.shape, scale))
        with tf.GradientTape() as tape:
            value = tf.reduce_sum(variational(y, tf.concat([mu, sigma], axis=-1)))
        return tape.gradient(value, [mu, sigma])

    with tf.GradientTape() as tape:
        reference = tape.gradient(tf.reduce_sum(point(y, mu)), mu)
    tiny, unit = gradients(1e-3), gradients(1.0)
    # whatever the scale (a background voxel's shrinks towards 0), the mean's gradient is
    # the point loss's, up to the constant 1/2 of the Gaussian's square
    factor = 0.5 if loss == "mse" else 1.0
    for mean_gradient, _ in (tiny, unit):
        assert np.allclose(mean_gradient, factor * reference, atol=1e-5)
    # the scale still fits the residual: its gradient vanishes at sigma = |y - mu|
    residual = np.abs(np.asarray(y) - np.asarray(mu))
    sigma = tf.Variable(residual)
    with tf.GradientTape() as tape:
        value = tf.reduce_sum(variational(y, tf.concat([mu, sigma], axis=-1)))
    assert np.allclose(tape.gradient(value, sigma), 0, atol=1e-3)


def test_the_variational_scale_learns_without_training_the_shared_layers():
    import tensorflow as tf

    models = build_models(
        PRESETS["compact-variational"],
        eeg_shape=(12, 40, 4),
        grid=(12, 13, 8),
        **input_bins((12, 40, 4)),
    )
    x = tf.constant(RNG.standard_normal((2, 12, 40, 4, 1)).astype("float32"))
    weights = models.synthesis.trainable_weights
    with tf.GradientTape(persistent=True) as tape:
        out = models.synthesis(x, training=True)
        mean, scale = tf.reduce_sum(out[..., 0] ** 2), tf.reduce_sum(out[..., 1])

    def moved(value) -> set[str]:
        grads = tape.gradient(value, weights)
        return {
            w.path
            for w, g in zip(weights, grads, strict=True)
            if g is not None and float(tf.reduce_max(tf.abs(g))) > 0
        }

    by_scale, by_mean = moved(scale), moved(mean)
    assert by_scale and all(path.startswith("scale_decoder") for path in by_scale), by_scale
    assert "eeg_latent/kernel_mu" in by_mean and not by_mean & by_scale


def test_the_compact_presets_fit_the_squared_error_and_the_original_the_absolute():
    assert PRESETS["noddi-tafp"].loss == "mae"
    for name in ("compact", "compact-variational", "compact-plain"):
        assert PRESETS[name].loss == "mse"
    with pytest.raises(ValueError, match="loss"):
        dataclasses.replace(PRESETS["compact"], loss="huber").check()


def test_the_cli_knows_every_preset():
    from bids_eeg2fmri.config import PRESET_NAMES

    assert set(PRESET_NAMES) == set(PRESETS)


def _fit_small(optimizer, steps: int = 5) -> list[np.ndarray]:
    """Weights of a small dense model after a few Adam steps from a fixed start."""
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5), keras.layers.Dense(3)])
    model.compile(optimizer, "mse")
    x = RNG.standard_normal((8, 6)).astype("float32")
    y = RNG.standard_normal((8, 3)).astype("float32")
    for _ in range(steps):
        model.train_on_batch(x, y)
    return [np.asarray(w) for w in model.get_weights()]


@pytest.mark.parametrize(
    "options", [{}, {"weight_decay": 0.01, "clipnorm": 0.5}], ids=["plain", "decay-and-clip"]
)
def test_fused_adam_is_kerass_adam(monkeypatch, options):
    import tensorflow as tf

    from bids_eeg2fmri.models.optimizers import FusedAdam

    calls = []  # the fused kernel, seen when the training step is traced
    kernel = tf.raw_ops.ResourceApplyAdam
    monkeypatch.setattr(
        tf.raw_ops, "ResourceApplyAdam", lambda **kw: calls.append(1) or kernel(**kw)
    )
    # the same starting weights and batches; the two differ by float rounding only
    state = RNG.bit_generator.state
    ours = _fit_small(FusedAdam(0.01, **options))
    assert len(calls) >= 4  # once per variable: 2 kernels, 2 biases
    RNG.bit_generator.state = state
    reference = _fit_small(keras.optimizers.Adam(0.01, **options))
    RNG.bit_generator.state = state
    untrained = _fit_small(keras.optimizers.Adam(0.01), steps=0)
    for a, b, start in zip(ours, reference, untrained, strict=True):
        assert np.allclose(a, b, atol=1e-5)
        assert not np.allclose(a, start)  # it did train
    # AMSGrad is not fused: Keras's update runs instead
    calls.clear()
    assert all(np.isfinite(w).all() for w in _fit_small(FusedAdam(0.01, amsgrad=True)))
    assert not calls
    clone = keras.optimizers.deserialize(keras.optimizers.serialize(FusedAdam(0.02)))
    assert type(clone) is FusedAdam and np.isclose(float(clone.learning_rate), 0.02)

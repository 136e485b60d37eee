"""Layer-wise relevance propagation: each rule against its formula, conservation, the
bias shares, the whole synthesis models (every preset), the region and voxel maps, and a
planted signal."""

from __future__ import annotations

import dataclasses
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from conftest import input_bins  # noqa: E402
from keras import layers  # noqa: E402

from bids_eeg2fmri.explain import lrp  # noqa: E402
from bids_eeg2fmri.models import layers as L  # noqa: E402
from bids_eeg2fmri.models.synthesizer import PRESETS, build_models  # noqa: E402

#: The smallest uneven EEG shape the compact kernels fit (channels, freqs, windows), and a
#: grid larger than the compact DCT block (12, 12, 8) in two axes (spectral upsampling).
EEG, GRID = (12, 25, 3), (14, 13, 10)
#: Weights that act as biases (BatchNormalization's bias is beta - gamma mean / std).
BIASES = ("bias", "beta", "bias_mu", "moving_mean")


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def one_layer(layer, input_shape) -> keras.Model:
    """Input -> layer (first output) as a functional model."""
    inp = keras.Input(input_shape)
    out = layer(inp)
    return keras.Model(inp, out[0] if isinstance(out, list | tuple) else out)


def set_biases(model, scale: float = 0.0, seed: int = 0) -> None:
    """Every bias-like weight to 0 (scale 0) or to N(0, scale^2) values."""
    gen = rng(seed)
    for w in model.weights:
        if w.name in BIASES:
            w.assign((scale * gen.standard_normal(w.shape)).astype("float32"))


def stabilized(z, eps):
    return z + eps * np.where(z >= 0, 1.0, -1.0)


def total(a) -> np.ndarray:
    """Per-sample sum."""
    return np.asarray(a, np.float64).reshape(len(a), -1).sum(axis=1)


def outputs(model, x) -> np.ndarray:
    return np.asarray(model(x, training=False), np.float64)


@pytest.fixture(autouse=True)
def seeded():
    """Deterministic initial weights (the properties tested hold for any weights)."""
    keras.utils.set_random_seed(0)


@pytest.fixture(scope="module")
def compact():
    """The compact synthesis model with non-zero biases everywhere."""
    keras.utils.set_random_seed(0)
    model = build_models(PRESETS["compact"], eeg_shape=EEG, grid=GRID, **input_bins(EEG)).synthesis
    set_biases(model, 0.1)
    return model


@pytest.fixture(scope="module")
def eeg():
    return rng(1).standard_normal((5, *EEG)).astype("float32")


# ------------------------------------------------------------------ single rules


def test_dense_epsilon_rule_is_the_formula_and_a_linear_network_composes():
    x = rng().standard_normal((4, 7)).astype("float32")
    dense = layers.Dense(5, use_bias=False)
    model = one_layer(dense, (7,))
    w = np.asarray(dense.kernel, np.float64)
    r_out = rng(2).standard_normal((4, 5))
    z = x @ w
    expected = x[:, :, None] * w[None] * (r_out / stabilized(z, 1e-6))[:, None, :]
    got = lrp.propagate(model, x, r_out)
    np.testing.assert_allclose(got, expected.sum(-1), rtol=1e-4, atol=1e-5)
    # conservative up to what the stabilizer keeps: sum_j R_j z_j / (z_j + eps sign z_j)
    np.testing.assert_allclose(total(got), total(r_out * z / stabilized(z, 1e-6)), atol=1e-5)

    # two linear layers without bias: x_i (W1 W2)_ij R_j / z_j, as for their product
    inp = keras.Input((7,))
    first, second = layers.Dense(6, use_bias=False), layers.Dense(3, use_bias=False)
    model = keras.Model(inp, second(first(inp)))
    w = np.asarray(first.kernel, np.float64) @ np.asarray(second.kernel, np.float64)
    r_out = rng(3).standard_normal((4, 3))
    expected = x * ((r_out / (x @ w)) @ w.T)
    np.testing.assert_allclose(
        lrp.propagate(model, x, r_out, epsilon=1e-9), expected, rtol=1e-3, atol=1e-4
    )


@pytest.mark.parametrize("kind", ["dense", "conv3d"])
def test_affine_layers_absorb_exactly_their_bias_share(kind):
    if kind == "dense":
        layer, shape = layers.Dense(6), (9,)
    else:
        layer, shape = layers.Conv3D(3, (2, 3, 2), strides=(2, 1, 1)), (7, 6, 5, 2)
    model = one_layer(layer, shape)
    x = rng().standard_normal((3, *shape)).astype("float32")
    r_out = rng(1).uniform(0.5, 1.5, (3, *model.output_shape[1:]))
    # without bias: conservative
    got = lrp.propagate(model, x, r_out, epsilon=1e-9)
    np.testing.assert_allclose(total(got), total(r_out), rtol=1e-4)
    # with a bias: each output unit keeps b_j / z_j of its relevance
    layer.bias.assign(rng(2).standard_normal(layer.bias.shape).astype("float32"))
    z = outputs(model, x)
    kept = np.asarray(layer.bias, np.float64) / stabilized(z, 1e-6) * r_out
    got = lrp.propagate(model, x, r_out)
    np.testing.assert_allclose(total(got), total(r_out) - total(kept), rtol=1e-3, atol=1e-3)
    assert np.abs(total(kept)).min() > 1e-2  # the bias share is not negligible


def _rff_without_bias():
    rff = L.RandomFourierFeatures(6, seed=3)
    rff.build((None, 8))
    rff.bias.assign(np.zeros(6, "float32"))
    rff.norm.beta.assign(np.zeros(6, "float32"))
    rff.norm.gamma.assign(rng().uniform(0.5, 2.0, 6).astype("float32"))
    return rff


def _batch_norm_inference():
    bn = layers.BatchNormalization()
    bn.build((None, 5, 4, 3, 2))
    bn.gamma.assign(np.array([0.7, -1.3], "float32"))
    bn.moving_variance.assign(np.array([2.0, 0.5], "float32"))
    return bn


def _layer_norm():
    norm = layers.LayerNormalization(beta_initializer="zeros")
    norm.build((None, 3, 8))
    norm.gamma.assign(rng().uniform(-2.0, 2.0, 8).astype("float32"))
    return norm


# layers without bias: sum R_in = sum_j R_j z_j / (z_j + eps sign z_j) = sum R_out
CONSERVATIVE = {
    "inverse_dct": (lambda: L.InverseDCT3D((7, 6, 5)), (4, 3, 2, 1)),
    "dct": (lambda: L.DCT3D(), (5, 4, 3, 2)),
    "style_prior": (lambda: L.StylePrior(), (9,)),
    "fourier_features": (lambda: L.FourierFeatures(5), (4,)),
    "random_fourier_features": (_rff_without_bias, (8,)),
    "dense_variational": (lambda: L.DenseVariational(4, seed=0), (6,)),
    "batch_norm": (_batch_norm_inference, (5, 4, 3, 2)),
    "layer_norm": (_layer_norm, (3, 8)),
    "attention": (lambda: L.TopographicalAttention(), (5, 7)),
    "max_pool": (lambda: layers.MaxPooling3D((2, 2, 2), strides=1), (5, 4, 3, 2)),
    "max_pool_same": (lambda: layers.MaxPooling3D((2, 3, 2), padding="same"), (5, 4, 3, 2)),
}


@pytest.mark.parametrize("name", sorted(CONSERVATIVE))
def test_rules_without_bias_are_conservative(name):
    factory, shape = CONSERVATIVE[name]
    model = one_layer(factory(), shape)
    x = rng().standard_normal((3, *shape)).astype("float32")
    r_out = rng(1).uniform(0.5, 1.5, (3, *model.output_shape[1:]))
    got = lrp.propagate(model, x, r_out, epsilon=1e-9)
    assert got.shape == x.shape and np.isfinite(got).all()
    np.testing.assert_allclose(total(got), total(r_out), rtol=1e-4)


def test_layer_norm_bias_share_is_beta():
    norm = _layer_norm()
    model = one_layer(norm, (3, 8))
    beta = rng(2).standard_normal(8).astype("float32")
    norm.beta.assign(beta)
    x = rng().standard_normal((2, 3, 8)).astype("float32")
    z = outputs(model, x)  # R_out = z: every unit keeps beta_j
    got = lrp.propagate(model, x, z, epsilon=1e-9)
    np.testing.assert_allclose(total(got), total(z) - 3 * beta.sum(), rtol=1e-4, atol=1e-4)


def test_max_pooling_is_winner_take_all():
    x = rng().standard_normal((2, 6, 4, 3, 2)).astype("float32")
    model = one_layer(layers.MaxPooling3D((2, 2, 1)), (6, 4, 3, 2))
    r_out = rng(1).standard_normal((2, 3, 2, 3, 2))
    got = lrp.propagate(model, x, r_out)
    windows = (
        got.reshape(2, 3, 2, 2, 2, 3, 2).transpose(0, 1, 3, 5, 6, 2, 4).reshape(2, 3, 2, 3, 2, 4)
    )
    values = x.reshape(2, 3, 2, 2, 2, 3, 2).transpose(0, 1, 3, 5, 6, 2, 4).reshape(2, 3, 2, 3, 2, 4)
    winner = values.argmax(-1)[..., None]
    np.testing.assert_allclose(np.take_along_axis(windows, winner, -1)[..., 0], r_out, rtol=1e-6)
    assert np.count_nonzero(windows) == r_out.size  # nothing to the losers
    # exact ties (all zeros): each window's relevance split equally, nothing doubled
    ties = lrp.propagate(model, np.zeros_like(x), r_out)
    np.testing.assert_allclose(ties.reshape(2, 3, 2, 2, 2, 3, 2).sum((2, 4)), r_out, rtol=1e-6)
    np.testing.assert_allclose(ties[:, ::2, ::2], r_out / 4, rtol=1e-6)


def test_add_splits_relevance_by_branch_contribution():
    # y = x + x W: the identity branch gets x_j, the dense branch (x W)_j, so
    # R_in = x (1 + W 1); giving each branch the whole R (the original) would double it
    inp = keras.Input((6,))
    dense = layers.Dense(6, use_bias=False)
    model = keras.Model(inp, layers.Add()([inp, dense(inp)]))
    x = rng().standard_normal((4, 6)).astype("float32")
    got = lrp.propagate(model, x, outputs(model, x), epsilon=1e-9)
    expected = x * (1.0 + np.asarray(dense.kernel).sum(axis=1))
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)


def test_attention_treats_the_weights_as_constant():
    layer = L.TopographicalAttention()
    model = one_layer(layer, (5, 7))
    x = rng().standard_normal((3, 5, 7)).astype("float32")
    out, graph = (np.asarray(t, np.float64) for t in layer(x))
    r_out = rng(1).standard_normal(out.shape)
    expected = x * np.einsum("bij,bif->bjf", graph, r_out / stabilized(out, 1e-6))
    np.testing.assert_allclose(lrp.propagate(model, x, r_out), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("projection", [True, False])
def test_resblock_conserves_and_its_bias_keeps_its_share(projection):
    shape = (7, 8, 5, 2)
    if projection:
        block = L.ResBlock3D(3, (2, 3, 2), (1, 1, 1), (2, 2, 1), (1, 1, 1), projection=True)
    else:
        block = L.ResBlock3D(2, projection=False)
    model = one_layer(block, shape)
    gen = rng(4)
    for w in block.weights:  # inference-mode BatchNorms that are not identities
        if w.name in ("gamma", "moving_variance"):
            w.assign(gen.uniform(0.5, 2.0, w.shape).astype("float32"))
    set_biases(model, 0.0)
    x = rng().standard_normal((3, *shape)).astype("float32")
    y = outputs(model, x)
    got = lrp.propagate(model, x, y, epsilon=1e-9)
    np.testing.assert_allclose(total(got), total(y), rtol=1e-4)

    # a bias c in the BatchNorm before the residual sum: with R_out = y, each unit where the
    # sum is positive (and, on the left branch, its ReLU is on) keeps exactly c
    bn = block.right_bn if projection else block.mid_bn
    c = gen.standard_normal(bn.beta.shape).astype("float32")
    bn.beta.assign(c)
    y = outputs(model, x)
    on = y > 0
    if not projection:
        left = block.left_bn(block.left_conv(x), training=False)
        left = block.mid_bn(block.mid_conv(tf.nn.relu(left)), training=False)
        on &= np.asarray(left) > 0
    kept = total(on * c)
    got = lrp.propagate(model, x, y, epsilon=1e-9)
    np.testing.assert_allclose(total(got), total(y) - kept, rtol=1e-4, atol=1e-3)
    assert np.abs(kept).min() > 0.1


def test_zplus_relevance_is_nonnegative_for_nonnegative_inputs():
    inp = keras.Input((6, 7, 5, 1))
    h = layers.Conv3D(3, 2, activation="relu")(inp)
    h = layers.MaxPooling3D(2)(layers.Conv3D(4, 2)(h))
    out = layers.Dense(4)(layers.Flatten()(layers.Activation("relu")(h)))
    model = keras.Model(inp, out)
    set_biases(model, 0.5)
    x = np.abs(rng().standard_normal((3, 6, 7, 5, 1))).astype("float32")
    r_out = rng(1).uniform(0.1, 1.0, (3, 4))
    got = lrp.propagate(model, x, r_out, rule="zplus")
    assert (got >= 0).all() and got.sum() > 0
    assert (lrp.propagate(model, x, r_out) < 0).any()  # the epsilon rule is signed


# ------------------------------------------------------------------ whole models


def test_lrp0_is_gradient_times_input_in_a_relu_network_without_bias():
    """Without biases, attention or Fourier features, the compact network is piecewise
    linear and positively homogeneous: LRP-0 must equal gradient x input exactly."""
    arch = dataclasses.replace(
        PRESETS["compact"], topographical_attention=False, fourier=None, style=None
    )
    model = build_models(arch, eeg_shape=EEG, grid=GRID, **input_bins(EEG)).synthesis
    gen = rng(5)
    for w in model.weights:
        if w.name in ("gamma", "moving_variance"):
            w.assign(gen.uniform(0.5, 2.0, w.shape).astype("float32"))
    set_biases(model, 0.0)
    x = gen.standard_normal((3, *EEG)).astype("float32")
    weights = gen.uniform(size=GRID).astype("float32")
    got = lrp.relevance(model, x, output_weights=weights, epsilon=1e-9)
    inputs = tf.constant(x[..., None])
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        score = tf.reduce_sum(model(inputs, training=False)[..., 0] * weights)
    expected = (tape.gradient(score, inputs) * inputs).numpy()[..., 0]
    np.testing.assert_allclose(got, expected, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_conserves_relevance_without_biases(preset):
    arch = PRESETS[preset]
    if preset.startswith("compact"):
        eeg_shape, grid = EEG, GRID
    else:  # the original kernels need >= 34 channels and 82 frequencies; the fMRI
        # encoder (not part of the synthesis model) would need a 52 x 58 x 24 grid
        eeg_shape, grid = (34, 82, 3), (9, 8, 7)
        compact = PRESETS["compact"]
        arch = dataclasses.replace(
            arch, fmri_blocks=compact.fmri_blocks, fmri_pool=compact.fmri_pool
        )
    model = build_models(arch, eeg_shape=eeg_shape, grid=grid, **input_bins(eeg_shape)).synthesis
    set_biases(model, 0.0)
    x = rng().standard_normal((4, *eeg_shape)).astype("float32")
    r = lrp.relevance(model, x, epsilon=1e-9)
    assert r.shape == (4, *eeg_shape) and r.dtype == np.float32 and np.isfinite(r).all()
    # sum R_in = sum R_out up to float32 rounding. The sum of the signed relevances can be
    # much smaller than the relevances (positive and negative parts cancel), so the
    # discrepancy is measured against sum |R_in|, the scale at which rounding acts.
    check = lrp.conservation(model, x, epsilon=1e-9)
    np.testing.assert_allclose(check["input"], total(r), rtol=1e-5)
    scale = np.abs(r).reshape(len(x), -1).sum(axis=1)
    # Except where the untrained network's EEG features are all 0 (every ReLU off, likely
    # with the original kernels at these small shapes: a 1 x 1 x 1 x 4 feature map): the
    # output is then a constant (cos(0) = 1 for the Fourier features) that owes nothing to
    # the input, and the input relevance must be exactly 0.
    features = keras.Model(model.input, model.get_layer("eeg_features").output)
    alive = np.abs(np.asarray(features(x[..., None]))).sum(axis=1) > 0
    assert alive.sum() >= 2
    assert (np.abs(check["absorbed"][alive]) < 1e-4 * scale[alive]).all(), (check, scale)
    assert (r[~alive] == 0).all()
    assert np.isfinite(lrp.relevance(model, x, rule="zplus")).all()


def test_conservation_reports_what_the_biases_absorbed(compact, eeg):
    check = lrp.conservation(compact, eeg)
    y = outputs(compact, eeg[..., None])[..., 0]
    np.testing.assert_allclose(check["output"], total(y), rtol=1e-5)
    np.testing.assert_allclose(check["input"], total(lrp.relevance(compact, eeg)), rtol=1e-5)
    np.testing.assert_allclose(check["ratio"], check["input"] / check["output"])
    assert np.abs(check["absorbed"]).max() > 1e-3  # random biases do absorb


def test_region_relevance_is_additive_and_the_whole_volume_is_relevance(compact, eeg):
    region = (rng(2).uniform(size=GRID) > 0.6).astype("float32")
    regions = np.stack([np.ones(GRID, "float32"), region, 1.0 - region])
    got = lrp.region_relevance(compact, eeg, regions, batch_size=2)
    assert got.shape == (5, 3, *EEG) and got.dtype == np.float32
    whole = lrp.relevance(compact, eeg)
    scale = np.abs(whole).max()
    # float32 sums in another order (batched regions): 2e-5 of the scale on an AVX2 CPU
    np.testing.assert_allclose(got[:, 0], whole, atol=1e-4 * scale)
    np.testing.assert_allclose(got[:, 1] + got[:, 2], whole, atol=1e-4 * scale)
    weighted = lrp.relevance(compact, eeg, output_weights=region)
    np.testing.assert_allclose(got[:, 1], weighted, atol=1e-4 * scale)


def test_voxel_band_relevance_adds_up_to_bands_regions_and_single_voxels(compact, eeg):
    bands = np.zeros((3, EEG[1]), bool)
    bands[0, :4], bands[1, 4:11], bands[2, 11:20] = True, True, True  # 20-24 left out
    got = lrp.voxel_band_relevance(compact, eeg, bands, batch_size=3)
    assert got.shape == (5, *GRID, 3) and got.dtype == np.float32

    def band_sums(r):  # (N, ..., C, F, W) -> (N, ..., bands)
        return np.stack([r[..., b, :].sum(axis=(-1, -2, -3)) for b in bands], axis=-1)

    whole = band_sums(lrp.relevance(compact, eeg))
    np.testing.assert_allclose(got.sum(axis=(1, 2, 3)), whole, atol=1e-4 * np.abs(whole).max())
    region = np.zeros(GRID, "float32")
    region[2:9, 3:7, 1:5] = 1
    expected = band_sums(lrp.region_relevance(compact, eeg, region[None])[:, 0])
    np.testing.assert_allclose(
        got[:, 2:9, 3:7, 1:5].sum(axis=(1, 2, 3)), expected, atol=1e-4 * np.abs(expected).max()
    )
    voxel = np.zeros(GRID, "float32")
    voxel[5, 0, 9] = 1  # the definition: R_out = y_hat at this voxel only
    single = band_sums(lrp.relevance(compact, eeg, output_weights=voxel))
    np.testing.assert_allclose(got[:, 5, 0, 9], single, atol=1e-4 * np.abs(single).max())


def test_variational_models_explain_the_mean_channel():
    model = build_models(
        PRESETS["compact-variational"], eeg_shape=EEG, grid=GRID, **input_bins(EEG)
    ).synthesis
    set_biases(model, 0.0)
    x = rng().standard_normal((2, *EEG)).astype("float32")
    check = lrp.conservation(model, x, epsilon=1e-9)
    mean = outputs(model, x[..., None])[..., 0]
    np.testing.assert_allclose(check["output"], total(mean), rtol=1e-5)
    bands = np.ones((1, EEG[1]), bool)
    voxels = lrp.voxel_band_relevance(model, x, bands, epsilon=1e-9)
    np.testing.assert_allclose(voxels.sum(axis=(1, 2, 3, 4)), check["input"], rtol=1e-3)


def test_planted_signal_ranks_its_channel_and_frequencies_first():
    """A model trained (1-2 s) on synthetic data in which region A copies channel 0 at
    frequency bins 2-3 and region B channel 5 at bins 8-9; everything else is noise."""
    channels, freqs, windows, grid = 7, 12, 3, (6, 5, 4)
    x = np.abs(rng().standard_normal((768, channels, freqs, windows))).astype("float32")
    a = x[:, 0, 2:4].mean(axis=(1, 2))
    b = x[:, 5, 8:10].mean(axis=(1, 2))
    target = np.zeros((len(x), *grid, 1), "float32")
    target[:, :3, :, :2, 0] = 2 * a[:, None, None, None]
    target[:, 3:, :, 2:, 0] = 2 * b[:, None, None, None]
    inp = keras.Input((channels, freqs, windows, 1))
    h = layers.Conv3D(4, (1, 3, 1), padding="same", activation="relu")(inp)
    h = layers.Dense(32, activation="relu")(layers.Flatten()(h))
    out = layers.Reshape((*grid, 1))(layers.Dense(int(np.prod(grid)))(h))
    model = keras.Model(inp, out)
    model.compile(keras.optimizers.Adam(3e-3), "mse")
    model.fit(x[:640, ..., None], target[:640], epochs=30, batch_size=64, verbose=0)
    held_out = x[640:672]
    fit = np.corrcoef(
        model.predict(held_out[..., None], verbose=0)[:, :3, :, :2].mean((1, 2, 3, 4)), a[640:672]
    )[0, 1]
    assert fit > 0.8  # the model has learnt the planted relation

    regions = np.zeros((2, *grid), "float32")
    regions[0, :3, :, :2], regions[1, 3:, :, 2:] = 1, 1
    got = np.abs(lrp.region_relevance(model, held_out, regions)).mean(axis=0)
    for region, channel, bins in ((0, 0, {2, 3}), (1, 5, {8, 9})):
        per_channel = got[region].sum(axis=(1, 2))
        per_freq = got[region].sum(axis=(0, 2))
        assert per_channel.argmax() == channel
        assert set(np.argsort(-per_freq)[:2].tolist()) == bins
        assert set(np.argsort(-got[region, channel].sum(axis=1))[:2].tolist()) == bins


def test_attention_graph(compact, eeg):
    graph = lrp.attention_graph(compact, eeg, batch_size=2)
    assert graph.shape == (5, EEG[0], EEG[0]) and graph.dtype == np.float32
    np.testing.assert_allclose(graph.sum(axis=-1), 1.0, atol=1e-5)
    inp = keras.Input((*EEG, 1))
    plain = keras.Model(inp, layers.Identity()(inp))
    assert lrp.attention_graph(plain, eeg) is None


def test_a_saved_model_gives_the_same_relevance(compact, eeg, tmp_path):
    path = tmp_path / "model.keras"
    compact.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(
        lrp.relevance(loaded, eeg[:2]), lrp.relevance(compact, eeg[:2]), rtol=1e-5, atol=1e-6
    )


def test_errors_say_what_is_wrong(compact, eeg):
    inp = keras.Input((4, 4, 4, 1))
    upsampling = keras.Model(inp, layers.UpSampling3D(name="grow")(inp))
    with pytest.raises(ValueError, match=r"'grow' \(UpSampling3D\)"):
        lrp.propagate(upsampling, np.zeros((1, 4, 4, 4, 1)), np.zeros((1, 8, 8, 8, 1)))
    with pytest.raises(ValueError, match="rule"):
        lrp.relevance(compact, eeg, rule="alphabeta")
    with pytest.raises(ValueError, match=r"eeg: expected an array \(N, 12, 25, 3\)"):
        lrp.relevance(compact, eeg[:, :, :20])
    with pytest.raises(ValueError, match="regions"):
        lrp.region_relevance(compact, eeg, np.ones((2, 3, 3, 3)))
    with pytest.raises(ValueError, match="band_masks"):
        lrp.voxel_band_relevance(compact, eeg, np.ones((2, 7), bool))
    built = build_models(PRESETS["compact"], eeg_shape=EEG, grid=GRID, **input_bins(EEG))
    with pytest.raises(ValueError, match="training model"):
        lrp.relevance(built.training, eeg)
    assert lrp.relevance(built, eeg[:1]).shape == (1, *EEG)  # BuiltModels: its synthesis


# ------------------------------------------------------------------ with a reference


def test_reference_rule_is_the_epsilon_rule_on_differences_and_biases_cancel():
    dense = layers.Dense(5)
    model = one_layer(dense, (7,))
    dense.bias.assign(rng(4).standard_normal(5).astype("float32"))
    x, x0 = rng().standard_normal((2, 4, 7)).astype("float32")
    w = np.asarray(dense.kernel, np.float64)
    r_out = rng(2).standard_normal((4, 5))
    dx = (x - x0).astype(np.float64)
    dz = dx @ w  # the bias cancels
    expected = (dx[:, :, None] * w[None] * (r_out / stabilized(dz, 1e-6))[:, None, :]).sum(-1)
    got = lrp.propagate(model, x, r_out, reference=x0)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(total(got), total(r_out * dz / stabilized(dz, 1e-6)), atol=1e-5)
    # two affine layers with biases: dx_i (W1 W2)_ij R_j / dz_j, as for their product
    inp = keras.Input((7,))
    first, second = layers.Dense(6), layers.Dense(3)
    model = keras.Model(inp, second(first(inp)))
    set_biases(model, 1.0)
    w = np.asarray(first.kernel, np.float64) @ np.asarray(second.kernel, np.float64)
    r_out = rng(3).standard_normal((4, 3))
    expected = dx * ((r_out / (dx @ w)) @ w.T)
    got = lrp.propagate(model, x, r_out, reference=x0, epsilon=1e-9)
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)
    # the reference itself has nothing to explain
    np.testing.assert_array_equal(lrp.propagate(model, x, r_out, reference=x), 0.0)


def _multiply_model(shape):
    inp = keras.Input(shape)
    signal, gate = layers.Dense(5)(inp), layers.Dense(5, activation="sigmoid")(inp)
    return keras.Model(inp, layers.Multiply()([signal, gate]))


def _attention_graph_model(shape):
    """The attention's output and its flattened graph, concatenated: both get relevance."""
    inp = keras.Input(shape)
    out, graph = L.TopographicalAttention()(inp)
    flat = layers.Concatenate()([layers.Flatten()(out), layers.Flatten()(graph)])
    return keras.Model(inp, flat)


def _resblock_model(shape):
    block = L.ResBlock3D(3, (2, 3, 2), (1, 1, 1), (2, 2, 1), (1, 1, 1), projection=True)
    return one_layer(block, shape)


# with a reference, biases cancel: these are conservative with their biases
REFERENCE_CONSERVATIVE = {
    "dense": (lambda s: one_layer(layers.Dense(6, activation="relu"), s), (9,)),
    "conv3d": (
        lambda s: one_layer(layers.Conv3D(3, (2, 3, 2), strides=(2, 1, 1)), s),
        (7, 6, 5, 2),
    ),
    "batch_norm": (lambda s: one_layer(_batch_norm_inference(), s), (5, 4, 3, 2)),
    "layer_norm": (lambda s: one_layer(_layer_norm(), s), (3, 8)),
    "random_fourier_features": (lambda s: one_layer(L.RandomFourierFeatures(6, seed=3), s), (8,)),
    "fourier_features": (lambda s: one_layer(L.FourierFeatures(5), s), (4,)),
    "max_pool": (lambda s: one_layer(layers.MaxPooling3D((2, 2, 2), strides=1), s), (5, 4, 3, 2)),
    "max_pool_same": (
        lambda s: one_layer(layers.MaxPooling3D((2, 3, 2), padding="same"), s),
        (5, 4, 3, 2),
    ),
    "resblock": (_resblock_model, (7, 8, 5, 2)),
    "multiply": (_multiply_model, (6,)),
    "attention": (lambda s: one_layer(L.TopographicalAttention(), s), (5, 7)),
    "attention_and_graph": (_attention_graph_model, (5, 7)),
}


@pytest.mark.parametrize("name", sorted(REFERENCE_CONSERVATIVE))
def test_reference_rules_are_conservative_with_biases(name):
    factory, shape = REFERENCE_CONSERVATIVE[name]
    model = factory(shape)
    set_biases(model, 0.5)
    x = rng().standard_normal((3, *shape)).astype("float32")
    x0 = rng(2).standard_normal(shape).astype("float32")  # one reference for all samples
    dy = outputs(model, x) - outputs(model, np.broadcast_to(x0, x.shape))
    r_out = dy * rng(1).uniform(0.5, 1.5, dy.shape)
    got = lrp.propagate(model, x, r_out, reference=x0, epsilon=1e-9)
    assert got.shape == x.shape and np.isfinite(got).all()
    scale = np.abs(got).reshape(len(x), -1).sum(axis=1)
    np.testing.assert_allclose(total(got), total(r_out), atol=1e-4 * scale.max())


def test_max_pooling_with_a_reference_splits_between_both_maxima():
    model = one_layer(layers.MaxPooling1D(2), (2, 1))
    r = np.ones((1, 1, 1))
    # the same maximum (index 0): all of the window's relevance to it
    got = lrp.propagate(
        model, np.array([[[3.0], [1.0]]]), r, reference=np.array([[2.0], [0.0]]), epsilon=1e-9
    )
    np.testing.assert_allclose(got[0, :, 0], [1.0, 0.0], atol=1e-6)
    # x's maximum at 0 (dx 3), x_ref's at 1 (dx -1), dy = 3 - 2 = 1 = t 3 + (1 - t) (-1):
    # t = 1/2, R = (1/2 3, 1/2 (-1)) / dy
    got = lrp.propagate(
        model, np.array([[[3.0], [1.0]]]), r, reference=np.array([[0.0], [2.0]]), epsilon=1e-9
    )
    np.testing.assert_allclose(got[0, :, 0], [1.5, -0.5], atol=1e-6)


def test_attention_with_a_zero_reference_is_the_plain_rule():
    # out(0) = 0: the difference of the outputs is the output, W dx = W x
    model = one_layer(L.TopographicalAttention(), (5, 7))
    x = rng().standard_normal((3, 5, 7)).astype("float32")
    r_out = rng(1).standard_normal((3, 5, 7))
    np.testing.assert_allclose(
        lrp.propagate(model, x, r_out, reference="zero"),
        lrp.propagate(model, x, r_out),
        rtol=1e-5,
        atol=1e-6,
    )


def test_gate_with_a_reference_shares_between_signal_and_gate():
    # z = h g: R_h = g dh R / dz, R_g = h_ref dg R / dz, summed over the units of each input
    inp = keras.Input((4,))
    h, g = layers.Dense(3, name="h")(inp), layers.Dense(3, name="g")(inp)
    model = keras.Model(inp, layers.Multiply()([h, g]))
    set_biases(model, 1.0)
    x, x0 = rng().standard_normal((2, 2, 4)).astype("float32")
    y, y0 = outputs(model, x), outputs(model, x0)
    got = lrp.propagate(model, x, y - y0, reference=x0, epsilon=1e-9)
    w_h = np.asarray(model.get_layer("h").kernel, np.float64)
    w_g = np.asarray(model.get_layer("g").kernel, np.float64)
    b_h = np.asarray(model.get_layer("h").bias, np.float64)
    dx = (x - x0).astype(np.float64)
    dh, dg = dx @ w_h, dx @ w_g
    g_x = x @ w_g + np.asarray(model.get_layer("g").bias)
    h_ref = x0 @ w_h + b_h
    expected = dx * (g_x @ w_h.T) + dx * (h_ref @ w_g.T)  # (R / dz = 1)
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)
    assert np.abs(dg).max() > 0.1 and np.abs(dh).max() > 0.1


@pytest.mark.parametrize("preset", ["plain", "fourier", "compact"])
def test_models_with_a_reference_conserve_relevance_with_biases(preset):
    """Biases, LayerNorm beta, attention and gate: with a reference nothing is absorbed
    (observed |absorbed| / sum |R_in|: < 1e-6 plain, ~1e-5 fourier and compact; bound 1e-4),
    while the plain rules absorb a large share (7-28 %, and more than sum |R_in| for
    compact)."""
    arch = PRESETS[preset]
    if preset == "compact":
        eeg_shape, grid = EEG, GRID
    else:  # as in test_every_preset_conserves_relevance_without_biases
        eeg_shape, grid = (34, 82, 3), (9, 8, 7)
        compact = PRESETS["compact"]
        arch = dataclasses.replace(
            arch, fmri_blocks=compact.fmri_blocks, fmri_pool=compact.fmri_pool
        )
    model = build_models(arch, eeg_shape=eeg_shape, grid=grid, **input_bins(eeg_shape)).synthesis
    set_biases(model, 0.3)
    x = rng().standard_normal((3, *eeg_shape)).astype("float32")
    y = outputs(model, x[..., None])[..., 0]
    for reference in ("zero", 0.5 * rng(2).standard_normal(eeg_shape).astype("float32")):
        check = lrp.conservation(model, x, reference=reference)
        x0 = np.zeros_like(x) if isinstance(reference, str) else np.broadcast_to(reference, x.shape)
        y0 = outputs(model, x0[..., None])[..., 0]
        np.testing.assert_allclose(check["output"], total(y - y0), rtol=1e-4, atol=1e-6)
        assert (check["scale"] > 0).all()
        assert (np.abs(check["absorbed"]) < 1e-4 * check["scale"]).all(), check
    plain = lrp.conservation(model, x)
    assert (np.abs(plain["absorbed"]) > 1e-2 * plain["scale"]).any()  # biases do absorb


def test_region_and_voxel_maps_with_a_reference_add_up(compact, eeg):
    reference = 0.3 * rng(3).standard_normal(EEG).astype("float32")
    region = (rng(2).uniform(size=GRID) > 0.6).astype("float32")
    regions = np.stack([np.ones(GRID, "float32"), region, 1.0 - region])
    got = lrp.region_relevance(compact, eeg, regions, batch_size=2, reference=reference)
    whole = lrp.relevance(compact, eeg, reference=reference)
    scale = np.abs(whole).max()
    # float32 sums in another order (batched regions): 2e-5 of the scale on an AVX2 CPU
    np.testing.assert_allclose(got[:, 0], whole, atol=1e-4 * scale)
    np.testing.assert_allclose(got[:, 1] + got[:, 2], whole, atol=1e-4 * scale)
    weighted = lrp.relevance(compact, eeg, output_weights=region, reference=reference)
    np.testing.assert_allclose(got[:, 1], weighted, atol=1e-4 * scale)

    bands = np.zeros((2, EEG[1]), bool)
    bands[0, :6], bands[1, 6:20] = True, True
    voxels = lrp.voxel_band_relevance(compact, eeg, bands, batch_size=3, reference=reference)
    expected = np.stack([whole[..., b, :].sum(axis=(1, 2, 3)) for b in bands], axis=-1)
    np.testing.assert_allclose(
        voxels.sum(axis=(1, 2, 3)), expected, atol=1e-4 * np.abs(expected).max()
    )
    in_region = np.stack([got[:, 1][..., b, :].sum(axis=(1, 2, 3)) for b in bands], axis=-1)
    np.testing.assert_allclose(
        (voxels * region[None, ..., None]).sum(axis=(1, 2, 3)),
        in_region,
        atol=1e-4 * np.abs(in_region).max(),
    )


def test_aligned_relevance_is_signed_by_the_explained_output(compact, eeg):
    region = (rng(2).uniform(size=GRID) > 0.6).astype("float32")
    regions = np.stack([np.ones(GRID, "float32"), region])
    y = outputs(compact, eeg[..., None])[..., 0]
    change = y - outputs(compact, np.zeros_like(eeg[..., None]))[..., 0]  # (N, X, Y, Z)
    plain = lrp.region_relevance(compact, eeg, regions, reference="zero")
    got = lrp.region_relevance(compact, eeg, regions, reference="zero", aligned=True)
    for k, weights in enumerate(regions):
        moved = total(change * weights)
        assert (np.sign(moved) != np.sign(moved[0])).any()  # both directions among samples
        assert np.abs(moved).min() > 1e-2 * np.abs(moved).max()  # no sign left to rounding
        sign = np.sign(moved)[:, None, None, None]
        np.testing.assert_allclose(got[:, k], plain[:, k] * sign, rtol=1e-6, atol=1e-9)
        # conservation: the aligned relevance adds up to the size of the output change
        scale = total(np.abs(got[:, k])).max()
        np.testing.assert_allclose(total(got[:, k]), np.abs(moved), atol=1e-4 * scale)
    np.testing.assert_allclose(
        lrp.relevance(compact, eeg, reference="zero", aligned=True), got[:, 0], rtol=1e-5, atol=1e-6
    )

    bands = np.zeros((2, EEG[1]), bool)
    bands[0, :6], bands[1, 6:] = True, True
    voxels = lrp.voxel_band_relevance(compact, eeg, bands, reference="zero")
    aligned = lrp.voxel_band_relevance(compact, eeg, bands, reference="zero", aligned=True)
    np.testing.assert_allclose(aligned, voxels * np.sign(change)[..., None], rtol=1e-5, atol=1e-7)
    scale = np.abs(change).max()
    np.testing.assert_allclose(aligned.sum(axis=-1), np.abs(change), atol=1e-3 * scale)


@pytest.mark.parametrize("reference", [None, "zero", "per-sample"])
def test_relevance_maps_are_both_maps_from_one_walk(compact, eeg, reference):
    if reference == "per-sample":
        reference = 0.3 * rng(5).standard_normal(eeg.shape).astype("float32")
    region = (rng(2).uniform(size=GRID) > 0.6).astype("float32")
    regions = np.stack([np.ones(GRID, "float32"), region])
    bands = np.zeros((3, EEG[1]), bool)
    bands[0, :6], bands[1, 6:20], bands[2, 3:9] = True, True, True
    kw = dict(reference=reference, aligned=True, batch_size=2)
    got_regions, got_voxels = lrp.relevance_maps(compact, eeg, regions, bands, **kw)
    expected = lrp.region_relevance(compact, eeg, regions, **kw)
    np.testing.assert_allclose(got_regions, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())
    expected = lrp.voxel_band_relevance(compact, eeg, bands, **kw)
    np.testing.assert_allclose(got_voxels, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())
    with pytest.raises(ValueError, match="band_masks"):
        lrp.relevance_maps(compact, eeg, regions, np.ones((2, 7), bool))
    with pytest.raises(ValueError, match="regions"):
        lrp.relevance_maps(compact, eeg, regions[:, :3], bands)


def test_reference_shapes_and_errors(compact, eeg):
    expected = lrp.relevance(compact, eeg, reference="zero")
    for zeros in (np.zeros(EEG), np.zeros((1, *EEG)), np.zeros((1, *EEG, 1))):
        np.testing.assert_array_equal(lrp.relevance(compact, eeg, reference=zeros), expected)
    # one reference per sample: its forward pass per batch, not once (float32 rounding only)
    np.testing.assert_allclose(
        lrp.relevance(compact, eeg, reference=np.zeros(eeg.shape)),
        expected,
        atol=2e-3 * np.abs(expected).max(),
    )
    per_sample = rng(4).standard_normal(eeg.shape).astype("float32")
    np.testing.assert_allclose(
        lrp.relevance(compact, eeg[1:3], reference=per_sample[1:3]),
        lrp.relevance(compact, eeg, reference=per_sample, batch_size=2)[1:3],
        rtol=1e-5,
        atol=1e-6,
    )
    assert (lrp.relevance(compact, eeg, reference=eeg) == 0).all()  # nothing to explain
    with pytest.raises(ValueError, match="reference"):
        lrp.relevance(compact, eeg, reference=np.zeros((3, 4)))
    with pytest.raises(ValueError, match="reference"):
        lrp.relevance(compact, eeg, reference="mean")
    assert (expected != lrp.relevance(compact, eeg)).any()  # None: the plain rules
    relu = keras.Sequential(
        [keras.Input((6,)), layers.Dense(5, activation="relu"), layers.Dense(3)]
    )
    set_biases(relu, 0.5)
    x = rng().standard_normal((4, 6)).astype("float32")
    got = lrp.propagate(relu, x, np.ones((4, 3)), rule="zplus", reference=np.ones(6))
    assert (got >= 0).all() and got.sum() > 0  # z+ on differences: non-negative


def test_planted_signal_on_the_compact_preset_with_a_zero_reference():
    """The default compact model (attention, random Fourier features, style gate), trained
    briefly on z-scored synthetic EEG in which region A's BOLD follows channel 3 at bins 4-7
    and region B's channel 8 at bins 14-17: with ``reference="zero"`` LRP ranks each
    source's channel and bins first for its region. (The plain epsilon rules do not; with
    20 training seeds the reference maps always did, the planted channel's total |R| at
    least 4 times the next channel's.)

    |R| is summed over samples and the other axes: the signed relevance of a sample sums
    to its region's output difference, whose sign varies from sample to sample, so signed
    sums over samples would cancel."""
    channels, freqs, windows, grid = 12, 25, 3, (6, 6, 6)
    plants = ((0, 3, [4, 5, 6, 7]), (1, 8, [14, 15, 16, 17]))  # (region, channel, bins)
    x = rng(7).standard_normal((1024 + 32, channels, freqs, windows)).astype("float32")
    regions = np.zeros((2, *grid), "float32")
    regions[0, :3], regions[1, 3:] = 1, 1
    target = np.zeros((len(x), *grid, 1), "float32")
    for region, channel, bins in plants:
        source = 2 * x[:, channel, bins].mean(axis=(1, 2))
        target[..., 0] += regions[region] * source[:, None, None, None]
    model = build_models(
        PRESETS["compact"],
        eeg_shape=(channels, freqs, windows),
        grid=grid,
        **input_bins((channels, freqs, windows)),
    )
    model = model.synthesis
    model.compile(keras.optimizers.Adam(1e-2), "mse")
    model.fit(x[:1024, ..., None], target[:1024], epochs=6, batch_size=64, verbose=0)
    held_out, truth = x[1024:], target[1024:, ..., 0]
    predicted = outputs(model, held_out[..., None])[..., 0]
    for region in regions.astype(bool):
        fit = np.corrcoef(predicted[:, region].mean(axis=1), truth[:, region].mean(axis=1))
        assert fit[0, 1] > 0.7  # the model has learnt the planted relation

    got = np.abs(lrp.region_relevance(model, held_out, regions, reference="zero")).sum(axis=0)
    for region, channel, bins in plants:
        per_channel = got[region].sum(axis=(1, 2))
        per_freq = got[region].sum(axis=(0, 2))
        assert per_channel.argmax() == channel
        assert set(np.argsort(-per_freq)[: len(bins)].tolist()) == set(bins)
        assert per_channel[channel] > 2 * np.delete(per_channel, channel).max()

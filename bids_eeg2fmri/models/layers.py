"""Keras 3 layers of the EEG-to-fMRI synthesizer.

Each layer is registered under the ``bids_eeg2fmri`` package name and has a complete
``get_config``, so models save to and load from ``.keras`` files (in safe mode).
Formulas follow Calhas & Henriques (2022) and the original package, without its bugs
(see the notes in each docstring).
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import layers, ops

PACKAGE = "bids_eeg2fmri"


@keras.saving.register_keras_serializable(package=PACKAGE)
class TopographicalAttention(layers.Layer):
    """Channel self-attention over EEG channels.

    For ``x`` of shape (batch, channels, features) and a learned ``A`` (channels, features):
    ``c[b, i, j] = sum_f x[b, i, f] A[j, f]``, ``W = softmax(c, axis=-1)`` and the output is
    ``W @ x``: each channel becomes a convex combination of all channels. Returns
    ``[W @ x, W]``; ``W`` (channels x channels) is the attention graph.
    """

    def build(self, input_shape):
        _, channels, features = input_shape
        self.attention = self.add_weight(
            name="attention", shape=(channels, features), initializer="glorot_uniform"
        )

    def call(self, x):
        scores = ops.einsum("bif,jf->bij", x, self.attention)
        graph = ops.softmax(scores, axis=-1)
        return [ops.matmul(graph, x), graph]

    def compute_output_shape(self, input_shape):
        batch, channels, features = input_shape
        return [(batch, channels, features), (batch, channels, channels)]


@keras.saving.register_keras_serializable(package=PACKAGE)
class ResBlock3D(layers.Layer):
    """Residual block of 3-D convolutions.

    ``projection=True`` (the original's block): two branches from the same input,
    ``left = ReLU(BN(conv3(ReLU(BN(pool(conv_k(x)))))))`` and
    ``right = BN(pool(conv_k(x)))`` with separate weights; output ``ReLU(left + right)``.
    ``projection=False``: a true identity skip, ``ReLU(x + BN(conv3(ReLU(BN(conv3(x))))))``
    (stride 1, 'same' padding, as many filters as input channels), as in He et al. 2016.
    Convolutions use Glorot initialisation and L2 ``weight_decay`` on kernels and biases.
    """

    def __init__(
        self,
        filters: int = 4,
        kernel_size=(3, 3, 3),
        strides=(1, 1, 1),
        pool_size=(2, 2, 1),
        pool_strides=(1, 1, 1),
        projection: bool = True,
        weight_decay: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = tuple(int(k) for k in kernel_size)
        self.strides = tuple(int(s) for s in strides)
        self.pool_size = tuple(int(p) for p in pool_size) if pool_size else None
        self.pool_strides = tuple(int(p) for p in pool_strides)
        self.projection = bool(projection)
        self.weight_decay = float(weight_decay)

    def _conv(self, kernel, strides, padding, name):
        reg = keras.regularizers.L2(self.weight_decay) if self.weight_decay else None
        return layers.Conv3D(
            self.filters,
            kernel,
            strides=strides,
            padding=padding,
            kernel_regularizer=reg,
            bias_regularizer=reg,
            name=name,
        )

    def build(self, input_shape):
        spatial = tuple(input_shape[1:4])
        if self.projection:
            out = [
                (n - k) // s + 1
                for n, k, s in zip(spatial, self.kernel_size, self.strides, strict=True)
            ]
            if self.pool_size:
                out = [
                    (n - p) // s + 1
                    for n, p, s in zip(out, self.pool_size, self.pool_strides, strict=True)
                ]
            if min(out) < 1:
                raise ValueError(
                    f"{self.name}: kernel {self.kernel_size} (strides {self.strides}, pooling "
                    f"{self.pool_size}) is larger than its input {spatial}; choose a preset "
                    "(e.g. compact) or kernels that fit the data's shape"
                )
            self.left_conv = self._conv(self.kernel_size, self.strides, "valid", "left_conv")
            self.right_conv = self._conv(self.kernel_size, self.strides, "valid", "right_conv")
            first = self.left_conv
        else:
            if input_shape[-1] != self.filters:
                raise ValueError(
                    f"{self.name}: an identity skip needs {self.filters} input channels, "
                    f"got {input_shape[-1]}"
                )
            self.left_conv = self._conv((3, 3, 3), (1, 1, 1), "same", "left_conv")
            first = self.left_conv
        self.left_bn = layers.BatchNormalization(name="left_bn")
        self.mid_conv = self._conv((3, 3, 3), (1, 1, 1), "same", "mid_conv")
        self.mid_bn = layers.BatchNormalization(name="mid_bn")
        first.build(input_shape)
        shape = first.compute_output_shape(input_shape)
        if self.projection and self.pool_size:
            self.pool = layers.MaxPooling3D(self.pool_size, self.pool_strides, padding="valid")
            shape = self.pool.compute_output_shape(shape)
            self.right_conv.build(input_shape)
            self.right_bn = layers.BatchNormalization(name="right_bn")
            self.right_bn.build(shape)
        elif self.projection:
            self.pool = None
            self.right_conv.build(input_shape)
            self.right_bn = layers.BatchNormalization(name="right_bn")
            self.right_bn.build(shape)
        self.left_bn.build(shape)
        self.mid_conv.build(shape)
        self.mid_bn.build(shape)
        self._output_shape = shape

    def call(self, x, training=None):
        left = self.left_conv(x)
        if self.projection and self.pool is not None:
            left = self.pool(left)
        left = ops.relu(self.left_bn(left, training=training))
        left = ops.relu(self.mid_bn(self.mid_conv(left), training=training))
        if self.projection:
            right = self.right_conv(x)
            if self.pool is not None:
                right = self.pool(right)
            right = self.right_bn(right, training=training)
        else:
            right = x
        return ops.relu(left + right)

    def compute_output_shape(self, input_shape):
        if not self.built:
            self.build(input_shape)
        return self._output_shape

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "pool_size": self.pool_size,
            "pool_strides": self.pool_strides,
            "projection": self.projection,
            "weight_decay": self.weight_decay,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class RandomFourierFeatures(layers.Layer):
    """Random Fourier features with a learned scale: ``cos(LN(x K / sigma + b))``.

    ``K`` ~ N(0, 1) (d_in x units) and ``b`` ~ U(0, 2 pi) are fixed (not trained; drawn
    from ``seed``); ``sigma`` is trained (non-negative, initialised at sqrt(d_in / 2)).
    A layer normalisation with gamma = beta = pi / 2 at initialisation centres the
    pre-activations on pi / 2, so the cosines span about [-1, 1]. Its gamma and beta are
    trained, as they (accidentally) were in the original, whose parameter count we keep.
    ``normalization=False`` drops it: ``cos(x K / sigma + b)`` (Rahimi & Recht 2007).
    """

    def __init__(self, units: int, normalization: bool = True, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.normalization = bool(normalization)
        self.seed = seed

    def build(self, input_shape):
        d_in = int(input_shape[-1])
        self.kernel = self.add_weight(
            name="kernel",
            shape=(d_in, self.units),
            initializer=keras.initializers.RandomNormal(seed=self.seed),
            trainable=False,
        )
        self.bias = self.add_weight(
            name="bias",
            shape=(self.units,),
            initializer=keras.initializers.RandomUniform(
                0.0, 2 * math.pi, seed=None if self.seed is None else self.seed + 1
            ),
            trainable=False,
        )
        self.kernel_scale = self.add_weight(
            name="kernel_scale",
            shape=(1,),
            initializer=keras.initializers.Constant(math.sqrt(d_in / 2.0)),
            constraint=keras.constraints.NonNeg(),
        )
        if self.normalization:
            self.norm = layers.LayerNormalization(
                beta_initializer=keras.initializers.Constant(math.pi / 2),
                gamma_initializer=keras.initializers.Constant(math.pi / 2),
                name="norm",
            )
            self.norm.build((*input_shape[:-1], self.units))

    def call(self, x):
        u = ops.matmul(x, self.kernel / self.kernel_scale) + self.bias
        if self.normalization:
            u = self.norm(u)
        return ops.cos(u)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "normalization": self.normalization,
            "seed": self.seed,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class FourierFeatures(layers.Layer):
    """Deterministic Fourier features: ``cos(x K)`` with ``K[j, i] = pi * 2 ** (i / units)``.

    One cosine (the original applied a second one by mistake).
    """

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)

    def build(self, input_shape):
        d_in = int(input_shape[-1])
        frequencies = np.pi * 2.0 ** (np.arange(self.units) / self.units)
        self.kernel = np.tile(frequencies, (d_in, 1)).astype("float32")

    def call(self, x):
        return ops.cos(ops.matmul(x, ops.convert_to_tensor(self.kernel, dtype=x.dtype)))

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package=PACKAGE)
class StylePrior(layers.Layer):
    """A learned style independent of the input: ``y = w * x`` (element-wise)."""

    def build(self, input_shape):
        self.style = self.add_weight(
            name="style", shape=(int(input_shape[-1]),), initializer="glorot_uniform"
        )

    def call(self, x):
        return x * self.style


@keras.saving.register_keras_serializable(package=PACKAGE)
class LatentCosineDistance(layers.Layer):
    """Per-sample cosine distance of two latents: ``1 - <a, b> / (|a| |b|)``, shape (batch,).

    ``compat=True`` reproduces the original's term for comparisons: a batch-cross (B x B)
    product of ``a`` with the spatially transposed ``b`` over batch-global norms; each row
    of the (B, B) matrix is returned summed, as the original's gradient saw its sum.
    """

    def __init__(self, compat: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.compat = bool(compat)

    def call(self, inputs):
        a, b = inputs
        if self.compat:
            flat_a = ops.reshape(a, (ops.shape(a)[0], -1))
            flat_b = ops.reshape(ops.transpose(b, (0, 3, 2, 1)), (ops.shape(b)[0], -1))
            cross = ops.matmul(flat_a, ops.transpose(flat_b))
            norms = ops.sqrt(ops.sum(a**2)) * ops.sqrt(ops.sum(b**2))
            return ops.sum(1.0 - cross / norms, axis=-1)
        flat_a = ops.reshape(a, (ops.shape(a)[0], -1))
        flat_b = ops.reshape(b, (ops.shape(b)[0], -1))
        dot = ops.sum(flat_a * flat_b, axis=-1)
        norm = ops.sqrt(ops.sum(flat_a**2, axis=-1) * ops.sum(flat_b**2, axis=-1))
        return 1.0 - dot / ops.maximum(norm, 1e-12)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0],)

    def get_config(self):
        return {**super().get_config(), "compat": self.compat}


def dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix ``D`` (n x n): ``X = D @ x``, ``x = D.T @ X``."""
    from scipy.fft import dct

    return dct(np.eye(n), type=2, norm="ortho", axis=0)


@keras.saving.register_keras_serializable(package=PACKAGE)
class DCT3D(layers.Layer):
    """Orthonormal 3-D DCT-II over axes 1, 2, 3 of (batch, x, y, z, channels)."""

    def build(self, input_shape):
        self.matrices = [dct_matrix(int(n)).astype("float32") for n in input_shape[1:4]]

    def call(self, x):
        dx, dy, dz = (ops.convert_to_tensor(m, dtype=x.dtype) for m in self.matrices)
        return ops.einsum("ia,jb,kc,nabcd->nijkd", dx, dy, dz, x)


@keras.saving.register_keras_serializable(package=PACKAGE)
class InverseDCT3D(layers.Layer):
    """Inverse orthonormal 3-D DCT from the low-frequency block of coefficients.

    Input: coefficients (batch, kx, ky, kz, channels); output (batch, *shape, channels):
    the coefficients are taken as the lowest frequencies of a ``shape`` grid (the rest zero),
    i.e. a smooth volume on the full grid (spectral upsampling when kx < shape[0]).
    """

    def __init__(self, shape, **kwargs):
        super().__init__(**kwargs)
        self.shape = tuple(int(n) for n in shape)

    def build(self, input_shape):
        ks = [int(k) for k in input_shape[1:4]]
        if any(k > n for k, n in zip(ks, self.shape, strict=True)):
            raise ValueError(f"{self.name}: {tuple(ks)} coefficients for a {self.shape} grid")
        self.matrices = [
            dct_matrix(n)[:k].T.astype("float32") for n, k in zip(self.shape, ks, strict=True)
        ]

    def call(self, x):
        ix, iy, iz = (ops.convert_to_tensor(m, dtype=x.dtype) for m in self.matrices)
        return ops.einsum("ia,jb,kc,nabcd->nijkd", ix, iy, iz, x)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.shape, *input_shape[4:])

    def get_config(self):
        return {**super().get_config(), "shape": self.shape}


@keras.saving.register_keras_serializable(package=PACKAGE)
class StopGradient(layers.Layer):
    """The identity, through which no gradient flows back: what comes after it learns
    from its input without training what produced it."""

    def call(self, x):
        return ops.stop_gradient(x)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package=PACKAGE)
class DenseVariational(layers.Layer):
    """Dense layer with a Gaussian posterior on every weight (Bayes by backprop).

    ``W ~ N(mu, softplus(rho)^2)`` sampled per weight at every call (reparameterised), prior
    N(0, ``prior_scale``^2); the KL divergence (tfp.distributions) over all weights, scaled
    by ``kl_weight``, is added to the model's losses. At inference (``training=False``) the
    posterior means are used, so synthesis is deterministic.
    """

    def __init__(
        self,
        units: int,
        kl_weight: float = 1e-6,
        prior_scale: float = 1.0,
        activation=None,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = int(units)
        self.kl_weight = float(kl_weight)
        self.prior_scale = float(prior_scale)
        self.activation = keras.activations.get(activation)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        d_in = int(input_shape[-1])
        self.kernel_mu = self.add_weight(
            name="kernel_mu", shape=(d_in, self.units), initializer="glorot_uniform"
        )
        self.kernel_rho = self.add_weight(
            name="kernel_rho",
            shape=(d_in, self.units),
            initializer=keras.initializers.Constant(-6.0),
        )
        self.bias_mu = self.add_weight(name="bias_mu", shape=(self.units,), initializer="zeros")
        self.bias_rho = self.add_weight(
            name="bias_rho", shape=(self.units,), initializer=keras.initializers.Constant(-6.0)
        )

    def _kl(self):
        import tensorflow_probability as tfp

        tfd = tfp.distributions
        total = 0.0
        for mu, rho in ((self.kernel_mu, self.kernel_rho), (self.bias_mu, self.bias_rho)):
            posterior = tfd.Normal(loc=mu, scale=ops.softplus(rho))
            prior = tfd.Normal(loc=0.0, scale=self.prior_scale)
            total = total + ops.sum(tfd.kl_divergence(posterior, prior))
        return total

    def call(self, x, training=None):
        if training:
            eps_k = keras.random.normal(ops.shape(self.kernel_mu), seed=self.seed_generator)
            eps_b = keras.random.normal(ops.shape(self.bias_mu), seed=self.seed_generator)
            kernel = self.kernel_mu + ops.softplus(self.kernel_rho) * eps_k
            bias = self.bias_mu + ops.softplus(self.bias_rho) * eps_b
            self.add_loss(self.kl_weight * self._kl())
        else:
            kernel, bias = self.kernel_mu, self.bias_mu
        return self.activation(ops.matmul(x, kernel) + bias)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "kl_weight": self.kl_weight,
            "prior_scale": self.prior_scale,
            "activation": keras.activations.serialize(self.activation),
            "seed": self.seed,
        }

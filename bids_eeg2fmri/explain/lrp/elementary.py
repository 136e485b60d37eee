"""The rule settings (:data:`RULES`, epsilon) and the elementary rules that the layer rules
are built from: the epsilon rule for any map affine in its inputs (with or without a
reference), the epsilon and z+ rules of an affine layer ``linear(x, kernel) + bias``, max
pooling (winner-take-all; with a reference, the exact split between the two maxima), and
LayerNormalization with its standard deviation frozen. Each is the vector-Jacobian product
of the layer's local surrogate (TensorFlow autodiff)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from keras import ops

#: The propagation rules for ``Dense`` and convolution layers.
RULES = ("epsilon", "zplus")


@dataclass(frozen=True)
class _Config:
    rule: str
    epsilon: float


def _config(rule: str, epsilon: float) -> _Config:
    if rule not in RULES:
        raise ValueError(f"rule: expected one of {', '.join(map(repr, RULES))}, got {rule!r}")
    if not np.isfinite(epsilon) or epsilon < 0:
        raise ValueError(f"epsilon: expected a finite number >= 0, got {epsilon!r}")
    return _Config(rule, float(epsilon))


@dataclass(frozen=True)
class _Ref:
    """A layer's inputs and outputs for the reference input."""

    xs: list
    ys: list


def _stabilized(z: tf.Tensor, eps: float) -> tf.Tensor:
    """``z + eps sign(z)`` with sign(0) = +1."""
    one = tf.ones_like(z)
    return z + eps * tf.where(z >= 0, one, -one)


def _epsilon_rule(
    fn: Callable, xs: list, r: tf.Tensor, eps: float, refs: list | None = None, dz=None
) -> list[tf.Tensor]:
    """``R_i = x_i * sum_j dz_j/dx_i R_j / stabilized(z_j)`` for ``z = fn(*xs)``.

    For ``fn`` affine in each input, ``x_i dz_j/dx_i = x_i w_ij``: the epsilon rule, with
    ``fn``'s constant term (the bias) in ``z``.

    With reference inputs ``refs``: the same rule on the differences,
    ``R_i = dx_i * sum_j dz_j/dx_i R_j / stabilized(dz_j)`` with ``dx = x - x_ref`` and
    ``dz = fn(*xs) - fn(*refs)`` (or the given ``dz``): for an affine ``fn``, the bias
    cancels and ``dz = W dx``, so the rule is conservative up to the stabilizer.
    """
    xs = [tf.identity(x) for x in xs]  # distinct tensors, even for Add([x, x])
    with tf.GradientTape() as tape:
        for x in xs:
            tape.watch(x)
        z = fn(*xs)
    if refs is None:
        denominator, factors = z, xs
    else:
        denominator = z - fn(*refs) if dz is None else dz
        factors = [x - x0 for x, x0 in zip(xs, refs, strict=True)]
    grads = tape.gradient(
        z,
        xs,
        output_gradients=r / _stabilized(denominator, eps),
        unconnected_gradients=tf.UnconnectedGradients.ZERO,
    )
    return [f * g for f, g in zip(factors, grads, strict=True)]


def _affine_rule(linear: Callable, x, kernel, bias, r, cfg: _Config, x0=None) -> tf.Tensor:
    """Epsilon or z+ rule for ``z = linear(x, kernel) + bias`` (``bias`` may be None).

    With a reference input ``x0``, the rule acts on ``dx = x - x0`` and ``dz = linear(dx)``
    (the bias cancels); z+ keeps the positive parts of ``dx_i w_ij``.
    """
    if cfg.rule == "zplus":
        v = x if x0 is None else x - x0
        w_pos, w_neg = tf.maximum(kernel, 0.0), tf.minimum(kernel, 0.0)
        v_pos, v_neg = tf.maximum(v, 0.0), tf.minimum(v, 0.0)
        # positive contributions only: v+ w+ and v- w-; no bias
        r_pos, r_neg = _epsilon_rule(
            lambda a, b: linear(a, w_pos) + linear(b, w_neg), [v_pos, v_neg], r, cfg.epsilon
        )
        return r_pos + r_neg
    if x0 is not None:
        dz = linear(x - x0, kernel)  # exactly W dx: the bias cancels
        return _epsilon_rule(lambda v: linear(v, kernel), [x], r, cfg.epsilon, [x0], dz)[0]

    def affine(v):
        z = linear(v, kernel)
        return z if bias is None else z + bias

    return _epsilon_rule(affine, [x], r, cfg.epsilon)[0]


def _max_pool_rule(pool, x: tf.Tensor, r: tf.Tensor, x0=None, eps: float = 0.0) -> tf.Tensor:
    """Max pooling.

    Without a reference: winner-take-all, each window's relevance to its maximum (split
    equally between exact ties). TensorFlow's max-pooling gradient gives the whole gradient
    to *every* tied maximum, so the windows are compared explicitly.

    With a reference ``x0``: a window's output difference ``dy = max x - max x0`` lies
    between ``dx_b`` and ``dx_a`` (``a`` the maximum of ``x``, ``b`` that of ``x0``: ``x_a
    - x0_a >= dy >= x_b - x0_b``), so ``dy = t dx_a + (1 - t) dx_b`` with ``t`` in [0, 1],
    an exact linear decomposition of the window's difference; the epsilon rule on it gives
    ``R_a = t dx_a R / dy`` and ``R_b = (1 - t) dx_b R / dy`` (one input when a = b):
    conservative. Tied maxima count with their mean difference.
    """
    if pool.data_format != "channels_last":
        from bids_eeg2fmri.explain.lrp.dispatch import _unsupported  # (imports the rules)

        raise _unsupported(pool, " with data_format='channels_first'")
    rank = len(pool.pool_size)
    pads = None
    if pool.padding == "same":
        pads = []
        for n, p, s in zip(x.shape[1 : 1 + rank], pool.pool_size, pool.strides, strict=True):
            out = -(-int(n) // s)
            total = max((out - 1) * s + p - int(n), 0)
            pads.append((total // 2, total - total // 2))

    def padded(v, value):
        return v if pads is None else tf.pad(v, [(0, 0), *pads, (0, 0)], constant_values=value)

    y = pool(x)
    out_shape = [int(n) for n in y.shape[1 : 1 + rank]]
    offsets = list(itertools.product(*(range(p) for p in pool.pool_size)))

    def windows(v):  # the element at each offset of every window
        parts = []
        for offset in offsets:
            index = [slice(None)]
            for o, s, n in zip(offset, pool.strides, out_shape, strict=True):
                index.append(slice(o, o + s * (n - 1) + 1, s))
            parts.append(v[tuple(index + [slice(None)])])
        return parts

    def shares(v, maximum):  # 1 / (number of tied maxima) at the maxima, 0 elsewhere
        hits = [tf.cast(tf.equal(c, maximum), r.dtype) for c in windows(padded(v, v.dtype.min))]
        count = tf.add_n(hits)  # every window has at least one maximum
        return [h / count for h in hits]

    share = shares(x, y)
    if x0 is None:
        grads = [s * r for s in share]
    else:
        share_ref = shares(x0, pool(x0))
        dx = x - x0
        diffs = windows(padded(dx, 0.0))
        d_a = tf.add_n([s * d for s, d in zip(share, diffs, strict=True)])
        d_b = tf.add_n([s * d for s, d in zip(share_ref, diffs, strict=True)])
        dy = y - pool(x0)
        gap = d_a - d_b  # >= 0
        safe = tf.where(gap > 0, gap, tf.ones_like(gap))
        t = tf.where(gap > 0, tf.clip_by_value((dy - d_b) / safe, 0.0, 1.0), tf.ones_like(gap))
        dz = t * d_a + (1.0 - t) * d_b  # = dy, up to rounding
        scale = r / _stabilized(dz, eps)
        grads = [(t * s + (1.0 - t) * s0) * scale for s, s0 in zip(share, share_ref, strict=True)]
    base = tf.zeros_like(padded(x, 0.0))
    with tf.GradientTape() as tape:
        tape.watch(base)
        candidates = windows(base)
    r_in = tape.gradient(
        candidates, base, output_gradients=grads, unconnected_gradients="zero"
    )  # each window's share scattered back to its inputs
    if pads is not None:  # crop the padding
        sizes = x.shape[1 : 1 + rank]
        inner = [slice(a, a + int(n)) for (a, _), n in zip(pads, sizes, strict=True)]
        r_in = r_in[(slice(None), *inner, slice(None))]
    return r_in if x0 is None else r_in * (x - x0)


def _layer_norm_inverse_std(layer, u: tf.Tensor) -> tuple[tf.Tensor, list[int], list[int]]:
    """``1 / sqrt(var(u) + eps)`` per sample (a constant), the normalized axes, the shape of
    the weights."""
    rank = u.shape.rank
    axes = sorted(a % rank for a in np.atleast_1d(layer.axis).tolist())
    shape = [1] * rank
    for a in axes:
        shape[a] = int(u.shape[a])
    variance = tf.math.reduce_variance(u, axis=axes, keepdims=True)
    return tf.stop_gradient(tf.math.rsqrt(variance + layer.epsilon)), axes, shape


def _layer_norm_surrogate(layer, u: tf.Tensor, inv=None) -> tf.Tensor:
    """LayerNormalization with the per-sample standard deviation frozen (a constant): at
    ``u``'s own, or ``1 / inv`` (that of the explained sample, for the reference)."""
    own, axes, shape = _layer_norm_inverse_std(layer, u)
    inv = own if inv is None else inv
    gamma = getattr(layer, "gamma", None)
    beta = getattr(layer, "beta", None)
    if layer.rms_scaling:  # Keras: x * rsqrt(var + eps) * gamma, no centring, no beta
        out = u * inv
        return out if gamma is None else out * tf.reshape(ops.convert_to_tensor(gamma), shape)
    out = (u - tf.reduce_mean(u, axis=axes, keepdims=True)) * inv
    if gamma is not None:
        out = out * tf.reshape(ops.convert_to_tensor(gamma), shape)
    if beta is not None:
        out = out + tf.reshape(ops.convert_to_tensor(beta), shape)
    return out


def _layer_norm_relevance(layer, u, r, cfg: _Config, u0=None) -> tf.Tensor:
    """Epsilon rule through the frozen-std LayerNormalization; with a reference, both
    samples' standard deviations frozen at the explained sample's: linear in ``du``."""
    inv = _layer_norm_inverse_std(layer, u)[0]
    fn = lambda v: _layer_norm_surrogate(layer, v, inv)  # noqa: E731
    return _epsilon_rule(fn, [u], r, cfg.epsilon, None if u0 is None else [u0])[0]

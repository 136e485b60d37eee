"""The relevance rules of the synthesizer's own layers (:mod:`bids_eeg2fmri.models.layers`):
``DenseVariational`` (its posterior means), the linear ``InverseDCT3D``/``DCT3D``/
``StylePrior``, ``TopographicalAttention`` (with the softmax's path-averaged Jacobian for a
reference), ``RandomFourierFeatures`` and ``FourierFeatures``, and ``ResBlock3D`` (its
sublayers' rules in reverse order).

Each rule: (layer, inputs, outputs, output relevances, config, reference activations or
None) -> input relevances, as in :mod:`.keras_rules`."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from keras import ops

from bids_eeg2fmri.explain.lrp.elementary import (
    _affine_rule,
    _Config,
    _epsilon_rule,
    _layer_norm_relevance,
    _max_pool_rule,
    _stabilized,
)
from bids_eeg2fmri.explain.lrp.keras_rules import (
    _batch_norm_relevance,
    _conv_relevance,
    _first_ref,
)


def _dense_variational(layer, xs, ys, rs, cfg, ref):
    kernel = ops.convert_to_tensor(layer.kernel_mu)
    bias = ops.convert_to_tensor(layer.bias_mu)
    return [_affine_rule(ops.matmul, xs[0], kernel, bias, rs[0], cfg, _first_ref(ref))]


def _linear_layer(layer, xs, ys, rs, cfg, ref):
    """A layer that is linear in its input (no bias): the DCTs, the style prior."""
    refs = None if ref is None else ref.xs
    return _epsilon_rule(lambda v: layer(v), [xs[0]], rs[0], cfg.epsilon, refs)


def _attention(layer, xs, ys, rs, cfg, ref):
    """TopographicalAttention, ``out = W x`` with ``W = softmax(x A^T)`` (rows).

    Without a reference: ``W`` held constant, the epsilon rule through ``W @ x``; relevance
    of the graph output ``W`` (none, with the gate rule) is not propagated.

    With a reference: ``W x - W_ref x_ref = W dx + dW x_ref``; the share of ``W dx`` goes
    to ``x`` (epsilon rule on differences), that of ``dW x_ref`` (none for a zero
    reference) to the graph ``W``, where it joins the relevance of the graph output (the
    style branch). The graph's relevance goes through the softmax
    (:func:`_softmax_difference_relevance`) to the scores ``c = x A^T`` and, linear
    without bias, to ``x``.
    """
    r_out, r_graph = rs[0], rs[1] if len(rs) > 1 else None
    x, graph = xs[0], ys[1]
    if ref is None:
        if r_out is None:
            return [None]  # only the graph W got relevance: not propagated
        fn = lambda v: tf.matmul(graph, v)  # noqa: E731 (W held constant: linear in x)
        return _epsilon_rule(fn, [x], r_out, cfg.epsilon)
    x0, graph0 = ref.xs[0], ref.ys[1]
    r_x = tf.zeros_like(x)
    if r_out is not None:
        scale = r_out / _stabilized(ys[0] - ref.ys[0], cfg.epsilon)
        # W dx: R_x[j, f] = dx[j, f] sum_i W[i, j] scale[i, f]
        r_x = (x - x0) * tf.matmul(graph, scale, transpose_a=True)
        # dW x_ref: R_W[i, j] = dW[i, j] sum_f x_ref[j, f] scale[i, f]
        r_w = (graph - graph0) * tf.matmul(scale, x0, transpose_b=True)
        r_graph = r_w if r_graph is None else r_graph + r_w
    if r_graph is not None:
        attention = ops.convert_to_tensor(layer.attention)
        scores = lambda v: tf.einsum("bif,jf->bij", v, attention)  # noqa: E731
        dc = scores(x - x0)
        r_c = _softmax_difference_relevance(scores(x0), dc, r_graph, cfg.epsilon)
        r_x = r_x + _epsilon_rule(scores, [x], r_c, cfg.epsilon, [x0], dc)[0]
    return [r_x]


#: Gauss-Legendre nodes and weights on [0, 1] of the softmax's path integral.
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(24)
_NODES, _WEIGHTS = (_NODES + 1.0) / 2.0, _WEIGHTS / 2.0


def _softmax_difference_relevance(c0, dc, r, eps: float) -> tf.Tensor:
    """Relevance of the score differences ``dc`` for that of ``dW``, ``W = softmax(c)``
    (last axis), ``c = c0 + dc``.

    ``dW = J dc`` exactly with ``J`` the Jacobian averaged along the segment from ``c0``
    to ``c`` (integrated gradients), ``J(c) = diag(W) - W W^T``; the average is computed by
    Gauss-Legendre quadrature (24 nodes: exact to float32 rounding for score differences of
    a few tens). The epsilon rule on this linear map, with its own ``J dc`` in the
    denominator, is conservative.
    """
    dtype = dc.dtype
    points = [
        (tf.nn.softmax(c0 + float(a) * dc, axis=-1), float(w))
        for a, w in zip(_NODES, _WEIGHTS, strict=True)
    ]

    def jacobian_product(v):  # J^T v = J v (symmetric), averaged along the path
        return tf.add_n(
            [w * p * (v - tf.reduce_sum(p * v, axis=-1, keepdims=True)) for p, w in points]
        )

    dw = jacobian_product(dc)
    return dc * jacobian_product(tf.cast(r, dtype) / _stabilized(dw, eps))


def _random_fourier(layer, xs, ys, rs, cfg, ref):
    x, r, x0 = xs[0], rs[0], _first_ref(ref)  # cos: relevance passes to its argument
    kernel = ops.convert_to_tensor(layer.kernel) / ops.convert_to_tensor(layer.kernel_scale)
    bias = ops.convert_to_tensor(layer.bias)
    if layer.normalization:
        u = tf.matmul(x, kernel) + bias
        u0 = None if x0 is None else tf.matmul(x0, kernel) + bias
        r = _layer_norm_relevance(layer.norm, u, r, cfg, u0)
    return [_affine_rule(tf.matmul, x, kernel, bias, r, _Config("epsilon", cfg.epsilon), x0)]


def _fourier(layer, xs, ys, rs, cfg, ref):
    kernel = tf.constant(layer.kernel, xs[0].dtype)  # cos: relevance passes to x K
    return [
        _affine_rule(
            tf.matmul, xs[0], kernel, None, rs[0], _Config("epsilon", cfg.epsilon), _first_ref(ref)
        )
    ]


def _resblock_forward(layer, x) -> dict[str, tf.Tensor]:
    """The intermediate tensors of a ResBlock3D that its rules need (inference mode)."""
    pool = getattr(layer, "pool", None) if layer.projection else None
    t = {"left": layer.left_conv(x)}
    t["left_pooled"] = pool(t["left"]) if pool is not None else t["left"]
    t["mid_in"] = tf.nn.relu(layer.left_bn(t["left_pooled"], training=False))
    t["mid"] = layer.mid_conv(t["mid_in"])
    t["left_out"] = tf.nn.relu(layer.mid_bn(t["mid"], training=False))
    if layer.projection:
        t["right"] = layer.right_conv(x)
        t["right_pooled"] = pool(t["right"]) if pool is not None else t["right"]
        t["right_out"] = layer.right_bn(t["right_pooled"], training=False)
    else:
        t["right_out"] = x
    return t


def _resblock(layer, xs, ys, rs, cfg, ref):
    """ResBlock3D: its layers' rules in reverse order, the residual sum split by shares."""
    x, r, x0 = xs[0], rs[0], _first_ref(ref)
    pool = getattr(layer, "pool", None) if layer.projection else None
    t = _resblock_forward(layer, x)
    t0 = None if x0 is None else _resblock_forward(layer, x0)

    def at(key):  # the reference's tensor, or None
        return None if t0 is None else t0[key]

    # backward: ReLU(left + right) -> the two branches
    refs = None if t0 is None else [t0["left_out"], t0["right_out"]]
    r_left, r_right = _epsilon_rule(
        lambda a, b: a + b, [t["left_out"], t["right_out"]], r, cfg.epsilon, refs
    )
    q = _batch_norm_relevance(layer.mid_bn, t["mid"], r_left, cfg, at("mid"))  # via the ReLU
    q = _conv_relevance(layer.mid_conv, t["mid_in"], q, cfg, at("mid_in"))
    q = _batch_norm_relevance(layer.left_bn, t["left_pooled"], q, cfg, at("left_pooled"))
    if pool is not None:
        q = _max_pool_rule(pool, t["left"], q, at("left"), cfg.epsilon)
    r_x = _conv_relevance(layer.left_conv, x, q, cfg, x0)
    if layer.projection:
        q = _batch_norm_relevance(
            layer.right_bn, t["right_pooled"], r_right, cfg, at("right_pooled")
        )
        if pool is not None:
            q = _max_pool_rule(pool, t["right"], q, at("right"), cfg.epsilon)
        r_x = r_x + _conv_relevance(layer.right_conv, x, q, cfg, x0)
    else:
        r_x = r_x + r_right  # the identity skip
    return [r_x]

"""The relevance rules of Keras's own layers: pass-through (activations, dropout and noise),
``Reshape``/``Flatten``, ``Concatenate``, ``Add``, ``Multiply`` (the style gate),
``Dense``, ``Conv*``, ``BatchNormalization``, ``LayerNormalization`` and ``MaxPooling``.

Each rule: (layer, inputs, outputs, output relevances, config, reference activations or
None) -> input relevances (None for an input that receives none). The table that maps layer
classes to rules is in :mod:`.dispatch`."""

from __future__ import annotations

import tensorflow as tf
from keras import ops

from bids_eeg2fmri.explain.lrp.elementary import (
    _affine_rule,
    _epsilon_rule,
    _layer_norm_relevance,
    _max_pool_rule,
    _Ref,
    _stabilized,
)


def _first_ref(ref: _Ref | None):
    return None if ref is None else ref.xs[0]


def _passthrough(layer, xs, ys, rs, cfg, ref):
    return [rs[0]]


def _reshape(layer, xs, ys, rs, cfg, ref):
    return [tf.reshape(rs[0], tf.shape(xs[0]))]


def _concatenate(layer, xs, ys, rs, cfg, ref):
    sizes = [int(x.shape[layer.axis]) for x in xs]
    return tf.split(rs[0], sizes, axis=layer.axis)


def _add(layer, xs, ys, rs, cfg, ref):
    refs = None if ref is None else ref.xs
    return _epsilon_rule(lambda *v: tf.add_n(list(v)), xs, rs[0], cfg.epsilon, refs)


def _multiply(layer, xs, ys, rs, cfg, ref):
    """Without a reference, the gate rule: all to the signal ``h`` (first input), none to
    the gates. With a reference, the exact telescoping decomposition of the difference of
    the product, ``h g - h_ref g_ref = g dh + h_ref dg`` (for more inputs,
    ``d(x_1 ... x_n) = sum_k x_ref,1 ... x_ref,k-1 dx_k x_k+1 ... x_n``): each term's share
    ``term / (dz + eps sign)`` to its input, the signal and the gates alike."""
    if ref is None:
        return [rs[0]] + [None] * (len(xs) - 1)
    scale = rs[0] / _stabilized(ys[0] - ref.ys[0], cfg.epsilon)
    r_ins = []
    for k, (x, x0) in enumerate(zip(xs, ref.xs, strict=True)):
        term = (x - x0) * scale
        for v in ref.xs[:k] + xs[k + 1 :]:
            term = term * v
        r_ins.append(_sum_to_shape(term, x))
    return r_ins


def _sum_to_shape(r: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
    """``r`` summed over the axes along which ``x`` was broadcast (same rank)."""
    axes = [a for a in range(r.shape.rank) if x.shape[a] == 1 and r.shape[a] != 1]
    return tf.reduce_sum(r, axis=axes, keepdims=True) if axes else r


def _dense(layer, xs, ys, rs, cfg, ref):
    bias = None if layer.bias is None else ops.convert_to_tensor(layer.bias)
    kernel = ops.convert_to_tensor(layer.kernel)
    return [_affine_rule(ops.matmul, xs[0], kernel, bias, rs[0], cfg, _first_ref(ref))]


def _conv_relevance(layer, x, r, cfg, x0=None):
    bias = None
    if layer.use_bias:
        rank = len(layer.kernel_size)
        if layer.data_format == "channels_last":
            shape = (1,) * (rank + 1) + (layer.filters,)
        else:
            shape = (1, layer.filters) + (1,) * rank
        bias = tf.reshape(ops.convert_to_tensor(layer.bias), shape)
    kernel = ops.convert_to_tensor(layer.kernel)
    return _affine_rule(layer.convolution_op, x, kernel, bias, r, cfg, x0)


def _conv(layer, xs, ys, rs, cfg, ref):
    return [_conv_relevance(layer, xs[0], rs[0], cfg, _first_ref(ref))]


def _batch_norm_relevance(layer, x, r, cfg, x0=None):
    fn = lambda v: layer(v, training=False)  # noqa: E731
    return _epsilon_rule(fn, [x], r, cfg.epsilon, None if x0 is None else [x0])[0]


def _batch_norm(layer, xs, ys, rs, cfg, ref):
    return [_batch_norm_relevance(layer, xs[0], rs[0], cfg, _first_ref(ref))]


def _layer_norm(layer, xs, ys, rs, cfg, ref):
    return [_layer_norm_relevance(layer, xs[0], rs[0], cfg, _first_ref(ref))]


def _max_pool(layer, xs, ys, rs, cfg, ref):
    return [_max_pool_rule(layer, xs[0], rs[0], _first_ref(ref), cfg.epsilon)]

"""The model as LRP walks it: the functional graph and its checks (every layer must have a
rule), the EEG, reference and output-weight arguments checked against it, the forward
passes of a batch (kept per tensor) and the backward walk that applies each layer's rule
(:mod:`.dispatch`) from the output relevance to the inputs, compiled (``tf.function``, once
per model and rule settings) alone, for many output relevances at once, or with its
reverse-mode derivative (the voxel-wise band maps)."""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from bids_eeg2fmri.explain.lrp.dispatch import _check_supported, _rule
from bids_eeg2fmri.explain.lrp.elementary import _Config, _Ref


@dataclass(frozen=True)
class _Graph:
    model: object
    input: object  # KerasTensor
    output: object  # KerasTensor
    nodes: tuple  # keras Nodes in forward (topological) order, input nodes left out


@dataclass(frozen=True)
class _Batch:
    """The forward pass of a batch: activations by KerasTensor id, for the samples and,
    with a reference, for the reference inputs (None without)."""

    part: slice
    values: dict
    ref_values: dict | None
    y: tf.Tensor
    y_ref: tf.Tensor | None


def _graph(model) -> _Graph:
    if not isinstance(model, keras.Model) and hasattr(model, "synthesis"):
        model = model.synthesis  # a BuiltModels
    if isinstance(model, keras.Sequential):
        model = getattr(model, "_functional", None) or model
    if not isinstance(model, keras.Model) or not hasattr(model, "_nodes_by_depth"):
        raise ValueError(
            f"LRP needs a Keras functional model (e.g. the synthesis model of build_models or "
            f"one loaded from a .keras file), got {type(model).__name__}"
        )
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(
            f"LRP needs a model with one input and one output, {model.name!r} has "
            f"{len(model.inputs)} and {len(model.outputs)}: pass the synthesis model "
            "(EEG -> volume), not the training model"
        )
    by_depth = model._nodes_by_depth
    nodes = tuple(
        node
        for depth in sorted(by_depth, reverse=True)
        for node in by_depth[depth]
        if node.operation is not None and not node.is_input
    )
    for node in nodes:
        _check_supported(node.operation)
    return _Graph(model, model.inputs[0], model.outputs[0], nodes)


def _grid(graph: _Graph) -> tuple[int, int, int]:
    return tuple(int(n) for n in graph.output.shape[1:4])


def _eeg(graph: _Graph, eeg: np.ndarray) -> np.ndarray:
    """The EEG as the model's (N, C, F, W, 1) float32 input."""
    shape = tuple(graph.input.shape[1:])
    if len(shape) != 4 or shape[-1] != 1 or len(graph.output.shape) != 5:
        raise ValueError(
            f"expected a synthesis model, EEG (N, C, F, W, 1) -> volume (N, X, Y, Z, k); "
            f"{graph.model.name!r} maps {tuple(graph.input.shape)} to "
            f"{tuple(graph.output.shape)} (use propagate() for other models)"
        )
    x = np.asarray(eeg, np.float32)
    if x.ndim == 4:
        x = x[..., None]
    if x.ndim != 5 or x.shape[1:] != shape:
        raise ValueError(
            f"eeg: expected an array (N, {', '.join(map(str, shape[:3]))}) for this model, "
            f"got shape {np.shape(eeg)}"
        )
    return x


def _broadcast_reference(reference, shape: tuple, name: str) -> np.ndarray | None:
    """The reference with as many axes as ``shape`` (leading ones added), broadcastable to
    it; None without a reference."""
    if reference is None:
        return None
    if isinstance(reference, str):
        if reference != "zero":
            raise ValueError(f"reference: expected an array, 'zero' or None, got {reference!r}")
        return np.zeros((1,) * len(shape), np.float32)
    ref = np.asarray(reference, np.float32)
    try:
        fits = ref.ndim <= len(shape) and np.broadcast_shapes(ref.shape, shape) == tuple(shape)
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(
            f"reference: shape {ref.shape} does not broadcast to the {name} {tuple(shape)}"
        )
    if not np.isfinite(ref).all():
        raise ValueError("reference: expected finite values")
    return ref.reshape((1,) * (len(shape) - ref.ndim) + ref.shape)


def _eeg_reference(graph: _Graph, reference, x: np.ndarray) -> np.ndarray | None:
    """The reference EEG, broadcastable to ``x`` (N, C, F, W, 1); None without one.

    Accepted: anything that broadcasts to (N, C, F, W) (e.g. (C, F, W), (1, C, F, W)), or
    to (N, C, F, W, 1), or "zero".
    """
    if reference is None or isinstance(reference, str):
        return _broadcast_reference(reference, x.shape, "EEG input")
    ref = np.asarray(reference, np.float32)
    if not np.isfinite(ref).all():
        raise ValueError("reference: expected finite values")
    try:
        return _broadcast_reference(ref, x.shape[:4], "EEG input")[..., None]
    except ValueError:
        return _broadcast_reference(ref, x.shape, "EEG input (N, C, F, W, 1)")


def _output_weights(graph: _Graph, weights, n: int) -> np.ndarray | None:
    if weights is None:
        return None
    grid = _grid(graph)
    w = np.asarray(weights, np.float32)
    if w.shape == grid:
        return np.broadcast_to(w, (n, *grid))
    if w.shape == (n, *grid):
        return w
    raise ValueError(
        f"output_weights: expected shape {grid} or {(n, *grid)} (the model grid), got {w.shape}"
    )


def _output_relevance(batch: _Batch, weights) -> tf.Tensor:
    """``R_out``: ``y_hat * weights`` on channel 0 (the mean), zero on any other channel;
    with a reference, ``(y_hat - y_hat_ref) * weights``."""
    y = batch.y
    mean = y[..., :1] if batch.y_ref is None else y[..., :1] - batch.y_ref[..., :1]
    r = mean if weights is None else mean * tf.constant(weights, mean.dtype)[..., None]
    if y.shape[-1] > 1:
        r = tf.concat([r, tf.zeros_like(y[..., 1:])], axis=-1)
    return r


def _aligned(r_in: np.ndarray, r_out: np.ndarray) -> np.ndarray:
    """``r_in`` (n, C, F, W) times the sign of each sample's total ``r_out`` (n, ...)."""
    sign = np.sign(r_out.reshape(len(r_out), -1).sum(axis=1, dtype=np.float64))
    return (r_in * sign[:, None, None, None]).astype(np.float32)


def _weighted_relevance(
    graph: _Graph, x: np.ndarray, x_ref, output_weights, cfg: _Config, batch_size: int
) -> Iterator[tuple[slice, np.ndarray, np.ndarray]]:
    """(slice, R_in (n, C, F, W), R_out (n, X, Y, Z, k)) for each batch of ``x``."""
    weights = _output_weights(graph, output_weights, len(x))
    for batch in _forward_batches(graph, x, x_ref, batch_size):
        r_out = _output_relevance(batch, None if weights is None else weights[batch.part])
        r_in = _backward(graph, batch, r_out, cfg)
        yield batch.part, r_in[..., 0].numpy(), r_out.numpy()


def _forward_batches(
    graph: _Graph, x: np.ndarray, x_ref: np.ndarray | None, batch_size: int
) -> Iterator[_Batch]:
    """The forward passes of each batch of ``x`` (and of the reference, if any)."""
    if int(batch_size) < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
    forward = _compiled(graph, None, _forward_pass)
    shared = None  # one reference for every sample: its forward pass once, batch axis 1
    if x_ref is not None and len(x_ref) == 1:
        ref = np.ascontiguousarray(np.broadcast_to(x_ref, (1, *x.shape[1:])))
        shared = forward(tf.constant(ref))
    for start in range(0, len(x), int(batch_size)):
        part = slice(start, min(len(x), start + int(batch_size)))
        values = forward(tf.constant(x[part]))
        ref_values = shared
        if x_ref is not None and shared is None:
            ref_values = forward(tf.constant(np.ascontiguousarray(x_ref[part])))
        y_ref = None if ref_values is None else ref_values[id(graph.output)]
        yield _Batch(part, values, ref_values, values[id(graph.output)], y_ref)


def _forward_pass(graph: _Graph, x: tf.Tensor, *, cfg=None) -> dict[int, tf.Tensor]:
    """:func:`_forward`, in the signature of :func:`_compiled`."""
    return _forward(graph, x)


def _forward(graph: _Graph, x: tf.Tensor) -> dict[int, tf.Tensor]:
    """Every tensor of the graph for the inputs ``x`` (inference mode)."""
    values = {id(graph.input): x}
    for node in graph.nodes:
        args, kwargs = node.arguments.fill_in(values)
        op = node.operation
        if getattr(op, "_call_has_training_arg", False):
            kwargs = {**kwargs, "training": False}
        outputs = keras.tree.flatten(op(*args, **kwargs))
        for tensor, value in zip(node.outputs, outputs, strict=True):
            values[id(tensor)] = tf.convert_to_tensor(value)
    return values


def _backward(graph: _Graph, batch: _Batch, r_out: tf.Tensor, cfg: _Config) -> tf.Tensor:
    """The input relevance for the output relevance ``r_out`` (the compiled walk)."""
    return _compiled(graph, cfg, _walk)(batch.values, batch.ref_values, r_out)


def _backward_many(graph: _Graph, batch: _Batch, r_outs: list, cfg: _Config) -> tf.Tensor:
    """The input relevances (K, n, ...) for the K output relevances ``r_outs`` (a list, so
    that K is known when the walk is traced), in one compiled call."""
    return _compiled(graph, cfg, _walk_many)(batch.values, batch.ref_values, r_outs)


def _band_gradients(
    graph: _Graph, batch: _Batch, r_out: tf.Tensor, band_weights: list, cfg: _Config
) -> tf.Tensor:
    """Per band ``b`` (a list of weights on the inputs), the gradient of
    ``sum(R_in * band_weights[b])`` with respect to ``r_out``: (n_bands, *r_out.shape)."""
    fn = _compiled(graph, cfg, _walk_band_gradients)
    return fn(batch.values, batch.ref_values, r_out, band_weights)


def _maps(
    graph: _Graph, batch: _Batch, r_out: tf.Tensor, r_outs: list, band_weights: list, cfg: _Config
) -> tuple[tf.Tensor, tf.Tensor]:
    """:func:`_backward_many` for ``r_outs`` and :func:`_band_gradients` for ``r_out`` and
    ``band_weights``, from one walk, in one compiled call."""
    fn = _compiled(graph, cfg, _walk_maps)
    return fn(batch.values, batch.ref_values, r_out, r_outs, band_weights)


#: The compiled functions of the walk, per model, function and rule settings. Their closures
#: hold the graph's nodes (the layers), not the model: an entry goes with its model.
_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _compiled(graph: _Graph, cfg: _Config | None, fn: Callable) -> Callable:
    """``fn(graph, values, ref_values, *args, cfg=cfg)`` for this model and these settings
    as a ``tf.function`` (traced once per batch shape, then run as one graph: the rules'
    many small operations without the eager overhead of each)."""
    compiled = _COMPILED.setdefault(graph.model, {})
    key = (fn.__name__, cfg)
    if key not in compiled:
        nodes = _Graph(None, graph.input, graph.output, graph.nodes)
        compiled[key] = tf.function(functools.partial(fn, nodes, cfg=cfg), reduce_retracing=True)
    return compiled[key]


def _walk_many(graph: _Graph, values: dict, ref_values, r_outs: list, *, cfg) -> tf.Tensor:
    """:func:`_walk` for each of the output relevances ``r_outs``, from one walk
    (:func:`_walk_maps`)."""
    return _walk_maps(graph, values, ref_values, r_outs[0], r_outs, [], cfg=cfg)[0]


def _walk_maps(
    graph: _Graph,
    values: dict,
    ref_values,
    r_out: tf.Tensor,
    r_outs: list,
    band_weights: list,
    *,
    cfg,
) -> tuple[tf.Tensor | None, tf.Tensor | None]:
    """The input relevances ``M r`` for each of ``r_outs`` (K, n, ...) and the band
    gradients ``M^T w_b`` for each of ``band_weights`` (n_bands, *r_out.shape), from one
    walk (None for an empty list).

    The walk is a linear map ``R_in = M R_out`` (the activations fixed), so its reverse-mode
    derivative is ``g(u) = M^T u`` for any ``u``: the band gradients are ``g(w_b)``. ``g``
    is itself linear in ``u``, and the derivative of ``<g(u), r>`` with respect to ``u`` is
    ``M r``: exact, and the activations' part of every rule (the forward recomputations)
    is evaluated once for all relevances. ``r_out`` only sets the shapes (the derivative of
    a linear map does not depend on where it is taken).
    """
    r0 = tf.zeros_like(r_out)
    u = tf.zeros_like(values[id(graph.input)])
    zero = tf.UnconnectedGradients.ZERO
    with tf.GradientTape(persistent=True) as outer:
        outer.watch(u)
        with tf.GradientTape(persistent=True) as inner:
            inner.watch(r0)
            r_in = _walk(graph, values, ref_values, r0, cfg=cfg)
        sums = []
        if r_outs:
            g = inner.gradient(r_in, r0, output_gradients=u, unconnected_gradients=zero)
            sums = [tf.reduce_sum(g * r) for r in r_outs]
    regions = [outer.gradient(s, u, unconnected_gradients=zero) for s in sums]
    ones = tf.ones_like(r_in)
    bands = [
        inner.gradient(r_in, r0, output_gradients=w * ones, unconnected_gradients=zero)
        for w in band_weights
    ]
    return (tf.stack(regions) if regions else None, tf.stack(bands) if bands else None)


def _walk_band_gradients(
    graph: _Graph, values: dict, ref_values, r_out: tf.Tensor, band_weights: list, *, cfg
) -> tf.Tensor:
    """See :func:`_band_gradients`: the walk's reverse-mode derivative (:func:`_walk_maps`)."""
    return _walk_maps(graph, values, ref_values, r_out, [], band_weights, cfg=cfg)[1]


def _walk(
    graph: _Graph, values: dict, ref_values: dict | None, r_out: tf.Tensor, *, cfg
) -> tf.Tensor:
    """The input relevance for the output relevance ``r_out``: every layer's rule, from the
    output back to the input, on the activations ``values`` (and ``ref_values``)."""
    relevance = {id(graph.output): r_out}
    for node in reversed(graph.nodes):
        r_outs = [relevance.pop(id(t), None) for t in node.outputs]
        if all(r is None for r in r_outs):
            continue  # a branch without relevance (the style gate)
        xs = [values[id(t)] for t in node.input_tensors]
        ys = [values[id(t)] for t in node.outputs]
        ref = None
        if ref_values is not None:
            ref = _Ref(
                [ref_values[id(t)] for t in node.input_tensors],
                [ref_values[id(t)] for t in node.outputs],
            )
        r_ins = _rule(node.operation)(node.operation, xs, ys, r_outs, cfg, ref)
        for tensor, r in zip(node.input_tensors, r_ins, strict=True):
            if r is not None:
                key = id(tensor)
                relevance[key] = r if key not in relevance else relevance[key] + r
    r_in = relevance.get(id(graph.input))
    return tf.zeros_like(values[id(graph.input)]) if r_in is None else r_in

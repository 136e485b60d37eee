"""The public functions of :mod:`bids_eeg2fmri.explain.lrp`: the relevance of the EEG inputs
for the whole synthesized volume (:func:`relevance`), for each region
(:func:`region_relevance`), per voxel and frequency band (:func:`voxel_band_relevance`),
both at once (:func:`relevance_maps`), the relevance that reached the inputs
(:func:`conservation`), LRP through any supported model (:func:`propagate`), and the
topographical attention weights (:func:`attention_graph`).

They check their arguments, run the forward passes batch by batch and walk the graph back
(:mod:`.graph`); the rules themselves are in :mod:`.elementary`, :mod:`.keras_rules` and
:mod:`.model_rules`. The package docstring says what the rules are and why.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from bids_eeg2fmri.explain.lrp.elementary import _config
from bids_eeg2fmri.explain.lrp.graph import (
    _aligned,
    _backward,
    _backward_many,
    _band_gradients,
    _broadcast_reference,
    _eeg,
    _eeg_reference,
    _forward_batches,
    _graph,
    _grid,
    _maps,
    _output_relevance,
    _weighted_relevance,
)
from bids_eeg2fmri.models import layers as L


def relevance(
    model,
    eeg: np.ndarray,
    *,
    output_weights: np.ndarray | None = None,
    rule: str = "epsilon",
    epsilon: float = 1e-6,
    batch_size: int = 16,
    reference: np.ndarray | str | None = None,
    aligned: bool = False,
) -> np.ndarray:
    """Relevance of each EEG input for (a weighted part of) the synthesized volume.

    Parameters
    ----------
    model : keras.Model
        The synthesis model, EEG (N, C, F, W, 1) -> volume (N, X, Y, Z, 1) or, variational,
        (N, X, Y, Z, 2) (channel 0, the mean, is explained). A ``BuiltModels`` is accepted.
    eeg : ndarray, shape (N, C, F, W) or (N, C, F, W, 1)
        The model's inputs (channels, frequencies, windows).
    output_weights : ndarray, shape (X, Y, Z) or (N, X, Y, Z), optional
        ``R_out = y_hat * output_weights`` (broadcast over samples); None: ones, i.e. the
        whole synthesized volume. With a ``reference``, ``R_out = (y_hat(x) -
        y_hat(x_ref)) * output_weights``.
    rule : {"epsilon", "zplus"}
        Rule of the ``Dense`` and convolution layers (see the module docstring).
    epsilon : float
        Stabilizer of the epsilon rules.
    batch_size : int
        Samples propagated at once (memory only; results do not depend on it).
    reference : array_like or "zero", optional
        None (the default): explain ``y_hat(x)`` with the plain rules. Otherwise the
        reference input ``x_ref``, broadcastable to the EEG (e.g. (C, F, W), (1, C, F, W),
        (N, C, F, W) or (N, C, F, W, 1)), or ``"zero"`` (all zeros: for z-scored EEG, the
        average spectrum): explain ``y_hat(x) - y_hat(x_ref)`` from the differences of the
        activations (see the module docstring).
    aligned : bool
        Multiply each sample's relevance by the sign of its explained output (the sum of
        ``R_out``): positive relevance pushed the output the way it moved (see the module
        docstring, "Ranking inputs over many samples").

    Returns
    -------
    ndarray of float32, shape (N, C, F, W)
    """
    graph, cfg = _graph(model), _config(rule, epsilon)
    x = _eeg(graph, eeg)
    x_ref = _eeg_reference(graph, reference, x)
    out = np.zeros(x.shape[:4], np.float32)
    batches = _weighted_relevance(graph, x, x_ref, output_weights, cfg, batch_size)
    for part, r_in, r_out in batches:
        out[part] = _aligned(r_in, r_out[..., 0]) if aligned else r_in
    return out


def region_relevance(
    model,
    eeg: np.ndarray,
    regions: np.ndarray,
    *,
    rule: str = "epsilon",
    epsilon: float = 1e-6,
    batch_size: int = 16,
    reference: np.ndarray | str | None = None,
    aligned: bool = False,
) -> np.ndarray:
    """Relevance of each EEG input for each region of the synthesized volume.

    Region ``r`` starts from ``R_out = y_hat * regions[r]`` (with a ``reference``,
    ``(y_hat(x) - y_hat(x_ref)) * regions[r]``); the forward passes of a batch are shared by
    all regions. As the propagation is linear in ``R_out``, relevances of disjoint regions
    add up to the relevance of their union.

    Parameters
    ----------
    model, eeg, rule, epsilon, batch_size, reference
        As in :func:`relevance`.
    regions : ndarray, shape (n_regions, X, Y, Z)
        Weights on the model grid (binary masks or probabilistic maps).
    aligned : bool
        Multiply each sample's relevance for a region by the sign of the region's explained
        output (the sum of its ``R_out``).

    Returns
    -------
    ndarray of float32, shape (N, n_regions, C, F, W)
    """
    graph, cfg = _graph(model), _config(rule, epsilon)
    x = _eeg(graph, eeg)
    x_ref = _eeg_reference(graph, reference, x)
    regions = _checked_regions(graph, regions)
    out = np.zeros((len(x), len(regions), *x.shape[1:4]), np.float32)
    for batch in _forward_batches(graph, x, x_ref, batch_size):
        r_outs = [_output_relevance(batch, region) for region in regions]
        r_ins = _backward_many(graph, batch, r_outs, cfg)
        _store_regions(out, batch.part, r_ins, r_outs, aligned)
    return out


def _checked_regions(graph, regions) -> np.ndarray:
    regions = np.asarray(regions, np.float32)
    grid = _grid(graph)
    if regions.ndim != 4 or regions.shape[1:] != grid:
        raise ValueError(
            f"regions: expected an array (n_regions, {', '.join(map(str, grid))}) on the "
            f"model grid, got shape {regions.shape}"
        )
    return regions


def _store_regions(out: np.ndarray, part: slice, r_ins, r_outs: list, aligned: bool) -> None:
    """Each region's input relevance (K, n, C, F, W, 1) into ``out[part, k]``."""
    r_ins = r_ins[..., 0].numpy()
    for k, r_in in enumerate(r_ins):
        r_out = r_outs[k][..., 0].numpy()
        out[part, k] = _aligned(r_in, r_out) if aligned else r_in


def _band_weights(band_masks, n_freqs: int) -> list:
    masks = np.asarray(band_masks)
    if masks.ndim != 2 or masks.shape[1] != n_freqs or masks.dtype != bool:
        raise ValueError(
            f"band_masks: expected a bool array (n_bands, {n_freqs}), got "
            f"{masks.dtype} {masks.shape}"
        )
    return [tf.constant(m.astype(np.float32)[None, None, :, None, None]) for m in masks]


def _store_bands(out: np.ndarray, part: slice, grads, r_out, aligned: bool) -> None:
    """Each band's voxel map ``R_out * M^T w_b`` into ``out[part, ..., b]``."""
    explained = tf.abs(r_out[..., 0]) if aligned else r_out[..., 0]
    for b, grad in enumerate(grads):
        out[part, ..., b] = (explained * grad[..., 0]).numpy()


def voxel_band_relevance(
    model,
    eeg: np.ndarray,
    band_masks: np.ndarray,
    *,
    rule: str = "epsilon",
    epsilon: float = 1e-6,
    batch_size: int = 16,
    reference: np.ndarray | str | None = None,
    aligned: bool = False,
) -> np.ndarray:
    """Per voxel, the relevance of each group of input frequencies.

    For voxel ``v`` and band ``b``: the sum over channels, windows and the frequencies of
    ``b`` of the input relevance for ``R_out = y_hat`` at ``v`` only (zero elsewhere; with a
    ``reference``, ``R_out = y_hat(x) - y_hat(x_ref)`` at ``v``).

    How it is computed (exactly, no approximation): the propagation is a linear map
    ``R_in = M R_out`` for the forward activations of a sample, so the wanted number is
    ``R_out[v] * (M^T m_b)[v]`` with ``m_b`` the band's indicator on the inputs.
    ``M^T m_b`` is the gradient of ``sum(m_b * R_in)`` with respect to ``R_out``, obtained
    by reverse-mode differentiation through the propagation: per batch, one propagation and
    one backward pass per band. Summed over voxels it equals the band's share of
    :func:`relevance`; summed over a region's voxels, that of :func:`region_relevance`.

    Parameters
    ----------
    model, eeg, rule, epsilon, batch_size, reference
        As in :func:`relevance`.
    band_masks : ndarray of bool, shape (n_bands, F)
        The input frequencies of each band (bands may overlap or leave bins out).
    aligned : bool
        Multiply each voxel's relevance by the sign of the voxel's explained output:
        ``|R_out[v]| * (M^T m_b)[v]``.

    Returns
    -------
    ndarray of float32, shape (N, X, Y, Z, n_bands)
    """
    graph, cfg = _graph(model), _config(rule, epsilon)
    x = _eeg(graph, eeg)
    x_ref = _eeg_reference(graph, reference, x)
    band_weights = _band_weights(band_masks, x.shape[2])
    out = np.zeros((len(x), *_grid(graph), len(band_weights)), np.float32)
    for batch in _forward_batches(graph, x, x_ref, batch_size):
        r_out = _output_relevance(batch, None)
        grads = _band_gradients(graph, batch, r_out, band_weights, cfg)
        _store_bands(out, batch.part, grads, r_out, aligned)
    return out


def relevance_maps(
    model,
    eeg: np.ndarray,
    regions: np.ndarray,
    band_masks: np.ndarray,
    *,
    rule: str = "epsilon",
    epsilon: float = 1e-6,
    batch_size: int = 16,
    reference: np.ndarray | str | None = None,
    aligned: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`region_relevance` and :func:`voxel_band_relevance` at once, from one forward
    pass and one walk per batch (the activations' part of every rule evaluated once for
    both): the same numbers as the two calls, in less time.

    Returns
    -------
    region : ndarray of float32, shape (N, n_regions, C, F, W)
    voxel_band : ndarray of float32, shape (N, X, Y, Z, n_bands)
    """
    graph, cfg = _graph(model), _config(rule, epsilon)
    x = _eeg(graph, eeg)
    x_ref = _eeg_reference(graph, reference, x)
    regions = _checked_regions(graph, regions)
    band_weights = _band_weights(band_masks, x.shape[2])
    out = np.zeros((len(x), len(regions), *x.shape[1:4]), np.float32)
    voxels = np.zeros((len(x), *_grid(graph), len(band_weights)), np.float32)
    for batch in _forward_batches(graph, x, x_ref, batch_size):
        r_out = _output_relevance(batch, None)
        r_outs = [_output_relevance(batch, region) for region in regions]
        r_ins, grads = _maps(graph, batch, r_out, r_outs, band_weights, cfg)
        _store_regions(out, batch.part, r_ins, r_outs, aligned)
        _store_bands(voxels, batch.part, grads, r_out, aligned)
    return out, voxels


def attention_graph(model, eeg: np.ndarray, *, batch_size: int = 16) -> np.ndarray | None:
    """The topographical attention weights ``W`` (N, C, C), rows summing to 1.

    Row ``i`` holds the weights with which channel ``i`` of the attention's output mixes the
    input channels. None when the model has no ``TopographicalAttention`` layer.
    """
    graph = _graph(model)
    nodes = [n for n in graph.nodes if isinstance(n.operation, L.TopographicalAttention)]
    if not nodes:
        return None
    x = _eeg(graph, eeg)
    key = id(nodes[0].outputs[1])
    batches = _forward_batches(graph, x, None, batch_size)
    return np.concatenate([b.values[key].numpy() for b in batches]).astype(np.float32)


def conservation(
    model,
    eeg: np.ndarray,
    *,
    output_weights: np.ndarray | None = None,
    rule: str = "epsilon",
    epsilon: float = 1e-6,
    batch_size: int = 16,
    reference: np.ndarray | str | None = None,
) -> dict[str, np.ndarray]:
    """How much of the output relevance reached the inputs, per sample.

    Parameters
    ----------
    model, eeg, output_weights, rule, epsilon, batch_size, reference
        As in :func:`relevance`.

    Returns
    -------
    dict of ndarray of float64, shape (N,)
        ``output``: ``sum R_out`` (with a reference: the weighted sum of the output
        difference ``y_hat(x) - y_hat(x_ref)``); ``input``: ``sum R_in`` (over channels,
        frequencies and windows); ``ratio``: input / output (1 for a conservative
        propagation; unstable when the signed relevances cancel, ``sum R_out`` near 0);
        ``absorbed``: output - input, the relevance kept by the biases and the stabilizers
        (with a reference, the biases cancel and every rule is conservative: only the
        stabilizers and float rounding; see the module docstring); ``scale``:
        ``sum |R_in|``, the scale against which to judge ``absorbed`` when the signed
        relevances cancel.
    """
    graph, cfg = _graph(model), _config(rule, epsilon)
    x = _eeg(graph, eeg)
    x_ref = _eeg_reference(graph, reference, x)
    outputs, inputs, scale = np.zeros(len(x)), np.zeros(len(x)), np.zeros(len(x))
    batches = _weighted_relevance(graph, x, x_ref, output_weights, cfg, batch_size)
    for part, r_in, r_out in batches:
        flat = r_in.reshape(len(r_in), -1).astype(np.float64)
        inputs[part], scale[part] = flat.sum(axis=1), np.abs(flat).sum(axis=1)
        outputs[part] = r_out.reshape(len(r_out), -1).sum(axis=1, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = inputs / outputs
    return {
        "output": outputs,
        "input": inputs,
        "ratio": ratio,
        "absorbed": outputs - inputs,
        "scale": scale,
    }


def propagate(
    model,
    inputs: np.ndarray,
    output_relevance: np.ndarray,
    *,
    rule: str = "epsilon",
    epsilon: float = 1e-6,
    batch_size: int = 16,
    reference: np.ndarray | str | None = None,
) -> np.ndarray:
    """LRP through any supported single-input, single-output Keras functional model.

    Parameters
    ----------
    inputs : ndarray, shape (N, ...)
        The model's inputs.
    output_relevance : ndarray, shape (N, ...)
        The relevance of the model's outputs (same shape as the outputs). With a
        ``reference``, the relevance of the output *differences*, typically
        ``(f(x) - f(x_ref)) * weights``.
    rule, epsilon, batch_size
        As in :func:`relevance`.
    reference : array_like or "zero", optional, keyword-only
        None: the rules act on the activations of ``inputs``. Otherwise ``x_ref``,
        broadcastable to ``inputs`` (or ``"zero"``): the rules act on the differences of
        the activations of ``inputs`` and ``x_ref``.

    Returns
    -------
    ndarray of float32, the shape of ``inputs``: the input relevance.
    """
    graph, cfg = _graph(model), _config(rule, epsilon)
    x = np.asarray(inputs, np.float32)
    x_ref = _broadcast_reference(reference, x.shape, "inputs")
    r = np.asarray(output_relevance, np.float32)
    if len(r) != len(x):
        raise ValueError(f"output_relevance: {len(r)} samples for {len(x)} inputs")
    out = np.zeros(x.shape, np.float32)
    for batch in _forward_batches(graph, x, x_ref, batch_size):
        if tuple(r[batch.part].shape) != tuple(batch.y.shape):
            raise ValueError(
                f"output_relevance: expected the output's shape {tuple(batch.y.shape[1:])} "
                f"per sample, got {r.shape[1:]}"
            )
        out[batch.part] = _backward(graph, batch, tf.constant(r[batch.part]), cfg).numpy()
    return out

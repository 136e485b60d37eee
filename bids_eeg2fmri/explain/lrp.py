"""Layer-wise relevance propagation (LRP) through the EEG-to-fMRI synthesis model.

LRP (Bach et al. 2015; Montavon et al. 2019, "Layer-wise relevance propagation: an
overview") explains an output by redistributing an output relevance ``R_out`` layer by layer
back to the inputs. Here the output is the synthesized volume ``y_hat`` (channel 0, the
mean, of a variational model), the relevance starts as ``R_out = y_hat * weights`` (all ones,
a region's mask, or one voxel), and the inputs are the EEG features (channel, frequency,
window). The model's layer graph is walked backwards from its output; every layer applies
its own rule to the forward activations of the explained samples. With a ``reference``
input (keyword-only argument of every function; the pipeline uses ``reference="zero"``),
the difference ``y_hat(x) - y_hat(x_ref)`` is explained instead, from the differences of
the activations (see "Relevance of the difference from a reference" below).

The rules below are those without a reference (``reference=None``, the default).

Rules, per layer
----------------
``epsilon`` (LRP-eps, the default), for every layer that is affine in its input, ``z = W x + b``:

    R_i = sum_j x_i w_ij / (z_j + eps sign(z_j)) R_j          (sign(0) = +1)

The bias is part of ``z_j``, so a unit keeps ``b_j / (z_j + eps sign(z_j)) R_j`` for
itself: biases (and ``eps``) *absorb* relevance and ``sum_i R_i < sum_j R_j`` in general;
without biases (and for a small ``eps``) the rule is conservative. :func:`conservation`
reports what was absorbed. The affine layers are:

- ``Dense``, ``Conv1D/2D/3D`` (with the bias); ``DenseVariational`` with its posterior means
  (``kernel_mu``, ``bias_mu``), the weights it uses at inference;
- ``InverseDCT3D`` and ``DCT3D`` (linear, orthonormal: conservative), ``StylePrior``
  (``x * w``), the projections ``x K / sigma + b`` of ``RandomFourierFeatures`` and ``x K``
  of ``FourierFeatures``;
- ``BatchNormalization`` in inference mode, ``a x + c`` per channel with the moving
  statistics (``c = beta - gamma mean / sqrt(var + eps)`` is its bias). Applying the rule to
  a convolution and then to the normalization that follows it gives the same relevance as
  folding the normalization into the convolution (up to the two stabilizers);
- ``LayerNormalization`` with the per-sample standard deviation frozen (a constant, as in
  Ali et al. 2022): the layer is then affine in its input. The centring ``u - mean(u)`` is a
  *linear* map of the input, so it is part of the weights, and only ``beta`` is a bias;
  freezing the mean as well would make ``-gamma mean / std`` a bias that absorbs relevance
  even in a network without biases.

``zplus`` (``rule="zplus"``) replaces the epsilon rule in ``Dense``, ``Conv*`` and
``DenseVariational`` layers by the z+ rule: only positive contributions, biases ignored,

    R_i = sum_j (x_i w_ij)^+ / (sum_i' (x_i' w_i'j)^+ + eps) R_j,

which for non-negative inputs (after a ReLU) is the usual ``x_i w_ij^+ / sum x w^+`` rule
and gives non-negative relevance for a positive ``R``. For inputs of any sign it is the
alpha-1-beta-0 rule. Every other layer keeps its rule below.

Other layers:

- element-wise activations (ReLU, softplus, the ``cos`` of the Fourier features, the
  activation of a Dense/Conv layer), ``Identity``, ``StopGradient``, dropout and noise
  layers (the identity at inference): relevance passes unchanged from a unit's output to
  its pre-activation, the standard choice: a neuron's relevance is attributed to its input
  through the affine layer below. For ``cos`` this is a choice: the gradient-times-input
  trick of the original gives ``R * (-u tan u)``, which is neither conservative nor
  bounded;
- ``Reshape``, ``Flatten``: relevance reshaped; ``Concatenate``: split by slices;
- ``MaxPooling``: winner-take-all, each window's relevance to its maximum (split equally
  between exactly tied maxima); conservative;
- ``Add`` (residual branches): split in proportion to each branch's contribution,
  ``R_k = z_k / (sum_k' z_k' + eps sign) R`` (the epsilon rule of the sum). Each branch gets
  its share, not the whole (the original gave the full relevance to both branches);
- ``Multiply`` (the conditional style ``h * style``): all the relevance to the first input,
  the signal ``h``, none to the other inputs, the gates (Arras et al. 2017 for
  multiplicative gates). The style branch, and the attention graph behind it, thus receive
  no relevance;
- ``TopographicalAttention`` (``out = W x``, ``W = softmax(x A)``): ``W`` is held constant,
  the layer is then a data-dependent linear map without bias, and the epsilon rule applies
  through ``W @ x``: ``R_x[j, f] = x[j, f] sum_i W[i, j] R[i, f] / (out[i, f] + eps sign)``.
  No relevance flows through the softmax (relevance that reaches the graph output ``W``,
  none with the gate rule above, is not propagated);
- ``ResBlock3D``: its convolutions, normalizations, pooling, ReLUs and the residual ``Add``
  with the rules above, in order (both the two-branch and the identity-skip blocks).

Any other layer raises ``ValueError`` naming the layer and its class.

Relevance of the difference from a reference
--------------------------------------------
With ``reference=x_ref`` (keyword-only in every function; an array broadcastable to the EEG
input, or ``"zero"``) LRP explains the *difference* ``y_hat(x) - y_hat(x_ref)``: the output
relevance starts at ``R_out = (y_hat(x) - y_hat(x_ref)) * weights``, the forward pass is run
for both inputs, and every rule works on the differences ``d. = .(x) - .(x_ref)`` of the
activations (in the spirit of DeepLIFT, Shrikumar et al. 2017, whose "rescale" rule is the
one of the element-wise activations here):

- affine layers ``z = W x + b`` (``Dense``, ``Conv*``, ``DenseVariational``, inference
  ``BatchNormalization``, ``InverseDCT3D``/``DCT3D``/``StylePrior``, the projections of the
  Fourier features): the epsilon rule on the differences,
  ``R_i = sum_j dx_i w_ij / (dz_j + eps sign(dz_j)) R_j`` with ``dz = W dx``. The bias
  cancels in ``dz``, so the rule is conservative up to ``eps``, biases or not. ``zplus``:
  the positive parts of ``dx_i w_ij`` only;
- element-wise activations (ReLU, softplus, the ``cos`` of the Fourier features): relevance
  passes from the output difference to the input difference unchanged. As the affine layer
  below divides by the pre-activation difference ``du``, the effective multiplier is the
  finite-difference slope ``(f(u) - f(u_ref)) / (u - u_ref)``: a unit whose output did not
  change passes nothing, and the cosine's slope between the two points counts, with its
  sign, where the plain rules ignored it;
- ``LayerNormalization`` (also inside ``RandomFourierFeatures``): both samples' standard
  deviations frozen at the explained sample's, ``v = gamma (u - mean u) / s + beta``, which
  is linear in ``du`` (``beta`` cancels); the epsilon rule on that linear map, with its own
  ``dv`` in the denominator, is conservative. The effect of the change of the standard
  deviation is thereby shared out in proportion to the centred ``du``;
- ``MaxPooling``: with ``a`` the maximum of a window of ``x`` and ``b`` that of ``x_ref``,
  ``x_a - x_ref,a >= dy >= x_b - x_ref,b``, so ``dy = t dx_a + (1 - t) dx_b`` with ``t`` in
  [0, 1]: an exact linear decomposition, and the epsilon rule on it sends
  ``t dx_a / dy R`` to ``a`` and ``(1 - t) dx_b / dy R`` to ``b`` (all to ``a`` when
  ``a = b``); conservative. Tied maxima count with their mean difference;
- ``Add``: the shares ``dz_k / (sum_k' dz_k' + eps sign)``; ``Reshape``, ``Flatten``,
  ``Concatenate``, dropout and noise layers: as without a reference;
- ``Multiply`` (the style gate ``h * s``): the exact decomposition
  ``h s - h_ref s_ref = s dh + h_ref ds``; the share of ``s dh`` goes to ``h``, that of
  ``h_ref ds`` to the style branch (for more factors, the same telescoping sum). Unlike the
  gate rule, the style branch (and the attention graph behind it) now receives relevance:
  in the compact models we trained on a planted signal, the synthesized volume's deviation
  was mostly carried by the style (``|ds|`` 3 to 15 times ``|dh|``, the ``h_ref ds`` share
  90 % or more of the relevance): absorbing that share, or the gate rule, left the maps
  blind to the input;
- ``TopographicalAttention``, ``out = W x`` with ``W = softmax(x A^T)``:
  ``W x - W_ref x_ref = W dx + dW x_ref``; ``W dx`` goes to ``x`` by the epsilon rule
  (``R_x[j, f] = dx[j, f] sum_i W[i, j] R[i, f] / (dout[i, f] + eps sign)``), ``dW x_ref``
  (zero for a zero reference) to the graph ``W``, where it joins the relevance of the graph
  output (the style branch). The graph's relevance goes through the row softmax with the
  Jacobian averaged along the segment from the reference's scores to the sample's (Gauss-
  Legendre quadrature, exact to rounding for score differences of a few tens): ``dW = J
  dc``, epsilon rule; then through the scores ``c = x A^T``, linear without bias, to ``x``;
- ``ResBlock3D``: its layers, as above.

Every rule is then conservative up to ``eps`` and float rounding:
``sum R_in = sum R_out = sum (y_hat(x) - y_hat(x_ref)) * weights`` for every preset, with
biases, the attention and the gate (measured, random weights and biases, random or zero
reference: ``|absorbed| / sum |R_in|`` below 1e-6 for ``plain``, about 1e-5 for
``fourier`` and ``compact``; the same models without a reference absorb 7 to 28 % for
``plain`` and ``fourier``, many times ``sum |R_in|`` for ``compact``). Signed relevances
can cancel: ``sum |R_in|`` can be much larger than ``|sum R_in|``.

When to use it. The pipeline uses ``reference="zero"``: the EEG features are z-scored per
run, so zero is the run's average spectrum, and the maps explain how each volume's EEG
deviation from the average drives its synthesized BOLD away from the prediction for an
average EEG. That is the question the synthesis answers (what in this volume's EEG makes
its BOLD differ), and it removes what the plain rules could not attribute: the biases, the
constant part of every activation, the Fourier features' LayerNorm ``beta`` (near pi / 2).
Relevance is signed (towards or away from the output change).

Without a reference (``reference=None``, the default, unchanged): on the default
``compact`` preset, trained on a planted signal, the plain epsilon maps do not single out
the planted inputs: the Fourier features' LayerNorm bias keeps most of the relevance, what
passes on ignores the cosine's slope, and the gate rule drops the style branch that carries
most of the signal. With ``reference="zero"`` the maps rank each planted source's channel
and frequency bins first for its region (20 of 20 training seeds, and 10 of 10 in the
setting of the test; the planted channel's summed ``|R|`` 5.9 times the next channel's or
more, the planted bins' 1.9 times the next bin's or more; gradient x input also ranks
them, with smaller margins: 4.4 and 1.45). The plain maps remain fine for networks without
Fourier features or style (e.g. ``plain``), where LRP-0 equals gradient x input.

Ranking inputs over many samples: ``aligned=True``
--------------------------------------------------
The output changes of different volumes have different signs, so the signed relevances of
an input cancel over volumes, and ``|R|`` counts an input that moves the output at random
as much as one that drives it. ``aligned=True`` (of :func:`relevance`,
:func:`region_relevance` and :func:`voxel_band_relevance`) multiplies each sample's
relevance by the sign of its explained output, ``R * sign(sum R_out)`` (per region for
:func:`region_relevance`, per voxel for :func:`voxel_band_relevance`): positive where the
input pushed the output the way it went, negative where it held it back. It is linear in
``R`` (sums over channels, frequencies and lags keep their meaning), and conservation
becomes ``sum R_in = |sum R_out|``, so its mean over samples sums to the mean absolute
output change. The pipeline's tables use it.

Why (measured on the LRP test's simulated dataset, training seeds 0, 1, 2, ``compact``):
the model synthesized the beta source's region as well as the others (r 0.71 to 0.79 with
the noiseless BOLD), and that region's summed beta-band relevance followed its output (r
0.83 to 0.90 over volumes, its standard deviation 3.5 to 3.9 times any other band's); yet
per input bin, the mean ``|R|`` of every band sat at the same floor (seed 0: beta 0.045,
alpha 0.046, theta 0.045): a weak source is read from many bins whose single contributions
are noisy, and ``|R|`` adds up their noise. The aligned mean ranks beta first in that
region (1.8 to 8.5 times the next band) and alpha and theta first in theirs (4 times or
more); per channel, its in-band sum puts one of the source's 3 strongest channels first for
every region and seed, where the mean ``|R|`` put a far channel first twice (alpha, seed 2;
theta, seed 1).

Linearity and the voxel-wise maps
---------------------------------
Every rule is linear in the relevance it receives (the activations and stabilizers are
fixed by the forward pass, or passes, with a reference), so the whole propagation is a
linear map ``R_in = M(x) R_out``. :func:`region_relevance` uses one forward pass per batch
for all regions. :func:`voxel_band_relevance` needs, for every voxel ``v`` and band ``b``,
the number ``sum_{i in b} (M(x) e_v)_i`` times ``R_out[v]`` (``y_hat[v]``, or its
difference from the reference's): the ``v``-th entry of ``M(x)^T 1_b``. It computes
``M(x)^T 1_b`` exactly, without any approximation, as the gradient of
``sum_{i in b} R_in[i]`` with respect to ``R_out`` (reverse-mode differentiation of the
propagation itself): one propagation and one backward pass per band, instead of one
propagation per voxel.

Implementation: each rule is ``R_in = x * grad(z, x) . (R / stabilized(z))``, the
vector-Jacobian product of the layer's local affine surrogate ``z(x)`` (TensorFlow autodiff,
eager, batched over samples); with a reference, ``R_in = dx * grad(z, x) . (R /
stabilized(dz))``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf
from keras import layers as KL
from keras import ops

from bids_eeg2fmri.models import layers as L

#: The propagation rules for ``Dense`` and convolution layers.
RULES = ("epsilon", "zplus")

__all__ = [
    "RULES",
    "attention_graph",
    "conservation",
    "propagate",
    "region_relevance",
    "relevance",
    "voxel_band_relevance",
]


# --------------------------------------------------------------------------- public API


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
    regions = np.asarray(regions, np.float32)
    grid = _grid(graph)
    if regions.ndim != 4 or regions.shape[1:] != grid:
        raise ValueError(
            f"regions: expected an array (n_regions, {', '.join(map(str, grid))}) on the "
            f"model grid, got shape {regions.shape}"
        )
    out = np.zeros((len(x), len(regions), *x.shape[1:4]), np.float32)
    for batch in _forward_batches(graph, x, x_ref, batch_size):
        for k, region in enumerate(regions):
            r_out = _output_relevance(batch, region)
            r_in = _backward(graph, batch, r_out, cfg)[..., 0].numpy()
            out[batch.part, k] = _aligned(r_in, r_out[..., 0].numpy()) if aligned else r_in
    return out


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
    masks = np.asarray(band_masks)
    n_freqs = x.shape[2]
    if masks.ndim != 2 or masks.shape[1] != n_freqs or masks.dtype != bool:
        raise ValueError(
            f"band_masks: expected a bool array (n_bands, {n_freqs}), got "
            f"{masks.dtype} {masks.shape}"
        )
    out = np.zeros((len(x), *_grid(graph), len(masks)), np.float32)
    band_weights = [tf.constant(m.astype(np.float32)[None, None, :, None, None]) for m in masks]
    for batch in _forward_batches(graph, x, x_ref, batch_size):
        with tf.GradientTape(persistent=True) as tape:
            r_out = _output_relevance(batch, None)
            tape.watch(r_out)
            r_in = _backward(graph, batch, r_out, cfg)
            sums = [tf.reduce_sum(r_in * w) for w in band_weights]
        for b, band_total in enumerate(sums):
            grad = tape.gradient(
                band_total, r_out, unconnected_gradients=tf.UnconnectedGradients.ZERO
            )
            explained = tf.abs(r_out[..., 0]) if aligned else r_out[..., 0]
            out[batch.part, ..., b] = (explained * grad[..., 0]).numpy()
        del tape
    return out


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


# --------------------------------------------------------------------------- the graph


@dataclass(frozen=True)
class _Graph:
    model: object
    input: object  # KerasTensor
    output: object  # KerasTensor
    nodes: tuple  # keras Nodes in forward (topological) order, input nodes left out


@dataclass(frozen=True)
class _Config:
    rule: str
    epsilon: float


@dataclass(frozen=True)
class _Batch:
    """The forward pass of a batch: activations by KerasTensor id, for the samples and,
    with a reference, for the reference inputs (None without)."""

    part: slice
    values: dict
    ref_values: dict | None
    y: tf.Tensor
    y_ref: tf.Tensor | None


def _config(rule: str, epsilon: float) -> _Config:
    if rule not in RULES:
        raise ValueError(f"rule: expected one of {', '.join(map(repr, RULES))}, got {rule!r}")
    if not np.isfinite(epsilon) or epsilon < 0:
        raise ValueError(f"epsilon: expected a finite number >= 0, got {epsilon!r}")
    return _Config(rule, float(epsilon))


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
    for start in range(0, len(x), int(batch_size)):
        part = slice(start, min(len(x), start + int(batch_size)))
        values = _forward(graph, tf.constant(x[part]))
        ref_values = y_ref = None
        if x_ref is not None:
            ref = x_ref[part] if len(x_ref) == len(x) else x_ref
            ref = np.ascontiguousarray(np.broadcast_to(ref, x[part].shape))
            ref_values = _forward(graph, tf.constant(ref))
            y_ref = ref_values[id(graph.output)]
        yield _Batch(part, values, ref_values, values[id(graph.output)], y_ref)


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
    """The input relevance for the output relevance ``r_out``."""
    values, ref_values = batch.values, batch.ref_values
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


# --------------------------------------------------------------------------- elementary rules


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


# --------------------------------------------------------------------------- layer rules
# each rule: (layer, inputs, outputs, output relevances, config, reference activations or
# None) -> input relevances


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


def _dense_variational(layer, xs, ys, rs, cfg, ref):
    kernel = ops.convert_to_tensor(layer.kernel_mu)
    bias = ops.convert_to_tensor(layer.bias_mu)
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


_PASSTHROUGH = (
    KL.Activation,
    KL.ReLU,
    KL.LeakyReLU,
    KL.ELU,
    KL.PReLU,
    KL.Identity,
    L.StopGradient,
    KL.Dropout,
    KL.SpatialDropout1D,
    KL.SpatialDropout2D,
    KL.SpatialDropout3D,
    KL.GaussianNoise,
    KL.GaussianDropout,
    KL.AlphaDropout,
    KL.ActivityRegularization,
)
_CONV = (KL.Conv1D, KL.Conv2D, KL.Conv3D)
_POOL = (KL.MaxPooling1D, KL.MaxPooling2D, KL.MaxPooling3D)

#: (layer classes, rule); the first match wins, so subclasses come first.
_RULES: tuple[tuple[tuple[type, ...], Callable], ...] = (
    ((L.ResBlock3D,), _resblock),
    ((L.TopographicalAttention,), _attention),
    ((L.RandomFourierFeatures,), _random_fourier),
    ((L.FourierFeatures,), _fourier),
    ((L.DenseVariational,), _dense_variational),
    ((L.InverseDCT3D, L.DCT3D, L.StylePrior), _linear_layer),
    ((KL.Dense,), _dense),
    (_CONV, _conv),
    ((KL.BatchNormalization,), _batch_norm),
    ((KL.LayerNormalization,), _layer_norm),
    (_POOL, _max_pool),
    ((KL.Add,), _add),
    ((KL.Multiply,), _multiply),
    ((KL.Concatenate,), _concatenate),
    ((KL.Reshape, KL.Flatten), _reshape),
    (_PASSTHROUGH, _passthrough),
)

_NOT_ELEMENTWISE = ("softmax", "log_softmax")


def _rule(layer) -> Callable:
    for classes, rule in _RULES:
        if isinstance(layer, classes):
            return rule
    raise _unsupported(layer)


def _unsupported(layer, why: str = "") -> ValueError:
    supported = sorted({c.__name__ for classes, _ in _RULES for c in classes})
    return ValueError(
        f"LRP has no rule for layer {layer.name!r} ({type(layer).__name__}){why}. "
        f"Supported layers: {', '.join(supported)}. Explain a model built by "
        "bids_eeg2fmri.models.synthesizer.build_models, or add a rule to "
        "bids_eeg2fmri.explain.lrp"
    )


def _check_activation(layer, activation) -> None:
    name = getattr(activation, "__name__", str(activation))
    if name in _NOT_ELEMENTWISE:
        raise _unsupported(layer, f" with the non-element-wise activation {name!r}")


def _check_supported(layer) -> None:
    """Raise ValueError now, before any computation, for a layer LRP cannot explain."""
    _rule(layer)
    if isinstance(layer, (KL.Activation, KL.Dense, L.DenseVariational, *_CONV)):
        _check_activation(layer, layer.activation)
    if isinstance(layer, _POOL) and layer.data_format != "channels_last":
        raise _unsupported(layer, " with data_format='channels_first'")
    if isinstance(layer, L.ResBlock3D):
        for sub in ("left_conv", "mid_conv", "right_conv"):
            conv = getattr(layer, sub, None)
            if conv is not None:
                _check_activation(conv, conv.activation)

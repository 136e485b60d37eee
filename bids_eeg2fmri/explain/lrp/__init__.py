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
batched over samples); with a reference, ``R_in = dx * grad(z, x) . (R /
stabilized(dz))``. The backward walk runs as a ``tf.function``, compiled once per model and
rule settings (and traced again for a new batch shape). :func:`region_relevance` uses the
linearity as well: ``g(u) = M(x)^T u`` is the reverse-mode derivative of the walk, and that of
``<g(u), R_out>`` with respect to ``u`` is ``M(x) R_out``, so one walk serves every region
(the activations' part of each rule evaluated once) and each region costs one linear pass.
The band gradients ``M(x)^T 1_b`` are ``g(1_b)``: :func:`relevance_maps` computes the region
and voxel-band maps from the same walk (what the pipeline writes per run). With one
reference for every sample (``"zero"``, or an array without a sample axis), its forward pass
is run once, on one sample, and the rules broadcast it.

Where it is
-----------
- :mod:`.api`: the public functions, re-exported here;
- :mod:`.graph`: the model's layer graph, the argument checks, the forward passes and the
  backward walk;
- :mod:`.elementary`: the rule settings (:data:`RULES`) and the elementary rules (epsilon,
  z+, max pooling, frozen-std LayerNormalization);
- :mod:`.keras_rules`: the rules of Keras's layers; :mod:`.model_rules`: those of the
  synthesizer's own layers (:mod:`bids_eeg2fmri.models.layers`);
- :mod:`.dispatch`: which rule explains which layer, and the support checks.
"""

from bids_eeg2fmri.explain.lrp.api import (
    attention_graph,
    conservation,
    propagate,
    region_relevance,
    relevance,
    relevance_maps,
    voxel_band_relevance,
)
from bids_eeg2fmri.explain.lrp.elementary import RULES

__all__ = [
    "RULES",
    "attention_graph",
    "conservation",
    "propagate",
    "region_relevance",
    "relevance",
    "relevance_maps",
    "voxel_band_relevance",
]

"""The EEG-to-fMRI synthesizer: architecture settings, presets, and the Keras models.

Data path (Calhas & Henriques 2022): EEG input (channels, frequencies, windows, 1) ->
[topographical attention] -> residual 3-D convolutions -> latent ``z_x`` -> [Fourier
features] -> [style from the attention graph, or a learned style prior] -> [+ the HRF
path: the input's band power weighted over its windows by the canonical HRF, linearly
mapped; the compact presets] -> decoder -> BOLD volume. In training, an fMRI encoder maps
the observed volume to ``z_y`` and the loss adds the cosine distance of ``z_x`` and ``z_y``
(weighted by ``latent_weight``: 1 in the original, 0 in the compact presets) to the
reconstruction error:

    L = mean_voxels |y - y_hat| + w (1 - <z_x, z_y> / (|z_x| |z_y|))      (per sample)

with the absolute error of the original (``loss="mae"``) or the squared error (``"mse"``,
the compact presets); for the variational presets, the Laplace negative log-likelihood
``mean_voxels (|y - mu| / b + log(2 b))``, or the Gaussian one
``mean_voxels ((y - mu)^2 / (2 s^2) + log s)``, in its place.
Every shape comes from the data (``eeg_shape``, ``grid``) and these settings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

Block = tuple[tuple[int, int, int], tuple[int, int, int]]  # (kernel, strides)


@dataclass(frozen=True)
class Architecture:
    """Settings of the network (recorded in the model card)."""

    latent_shape: tuple[int, int, int] = (7, 7, 7)
    filters: int = 4
    eeg_blocks: tuple[Block, ...] = (((7, 37, 2), (3, 5, 1)), ((7, 7, 2), (2, 2, 1)))
    fmri_blocks: tuple[Block, ...] = (
        ((14, 6, 12), (2, 1, 1)),
        ((6, 4, 6), (1, 1, 1)),
        ((12, 47, 5), (1, 1, 1)),
    )
    eeg_pool: Block | None = ((2, 2, 1), (1, 1, 1))  # (size, strides) of the max pooling
    fmri_pool: Block | None = ((2, 2, 2), (1, 1, 1))
    projection: bool = True  # the original's two-branch block; False: identity skips
    topographical_attention: bool = True
    fourier: str | None = "random"  # "random", "deterministic" or None
    style: str | None = "conditional"  # "conditional" (on the attention graph), "prior", None
    decoder: str = "dense"  # "dense" (one Dense to every voxel) or "dct" (low frequencies)
    dct_coefficients: tuple[int, int, int] = (16, 16, 8)
    variational: bool = False
    fmri_dropout: float = 0.5
    weight_decay: float = 0.0
    # weight of the latent cosine distance in the loss (the original's: 1). At 1, on small
    # data its gradient (~1 per sample) swamps the voxel error's (~0.1, mostly noise) and the
    # EEG branch learns to match z_fmri instead of the BOLD: the compact presets use 0
    latent_weight: float = 1.0
    # the voxel error: "mae", the original's absolute error (a Laplace likelihood when
    # variational), or "mse", the squared error (a Gaussian likelihood). BOLD noise is close
    # to Gaussian; on small simulated data the compact model reached 0.59 of the noise
    # ceiling on a held-out participant with "mse", 0.52 with "mae" (mean of 3 seeds;
    # benchmarks/NOTES.md)
    loss: str = "mae"
    # a linear path from the input's band power, weighted over its windows by the canonical
    # HRF (initial weights: bids_eeg2fmri.models.priors), to the decoder's input, beside the
    # convolutions: the ridge baseline's prior, which the convolutions must otherwise learn
    # from the data. Measured at 6 x 150: benchmarks/NOTES.md, "An HRF path"
    hrf_path: bool = False

    def check(self) -> None:
        if self.style == "conditional" and not self.topographical_attention:
            raise ValueError("a conditional style needs the topographical attention")
        if self.fourier not in ("random", "deterministic", None):
            raise ValueError(f"fourier must be 'random', 'deterministic' or None: {self.fourier!r}")
        if self.style not in ("conditional", "prior", None):
            raise ValueError(f"style must be 'conditional', 'prior' or None: {self.style!r}")
        if self.loss not in ("mae", "mse"):
            raise ValueError(f"loss must be 'mae' or 'mse': {self.loss!r}")
        if self.decoder not in ("dense", "dct"):
            raise ValueError(f"decoder must be 'dense' or 'dct': {self.decoder!r}")


_TAFP = Architecture()
PRESETS: dict[str, Architecture] = {
    # the original's best model, "(iv)": attention + random Fourier features + style
    "noddi-tafp": _TAFP,
    # the paper's variants
    "plain": dataclasses.replace(_TAFP, topographical_attention=False, fourier=None, style=None),
    "attention": dataclasses.replace(_TAFP, fourier=None),
    "fourier": dataclasses.replace(_TAFP, topographical_attention=False, style=None),
    "style-prior": dataclasses.replace(_TAFP, style="prior"),
    # per-voxel mean and scale (Laplace), variational latent projection; the scale is
    # decoded from the mean's features without training them
    "variational": dataclasses.replace(_TAFP, variational=True),
    # small kernels that fit small inputs, a low-frequency (DCT) decoder: demo and CPU use
    "compact": dataclasses.replace(
        _TAFP,
        latent_shape=(4, 4, 4),
        eeg_blocks=(((3, 5, 2), (1, 2, 1)), ((3, 3, 1), (2, 2, 1))),
        fmri_blocks=(((3, 3, 3), (2, 2, 2)),),
        eeg_pool=((2, 2, 1), (2, 2, 1)),
        fmri_pool=((2, 2, 2), (2, 2, 2)),
        decoder="dct",
        dct_coefficients=(12, 12, 8),
        fmri_dropout=0.2,
        latent_weight=0.0,
        loss="mse",
        hrf_path=True,
    ),
}
# the compact network with the variational outputs: uncertainty maps on a CPU
PRESETS["compact-variational"] = dataclasses.replace(PRESETS["compact"], variational=True)
# the compact network without Fourier features and style: a plain encoder-decoder
PRESETS["compact-plain"] = dataclasses.replace(PRESETS["compact"], fourier=None, style=None)


@dataclass(frozen=True)
class BuiltModels:
    """The training model (EEG + BOLD -> [volume, latent distance]) and the synthesis model
    (EEG -> volume, sharing its layers), plus the attention-graph model when there is one."""

    training: object
    synthesis: object
    attention: object | None = None
    output_names: tuple[str, ...] = field(default=("synth", "latent"))


def build_models(
    arch: Architecture,
    *,
    eeg_shape: tuple[int, int, int],
    grid: tuple[int, int, int],
    compat_loss: bool = False,
    seed: int = 0,
    tr: float | None = None,
    frequencies: Sequence[float] | None = None,
) -> BuiltModels:
    """Build the Keras models for EEG inputs of ``eeg_shape`` (channels, freqs, windows)
    and BOLD volumes on ``grid``; ``tr`` (s) and the ``frequencies`` (Hz) of the input's
    bins set the initial weights of the HRF path (``arch.hrf_path``)."""
    import keras
    from keras import layers

    from bids_eeg2fmri.models import layers as L

    arch.check()
    channels, freqs, windows = (int(n) for n in eeg_shape)
    if arch.hrf_path and (tr is None or frequencies is None or len(frequencies) != freqs):
        raise ValueError(
            f"the HRF path needs the TR and the {freqs} frequencies of the input's bins; "
            f"received tr={tr} and {None if frequencies is None else len(frequencies)} "
            "frequencies"
        )
    grid = tuple(int(n) for n in grid)
    units = int(arch.latent_shape[0] * arch.latent_shape[1] * arch.latent_shape[2])

    eeg = keras.Input((channels, freqs, windows, 1), name="eeg")
    x = layers.Reshape((channels, freqs * windows), name="eeg_flat")(eeg)
    graph = None
    if arch.topographical_attention:
        x, graph = L.TopographicalAttention(name="topographical_attention")(x)
    x = layers.Reshape((channels, freqs, windows, 1), name="eeg_maps")(x)
    x = _conv_stack(arch, x, arch.eeg_blocks, arch.eeg_pool, "eeg_block")
    x = layers.Flatten(name="eeg_features")(x)
    if arch.variational:
        z_x = L.DenseVariational(units, seed=seed, name="eeg_latent")(x)
    else:
        z_x = layers.Dense(units, name="eeg_latent")(x)
    z_x = layers.Reshape(arch.latent_shape, name="z_eeg")(z_x)

    h = layers.Flatten(name="z_eeg_flat")(z_x)
    if arch.fourier == "random":
        h = L.RandomFourierFeatures(units, seed=seed, name="fourier_features")(h)
    elif arch.fourier == "deterministic":
        h = L.FourierFeatures(units, name="fourier_features")(h)
    if arch.style == "conditional":
        style = layers.Dense(units, use_bias=False, name="attention_style")(
            layers.Flatten(name="attention_graph")(graph)
        )
        h = layers.Multiply(name="styled")([h, style])
    elif arch.style == "prior":
        h = L.StylePrior(name="style_prior")(h)
    if arch.hrf_path:
        h = layers.Add(name="decoder_input")([h, _hrf_path(eeg, units, tr, frequencies)])
    volume = _decode(arch, h, grid, "decoder")
    y_hat = layers.Conv3D(1, 1, name="synth_volume")(volume)
    if arch.variational:
        # the scale reads the features the mean decoder reads without training them: through
        # them, its likelihood (a residual's size per voxel, mostly noise) took over the
        # shared layers, and compact-variational's mean followed the noiseless BOLD of a
        # held-out simulated participant's source regions with r 0.09 where compact's did
        # with 0.74 (0.75 once detached; benchmarks/NOTES.md)
        features = L.StopGradient(name="scale_features")(h)
        scale = _decode(arch, features, grid, "scale_decoder", force_dct=True)
        scale = layers.Activation("softplus", name="scale_positive")(scale)
        y_hat = layers.Concatenate(name="synth")([y_hat, scale])
    else:
        y_hat = layers.Identity(name="synth")(y_hat)

    bold = keras.Input((*grid, 1), name="bold")
    y = bold
    y = _conv_stack(arch, y, arch.fmri_blocks, arch.fmri_pool, "fmri_block")
    y = layers.Flatten(name="fmri_features")(y)
    y = layers.Dense(units, name="fmri_latent")(y)
    if arch.fmri_dropout:
        y = layers.Dropout(arch.fmri_dropout, seed=seed, name="fmri_dropout")(y)
    z_y = layers.Reshape(arch.latent_shape, name="z_fmri")(y)
    distance = L.LatentCosineDistance(compat=compat_loss, name="latent")([z_x, z_y])

    training = keras.Model([eeg, bold], [y_hat, distance], name="eeg_to_fmri_training")
    synthesis = keras.Model(eeg, y_hat, name="eeg_to_fmri")
    attention = keras.Model(eeg, graph, name="attention_graph") if graph is not None else None
    return BuiltModels(training, synthesis, attention)


def _hrf_path(eeg, units: int, tr: float, frequencies: Sequence[float]):
    """``Dense(units)`` of the input's band power weighted by the HRF over its windows
    (two bias-free linear maps, initialised as in :mod:`bids_eeg2fmri.models.priors`)."""
    import keras
    from keras import layers

    from bids_eeg2fmri.models.priors import band_matrix, hrf_window_weights

    channels, freqs, windows = (int(n) for n in eeg.shape[1:4])
    window_weights = hrf_window_weights(tr, windows)[:, None]
    bands, _ = band_matrix(frequencies)
    x = layers.Reshape((channels, freqs, windows), name="hrf_input")(eeg)
    x = layers.Dense(
        1,
        use_bias=False,
        kernel_initializer=keras.initializers.Constant(window_weights.tolist()),
        name="hrf_windows",
    )(x)
    x = layers.Reshape((channels, freqs), name="hrf_spectra")(x)
    x = layers.Dense(
        bands.shape[1],
        use_bias=False,
        kernel_initializer=keras.initializers.Constant(bands.tolist()),
        name="hrf_bands",
    )(x)
    x = layers.Flatten(name="hrf_band_power")(x)
    return layers.Dense(units, name="hrf_latent")(x)


def _conv_stack(arch: Architecture, x, blocks, pool, prefix: str):
    """Residual 3-D blocks (kernel, strides) with the architecture's pooling and filters."""
    from bids_eeg2fmri.models import layers as L

    for i, (kernel, strides) in enumerate(blocks):
        x = L.ResBlock3D(
            arch.filters,
            kernel,
            strides,
            *(pool or (None, (1, 1, 1))),
            projection=arch.projection,
            weight_decay=arch.weight_decay,
            name=f"{prefix}{i + 1}",
        )(x)
    return x


def _decode(arch: Architecture, h, grid, name: str, force_dct: bool = False):
    from keras import layers

    from bids_eeg2fmri.models import layers as L

    if arch.decoder == "dense" and not force_dct:
        v = layers.Dense(grid[0] * grid[1] * grid[2], name=f"{name}_dense")(h)
        return layers.Reshape((*grid, 1), name=f"{name}_volume")(v)
    coeffs = tuple(min(c, n) for c, n in zip(arch.dct_coefficients, grid, strict=True))
    c = layers.Dense(coeffs[0] * coeffs[1] * coeffs[2], name=f"{name}_dct_coefficients")(h)
    c = layers.Reshape((*coeffs, 1), name=f"{name}_coefficient_block")(c)
    return L.InverseDCT3D(grid, name=f"{name}_idct")(c)


def count_trainable(model) -> int:
    """Trainable parameters of a Keras model."""
    import numpy as np

    return int(sum(np.prod(w.shape) for w in model.trainable_weights))

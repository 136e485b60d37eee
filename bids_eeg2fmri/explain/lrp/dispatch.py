"""Which rule explains which layer: the table of layer classes and rules (subclasses
first), and the checks, made before any computation, that reject a layer without a rule or
with a non-element-wise activation (``ValueError`` naming the layer and the supported
classes). A new layer needs a rule in :mod:`.keras_rules` or :mod:`.model_rules` and a row
here."""

from __future__ import annotations

from collections.abc import Callable

from keras import layers as KL

from bids_eeg2fmri.explain.lrp.keras_rules import (
    _add,
    _batch_norm,
    _concatenate,
    _conv,
    _dense,
    _layer_norm,
    _max_pool,
    _multiply,
    _passthrough,
    _reshape,
)
from bids_eeg2fmri.explain.lrp.model_rules import (
    _attention,
    _dense_variational,
    _fourier,
    _linear_layer,
    _random_fourier,
    _resblock,
)
from bids_eeg2fmri.models import layers as L

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

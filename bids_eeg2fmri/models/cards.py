"""Checks of a ``--model`` file and its model card, without TensorFlow.

A model is ``<name>.keras`` (a zip archive holding ``config.json``, ``model.weights.h5`` and
``metadata.json``) with its card ``<name>.json`` beside it (written by ``--train``). Every
check raises an error whose message is one line, ``<file>: <what is wrong> (<what was
expected>)``: problems of the model or its card are usage errors (exit 2: the option
names an unusable model); data the model cannot be applied to (sampling rate, TR) are
data errors (exit 65).

Only the standard library is imported here: the command line runs these checks before it
creates any directory or runs any step, at the speed of ``--help``.
"""

from __future__ import annotations

import json
import math
import zipfile
from collections.abc import Sequence
from pathlib import Path

from bids_eeg2fmri.bidsio.files import sha256
from bids_eeg2fmri.errors import DataError, UsageError

#: What every ``.keras`` archive holds (Keras 3 saving format).
ARCHIVE_ENTRIES = ("config.json", "model.weights.h5")


def card_path(model: Path) -> Path:
    """The model card beside a ``.keras`` file: ``<name>.json``."""
    return Path(model).with_suffix(".json")


# ----------------------------------------------------------------------------- the archive
def check_model_archive(model: Path, *, named: str | None = None) -> dict:
    """Check that ``model`` is a readable Keras archive; return its ``config.json``.

    The archive's entries are read and CRC-checked (a truncated or damaged download fails
    here, not deep in Keras).

    Raises
    ------
    UsageError
        Missing, a folder, empty, not a zip archive, damaged, or without the Keras entries.
    """
    model = Path(model)
    where = named or f"--model {model}"
    expected = "a .keras model saved by bids-eeg2fmri --train"
    if not model.exists():
        raise UsageError(f"{where}: no such file ({expected})")
    if not model.is_file():
        raise UsageError(f"{where}: not a file ({expected})")
    try:
        size = model.stat().st_size
        if size == 0:
            raise UsageError(f"{where}: empty file ({expected})")
        if not zipfile.is_zipfile(model):
            raise UsageError(
                f"{where}: not a Keras model archive: not a zip file, or truncated ({expected})"
            )
        with zipfile.ZipFile(model) as archive:
            names = set(archive.namelist())
            missing = [name for name in ARCHIVE_ENTRIES if name not in names]
            if missing:
                raise UsageError(
                    f"{where}: not a Keras model archive: no {' or '.join(missing)} in it "
                    f"({expected}: a zip with {' and '.join(ARCHIVE_ENTRIES)})"
                )
            damaged = archive.testzip()
            if damaged is not None:
                raise UsageError(
                    f"{where}: damaged Keras model archive: {damaged} fails its CRC check "
                    f"({expected})"
                )
            config = json.loads(archive.read("config.json"))
    except UsageError:
        raise
    except PermissionError:
        raise UsageError(f"{where}: cannot be read: permission denied ({expected})") from None
    except (OSError, zipfile.BadZipFile, EOFError, ValueError) as err:
        # ValueError covers a config.json that is not JSON (JSONDecodeError) or not UTF-8
        raise UsageError(
            f"{where}: damaged Keras model archive: {_one_line(err)} ({expected})"
        ) from None
    if not isinstance(config, dict):
        raise UsageError(f"{where}: damaged Keras model archive: config.json is not an object")
    return config


def input_shape(config: dict) -> tuple[int | None, ...] | None:
    """The network's input shape without the batch axis, from an archive's
    ``config.json`` (a functional model's first input layer); None when the config does
    not say (another kind of model: Keras checks it when it loads the model)."""
    inner = config.get("config")
    if not isinstance(inner, dict) or not isinstance(inner.get("layers"), list):
        return None
    inputs = inner.get("input_layers") or []
    first = inputs[0] if inputs and isinstance(inputs[0], list) else inputs
    name = first[0] if first and isinstance(first[0], str) else None
    for layer in inner["layers"]:
        if not isinstance(layer, dict) or layer.get("class_name") != "InputLayer":
            continue
        if name is not None and layer.get("name") != name:
            continue
        shape = (layer.get("config") or {}).get("batch_shape")
        if isinstance(shape, list) and len(shape) >= 2:
            return tuple(shape[1:])
    return None


# ----------------------------------------------------------------------------- the card
def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _positive(value) -> bool:
    return _number(value) and value > 0


def _names(value) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(v, str) and v for v in value)
        and len(set(value)) == len(value)
    )


def _frequencies(value) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(_positive(v) for v in value)
        and all(a < b for a, b in zip(value, value[1:], strict=False))
    )


def _grid(value) -> bool:
    return isinstance(value, list) and len(value) == 3 and all(_positive_int(v) for v in value)


def _affine(value) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 4
        and all(isinstance(row, list) and len(row) == 4 for row in value)
        and all(_number(v) for row in value for v in row)
    )


def _positions(value) -> bool:
    if not isinstance(value, dict):
        return False
    points = value.get("positions_m")
    return (
        _text(value.get("source"))
        and isinstance(points, dict)
        and all(
            isinstance(p, list) and len(p) == 3 and all(map(_number, p)) for p in points.values()
        )
    )


def _text(value) -> bool:
    return isinstance(value, str) and bool(value)


def _hex64(value) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= set("0123456789abcdef")


#: The keys a card must have to apply its model: (check, what is expected).
REQUIRED_KEYS = {
    "channels": (_names, "a non-empty list of distinct EEG channel names"),
    "frequencies": (_frequencies, "a non-empty, increasing list of frequencies in Hz"),
    "n_windows": (_positive_int, "a positive integer: TR-long EEG windows per input"),
    "tr": (_positive, "the training data's repetition time in s, a positive number"),
    "max_freq": (_positive, "the highest frequency of the spectra in Hz, a positive number"),
    "grid": (_grid, "the model's BOLD grid, a list of 3 positive integers"),
    "model_affine": (_affine, "the model grid's 4 x 4 affine, a list of 4 lists of 4 numbers"),
    "name": (_text, "the model's name, a non-empty string"),
    "preset": (_text, "the architecture's preset name, a non-empty string"),
}
#: Keys that may be absent, checked when present.
OPTIONAL_KEYS = {
    "sha256": (_hex64, "the SHA-256 of the .keras file, 64 lower-case hexadecimal digits"),
    "digest": (_hex64, "the model's content digest, 64 lower-case hexadecimal digits"),
    "architecture": (lambda v: isinstance(v, dict), "an object"),
    "training": (lambda v: isinstance(v, dict), "an object"),
    "channel_positions": (
        lambda v: v is None or _positions(v),
        'null or {"source": text, "positions_m": {channel: [x, y, z]}}',
    ),
}


def _show(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def read_card(model: Path, *, named: str | None = None) -> dict:
    """The model card beside ``model``, every key it needs checked (types, values, and
    that its frequencies agree with its ``max_freq`` and ``tr``).

    Raises
    ------
    UsageError
        Missing, unreadable, not JSON, or a key missing, of the wrong type or inconsistent;
        the message names the card and the key.
    """
    path = card_path(model)
    whose = f"the model card of {named or f'--model {Path(model)}'}"
    if not path.is_file():
        raise UsageError(f"{path}: no such file ({whose}, written beside it by --train)")
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UsageError(f"{path}: not valid JSON: {_one_line(err)} ({whose})") from None
    except OSError as err:
        raise UsageError(f"{path}: cannot be read: {err.strerror or err} ({whose})") from None
    if not isinstance(card, dict):
        raise UsageError(f"{path}: a JSON {type(card).__name__}, not an object ({whose})")
    for key, (valid, expected) in REQUIRED_KEYS.items():
        if key not in card:
            raise UsageError(f'{path}: key "{key}" is missing ({expected}; {whose})')
        if not valid(card[key]):
            raise UsageError(f'{path}: key "{key}" is {_show(card[key])} ({expected}; {whose})')
    for key, (valid, expected) in OPTIONAL_KEYS.items():
        if key in card and not valid(card[key]):
            raise UsageError(f'{path}: key "{key}" is {_show(card[key])} ({expected}; {whose})')
    top = card["frequencies"][-1]
    if top >= card["max_freq"]:
        raise UsageError(
            f'{path}: key "max_freq" is {card["max_freq"]:g} Hz but the highest of "frequencies" '
            f"is {top:g} Hz (frequencies below max_freq; {whose})"
        )
    step = card["frequencies"][0]
    if abs(step * card["tr"] - 1) > 0.01:
        raise UsageError(
            f'{path}: key "tr" is {card["tr"]:g} s but "frequencies" start at {step:g} Hz '
            f"(the first frequency is 1 / TR = {1 / card['tr']:g} Hz; {whose})"
        )
    return card


def check_card_fits_network(
    card: dict,
    shape: Sequence[int | None] | None,
    *,
    model: Path,
    output_grid=None,
    named: str | None = None,
) -> None:
    """Compare a card with the network it describes.

    Parameters
    ----------
    card
        A card from :func:`read_card`.
    shape
        The network's input shape without the batch axis, ``(channels, frequencies,
        windows[, 1])``; None skips the input check.
    model
        The ``.keras`` file (named in the message).
    output_grid
        The network's output grid ``(x, y, z)``, when known.

    Raises
    ------
    UsageError
        The card's channels, frequencies, windows or grid differ from the network's.
    """
    path, named = card_path(model), named or f"--model {Path(model)}"
    if shape is not None and len(shape) >= 3:
        network = dict(zip(("channels", "frequencies", "windows"), shape[:3], strict=True))
        described = {
            "channels": len(card["channels"]),
            "frequencies": len(card["frequencies"]),
            "windows": card["n_windows"],
        }
        wrong = [k for k, v in described.items() if network[k] is not None and network[k] != v]
        if wrong:
            raise UsageError(
                f"{path}: "
                + ", ".join(f"{described[k]} {k}" for k in wrong)
                + f" but {named} takes "
                + ", ".join(f"{network[k]} {k}" for k in wrong)
                + " (the card written with the model: a card of another model?)"
            )
    if output_grid is not None and tuple(output_grid) != tuple(card["grid"]):
        raise UsageError(
            f'{path}: key "grid" is {list(card["grid"])} but {named} outputs '
            f"{list(output_grid)} (the card written with the model: a card of another model?)"
        )


def check_model(model: Path, *, named: str | None = None) -> dict:
    """Every check of ``--model FILE`` that needs no TensorFlow; returns its card.

    The archive (:func:`check_model_archive`), the card (:func:`read_card`), the card's
    SHA-256 of the file (an error when it differs: the card then describes another
    model, or the file is damaged) and the card against the network's input shape.

    Raises
    ------
    UsageError
        With a one-line message naming ``--model``, the file and, for the card, the key;
        ``named`` names the file otherwise (``m.keras (model in run.toml)``).
    """
    model = Path(model)
    config = check_model_archive(model, named=named)
    card = read_card(model, named=named)
    if "sha256" in card and card["sha256"] != sha256(model):
        raise UsageError(
            f'{card_path(model)}: key "sha256" differs from the SHA-256 of '
            f"{named or f'--model {model}'} "
            "(the hash of the file the card was written with: the model was replaced or "
            "corrupted; use the card saved with it, or retrain)"
        )
    check_card_fits_network(card, input_shape(config), model=model, named=named)
    return card


# ----------------------------------------------------------------------------- the data
def check_sampling_rate(eeg: Path, sfreq: float, card: dict, *, model: Path) -> None:
    """The model reads spectra up to its highest frequency: a recording must be sampled
    above twice that (Nyquist).

    Raises
    ------
    DataError
        Naming the EEG file, its rate and the model's highest frequency.
    """
    top = float(card["frequencies"][-1])
    if top >= sfreq / 2:
        raise DataError(
            f"{Path(eeg).name}: sampling rate {sfreq:g} Hz is too low for --model "
            f"{Path(model).name}, whose spectra reach {top:g} Hz (a rate above "
            f"{2 * top:g} Hz, twice the model's highest frequency)"
        )


def check_tr(bold: Path, tr: float, card: dict, *, model: Path) -> None:
    """The model's spectra are read at multiples of 1 / TR: the data's TR must be the
    training data's.

    Raises
    ------
    DataError
        Naming the BOLD file, its TR and the model's.
    """
    if abs(tr - card["tr"]) > 1e-3:
        raise DataError(
            f"{Path(bold).name}: TR {tr:g} s differs from the TR of --model "
            f"{Path(model).name} (its training data's {card['tr']:g} s: its spectra are read "
            f"at multiples of 1 / TR)"
        )


def check_runs_fit_model(pairs: Sequence, card: dict, *, model: Path) -> None:
    """Before any step runs: every run's EEG sampling rate (from its header) and its BOLD's
    TR (from the sidecar) fit the model; a header that cannot be read is left to the
    workflow, which says why.

    Raises
    ------
    DataError
        From :func:`check_tr` or :func:`check_sampling_rate`, for the first run that does
        not fit.
    """
    from bids_eeg2fmri.signals.eeg import EEGError, read_raw

    for pair in pairs:
        if pair.bold is not None and pair.tr is not None:
            check_tr(pair.bold, pair.tr, card, model=model)
        try:
            sfreq = float(read_raw(pair.eeg, preload=False).info["sfreq"])
        except EEGError:
            continue
        check_sampling_rate(pair.eeg, sfreq, card, model=model)


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split())

"""Synthesis: model outputs back on the source grid and in its units, written as BIDS;
saving and loading models with their cards."""

from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path

import numpy as np

from bids_eeg2fmri import __version__
from bids_eeg2fmri.bidsio.files import sha256
from bids_eeg2fmri.errors import DataError, UsageError
from bids_eeg2fmri.models.data import RunArrays


def predict_run(
    model, run: RunArrays, *, batch_size: int = 8
) -> tuple[np.ndarray, np.ndarray | None]:
    """Synthesized z-scored volumes on the model grid, (x, y, z, n_volumes), float32.

    Volumes without a full EEG input are 0 (the run's mean once put back in its units).
    For a variational model, also the per-voxel scale of its likelihood (else None).
    """
    inputs, valid = run.inputs(), run.valid
    grid = tuple(model.output_shape[1:4])
    out = np.zeros((*grid, valid.size), np.float32)
    scale = np.zeros_like(out) if model.output_shape[-1] == 2 else None
    index = np.flatnonzero(valid)
    for start in range(0, index.size, 64):
        chunk = index[start : start + 64]
        batch = np.asarray(inputs[chunk], dtype=np.float32)[..., None]
        pred = model.predict(batch, batch_size=batch_size, verbose=0)
        out[..., chunk] = np.moveaxis(pred[..., 0], 0, -1)
        if scale is not None:
            scale[..., chunk] = np.moveaxis(pred[..., 1], 0, -1)
    return out, scale


def predict_latent(model, run: RunArrays, *, batch_size: int = 64) -> np.ndarray:
    """The model's EEG latent (layer ``z_eeg``, flattened) of the run's valid volumes,
    shape (n_units, n_valid_volumes), float32."""
    import keras

    encoder = keras.Model(model.inputs, model.get_layer("z_eeg").output)
    inputs, index = run.inputs(), np.flatnonzero(run.valid)
    parts = [
        encoder.predict(
            np.asarray(inputs[index[i : i + 64]], np.float32)[..., None],
            batch_size=batch_size,
            verbose=0,
        ).reshape(len(index[i : i + 64]), -1)
        for i in range(0, index.size, 64)
    ]
    return np.concatenate(parts).T if parts else np.zeros((0, 0), np.float32)


def to_source_space(z: np.ndarray, run: RunArrays) -> tuple[np.ndarray, np.ndarray]:
    """Put model-grid z-scores back in the source BOLD's units and grid.

    Returns (data, affine): on the native grid for runs with BOLD.
    """
    import nibabel as nib

    from bids_eeg2fmri.signals.bold import denormalize, resample

    info = run.bold_info
    mean = np.asarray(nib.load(run.mean).dataobj, np.float32)
    std = np.asarray(nib.load(run.std).dataobj, np.float32)
    model_affine = np.asarray(info["model_affine"])
    native_affine = np.asarray(info["native_affine"])
    data = denormalize(z, mean, std)
    return resample(data, model_affine, native_affine, tuple(info["native_shape"])), native_affine


def software_versions() -> dict[str, str]:
    import keras
    import mne
    import tensorflow as tf

    return {
        "bids-eeg2fmri": __version__,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "mne": mne.__version__,
    }


def save_model(model, card: dict, models_dir: Path, name: str) -> tuple[Path, Path]:
    """Save ``<name>.keras`` and its card ``<name>.json`` atomically; the card records the
    SHA-256 of the .keras file."""
    from bids_eeg2fmri.bidsio.files import write_json_atomic

    models_dir.mkdir(parents=True, exist_ok=True)
    final = models_dir / f"{name}.keras"
    tmp = models_dir / f".{name}.{os.getpid()}.tmp.keras"
    model.save(tmp)
    os.replace(tmp, final)
    card = {
        **card,
        "name": name,
        "sha256": sha256(final),
        "digest": model_digest(final),
        "software": software_versions(),
    }
    return final, write_json_atomic(models_dir / f"{name}.json", card)


def model_digest(path: Path) -> str:
    """SHA-256 of what a ``.keras`` file holds, not of when it was saved.

    The file's own hash changes at every save (``metadata.json`` has the date, the zip the
    entries' times, ``config.json`` memory addresses as ``shared_object_id``): this digest
    hashes every entry's name and bytes in order, without ``metadata.json`` and with the
    config's ``shared_object_id`` values dropped and the weights read as arrays (HDF5
    files hold object times too), so two identical trainings agree.
    """
    import zipfile

    def scrub(node):
        if isinstance(node, dict):
            return {k: scrub(v) for k, v in node.items() if k != "shared_object_id"}
        if isinstance(node, list):
            return [scrub(v) for v in node]
        return node

    digest = hashlib.sha256()
    with zipfile.ZipFile(path) as archive:
        for name in sorted(archive.namelist()):
            if name == "metadata.json":
                continue
            data = archive.read(name)
            if name == "config.json":
                data = json.dumps(scrub(json.loads(data)), sort_keys=True).encode()
            elif name.endswith(".h5"):
                data = _h5_values(data)
            digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return digest.hexdigest()


def _h5_values(data: bytes) -> bytes:
    """The datasets of an HDF5 file (name, dtype, shape, values), in name order, as bytes."""
    import io

    import h5py

    parts = []
    with h5py.File(io.BytesIO(data), "r") as handle:

        def visit(name, node):
            if isinstance(node, h5py.Dataset):
                value = np.asarray(node[()])
                header = f"{name}|{value.dtype.str}|{value.shape}".encode()
                parts.append((name, header + b"\0" + value.tobytes()))

        handle.visititems(visit)
    return b"".join(part for _, part in sorted(parts))


def load_model(path: Path):
    """A model and its card; clear errors for missing, corrupted or foreign files, and for
    a card that does not describe the network (channels, frequencies, windows, grid)."""
    import keras

    import bids_eeg2fmri.models.layers  # noqa: F401 - registers the custom layers
    from bids_eeg2fmri.models.cards import check_card_fits_network, check_model

    path = Path(path)
    card = check_model(path)  # the archive, the card, its SHA-256 (no TensorFlow)
    try:
        model = keras.saving.load_model(path, safe_mode=True)
    except Exception as err:  # noqa: BLE001 - keras raises many types on bad files
        message = " ".join(str(err).split())
        raise UsageError(
            f"--model {path}: not a readable Keras model: {type(err).__name__}: {message} "
            "(a .keras model saved by bids-eeg2fmri --train)"
        ) from None
    check_card_fits_network(
        card,
        tuple(model.input_shape[1:]),
        model=path,
        output_grid=tuple(model.output_shape[1:4]),
    )
    card.setdefault("digest", model_digest(path))  # cards written before the digest
    return model, card


def check_fits(card: dict, run: RunArrays) -> None:
    """Raise a clear error when a run's features do not fit the model."""
    info = run.features_info
    name = Path(run.eeg_file).name if run.eeg_file is not None else run.name
    if info["channels"] != card["channels"]:
        raise DataError(
            f"{name}: channels {info['channels']} differ from the model's {card['channels']}"
        )
    if len(info["frequencies"]) != len(card["frequencies"]) or not np.allclose(
        info["frequencies"], card["frequencies"], atol=1e-3
    ):
        got = info["frequencies"]
        raise DataError(
            f"{name}: {len(got)} frequencies of {got[0]:.3f} Hz "
            f"steps (TR {info['tr']:g} s); the model expects {len(card['frequencies'])} of "
            f"{card['frequencies'][0]:.3f} Hz (TR {card.get('tr', '?')} s)"
        )
    if info["n_windows"] != card["n_windows"]:
        raise DataError(
            f"{name}: {info['n_windows']} windows, the model expects {card['n_windows']}"
        )

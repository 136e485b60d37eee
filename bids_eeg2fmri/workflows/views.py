"""Each run's feature sets for the group-level classification, as a derivative:
``sub-X/[ses-Y/]eeg/<entities>_desc-views_features.tsv`` (+ JSON), one row per (view,
feature). The EEG views are written after preprocessing; a model applied or trained adds
its ``latent`` and ``synth`` views (evaluation/views.py says what each holds)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from bids_eeg2fmri.bidsio.files import write_json_atomic, write_text_atomic
from bids_eeg2fmri.bidsio.pairing import RunPair, bids_uri
from bids_eeg2fmri.bidsio.reading import read_tsv_rows
from bids_eeg2fmri.evaluation import views as v
from bids_eeg2fmri.models.data import RunArrays

LOGGER = logging.getLogger("bids_eeg2fmri")

SUFFIX = "_desc-views_features.tsv"
COLUMNS = {
    "view": {
        "Description": "The feature set: bandpower (log10 relative band power per channel), "
        "features (log10 mean PSD per channel and frequency, V^2/Hz), latent (the model's "
        "latent, mean and sd over the run), synth (synthesized z-scores, mean and sd over "
        "the run, averaged in blocks of voxels), nuisance (channel count of the file, "
        "length in s, line-noise and eye-movement power, log10)."
    },
    "feature": {"Description": "The feature's name within its view."},
    "value": {"Description": "Its value for this run."},
}


def views_path(output_dir: Path, pair: RunPair) -> Path:
    """Where a run's views table goes."""
    subject = Path(output_dir) / f"sub-{pair.subject}"
    if pair.session:
        subject = subject / f"ses-{pair.session}"
    return subject / "eeg" / f"{pair.name}{SUFFIX}"


def eeg_views(run: RunArrays) -> dict[str, dict[str, float]]:
    """The views that need no model, from the run's cached features information; none
    (with a WARNING) when the work directory's features predate the views."""
    info = run.features_info
    if not {"log_psd_mean", "n_channels_file", "duration_s"} <= set(info):
        LOGGER.warning(
            "%s: its cached features (work directory) were computed by an earlier version "
            "without the spectra the classification views need: no views for this run "
            "(rerun with a new -w/--work-dir to write them)",
            run.name,
        )
        return {}
    log_psd = np.asarray(info["log_psd_mean"], float)
    freqs = np.asarray(info["frequencies"], float)
    channels = list(info["channels"])
    return {
        "bandpower": v.band_power(log_psd, freqs, channels),
        "features": v.spectrum_features(log_psd, freqs, channels),
        "nuisance": v.nuisance(
            log_psd,
            freqs,
            channels,
            n_channels_file=int(info["n_channels_file"]),
            duration_s=float(info["duration_s"]),
        ),
    }


def write_views(
    path: Path,
    views: dict[str, dict[str, float]],
    *,
    sources: list[str],
    model: str | None,
    grid: dict | None = None,
) -> Path:
    """Write the views table and its sidecar atomically; ``grid`` (``{"shape": [x, y, z],
    "affine": 4 x 4}``) is the model grid the ``synth`` view's blocks are on."""
    lines = ["view\tfeature\tvalue"]
    for view, values in views.items():
        lines += [
            f"{view}\t{name}\t{value:.7g}" if np.isfinite(value) else f"{view}\t{name}\tn/a"
            for name, value in values.items()
        ]
    write_json_atomic(
        path.with_suffix(".json"),
        {
            "Description": "The run's feature sets for classifying participants "
            "(group --classify).",
            "Sources": sources,
            "Views": sorted(views),
            "Model": model,
            "SynthBlockVoxels": v.SYNTH_BLOCK if "synth" in views else None,
            "SynthGrid": grid if "synth" in views else None,
            **COLUMNS,
        },
    )
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path


def read_views(path: Path) -> dict[str, dict[str, float]]:
    """A views table back as {view: {feature: value}}; ValueError naming the file when it
    is not one."""
    views: dict[str, dict[str, float]] = {}
    header, rows = read_tsv_rows(path, error=ValueError)  # not UTF-8, ragged: named
    if header != list(COLUMNS):
        raise ValueError(f"{path}: not a views table (columns {header}, expected {list(COLUMNS)})")
    for number, (view, name, value) in rows:
        try:
            views.setdefault(view, {})[name] = float("nan") if value == "n/a" else float(value)
        except ValueError:
            raise ValueError(f"{path}: line {number}: value {value!r} is not a number") from None
    return views


def write_eeg_views(runs: list[RunArrays], pairs: list[RunPair], *, output_dir: Path,
                    bids_dir: Path) -> list[Path]:  # fmt: skip
    """The EEG views of every run (no model), after preprocessing."""
    written = []
    for run, pair in zip(runs, pairs, strict=True):
        views = eeg_views(run)
        if views:
            written.append(
                write_views(
                    views_path(output_dir, pair),
                    views,
                    sources=[bids_uri(pair.eeg, bids_dir)],
                    model=None,
                )
            )
    LOGGER.info("Feature sets for classification: %d run(s) (desc-views)", len(written))
    return written


def write_model_views(
    run: RunArrays,
    pair: RunPair,
    *,
    output_dir: Path,
    bids_dir: Path,
    latent: np.ndarray,
    synth: np.ndarray,
    card: dict,
) -> Path | None:
    """A run's views with the model's: ``latent`` (n_units, n_valid_volumes) and ``synth``
    (x, y, z, n_volumes) z-scores on the model grid (none when :func:`eeg_views` has none)."""
    views = eeg_views(run)
    if not views:
        return None
    views["latent"] = v.temporal_summary(latent, "unit")
    views["synth"] = v.synth_summary(synth, run.valid)
    return write_views(
        views_path(output_dir, pair),
        views,
        sources=[bids_uri(pair.eeg, bids_dir)],
        model=f"{card['name']} ({card['digest']})",
        grid={"shape": list(synth.shape[:3]), "affine": card["model_affine"]},
    )

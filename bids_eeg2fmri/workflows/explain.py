"""LRP outputs of the participant level: which EEG channels, frequencies and lags the
synthesized BOLD of each region rests on, per voxel per frequency band, and the
topographical attention graph.

Written per run (``<entities>`` = the run's source entities):

- ``eeg/<entities>_desc-lrp_relevance.tsv`` (+ JSON): long format, one row per (region,
  channel, frequency, lag), the relevance averaged over the explained volumes;
- ``func/<entities>_desc-lrp_relevance.nii.gz`` (+ JSON): per voxel, the relevance of each
  frequency band (4th axis);
- ``eeg/<entities>_desc-attention_graph.tsv`` (+ JSON): the mean attention weights, when
  the model has a topographical attention layer.
"""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path

import numpy as np

from bids_eeg2fmri.bidsio.files import write_json_atomic, write_nifti_atomic, write_tsv_atomic
from bids_eeg2fmri.bidsio.pairing import RunPair, bids_uri
from bids_eeg2fmri.models.data import RunArrays

LOGGER = logging.getLogger("bids_eeg2fmri")


def explained_volumes(valid: np.ndarray, n: int) -> np.ndarray:
    """At most ``n`` volumes with EEG, evenly spaced over the run."""
    index = np.flatnonzero(valid)
    if index.size <= n:
        return index
    return index[np.linspace(0, index.size - 1, n).round().astype(int)]


def simulated_regions(
    bids_dir: Path, subject: str, model_affine: np.ndarray, grid: tuple[int, int, int]
) -> tuple[list[str], np.ndarray] | None:
    """The simulator's source maps of a participant on the model grid, if it is simulated."""
    import nibabel as nib

    from bids_eeg2fmri.signals.bold import resample

    truth = Path(bids_dir) / "derivatives" / "simulation"
    try:
        sources = json.loads((truth / "simulation.json").read_text(encoding="utf-8"))
        names = [s["name"] for s in sources["config"]["sources"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    maps = []
    for name in names:
        found = sorted(truth.glob(f"sub-{subject}/**/sub-{subject}_label-{name}_probseg.nii.gz"))
        if not found:
            return None
        img = nib.load(found[0])
        maps.append(resample(np.asarray(img.dataobj, np.float32), img.affine, model_affine, grid))
    return names, np.stack(maps)


def regions_for(run: RunArrays, card: dict, bids_dir: Path) -> tuple[list[str], np.ndarray]:
    """Regions to explain: the simulated sources' maps, else octants of the brain mask."""
    import nibabel as nib

    from bids_eeg2fmri.explain.regions import coarse_parcellation

    affine, grid = np.asarray(card["model_affine"]), tuple(card["grid"])
    if run.bold_info is not None:
        affine = np.asarray(run.bold_info["model_affine"])
    simulated = simulated_regions(bids_dir, run.subject, affine, grid)
    if simulated is not None:
        return simulated
    if run.mask is None:
        return [], np.zeros((0, *grid), np.float32)
    mask = np.asarray(nib.load(run.mask).dataobj) > 0
    return coarse_parcellation(mask, affine)


def relevance_rows(names, channels, freqs, lags, towards, absolute) -> list[list[str]]:
    """The relevance table's rows, region by region, then channel, frequency and lag
    (``towards`` and ``absolute`` indexed so): formatted from flat lists, as indexing the
    arrays value by value took seconds per run (5 x 64 x 134 x 10 rows in the demo)."""
    keys = itertools.product(
        names, channels, [f"{f:.4f}" for f in freqs], [f"{lag:.4f}" for lag in lags]
    )
    signed = [f"{x:.6g}" for x in np.asarray(towards).ravel().tolist()]
    unsigned = [f"{x:.6g}" for x in np.asarray(absolute).ravel().tolist()]
    return [[*key, a, b] for key, a, b in zip(keys, signed, unsigned, strict=True)]


def write_relevance(
    model,
    card: dict,
    run: RunArrays,
    pair: RunPair,
    *,
    subject_dir: Path,
    bids_dir: Path,
    n_volumes: int,
    rule: str,
) -> list[Path]:
    """Explain the model's synthesis of one run (see the module docstring)."""
    from bids_eeg2fmri.evaluation.baselines import BANDS
    from bids_eeg2fmri.explain import lrp

    chosen = explained_volumes(run.valid, n_volumes)
    if chosen.size == 0:
        LOGGER.warning("%s: no volume with EEG to explain", pair.name)
        return []
    eeg = np.asarray(run.inputs()[chosen], np.float32)[..., None]
    names, regions = regions_for(run, card, bids_dir)
    grid = tuple(card["grid"])
    regions = np.concatenate([np.ones((1, *grid), np.float32), regions])
    names = ["volume", *names]
    # relevance of each volume's deviation from the prediction for the run's average
    # spectrum (features are z-scored per run: zero is that average), signed towards the
    # way each region's synthesized signal moved (lrp module docstring: the mean |R| of
    # every input bin drowned a weak source's band in noise)
    freqs = np.asarray(card["frequencies"], float)
    band_names = [b for b, (lo, hi) in BANDS.items() if ((freqs >= lo) & (freqs < hi)).any()]
    band_masks = np.stack([(freqs >= BANDS[b][0]) & (freqs < BANDS[b][1]) for b in band_names])
    relevance, voxels = lrp.relevance_maps(
        model, eeg, regions, band_masks, rule=rule, reference="zero", aligned=True
    )
    towards, absolute = relevance.mean(axis=0), np.abs(relevance).mean(axis=0)
    voxels = voxels.mean(axis=0)
    del relevance

    channels = list(card["channels"])
    tr, windows = float(card["tr"]), int(card["n_windows"])
    lags = (windows - 1 - np.arange(windows)) * tr  # window w ends this long before onset
    eeg_dir, func_dir = subject_dir / "eeg", subject_dir / "func"
    table = eeg_dir / f"{pair.name}_desc-lrp_relevance.tsv"
    rows = relevance_rows(names, channels, freqs, lags, towards, absolute)

    sources = [bids_uri(pair.eeg, bids_dir)]
    rule_text = (
        "epsilon rule (biases keep their share)"
        if rule == "epsilon"
        else "z+ rule (positive contributions only)"
    )
    write_json_atomic(
        table.with_suffix(".json"),
        {
            "Description": "Layer-wise relevance propagation (LRP, "
            f"{rule_text}) of the synthesized BOLD of each region to the model's EEG input: "
            "the deviation of each volume's synthesized signal from the prediction for the "
            "run's average EEG spectrum (the reference: zero, features being z-scored per "
            f"run), over {chosen.size} volumes evenly spaced over the run.",
            "Sources": sources,
            "ModelDigest": card["digest"],
            "Volumes": chosen.tolist(),
            "region": {
                "Description": "Where the explained output is: 'volume' (the whole "
                "synthesized volume) or a region (simulated sources, or octants of the "
                "brain mask)."
            },
            "channel": {"Description": "EEG channel."},
            "frequency": {"Description": "Frequency of the spectral feature.", "Units": "Hz"},
            "lag": {
                "Description": "How long before the volume's onset the EEG window ends "
                "(each window lasts one TR).",
                "Units": "s",
            },
            "relevance": {
                "Description": "Mean over the explained volumes of the relevance signed by "
                "the direction in which the region's synthesized signal moved away from the "
                "prediction for the run's average EEG spectrum: positive, this input pushed "
                "the region's signal the way it went; negative, it held it back; an input "
                "that moves it at random averages out. Linear: sums over channels, "
                "frequencies and lags are the relevance of those inputs together, and the sum "
                "over every input of a region is the mean over volumes of the absolute "
                "change of its synthesized signal summed over its voxels (z-scores; up to "
                "what the epsilon stabilizer absorbs)."
            },
            "absolute_relevance": {
                "Description": "Mean over the same volumes of the absolute relevance: how "
                "much this input moves the region's signal in either direction, noise "
                "included."
            },
        },
    )
    header = ["region", "channel", "frequency", "lag", "relevance", "absolute_relevance"]
    write_tsv_atomic(table, header, rows)
    written = [table]

    affine = np.asarray(card["model_affine"])
    if run.bold_info is not None:
        from bids_eeg2fmri.signals.bold import resample

        voxels = resample(
            voxels,
            np.asarray(run.bold_info["model_affine"]),
            np.asarray(run.bold_info["native_affine"]),
            tuple(run.bold_info["native_shape"]),
        )
        affine = np.asarray(run.bold_info["native_affine"])
    volume_path = func_dir / f"{pair.name}_desc-lrp_relevance.nii.gz"
    write_nifti_atomic(
        volume_path,
        voxels,
        affine,
        {
            "Description": f"LRP ({rule_text}) per voxel: the relevance of each frequency "
            "band of the EEG input (all channels and lags) for the voxel's synthesized "
            "signal's deviation from the prediction for the run's average EEG spectrum, "
            "signed by the direction of that deviation (positive: the band pushed the voxel "
            f"the way it went), averaged over {chosen.size} volumes.",
            "Bands": band_names,
            "BandLimits": {
                b: [BANDS[b][0], min(BANDS[b][1], float(freqs.max()))] for b in band_names
            },
            "Sources": sources,
            "ModelDigest": card["digest"],
            "SkullStripped": False,
        },
    )
    written.append(volume_path)

    graph = lrp.attention_graph(model, eeg)
    if graph is not None:
        mean = graph.mean(axis=0)
        path = eeg_dir / f"{pair.name}_desc-attention_graph.tsv"
        rows = [[channel, *(f"{w:.6g}" for w in mean[i])] for i, channel in enumerate(channels)]
        write_json_atomic(
            path.with_suffix(".json"),
            {
                "Description": "Topographical attention graph: row i holds the weights with "
                "which the model mixes every channel j into channel i (rows sum to 1), "
                f"averaged over {chosen.size} volumes.",
                "Sources": sources,
                "ModelDigest": card["digest"],
            },
        )
        write_tsv_atomic(path, ["channel", *channels], rows)
        written.append(path)
    LOGGER.info("Relevance of %s: %d volumes, %d regions", pair.name, chosen.size, len(names))
    return written

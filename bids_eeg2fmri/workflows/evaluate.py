"""Yardsticks and metrics of the participant level, after synthesis.

- :func:`fit_baselines`: the mean training volume and a per-voxel ridge regression on
  HRF-convolved EEG band power, both fitted on the training participants' cached arrays
  (model grid, z-scores), the validation volumes choosing the ridge penalty.
- :func:`write_run_metrics`: every method against the observed BOLD of a run, on the
  source grid and in its units, as ``func/<entities>_desc-synth_metrics.tsv`` (+ JSON) and
  the model's voxelwise r map ``func/<entities>_desc-corr_statmap.nii.gz`` (+ JSON).

All methods are put back in source units with the run's own voxel means and standard
deviations (as the synthesized BOLD is), so they are compared on equal terms.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bids_eeg2fmri.bidsio.files import write_json_atomic, write_nifti_atomic, write_tsv_atomic
from bids_eeg2fmri.bidsio.pairing import RunPair, bids_uri
from bids_eeg2fmri.evaluation import tables
from bids_eeg2fmri.models.data import RunArrays

LOGGER = logging.getLogger("bids_eeg2fmri")


@dataclass(frozen=True)
class Baselines:
    """Fitted yardsticks (model grid, z-scores)."""

    mean_volume: np.ndarray  # (x, y, z)
    ridge: object  # RidgeBaseline fitted on the voxels of ``voxels``
    voxels: np.ndarray  # (x, y, z) bool: where the ridge predicts (the training masks' union)

    def predict(self, run: RunArrays) -> dict[str, np.ndarray]:
        """Each baseline's z-scored volumes for a run, (x, y, z, n_volumes), float32."""
        n = run.valid.size
        X, valid, _ = _design(run)
        ok = valid & run.valid
        inside = np.zeros((int(self.voxels.sum()), n), np.float32)
        if ok.any():
            inside[:, ok] = self.ridge.predict(X[ok]).T
        ridge = np.zeros((*self.voxels.shape, n), np.float32)
        ridge[self.voxels] = inside
        return {"mean-volume": np.repeat(self.mean_volume[..., None], n, axis=-1), "ridge": ridge}


def _design(run: RunArrays) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The ridge's regressors of a run, which volumes have them, and the bands used."""
    from bids_eeg2fmri.evaluation.baselines import band_power, hrf_design

    features = np.load(run.features, mmap_mode="r")
    power, bands = band_power(features, np.asarray(run.features_info["frequencies"]))
    X, valid = hrf_design(power, tr=float(run.features_info["tr"]), n_windows=run.n_windows)
    return X, valid, bands


def fit_baselines(runs: list[RunArrays], plan: dict) -> Baselines:
    """Fit both baselines on the training volumes of ``plan`` (see ``plan_split``)."""
    import nibabel as nib

    from bids_eeg2fmri.evaluation.baselines import RidgeBaseline, mean_volume

    train = plan["train"]
    volumes = [runs[i].targets()[..., np.asarray(v)] for i, v in train.items()]
    mean = mean_volume(volumes).astype(np.float32)
    voxels = np.zeros(mean.shape, bool)
    for i in train:
        voxels |= np.asarray(nib.load(runs[i].mask).dataobj) > 0

    def stack(part: dict) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
        xs, ys, who = [], [], []
        for i, chosen in part.items():
            X, valid, bands = _design(runs[i])
            chosen = np.asarray(chosen)
            chosen = chosen[valid[chosen] & runs[i].valid[chosen]]
            xs.append(X[chosen])
            ys.append(np.asarray(runs[i].targets()[..., chosen][voxels].T, np.float32))
            who += [runs[i].subject] * chosen.size
        return np.concatenate(xs), np.concatenate(ys), bands, np.asarray(who)

    X, Y, bands, subjects = stack(train)
    # the penalty is chosen for unseen participants: on the validation participants, else
    # leaving each training participant out in turn (the end of the training runs, which
    # stops the model's training, would choose it for unseen volumes of seen participants)
    validation, groups, n_subjects = (None, None), None, np.unique(subjects).size
    if (plan.get("participants") or {}).get("validation"):
        validation, how = stack(plan["validation"])[:2], "on the validation participants"
    elif n_subjects >= 2:
        groups = subjects
        how = f"leaving each of the {n_subjects} training participants out in turn"
    elif plan["validation"]:
        validation, how = stack(plan["validation"])[:2], "on the validation volumes"
    else:
        how = "by generalised cross-validation"
    ridge = RidgeBaseline().fit(X, Y, *validation, groups=groups)
    LOGGER.info(
        "Baselines fitted on %d training volumes: ridge on %d regressors (%s band power, "
        "HRF-convolved), penalty %g chosen %s",
        X.shape[0],
        X.shape[1],
        "/".join(bands),
        ridge.alpha_,
        how,
    )
    return Baselines(mean, ridge, voxels)


def observed_volumes(run: RunArrays, pair: RunPair, dummy_scans: int) -> np.ndarray:
    """The observed BOLD as stored, minus the dummy scans, float32 (x, y, z, t)."""
    import nibabel as nib

    data = np.asarray(nib.load(pair.bold).dataobj, dtype=np.float32)
    return data[..., dummy_scans:]


def native_mask(run: RunArrays) -> np.ndarray:
    """The run's brain mask (model grid) on its native grid, bool."""
    import nibabel as nib

    from bids_eeg2fmri.signals.bold import resample

    info = run.bold_info
    mask = np.asarray(nib.load(run.mask).dataobj, dtype=np.float32)
    mask = resample(
        mask,
        np.asarray(info["model_affine"]),
        np.asarray(info["native_affine"]),
        tuple(info["native_shape"]),
    )
    return mask > 0.5


def noise_ceiling(bids_dir: Path, pair: RunPair) -> np.ndarray | None:
    """The simulator's noise ceiling of a run (NaN outside coupled voxels), if there is one."""
    import nibabel as nib

    path = (
        Path(bids_dir)
        / "derivatives"
        / "simulation"
        / pair.bold.parent.relative_to(bids_dir)
        / f"{pair.name}_noiseceiling.nii.gz"
    )
    return np.asarray(nib.load(path).dataobj, np.float32) if path.is_file() else None


def volume_splits(i: int, n_volumes: int, plan: dict | None) -> np.ndarray:
    """The split of every volume of run ``i`` (``applied`` where ``plan`` has no role for it:
    data the model was not trained on)."""
    splits = np.full(n_volumes, "applied", dtype=object)
    for name in ("train", "validation", "holdout"):
        if plan is not None and i in plan[name]:
            splits[np.asarray(plan[name][i], int)] = name
    return splits


def write_run_metrics(
    *,
    output_func: Path,
    pair: RunPair,
    run: RunArrays,
    predictions: dict[str, np.ndarray],
    splits: np.ndarray,
    bids_dir: Path,
    dummy_scans: int,
) -> dict[str, dict[str, float]]:
    """Metrics of every method for one run (one row per volume with EEG); returns the
    run-level values per method.

    ``predictions`` maps a method (``model`` first) to its z-scored volumes on the model
    grid, (x, y, z, n_volumes). Per-volume metrics compare them with the observed BOLD as
    preprocessed for training (the original's convention); the temporal r puts them back
    in source units on the source grid and compares them with the BOLD as stored (the
    simulator's noise ceiling is defined there).
    """
    import nibabel as nib

    from bids_eeg2fmri.models.synthesis import to_source_space

    kept = np.flatnonzero(run.valid)
    evaluated = kept[tables.evaluation_volumes(splits[kept])]
    targets = np.asarray(run.targets()[..., kept], np.float32)
    mask = np.asarray(nib.load(run.mask).dataobj) > 0
    observed = observed_volumes(run, pair, dummy_scans)[..., evaluated]
    native = native_mask(run)
    ceiling = noise_ceiling(bids_dir, pair)
    rows, summary, r_model = [], {}, None
    for method, z in predictions.items():
        # outside the mask every method's output is the voxel's mean (z = 0), as written
        per_volume = tables.volume_metrics(z[..., kept] * mask[..., None], targets, mask)
        constant = method == "mean-volume"
        pred = None if constant else to_source_space(z[..., evaluated], run)[0]
        per_run, r = tables.temporal_metrics(pred, observed, native, ceiling=ceiling)
        rows += tables.table_rows(method, kept, splits[kept], per_volume, per_run)
        summary[method] = per_run
        if method == "model":
            r_model = r
    table = output_func / f"{pair.name}_desc-synth_metrics.tsv"
    write_json_atomic(table.with_suffix(".json"), _metrics_sidecar(pair, bids_dir, output_func))
    write_tsv_atomic(table, list(tables.COLUMNS), rows)
    if r_model is not None:
        corr = output_func / f"{pair.name}_desc-corr_statmap.nii.gz"
        write_nifti_atomic(
            corr,
            r_model,
            np.asarray(run.bold_info["native_affine"]),
            {
                "Description": "Voxelwise temporal Pearson r of the synthesized and the "
                "observed BOLD over the run's evaluated volumes (held-out ones when it has "
                "any, else all volumes with EEG); NaN where a series is constant.",
                "Sources": [
                    f"bids::{_relative(output_func / f'{pair.name}_desc-synth_bold.nii.gz')}",
                    bids_uri(pair.bold, bids_dir),
                ],
                "Volumes": [int(v) for v in evaluated],
                "SkullStripped": False,
            },
        )
    return summary


def _relative(path: Path) -> str:
    """``sub-01/func/x`` from ``<output>/sub-01/func/x``: the path from the sub- folder."""
    parts = Path(path).parts
    start = next(i for i, p in enumerate(parts) if p.startswith("sub-"))
    return Path(*parts[start:]).as_posix()


def _metrics_sidecar(pair: RunPair, bids_dir: Path, output_func: Path) -> dict:
    return {
        "Description": "Synthesized and baseline BOLD against the observed BOLD, per volume "
        "(rows of one method) and per run (values repeated on each row of a method). All "
        "methods are in source units, put back with the run's own voxel means and standard "
        "deviations, so the comparison is on equal terms.",
        "Sources": [
            f"bids::{_relative(output_func / f'{pair.name}_desc-synth_bold.nii.gz')}",
            bids_uri(pair.eeg, bids_dir),
            bids_uri(pair.bold, bids_dir),
        ],
        **tables.COLUMNS,
    }

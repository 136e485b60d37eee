"""The ``synth`` view's classifier as maps on the model grid.

The ``synth`` view holds, per block of voxels, the mean and the standard deviation over a
run of the synthesized z-scores (evaluation/views.py). The classifier fitted on every
participant gives each such feature a weight and an activation pattern
(evaluation/classify.weights_and_pattern); here both go back onto the model grid, every
voxel taking its block's value: ``group_desc-classify_weights.nii.gz`` and
``group_desc-classify_pattern.nii.gz``, 4-D with two volumes (mean, sd), with sidecars.
With a Keras head (``--classifier``), one volume: the head's on a window's blocks.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

LOGGER = logging.getLogger("bids_eeg2fmri")

WEIGHTS = "group_desc-classify_weights.nii.gz"
PATTERN = "group_desc-classify_pattern.nii.gz"
STATS = ("mean", "sd")
#: the volume of a window's block features (workflows/classify_heads.py)
WINDOW_STATS = ("volume",)
_BLOCK = re.compile(r"^b(\d+)_(\d+)_(\d+)_([a-z]+)$")


def block_maps(
    names: Sequence[str],
    values: np.ndarray,
    shape: Sequence[int],
    block: int,
    stats: Sequence[str] = STATS,
) -> np.ndarray:
    """Voxel maps (x, y, z, one per statistic: mean, sd) in which every voxel holds the
    value of its block's feature (0 where the view has no finite feature for the block).

    Raises
    ------
    ValueError
        A name that is not a block feature ``b<i>_<j>_<k>_<stat>`` of ``stats``.
    """
    shape = tuple(int(n) for n in shape[:3])
    blocks = tuple(-(-n // block) for n in shape)
    grid = np.zeros((*blocks, len(stats)))
    for name, value in zip(names, values, strict=True):
        match = _BLOCK.match(name)
        if match is None or match.group(4) not in stats:
            raise ValueError(
                f"{name!r} is not a synth block feature (b<i>_<j>_<k>_{'|'.join(stats)})"
            )
        i, j, k = (int(g) for g in match.groups()[:3])
        grid[i, j, k, list(stats).index(match.group(4))] = value
    index = [np.arange(n) // block for n in shape]
    return grid[np.ix_(*index)]


def synth_grid(output_dir: Path, subjects: Sequence[str]) -> tuple[tuple, np.ndarray, int] | None:
    """``(shape, affine, block)`` of the model grid from the first classified participant's
    views sidecar that records it (``SynthGrid``, ``SynthBlockVoxels``); None if none does."""
    import json

    from bids_eeg2fmri.workflows.views import SUFFIX

    for subject in subjects:
        for table in sorted(Path(output_dir).glob(f"sub-{subject}/**/eeg/*{SUFFIX}")):
            try:
                meta = json.loads(table.with_suffix(".json").read_text(encoding="utf-8"))
                grid, block = meta["SynthGrid"], int(meta["SynthBlockVoxels"])
                return tuple(int(n) for n in grid["shape"]), np.asarray(grid["affine"]), block
            except (OSError, ValueError, KeyError, TypeError):
                continue
    return None


def remove_maps(output_dir: Path) -> None:
    """Remove an earlier run's maps (and sidecars), so none describes another target."""
    for name in (WEIGHTS, PATTERN):
        path = Path(output_dir) / name
        if path.exists():
            for old in (path, path.with_name(name.replace(".nii.gz", ".json"))):
                old.unlink(missing_ok=True)
            LOGGER.info("Removed the earlier %s", name)


def write_synth_maps(
    output_dir: Path,
    subjects: Sequence[str],
    names: Sequence[str],
    weights: np.ndarray,
    pattern: np.ndarray,
    *,
    c: float | None,
    target: str,
    head: str | None = None,
) -> list[Path]:
    """Write both maps on the model grid the views were computed on; none (with a
    warning) when no views sidecar records that grid (views of an earlier version).
    ``head``: the weights are a Keras head's (models/heads.py), on a window's blocks
    (one volume), instead of the logistic regression's on the run's mean and sd."""
    from bids_eeg2fmri.bidsio.files import write_nifti_atomic

    found = synth_grid(output_dir, subjects)
    if found is None:
        LOGGER.warning(
            "--classify: no views sidecar in %s records the model grid (SynthGrid: views "
            "written by an earlier version): the synth view's maps are not written",
            output_dir,
        )
        return []
    shape, affine, block = found
    stats = WINDOW_STATS if head else STATS
    common = {
        "Target": target,
        "Volumes": ["one synthesized volume (a window)"] if head
        else ["mean over the run", "standard deviation over the run"],
        "BlockVoxels": block,
        **({"Head": head} if head else {"PenaltyC": c}),
    }  # fmt: skip
    fitted = (
        f"the {head} head (linear: projection then logit) trained on every participant's "
        "windows" if head else "the L2 logistic regression fitted on every participant's "
        "synth view"
    )  # fmt: skip
    written = []
    for filename, values, description in (
        (WEIGHTS, weights, f"Weights of {fitted} (standardised features), each voxel its "
         "block's."),
        (PATTERN, pattern, "Activation pattern of those weights (Haufe et al. 2014): "
         "covariance of each standardised feature with the decision, over its variance."),
    ):  # fmt: skip
        data = block_maps(names, values, shape, block, stats)
        meta = {"Description": description, **common}
        written.append(write_nifti_atomic(Path(output_dir) / filename, data, affine, meta))
    LOGGER.info("Synth view maps: %s", ", ".join(p.name for p in written))
    return written

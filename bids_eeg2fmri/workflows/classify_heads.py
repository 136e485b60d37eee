"""The ``synth`` view classified by one of the original's heads (``group --classify ...
--classifier contrastive|likelihood``, models/heads.py) instead of the logistic regression.

A head learns from windows, not from a participant's summary: every volume with EEG of
the participant's synthesized runs (``func/*_desc-synth_bold.nii.gz`` on the model grid,
as the participant level writes it for EEG-only runs), averaged in the same blocks of
voxels as the ``synth`` view. Folds, permutations and statistics are those of the other
views (evaluation/classify.py); a participant's probability is the mean over its windows.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bids_eeg2fmri.errors import DataError, NoInputError
from bids_eeg2fmri.evaluation import classify as clf
from bids_eeg2fmri.evaluation.views import block_means

LOGGER = logging.getLogger("bids_eeg2fmri")

#: Volumes block-averaged at a time (a run is never held twice in float64).
_CHUNK = 32


def window_names(shape: Sequence[int], block: int) -> list[str]:
    """Feature names of a window, in the order of :func:`synth_windows`' columns."""
    blocks = tuple(-(-int(n) // block) for n in shape[:3])
    return ["b{}_{}_{}_volume".format(*index) for index in np.ndindex(blocks)]


def synth_windows(
    output_dir: Path, subjects: Sequence[str], grid: tuple | None, kind: str
) -> list[np.ndarray]:
    """Each participant's windows (n_windows, n_blocks), in ``subjects``' order: the block
    means of every volume with EEG of its synthesized runs on the model grid ``grid``
    (shape, affine, block, from the views sidecars).

    Raises
    ------
    NoInputError
        No model grid recorded, or a participant without a synthesized volume with EEG.
    DataError
        A synthesized run that is not z-scores on the model grid (a run with BOLD is
        synthesized on the BOLD's grid, in its units), or that cannot be read.
    """
    if grid is None:
        raise NoInputError(
            f"--classifier {kind}: no views sidecar in {output_dir} records the model grid "
            "(SynthGrid): rerun the participant level with this version"
        )
    shape, affine, block = grid
    out = []
    for subject in subjects:
        runs = []
        for path in sorted(
            Path(output_dir).glob(f"sub-{subject}/**/func/*_desc-synth_bold.nii.gz")
        ):
            runs += _run_windows(path, tuple(shape), affine, block, kind)
        if not runs:
            raise NoInputError(
                f"--classifier {kind}: no synthesized volume with EEG "
                f"(func/*_desc-synth_bold.nii.gz) for sub-{subject} in {output_dir}"
            )
        out.append(np.concatenate(runs))
    return out


def _run_windows(path: Path, shape: tuple, affine, block: int, kind: str) -> list[np.ndarray]:
    import nibabel as nib

    sidecar = path.with_name(path.name.replace(".nii.gz", ".json"))
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        image = nib.load(path)
        data = np.asarray(image.dataobj, np.float32)
    except (OSError, ValueError, EOFError) as err:  # nibabel's errors are ValueErrors
        raise DataError(f"{path}: unreadable ({err})") from None
    on_grid = image.shape[:3] == shape and np.allclose(image.affine, affine, atol=1e-4)
    if data.ndim != 4 or not on_grid or "z-scores" not in str(meta.get("Units", "")):
        raise DataError(
            f"{path}: not the model's z-scores on its grid {shape} (a run with BOLD is "
            f"synthesized on the BOLD's grid, in its units): --classifier {kind} needs "
            "EEG-only runs"
        )
    gaps = meta.get("VolumesWithoutEEG", [])
    if not isinstance(gaps, list) or not all(
        isinstance(g, int) and 0 <= g < data.shape[3] for g in gaps
    ):
        raise DataError(f"{sidecar}: VolumesWithoutEEG is not a list of volume indices")
    chosen = np.setdiff1d(np.arange(data.shape[3]), gaps)
    windows = []
    for first in range(0, chosen.size, _CHUNK):
        blocks = block_means(data[..., chosen[first : first + _CHUNK]], block)
        windows.append(blocks.reshape(-1, blocks.shape[-1]).T)
    return windows


def classify_with_head(
    windows: list[np.ndarray],
    y: np.ndarray,
    folds: np.ndarray,
    protocol: clf.Protocol,
    grid: tuple,
    kind: str,
    *,
    seed: int,
    progress=None,
) -> tuple[tuple, dict]:
    """The ``synth`` view's result with a head on the participants' ``windows`` (from
    :func:`synth_windows`): ``(probability, auc, p, n_features)`` as workflows/classify.py
    keeps it, and ``{"names", "weights", "pattern"}`` of the head fitted on every
    participant (for the maps)."""
    from bids_eeg2fmri.models import heads

    settings = heads.HeadSettings(kind)
    trainings = folds.shape[0] * (int(folds.max()) + 1)
    LOGGER.info(
        "Classifying synth with the %s head (Keras) on %d windows of %d blocks: %d "
        "trainings (repeats x folds), as many again per permutation",
        kind,
        sum(len(w) for w in windows),
        windows[0].shape[1],
        trainings,
    )
    if protocol.n_permutations * trainings > 2000:
        LOGGER.warning(
            "--classifier %s with %d permutation(s): %d head trainings on one process (a "
            "few seconds each): lower --permutations or --cv-repeats for a first look",
            kind,
            protocol.n_permutations,
            (protocol.n_permutations + 1) * trainings,
        )
    probability = heads.out_of_fold(windows, y, folds, settings, seed=seed + 1)
    observed = clf.auc(y, probability.mean(axis=0))
    p_value = float("nan")
    if protocol.n_permutations:
        null = heads.permutation_aucs(
            windows, y, protocol, settings, seed=seed + 2, progress=progress
        )
        p_value = clf.permutation_p(observed, null)
    x = np.concatenate(windows)
    labels = np.concatenate([np.full(len(w), y[j]) for j, w in enumerate(windows)])
    owners = np.concatenate([np.full(len(w), j) for j, w in enumerate(windows)])
    fitted = heads.fit_head(x, labels, owners, settings, seed=seed + 3)
    z = (x - fitted.mean) / fitted.scale
    decision = z @ fitted.weights
    spread = decision.var()
    pattern = (
        z.T @ (decision - decision.mean()) / len(z) / spread if spread > 0 else fitted.weights * 0
    )
    maps = {
        "names": window_names(grid[0], grid[2]),
        "weights": fitted.weights,
        "pattern": pattern,
    }
    return (probability, observed, p_value, int(x.shape[1])), maps

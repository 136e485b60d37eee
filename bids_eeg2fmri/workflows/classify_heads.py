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
    output_dir: Path, subjects: Sequence[str], grid: tuple, kind: str
) -> dict[str, np.ndarray]:
    """``{participant: (n_windows, n_blocks)}``: the block means of every volume with EEG
    of each participant's synthesized runs on the model grid ``grid`` (shape, affine,
    block). A participant without such runs is left out.

    Raises
    ------
    DataError
        A synthesized run that is not on the model grid (a run with BOLD, synthesized on
        the BOLD's grid), or whose sidecar cannot be read.
    """
    import nibabel as nib

    shape, affine, block = grid
    out: dict[str, np.ndarray] = {}
    for subject in subjects:
        runs = []
        for path in sorted(
            Path(output_dir).glob(f"sub-{subject}/**/func/*_desc-synth_bold.nii.gz")
        ):
            image = nib.load(path)
            if image.shape[:3] != tuple(shape) or not np.allclose(image.affine, affine, atol=1e-4):
                raise DataError(
                    f"{path}: not on the model grid {tuple(shape)} (a run with BOLD is "
                    f"synthesized on the BOLD's grid): --classifier {kind} needs EEG-only runs"
                )
            sidecar = path.with_name(path.name.replace(".nii.gz", ".json"))
            try:
                gaps = json.loads(sidecar.read_text(encoding="utf-8")).get("VolumesWithoutEEG", [])
            except (OSError, ValueError, AttributeError) as err:
                raise DataError(f"{sidecar}: unreadable ({err})") from None
            data = np.asarray(image.dataobj, np.float32)
            valid = np.ones(data.shape[3], bool)
            valid[np.asarray(gaps, int)] = False
            chosen = np.flatnonzero(valid)
            for start in range(0, chosen.size, _CHUNK):
                blocks = block_means(data[..., chosen[start : start + _CHUNK]], block)
                runs.append(blocks.reshape(-1, blocks.shape[-1]).T)
        if runs:
            out[subject] = np.concatenate(runs)
    return out


def classify_with_head(
    output_dir: Path,
    subjects: list[str],
    y: np.ndarray,
    folds: np.ndarray,
    protocol: clf.Protocol,
    grid: tuple | None,
    kind: str,
    *,
    seed: int,
    progress=None,
) -> tuple[tuple, dict]:
    """The ``synth`` view's result with a head: ``(probability, auc, p, n_features)`` as
    workflows/classify.py keeps it, and ``{"names", "weights", "pattern"}`` of the head
    fitted on every participant (for the maps)."""
    from bids_eeg2fmri.models import heads

    if grid is None:
        raise NoInputError(
            f"--classifier {kind}: no views sidecar in {output_dir} records the model grid "
            "(SynthGrid): rerun the participant level with this version"
        )
    found = synth_windows(output_dir, subjects, grid, kind)
    missing = [s for s in subjects if s not in found]
    if missing:
        raise NoInputError(
            f"--classifier {kind}: no synthesized run (func/*_desc-synth_bold.nii.gz) for "
            f"participant(s) {', '.join(missing)} in {output_dir}"
        )
    windows = [found[s] for s in subjects]
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

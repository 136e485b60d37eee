"""The cached arrays of each run (written by the preprocessing workflow), streamed to the
model: EEG inputs from the memory-mapped features, targets from the memory-mapped BOLD."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class RunArrays:
    """Where a run's cached arrays are, and what they are."""

    name: str  # source entities, e.g. sub-01_task-rest
    subject: str
    features: Path  # .npy (n_volumes + W - 1, channels, freqs), float32
    features_info: dict
    bold: Path | None = None  # .nii (x, y, z, n_volumes) z-scored, model grid
    mask: Path | None = None
    mean: Path | None = None
    std: Path | None = None
    bold_info: dict | None = None
    eeg_file: Path | None = None
    bold_file: Path | None = None

    @property
    def valid(self) -> np.ndarray:
        """Volumes with a full EEG input (bool, n_volumes)."""
        return np.asarray(self.features_info["valid"], bool)

    @property
    def n_windows(self) -> int:
        return int(self.features_info["n_windows"])

    def inputs(self) -> np.ndarray:
        """Memory-mapped model inputs, (n_volumes, channels, freqs, windows) (a view)."""
        from bids_eeg2fmri.signals.features import model_inputs

        features = np.load(self.features, mmap_mode="r")
        return model_inputs(features, self.n_windows)[0]

    def targets(self) -> np.ndarray:
        """Memory-mapped z-scored BOLD on the model grid, (x, y, z, n_volumes)."""
        import nibabel as nib

        return np.asarray(nib.load(self.bold, mmap=True).dataobj)


def load_run_arrays(node_dir: Path, *, name: str, subject: str, eeg_file, bold_file) -> RunArrays:
    """Collect a run's arrays from its workflow folder (``<work>/<wf>/<run>/``)."""
    features_dir, bold_dir = Path(node_dir) / "eeg_features", Path(node_dir) / "prepare_bold"
    info = json.loads((features_dir / "features.json").read_text())
    kwargs = {}
    if bold_file is not None:
        kwargs = {
            "bold": bold_dir / "bold.nii",
            "mask": bold_dir / "mask.nii.gz",
            "mean": bold_dir / "mean.nii.gz",
            "std": bold_dir / "std.nii.gz",
            "bold_info": json.loads((bold_dir / "bold.json").read_text()),
            "bold_file": Path(bold_file),
        }
    return RunArrays(
        name=name,
        subject=subject,
        features=features_dir / "features.npy",
        features_info=info,
        eeg_file=Path(eeg_file),
        **kwargs,
    )


def split_participants(
    subjects: list[str], holdout: tuple[str, ...] = (), validation: tuple[str, ...] = ()
) -> tuple[list[str], list[str], list[str]]:
    """Participant-wise (train, validation, holdout) split.

    Default holdout: the last 20 % of the participants in sorted order (of those that do
    not validate), at least one when there are 2 or more (with a single participant,
    volumes are split in time instead).
    Validation: the ``validation`` participants (kept out of training, for early stopping),
    else none: every other participant trains and a time split of its runs serves for early
    stopping. On the simulator, 4 training participants validated in time generalised
    better to held-out participants than 3 with a fourth validating (0.71 / 0.65 / 0.71 of
    the noise ceiling against 0.69 / 0.61 / 0.67 over 3 seeds; benchmarks/NOTES.md).
    """
    subjects = sorted(set(subjects))
    for option, labels in (("--holdout-label", holdout), ("--validation-label", validation)):
        unknown = sorted(set(labels) - set(subjects))
        if unknown:
            raise ValueError(f"{option}: no selected run of {', '.join(unknown)}")
    both = sorted(set(holdout) & set(validation))
    if both:
        raise ValueError(
            f"--validation-label and --holdout-label both name {', '.join(both)}: a participant "
            "either validates the training or is held out of it"
        )
    rest = [s for s in subjects if s not in validation]
    if holdout:
        held = sorted(holdout)
    else:  # chosen among the participants that do not validate
        held = rest[-max(1, round(len(subjects) / 5)) :] if len(rest) >= 2 else []
    train = [s for s in rest if s not in held]
    if not train:
        raise ValueError("every selected participant is held out or validates: nothing to train on")
    return train, sorted(validation), held


#: the share of each training run (its end) that stops the training when no participant validates
VALIDATION_FRACTION = 0.1


def time_split(n: int, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the first ``1 - fraction`` and the last ``fraction`` of ``n`` volumes."""
    cut = int(round(n * (1 - fraction)))
    return np.arange(cut), np.arange(cut, n)

"""Participant groups with a known group effect: patients (P) and healthy controls (HC).

``--groups N_POSITIVE N_NEGATIVE`` makes N_NEGATIVE healthy controls (the first
participant labels) then N_POSITIVE patients, sorted as in ds004000, so a classifier must
shuffle. ``--group-effect SIZE`` multiplies the oscillation amplitude of the alpha source
by ``1 + SIZE`` in patients; everything else, and every random draw, is the same in both
groups, so ``SIZE = 0`` (the null) gives the dataset without groups, apart from the
``group`` column.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bids_eeg2fmri.simulate.generator import SimulationConfig

POSITIVE = "P"
NEGATIVE = "HC"
LEVELS = {POSITIVE: "patients (simulated group effect applied)", NEGATIVE: "healthy controls"}
#: The source whose oscillation amplitude differs between the groups.
EFFECT_SOURCE = "alpha"
EFFECT_PROPERTY = f"{EFFECT_SOURCE} source amplitude x (1 + size) in {POSITIVE}"


def participants_from_options(
    groups: Sequence[int] | None, group_effect: float | None, participants: int | None
) -> int:
    """The participant count the simulator's options ask for.

    Parameters
    ----------
    groups
        ``--groups N_POSITIVE N_NEGATIVE``, or None.
    group_effect
        ``--group-effect SIZE``, or None when not given.
    participants
        ``--participants``, or None when not given.

    Returns
    -------
    int
        ``N_POSITIVE + N_NEGATIVE`` with groups, else ``participants`` (default 2).

    Raises
    ------
    ValueError
        ``--group-effect`` without ``--groups``, or ``--participants`` differs from the
        groups' total.
    """
    if groups is None:
        if group_effect is not None:
            raise ValueError("--group-effect needs --groups N_POSITIVE N_NEGATIVE")
        return 2 if participants is None else participants
    total = sum(groups)
    if participants is not None and participants != total:
        raise ValueError(
            f"--groups {' '.join(str(n) for n in groups)} makes {total} participants but "
            f"--participants says {participants}"
        )
    return total


def check(config: SimulationConfig) -> None:
    """Raise ValueError naming the first invalid group setting of ``config``."""
    effect = config.group_effect
    if isinstance(effect, bool) or not isinstance(effect, int | float) or not effect >= 0:
        raise ValueError(f"group_effect must be a number >= 0, got {effect!r}")
    if not math.isfinite(effect):
        raise ValueError(f"group_effect must be finite, got {effect!r}")
    if config.groups is None:
        if effect:
            raise ValueError("group_effect needs groups (n_positive, n_negative)")
        return
    if len(config.groups) != 2 or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in config.groups
    ):
        raise ValueError(
            f"groups must be two participant counts of at least 1 (n_positive, n_negative), "
            f"got {config.groups!r}"
        )
    if sum(config.groups) != config.n_participants:
        raise ValueError(
            f"groups {tuple(config.groups)} make {sum(config.groups)} participants but "
            f"n_participants is {config.n_participants}"
        )
    if effect and EFFECT_SOURCE not in (s.name for s in config.sources):
        raise ValueError(f"group_effect needs a source named {EFFECT_SOURCE!r}")


def group_of(config: SimulationConfig, participant: int) -> str | None:
    """Group of participant number ``participant`` (1-based): HC first, then P; None
    without groups."""
    if config.groups is None:
        return None
    return NEGATIVE if participant <= config.groups[1] else POSITIVE


def amplitude_factor(config: SimulationConfig, participant: int, source: str) -> float:
    """What the oscillation amplitude of ``source`` is multiplied by in this participant."""
    if source == EFFECT_SOURCE and group_of(config, participant) == POSITIVE:
        return 1.0 + float(config.group_effect)
    return 1.0


def members(config: SimulationConfig, subjects: Sequence[str]) -> dict[str, list[str]]:
    """Participant labels of each group, patients first (as in ``LEVELS``)."""
    groups = [group_of(config, p) for p in range(1, len(subjects) + 1)]
    return {g: [s for s, gs in zip(subjects, groups, strict=True) if gs == g] for g in LEVELS}


def participants_tsv(config: SimulationConfig, subjects: Sequence[str]) -> str:
    """participants.tsv: ``participant_id``, and ``group`` when there are groups."""
    if config.groups is None:
        return "participant_id\n" + "".join(f"sub-{s}\n" for s in subjects)
    return "participant_id\tgroup\n" + "".join(
        f"sub-{s}\t{group_of(config, p)}\n" for p, s in enumerate(subjects, start=1)
    )


def participants_json() -> dict:
    """participants.json describing the ``group`` column."""
    return {
        "group": {
            "LongName": "Group",
            "Description": "Simulated diagnostic group; the first participant labels are "
            f"healthy controls ({NEGATIVE}), the others patients ({POSITIVE}).",
            "Levels": dict(LEVELS),
        }
    }


def ground_truth(config: SimulationConfig, subjects: Sequence[str]) -> dict:
    """The groups and the group effect, for simulation.json (empty without groups)."""
    if config.groups is None:
        return {}
    size = float(config.group_effect)
    return {
        "groups": members(config, subjects),
        "group_effect": {
            "size": size,
            "source": EFFECT_SOURCE,
            "property": EFFECT_PROPERTY,
            "amplitude_factor": {POSITIVE: 1.0 + size, NEGATIVE: 1.0},
        },
    }


def summary(config: SimulationConfig) -> str:
    """One sentence on the groups and their effect (empty without groups)."""
    if config.groups is None:
        return ""
    n_pos, n_neg = config.groups
    text = (
        f"{n_neg} healthy control(s) ({NEGATIVE}, the first participant labels) and {n_pos} "
        f"patient(s) ({POSITIVE}) in participants.tsv's group column; "
    )
    if not config.group_effect:
        return text + "group effect 0 (the null: the groups differ in label only)."
    return text + (
        f"in patients the {EFFECT_SOURCE} source's oscillation amplitude is multiplied by "
        f"{1 + config.group_effect:g} (group effect {config.group_effect:g}; its BOLD "
        "coupling unchanged)."
    )

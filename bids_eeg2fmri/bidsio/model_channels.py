"""The model's EEG channels when neither ``--model`` nor ``--channels`` names them.

A model has one input channel set. Recordings of one cap share it; a pool of recordings
made with different caps is reduced to the channels every recording has (by name, in the
first recording's order), with a warning for each recording that loses channels. When
too few channels are common, the run stops naming the recordings that disagree and what
to do: the app never trains on a channel set that most recordings would have to invent.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from bids_eeg2fmri.errors import DataError

LOGGER = logging.getLogger(__name__)

#: A recording may lose at most this share of its EEG channels to the common set.
MAX_LOST_FRACTION = 0.5


def common_channels(channel_sets: Mapping[str, Sequence[str]]) -> list[str]:
    """The channels in every set, in the first set's order (empty for no sets)."""
    sets = list(channel_sets.values())
    if not sets:
        return []
    others = [set(s) for s in sets[1:]]
    return [c for c in sets[0] if all(c in s for s in others)]


def choose_model_channels(
    channel_sets: Mapping[str, Sequence[str]], *, max_lost: float = MAX_LOST_FRACTION
) -> list[str]:
    """The model's channels for recordings ``{file name: EEG channels}``: those common to
    all, when no recording loses more than ``max_lost`` of its channels to them.

    Raises
    ------
    DataError
        Too few common channels; the message lists the channel sets, a recording of each,
        and the options that resolve it.
    """
    common = common_channels(channel_sets)
    worst = max((1 - len(common) / len(s) for s in channel_sets.values() if s), default=0.0)
    if common and worst <= max_lost:
        return common
    groups: dict[tuple[str, ...], list[str]] = {}
    for name, channels in channel_sets.items():
        groups.setdefault(tuple(channels), []).append(name)
    described = [
        f"{len(names)} recording(s) with {len(key)} channels (e.g. {names[0]}: "
        f"{', '.join(key[:4])}{', ...' if len(key) > 4 else ''})"
        for key, names in sorted(groups.items(), key=lambda kv: -len(kv[1]))
    ]
    more = len(described) - 4
    shown = "; ".join(described[:4]) + (f"; and {more} more" if more > 0 else "")
    raise DataError(
        f"the {len(channel_sets)} selected recordings share {len(common)} EEG channel(s), "
        f"too few for one model ({len(groups)} channel sets: {shown}): select recordings of "
        "one cap (--participant-label, --bids-filter-file) or name the model's channels "
        "with --channels (a recording missing up to a quarter of them is interpolated)"
    )


def default_model_channels(pairs: Sequence) -> list[str]:
    """Read every selected recording's EEG channels and choose the model's.

    ``pairs``: objects with ``eeg`` (Path) and ``channels_tsv`` (Path or None). Recordings
    that cannot be read are left to their own step (which fails with their error); when
    none can be read, the error is raised here.
    """
    from bids_eeg2fmri.signals.eeg import EEGError, recording_eeg_channels

    sets: dict[str, list[str]] = {}
    unreadable: list[EEGError] = []
    for pair in pairs:
        try:
            sets[Path(pair.eeg).name] = recording_eeg_channels(pair.eeg, pair.channels_tsv)
        except EEGError as err:
            unreadable.append(err)
    if not sets:
        if len(unreadable) == 1:  # its own line names the file and the problem
            raise unreadable[0]
        for err in unreadable:
            LOGGER.warning("%s", err)
        raise DataError("no selected EEG recording can be read (see the warnings above)")
    for err in unreadable:  # their runs fail in their own step, with this message
        LOGGER.debug("Model channels chosen without %s", err)
    channels = choose_model_channels(sets)
    for name, own in sets.items():
        if len(own) > len(channels):
            left_out = [c for c in own if c not in set(channels)]
            LOGGER.warning(
                "%s: %d of its %d EEG channels are not in every selected recording and are "
                "left out of the model (%s)",
                name,
                len(left_out),
                len(own),
                ", ".join(left_out),
            )
    first = next(iter(sets))
    LOGGER.info(
        "Model channels: the %d EEG channels common to the %d readable recording(s)%s",
        len(channels),
        len(sets),
        f" (those of {first})" if len(channels) == len(sets[first]) else "",
    )
    return channels

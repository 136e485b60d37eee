"""``bids-eeg2fmri-simulate OUTPUT_DIR``: write a simulated simultaneous EEG-fMRI dataset."""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bids_eeg2fmri import __version__
from bids_eeg2fmri.cli.parser import OneLineErrorParser
from bids_eeg2fmri.errors import CannotCreateError, UsageError
from bids_eeg2fmri.option_values import (
    available_cpus,
    number_parser,
    parse_non_negative_int,
    parse_positive_float,
    parse_positive_int,
)

PROG = "bids-eeg2fmri-simulate"
LOGGER = logging.getLogger("bids_eeg2fmri")


def _argparse_type(parse):
    """An argparse ``type=`` from a config parser (its message, not argparse's)."""

    def convert(value: str):
        try:
            return parse(value)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    return convert


_positive_int = _argparse_type(parse_positive_int)
_non_negative_int = _argparse_type(parse_non_negative_int)
_positive_float = _argparse_type(parse_positive_float)
_parse_size = number_parser(float, expected="a finite number >= 0", at_least=0)


def _finite_size(value: str) -> float:
    """A finite number >= 0 (a group effect)."""
    size = _parse_size(value)
    if not math.isfinite(size):
        raise ValueError(f"expected a finite number >= 0, got {value!r}")
    return size


_group_effect = _argparse_type(_finite_size)


def _mr_kinds(value: str) -> tuple[str, ...]:
    from bids_eeg2fmri.simulate.mr_artifacts import MR_ARTIFACT_KINDS

    kinds = tuple(k for k in value.replace("+", ",").split(",") if k.strip())
    kinds = tuple(k.strip().lower() for k in kinds)
    if kinds == ("none",):
        return ()
    unknown = [k for k in kinds if k not in MR_ARTIFACT_KINDS]
    if unknown or len(set(kinds)) != len(kinds):
        raise argparse.ArgumentTypeError(
            f"expected gradient, pulse or gradient,pulse (or none), got {value!r}"
        )
    return tuple(k for k in MR_ARTIFACT_KINDS if k in kinds)


def build_parser() -> argparse.ArgumentParser:
    """The ``bids-eeg2fmri-simulate`` parser."""
    p = OneLineErrorParser(
        prog=PROG,
        description="Write a simulated simultaneous EEG-fMRI BIDS dataset whose EEG band power "
        "drives BOLD in known voxels; the ground truth goes to OUTPUT_DIR/derivatives/simulation.",
    )
    p.add_argument("output_dir", type=Path, help="new (or empty) folder for the dataset")
    p.add_argument("--version", action="version", version=f"{PROG} v{__version__}")
    p.add_argument("--seed", type=_non_negative_int, default=0, help="random seed (default: 0)")
    p.add_argument(
        "--nprocs",
        type=_positive_int,
        default=available_cpus(),
        help="participants simulated at a time (default: the CPUs available); the dataset "
        "does not depend on it",
    )
    p.add_argument(
        "--participants",
        type=_positive_int,
        default=None,
        help="default: 2, or the total of --groups",
    )
    p.add_argument(
        "--sessions",
        type=_positive_int,
        default=1,
        help="default: 1 (no ses- entity); N>1: ses-01..N",
    )
    p.add_argument(
        "--runs", type=_positive_int, default=1, help="per session; default: 1 (no run- entity)"
    )
    p.add_argument(
        "--volumes",
        type=_positive_int,
        default=100,
        help="stored BOLD volumes per run (default: 100)",
    )
    p.add_argument(
        "--dummy-volumes",
        type=_non_negative_int,
        default=0,
        help="volumes the scanner acquires (with a marker) but does not store; recorded as "
        "NumberOfVolumesDiscardedByScanner (default: 0)",
    )
    p.add_argument(
        "--tr", type=_positive_float, default=2.16, help="repetition time in s (default: 2.16)"
    )
    p.add_argument(
        "--sfreq",
        type=_positive_float,
        default=250.0,
        help="EEG sampling rate in Hz (default: 250)",
    )
    p.add_argument(
        "--channels",
        type=_positive_int,
        default=None,
        help="EEG channels (default: 64, or all of --montage's)",
    )
    p.add_argument(
        "--montage",
        default=None,
        metavar="NAME",
        help="the cap: an MNE standard montage such as biosemi128 (channel names and "
        "positions, written to electrodes.tsv; default: easycap-M1, a 64-channel MR cap)",
    )
    p.add_argument(
        "--eeg-only",
        action="store_true",
        help="EEG recorded outside the scanner: no BOLD runs and no volume markers (a "
        "dataset to apply a model to)",
    )
    p.add_argument(
        "--ecg",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="add an ECG channel (default: yes)",
    )
    p.add_argument(
        "--grid",
        type=_positive_int,
        nargs=3,
        default=(64, 64, 30),
        metavar=("NX", "NY", "NZ"),
        help="BOLD grid (default: 64 64 30)",
    )
    p.add_argument(
        "--voxel-size",
        type=_positive_float,
        nargs=3,
        metavar=("DX", "DY", "DZ"),
        help="voxel size in mm (default: a 224 x 224 x 135 mm field of view divided by the "
        "grid, i.e. 3.5 x 3.5 x 4.5 mm for the default grid)",
    )
    p.add_argument(
        "--eeg-format",
        choices=("brainvision", "edf", "bdf", "eeglab"),
        default="brainvision",
        help="default: brainvision",
    )
    p.add_argument(
        "--marker",
        default="Response/R128",
        help="volume marker as MNE reads it (BrainVision: TYPE/DESCRIPTION; "
        "default: Response/R128)",
    )
    p.add_argument("--task", default="rest", help="task label (default: rest)")
    p.add_argument(
        "--line-freq", type=_positive_float, default=50.0, help="power line frequency (default: 50)"
    )
    grp = p.add_argument_group("Participant groups (a group column in participants.tsv)")
    grp.add_argument(
        "--groups",
        type=_positive_int,
        nargs=2,
        default=None,
        metavar=("N_POSITIVE", "N_NEGATIVE"),
        help="N_POSITIVE patients (group P) and N_NEGATIVE healthy controls (group HC): "
        "N_POSITIVE + N_NEGATIVE participants, the controls first (default: no groups)",
    )
    grp.add_argument(
        "--group-effect",
        type=_group_effect,
        default=None,
        metavar="SIZE",
        help="in patients, the alpha source's oscillation amplitude x (1 + SIZE); needs "
        "--groups (default: 0, the groups differ in label only)",
    )
    mr = p.add_argument_group("Raw in-scanner EEG (ground truth in derivatives/simulation)")
    mr.add_argument(
        "--mr-artifacts",
        type=_mr_kinds,
        default=(),
        metavar="KINDS",
        help="add MR artifacts to the EEG: gradient, pulse or gradient,pulse (default: none; "
        "realistic size: --sfreq 5000 --channels 64 --volumes 300 --tr 2)",
    )
    mr.add_argument(
        "--slices",
        type=_positive_int,
        default=None,
        help="slices per volume of the gradient artifact (default: the BOLD grid's third "
        "size, so that SliceTiming holds one onset per slice)",
    )
    mr.add_argument(
        "--slice-markers",
        action="store_true",
        help="also mark every slice (Scanner/Slice) besides every volume",
    )
    mr.add_argument(
        "--unmarked-volumes",
        type=_non_negative_int,
        default=3,
        help="volumes acquired before the first marker: gradient artifacts without a marker "
        "(default: 3)",
    )
    mr.add_argument(
        "--clock-drift",
        type=float,
        default=20.0,
        metavar="PPM",
        help="the scanner's clock against the EEG's, in parts per million (default: 20)",
    )
    mr.add_argument(
        "--heart-rate",
        type=_positive_float,
        default=65.0,
        metavar="BPM",
        help="mean heart rate of the pulse artifact (default: 65)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace OUTPUT_DIR if it holds an earlier simulated dataset",
    )
    p.add_argument(
        "-v", "--verbose", action="count", default=0, help="more output; tracebacks on errors"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``bids-eeg2fmri-simulate``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from bids_eeg2fmri.simulate.groups import participants_from_options

    try:
        n_participants = participants_from_options(
            args.groups, args.group_effect, args.participants
        )
    except ValueError as err:
        parser.error(str(err))
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s | %(levelname)-7s | %(message)s", "%H:%M:%S")
    )
    LOGGER.handlers[:] = [handler]
    LOGGER.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    LOGGER.propagate = False
    from bids_eeg2fmri.simulate.generator import SimulationConfig
    from bids_eeg2fmri.simulate.sources import MONTAGE
    from bids_eeg2fmri.simulate.writer import OutputExistsError, simulate_dataset

    config = SimulationConfig(
        n_participants=n_participants,
        n_sessions=args.sessions,
        n_runs=args.runs,
        n_volumes=args.volumes,
        n_dummy=args.dummy_volumes,
        tr=args.tr,
        sfreq=args.sfreq,
        n_channels=_channel_count(args.channels, args.montage),
        montage=args.montage or MONTAGE,
        eeg_only=args.eeg_only,
        ecg=args.ecg,
        grid=tuple(args.grid),
        voxel_size=tuple(args.voxel_size) if args.voxel_size else None,
        eeg_format=args.eeg_format,
        marker=args.marker,
        task=args.task.removeprefix("task-"),
        line_freq=args.line_freq,
        seed=args.seed,
        mr_artifacts=args.mr_artifacts,
        n_slices=args.slices,
        slice_markers=args.slice_markers,
        n_unmarked=args.unmarked_volumes,
        clock_drift_ppm=args.clock_drift,
        heart_rate=args.heart_rate,
        groups=tuple(args.groups) if args.groups else None,
        group_effect=args.group_effect or 0.0,
    )
    start = time.monotonic()
    try:
        config.check()
        root = simulate_dataset(
            config, args.output_dir, overwrite=args.overwrite, nprocs=args.nprocs
        )
    except ValueError as err:
        return _fail(str(err), UsageError.exit_code, args.verbose)
    except OutputExistsError as err:
        return _fail(str(err), CannotCreateError.exit_code, args.verbose)
    except OSError as err:
        return _fail(
            f"cannot write {err.filename or args.output_dir}: {err.strerror or err}",
            CannotCreateError.exit_code,
            args.verbose,
        )
    LOGGER.info("Simulated dataset written to %s in %.1f s", root, time.monotonic() - start)
    return 0


def _channel_count(channels: int | None, montage: str | None) -> int:
    """``--channels``, else 64 on the default cap, else every channel of ``--montage``."""
    if channels is not None:
        return channels
    if montage is None:
        return 64
    import mne

    if montage not in mne.channels.get_builtin_montages():
        return 64  # SimulationConfig.check names the montage
    return len(mne.channels.make_standard_montage(montage).ch_names)


def _fail(message: str, code: int, verbose: int) -> int:
    if verbose:
        LOGGER.exception("Traceback:")
    sys.stderr.write(f"{PROG}: error: {message}\n")
    return code


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

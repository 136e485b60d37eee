"""The BIDS-App argument parser (fMRIPrep names and semantics, BIDS_APP.md section 1).

Options default to "not given" (``argparse.SUPPRESS``) so that the namespace holds only
what the user typed: the CLI then overrides ``--config-file`` key by key, and defaults are
filled in one place, :func:`bids_eeg2fmri.config.make_config`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bids_eeg2fmri import __version__

PROG = "bids-eeg2fmri"


class OneLineErrorParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line (exit code 2)."""

    def error(self, message: str):  # noqa: D102 - argparse API
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    """The ``bids-eeg2fmri`` parser."""
    parser = OneLineErrorParser(
        prog=PROG,
        description=(
            "Synthesize fMRI from EEG: find simultaneous EEG/BOLD runs in a BIDS dataset, "
            "align every BOLD volume to the EEG that preceded it, train or apply the "
            "EEG-to-fMRI synthesizer and write BIDS derivatives."
        ),
        argument_default=argparse.SUPPRESS,
        epilog="Exit codes: 0 success; 1 failure; 2 usage error; 16 input is not valid BIDS; "
        "17 unknown analysis level; 18 the filters selected no files; 65 inconsistent data; "
        "66 nothing to work on; 73 cannot create the output or work directory.",
    )
    # Positionals go on the parser itself, not in a group (BIDS-Apps convention).
    parser.add_argument(
        "bids_dir", type=Path, help="the root of the input BIDS dataset (read only)"
    )
    parser.add_argument(
        "output_dir",
        type=Path,
        help="where derivatives are written; inside BIDS_DIR only under "
        "BIDS_DIR/derivatives/ (e.g. BIDS_DIR/derivatives/bids-eeg2fmri)",
    )
    parser.add_argument(
        "analysis_level",
        metavar="{participant,group}",
        help="participant: process (and train on) each selected participant; "
        "group: gather participant outputs",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} v{__version__}")

    sel = parser.add_argument_group("Selecting data")
    sel.add_argument(
        "--participant-label",
        "--participant_label",
        dest="participant_label",
        nargs="+",
        metavar="LABEL",
        help="participants to process, with or without 'sub-', or files with one label per "
        "line (default: all)",
    )
    sel.add_argument(
        "--session-label",
        "--session_label",
        dest="session_label",
        nargs="+",
        metavar="LABEL",
        help="sessions to process, with or without 'ses-' (default: all)",
    )
    sel.add_argument(
        "--task-label",
        "--task_label",
        "--task-id",
        dest="task_label",
        nargs="+",
        metavar="LABEL",
        help="tasks to process, with or without 'task-' (default: all)",
    )
    sel.add_argument(
        "--bids-filter-file",
        dest="bids_filter_file",
        type=Path,
        metavar="FILE",
        help='JSON refining the queries, e.g. {"eeg": {"acquisition": "cleaned"}, '
        '"bold": {"run": [1, 2]}}; null means "entity absent", "*" means "any value"',
    )
    sel.add_argument(
        "--bids-database-dir",
        dest="bids_database_dir",
        type=Path,
        metavar="DIR",
        help="pybids SQLite index to reuse or create (default: a fresh one in the work dir; "
        "never inside BIDS_DIR)",
    )
    sel.add_argument(
        "--eeg-derivatives",
        dest="eeg_derivatives",
        type=Path,
        metavar="DIR",
        help="read the EEG from this derivatives dataset (e.g. gradient and pulse artifact "
        "corrected), matching the raw recordings' entities",
    )
    sel.add_argument(
        "--skip-bids-validation",
        "--skip_bids_validation",
        dest="skip_bids_validation",
        action="store_true",
        help="do not run bids-validator-deno on the input",
    )

    wf = parser.add_argument_group("Workflow")
    wf.add_argument(
        "--seed", type=str, metavar="INT", help="random seed for every random step (default: 0)"
    )
    wf.add_argument(
        "--volume-marker",
        dest="volume_marker",
        metavar="REGEX",
        help="regular expression of the volume markers' descriptions (default: matches "
        "Response/R128, R128, Scanner/Scan Start, V, Volume, TR)",
    )
    onset = wf.add_mutually_exclusive_group()
    onset.add_argument(
        "--first-volume-onset",
        dest="first_volume_onset",
        metavar="SECONDS",
        help="for recordings without markers: the first stored volume starts this many "
        "seconds after the first EEG sample; later volumes follow every TR",
    )
    onset.add_argument(
        "--assume-eeg-starts-at-first-volume",
        dest="assume_eeg_starts_at_first_volume",
        action="store_true",
        help="for recordings without markers: assume the EEG starts with the first stored "
        "volume (the original eeg_to_fmri's assumption; often wrong by seconds)",
    )
    wf.add_argument(
        "--dummy-scans",
        dest="dummy_scans",
        metavar="N",
        help="drop the first N stored volumes (non-steady-state), with their markers",
    )
    wf.add_argument(
        "--eeg-only-tr",
        dest="eeg_only_tr",
        metavar="SECONDS",
        help="TR of the grid EEG-only recordings without markers are cut on, from their start "
        "or --first-volume-onset (default with --model: the model's TR)",
    )
    wf.add_argument(
        "--mr-correction",
        dest="mr_correction",
        metavar="MODE",
        help="EEG recorded in the scanner: auto (default: detect the gradient artifact at "
        "the volume harmonics and the pulse artifact after each heart beat, correct what is "
        "present), none (a recording with gradient artifacts fails), gradient, or "
        "gradient+pulse; the corrected EEG is written as desc-mrcorrected",
    )
    wf.add_argument(
        "--ecg-channel",
        dest="ecg_channel",
        metavar="NAME",
        help="the ECG channel whose R peaks time the pulse artifact (default: the channel "
        "typed ECG in channels.tsv, else one named ECG or EKG)",
    )
    wf.add_argument(
        "--slice-marker",
        dest="slice_marker",
        metavar="REGEX",
        help="regular expression of slice markers' descriptions; when they exist, the "
        "gradient artifact is corrected slice by slice (default: matches Scanner/Slice, "
        "Slice)",
    )
    wf.add_argument(
        "--channels",
        dest="channels",
        nargs="+",
        metavar="NAME",
        help="the model's EEG channels, in order (default: the EEG channels common to every "
        "selected recording); missing ones are interpolated",
    )
    wf.add_argument(
        "--n-windows",
        dest="n_windows",
        metavar="W",
        help="TR-long EEG windows per model input (default: 10)",
    )
    wf.add_argument(
        "--max-freq",
        dest="max_freq",
        metavar="HZ",
        help="highest frequency of the spectra (default: 62.5: 134 bins at TR 2.16 s)",
    )
    wf.add_argument(
        "--high-pass",
        dest="high_pass",
        metavar="SECONDS",
        help="remove BOLD drifts slower than this (DCT basis, as fMRIPrep's cosine regressors; "
        "default: 128; 0: none)",
    )
    wf.add_argument(
        "--model-grid",
        dest="model_grid",
        nargs=3,
        metavar=("NX", "NY", "NZ"),
        help="the model's BOLD grid (default: 64 64 30)",
    )
    model = parser.add_argument_group("The model")
    use = model.add_mutually_exclusive_group()
    use.add_argument(
        "--train",
        dest="train",
        action="store_true",
        help="train a model on the selected participants (held-out participants "
        "excluded), save it in OUTPUT_DIR/models/, then synthesize every run",
    )
    use.add_argument(
        "--model",
        dest="model",
        type=Path,
        metavar="FILE",
        help="synthesize with this .keras model (its .json card beside it)",
    )
    model.add_argument(
        "--train-only",
        dest="train_only",
        action="store_true",
        help="with --train: save the model and stop (no synthesis, metrics or relevance "
        "maps; the reports still describe the runs); apply it later with --model, e.g. on "
        "other nodes",
    )
    model.add_argument(
        "--preset",
        dest="preset",
        metavar="NAME",
        help="architecture: compact (default; CPU and demo), noddi-tafp (the "
        "original's best), plain, attention, fourier, style-prior, variational, "
        "compact-variational, compact-plain",
    )
    model.add_argument(
        "--model-name",
        dest="model_name",
        metavar="NAME",
        help="file name of the trained model (default: the preset's)",
    )
    model.add_argument(
        "--holdout-label",
        dest="holdout_label",
        nargs="+",
        metavar="LABEL",
        help="participants kept out of training to evaluate it (default: the "
        "last 20%% in sorted order with 3 or more participants; with one, the "
        "last 20%% of each run)",
    )
    model.add_argument(
        "--validation-label",
        dest="validation_label",
        nargs="+",
        metavar="LABEL",
        help="participants kept out of training whose loss stops it early (default: "
        "none; every other participant trains and the last 10%% of each training run "
        "validates)",
    )
    model.add_argument("--epochs", dest="epochs", metavar="N", help="default: 10")
    model.add_argument(
        "--batch-size", dest="batch_size", metavar="N", help="default: 8 (the original's: 4)"
    )
    model.add_argument(
        "--learning-rate",
        dest="learning_rate",
        metavar="LR",
        help="Adam's learning rate (default: 0.001; the original's: 0.00298)",
    )
    model.add_argument(
        "--patience",
        dest="patience",
        metavar="N",
        help="epochs without validation improvement before stopping (default: 3)",
    )
    model.add_argument(
        "--compat-loss",
        dest="compat_loss",
        action="store_true",
        help="the original's batch-cross latent cosine term (for comparisons)",
    )
    outputs = parser.add_argument_group("Evaluation and explanations")
    outputs.add_argument(
        "--lrp-volumes",
        dest="lrp_volumes",
        metavar="N",
        help="volumes per run (evenly spaced) whose LRP relevance is averaged; 0 skips "
        "the relevance maps (default: 48)",
    )
    outputs.add_argument(
        "--lrp-rule",
        dest="lrp_rule",
        metavar="RULE",
        help="LRP rule for dense and convolution layers: epsilon or zplus (default: epsilon)",
    )
    outputs.add_argument(
        "--no-baselines",
        dest="baselines",
        action="store_false",
        help="do not fit the mean-volume and ridge baselines beside a model trained here",
    )
    group = parser.add_argument_group("Group level: classifying participants")
    group.add_argument(
        "--classify",
        dest="classify",
        metavar="COLUMN",
        help="classify participants by this participants.tsv column from each feature set "
        "(views) the participant level wrote; participant-wise repeated cross-validation",
    )
    group.add_argument(
        "--positive-label",
        dest="positive_label",
        metavar="VALUE",
        help="the column's positive class (default: participants.json's first Level, "
        "else the smaller class)",
    )
    group.add_argument(
        "--classify-views",
        dest="classify_views",
        nargs="+",
        metavar="VIEW",
        help="bandpower, features, latent, synth, nuisance (default: every view written)",
    )
    group.add_argument(
        "--cv-folds", dest="cv_folds", metavar="K", help="folds per repeat (default: 5)"
    )
    group.add_argument("--cv-repeats", dest="cv_repeats", metavar="N", help="repeats (default: 10)")
    group.add_argument(
        "--permutations",
        dest="permutations",
        metavar="N",
        help="label permutations for the p-value, each rerunning the whole cross-validation "
        "(default: 1000; 0: no p-value)",
    )
    group.add_argument(
        "--classifier",
        dest="classifier",
        metavar="NAME",
        help="logistic (default: L2 logistic regression on every view), or the original's "
        "contrastive or likelihood head (Keras) for the synth view, trained on its windows "
        "in each fold (slow: every fold and permutation trains one)",
    )
    wf.add_argument(
        "--config-file",
        dest="config_file",
        type=Path,
        metavar="FILE",
        help="TOML configuration, e.g. a logs/config-*.toml of an earlier run; "
        "command-line options override it",
    )

    ex = parser.add_argument_group("Execution (never changes results)")
    ex.add_argument(
        "-w",
        "--work-dir",
        dest="work_dir",
        type=Path,
        metavar="DIR",
        help="caches and intermediate files; reuse it to resume (default: ./work)",
    )
    ex.add_argument(
        "--nprocs",
        "--nthreads",
        "--n-cpus",
        "--n_cpus",
        dest="nprocs",
        metavar="N",
        help="processes to run in parallel (default: the CPUs available)",
    )
    ex.add_argument(
        "--omp-nthreads",
        dest="omp_nthreads",
        metavar="N",
        help="threads per process (default: nprocs - 1, at most 8)",
    )
    ex.add_argument(
        "--mem",
        dest="mem_gb",
        metavar="SIZE",
        help="memory limit with a unit, e.g. 8G or 8000M (default: 90%% of physical memory)",
    )
    ex.add_argument(
        "--stop-on-first-crash",
        dest="stop_on_first_crash",
        action="store_true",
        help="stop at the first failing step instead of finishing the others",
    )
    ex.add_argument(
        "--deterministic",
        dest="deterministic",
        action=argparse.BooleanOptionalAction,
        help="deterministic TensorFlow ops: byte-identical outputs for the same inputs and "
        "seed (default: on)",
    )
    ex.add_argument(
        "-v",
        "--verbose",
        dest="verbose",
        action="count",
        help="more log output; shows tracebacks on errors",
    )
    return parser

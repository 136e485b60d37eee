"""The run configuration: frozen dataclasses built once by the CLI and passed down.

A configuration is made of sections that mirror the TOML file written under
``OUTPUT_DIR/logs/`` for every run (and accepted back by ``--config-file``):

``[run]``        what to process and where (the three positional arguments);
``[selection]``  which data (entity labels and the BIDS filter file);
``[workflow]``   settings that change results (seeds; later: features, model, training);
``[execution]``  settings that never change results (threads, memory, directories, verbosity).

Keys are the command-line option names with ``_`` for ``-``. The one TOML-specific form is
``bids_filters``, stored as a JSON string because TOML has no ``null`` (fMRIPrep's
``null`` = "entity absent" is part of the filter language).
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bids_eeg2fmri.errors import UnknownAnalysisLevelError, UsageError
from bids_eeg2fmri.option_values import (
    available_cpus,
    check_bids_filters,
    did_you_mean,
    load_bids_filters,
    parse_channels,
    parse_fraction,
    parse_grid,
    parse_labels,
    parse_memory_gb,
    parse_model_name,
    parse_non_negative_int,
    parse_positive_float,
    parse_positive_int,
    parse_regex,
    parse_seconds,
    parse_seed,
    physical_memory_gb,
)
from bids_eeg2fmri.signals.markers import DEFAULT_SLICE_MARKER, DEFAULT_VOLUME_MARKER

ANALYSIS_LEVELS = ("participant", "group")
#: Model presets (bids_eeg2fmri.models.synthesizer.PRESETS; listed here to stay TF-free).
PRESET_NAMES = (
    "noddi-tafp",
    "plain",
    "attention",
    "fourier",
    "style-prior",
    "variational",
    "compact",
    "compact-variational",
    "compact-plain",
)


@dataclass(frozen=True)
class RunSection:
    bids_dir: Path
    output_dir: Path
    analysis_level: str


@dataclass(frozen=True)
class SelectionSection:
    participant_label: tuple[str, ...] = ()
    session_label: tuple[str, ...] = ()
    task_label: tuple[str, ...] = ()
    #: ``{"eeg": {entity: value}, "bold": {...}}``; ``None`` values mean "entity absent",
    #: ``"*"`` means "any value" (fMRIPrep semantics).
    bids_filters: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: read the EEG from this derivatives dataset (same entities) instead of BIDS_DIR
    eeg_derivatives: Path | None = None


@dataclass(frozen=True)
class WorkflowSection:
    """Settings that change results (all recorded, all settable in a config file)."""

    seed: int = 0
    # volume markers
    volume_marker: str = DEFAULT_VOLUME_MARKER
    first_volume_onset: float | None = None
    assume_eeg_starts_at_first_volume: bool = False
    dummy_scans: int = 0
    eeg_only_tr: float | None = None
    # raw in-scanner EEG: gradient and pulse artifacts
    mr_correction: str = "auto"
    ecg_channel: str | None = None
    slice_marker: str = DEFAULT_SLICE_MARKER
    # EEG
    channels: tuple[str, ...] = ()
    min_channel_fraction: float = 0.75  # placed recording channels per model channel, at least
    l_freq: float | None = None
    h_freq: float | None = None
    # features and model grid
    n_windows: int = 10
    max_freq: float = 62.5
    model_grid: tuple[int, int, int] = (64, 64, 30)
    high_pass: float = 128.0  # s: BOLD drifts slower than this are removed (0: none)
    # the model: train one, or apply one
    train: bool = False
    train_only: bool = False  # with train: save the model, then stop
    model: Path | None = None
    preset: str = "compact"
    model_name: str | None = None  # default: the preset's name
    holdout_label: tuple[str, ...] = ()
    # participants kept out of training for early stopping (default: none, the last 10 % of
    # each training run validates; benchmarks/NOTES.md, "Training settings")
    validation_label: tuple[str, ...] = ()
    epochs: int = 10
    # chosen by measurement (benchmarks/NOTES.md, "Training settings"); the original's were
    # batch 4 and learning rate 0.00298 (ORIGINAL_LEARNING_RATE)
    batch_size: int = 8
    learning_rate: float = 0.001
    patience: int = 3
    compat_loss: bool = False
    # explanations and yardsticks
    lrp_volumes: int = 48  # volumes per run whose relevance is averaged (0: no LRP)
    lrp_rule: str = "epsilon"  # or "zplus"
    baselines: bool = True


@dataclass(frozen=True)
class ExecutionSection:
    work_dir: Path
    bids_database_dir: Path | None
    nprocs: int
    omp_nthreads: int
    mem_gb: float
    skip_bids_validation: bool = False
    stop_on_first_crash: bool = False
    verbose: int = 0
    #: op determinism (byte-identical runs); None resolves to True without a GPU
    deterministic: bool = True


@dataclass(frozen=True)
class GroupSection:
    """The group level's classification of participants (``--classify``)."""

    classify: str | None = None  # a participants.tsv column
    positive_label: str | None = None
    classify_views: tuple[str, ...] = ()  # default: every view the outputs have
    cv_folds: int = 5
    cv_repeats: int = 10
    permutations: int = 1000
    classifier: str = "logistic"  # or a Keras head of models/heads.py for the synth view


@dataclass(frozen=True)
class RunConfig:
    run: RunSection
    selection: SelectionSection
    workflow: WorkflowSection
    execution: ExecutionSection
    run_uuid: str
    group: GroupSection = field(default_factory=GroupSection)


LRP_RULES = ("epsilon", "zplus")
#: ``--mr-correction`` choices (bids_eeg2fmri.signals.mr_correction.MODES).
MR_MODES = ("auto", "none", "gradient", "gradient+pulse")

_SECTIONS: dict[str, type] = {
    "run": RunSection,
    "selection": SelectionSection,
    "workflow": WorkflowSection,
    "execution": ExecutionSection,
    "group": GroupSection,
}
#: option name -> section name, derived from the dataclasses (one source of truth)
OPTION_SECTION: dict[str, str] = {
    f.name: section for section, cls in _SECTIONS.items() for f in dataclasses.fields(cls)
}


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a TOML configuration and return its options, flat, keyed by option name.

    Sections are optional (``nprocs = 2`` and ``[execution] nprocs = 2`` are equal);
    an ``[environment]`` section, written for the record, is ignored. Unknown keys are
    refused with a suggestion.
    """
    try:
        with open(path, "rb") as handle:
            document = tomllib.load(handle)
    except OSError as err:
        raise UsageError(f"cannot read the config file {path}: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise UsageError(
            f"the config file {path} is not UTF-8 text (byte {err.start}; TOML is UTF-8)"
        ) from None
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"the config file {path} is not valid TOML: {err}") from None
    document.pop("environment", None)
    options: dict[str, Any] = {}
    for key, value in document.items():
        if key in _SECTIONS and isinstance(value, dict):
            for option, option_value in value.items():
                if OPTION_SECTION.get(option) != key:
                    raise UsageError(
                        f"the config file {path}: unknown option {key}.{option}"
                        f"{did_you_mean(option, OPTION_SECTION)}"
                    )
                options[option] = _toml_value(path, option, option_value)
        elif key in OPTION_SECTION:
            options[key] = _toml_value(path, key, value)
        else:
            raise UsageError(
                f"the config file {path}: unknown option {key!r}"
                f"{did_you_mean(key, [*OPTION_SECTION, *_SECTIONS])}"
            )
    if isinstance(options.get("bids_filters"), str):
        try:
            options["bids_filters"] = json.loads(options["bids_filters"])
        except json.JSONDecodeError as err:
            raise UsageError(f"the config file {path}: bids_filters is not JSON: {err}") from None
    return options


#: option name -> its annotation (``"bool"``, ``"Path | None"``, ...)
_OPTION_TYPES = {f.name: str(f.type) for cls in _SECTIONS.values() for f in dataclasses.fields(cls)}


def _toml_value(path: Path, option: str, value: Any) -> Any:
    """A config-file value whose TOML type fits its option: ``true``/``false`` for switches,
    a string for paths and names (numbers and lists are checked by their parsers)."""
    kind = _OPTION_TYPES[option]
    if kind == "bool":
        fits, expected = isinstance(value, bool), "true or false"
    elif "Path" in kind:
        fits, expected = isinstance(value, str) and value != "", "a path, as a string"
    elif kind.startswith("str"):
        fits, expected = isinstance(value, str), "a string"
    else:
        return value
    if not fits:
        shown = json.dumps(value, default=str)
        raise UsageError(f"{path}: {option} is {shown} ({expected})")
    return value


def to_toml_dict(config: RunConfig) -> dict[str, Any]:
    """The configuration as TOML-ready sections (``None`` values omitted)."""
    document: dict[str, Any] = {}
    for section in _SECTIONS:
        values = {}
        for key, value in dataclasses.asdict(getattr(config, section)).items():
            if value is None:
                continue
            if key == "bids_filters":
                value = json.dumps(value, sort_keys=True)
            elif isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = list(value)
            values[key] = value
        document[section] = values
    return document


# --------------------------------------------------------------------------------------
# Building a configuration
# --------------------------------------------------------------------------------------
def make_config(
    options: Mapping[str, Any],
    *,
    origin: Mapping[str, str] | None = None,
    run_uuid: str,
) -> RunConfig:
    """Validate merged options (config file, then command line) and fill the defaults.

    Parameters
    ----------
    options
        Option name -> value; values may be raw strings (command line) or TOML values.
        ``bids_filter_file`` (a path) is read into ``bids_filters``.
    origin
        Option name -> where it came from (``"--nprocs"``, ``"cfg.toml: nprocs"``),
        used to name the culprit in error messages.
    run_uuid
        Identifier of this run (names the config file and work subfolders).

    Raises
    ------
    UsageError
        For any invalid value, with a one-line message naming the option.
    """
    origin = origin or {}
    opts = dict(options)

    def where(key: str) -> str:
        return origin.get(key, key)

    def convert(key: str, parser, default=None):
        if key not in opts or opts[key] is None:
            return default
        try:
            return parser(opts[key])
        except ValueError as err:
            raise UsageError(f"{where(key)}: {err}") from None

    level = str(opts.get("analysis_level", ""))
    if level not in ANALYSIS_LEVELS:
        raise UnknownAnalysisLevelError(
            f"unknown analysis level {level!r}{did_you_mean(level, ANALYSIS_LEVELS)}"
        )
    for required in ("bids_dir", "output_dir"):
        if not opts.get(required):
            raise UsageError(f"{required.upper()} is required")

    if opts.get("bids_filter_file"):
        filters = load_bids_filters(Path(opts["bids_filter_file"]))
    else:
        filters = convert("bids_filters", check_bids_filters, {})

    nprocs = convert("nprocs", parse_positive_int, available_cpus())
    omp_default = max(1, min(nprocs - 1, 8))
    return RunConfig(
        run=RunSection(
            bids_dir=_absolute(opts["bids_dir"]),
            output_dir=_absolute(opts["output_dir"]),
            analysis_level=level,
        ),
        selection=SelectionSection(
            participant_label=convert(
                "participant_label", lambda v: parse_labels(v, entity="sub"), ()
            ),
            session_label=convert("session_label", lambda v: parse_labels(v, entity="ses"), ()),
            task_label=convert("task_label", lambda v: parse_labels(v, entity="task"), ()),
            bids_filters=filters,
            eeg_derivatives=(
                _absolute(opts["eeg_derivatives"]) if opts.get("eeg_derivatives") else None
            ),
        ),
        workflow=_workflow_section(convert, opts),
        execution=ExecutionSection(
            work_dir=_absolute(opts.get("work_dir") or Path.cwd() / "work"),
            bids_database_dir=(
                _absolute(opts["bids_database_dir"]) if opts.get("bids_database_dir") else None
            ),
            nprocs=nprocs,
            omp_nthreads=convert("omp_nthreads", parse_positive_int, omp_default),
            mem_gb=convert("mem_gb", parse_memory_gb, round(physical_memory_gb() * 0.9, 1)),
            skip_bids_validation=bool(opts.get("skip_bids_validation", False)),
            stop_on_first_crash=bool(opts.get("stop_on_first_crash", False)),
            verbose=convert("verbose", parse_non_negative_int, 0),
            deterministic=bool(opts.get("deterministic", True)),
        ),
        run_uuid=run_uuid,
        group=_group_section(convert, opts),
    )


def _group_section(convert, opts) -> GroupSection:
    from bids_eeg2fmri.evaluation.views import VIEWS
    from bids_eeg2fmri.models.heads import HEADS

    classifiers = ("logistic", *HEADS)
    defaults = GroupSection()
    section = GroupSection(
        classify=str(opts["classify"]) if opts.get("classify") else None,
        positive_label=str(opts["positive_label"]) if opts.get("positive_label") else None,
        classify_views=convert(
            "classify_views",
            lambda v: tuple(_choice(VIEWS, "view")(x) for x in ([v] if isinstance(v, str) else v)),
            (),
        ),
        cv_folds=convert("cv_folds", parse_positive_int, defaults.cv_folds),
        cv_repeats=convert("cv_repeats", parse_positive_int, defaults.cv_repeats),
        permutations=convert("permutations", parse_non_negative_int, defaults.permutations),
        classifier=convert("classifier", _choice(classifiers, "classifier"), defaults.classifier),
    )
    if section.cv_folds < 2:
        raise UsageError(f"--cv-folds must be at least 2, got {section.cv_folds}")
    if section.classifier != "logistic" and not section.classify:
        raise UsageError(f"--classifier {section.classifier} needs --classify COLUMN")
    if section.classifier != "logistic" and section.classify_views:
        if "synth" not in section.classify_views:
            raise UsageError(
                f"--classifier {section.classifier}: a head classifies the synth view; "
                "add synth to --classify-views"
            )
    return section


def _workflow_section(convert, opts) -> WorkflowSection:
    defaults = WorkflowSection()
    section = WorkflowSection(
        seed=convert("seed", parse_seed, defaults.seed),
        volume_marker=convert("volume_marker", parse_regex, defaults.volume_marker),
        first_volume_onset=convert("first_volume_onset", parse_seconds),
        assume_eeg_starts_at_first_volume=bool(opts.get("assume_eeg_starts_at_first_volume")),
        dummy_scans=convert("dummy_scans", parse_non_negative_int, 0),
        eeg_only_tr=convert("eeg_only_tr", parse_positive_float),
        mr_correction=convert("mr_correction", _choice(MR_MODES, "mode"), defaults.mr_correction),
        ecg_channel=str(opts["ecg_channel"]) if opts.get("ecg_channel") else None,
        slice_marker=convert("slice_marker", parse_regex, defaults.slice_marker),
        channels=convert("channels", parse_channels, ()),
        min_channel_fraction=convert(
            "min_channel_fraction", parse_fraction, defaults.min_channel_fraction
        ),
        l_freq=convert("l_freq", parse_positive_float),
        h_freq=convert("h_freq", parse_positive_float),
        n_windows=convert("n_windows", parse_positive_int, defaults.n_windows),
        max_freq=convert("max_freq", parse_positive_float, defaults.max_freq),
        model_grid=convert("model_grid", parse_grid, defaults.model_grid),
        high_pass=convert("high_pass", parse_seconds, defaults.high_pass),
        train=bool(opts.get("train", False)),
        train_only=bool(opts.get("train_only", False)),
        model=_absolute(opts["model"]) if opts.get("model") else None,
        preset=convert("preset", _choice(PRESET_NAMES, "preset"), defaults.preset),
        model_name=convert("model_name", parse_model_name, None)
        or str(opts.get("preset") or defaults.preset),
        holdout_label=convert("holdout_label", lambda v: parse_labels(v, entity="sub"), ()),
        validation_label=convert("validation_label", lambda v: parse_labels(v, entity="sub"), ()),
        epochs=convert("epochs", parse_positive_int, defaults.epochs),
        batch_size=convert("batch_size", parse_positive_int, defaults.batch_size),
        learning_rate=convert("learning_rate", parse_positive_float, defaults.learning_rate),
        patience=convert("patience", parse_positive_int, defaults.patience),
        compat_loss=bool(opts.get("compat_loss", False)),
        lrp_volumes=convert("lrp_volumes", parse_non_negative_int, defaults.lrp_volumes),
        lrp_rule=convert("lrp_rule", _choice(LRP_RULES, "rule"), defaults.lrp_rule),
        baselines=bool(opts.get("baselines", defaults.baselines)),
    )
    if section.train and section.model is not None:
        raise UsageError("--train and --model exclude each other: train a model or apply one")
    if section.train_only and not section.train:
        raise UsageError("--train-only needs --train: it stops after training")
    for option in ("holdout_label", "validation_label"):
        if getattr(section, option) and not section.train:
            flag = "--" + option.replace("_", "-")
            raise UsageError(f"{flag} needs --train: it splits the participants of a training")
    both = sorted(set(section.holdout_label) & set(section.validation_label))
    if both:
        raise UsageError(
            f"--validation-label and --holdout-label both name {', '.join(both)}: a "
            "participant either validates the training or is held out of it"
        )
    if section.first_volume_onset is not None and section.assume_eeg_starts_at_first_volume:
        raise UsageError(
            "--first-volume-onset and --assume-eeg-starts-at-first-volume exclude each other"
        )
    if section.l_freq and section.h_freq and section.l_freq >= section.h_freq:
        raise UsageError(f"l_freq ({section.l_freq}) must be below h_freq ({section.h_freq})")
    return section


def _choice(choices: tuple[str, ...], what: str):
    """A parser of one of ``choices`` (``what`` names them in the message)."""

    def parse(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"unknown {what} {value!r}{did_you_mean(str(value), choices)}")
        return value

    return parse


def _absolute(path: str | os.PathLike) -> Path:
    return Path(os.path.abspath(Path(path).expanduser()))

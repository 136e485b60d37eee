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
import difflib
import json
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bids_eeg2fmri.errors import UnknownAnalysisLevelError, UsageError
from bids_eeg2fmri.signals.markers import DEFAULT_SLICE_MARKER, DEFAULT_VOLUME_MARKER

#: Queries a BIDS filter file may refine (as in fMRIPrep's ``--bids-filter-file``).
FILTER_QUERIES = ("eeg", "bold")
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

_LABEL_RE = re.compile(r"^[A-Za-z0-9]+$")
_MEM_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT])i?B?\s*$", re.IGNORECASE)
_MEM_SCALE_TO_GB = {"K": 1 / 1024**2, "M": 1 / 1024, "G": 1.0, "T": 1024.0}


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
    min_channel_fraction: float = 0.75
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
    epochs: int = 10
    batch_size: int = 4
    learning_rate: float = 0.002980911194116198  # the original's
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
class RunConfig:
    run: RunSection
    selection: SelectionSection
    workflow: WorkflowSection
    execution: ExecutionSection
    run_uuid: str


LRP_RULES = ("epsilon", "zplus")
#: ``--mr-correction`` choices (bids_eeg2fmri.signals.mr_correction.MODES).
MR_MODES = ("auto", "none", "gradient", "gradient+pulse")

_SECTIONS: dict[str, type] = {
    "run": RunSection,
    "selection": SelectionSection,
    "workflow": WorkflowSection,
    "execution": ExecutionSection,
}
#: option name -> section name, derived from the dataclasses (one source of truth)
OPTION_SECTION: dict[str, str] = {
    f.name: section for section, cls in _SECTIONS.items() for f in dataclasses.fields(cls)
}


# --------------------------------------------------------------------------------------
# Value parsers: used both as argparse ``type=`` and for values read from a TOML file.
# Each raises ValueError with a message that says what was received and what is expected.
# --------------------------------------------------------------------------------------
def number_parser(cast: type, *, expected: str, above=None, at_least=None):
    """A parser of numbers: ``cast(value)``, > ``above`` or >= ``at_least``.

    Booleans are refused, and so are floats where an integer is expected (``2.5`` nprocs).
    """

    def parse(value: Any):
        try:
            number = cast(value)
        except (TypeError, ValueError):
            number = None
        if (
            number is None
            or isinstance(value, bool)
            or (cast is int and isinstance(value, float))
            or (above is not None and not number > above)
            or (at_least is not None and not number >= at_least)
        ):
            raise ValueError(f"expected {expected}, got {value!r}")
        return number

    parse.__doc__ = f"Parse {expected}."
    return parse


parse_positive_int = number_parser(int, expected="a positive integer", at_least=1)
parse_non_negative_int = number_parser(int, expected="an integer >= 0", at_least=0)
parse_positive_float = number_parser(float, expected="a positive number", above=0)
parse_seconds = number_parser(float, expected="seconds >= 0", at_least=0)


def parse_fraction(value: Any) -> float:
    """A number in (0, 1]."""
    number = parse_positive_float(value)
    if number > 1:
        raise ValueError(f"expected a fraction in (0, 1], got {value!r}")
    return number


def parse_regex(value: Any) -> str:
    """A valid regular expression."""
    try:
        re.compile(str(value))
    except re.error as err:
        raise ValueError(f"not a valid regular expression ({err}): {value!r}") from None
    return str(value)


def parse_grid(value: Any) -> tuple[int, int, int]:
    """Three positive voxel counts."""
    values = value.split() if isinstance(value, str) else list(value)
    if len(values) != 3:
        raise ValueError(f"expected three sizes (x y z), got {value!r}")
    return tuple(parse_positive_int(v) for v in values)


def parse_channels(value: Any) -> tuple[str, ...]:
    """Channel names (space or comma separated, or a list); order is kept."""
    items = value if isinstance(value, list | tuple) else [value]
    names = [n for item in items for n in str(item).replace(",", " ").split()]
    if len(set(names)) != len(names):
        raise ValueError("channel names repeat")
    return tuple(names)


def parse_model_name(value: Any) -> str:
    """A file-name-safe model name."""
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", str(value)):
        raise ValueError(f"expected letters, digits, '.', '_' or '-', got {value!r}")
    return str(value)


def parse_seed(value: Any) -> int:
    """A seed: an integer in [0, 2**32)."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"expected an integer seed, got {value!r}") from None
    if isinstance(value, float | bool) or not 0 <= number < 2**32:
        raise ValueError(f"expected an integer seed in [0, 2**32), got {value!r}")
    return number


def parse_memory_gb(value: Any) -> float:
    """Memory with an explicit unit (``8G``, ``8000M``, ``16GB``, ``1T``) -> GiB.

    A string without a unit is refused: fMRIPrep and MRIQC read bare numbers in different
    units, and users lose runs to that ambiguity. A number (from the ``mem_gb`` key of a
    config file, whose name carries the unit) is taken as GiB.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError(f"memory must be positive, got {value!r}")
        return round(float(value), 3)  # a number in a config file is ``mem_gb``: GiB
    match = _MEM_RE.match(str(value))
    if not match:
        raise ValueError(f"expected memory with a unit such as '8G' or '8000M', got {value!r}")
    amount = float(match.group(1)) * _MEM_SCALE_TO_GB[match.group(2).upper()]
    if amount <= 0:
        raise ValueError(f"memory must be positive, got {value!r}")
    return round(amount, 3)


def parse_labels(values: Iterable[str] | str, *, entity: str) -> tuple[str, ...]:
    """Entity labels from the command line or a config file.

    Each value may be a label with or without its ``<entity>-`` prefix, several labels
    separated by spaces or commas, or the path of a text file with one label per line
    (blank lines and ``#`` comments ignored), as the BIDS-Apps execution spec allows.
    Returns the sorted, de-duplicated labels.
    """
    if not isinstance(values, list | tuple):
        values = [values]
    prefix = f"{entity}-"
    labels: set[str] = set()
    for value in values:
        value = str(value)
        path = Path(value)
        if not _LABEL_RE.match(value.removeprefix(prefix)) and path.is_file():
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as err:
                raise ValueError(f"cannot read label file {value}: {err}") from None
            tokens = [tok for line in lines for tok in line.split("#", 1)[0].split()]
            source = f" (in {value})"
        else:
            tokens = value.replace(",", " ").split()
            source = ""
        for token in tokens:
            label = token.removeprefix(prefix)
            if not _LABEL_RE.match(label):
                hint = " or a readable file of labels" if not source else ""
                raise ValueError(
                    f"{token!r}{source} is not a {entity} label{hint}: "
                    "BIDS labels are letters and digits only"
                )
            labels.add(label)
    return tuple(sorted(labels))


def load_bids_filters(path: Path) -> dict[str, dict[str, Any]]:
    """Read and check a BIDS filter file (JSON): ``{"eeg": {...}, "bold": {...}}``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"cannot read the BIDS filter file {path}: {err}") from None
    try:
        filters = json.loads(text)
    except json.JSONDecodeError as err:
        raise UsageError(f"the BIDS filter file {path} is not valid JSON: {err}") from None
    try:
        return check_bids_filters(filters)
    except ValueError as err:
        raise UsageError(f"the BIDS filter file {path}: {err}") from None


def check_bids_filters(filters: Any) -> dict[str, dict[str, Any]]:
    """Check the structure of BIDS filters; raise ValueError naming the offending key."""
    if not isinstance(filters, dict):
        raise ValueError(f"expected a JSON object with keys among {FILTER_QUERIES}")
    checked: dict[str, dict[str, Any]] = {}
    for query, entities in filters.items():
        key = str(query).lower()
        if key not in FILTER_QUERIES:
            raise ValueError(f"unknown query {query!r}{_did_you_mean(key, FILTER_QUERIES)}")
        if not isinstance(entities, dict):
            raise ValueError(f"query {query!r} must map entity names to values")
        for entity, value in entities.items():
            values = value if isinstance(value, list) else [value]
            if not all(v is None or isinstance(v, str | int) for v in values):
                raise ValueError(
                    f"{query}.{entity}: expected a string, integer, null or a list of them"
                )
        checked[key] = dict(entities)
    return checked


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (expected one of {sorted(choices)})"


# --------------------------------------------------------------------------------------
# Defaults that depend on the machine
# --------------------------------------------------------------------------------------
def available_cpus() -> int:
    """CPUs this process may use (honours affinity masks, e.g. SLURM/cgroups)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def physical_memory_gb() -> float:
    """Total physical memory in GiB."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        return 8.0


# --------------------------------------------------------------------------------------
# TOML
# --------------------------------------------------------------------------------------
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
                        f"{_did_you_mean(option, OPTION_SECTION)}"
                    )
                options[option] = _toml_value(path, option, option_value)
        elif key in OPTION_SECTION:
            options[key] = _toml_value(path, key, value)
        else:
            raise UsageError(
                f"the config file {path}: unknown option {key!r}"
                f"{_did_you_mean(key, [*OPTION_SECTION, *_SECTIONS])}"
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
            f"unknown analysis level {level!r}{_did_you_mean(level, ANALYSIS_LEVELS)}"
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
    )


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
            raise ValueError(f"unknown {what} {value!r}{_did_you_mean(str(value), choices)}")
        return value

    return parse


def _absolute(path: str | os.PathLike) -> Path:
    return Path(os.path.abspath(Path(path).expanduser()))

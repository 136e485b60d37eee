"""Parsers of option values, shared by the command line (argparse ``type=``), the
configuration files (``--config-file``) and the simulator's command line.

Each parser raises ValueError with a message that says what was received and what was
expected; the callers add the option or the file and key.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bids_eeg2fmri.errors import UsageError

#: Queries a BIDS filter file may refine (as in fMRIPrep's ``--bids-filter-file``).
FILTER_QUERIES = ("eeg", "bold")
_LABEL_RE = re.compile(r"^[A-Za-z0-9]+$")
_MEM_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT])i?B?\s*$", re.IGNORECASE)
_MEM_SCALE_TO_GB = {"K": 1 / 1024**2, "M": 1 / 1024, "G": 1.0, "T": 1024.0}


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


#: Voxels per axis of a model grid: fewer leave no brain to mask (nilearn's EPI mask needs
#: a histogram), more than 256 is finer than 1 mm over a whole head (and terabytes of BOLD).
GRID_RANGE = (8, 256)


def parse_grid(value: Any) -> tuple[int, int, int]:
    """Three voxel counts within :data:`GRID_RANGE`."""
    values = value.split() if isinstance(value, str) else list(value)
    if len(values) != 3:
        raise ValueError(f"expected three sizes (x y z), got {value!r}")
    sizes = tuple(parse_positive_int(v) for v in values)
    low, high = GRID_RANGE
    if not all(low <= n <= high for n in sizes):
        raise ValueError(f"each size between {low} and {high} voxels expected, got {sizes}")
    return sizes


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
            raise ValueError(f"unknown query {query!r}{did_you_mean(key, FILTER_QUERIES)}")
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


def did_you_mean(word: str, choices: Iterable[str]) -> str:
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

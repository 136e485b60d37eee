"""Text files read strictly: UTF-8 JSON objects and tab-separated tables.

Every error is one line naming the file, ``<file>: <what is wrong> (<what was expected>)``,
raised as the caller's exception type (a data error by default).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from bids_eeg2fmri.errors import DataError


def _read_utf8(path: Path, error: type[Exception], expected: str) -> str:
    """A file's UTF-8 text (a byte-order mark allowed); ``error`` naming it otherwise."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise error(f"{path}: not UTF-8 text (byte {err.start}) ({expected})") from None
    except OSError as err:
        raise error(f"{path}: cannot be read ({err.strerror or err}) (a readable file)") from None


def read_json_object(path: Path, *, error: type[Exception] = DataError) -> dict[str, Any]:
    """The JSON object a file holds; ``error`` (a one-line message) if it holds anything else."""
    path = Path(path)
    text = _read_utf8(path, error, "a UTF-8 JSON object")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise error(
            f"{path}: not valid JSON ({err.msg} at line {err.lineno} column {err.colno}) "
            "(a JSON object)"
        ) from None
    if not isinstance(value, dict):
        raise error(f"{path}: a JSON {type(value).__name__}, not an object (a JSON object)")
    return value


def read_tsv_rows(
    path: Path, *, error: type[Exception] = DataError
) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and the (line number, values) rows of a tab-separated table; blank lines
    are skipped, a UTF-8 byte-order mark is allowed.

    Raises
    ------
    error
        (one line naming the file) Unreadable, not UTF-8, or a row whose number of values
        is not the header's.
    """
    path = Path(path)
    text = _read_utf8(path, error, "a tab-separated table")
    lines = [(i, line) for i, line in enumerate(text.splitlines(), start=1) if line.strip()]
    parsed = [(i, next(csv.reader([line], delimiter="\t"))) for i, line in lines]
    header = [h.strip() for h in parsed[0][1]] if parsed else []
    for number, row in parsed[1:]:
        if len(row) != len(header):
            raise error(
                f"{path}: line {number} has {len(row)} column(s), the header {len(header)} "
                "(one tab-separated value per column, n/a when unknown)"
            )
    return header, parsed[1:]

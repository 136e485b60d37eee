"""Validate a dataset with bids-validator-deno (the schema validator), offline."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from bids_eeg2fmri.errors import BIDSValidationError, Eeg2FmriError

LOGGER = logging.getLogger(__name__)
VALIDATOR = "bids-validator-deno"


def find_validator() -> str:
    """Path of the ``bids-validator-deno`` executable (next to this Python first)."""
    beside = Path(sys.executable).with_name(VALIDATOR)
    found = str(beside) if beside.is_file() else shutil.which(VALIDATOR)
    if not found:
        raise Eeg2FmriError(
            f"{VALIDATOR} is not installed (pip install bids-validator-deno), "
            "or pass --skip-bids-validation"
        )
    return found


def run_validator(dataset: Path, *, cache_dir: Path, extra_args: tuple[str, ...] = ()) -> dict:
    """Run the validator on ``dataset`` and return its JSON report.

    Parameters
    ----------
    dataset
        Root of the dataset (never written to).
    cache_dir
        Deno's cache (``DENO_DIR``); must be writable. Keeping it out of ``$HOME`` makes
        the validator work in containers with a read-only home.
    extra_args
        More validator options (e.g. ``("--ignoreNiftiHeaders",)``).
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DENO_DIR": str(cache_dir), "NO_COLOR": "1"}
    cmd = [find_validator(), str(dataset), "--format", "json", *extra_args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError:
        detail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise Eeg2FmriError(
            f"{VALIDATOR} failed on {dataset} (exit {proc.returncode}): {detail}"
        ) from None


def errors_of(report: dict) -> list[dict]:
    """The issues of severity ``error`` in a validator report."""
    return [i for i in report.get("issues", {}).get("issues", []) if i.get("severity") == "error"]


def validate_dataset(dataset: Path, *, cache_dir: Path, report_path: Path) -> None:
    """Validate ``dataset``; save the full report; raise on any error (exit code 16)."""
    report = run_validator(dataset, cache_dir=cache_dir)
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(json.dumps(report, indent=1), encoding="utf-8")
    errors = errors_of(report)
    warnings = len(report.get("issues", {}).get("issues", [])) - len(errors)
    if errors:
        first = errors[0]
        code = first.get("code", "?") + (f" ({first['subCode']})" if first.get("subCode") else "")
        codes = ", ".join(f"{c} x{n}" for c, n in Counter(e.get("code") for e in errors).items())
        raise BIDSValidationError(
            f"{dataset} is not valid BIDS: {len(errors)} error(s) [{codes}]; first: {code} "
            f"at {first.get('location', dataset)}; full report: {report_path}; "
            "fix the dataset or pass --skip-bids-validation"
        )
    LOGGER.info("%s is valid BIDS (%d warnings; report: %s)", dataset, warnings, report_path)

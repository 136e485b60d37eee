"""One exception hierarchy for user-facing failures, each mapped to a BIDS-App exit code.

The codes follow the BIDS-Apps execution specification ("Reserved exit codes") and BSD
sysexits; the command line turns any of these into a one-line message and its code.
"""

from __future__ import annotations


class Eeg2FmriError(Exception):
    """A failure the user can act on; ``str(error)`` is the one-line message."""

    exit_code = 1


class UsageError(Eeg2FmriError):
    """Bad arguments or options (also what argparse uses)."""

    exit_code = 2


class BIDSValidationError(Eeg2FmriError):
    """The input dataset is not valid BIDS."""

    exit_code = 16


class NothingSelectedError(Eeg2FmriError):
    """Entity filters (labels, filter file) selected no files."""

    exit_code = 18


class DataError(Eeg2FmriError):
    """Input data are present but inconsistent (e.g. volume markers vs BOLD volumes)."""

    exit_code = 65


class NoInputError(Eeg2FmriError):
    """Valid BIDS, but nothing to work on (no EEG runs, nothing to gather)."""

    exit_code = 66


class CannotCreateError(Eeg2FmriError):
    """An output or work directory cannot be created or written."""

    exit_code = 73


class UnknownAnalysisLevelError(UsageError):
    """The analysis level is not one this app offers (reserved code 17)."""

    exit_code = 17


class InUseError(Eeg2FmriError):
    """Another run holds what this one needs (sysexits TEMPFAIL: retry later)."""

    exit_code = 75

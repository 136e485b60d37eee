"""One participant at a time per work directory: a lock file per participant label.

Two runs that share ``-w`` and a participant would run the same nipype nodes at once and
fail in nipype's own files; jobs of different participants may share ``-w`` (one job per
participant on a cluster). The locks are ``flock`` locks, released by the system when
their process ends however it ends, so a killed run leaves none behind.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import logging
import os
import socket
from collections.abc import Iterable, Iterator
from pathlib import Path

from bids_eeg2fmri.errors import CannotCreateError, InUseError

LOGGER = logging.getLogger("bids_eeg2fmri")


@contextlib.contextmanager
def hold_participants(work_dir: Path, subjects: Iterable[str]) -> Iterator[None]:
    """Hold ``work_dir/locks/sub-<label>.lock`` for every subject while the block runs.

    Raises :class:`InUseError` (nothing held) when another process holds one of them; its
    message names the work directory, the participant and the holder (pid, host, start).
    """
    folder = Path(work_dir) / "locks"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CannotCreateError(f"cannot create {folder}: {err.strerror or err}") from None
    held: list = []
    try:
        for subject in sorted(set(subjects)):
            handle = _take(folder / f"sub-{subject}.lock", work_dir, subject)
            if handle is not None:
                held.append(handle)
        yield
    finally:
        for handle in held:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()


def _take(path: Path, work_dir: Path, subject: str):
    """The open, locked lock file; None (with a warning) where the file system has no
    locks (some cluster file systems): concurrent runs then go undetected."""
    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - closed by the caller
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise InUseError(
            f"{work_dir}: participant {subject} is being processed by another run using this "
            f"work directory ({holder}); wait for it to end, or give this run its own -w"
        ) from None
    except OSError as err:  # ENOLCK, ENOSYS, EINVAL: no locking here
        handle.close()
        LOGGER.warning(
            "%s: file locks are not supported there (%s): another run using this work "
            "directory for participant %s would not be detected",
            work_dir,
            err.strerror or err,
            subject,
        )
        return None
    handle.seek(0)
    handle.truncate()
    started = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    handle.write(f"pid {os.getpid()} on {socket.gethostname()}, since {started}")
    handle.flush()
    return handle

"""Participant reports on several processes.

Each report is built from the outputs on disk, independently of the others, so
``--nprocs N`` writes up to N at a time, as many as ``--mem`` holds. The workers are fresh
(spawned) Python processes: the calling process has TensorFlow's threads running by then,
which a forked child must not inherit. Their log records come back through a queue (held by
a manager process, so that a worker killed while logging cannot block it) to this
process's loggers, so the console and the log file read as if the reports had been
written here. Should the workers die, or not start, the reports left are written here,
one at a time.
"""

from __future__ import annotations

import logging
import logging.handlers
import math
import multiprocessing
import signal
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from bids_eeg2fmri.reports.html.outputs import find_runs
from bids_eeg2fmri.reports.html.participant import write_participant_report

#: the package logger whose records the workers send back
LOGGER_NAME = "bids_eeg2fmri"
LOGGER = logging.getLogger(__name__)


def write_participant_reports(
    output_dir: Path, subjects: Sequence[str], *, bids_dir: Path, nprocs: int, mem_gb: float
) -> Iterator[Path]:
    """Write the report of every participant in ``subjects``, up to ``nprocs`` at a time
    and as many as ``mem_gb`` (less this process's own memory) holds at
    :func:`report_memory_gb` each; yield the HTML files in the order of ``subjects``."""
    workers = min(int(nprocs), len(subjects))
    if workers > 1:
        need = max(report_memory_gb(output_dir, s) for s in subjects)
        workers = min(workers, int((mem_gb - _own_memory_gb()) // need))
        if workers > 1:
            LOGGER.info(
                "Writing %d reports, %d at a time (up to %.1f GB each)",
                len(subjects),
                workers,
                need,
            )
    done = 0
    manager = _start_manager() if workers > 1 else None
    if manager is not None:
        context = multiprocessing.get_context("spawn")
        with manager:
            queue = manager.Queue()
            listener = logging.handlers.QueueListener(queue, _ToLoggers())
            listener.start()
            pool = ProcessPoolExecutor(
                workers, mp_context=context, initializer=_worker_setup, initargs=(queue,)
            )
            try:
                n = len(subjects)
                for path in pool.map(_write_one, [output_dir] * n, subjects, [bids_dir] * n):
                    done += 1
                    yield path
            except BrokenProcessPool as err:
                LOGGER.warning(
                    "The report processes stopped (%s): the %d report(s) left are written "
                    "here, one at a time",
                    err,
                    len(subjects) - done,
                )
            finally:
                try:  # an interruption or a failed report: the reports not begun are not begun
                    pool.shutdown(wait=True, cancel_futures=True)
                finally:
                    listener.stop()
    for subject in subjects[done:]:
        yield write_participant_report(output_dir, subject, bids_dir=bids_dir)


def _start_manager():
    """The log queue's manager process, or None (with a warning) when no process starts:
    e.g. a script without ``if __name__ == "__main__":`` that runs the CLI's ``main``,
    which every spawned process runs again from the top (and stops at its first process)."""
    try:
        return multiprocessing.get_context("spawn").Manager()
    except (EOFError, OSError) as err:
        LOGGER.warning(
            "No report process could start (%s: %s; a script that calls bids_eeg2fmri "
            'needs `if __name__ == "__main__":`): the reports are written here, one at '
            "a time",
            type(err).__name__,
            err or "it stopped at once",
        )
        return None


def report_memory_gb(output_dir: Path, subject: str) -> float:
    """Memory a participant's report may take, GB: its largest run's synthesized and
    observed BOLD in float32 (both are read whole), twice for the arrays derived from them,
    and 0.5 GB for Python, matplotlib and the figures. A file that cannot be read counts
    as nothing here (the report says what is wrong with it)."""
    import nibabel as nib

    voxels = 0
    for run in find_runs(output_dir, subject):
        try:
            voxels = max(voxels, math.prod(nib.load(run.synth).shape))
        except Exception:  # noqa: BLE001 - missing or broken: the report notes it
            continue
    return 0.5 + 2 * 2 * 4 * voxels / 1e9


def _own_memory_gb() -> float:
    """This process's resident memory, GB (0 where /proc is not there)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0
    return pages * 4096 / 1e9


class _ToLoggers(logging.Handler):
    """Hands a worker's record to this process's logger of the same name, as if it had been
    logged here (its levels, filters, handlers and propagation)."""

    def emit(self, record: logging.LogRecord) -> None:
        logger = logging.getLogger(record.name)
        if logger.isEnabledFor(record.levelno):
            logger.handle(record)


def _worker_setup(queue) -> None:
    """In a worker: send the package's log records to ``queue``; leave Ctrl-C to the
    calling process (which stops the pool)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logger = logging.getLogger(LOGGER_NAME)
    logger.handlers[:] = [logging.handlers.QueueHandler(queue)]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False


def _write_one(output_dir: Path, subject: str, bids_dir: Path) -> Path:
    return write_participant_report(output_dir, subject, bids_dir=bids_dir)

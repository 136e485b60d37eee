"""Participant reports on several processes.

Each report is built from the outputs on disk, independently of the others, so
``--nprocs N`` writes N at a time. The workers are fresh (spawned) Python processes: the
calling process has TensorFlow's threads running by then, which a forked child must not
inherit. Their log records come back through a queue to this process's handlers, so the
console and the log file read as if the reports had been written here.
"""

from __future__ import annotations

import logging
import logging.handlers
import math
import multiprocessing
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from bids_eeg2fmri.reports.html.outputs import find_runs
from bids_eeg2fmri.reports.html.participant import write_participant_report

#: the package logger whose handlers receive the workers' records
LOGGER_NAME = "bids_eeg2fmri"


def write_participant_reports(
    output_dir: Path, subjects: Sequence[str], *, bids_dir: Path, nprocs: int, mem_gb: float
) -> Iterator[Path]:
    """Write the report of every participant in ``subjects``, up to ``nprocs`` at a time
    and as many as ``mem_gb`` holds (:func:`report_memory_gb` each); yield the HTML files in
    the order of ``subjects`` as they are done."""
    need = max((report_memory_gb(output_dir, s) for s in subjects), default=0.0)
    workers = min(int(nprocs), len(subjects), max(1, int(mem_gb // need)) if need else 1)
    if workers > 1:
        logging.getLogger(__name__).info(
            "Writing %d reports, %d at a time (up to %.1f GB each)", len(subjects), workers, need
        )
    if workers < 2:
        for subject in subjects:
            yield write_participant_report(output_dir, subject, bids_dir=bids_dir)
        return
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    logger = logging.getLogger(LOGGER_NAME)
    listener = logging.handlers.QueueListener(queue, *logger.handlers, respect_handler_level=True)
    listener.start()
    done = 0
    try:
        with ProcessPoolExecutor(
            workers, mp_context=context, initializer=_log_to_queue, initargs=(queue,)
        ) as pool:
            n = len(subjects)
            for path in pool.map(_write_one, [output_dir] * n, subjects, [bids_dir] * n):
                done += 1
                yield path
    except BrokenProcessPool as err:
        logger.warning(
            "The report processes stopped (%s): the %d report(s) left are written here, "
            "one at a time",
            err,
            len(subjects) - done,
        )
    finally:
        listener.stop()
        queue.close()
    for subject in subjects[done:]:
        yield write_participant_report(output_dir, subject, bids_dir=bids_dir)


def report_memory_gb(output_dir: Path, subject: str) -> float:
    """Memory a participant's report may take, GB: its largest run's synthesized and
    observed BOLD in float32 (both are read whole), twice for the arrays derived from them,
    and 0.5 GB for Python, matplotlib and the figures."""
    import nibabel as nib

    voxels = 0
    for run in find_runs(output_dir, subject):
        if run.synth.is_file():
            voxels = max(voxels, math.prod(nib.load(run.synth).shape))
    return 0.5 + 2 * 2 * 4 * voxels / 1e9


def _log_to_queue(queue) -> None:
    """In a worker: send the package's log records to ``queue``."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.handlers[:] = [logging.handlers.QueueHandler(queue)]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False


def _write_one(output_dir: Path, subject: str, bids_dir: Path) -> Path:
    return write_participant_report(output_dir, subject, bids_dir=bids_dir)

"""Run a nipype workflow: plugin choice, caching, progress, and failures per run."""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

LOGGER = logging.getLogger("bids_eeg2fmri")
_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception)): (.+)$")


@dataclass(frozen=True)
class NodeFailure:
    """A node that crashed: its name, the exception's class and one-line message."""

    node: str
    error: str  # qualified, as the crash report gives it
    message: str
    crash_file: Path

    @property
    def data_error(self) -> bool:
        """Whether the exception is one of the app's data errors (exit 65)."""
        import importlib

        from bids_eeg2fmri.errors import DataError

        module, _, name = self.error.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module), name) if module else None
        except ImportError:
            return False
        return isinstance(cls, type) and issubclass(cls, DataError)


def run_workflow(
    wf,
    *,
    base_dir: Path,
    crash_root: Path,
    nprocs: int,
    mem_gb: float,
    stop_on_first_crash: bool,
    log_handlers=(),
    verbose: bool = False,
) -> list[NodeFailure]:
    """Run ``wf`` with its cache in ``base_dir``; return the failed nodes (empty: success).

    One node per step; cached nodes are reused on a rerun with the same work directory,
    so an interrupted run resumes where it stopped. ``nprocs > 1`` uses MultiProc.
    """
    os.environ.setdefault("NIPYPE_NO_ET", "1")  # no network check for new versions
    from nipype import config as nipype_config

    nipype_config.set("execution", "check_version", "false")
    # nipype's records go to our handlers only: the run's log file, and the console with -v
    # (nipype prints tracebacks); nipype's own console handler is removed
    for name in ("nipype", "nipype.workflow"):
        for handler in list(logging.getLogger(name).handlers):
            logging.getLogger(name).removeHandler(handler)
    nipype_logger = logging.getLogger("nipype.workflow")
    nipype_logger.setLevel(logging.INFO)
    nipype_logger.propagate = False
    for handler in log_handlers:
        nipype_logger.addHandler(handler)
    if verbose:  # otherwise failures reach the console as one line each, from the caller
        console = logging.StreamHandler()
        console.setFormatter(logging.Formatter("%(asctime)s | nipype  | %(message)s", "%H:%M:%S"))
        nipype_logger.addHandler(console)

    wf.base_dir = str(base_dir)
    wf.config["execution"].update(
        {
            "crashfile_format": "txt",
            "stop_on_first_crash": stop_on_first_crash,
            "remove_unnecessary_outputs": False,
            "poll_sleep_duration": 0.05,
            "hash_method": "timestamp",
        }
    )
    names = wf.list_node_names()
    state = {"done": 0, "total": len(names)}

    def progress(node, status):
        if status == "start":
            LOGGER.info("[%d/%d] %s", state["done"] + 1, state["total"], node.fullname)
        elif status == "end":
            state["done"] += 1
        elif status == "exception":
            state["done"] += 1
            LOGGER.error("[%d/%d] FAILED %s", state["done"], state["total"], node.fullname)

    plugin_args = {"status_callback": progress}
    if nprocs > 1:
        plugin, plugin_args = "MultiProc", {**plugin_args, "n_procs": nprocs, "memory_gb": mem_gb}
    else:
        plugin = "Linear"
    started = time.time()
    try:
        wf.run(plugin=plugin, plugin_args=plugin_args)
    except RuntimeError:
        failures = collect_failures(crash_root, since=started)
        if not failures:
            raise
        return failures
    return []


def collect_failures(crash_root: Path, *, since: float) -> list[NodeFailure]:
    """Crash reports written below ``crash_root`` since ``since`` (a time stamp)."""
    failures = []
    for crash in sorted(Path(crash_root).glob("sub-*/log/*/crash-*.txt")):
        if crash.stat().st_mtime + 1 < since:
            continue
        text = crash.read_text(encoding="utf-8", errors="replace")
        node = re.search(r"^Node: (.+)$", text, flags=re.MULTILINE)
        error, message = "Error", "see the crash report"
        for line in reversed(text.splitlines()):
            match = _EXCEPTION_LINE.match(line.strip())
            if match:
                error, message = match.groups()
                break
        failures.append(NodeFailure(node.group(1) if node else crash.stem, error, message, crash))
    return failures

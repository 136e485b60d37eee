"""What every benchmark section shares: the machine's description, running the CLI in a
fresh process (optionally sampling its memory), simulating datasets, medians."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Context:
    """Where a harness run works, and how big it is."""

    root: Path  # scratch folder of this run (datasets, outputs, work dirs)
    quick: bool  # smoke-test sizes: checks the harness, its figures mean nothing

    def bin(self, name: str) -> str:
        return str(Path(sys.executable).parent / name)


def median(values) -> float:
    return float(statistics.median(values))


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def memory_gib() -> float:
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return round(pages / 2**30, 1)


def gpus() -> list[str]:
    """GPU names from nvidia-smi (empty without one)."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return (
        [line.strip() for line in out.stdout.splitlines() if line.strip()]
        if not out.returncode
        else []
    )


def run(argv: list[str], *, log: Path, sample_memory: bool = False) -> dict:
    """Run ``argv`` to completion with its output in ``log``; wall seconds and, when
    sampling, peak memory: the process's anonymous memory (sampled every 0.2 s from /proc)
    and the largest resident set of the process or any of its children (the workflow's
    worker processes), from the kernel's accounting at exit (as GNU time's %M)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        peak_anon = 0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                break
            if sample_memory:
                peak_anon = max(peak_anon, _status(proc.pid).get("RssAnon", 0))
            time.sleep(0.2)
    wall = time.perf_counter() - start
    if proc.returncode:
        tail = log.read_text(errors="replace").splitlines()[-5:]
        raise RuntimeError(f"{' '.join(argv[:4])} ... exited {proc.returncode}: {tail}")
    figures = {"wall_s": round(wall, 2)}
    if sample_memory:
        figures |= {
            "peak_anonymous_mb": round(peak_anon / 1024),
            "peak_rss_mb": round(usage.ru_maxrss / 1024),  # kB on Linux
        }
    return figures


def _status(pid: int) -> dict[str, int]:
    """Memory lines (kB) of /proc/<pid>/status; empty once the process is gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    return {
        key: int(value.split()[0])
        for key, value in (line.split(":", 1) for line in lines)
        if value.strip().endswith("kB")
    }


def simulate(ctx: Context, name: str, *options: str) -> Path:
    """A simulated dataset under the run's root (made once per harness run)."""
    data = ctx.root / name
    if not (data / "dataset_description.json").exists():
        run([ctx.bin("bids-eeg2fmri-simulate"), str(data), *options], log=ctx.root / f"{name}.log")
    return data


def app(
    ctx: Context, data: Path, out: Path, level: str, *options: str, step: str = "", **kw
) -> dict:
    """Run ``bids-eeg2fmri DATA OUT LEVEL OPTIONS`` in a fresh process (its log beside OUT,
    named after the level and ``step``)."""
    argv = [
        ctx.bin("bids-eeg2fmri"),
        str(data),
        str(out),
        level,
        "--skip-bids-validation",
        *options,
    ]
    return run(argv, log=out.with_name(f"{out.name}-{level}{step}.log"), **kw)

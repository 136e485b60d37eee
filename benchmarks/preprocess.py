"""Benchmark: participant-level preprocessing of one hour of 64-channel EEG with its BOLD.

Simulates one participant with one run of 1667 volumes (TR 2.16 s: one hour), 64 EEG
channels at 250 Hz and a 64 x 64 x 30 BOLD grid (not timed), then times

    bids-eeg2fmri DS OUT participant --skip-bids-validation -w WORK --nprocs N

in a fresh work directory, for N = 1 and 2, three times each, and reports the median wall
time and peak resident memory of the largest process (GNU time's %M). Target (issue 4):
under 30 s and under 2 GB on 2 cores.

Usage: python benchmarks/preprocess.py [--volumes 1667] [--repeat 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, default=1667)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="reuse/keep the simulated dataset here")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-preprocess-"))
    data = args.keep or root / "ds"
    if not (data / "dataset_description.json").exists():
        start = time.monotonic()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "bids_eeg2fmri.simulate.cli",
                str(data),
                "--participants",
                "1",
                "--volumes",
                str(args.volumes),
                "--seed",
                "0",
            ],
            check=True,
            stderr=subprocess.DEVNULL,
        )
        print(f"simulated in {time.monotonic() - start:.0f} s", file=sys.stderr)
    results = {}
    for nprocs in (1, 2):
        walls, peaks = [], []
        for i in range(args.repeat):
            out, work = root / f"out{nprocs}-{i}", root / f"work{nprocs}-{i}"
            cmd = [
                sys.executable,
                "-m",
                "bids_eeg2fmri",
                str(data),
                str(out),
                "participant",
                "--skip-bids-validation",
                "-w",
                str(work),
                "--nprocs",
                str(nprocs),
            ]
            stats = root / "time.txt"
            start = time.monotonic()
            subprocess.run(
                ["/usr/bin/time", "-o", str(stats), "-f", "%M", *cmd],
                check=True,
                stderr=subprocess.DEVNULL,
            )
            walls.append(time.monotonic() - start)
            peaks.append(int(stats.read_text().split()[-1]) / 1024)
        results[f"nprocs={nprocs}"] = {
            "wall_s_median": round(statistics.median(walls), 1),
            "wall_s_all": [round(w, 1) for w in walls],
            "peak_rss_mb_median": round(statistics.median(peaks)),
        }
    command = "bids-eeg2fmri DS OUT participant --skip-bids-validation -w WORK --nprocs N"
    eeg_hours = args.volumes * 2.16 / 3600
    report = {
        "benchmark": "participant preprocessing",
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{_cpu_model()}, {len(os.sched_getaffinity(0))} cores",
        "python": platform.python_version(),
        "eeg_hours": round(eeg_hours, 3),
        "volumes": args.volumes,
        "command": command,
        "results": results,
    }
    print(json.dumps(report, indent=2))
    shutil.rmtree(root, ignore_errors=True)  # outputs and work dirs; --keep keeps the data
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

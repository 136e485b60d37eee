"""Benchmark: peak memory of ``participant --train`` on 5, 10 and 20 simulated participants.

Simulates 20 participants x 300 volumes (64 channels, 64 x 64 x 30, not timed), runs the
preprocessing once, then trains one epoch of the compact preset on the first 5, 10 and 20
participants (default split: the last 20 % held out, one validating), each in a fresh
process under GNU time; reports its maximum resident set size and wall time. The training data are
streamed from memory-mapped caches, so memory should not grow with participants.

Usage: python benchmarks/training_memory.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="reuse/keep the simulated dataset here")
    parser.add_argument("--counts", type=int, nargs="+", default=[5, 10, 20])
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    data = args.keep or root / "ds"
    n = max(args.counts)
    if not (data / "dataset_description.json").exists():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "bids_eeg2fmri.simulate.cli",
                str(data),
                "--participants",
                str(n),
                "--volumes",
                "300",
            ],
            check=True,
            stderr=subprocess.DEVNULL,
        )
    app = [sys.executable, "-m", "bids_eeg2fmri", str(data)]
    common = ["participant", "--skip-bids-validation", "-w", str(root / "work")]
    subprocess.run([*app, str(root / "prep"), *common], check=True, stderr=subprocess.DEVNULL)
    results = {}
    for count in args.counts:
        labels = [f"{i:02d}" for i in range(1, count + 1)]
        stats = root / "time.txt"
        start = time.monotonic()
        subprocess.run(
            [
                "/usr/bin/time",
                "-o",
                str(stats),
                "-f",
                "%M",
                *app,
                str(root / f"out{count}"),
                *common,
                "--participant-label",
                *labels,
                "--train",
                "--epochs",
                "1",
                "--batch-size",
                "8",
                "--model-name",
                f"m{count}",
            ],
            check=True,
            stderr=subprocess.DEVNULL,
        )
        results[count] = {
            "peak_rss_mb": round(int(stats.read_text().split()[-1]) / 1024),
            "wall_s": round(time.monotonic() - start, 1),
        }
        print(count, results[count], file=sys.stderr, flush=True)
    print(
        json.dumps(
            {
                "benchmark": "training memory",
                "date": time.strftime("%Y-%m-%d"),
                "command": "bids-eeg2fmri DS OUT participant --skip-bids-validation -w "
                "WORK --participant-label 01..N --train --epochs 1 --batch-size 8",
                "results": results,
            },
            indent=2,
        )
    )
    shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark: the README's demo, step by step, after installation.

Times the three commands that ``make demo`` runs, in a fresh temporary folder:

    bids-eeg2fmri-simulate DATA --seed 0
    bids-eeg2fmri DATA OUT participant -w WORK --train --epochs 5
    bids-eeg2fmri DATA OUT group -w WORK

``--repeat`` times, and prints the wall time of each step and of the whole (median).
Target (issue 6): the whole demo in under 5 minutes on the 2-core CI machine.

Usage: python benchmarks/demo.py [--repeat 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STEPS = (
    ("simulate", ["bids-eeg2fmri-simulate", "{data}", "--seed", "0"]),
    (
        "participant",
        ["bids-eeg2fmri", "{data}", "{out}", "participant", "-w", "{work}", "--train"]
        + ["--epochs", "5"],
    ),
    ("group", ["bids-eeg2fmri", "{data}", "{out}", "group", "-w", "{work}"]),
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    bin_dir = Path(sys.executable).parent
    times: dict[str, list[float]] = {name: [] for name, _ in STEPS}
    times["total"] = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
            paths = {k: str(Path(tmp) / k) for k in ("data", "out", "work")}
            total = 0.0
            for name, command in STEPS:
                argv = [str(bin_dir / command[0]), *(c.format(**paths) for c in command[1:])]
                start = time.perf_counter()
                subprocess.run(argv, check=True, capture_output=True, env=os.environ)
                elapsed = time.perf_counter() - start
                times[name].append(elapsed)
                total += elapsed
            times["total"].append(total)
    for name, values in times.items():
        runs = ", ".join(f"{v:.0f}" for v in values)
        print(f"{name:12s} median {statistics.median(values):6.1f} s   runs: {runs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

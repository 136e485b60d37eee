"""Benchmark: peak memory of ``participant --train`` on 5, 10 and 20 simulated participants.

Simulates 20 participants x 300 volumes (64 channels, 64 x 64 x 30, not timed), runs the
preprocessing once, then trains one epoch of the compact preset on the first 5, 10 and 20
participants (default split: the last 20 % held out, one validating), each in a fresh
process, sampling its /proc status every 0.2 s: the peak of anonymous memory (RssAnon:
what the process allocated) and of the whole resident set (VmHWM, which also counts the
pages of the memory-mapped caches it has read, reclaimable by the kernel). The training
data are streamed from those caches, so anonymous memory should not grow with
participants.

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


def _status(pid: int) -> dict[str, int]:
    """Memory lines of /proc/<pid>/status in kB (empty once the process is gone)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    return {
        k: int(v.split()[0])
        for k, v in (ln.split(":", 1) for ln in lines)
        if v.strip().endswith("kB")
    }


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
        start = time.monotonic()
        proc = subprocess.Popen(
            [
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
            stderr=subprocess.DEVNULL,
        )
        peak_anon = peak_hwm = 0
        while proc.poll() is None:
            status = _status(proc.pid)
            peak_anon = max(peak_anon, status.get("RssAnon", 0))
            peak_hwm = max(peak_hwm, status.get("VmHWM", 0))
            time.sleep(0.2)
        if proc.returncode:
            raise SystemExit(f"training on {count} participants failed ({proc.returncode})")
        results[count] = {
            "peak_anonymous_mb": round(peak_anon / 1024),
            "peak_resident_mb": round(peak_hwm / 1024),
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
    shutil.rmtree(root, ignore_errors=True)  # outputs and work; --keep keeps the data
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

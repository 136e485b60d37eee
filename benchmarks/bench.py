"""The benchmark harness: every figure of benchmarks/RESULTS.md in one run.

    python benchmarks/bench.py            # full run (under an hour on the 2-core CI kind)
    python benchmarks/bench.py --quick    # smoke run at tiny sizes (checks the harness)

Sections: speed of each preset on arrays in memory (with FLOPs and this CPU's matmul
throughput), the pipeline's relevance maps (LRP) beside synthesis, the original eeg_to_fmri
package on the same arrays, preprocessing of one hour
of EEG, training memory on 5/10/20 participants, held-out quality against the baselines and
the noise ceiling over 3 seeds, the README's demo, classifying participants, and the cost
of a study derived from them. Writes RESULTS.md and results.json (the full run into
benchmarks/, a quick run into benchmarks/quick/, which git ignores, unless --results-dir
says otherwise). Every figure is measured in this run; ratios compare figures of this run only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from importlib import metadata
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).parent))

import classify  # noqa: E402
import common  # noqa: E402
import mr  # noqa: E402
import pipeline  # noqa: E402
import report  # noqa: E402
import speed  # noqa: E402

from bids_eeg2fmri.config import PRESET_NAMES  # noqa: E402 - TensorFlow-free

DEFAULT_PRESET = "compact"
SECTIONS = (
    "models", "lrp", "original", "preprocessing", "memory", "quality", "demo", "mr", "classify"
)  # fmt: skip


def machine() -> dict:
    packages = (
        "bids-eeg2fmri",
        "tensorflow",
        "keras",
        "numpy",
        "mne",
        "nipype",
        "pybids",
        "nilearn",
    )
    versions = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": common.cpu_model(),
        "cores": len(os.sched_getaffinity(0)),
        "memory_gib": common.memory_gib(),
        "gpus": common.gpus(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        "command": " ".join(["python", "benchmarks/bench.py", *sys.argv[1:]]),
        "commit": _commit(),
    }


def _commit() -> str | None:
    """The checkout's commit (with '+' when the tracked files differ from it)."""
    here = Path(__file__).parent

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=here, capture_output=True, text=True)
        return done.stdout.strip() if not done.returncode else ""

    commit = git("rev-parse", "--short", "HEAD")
    return (commit + ("+" if git("status", "--porcelain", "-uno") else "")) or None


def quality_plan(quick: bool, gpu: bool) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """(preset, seeds) of the quality section: 3 seeds each, of every preset on a GPU, of
    the compact family on a CPU (the presets of the original's size train several times
    slower there: RESULTS.md says how long they would take). Quick mode: one seed of the
    default and of compact-plain (which takes the section's second path)."""
    if quick:
        return ((DEFAULT_PRESET, (0,)), ("compact-plain", (0,)))
    if gpu:
        others = [p for p in PRESET_NAMES if p != DEFAULT_PRESET]
        return tuple((p, (0, 1, 2)) for p in (DEFAULT_PRESET, *others))
    return tuple((p, (0, 1, 2)) for p in (DEFAULT_PRESET, "compact-plain", "compact-variational"))


def _get_devices(results: dict) -> list[str] | None:
    """The device types TensorFlow listed in the models section, if it ran."""
    models = results.get("models")
    return models.get("devices") if isinstance(models, dict) else None


def _fresh_process(function, *args):
    """``function(*args)`` in a new interpreter, so that TensorFlow never loads into this
    process: the processes the harness starts later must not inherit its memory (Linux
    counts the parent's resident set in a forked child's peak until it execs)."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(function, args)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes: a smoke run of the harness"
    )
    parser.add_argument("--results-dir", type=Path, help="where RESULTS.md and results.json go")
    parser.add_argument(
        "--scratch", type=Path, help="scratch folder (default: a new temporary one)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument(
        "--no-install", action="store_true", help="do not install the original package"
    )
    parser.add_argument(
        "--sections",
        nargs="+",
        choices=SECTIONS,
        default=list(SECTIONS),
        help="a subset of the sections (default: all)",
    )
    parser.add_argument(
        "--update",
        action="store_true",
        help="re-measure only --sections into the existing results.json (recorded as such)",
    )
    parser.add_argument(
        "--render", type=Path, metavar="JSON", help="only rewrite RESULTS.md from a results.json"
    )
    args = parser.parse_args()
    if args.render:
        results = json.loads(args.render.read_text())
        results["scale"] = report.scale(results)
        (args.render.parent / "RESULTS.md").write_text(report.markdown(results))
        return 0
    root = args.scratch or Path(tempfile.mkdtemp(prefix="bench-"))
    root.mkdir(parents=True, exist_ok=True)
    ctx = common.Context(root=root, quick=args.quick)
    here = Path(__file__).parent
    results_dir = args.results_dir or (here / "quick" if args.quick else here)
    quick = ctx.quick
    presets = (DEFAULT_PRESET,) if quick else (DEFAULT_PRESET, "noddi-tafp")
    results: dict = {"quick": quick, "machine": machine(), "seconds": {}}

    def quality() -> dict:
        # every preset on a GPU that TensorFlow sees (as the models section found, else
        # nvidia-smi's answer), the compact family on a CPU
        devices = _get_devices(results) or (["GPU"] if common.gpus() else [])
        plan = quality_plan(quick, gpu="GPU" in devices)
        skipped = [p for p in PRESET_NAMES if p not in dict(plan)]
        return pipeline.quality(ctx, plan, epochs=2 if quick else 10) | {"not_run": skipped}

    sections = {
        "models": lambda: (
            _fresh_process(speed.models, ctx, presets) | {"spectra": speed.spectra(ctx)}
        ),
        "lrp": lambda: _fresh_process(speed.lrp, ctx),
        "original": lambda: speed.original(ctx, install=not args.no_install),
        "preprocessing": lambda: pipeline.preprocessing(ctx),
        "memory": lambda: pipeline.memory(ctx),
        "quality": quality,
        "demo": lambda: pipeline.demo(ctx),
        "mr": lambda: mr.mr_section(ctx),
        "classify": lambda: classify.classify_section(ctx),
    }
    if args.update:  # the earlier run's figures, with these sections measured again
        earlier = json.loads((results_dir / "results.json").read_text())
        remeasured = earlier.setdefault("remeasured", {})
        for name in args.sections:
            remeasured[name] = {k: results["machine"][k] for k in ("date", "command", "commit")}
        results.clear()  # the sections' closures read this very dict
        results.update(earlier)
    started = time.monotonic()
    for name in args.sections:
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        start = time.monotonic()
        try:
            results[name] = sections[name]()
        except Exception as error:  # one failing section must not lose the others' figures
            traceback.print_exc()
            results[name] = {"failed": f"{type(error).__name__}: {error}"}
        results["seconds"][name] = round(time.monotonic() - start, 1)
        print(f"[bench] {name}: {results['seconds'][name]:.0f} s", file=sys.stderr, flush=True)
    if not args.update:
        results["seconds"]["total"] = round(time.monotonic() - started, 1)
    results_dir.mkdir(parents=True, exist_ok=True)
    measured = json.dumps(results, indent=2) + "\n"
    (results_dir / "results.json").write_text(measured)  # kept if what follows fails
    results["scale"] = report.scale(results)  # derived from the figures (also by --render)
    (results_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (results_dir / "RESULTS.md").write_text(report.markdown(results))
    print(
        f"[bench] wrote {results_dir / 'RESULTS.md'} in {results['seconds']['total']:.0f} s",
        file=sys.stderr,
    )
    if not args.keep and not args.scratch:
        shutil.rmtree(root, ignore_errors=True)
    failed = [name for name in args.sections if "failed" in results.get(name, {})]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Finish a classification section whose run was stopped during its null labellings.

    python benchmarks/classify_finish.py SCRATCH --nulls 10 --permutations 50 --repeats 2

SCRATCH is the ``--scratch`` folder of ``bench.py --sections classify`` (kept with
``--scratch``): the trained model, the effect datasets and their participant and group
outputs are read as they are (the AUCs from each effect's
``group_desc-classify_metrics.tsv``, written before the null labellings began; the wall
times from the first and last line of each run's log in OUTPUT_DIR/logs), then the null
labellings are run at the sizes given here, and the section goes into results.json and
RESULTS.md beside this script (recorded under "remeasured" with this command).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import datetime
from pathlib import Path

import classify
import common
import report
from bench import machine

_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+ \| bids_eeg2fmri")


def _wall(out: Path, level_line: str) -> float:
    """Seconds between the first and last line of the run log in ``out/logs`` whose
    text holds ``level_line`` (the last such run)."""
    for log in sorted((out / "logs").glob("bids-eeg2fmri-*.log"), reverse=True):
        lines = log.read_text(encoding="utf-8").splitlines()
        if any(level_line in line for line in lines):
            stamps = [m.group(1) for m in map(_STAMP.match, lines) if m]
            first, last = (datetime.fromisoformat(s) for s in (stamps[0], stamps[-1]))
            return (last - first).total_seconds()
    raise SystemExit(f"{out}/logs: no run log with {level_line!r}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scratch", type=Path)
    parser.add_argument("--nulls", type=int, default=10)
    parser.add_argument("--permutations", default="50")
    parser.add_argument("--repeats", default="2")
    args = parser.parse_args()
    ctx = common.Context(root=args.scratch, quick=False)
    sizes = classify.plan(False)
    base = args.scratch / "classify"
    found = {
        "train_options": sizes["train"],
        "train_wall_s": _wall(base / "train-out", "Participant level done"),
        "group_options": sizes["groups"],
        "permutations": int(sizes["permutations"]),
        "repeats": int(sizes["repeats"]),
        "folds": int(sizes["folds"]),
        "effects": {},
    }
    for effect in sizes["effects"]:
        out = base / f"effect-{effect:g}-out"
        found["effects"][f"{effect:g}"] = {
            "participant_wall_s": _wall(out, "Participant level done"),
            "group_wall_s": _wall(out, "Classification tables"),
            "views": classify._metrics(out / "group_desc-classify_metrics.tsv"),
        }
    sizes |= {"nulls": args.nulls, "null_permutations": args.permutations,
              "null_repeats": args.repeats}  # fmt: skip
    data, result = base / "effect-0", base / "effect-0-out"
    found["nulls"] = classify._nulls(ctx, sizes, data, result, base / "nulls")
    here = Path(__file__).parent
    results = json.loads((here / "results.json").read_text())
    results["classify"] = found
    stamp = machine()
    results.setdefault("remeasured", {})["classify"] = {
        "date": stamp["date"],
        "command": "python benchmarks/bench.py --sections classify --update --scratch "
        f"SCRATCH (stopped during the nulls), then {' '.join(sys.argv)}",
        "commit": stamp["commit"],
    }
    results["scale"] = report.scale(results)
    (here / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (here / "RESULTS.md").write_text(report.markdown(results))
    print(json.dumps(found["nulls"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Null simulations for the classification section: new datasets without a group effect
(not relabellings of one), each through the participant and group levels; and, with
``--effects``, datasets with a group effect through the same steps and the same model.

    python benchmarks/classify_nulls.py SCRATCH --model MODEL.keras --nulls 20 \
        [--effects SIZE ...] [--permutations 100] [--repeats 2] [--update] \
        [--finished-only] [--quick]

Dataset k is simulated with the classification section's EEG-only options (40 participants,
20/20, biosemi128 at 2048 Hz), ``--group-effect 0 --seed 300+k``; ``participant --model
MODEL --lrp-volumes 0``, then ``group --classify group``. Each finished null leaves
SCRATCH/null-K/result.json and its recordings are deleted (a dataset is ~12 GB), so a run
stopped part-way resumes where it stopped. Dataset k + 1 is simulated while dataset k is
applied and classified. The share of nulls with p_permutation < 0.05 per
view should be about 0.05. The effect datasets (``--group-effect SIZE --seed 400+i``, in
SCRATCH/effect-SIZE) are run first; their AUC per view with its interval is what a model
trained at this size finds. ``--update`` puts the finished datasets into results.json and
RESULTS.md beside this script (under the classification section).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import classify
import common

SEED0 = 300
EFFECT_SEED0 = 400


def effect_folder(size: float) -> str:
    return f"effect-{size:g}"


def simulated(ctx: common.Context, name: str, seed: int, effect: float) -> dict:
    """Dataset SCRATCH/NAME (simulated again when a stopped run left it half-written)."""
    folder = ctx.root / name
    ok = folder / "simulated.json"
    if ok.exists():
        return json.loads(ok.read_text())
    shutil.rmtree(folder / "ds", ignore_errors=True)
    options = classify.plan(ctx.quick)["groups"]
    figures = common.run(
        [ctx.bin("bids-eeg2fmri-simulate"), str(folder / "ds"), *options,
         "--group-effect", f"{effect:g}", "--seed", str(seed)],
        log=folder / "simulate.log",
    )  # fmt: skip
    ok.write_text(json.dumps(figures))
    return figures


def one_dataset(ctx: common.Context, name: str, seed: int, model: Path, args, simulation) -> dict:
    """Apply and classify dataset SCRATCH/NAME once ``simulation`` (a future of
    :func:`simulated`) is done; its figures."""
    folder = ctx.root / name
    out = folder / "out"
    simulated_figures = simulation.result()
    shutil.rmtree(out, ignore_errors=True)  # a stopped run's half
    applied = common.app(ctx, folder / "ds", out, "participant", "-w", str(folder / "work"),
                         "--model", str(model), "--lrp-volumes", "0", "--nprocs", "2")  # fmt: skip
    grouped = common.app(ctx, folder / "ds", out, "group", "--classify", "group",
                         "--permutations", args.permutations, "--cv-repeats", args.repeats,
                         "--cv-folds", classify.plan(ctx.quick)["folds"],
                         "--seed", str(seed - SEED0), "--nprocs", "2")  # fmt: skip
    views = classify._metrics(out / "group_desc-classify_metrics.tsv")
    result = {
        "seed": seed,
        "model": str(model),
        "permutations": int(args.permutations),
        "repeats": int(args.repeats),
        "simulate_wall_s": simulated_figures["wall_s"],
        "participant_wall_s": applied["wall_s"],
        "group_wall_s": grouped["wall_s"],
        "p_permutation": {v: m["p_permutation"] for v, m in views.items()},
        "auc": {v: m["auc"] for v, m in views.items()},
        "views": views,
    }
    (folder / "result.json").write_text(json.dumps(result, indent=1))
    for bulky in (folder / "ds", folder / "work"):  # the recordings and caches: ~12 GB
        shutil.rmtree(bulky, ignore_errors=True)
    return result


def _check_sizes(results: list[dict], args, model: Path) -> None:
    asked = {"model": str(model.resolve()), "permutations": int(args.permutations),
             "repeats": int(args.repeats)}  # fmt: skip
    for r in results:  # a resumed run must not mix sizes (older results lack the keys)
        other = {key: r[key] for key in asked if key in r and r[key] != asked[key]}
        if other:
            raise SystemExit(f"seed {r['seed']} was run with {other}, not {asked}")


def summary(results: list[dict], args, model: Path) -> dict:
    from scipy.stats import binomtest

    _check_sizes(results, args, model)
    views = list(results[0]["p_permutation"])
    p = {v: [r["p_permutation"][v] for r in results] for v in views}
    below = {v: sum(x < 0.05 for x in ps) for v, ps in p.items()}
    return {
        "n": len(results),
        "asked": args.nulls,
        "model": str(model),
        "model_note": args.model_note,
        "options": classify.plan(args.quick)["groups"] + ["--group-effect", "0"],
        "permutations": int(args.permutations),
        "repeats": int(args.repeats),
        "share_p_below_0.05": {v: k / len(results) for v, k in below.items()},
        "share_ci": {  # exact (Clopper-Pearson) 95 % interval of each share
            v: list(binomtest(k, len(results)).proportion_ci(0.95)) for v, k in below.items()
        },
        "min_p": {v: min(ps) for v, ps in p.items()},
        "wall_s": {
            step: common.median([r[f"{step}_wall_s"] for r in results])
            for step in ("simulate", "participant", "group")
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scratch", type=Path)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--model-note", default="", help="how the model was trained (RESULTS.md)")
    parser.add_argument("--nulls", type=int, default=20)
    parser.add_argument("--permutations", default="100")
    parser.add_argument("--repeats", default="2")
    parser.add_argument("--update", action="store_true")
    parser.add_argument(
        "--finished-only",
        action="store_true",
        help="run no more datasets: summarise (and --update) the finished ones",
    )
    parser.add_argument("--quick", action="store_true", help="smoke-test sizes")
    parser.add_argument(
        "--effects", type=float, nargs="+", default=[], metavar="SIZE",
        help="also datasets with these --group-effect sizes (run before the nulls)",
    )  # fmt: skip
    args = parser.parse_args()
    ctx = common.Context(root=args.scratch, quick=args.quick)
    args.scratch.mkdir(parents=True, exist_ok=True)
    jobs = [(effect_folder(e), EFFECT_SEED0 + i, e) for i, e in enumerate(args.effects)]
    jobs += [(f"null-{k}", SEED0 + k, 0.0) for k in range(args.nulls)]
    finished = {}
    for name, _, _ in jobs:
        if (args.scratch / name / "result.json").exists():
            finished[name] = json.loads((args.scratch / name / "result.json").read_text())
    todo = [] if args.finished_only else [j for j in jobs if j[0] not in finished]
    # the next dataset is simulated (one core) while this one is applied and classified
    with ThreadPoolExecutor(max_workers=1) as simulator:
        ahead = {todo[0][0]: simulator.submit(simulated, ctx, *todo[0])} if todo else {}
        for i, (name, seed, _) in enumerate(todo):
            if i + 1 < len(todo):
                ahead[todo[i + 1][0]] = simulator.submit(simulated, ctx, *todo[i + 1])
            finished[name] = one_dataset(ctx, name, seed, args.model.resolve(), args,
                                         ahead.pop(name))  # fmt: skip
            print(name, json.dumps(finished[name]["p_permutation"]), flush=True)
    nulls = [r for name, r in finished.items() if name.startswith("null-")]
    effects = {f"{e:g}": finished[effect_folder(e)] for e in args.effects
               if effect_folder(e) in finished}  # fmt: skip
    if not nulls and not effects:
        raise SystemExit(f"{args.scratch}: no finished dataset")
    _check_sizes([*nulls, *effects.values()], args, args.model)
    found = summary(nulls, args, args.model) if nulls else None
    if found:
        (args.scratch / "summary.json").write_text(json.dumps(found, indent=1))
        print(json.dumps({k: found[k] for k in ("n", "share_p_below_0.05", "share_ci", "min_p")}))
    if args.update:
        import report
        from bench import machine

        here = Path(__file__).parent
        saved = json.loads((here / "results.json").read_text())
        here_now = machine()
        stamp = {"date": here_now["date"], "commit": here_now["commit"],
                 "command": " ".join(["python", *sys.argv])}  # fmt: skip
        if found:
            saved["classify"]["null_simulations"] = found | stamp
        if effects:
            saved["classify"]["effect_simulations"] = stamp | {
                "model": str(args.model),
                "model_note": args.model_note,
                "options": classify.plan(args.quick)["groups"],
                "folds": int(classify.plan(args.quick)["folds"]),
                "permutations": int(args.permutations),
                "repeats": int(args.repeats),
                "effects": {size: {key: r[key] for key in ("seed", "views", "simulate_wall_s",
                                                           "participant_wall_s", "group_wall_s")}
                            for size, r in effects.items()},
            }  # fmt: skip
        (here / "results.json").write_text(json.dumps(saved, indent=2) + "\n")
        (here / "RESULTS.md").write_text(report.markdown(saved))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The classification section: a model trained on simulated simultaneous EEG-fMRI (a 10-10
cap at 250 Hz), applied to simulated EEG-only datasets of patients and controls on another
cap (biosemi128 at 2048 Hz) with a known group effect and the null, then ``group
--classify group``: AUC per view with its interval and permutation p, the wall time of
each step, and the false-positive rate over null labellings."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
from common import Context, app, simulate

#: group effect sizes (the patients' alpha amplitude x 1 + size); 0 is the null
EFFECTS = (0.0, 1.0)
#: the EEG-only datasets: another cap, another sampling rate, no BOLD, no markers
OTHER_CAP = ["--eeg-only", "--montage", "biosemi128"]


def plan(quick: bool) -> dict:
    """Sizes of the section (quick: a smoke run of the harness)."""
    if quick:
        small = ["--channels", "12", "--grid", "12", "13", "8"]
        return {"train": ["--participants", "3", "--volumes", "40", *small],
                "groups": ["--groups", "4", "4", "--volumes", "40", *OTHER_CAP, "--channels",
                           "16", "--sfreq", "512", "--grid", "12", "13", "8"],
                "holdout": ["03"], "epochs": "2", "permutations": "20", "repeats": "2",
                "folds": "3", "effects": (0.0, 1.0), "nulls": 2, "null_permutations": "20",
                "null_repeats": "2"}  # fmt: skip
    return {"train": ["--participants", "8", "--volumes", "150"],
            "groups": ["--groups", "20", "20", "--volumes", "60", *OTHER_CAP, "--sfreq",
                       "2048"],
            "holdout": ["07", "08"], "epochs": "10", "permutations": "200", "repeats": "5",
            "folds": "5", "effects": EFFECTS, "nulls": 10, "null_permutations": "100",
            "null_repeats": "3"}  # fmt: skip


def classify_section(ctx: Context) -> dict:
    sizes = plan(ctx.quick)
    base = ctx.root / "classify"
    base.mkdir(parents=True, exist_ok=True)
    train_data = simulate(ctx, "classify/train", "--seed", "0", *sizes["train"])
    train_out = base / "train-out"
    trained = app(ctx, train_data, train_out, "participant", "-w", str(base / "work-train"),
                  "--train", "--holdout-label", *sizes["holdout"], "--epochs", sizes["epochs"],
                  *(["--model-grid", "12", "13", "8"] if ctx.quick else []),
                  "--lrp-volumes", "0")  # fmt: skip
    model = train_out / "models" / "compact.keras"
    out: dict = {
        "train_options": sizes["train"],
        "train_wall_s": trained["wall_s"],
        "group_options": sizes["groups"],
        "permutations": int(sizes["permutations"]),
        "repeats": int(sizes["repeats"]),
        "folds": int(sizes["folds"]),
        "effects": {},
    }
    null_pool = None
    for i, effect in enumerate(sizes["effects"]):
        name = f"effect-{effect:g}"
        data = simulate(ctx, f"classify/{name}", "--seed", str(100 + i), *sizes["groups"],
                        "--group-effect", f"{effect:g}")  # fmt: skip
        result = base / f"{name}-out"
        applied = app(ctx, data, result, "participant", "-w", str(base / f"work-{name}"),
                      "--model", str(model), "--lrp-volumes", "0")  # fmt: skip
        grouped = app(ctx, data, result, "group", "--classify", "group", "--permutations",
                      sizes["permutations"], "--cv-repeats", sizes["repeats"], "--cv-folds",
                      sizes["folds"])  # fmt: skip
        out["effects"][f"{effect:g}"] = {
            "participant_wall_s": applied["wall_s"],
            "group_wall_s": grouped["wall_s"],
            "views": _metrics(result / "group_desc-classify_metrics.tsv"),
        }
        if effect == 0:
            null_pool = (data, result)
    if null_pool is not None:
        out["nulls"] = _nulls(ctx, sizes, *null_pool, base / "nulls")
    return out


def _nulls(ctx: Context, sizes: dict, data: Path, result: Path, root: Path) -> dict:
    """Group level on the null dataset's participants under ``sizes["nulls"]`` random
    balanced labellings (the participants are exchangeable when the effect is 0): the
    share of labellings whose permutation p is below 0.05, per view. Each labelling's
    group outputs replace the previous ones in ``result``."""
    table = list(csv.DictReader(open(data / "participants.tsv", encoding="utf-8"),
                                delimiter="\t"))  # fmt: skip
    p_values: dict[str, list[float]] = {}
    wall = []
    for k in range(sizes["nulls"]):
        bids = root / f"labels-{k}"
        bids.mkdir(parents=True, exist_ok=True)
        for name in ("dataset_description.json", "participants.json"):
            shutil.copy(data / name, bids / name)
        labels = np.random.default_rng(1000 + k).permutation([r["group"] for r in table])
        with open(bids / "participants.tsv", "w", encoding="utf-8") as handle:
            handle.write("participant_id\tgroup\n")
            handle.writelines(
                f"{r['participant_id']}\t{g}\n" for r, g in zip(table, labels, strict=True)
            )
        grouped = app(ctx, bids, result, "group", "--classify", "group", "--permutations",
                      sizes["null_permutations"], "--cv-repeats", sizes["null_repeats"],
                      "--cv-folds", sizes["folds"], "--seed", str(k))  # fmt: skip
        wall.append(grouped["wall_s"])
        for view, m in _metrics(result / "group_desc-classify_metrics.tsv").items():
            p_values.setdefault(view, []).append(m["p_permutation"])
    (root / "p_values.json").write_text(json.dumps(p_values, indent=1))
    return {
        "n": sizes["nulls"],
        "permutations": int(sizes["null_permutations"]),
        "repeats": int(sizes["null_repeats"]),
        "group_wall_s": float(np.median(wall)),
        "share_p_below_0.05": {
            v: float(np.mean(np.array(ps) < 0.05)) for v, ps in p_values.items()
        },
        "min_p": {v: float(min(ps)) for v, ps in p_values.items()},
    }


def _metrics(path: Path) -> dict:
    with open(path, encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    keep = ("auc", "auc_ci_low", "auc_ci_high", "p_permutation", "balanced_accuracy",
            "delta_auc_vs_bandpower", "delta_ci_low", "delta_ci_high", "n_features")  # fmt: skip
    return {
        row["view"]: {k: (None if row[k] == "n/a" else float(row[k])) for k in keep} for row in rows
    }


def section(results: dict) -> list[str]:
    """The section of RESULTS.md."""
    found = results.get("classify")
    if not found:
        return []
    title = ["## Classifying participants", ""]
    if "failed" in found:
        return title + [f"Failed: {found['failed']}", ""]
    lines = title + [
        "A compact model trained (defaults, LRP off) on `bids-eeg2fmri-simulate "
        f"{' '.join(found['train_options'])}` ({found['train_wall_s']:.0f} s), applied "
        f"(`participant --model`) to datasets simulated with `{' '.join(found['group_options'])} "
        "--group-effect SIZE` (patients' alpha amplitude x 1 + SIZE; 0 is the null), then "
        f"`group --classify group --cv-folds {found['folds']} --cv-repeats {found['repeats']} "
        f"--permutations {found['permutations']}`. AUC [95 % bootstrap interval over "
        "participants], permutation p, and the paired AUC difference with `bandpower`.",
        "",
        "| effect | view | AUC [95 % interval] | p | balanced accuracy | vs bandpower |",
        "|---|---|---|---|---|---|",
    ]
    for effect, figures in found["effects"].items():
        lines += [_view_row(effect, view, m) for view, m in figures["views"].items()]
    nulls = found.get("nulls")
    if nulls:
        lines += [
            "",
            f"Null labellings: the effect-0 participants under {nulls['n']} random balanced "
            "labellings (exchangeable under the null), each through the whole group level "
            f"(`--cv-repeats {nulls.get('repeats', found['repeats'])} --permutations "
            f"{nulls.get('permutations', found['permutations'])}`): the share with "
            "p_permutation < 0.05 should be about 0.05.",
            "",
            "| view | share p < 0.05 | smallest p |",
            "|---|---|---|",
        ]
        for view, share in nulls["share_p_below_0.05"].items():
            lines.append(f"| {view} | {share:.2f} | {nulls['min_p'][view]:.3f} |")
    lines += ["", "| effect | participant level (s) | group level (s) |", "|---|---|---|"]
    for effect, figures in found["effects"].items():
        lines.append(
            f"| {effect} | {figures['participant_wall_s']:.0f} | {figures['group_wall_s']:.0f} |"
        )
    lines += _effect_simulations(found.get("effect_simulations"))
    lines += _null_simulations(found.get("null_simulations"))
    return lines + [""]


def _view_row(effect: str, view: str, m: dict) -> str:
    """A row of the AUC tables."""
    delta = (
        "" if view == "bandpower" or m["delta_auc_vs_bandpower"] is None
        else f"{m['delta_auc_vs_bandpower']:+.2f} [{m['delta_ci_low']:+.2f}, "
        f"{m['delta_ci_high']:+.2f}]"
    )  # fmt: skip
    p = "n/a" if m["p_permutation"] is None else f"{m['p_permutation']:.3f}"
    return (
        f"| {effect} | {view} | {m['auc']:.2f} [{m['auc_ci_low']:.2f}, "
        f"{m['auc_ci_high']:.2f}] | {p} | {m['balanced_accuracy']:.2f} | {delta} |"
    )


def _effect_simulations(found: dict | None) -> list[str]:
    """The paragraph and table of ``classify_nulls.py --effects``: the model of the null
    simulations on datasets with a group effect."""
    if not found:
        return []
    lines = [
        "",
        f"With the null simulations' model ({found['date']}, commit {found['commit']}: "
        f"`{found['command']}`): datasets simulated with `{' '.join(found['options'])} "
        "--group-effect SIZE` (seeds 400, 401, ...), each through `participant --model` "
        f"({found.get('model_note') or Path(found['model']).name}; LRP off) and `group "
        f"--classify group --cv-folds {found['folds']} --cv-repeats {found['repeats']} "
        f"--permutations {found['permutations']}`.",
        "",
        "| effect | view | AUC [95 % interval] | p | balanced accuracy | vs bandpower |",
        "|---|---|---|---|---|---|",
    ]
    for effect, figures in found["effects"].items():
        lines += [_view_row(effect, view, m) for view, m in figures["views"].items()]
    walls = "; ".join(
        f"effect {effect}: simulation {f['simulate_wall_s']:.0f} s, participant level "
        f"{f['participant_wall_s']:.0f} s, group level {f['group_wall_s']:.0f} s"
        for effect, f in found["effects"].items()
    )
    return lines + ["", f"Wall time: {walls}."]


def _null_simulations(nulls: dict | None) -> list[str]:
    """The paragraph and table of ``classify_nulls.py``'s new null datasets."""
    if not nulls:
        return []
    walls = nulls["wall_s"]
    lines = [
        "",
        f"Null simulations ({nulls['date']}, commit {nulls['commit']}: `{nulls['command']}`): "
        f"{nulls['n']} new datasets (of {nulls['asked']} asked) simulated with "
        f"`{' '.join(nulls['options'])}` and seeds 300, 301, ..., each through `participant "
        f"--model` ({nulls.get('model_note') or Path(nulls['model']).name}; LRP off) and "
        f"`group --classify group --cv-repeats {nulls['repeats']} --permutations "
        f"{nulls['permutations']}`: the share with p_permutation < 0.05 should be about "
        "0.05. Median wall time per dataset: "
        f"simulation {walls['simulate']:.0f} s, participant level {walls['participant']:.0f} s, "
        f"group level {walls['group']:.0f} s.",
        "",
        "| view | share p < 0.05 [95 % interval] | smallest p |",
        "|---|---|---|",
    ]
    for view, share in nulls["share_p_below_0.05"].items():
        low, high = nulls["share_ci"][view]
        lines.append(
            f"| {view} | {share:.2f} [{low:.2f}, {high:.2f}] | {nulls['min_p'][view]:.3f} |"
        )
    return lines

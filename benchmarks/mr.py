"""The raw in-scanner EEG section: gradient and pulse correction against the clean truth,
beside MNE's yardstick; speed and memory on an hour of 64-channel 5 kHz EEG; and what the
correction costs the synthesizer downstream.

1. Quality: one simulated run at the realistic size (64 channels, 5 kHz, 300 volumes, TR
   2 s, 32 slices), with the gradient artifact alone and with gradient + pulse (the same
   seed: the same clean EEG), corrected by ours (volume epochs; slice epochs where slice
   markers exist) and by MNE's ``remove_fmri_gradient_artifact`` + ``apply_pca_obs``.
2. Speed and memory: the gradient + pulse run tiled six times into one hour (markers
   continued), corrected by ours in a fresh process; MNE's from its quality run on the
   10-minute recording (it needs the recording in memory twice: an hour would take some
   18 GB).
3. Downstream: a study of that size (8 participants, 2 held out), ``participant --train``
   on the raw in-scanner EEG (``--mr-correction auto``) and on the clean EEG
   (``--eeg-derivatives`` on the simulator's truth): the held-out fraction of the noise
   ceiling of each.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from common import Context, app, run, simulate

WORKER = str(Path(__file__).with_name("mr_worker.py"))
RUN = "sub-01_task-rest"


def sizes(ctx: Context) -> dict:
    if ctx.quick:
        return {"channels": 12, "sfreq": 2000, "volumes": 40, "participants": 3, "held": ["03"]}
    return {
        "channels": 64,
        "sfreq": 5000,
        "volumes": 300,
        "participants": 8,
        "held": ["07", "08"],
    }


def _options(size: dict, kinds: str, participants: int = 1) -> list[str]:
    return [
        "--seed", "0", "--participants", str(participants), "--volumes", str(size["volumes"]),
        "--channels", str(size["channels"]), "--sfreq", str(size["sfreq"]), "--tr", "2",
        "--slices", "32", "--mr-artifacts", kinds, "--grid", "32", "32", "20",
    ]  # fmt: skip


def mr_section(ctx: Context) -> dict:
    size = sizes(ctx)
    figures: dict = {"size": size, "quality": {}, "speed": {}, "downstream": {}}
    for kinds in ("gradient", "gradient,pulse"):
        data = simulate(ctx, f"mr-{kinds.replace(',', '-')}", *_options(size, kinds))
        figures["quality"][kinds] = _quality(ctx, data, kinds)
    data = ctx.root / "mr-gradient-pulse"
    figures["speed"]["mne_10min"] = figures["quality"]["gradient,pulse"]["mne"]
    for part, measure in (
        ("speed", lambda: _speed(ctx, data)),
        ("downstream", lambda: _downstream(ctx, size)),
    ):
        try:  # a failing part must not lose the others' figures
            figures[part] = figures[part] | measure()
        except Exception as error:
            figures[part] = {"failed": f"{type(error).__name__}: {error}"}
    return figures


def _paths(data: Path) -> tuple[str, str]:
    raw = data / "sub-01" / "eeg" / f"{RUN}_eeg.vhdr"
    clean = data / "derivatives" / "simulation" / "sub-01" / "eeg" / f"{RUN}_desc-clean_eeg.vhdr"
    return str(raw), str(clean)


def _worker(ctx: Context, method: str, raw: str, name: str, *options: str) -> dict:
    out = ctx.root / f"mr-{name}.json"
    measured = run(
        [sys.executable, WORKER, method, raw, str(out), *options],
        log=ctx.root / f"mr-{name}.log",
        sample_memory=True,
    )
    return json.loads(out.read_text()) | {"process": measured}


def _quality(ctx: Context, data: Path, kinds: str) -> dict:
    raw, clean = _paths(data)
    tag = kinds.replace(",", "-")
    mode = "gradient+pulse" if "pulse" in kinds else "gradient"
    return {
        "ours": _worker(ctx, "ours", raw, f"ours-{tag}", "--clean", clean, "--mode", mode),
        "mne": _worker(ctx, "mne", raw, f"mne-{tag}", "--clean", clean),
    }


def _speed(ctx: Context, data: Path) -> dict:
    raw, _ = _paths(data)
    hour = tile(Path(raw), ctx.root / "mr-hour" / "hour_eeg.vhdr", copies=2 if ctx.quick else 6)
    figures = {"ours": _worker(ctx, "ours", str(hour), "ours-hour", "--mode", "gradient+pulse")}
    shutil.rmtree(hour.parent, ignore_errors=True)
    return figures


def tile(vhdr: Path, out: Path, *, copies: int) -> Path:
    """``copies`` copies of a BrainVision recording end to end (float32), its volume
    markers continued, written a minute at a time."""
    import mne

    from bids_eeg2fmri.bidsio.brainvision import write_brainvision

    raw = mne.io.read_raw_brainvision(vhdr, verbose="error")
    sfreq, n = raw.info["sfreq"], raw.n_times
    keep = raw.annotations.description == "Response/R128"
    onsets = raw.annotations.onset[keep] - raw.first_time
    out.parent.mkdir(parents=True, exist_ok=True)
    # the header and markers from pybv (with the first minute), then the rest appended
    first = raw.get_data(start=0, stop=min(n, int(60 * sfreq)))
    all_onsets = np.concatenate([onsets + k * n / sfreq for k in range(copies)])
    write_brainvision(out, first, sfreq=sfreq, ch_names=raw.ch_names)
    with open(out.with_suffix(".eeg"), "ab") as handle:
        for k in range(copies):
            start = first.shape[1] if k == 0 else 0
            for a in range(start, n, int(60 * sfreq)):
                block = raw.get_data(start=a, stop=min(n, a + int(60 * sfreq)))
                (block.T * 1e6 / 0.01).astype("<f4").tofile(handle)  # pybv's µV, resolution
    vmrk = out.with_suffix(".vmrk")
    text = vmrk.read_text()
    first_number = text.count("\nMk") + 1  # BrainVision numbers markers, counts samples from 1
    lines = [
        f"Mk{first_number + i}=Response,R128,{int(round(t * sfreq)) + 1},1,0"
        for i, t in enumerate(all_onsets)
    ]
    vmrk.write_text(text.rstrip("\n") + "\n" + "\n".join(lines) + "\n")
    return out


def _downstream(ctx: Context, size: dict) -> dict:
    data = simulate(ctx, "mr-study", *_options(size, "gradient,pulse", size["participants"]))
    labels = [f"{i:02d}" for i in range(1, size["participants"] + 1)]
    figures: dict = {"participants": size["participants"], "held_out": size["held"]}
    truth = data / "derivatives" / "simulation"
    for name, extra in (("raw", []), ("clean", ["--eeg-derivatives", str(truth)])):
        out = ctx.root / f"mr-study-{name}"
        shutil.rmtree(out, ignore_errors=True)
        options = ["-w", str(ctx.root / f"mr-study-work-{name}"), "--participant-label", *labels]
        options += ["--train", "--seed", "0", "--holdout-label", *size["held"]]
        options += ["--epochs", "2" if ctx.quick else "10", "--batch-size", "8"]
        options += ["--learning-rate", "0.001", "--lrp-volumes", "0", *extra]
        wall = app(ctx, data, out, "participant", *options)["wall_s"]
        app(ctx, data, out, "group", "-w", str(ctx.root / f"mr-study-work-{name}"))
        table = pd.read_csv(
            out / "group_desc-synth_metrics.tsv",
            sep="\t",
            na_values="n/a",
            dtype={"participant": str},
        )
        rows = table[(table["split"] == "holdout") & (table["method"] == "model")]
        figures[name] = {
            "wall_s": wall,
            "fraction_of_ceiling": round(float(rows["fraction_of_ceiling"].mean()), 4),
            "r_coupled": round(float(rows["r_coupled_mean"].mean()), 4),
            "noise_ceiling": round(float(rows["noise_ceiling_mean"].mean()), 4),
        }
    shutil.rmtree(data, ignore_errors=True)  # ~20 GB
    return figures

"""The sections both reports end with: the training of the models (facts, participants per
split, training curves), the warnings and errors of the logs under ``OUTPUT_DIR/logs``
(:func:`read_log_warnings`), and "About" (software version, date, and the methods text).
"""

from __future__ import annotations

import datetime as _dt
import re
from pathlib import Path
from typing import Any

from bids_eeg2fmri import __version__
from bids_eeg2fmri.models.data import VALIDATION_FRACTION
from bids_eeg2fmri.reports.html.items import _facts, _figure_item, _note, _section, _table, _text
from bids_eeg2fmri.reports.html.outputs import _Context

METHODS_TEXT = (
    "The synthesizer is a neural network trained to predict each BOLD volume from the EEG "
    "recorded before its onset: the EEG is cut into windows ending at the volume onset and "
    "at earlier lags (multiples of the TR, covering the haemodynamic delay), turned into "
    "time-frequency features per channel, and mapped to a whole volume; the participants "
    "of the 'train' split fit it, those of the 'validation' split stop its training, and "
    "the 'holdout' participants are never seen, so that their scores measure generalisation "
    "to new people. It is compared with two baselines: 'mean-volume', the mean training "
    "volume repeated at every time point (constant in time, so its temporal correlation is "
    "undefined), and 'ridge', a per-voxel ridge regression on haemodynamically convolved "
    "EEG band power fitted on the same training participants. Synthesized and observed BOLD "
    "are compared over time by the voxelwise Pearson correlation r (1: the same time course "
    "up to scale and offset; 0: unrelated), summarised over the brain mask, and volume by "
    "volume by the root mean square error (RMSE, in the units of the BOLD), the structural "
    "similarity index (SSIM: agreement of local mean, contrast and structure; 1 for "
    "identical volumes) and the peak signal-to-noise ratio (PSNR). On simulated data the "
    "noise ceiling, the r of the noiseless with the observed BOLD in the voxels the "
    "simulation couples to EEG, is the best any method can reach. Layer-wise relevance "
    "propagation (LRP) attributes the synthesized signal of a region back to the EEG inputs "
    "(channel, frequency and lag): positive relevance pushed the region's signal the way "
    "it moved away from the prediction for the run's average EEG, negative held it back."
)

_LOG_RECORD = re.compile(
    r"^(?P<time>\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:[,.]\d+)?)\s*"
    r"(?:\|\s*(?P<logger>[^|]*?)\s*\|\s*)?"
    r"(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL)\b\s*\|?\s?(?P<message>.*)$"
)


def _training_items(cards: list[dict], context: _Context, *, stem: str, label=None) -> list:
    from bids_eeg2fmri.reports import figures as fig

    items: list[dict] = []
    for i, card in enumerate(cards, start=1):
        training = card.get("training", {})
        name = str(card.get("name", f"model {i}"))
        facts = [("Model", name), ("Preset", str(card.get("preset", "n/a")))]
        for key, heading in (
            ("epochs", "Epochs (maximum)"),
            ("batch_size", "Batch size"),
            ("learning_rate", "Learning rate"),
            ("seed", "Seed"),
            ("seconds", "Training time (s)"),
        ):
            if key in training:
                facts.append((heading, str(training[key])))
        if isinstance(card.get("trainable_parameters"), int):
            facts.append(("Trainable parameters", f"{card['trainable_parameters']:,}"))
        sub: list[dict] = [_facts(facts)]
        participants = training.get("participants") or {}
        if isinstance(participants, dict) and participants:
            rows = []
            for split in ("train", "validation", "holdout"):
                labels = [str(p).removeprefix("sub-") for p in participants.get(split, [])]
                shown = ", ".join(f"sub-{p}" for p in labels) or "none"
                rows.append([split, str(len(labels)), shown])
            where = next(
                (
                    s
                    for s in ("train", "validation", "holdout")
                    if label is not None
                    and label in [str(p).removeprefix("sub-") for p in participants.get(s, [])]
                ),
                None,
            )
            caption = "Participants are split as wholes, so that no person is in two splits. "
            if not participants.get("validation"):
                caption += (
                    f"The last {VALIDATION_FRACTION:.0%} of each training run stopped the "
                    "training early. "
                )
            if label is not None:
                caption += (
                    f"sub-{label} was in the {where} split."
                    if where
                    else f"sub-{label} was not used to train this model."
                )
            sub.append(_table(["Split", "Participants", "Labels"], rows, caption=caption))
        history = training.get("history")
        suffix = "" if len(cards) == 1 else str(i)
        if isinstance(history, dict) and history:
            sub.append(
                _figure_item(
                    "Training curves",
                    context.figures / f"{stem}_desc-training{suffix}_curves.svg",
                    context,
                    "The loss and its terms per epoch, on the training volumes (solid) "
                    "and the validation volumes (dashed: those of the validation participants, "
                    f"else the last {VALIDATION_FRACTION:.0%} of each training run). The dotted "
                    "line marks the "
                    "epoch of the lowest validation loss. A validation curve that rises "
                    "while the training curve falls is overfitting.",
                    lambda path, h=history: fig.plot_training_history(h, path=path),
                )
            )
        else:
            sub.append(_note("The model card holds no training history."))
        if len(cards) == 1:
            items.extend(sub)
        else:
            items.append(_section(f"model-{i}", name, sub, level="run"))
    return items


def read_log_warnings(output_dir: Path, subject: str | None = None) -> list[dict[str, Any]]:
    """Warnings and errors of the logs under ``OUTPUT_DIR/logs``.

    With ``subject``, records that name other participants (``sub-<label>``) but not this
    one are left out. Identical messages are counted once.

    Returns
    -------
    list of dict
        Keys ``level``, ``time`` (first occurrence), ``message``, ``count``, ``log``.
    """
    records: list[dict[str, Any]] = []
    for path in sorted((Path(output_dir) / "logs").glob("*.log")):
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        current = None
        for line in lines:
            match = _LOG_RECORD.match(line)
            if match:
                current = None
                if match["level"] in ("WARNING", "ERROR", "CRITICAL"):
                    current = {
                        "level": match["level"],
                        "time": match["time"],
                        "message": match["message"].strip(),
                        "log": path.name,
                    }
                    records.append(current)
            elif current is not None and line.strip() and current["message"].count("\n") < 8:
                current["message"] += "\n" + line.rstrip()
    if subject is not None:
        mine = f"sub-{subject}"
        others = re.compile(r"\bsub-([A-Za-z0-9]+)")
        records = [
            r
            for r in records
            if mine in r["message"] or not any(m != subject for m in others.findall(r["message"]))
        ]
    unique: dict[tuple[str, str], dict[str, Any]] = {}
    for record in records:
        key = (record["level"], record["message"])
        if key in unique:
            unique[key]["count"] += 1
        else:
            unique[key] = {**record, "count": 1}
    return list(unique.values())


def _warning_items(output_dir: Path, subject: str | None) -> list[dict]:
    records = read_log_warnings(output_dir, subject)
    if not records:
        return [_text("The logs of this output hold no warning and no error.")]
    return [
        _table(
            ["Level", "Time", "Message", "Times", "Log"],
            [
                [r["level"], r["time"][:19], r["message"], str(r["count"]), r["log"]]
                for r in records
            ],
            classes=[r["level"].lower() for r in records],
            css="log",
            caption="Warnings and errors logged while this output was made, from OUTPUT_DIR/"
            "logs (identical messages once, with their count). Read them before trusting the "
            "results above.",
        )
    ]


def _about_items(context: _Context) -> list[dict]:
    now = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    return [
        _facts(
            [
                ("Software", f"bids-eeg2fmri {__version__}"),
                ("Report written", now),
            ]
        ),
        _text(METHODS_TEXT),
    ]

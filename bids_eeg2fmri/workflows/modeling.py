"""After preprocessing: train the synthesizer (``--train``) and/or apply one (``--model``),
write the synthesized BOLD, and evaluate held-out runs against the observed BOLD.

Runs in the calling process once the nipype workflow has finished (TensorFlow is imported
here only), streaming the arrays the workflow cached in the work directory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np

from bids_eeg2fmri.bidsio.files import write_json_atomic, write_nifti_atomic
from bids_eeg2fmri.bidsio.pairing import RunPair, bids_uri
from bids_eeg2fmri.models.data import (
    VALIDATION_FRACTION,
    RunArrays,
    load_run_arrays,
    split_participants,
    time_split,
)
from bids_eeg2fmri.workflows.participant import _node_name, workflow_name

LOGGER = logging.getLogger("bids_eeg2fmri")


def collect_runs(pairs: list[RunPair], work_dir: Path) -> list[RunArrays]:
    """The cached arrays of every run, from the participant workflow's folders."""
    base = Path(work_dir) / workflow_name()
    return [
        load_run_arrays(
            base / _node_name(p.name),
            name=p.name,
            subject=p.subject,
            eeg_file=p.eeg,
            bold_file=p.bold,
        )
        for p in pairs
    ]


def plan_split(
    runs: list[RunArrays], holdout: tuple[str, ...], validation: tuple[str, ...] = ()
) -> dict:
    """Which volumes of which runs train, validate and are held out.

    Participant-wise (see :func:`split_participants`); with a single participant, in time:
    the last 20 % of each run is held out and the last 10 % of the rest validates.
    """
    paired = [i for i, r in enumerate(runs) if r.bold is not None]
    if not paired:
        raise ValueError("--train needs runs with BOLD; the selection has EEG only")
    subjects = [runs[i].subject for i in paired]
    train, validation, held = split_participants(subjects, holdout, validation)
    plan = {
        "train": {},
        "validation": {},
        "holdout": {},
        "participants": {"train": train, "validation": validation, "holdout": held},
    }
    for i in paired:
        if runs[i].subject in held:
            roles = ("holdout",)
        elif runs[i].subject in validation:
            roles = ("validation",)
        elif not held and len(set(subjects)) == 1:  # one participant: split in time
            roles = ("train", "validation", "holdout")
        elif not validation:  # no validation participant: the end of each run validates
            roles = ("train", "validation")
        else:
            roles = ("train",)
        _assign(plan, i, runs[i].valid.size, roles)
    return plan


def _assign(plan: dict, i: int, n: int, roles: tuple[str, ...]) -> None:
    """Put the ``n`` volumes of run ``i`` into ``plan`` by the roles the run plays: one role
    takes every volume; a run that trains and validates gives its last 10 % to validation;
    one that also holds out gives its last 20 % to the held-out part first."""
    everything = np.arange(n)
    if len(roles) == 1:
        plan[roles[0]][i] = everything
        return
    if "holdout" in roles:
        everything, plan["holdout"][i] = time_split(n, 0.2)
    fit, check = time_split(everything.size, VALIDATION_FRACTION)
    plan["train"][i], plan["validation"][i] = everything[fit], everything[check]


def plan_from_card(runs: list[RunArrays], card: dict, bids_dir: Path) -> dict | None:
    """For a model applied with ``--model``: the split of its own training data, rebuilt
    from its card, so that the runs it trained, validated or held out keep that role in
    the metrics (and ``in_training``) instead of passing for unseen data. Only on the
    dataset it was trained on (the card's path; run names such as sub-01_task-rest recur
    across datasets), runs matched by name; a run the card does not list is ``applied``.
    None when no run matches (or the card has no such record)."""
    training = card.get("training") or {}
    if training.get("dataset") != str(Path(bids_dir).resolve()):
        return None
    named = training.get("runs") or {}
    plan: dict = {"train": {}, "validation": {}, "holdout": {}}
    for i, run in enumerate(runs):
        roles = tuple(k for k in ("train", "validation", "holdout") if run.name in named.get(k, ()))
        if run.bold is not None and roles:
            _assign(plan, i, run.valid.size, roles)
    if not any(plan[k] for k in ("train", "validation", "holdout")):
        return None
    plan["participants"] = training.get("participants", {})
    return plan


def train_model(config, runs: list[RunArrays], pairs: list[RunPair]):
    """Train, save ``models/<name>.keras`` and its card; return (model, card, plan)."""
    from bids_eeg2fmri.models.synthesis import save_model
    from bids_eeg2fmri.models.synthesizer import PRESETS, count_trainable
    from bids_eeg2fmri.models.training import train

    wf = config.workflow
    plan = plan_split(runs, wf.holdout_label, wf.validation_label)
    LOGGER.info(
        "Participants: train %s, validation %s, held out %s",
        ", ".join(plan["participants"]["train"]) or "-",
        ", ".join(plan["participants"]["validation"]) or "(time split)",
        ", ".join(plan["participants"]["holdout"]) or "(time split)" if len(runs) else "-",
    )
    arch = PRESETS[wf.preset]
    # checkpoints of an interrupted training are reused only for the very same training
    key = hashlib.sha256(
        json.dumps(
            {
                "arch": dataclasses.asdict(arch),
                "settings": [
                    wf.epochs,
                    wf.batch_size,
                    wf.learning_rate,
                    wf.patience,
                    wf.seed,
                    wf.compat_loss,
                ],
                "data": {
                    k: {runs[i].name: np.asarray(v).tolist() for i, v in plan[k].items()}
                    for k in ("train", "validation")
                },
                "features": [os.stat(r.features).st_mtime_ns for r in runs],
            },
            sort_keys=True,
        ).encode()
    ).hexdigest()[:16]
    result = train(
        runs,
        plan["train"],
        plan["validation"],
        arch=arch,
        compat_loss=wf.compat_loss,
        epochs=wf.epochs,
        batch_size=wf.batch_size,
        learning_rate=wf.learning_rate,
        patience=wf.patience,
        seed=wf.seed,
        deterministic=config.execution.deterministic,
        backup_dir=config.execution.work_dir / "training" / f"{wf.model_name}-{key}",
    )
    first = runs[next(iter(plan["train"]))]
    card = {
        "preset": wf.preset,
        "architecture": dataclasses.asdict(arch),
        "trainable_parameters": count_trainable(result.models.training),
        "channels": first.features_info["channels"],
        "channel_positions": first.features_info.get("channel_positions"),
        "frequencies": first.features_info["frequencies"],
        "n_windows": first.n_windows,
        "tr": first.features_info["tr"],
        "max_freq": wf.max_freq,
        "grid": list(wf.model_grid),
        "model_affine": first.bold_info["model_affine"],
        "training": {
            "dataset": str(Path(config.run.bids_dir).resolve()),
            "participants": plan["participants"],
            "runs": {
                k: sorted(runs[i].name for i in plan[k]) for k in ("train", "validation", "holdout")
            },
            "epochs": wf.epochs,
            "batch_size": wf.batch_size,
            "learning_rate": wf.learning_rate,
            "seed": wf.seed,
            "deterministic": config.execution.deterministic,
            "compat_loss": wf.compat_loss,
            "seconds": round(result.seconds, 1),
            "history": result.history,
        },
    }
    path, card_path = save_model(
        result.models.synthesis, card, config.run.output_dir / "models", wf.model_name
    )
    LOGGER.info("Model saved: %s (card %s)", path, card_path.name)
    card = json.loads(card_path.read_text())
    return result.models.synthesis, card, plan, card_path


#: The uncertainty map's meaning, by the loss the variational model was trained with
_UNCERTAINTY = {
    "mae": "Per-voxel scale b of the Laplace likelihood of the synthesized BOLD (the "
    "model's uncertainty; standard deviation b * sqrt(2)), in the same units.",
    "mse": "Per-voxel standard deviation of the Gaussian likelihood of the synthesized "
    "BOLD (the model's uncertainty), in the same units.",
}


def synthesize(
    config,
    model,
    card: dict,
    runs: list[RunArrays],
    pairs: list[RunPair],
    plan: dict | None,
    baselines=None,
) -> dict[str, dict]:
    """Write ``func/<entities>_desc-synth_bold.nii.gz`` (+ JSON) for every run; for runs
    with BOLD, the metrics of the model and the baselines against it; and the LRP outputs.

    Runs are handled one at a time (memory stays flat). Returns, per run with BOLD, its
    participant, split and the model's run-level metrics.
    """
    import nibabel as nib

    from bids_eeg2fmri.models.synthesis import (
        check_fits,
        predict_latent,
        predict_run,
        to_source_space,
    )
    from bids_eeg2fmri.workflows import evaluate, explain, views

    output_dir, bids_dir = config.run.output_dir, config.run.bids_dir
    wf = config.workflow
    results = {}
    for run in runs:  # every run fits the model before any output is written
        check_fits(card, run)
    for i, (run, pair) in enumerate(zip(runs, pairs, strict=True)):
        z, scale = predict_run(model, run)
        subject_dir = (
            output_dir / f"sub-{pair.subject}" / (f"ses-{pair.session}" if pair.session else "")
        )
        views.write_model_views(
            run,
            pair,
            output_dir=output_dir,
            bids_dir=bids_dir,
            latent=predict_latent(model, run),
            synth=z,
            card=card,
        )
        func = subject_dir / "func"
        sources = [bids_uri(pair.eeg, bids_dir)]
        meta = {
            "Description": f"BOLD synthesized from EEG by the model {card['name']} "
            f"({card['preset']}).",
            "ModelDigest": card["digest"],
            "SkullStripped": False,
            "VolumesWithoutEEG": np.flatnonzero(~run.valid).tolist(),
        }
        if run.bold is not None:
            data, affine = to_source_space(z, run)
            tr = run.bold_info["tr"]
            sources.append(bids_uri(pair.bold, bids_dir))
            meta.update(
                RepetitionTime=tr,
                SpatialReference=bids_uri(pair.bold, bids_dir),
                Units="those of the source BOLD",
            )
        else:
            data, affine = z, np.asarray(card["model_affine"])
            tr = card["tr"]
            meta.update(
                RepetitionTime=tr,
                SpatialReference="the model grid (see the model card)",
                Units="z-scores (no BOLD to take units from)",
            )
        meta["Sources"] = sources
        write_nifti_atomic(
            func / f"{pair.name}_desc-synth_bold.nii.gz", data, affine, meta, step=tr
        )
        if scale is not None:
            std = np.asarray(nib.load(run.std).dataobj) if run.bold is not None else 1.0
            spread = scale * (std[..., None] if run.bold is not None else 1.0)
            if run.bold is not None:
                from bids_eeg2fmri.signals.bold import resample

                spread = resample(
                    spread,
                    np.asarray(run.bold_info["model_affine"]),
                    affine,
                    tuple(run.bold_info["native_shape"]),
                )
            write_nifti_atomic(
                func / f"{pair.name}_desc-uncertainty_bold.nii.gz",
                spread,
                affine,
                {
                    **meta,
                    "Description": _UNCERTAINTY[card.get("architecture", {}).get("loss", "mae")],
                },
                step=tr,
            )
        if run.bold is not None:
            del data, scale
            predictions = {"model": z}
            if baselines is not None:
                predictions.update(baselines.predict(run))
            splits = evaluate.volume_splits(i, run.valid.size, plan)
            summary = evaluate.write_run_metrics(
                output_func=func,
                pair=pair,
                run=run,
                predictions=predictions,
                splits=splits,
                bids_dir=bids_dir,
                dummy_scans=wf.dummy_scans,
            )
            kept = splits[run.valid]
            results[run.name] = {
                "participant": run.subject,
                "split": "holdout" if "holdout" in kept else str(kept[0]) if kept.size else "-",
                **{k: _number(v) for k, v in summary["model"].items()},
                "baselines": {
                    m: {k: _number(v) for k, v in values.items()}
                    for m, values in summary.items()
                    if m != "model"
                },
            }
            del predictions
        if wf.lrp_volumes:
            explain.write_relevance(
                model,
                card,
                run,
                pair,
                subject_dir=subject_dir,
                bids_dir=bids_dir,
                n_volumes=wf.lrp_volumes,
                rule=wf.lrp_rule,
            )
        LOGGER.info("Synthesized %s (%d volumes)", pair.name, run.valid.size)
    return results


def add_holdout_metrics(card_path: Path, results: dict[str, dict]) -> None:
    """Copy the held-out runs' metrics (model and baselines) into the model card."""
    card = json.loads(card_path.read_text(encoding="utf-8"))
    card["holdout_metrics"] = {
        "tables": "sub-*/[ses-*/]func/*_desc-synth_metrics.tsv",
        "runs": {
            name: {k: v for k, v in values.items() if k != "split"}
            for name, values in results.items()
            if values["split"] == "holdout"
        },
    }
    write_json_atomic(card_path, card)


def _number(value: float) -> float | None:
    """A JSON-safe number (None for NaN)."""
    value = float(value)
    return round(value, 6) if np.isfinite(value) else None


def run_model_steps(config, pairs: list[RunPair]) -> None:
    """Train and/or apply the synthesizer on the runs' cached arrays, synthesize, evaluate
    and log each run's result (TensorFlow loaded by the caller); bad data: DataError."""
    from bids_eeg2fmri.errors import DataError

    runs = collect_runs(pairs, config.execution.work_dir)
    plan = baselines = card_path = None
    try:
        if config.workflow.train:
            model, card, plan, card_path = train_model(config, runs, pairs)
            if config.workflow.train_only:
                LOGGER.info(
                    "--train-only: no synthesis; apply the model with --model %s",
                    card_path.with_suffix(".keras"),
                )
                return
            if config.workflow.baselines:
                from bids_eeg2fmri.workflows.evaluate import fit_baselines

                try:
                    baselines = fit_baselines(runs, plan)
                except ValueError as err:  # too few volumes, say: the model's outputs stand
                    LOGGER.warning("Baselines not fitted: %s", err)
        else:
            from bids_eeg2fmri.models.synthesis import load_model

            model, card = load_model(config.workflow.model)
            plan = plan_from_card(runs, card, config.run.bids_dir)
            if plan is not None:
                LOGGER.info(
                    "Runs the model was trained, validated or evaluated on (its card) keep "
                    "that role in the metrics: %s",
                    ", ".join(
                        sorted(
                            {
                                runs[i].name
                                for k in ("train", "validation", "holdout")
                                for i in plan[k]
                            }
                        )
                    ),
                )
            LOGGER.info("Baselines need the training run: none when applying a model")
        results = synthesize(config, model, card, runs, pairs, plan, baselines)
    except ValueError as err:
        raise DataError(str(err)) from None
    if card_path is not None:  # a model trained here: its card gets the held-out metrics
        add_holdout_metrics(card_path, results)
    for name, values in results.items():
        LOGGER.info(
            "%s (%s): r in the brain mask %s (model)%s",
            name,
            values["split"],
            _show(values["r_mask_mean"]),
            "".join(
                f", {_show(b['r_mask_mean'])} ({m})"
                for m, b in values["baselines"].items()
                if b["r_mask_mean"] is not None
            ),
        )


def _show(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"

"""The participant-level workflow: per run, time the volumes, compute EEG features,
prepare BOLD, write the aligned volume events."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from bids_eeg2fmri import __version__
from bids_eeg2fmri.bidsio.pairing import RunPair, bids_uri


def workflow_name() -> str:
    """Top workflow name, namespaced by version so caches of other versions are not reused."""
    major, minor = __version__.split(".")[:2]
    return f"bids_eeg2fmri_{major}_{minor}_wf"


def _node_name(text: str) -> str:
    return re.sub(r"\W", "_", text)


def init_participant_wf(
    *,
    pairs: Sequence[RunPair],
    bids_dir: Path,
    output_dir: Path,
    run_uuid: str,
    workflow,
    channels: Sequence[str],
    model_positions: dict | None = None,
    omp_nthreads: int = 1,
    name: str | None = None,
):
    """One sub-workflow per run; ``workflow`` is the config's WorkflowSection,
    ``model_positions`` the positions of ``channels`` in the model card (None: a standard
    montage places them), ``omp_nthreads`` the threads of a node (an execution setting: no
    cache depends on it).

    Crash reports go to ``OUTPUT_DIR/sub-X/log/<run_uuid>/``.
    """
    import nipype.pipeline.engine as pe

    top = pe.Workflow(name=name or workflow_name())
    for pair in pairs:
        top.add_nodes(
            [
                init_run_wf(
                    pair=pair,
                    bids_dir=bids_dir,
                    output_dir=output_dir,
                    crashdump_dir=Path(output_dir) / f"sub-{pair.subject}" / "log" / run_uuid,
                    workflow=workflow,
                    channels=channels,
                    model_positions=model_positions,
                    omp_nthreads=omp_nthreads,
                )
            ]
        )
    return top


def init_run_wf(
    *,
    pair: RunPair,
    bids_dir,
    output_dir,
    crashdump_dir,
    workflow,
    channels,
    model_positions=None,
    omp_nthreads=1,
):
    """Nodes of one run (EEG with or without BOLD)."""
    import nipype.pipeline.engine as pe

    from bids_eeg2fmri.workflows.interfaces import (
        EEGFeatures,
        PrepareBold,
        VolumeEvents,
        VolumeTiming,
    )
    from bids_eeg2fmri.workflows.mr_interfaces import MRCorrection, MRDerivatives

    wf = pe.Workflow(name=_node_name(pair.name))
    n_volumes = -1
    if pair.bold is not None:
        import nibabel as nib

        shape = nib.load(pair.bold).shape
        n_volumes = max(0, shape[3] - workflow.dummy_scans) if len(shape) == 4 else -1

    timing = pe.Node(
        VolumeTiming(
            eeg_file=str(pair.eeg),
            n_volumes=n_volumes,
            n_discarded=pair.n_discarded + (workflow.dummy_scans if pair.bold else 0),
            volume_marker=workflow.volume_marker,
            assume_start=workflow.assume_eeg_starts_at_first_volume,
        ),
        name="volume_timing",
    )
    optional = {
        timing: {
            "events_tsv": pair.events_tsv,
            "tr": pair.tr,
            "eeg_only_tr": workflow.eeg_only_tr,
            "first_volume_onset": workflow.first_volume_onset,
        }
    }
    mr = pe.Node(
        MRCorrection(
            eeg_file=str(pair.eeg),
            run_name=pair.name,
            mode=workflow.mr_correction,
            slice_marker=workflow.slice_marker,
            sfreq=max(MR_SFREQ, 4 * workflow.max_freq),
            threads=omp_nthreads,
        ),
        name="mr_correction",
        mem_gb=_mr_memory_gb(pair.eeg, omp_nthreads),
        n_procs=omp_nthreads,
    )
    optional[mr] = {
        "eeg_json": _sidecar(pair.eeg),
        "channels_tsv": pair.channels_tsv,
        "ecg_channel": workflow.ecg_channel,
        "slice_timing": list(pair.slice_timing) if pair.slice_timing else None,
        "clean_eeg": _simulated_clean_eeg(pair, bids_dir),
    }
    features = pe.Node(
        EEGFeatures(
            channels=list(channels),
            min_channel_fraction=workflow.min_channel_fraction,
            n_windows=workflow.n_windows,
            max_freq=workflow.max_freq,
        ),
        name="eeg_features",
        mem_gb=1.0,
    )
    optional[features] = {
        "source_file": pair.eeg,
        "channels_tsv": pair.channels_tsv,
        "electrodes_tsv": pair.electrodes_tsv,
        "coordsystem_json": pair.coordsystem_json if pair.electrodes_tsv else None,
        "model_positions": model_positions,
        "l_freq": workflow.l_freq,
        "h_freq": workflow.h_freq,
    }
    subject_dir = Path(f"sub-{pair.subject}")
    if pair.session:
        subject_dir = subject_dir / f"ses-{pair.session}"
    sources = [bids_uri(p, bids_dir) for p in (pair.eeg, pair.events_tsv) if p is not None]
    events = pe.Node(
        VolumeEvents(
            output_dir=str(output_dir),
            relative_path=(subject_dir / "eeg" / f"{pair.name}_desc-volumes_events.tsv").as_posix(),
            sources=sources,
        ),
        name="volume_events",
    )
    wf.connect(
        [
            (timing, mr, [("timing", "timing")]),
            (timing, features, [("timing", "timing")]),
            (mr, features, [("eeg_file", "eeg_file")]),
        ]
    )
    merge_inputs = [(features, "features"), (mr, "info")]
    if pair.bold is not None:
        bold = pe.Node(
            PrepareBold(
                bold_file=str(pair.bold),
                dummy_scans=workflow.dummy_scans,
                model_grid=tuple(workflow.model_grid),
                high_pass_s=workflow.high_pass,
            ),
            name="prepare_bold",
            mem_gb=2.0,
        )
        optional[bold] = {"tr": pair.tr}
        merge_inputs.append((bold, "info"))
    # the events file is written only once every step of the run has succeeded
    from nipype.interfaces.utility import Merge

    done = pe.Node(Merge(len(merge_inputs)), name="run_complete", run_without_submitting=True)
    for i, (node, field) in enumerate(merge_inputs, start=1):
        wf.connect(node, field, done, f"in{i}")
    wf.connect([(timing, events, [("timing", "timing")]), (done, events, [("out", "ready")])])
    publish = pe.Node(
        MRDerivatives(
            output_dir=str(output_dir),
            eeg_dir=(subject_dir / "eeg").as_posix(),
            figures_dir=f"sub-{pair.subject}/figures",
            sources=[bids_uri(pair.eeg, bids_dir)],
        ),
        name="mr_derivatives",
    )
    wf.connect([(mr, publish, [("outputs", "outputs")]), (done, publish, [("out", "ready")])])

    for node, values in optional.items():
        for key, value in values.items():
            if value is not None:
                setattr(node.inputs, key, str(value) if isinstance(value, Path) else value)
    for node_name in wf.list_node_names():
        wf.get_node(node_name).config = {"execution": {"crashdump_dir": str(crashdump_dir)}}
    return wf


#: Lowest rate (Hz) the EEG is brought down to before the features (MR correction step).
MR_SFREQ = 250.0


def _mr_memory_gb(eeg: Path, threads: int) -> float:
    """Memory (GB) of the MR correction step: a group of channels in float64, each
    thread's copy of a channel, two reference channels, and the output at 250 Hz
    (mr_correction's streaming); 1 GB when the header cannot be read (the step will say
    why)."""
    from bids_eeg2fmri.signals.eeg import EEGError, read_raw

    try:
        raw = read_raw(eeg, preload=False)
    except EEGError:
        return 1.0
    channel = raw.n_times * 8 / 1e9
    output = len(raw.ch_names) * raw.n_times * min(1.0, MR_SFREQ / raw.info["sfreq"]) * 4e-9
    return round(0.3 + channel * (4 + 2 * threads + 2) + 3 * output, 2)


def _sidecar(eeg: Path) -> Path | None:
    path = Path(eeg).with_name(Path(eeg).name.rsplit(".", 1)[0] + ".json")
    return path if path.is_file() else None


def _simulated_clean_eeg(pair: RunPair, bids_dir: Path) -> Path | None:
    """The simulator's EEG before MR artifacts for this run, when BIDS_DIR has one and
    the run's EEG is BIDS_DIR's own (the quality against it goes into the metrics)."""
    truth = Path(bids_dir) / "derivatives" / "simulation" / f"sub-{pair.subject}"
    if pair.session:
        truth = truth / f"ses-{pair.session}"
    path = truth / "eeg" / f"{pair.name}_desc-clean_eeg.vhdr"
    raw = Path(bids_dir).resolve() in Path(pair.eeg).resolve().parents
    return path if raw and path.is_file() else None


def restore_volume_events(
    pairs: Sequence[RunPair], *, work_dir: Path, output_dir: Path, bids_dir: Path
) -> list[Path]:
    """Rewrite the ``_desc-volumes_events.tsv`` of completed runs that OUTPUT_DIR lacks.

    The nipype node that writes them is cached: after OUTPUT_DIR was emptied and the
    work directory kept, a rerun executes nothing and would leave them out.
    """
    import numpy as np

    from bids_eeg2fmri.bidsio.events import write_volume_events

    written = []
    for pair in pairs:
        subject_dir = Path(output_dir) / f"sub-{pair.subject}"
        if pair.session:
            subject_dir = subject_dir / f"ses-{pair.session}"
        path = subject_dir / "eeg" / f"{pair.name}_desc-volumes_events.tsv"
        timing = Path(work_dir) / workflow_name() / _node_name(pair.name) / "volume_timing"
        if path.is_file() or not (timing / "timing.npz").is_file():
            continue
        with np.load(timing / "timing.npz") as data:
            written.append(
                write_volume_events(
                    path,
                    onsets=data["onsets"],
                    how=data["how"],
                    tr=float(data["tr"]),
                    sfreq=float(data["sfreq"]),
                    sources=[
                        bids_uri(p, bids_dir) for p in (pair.eeg, pair.events_tsv) if p is not None
                    ],
                )
            )
    return written


def restore_mr_outputs(pairs: Sequence[RunPair], *, work_dir: Path) -> list[Path]:
    """Publish again the MR correction's derivatives that OUTPUT_DIR lacks (its nipype node
    is cached, as the volume events'), from the node's record of what it copied."""
    import json

    from bids_eeg2fmri.workflows.mr_interfaces import publish

    restored = []
    for pair in pairs:
        record = (
            Path(work_dir) / workflow_name() / _node_name(pair.name) / "mr_derivatives"
        ) / "published.json"
        if not record.is_file():
            continue
        published = json.loads(record.read_text(encoding="utf-8"))
        missing = [(s, d) for s, d in published["files"] if not Path(d).is_file()]
        if missing and all(Path(s).is_file() for s, _ in missing):
            publish(missing, sources=published.get("sources", []))
            restored += [Path(d) for _, d in missing]
    return restored


def remove_run_outputs(
    pairs: Sequence[RunPair],
    output_dir: Path,
    *,
    since_ns: int,
    model_name: str | None = None,
) -> list[Path]:
    """Remove what this invocation wrote for ``pairs`` once their runs failed after the
    workflow (training or synthesis): the files below their participants' folders (crash
    reports under ``log/`` kept) and, for a model trained here, ``models/<model_name>.*``,
    modified at or after ``since_ns`` (ns since the epoch). Outputs of earlier runs stay.
    Returns the removed files."""
    output_dir = Path(output_dir)
    candidates: set[Path] = set()
    for subject in {p.subject for p in pairs}:
        folder = output_dir / f"sub-{subject}"
        candidates.update(
            path for path in folder.rglob("*") if "log" not in path.relative_to(folder).parts
        )
    if model_name:
        candidates.update((output_dir / "models").glob(f"{model_name}.*"))
    removed = []
    for path in sorted(candidates):
        try:
            if path.is_file() and path.stat().st_mtime_ns >= since_ns:
                path.unlink()
                removed.append(path)
        except OSError:  # gone already, or not ours to remove
            continue
    for folder in sorted({p.parent for p in removed}, key=lambda p: -len(p.parts)):
        while folder != output_dir and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()  # the folders this run's files emptied
            folder = folder.parent
    return removed

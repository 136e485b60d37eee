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
    name: str | None = None,
):
    """One sub-workflow per run; ``workflow`` is the config's WorkflowSection.

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
                )
            ]
        )
    return top


def init_run_wf(*, pair: RunPair, bids_dir, output_dir, crashdump_dir, workflow, channels):
    """Nodes of one run (EEG with or without BOLD)."""
    import nipype.pipeline.engine as pe

    from bids_eeg2fmri.workflows.interfaces import (
        EEGFeatures,
        PrepareBold,
        VolumeEvents,
        VolumeTiming,
    )

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
    features = pe.Node(
        EEGFeatures(
            eeg_file=str(pair.eeg),
            channels=list(channels),
            min_channel_fraction=workflow.min_channel_fraction,
            n_windows=workflow.n_windows,
            max_freq=workflow.max_freq,
        ),
        name="eeg_features",
        mem_gb=1.0,
    )
    optional[features] = {
        "channels_tsv": pair.channels_tsv,
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
    wf.connect(timing, "timing", features, "timing")
    merge_inputs = [(features, "features")]
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

    for node, values in optional.items():
        for key, value in values.items():
            if value is not None:
                setattr(node.inputs, key, str(value) if isinstance(value, Path) else value)
    for node_name in wf.list_node_names():
        wf.get_node(node_name).config = {"execution": {"crashdump_dir": str(crashdump_dir)}}
    return wf


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

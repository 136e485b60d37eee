"""Write a simulated dataset as BIDS, with its ground truth in derivatives/simulation/.

The dataset is built in a temporary sibling folder and renamed into place at the end, so
an interrupted simulation never leaves a half-written dataset under the requested name.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import logging
import multiprocessing
import os
import shutil
import sys
import tempfile
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from bids_eeg2fmri.bidsio.files import nifti_image
from bids_eeg2fmri.bidsio.pairing import scans_tsv
from bids_eeg2fmri.simulate.description import SIMULATOR, TRUTH, write_top_level
from bids_eeg2fmri.simulate.generator import (
    COUPLED_THRESHOLD,
    ENVELOPE_RATE,
    Head,
    RunData,
    SimulationConfig,
    make_head,
    simulate_run,
)
from bids_eeg2fmri.simulate.mr_artifacts import interleaved_slice_timing

LOGGER = logging.getLogger(__name__)
_MNE_BIDS_FORMAT = {"edf": "EDF", "bdf": "BDF", "eeglab": "EEGLAB"}


class OutputExistsError(Exception):
    """The output folder exists, is not empty and is not a simulation we may replace."""


def simulate_dataset(
    config: SimulationConfig, output_dir: Path, *, overwrite: bool = False, nprocs: int = 1
) -> Path:
    """Simulate and write a whole dataset, ``nprocs`` participants at a time; return its
    root. Every participant's random numbers come from its own seed, so the dataset does
    not depend on ``nprocs``.

    Raises
    ------
    ValueError
        Invalid configuration.
    OutputExistsError
        ``output_dir`` is not empty (and, with ``overwrite``, is not an earlier simulation).
    """
    config.check()
    output_dir = Path(os.path.abspath(output_dir))
    if output_dir.exists() and any(output_dir.iterdir()):
        if not overwrite:
            raise OutputExistsError(f"{output_dir} exists and is not empty (pass --overwrite)")
        if not (output_dir / TRUTH / "simulation.json").is_file():
            raise OutputExistsError(
                f"{output_dir} is not empty and is not a simulated dataset: not overwriting it"
            )
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.tmp-", dir=output_dir.parent))
    try:
        _write(config, tmp, nprocs=nprocs)
        if output_dir.exists():
            shutil.rmtree(output_dir)
        tmp.rename(output_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return output_dir


def _labels(n: int) -> list[str | None]:
    """Entity labels 01..N, or [None] (entity absent) when there is only one."""
    return [None] if n == 1 else [f"{i:02d}" for i in range(1, n + 1)]


def _write(config: SimulationConfig, root: Path, *, nprocs: int = 1) -> None:
    numbers = list(range(1, config.n_participants + 1))
    subjects = [f"{p:02d}" for p in numbers]
    workers = min(nprocs, len(numbers))
    # forked workers keep the log handlers; never fork a process that runs TensorFlow's
    # threads (a library user's, or a test session's): one at a time there
    forkable = "fork" in multiprocessing.get_all_start_methods() and "tensorflow" not in sys.modules
    if workers > 1 and forkable:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            n = len(numbers)
            parts = list(pool.map(_write_participant, [config] * n, [root] * n, numbers))
    else:
        parts = [_write_participant(config, root, p) for p in numbers]
    truth = {"participants": {}, "runs": []}
    for subject, (participant, runs) in zip(subjects, parts, strict=True):
        truth["participants"][subject] = participant
        truth["runs"] += runs
    write_top_level(config, root, subjects, truth)


def _write_participant(config: SimulationConfig, root: Path, p: int) -> tuple[dict, list[dict]]:
    """Write participant ``p``'s runs; its entries of the ground truth (participant, runs)."""
    import mne

    subject = f"{p:02d}"
    mne.set_log_level("ERROR")
    sessions, runs = _labels(config.n_sessions), _labels(config.n_runs)
    total = config.n_participants * len(sessions) * len(runs)
    head = make_head(config, p)
    participant = {
        "source_positions_mm": head.source_positions_mm,
        "coupling_pct": {k: round(v, 4) for k, v in head.couplings.items()},
    }
    written = []
    _write_maps(root / TRUTH / f"sub-{subject}" / "anat", subject, head)
    for s, session in enumerate(sessions, start=1):
        for r, run in enumerate(runs, start=1):
            LOGGER.info(
                "[%d/%d] sub-%s%s%s: %d volumes, %d EEG channels",
                ((p - 1) * len(sessions) + s - 1) * len(runs) + r,
                total,
                subject,
                f" ses-{session}" if session else "",
                f" run-{int(run)}" if run else "",
                config.n_volumes,
                config.n_channels,
            )
            data = simulate_run(config, head, p, s, r)
            entities = _entities(subject, session, config.task, run)
            acq_time = dt.datetime(2024, 1, 1, 9, 0, tzinfo=dt.UTC) + dt.timedelta(
                days=p - 1 + 7 * (s - 1), minutes=20 * (r - 1)
            )
            eeg_file = _write_eeg(config, root, subject, session, run, data, acq_time)
            bold_file = None
            if not config.eeg_only:
                bold_file = _write_bold(config, root, subject, session, entities, head, data)
                _add_scan(eeg_file, bold_file, acq_time)
                _write_run_truth(config, root / TRUTH, subject, session, entities, head, data)
            if data.clean_eeg is not None:
                _write_mr_truth(config, root / TRUTH, subject, session, entities, data, acq_time)
            written.append(
                {
                    "eeg": eeg_file.relative_to(root).as_posix(),
                    "bold": bold_file.relative_to(root).as_posix() if bold_file else None,
                    **data.summary,
                }
            )
    return participant, written


def _entities(subject: str, session: str | None, task: str, run: str | None) -> str:
    parts = [f"sub-{subject}"]
    if session:
        parts.append(f"ses-{session}")
    parts.append(f"task-{task}")
    if run:
        parts.append(f"run-{int(run)}")
    return "_".join(parts)


def _subject_dir(root: Path, subject: str, session: str | None) -> Path:
    return root / f"sub-{subject}" / (f"ses-{session}" if session else "")


def _write_eeg(config, root, subject, session, run, data: RunData, acq_time) -> Path:
    """EEG through mne-bids; markers stay native annotations of the data file."""
    import mne
    from mne_bids import BIDSPath, write_raw_bids

    info = mne.create_info(data.ch_names, config.sfreq, data.ch_types)
    raw = mne.io.RawArray(data.eeg, info, verbose=False)
    raw.set_montage(config.montage, on_missing="ignore")
    raw.set_meas_date(acq_time)
    raw.info["line_freq"] = config.line_freq
    if not config.eeg_only:  # EEG recorded outside the scanner has no volume markers
        raw.set_annotations(_annotations(config, data, acq_time))
    bids_path = BIDSPath(
        subject=subject,
        session=session,
        task=config.task,
        run=int(run) if run else None,
        datatype="eeg",
        root=root,
    )
    if config.eeg_format == "brainvision":
        # mne-bids would rewrite markers as numbered stimuli: export first (MNE keeps the
        # type/description of each marker), then let mne-bids copy the native files.
        with tempfile.TemporaryDirectory() as tmp:
            # (not "eeg.vhdr": mne-bids' renaming would also rewrite the ".eeg" extension)
            vhdr = Path(tmp) / "recording.vhdr"
            with warnings.catch_warnings():  # "converting to float32": intended (µV floats)
                warnings.simplefilter("ignore", RuntimeWarning)
                mne.export.export_raw(vhdr, raw, fmt="brainvision", verbose=False)
            for marker in (config.marker, config.slice_marker):
                _set_marker_type(vhdr.with_suffix(".vmrk"), marker)
            native = mne.io.read_raw_brainvision(vhdr, verbose=False)
            native.set_channel_types(dict(zip(data.ch_names, data.ch_types, strict=True)))
            native.set_montage(config.montage, on_missing="ignore")
            native.info["line_freq"] = config.line_freq
            write_raw_bids(native, bids_path, overwrite=True, verbose=False)
    else:
        write_raw_bids(
            raw,
            bids_path,
            format=_MNE_BIDS_FORMAT[config.eeg_format],
            allow_preload=True,
            overwrite=True,
            verbose=False,
        )
    sidecar = bids_path.copy().update(suffix="eeg", extension=".json").fpath
    meta = json.loads(sidecar.read_text(encoding="utf-8"))
    meta.update(
        EEGReference="average",
        Manufacturer="bids-eeg2fmri simulator",
        CapManufacturer="n/a",
        EEGPlacementScheme=f"{config.montage} positions (MNE standard montage)",
    )
    sidecar.write_text(json.dumps(meta, indent=4) + "\n", encoding="utf-8")
    if config.eeg_format == "eeglab":
        _fix_mat_header(bids_path.fpath)
    return bids_path.fpath


def _annotations(config, data: RunData, acq_time):
    """The volume markers (and slice markers, if any) as MNE annotations."""
    import mne

    # A quarter sample later than the marker's sample: MNE's writers turn onsets into
    # samples by truncation, and k * TR in floating point can fall just below the sample.
    onsets = list(data.marker_onsets + 0.25 / config.sfreq)
    labels = [config.marker] * len(onsets)
    if data.slice_marker_onsets is not None:
        onsets += list(data.slice_marker_onsets + 0.25 / config.sfreq)
        labels += [config.slice_marker] * len(data.slice_marker_onsets)
    order = np.argsort(onsets, kind="stable")
    return mne.Annotations(
        np.asarray(onsets)[order], 0.0, np.asarray(labels)[order], orig_time=acq_time
    )


def _set_marker_type(vmrk: Path, marker: str) -> None:
    """Give BrainVision markers the type of ``TYPE/DESCRIPTION`` (e.g. ``Scanner/Scan Start``).

    pybv (hence MNE's exporter) writes only Stimulus, Response and Comment markers, and
    writes any other ``TYPE/DESCRIPTION`` as a Comment; real recorders use other types.
    """
    kind, _, description = marker.partition("/")
    if not description or kind in ("Stimulus", "Response", "Comment"):
        return
    text = vmrk.read_text(encoding="utf-8")
    vmrk.write_text(
        text.replace(f"=Comment,{marker},", f"={kind},{description},"), encoding="utf-8"
    )


def _fix_mat_header(path: Path) -> None:
    """Replace the creation time scipy writes in a MATLAB file header (byte-identical runs)."""
    with open(path, "r+b") as handle:
        head = handle.read(116)
        if head.startswith(b"MATLAB 5.0 MAT-file"):
            handle.seek(0)
            handle.write(f"MATLAB 5.0 MAT-file, written by {SIMULATOR}".encode().ljust(116))


def _write_bold(config, root, subject, session, entities, head: Head, data: RunData) -> Path:
    func = _subject_dir(root, subject, session) / "func"
    func.mkdir(parents=True, exist_ok=True)
    voxel = config.resolved_voxel_size()
    path = func / f"{entities}_bold.nii.gz"
    nifti_image(data.bold, head.affine, (*voxel, config.tr)).to_filename(path)
    meta = {
        "TaskName": config.task,
        "RepetitionTime": config.tr,
        "Manufacturer": "bids-eeg2fmri simulator",
        "SkullStripped": False,
    }
    if config.n_dummy:
        meta["NumberOfVolumesDiscardedByScanner"] = config.n_dummy
    if data.scanner is not None:
        meta["SliceTiming"] = interleaved_slice_timing(data.scanner)
    _write_json(func / f"{entities}_bold.json", meta)
    return path


def _add_scan(eeg_file: Path, bold_file: Path, acq_time: dt.datetime) -> None:
    """Add the BOLD run to scans.tsv with the EEG's acq_time (simultaneous recording)."""
    scans = scans_tsv(eeg_file)
    with open(scans, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    eeg_row = next(r for r in rows if r["filename"].endswith(eeg_file.name))
    rows.append({**eeg_row, "filename": f"func/{bold_file.name}"})
    rows.sort(key=lambda r: r["filename"])
    with open(scans, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(
            handle, fieldnames=list(rows[0]), delimiter="\t", lineterminator="\n"
        )
        writer.writeheader()
        writer.writerows(rows)


def _write_maps(anat: Path, subject: str, head: Head) -> None:
    anat.mkdir(parents=True, exist_ok=True)
    zooms = tuple(np.abs(np.diag(head.affine)[:3]))
    nifti_image(head.mask.astype(np.uint8), head.affine, zooms).to_filename(
        anat / f"sub-{subject}_desc-brain_mask.nii.gz"
    )
    for name, weights in head.maps.items():
        nifti_image(weights.astype(np.float32), head.affine, zooms).to_filename(
            anat / f"sub-{subject}_label-{name}_probseg.nii.gz"
        )


def _write_run_truth(config, truth_root, subject, session, entities, head, data: RunData) -> None:
    func = _subject_dir(truth_root, subject, session) / "func"
    func.mkdir(parents=True, exist_ok=True)
    voxel = config.resolved_voxel_size()
    raw_bold = (
        f"bids:raw:{_subject_dir(Path(), subject, session).as_posix()}/func/{entities}_bold.nii.gz"
    )
    noiseless = nifti_image(data.noiseless, head.affine, (*voxel, config.tr))
    noiseless.set_data_dtype(np.int16)  # nibabel scales to the range: ~0.02 % steps, 1/2 the size
    noiseless.to_filename(func / f"{entities}_desc-noiseless_bold.nii.gz")
    _write_json(
        func / f"{entities}_desc-noiseless_bold.json",
        {
            "Description": "BOLD without physiological noise, drift or thermal noise: the best "
            "possible prediction from the sources' band power.",
            "RepetitionTime": config.tr,
            "SkullStripped": False,
            "Sources": [raw_bold],
        },
    )
    nifti_image(data.noise_ceiling, head.affine, voxel).to_filename(
        func / f"{entities}_noiseceiling.nii.gz"
    )
    _write_json(
        func / f"{entities}_noiseceiling.json",
        {
            "Description": "Voxelwise Pearson r of the noiseless and the observed BOLD, in voxels "
            f"whose coupling weight is at least {COUPLED_THRESHOLD} (NaN elsewhere).",
            **data.summary,
        },
    )
    names = list(data.envelopes)
    _write_tsv(
        func / f"{entities}_desc-envelopes_timeseries.tsv",
        ["time", *(f"{n}_power" for n in names)],
        np.column_stack([data.envelope_times, *(data.envelopes[n] for n in names)]),
    )
    _write_json(
        func / f"{entities}_desc-envelopes_timeseries.json",
        {
            "SamplingFrequency": ENVELOPE_RATE,
            "time": {
                "Description": "Time from the first EEG sample (negative: before it).",
                "Units": "s",
            },
            **{
                f"{n}_power": {
                    "Description": f"Band power of the {n} source (squared amplitude envelope, "
                    "mean about 1): the neural drive of its BOLD region.",
                    "Units": "arbitrary",
                }
                for n in names
            },
        },
    )
    _write_tsv(
        func / f"{entities}_desc-regressors_timeseries.tsv",
        ["volume", "onset", *names],
        np.column_stack(
            [
                np.arange(len(data.volume_onsets)),
                data.volume_onsets,
                *(data.regressors[n] for n in names),
            ]
        ),
    )
    _write_json(
        func / f"{entities}_desc-regressors_timeseries.json",
        {
            "volume": {"Description": "Index of the stored BOLD volume (0-based)."},
            "onset": {"Description": "Volume onset on the EEG clock (its marker).", "Units": "s"},
            **{
                n: {
                    "Description": f"Band power of the {n} source convolved with the canonical "
                    "HRF, read at the middle of each volume, z-scored over the run.",
                    "Units": "standard deviations",
                }
                for n in names
            },
        },
    )


def _write_mr_truth(config, truth_root, subject, session, entities, data: RunData, acq_time):
    """The EEG before the MR artifacts (BrainVision, float32, with the same markers), the
    true R peaks and the true scanner timing of a raw in-scanner run."""
    import mne

    eeg_dir = _subject_dir(truth_root, subject, session) / "eeg"
    eeg_dir.mkdir(parents=True, exist_ok=True)
    info = mne.create_info(data.ch_names, config.sfreq, data.ch_types)
    raw = mne.io.RawArray(data.clean_eeg, info, verbose=False)
    raw.set_meas_date(acq_time)
    raw.set_annotations(_annotations(config, data, acq_time))
    vhdr = eeg_dir / f"{entities}_desc-clean_eeg.vhdr"
    with warnings.catch_warnings():  # "converting to float32": intended
        warnings.simplefilter("ignore", RuntimeWarning)
        mne.export.export_raw(vhdr, raw, fmt="brainvision", overwrite=True, verbose=False)
    for marker in (config.marker, config.slice_marker):
        _set_marker_type(vhdr.with_suffix(".vmrk"), marker)
    _write_json(
        eeg_dir / f"{entities}_desc-clean_eeg.json",
        {
            "Description": "The EEG (and ECG) before the MR artifacts were added: what a "
            "perfect gradient and pulse correction would return.",
            "SamplingFrequency": config.sfreq,
            "MRArtifacts": list(config.mr_artifacts),
            "Sources": [
                f"bids:raw:{_subject_dir(Path(), subject, session).as_posix()}/eeg/"
                f"{entities}_eeg{_EXTENSION[config.eeg_format]}"
            ],
        },
    )
    if data.r_peaks is not None:
        rows = "".join(f"{t:.6f}\t0\tR peak\n" for t in data.r_peaks)
        (eeg_dir / f"{entities}_desc-heartbeats_events.tsv").write_text(
            "onset\tduration\ttrial_type\n" + rows, encoding="utf-8"
        )
        _write_json(
            eeg_dir / f"{entities}_desc-heartbeats_events.json",
            {
                "Description": "True R peaks of the simulated heart beats; the pulse artifact "
                "starts about 0.2 s after each.",
                "onset": {"Description": "R peak, from the first EEG sample.", "Units": "s"},
            },
        )
    if data.scanner is not None:
        n_unmarked = data.scanner.n_unmarked
        rows = "".join(
            f"{t:.9f}\t{data.scanner.slice_period * data.scanner.slice_offsets.size:.9f}\t"
            f"{'unmarked' if i < n_unmarked else 'marked'}\n"
            for i, t in enumerate(data.scanner.volume_onsets)
        )
        (eeg_dir / f"{entities}_desc-scanner_events.tsv").write_text(
            "onset\tduration\ttrial_type\n" + rows, encoding="utf-8"
        )
        _write_json(
            eeg_dir / f"{entities}_desc-scanner_events.json",
            {
                "Description": "True onset of every volume the scanner acquired (on the EEG "
                "clock, before rounding to a sample), and its slices' duration.",
                "onset": {"Description": "Volume onset, from the first EEG sample.", "Units": "s"},
                "duration": {"Description": "Slices of one volume, end to end.", "Units": "s"},
                "trial_type": {
                    "Levels": {
                        "marked": "a volume marker follows at the next EEG sample",
                        "unmarked": "acquired before the first marker: artifacts, no marker",
                    }
                },
                "SlicePeriod": data.scanner.slice_period,
                "SliceOffsets": [round(float(x), 9) for x in data.scanner.slice_offsets],
            },
        )


_EXTENSION = {"brainvision": ".vhdr", "edf": ".edf", "bdf": ".bdf", "eeglab": ".set"}


def _write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _write_tsv(path: Path, columns: list[str], values: np.ndarray) -> None:
    lines = ["\t".join(columns)]
    lines += ["\t".join(f"{v:.6g}" for v in row) for row in values]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

"""The simulated dataset's top-level files: dataset_description.json, participants and
the README that says what was simulated (and, for raw in-scanner EEG, which artifacts)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from bids_eeg2fmri import CODE_URL, __version__
from bids_eeg2fmri.bidsio.files import write_json_atomic
from bids_eeg2fmri.simulate import groups
from bids_eeg2fmri.simulate.generator import SimulationConfig

SIMULATOR = "bids-eeg2fmri-simulate"
BIDS_VERSION = "1.10.0"
TRUTH = Path("derivatives") / "simulation"


def write_top_level(config: SimulationConfig, root: Path, subjects: list[str], truth: dict) -> None:
    import mne_bids

    generated_by = [
        {"Name": SIMULATOR, "Version": __version__, "CodeURL": CODE_URL},
        {"Name": "MNE-BIDS", "Version": mne_bids.__version__},
    ]
    if config.groups is not None:
        generated_by[0]["Description"] = "Simulated with " + groups.summary(config)
    write_json_atomic(
        root / "dataset_description.json",
        {
            "Name": "bids-eeg2fmri simulated simultaneous EEG-fMRI",
            "BIDSVersion": BIDS_VERSION,
            "DatasetType": "raw",
            "License": "CC0",
            "Authors": ["bids-eeg2fmri simulator"],
            "GeneratedBy": generated_by,
        },
    )
    with open(root / "participants.tsv", "w", encoding="utf-8") as handle:
        handle.write(groups.participants_tsv(config, subjects))
    (root / "participants.json").unlink(missing_ok=True)
    if config.groups is not None:
        write_json_atomic(root / "participants.json", groups.participants_json())
    (root / "README").write_text(_readme(config), encoding="utf-8")

    truth_root = root / TRUTH
    write_json_atomic(
        truth_root / "dataset_description.json",
        {
            "Name": "Ground truth of the simulation",
            "BIDSVersion": BIDS_VERSION,
            "DatasetType": "derivative",
            "GeneratedBy": generated_by[:1],
        },
    )
    (truth_root / ".bidsignore").write_text("simulation.json\n*_noiseceiling.*\n", encoding="utf-8")
    config_dict = dataclasses.asdict(config)
    config_dict["voxel_size"] = list(config.resolved_voxel_size())
    if config.groups is None:  # without groups, simulation.json as before they existed
        del config_dict["groups"], config_dict["group_effect"]
    write_json_atomic(
        truth_root / "simulation.json",
        {
            "simulator": SIMULATOR,
            "version": __version__,
            "config": config_dict,
            **truth,
            **groups.ground_truth(config, subjects),
        },
    )


def _readme(config: SimulationConfig) -> str:
    sources = "\n".join(
        f"- {s.name}: {s.band[0]:g}-{s.band[1]:g} Hz, BOLD coupling {s.coupling:+g} % per SD"
        for s in config.sources
    )
    more = _groups_readme(config) + _mr_readme(config)
    cap = f"{config.n_channels} EEG channels of the {config.montage} cap at {config.sfreq:g} Hz"
    if config.eeg_only:
        title, runs = (
            "Simulated EEG (no fMRI)",
            (
                f"Each run has an EEG recording ({config.eeg_format}, {cap}"
                f"{', plus ECG' if config.ecg else ''}) recorded outside the scanner: no BOLD\n"
                f"run and no volume markers ({config.n_volumes} x {config.tr:g} s of EEG after a "
                "pre-roll).\nElectrode positions are in each recording's electrodes.tsv.\n"
            ),
        )
    else:
        title, runs = (
            "Simulated simultaneous EEG-fMRI",
            (
                f"Each run has an EEG recording ({config.eeg_format}, {cap}"
                f"{', plus ECG' if config.ecg else ''}) and a BOLD run ({config.n_volumes}\n"
                f"volumes, TR {config.tr:g} s) with the same acq_time in scans.tsv. The EEG starts "
                "a few\nseconds before the first volume and carries a "
                f'"{config.marker}" marker at every volume\nonset ({config.n_dummy} dummy '
                "volume(s) before the first stored one).\n"
            ),
        )
    truth = (
        "source maps and every parameter"
        if config.eeg_only
        else "noiseless BOLD, source maps, band-power envelopes,\nregressors, the noise "
        "ceiling of each run and every parameter"
    )
    return f"""{title}
{"=" * len(title)}

Written by {SIMULATOR} {__version__} (seed {config.seed}). Nothing here was recorded
from a person.

{runs}
Sources whose band power drives BOLD through the canonical HRF:
{sources}

{more}The ground truth ({truth}) is in
derivatives/simulation/.
EEG files were written with MNE-Python and MNE-BIDS (Appelhoff et al. 2019,
doi:10.21105/joss.01896).
"""


def _groups_readme(config: SimulationConfig) -> str:
    if config.groups is None:
        return ""
    import textwrap

    return textwrap.fill("Participants: " + groups.summary(config), width=88) + "\n\n"


def _mr_readme(config: SimulationConfig) -> str:
    if not config.mr_artifacts:
        return ""
    parts = []
    if "gradient" in config.mr_artifacts:
        parts.append(
            f"the gradient artifact of {config.slices()} slices per volume (SliceTiming in "
            f"the BOLD sidecars), {config.gradient_scale[0]:g}-{config.gradient_scale[1]:g} "
            f"times each channel's EEG, a scanner clock {config.clock_drift_ppm:g} ppm off "
            f"the EEG's, and {config.n_unmarked} unmarked volume(s) before the first marker"
            + (
                f' (a "{config.slice_marker}" marker at every slice)'
                if config.slice_markers
                else ""
            )
        )
    if "pulse" in config.mr_artifacts:
        parts.append(
            f"the pulse artifact, about 0.2 s after each heart beat (about "
            f"{config.heart_rate:g} per minute, up to {config.pulse_uv:g} uV)"
        )
    import textwrap

    text = (
        "The EEG was recorded inside the scanner: it holds "
        + " and ".join(parts)
        + ". The EEG before the artifacts, the true R peaks and the scanner's true timing are "
        "in derivatives/simulation/sub-*/eeg/."
    )
    return textwrap.fill(text, width=88) + "\n\n"

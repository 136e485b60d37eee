"""The derivative dataset's own files: dataset_description.json (and, later, the sink)."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bids_eeg2fmri import CODE_URL, __version__
from bids_eeg2fmri.bidsio.files import write_json_atomic
from bids_eeg2fmri.errors import UsageError

LOGGER = logging.getLogger(__name__)

PIPELINE_NAME = "bids-eeg2fmri"
BIDS_VERSION = "1.10.0"

#: Set in our container images (Dockerfile ENV); Apptainer/Singularity add their own.
CONTAINER_TYPE_VAR = "BIDS_EEG2FMRI_CONTAINER_TYPE"
CONTAINER_TAG_VAR = "BIDS_EEG2FMRI_CONTAINER_TAG"


def read_json(path: Path) -> dict[str, Any]:
    """Read a JSON object; ``{}`` if the file is missing."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError):
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return data


def container_from_environment(environ: Mapping[str, str]) -> dict[str, str] | None:
    """``GeneratedBy.Container`` when running in one of our images, else ``None``.

    Docker/Podman: the image sets ``BIDS_EEG2FMRI_CONTAINER_TYPE``/``_TAG``.
    Apptainer/Singularity set ``APPTAINER_CONTAINER``/``SINGULARITY_CONTAINER`` (the image
    file) and keep the Docker image's environment, hence its tag.
    """
    tag = environ.get(CONTAINER_TAG_VAR)
    for runtime in ("APPTAINER", "SINGULARITY"):
        image = environ.get(f"{runtime}_CONTAINER")
        if image:
            container = {"Type": runtime.lower(), "URI": f"file://{image}"}
            if tag:
                container["Tag"] = tag
            return container
    if environ.get(CONTAINER_TYPE_VAR) and tag:
        return {"Type": environ[CONTAINER_TYPE_VAR], "Tag": tag}
    return None


def source_datasets(source_description: Mapping[str, Any]) -> list[dict[str, str]]:
    """``SourceDatasets`` from the input's description: its DOI, and the version it encodes.

    OpenNeuro DOIs end in the snapshot version (``doi:10.18112/openneuro.ds000117.v1.0.5``).
    Nothing is returned when the input has no DOI (a local path would not be reproducible).
    """
    doi = source_description.get("DatasetDOI")
    if not doi:
        return []
    doi = str(doi)
    entry = {
        "DOI": doi if doi.startswith("doi:") else f"doi:{doi.removeprefix('https://doi.org/')}"
    }
    version = re.search(r"\.v(\d+(?:\.\d+)*)$", doi)
    if version:
        entry["Version"] = version.group(1)
    return [entry]


#: Files of the output dataset that BIDS does not describe (the validator would flag them).
BIDSIGNORE = (
    "logs",
    "models",
    "sub-*/log",
    "*.html",
    "figures",
    "sub-*/figures",
    "*_metrics.tsv",
    "*_metrics.json",
    "*_statmap.nii.gz",
    "*_statmap.json",
    "*_relevance.tsv",
    "*_relevance.json",
    "*_relevance.nii.gz",
    "*_graph.tsv",
    "*_graph.json",
    "*_features.tsv",
    "*_features.json",
    "*_predictions.tsv",
    "*_predictions.json",
    "*_weights.nii.gz",
    "*_weights.json",
    "*_pattern.nii.gz",
    "*_pattern.json",
)

#: Every ``desc-`` label of our outputs (``descriptions.tsv``).
DESCRIPTIONS = {
    "volumes": "Onsets of the BOLD volumes on the EEG clock, as used to align the EEG.",
    "mrcorrected": "EEG recorded in the MR scanner, corrected for its gradient and/or pulse "
    "artifacts and downsampled (and the correction's metrics per channel).",
    "synth": "BOLD synthesized from EEG by the model (and its metrics against the observed "
    "BOLD, beside those of the baselines).",
    "uncertainty": "The model's per-voxel uncertainty of the synthesized BOLD (the scale of "
    "its likelihood).",
    "corr": "Voxelwise temporal Pearson r of the synthesized and the observed BOLD.",
    "lrp": "Layer-wise relevance propagation of the synthesized BOLD to the EEG input.",
    "attention": "The model's topographical attention weights between EEG channels.",
    "classify": "Classification of participants from each feature set (group level).",
    "views": "The run's feature sets for classifying participants (EEG band power and "
    "spectra, the model's latent and synthesized volumes, nuisance properties).",
}


def raw_link(output_dir: Path, bids_dir: Path) -> str:
    """``DatasetLinks.raw``: the input, relative when the output is inside it."""
    output_dir, bids_dir = Path(output_dir).resolve(), Path(bids_dir).resolve()
    if bids_dir in output_dir.parents:
        return Path(os.path.relpath(bids_dir, output_dir)).as_posix()
    return bids_dir.as_uri()


def derivative_description(
    source_description: Mapping[str, Any], environ: Mapping[str, str], raw: str | None = None
) -> dict[str, Any]:
    """The ``dataset_description.json`` of our output dataset; ``raw`` resolves the
    ``bids:raw:`` URIs of our sidecars (``DatasetLinks``)."""
    generated_by: dict[str, Any] = {
        "Name": PIPELINE_NAME,
        "Version": __version__,
        "CodeURL": CODE_URL,
    }
    container = container_from_environment(environ)
    if container:
        generated_by["Container"] = container
    description: dict[str, Any] = {
        "Name": f"{PIPELINE_NAME} outputs"
        + (f" for {source_description['Name']}" if source_description.get("Name") else ""),
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [generated_by],
    }
    sources = source_datasets(source_description)
    if sources:
        description["SourceDatasets"] = sources
    if raw:
        description["DatasetLinks"] = {"raw": raw}
    if source_description.get("License"):
        description["License"] = source_description["License"]
    return description


def check_existing_output(output_dir: Path) -> None:
    """Refuse an OUTPUT_DIR that holds another dataset; warn about another version.

    Raises
    ------
    UsageError
        If ``output_dir/dataset_description.json`` exists and was not written by us.
    """
    path = output_dir / "dataset_description.json"
    try:
        existing = read_json(path)
    except (ValueError, UnicodeDecodeError):
        raise UsageError(f"{path} is not valid JSON; choose another OUTPUT_DIR") from None
    if not existing:
        return
    generated = existing.get("GeneratedBy") or [{}]
    name = generated[0].get("Name") if isinstance(generated[0], dict) else None
    if existing.get("DatasetType") != "derivative" or name != PIPELINE_NAME:
        raise UsageError(
            f"{path} describes another dataset ({existing.get('Name', 'no Name')!r}, "
            f"generated by {name or 'unknown'}); choose an empty or {PIPELINE_NAME} OUTPUT_DIR"
        )
    version = generated[0].get("Version")
    if version != __version__:
        LOGGER.warning(
            "%s holds outputs of %s %s; this is %s: outputs of both versions may mix",
            output_dir,
            PIPELINE_NAME,
            version,
            __version__,
        )


def check_eeg_derivatives(folder: Path | None) -> None:
    """``--eeg-derivatives`` must be a folder (its files are matched when pairing).

    Raises
    ------
    UsageError
        The folder does not exist or is a file.
    """
    if folder is None or Path(folder).is_dir():
        return
    problem = "not a folder" if Path(folder).exists() else "no such folder"
    raise UsageError(
        f"--eeg-derivatives {folder}: {problem} (a BIDS derivatives dataset holding the EEG "
        "files, e.g. BIDS_DIR/derivatives/<pipeline>; in a container, is it mounted?)"
    )


def write_derivative_description(
    output_dir: Path, bids_dir: Path, environ: Mapping[str, str]
) -> Path:
    """Write (atomically) the output's ``dataset_description.json`` and ``.bidsignore``."""
    from bids_eeg2fmri.bidsio.files import write_text_atomic

    source = read_json(bids_dir / "dataset_description.json")
    write_text_atomic(output_dir / ".bidsignore", "\n".join(BIDSIGNORE) + "\n")
    write_text_atomic(
        output_dir / "descriptions.tsv",
        "desc_id\tdescription\n" + "".join(f"desc-{k}\t{v}\n" for k, v in DESCRIPTIONS.items()),
    )
    return write_json_atomic(
        output_dir / "dataset_description.json",
        derivative_description(source, environ, raw_link(output_dir, bids_dir)),
    )


#: Not in the manifest: records of the run itself (dates, durations, host names).
MANIFEST_EXCLUDES = ("logs/*", "models/*", "*.html", "figures/*", "sub-*/figures/*", "sub-*/log/*")


def write_manifest(output_dir: Path) -> Path:
    """``logs/outputs.sha256``: the SHA-256 of every derivative file, in the format of
    ``sha256sum`` (``sha256sum -c`` checks it from OUTPUT_DIR), sorted by path.

    Logs, reports, figures and the model files are left out: they record dates, durations
    or the machine, so they differ between identical runs.
    """
    import fnmatch

    from bids_eeg2fmri.bidsio.files import sha256, write_text_atomic

    output_dir = Path(output_dir)
    lines = []
    for path in sorted(p for p in output_dir.rglob("*") if p.is_file()):
        relative = path.relative_to(output_dir).as_posix()
        if path.name.startswith(".") or any(
            fnmatch.fnmatch(relative, pattern) for pattern in MANIFEST_EXCLUDES
        ):
            continue
        lines.append(f"{sha256(path)}  {relative}\n")
    return write_text_atomic(output_dir / "logs" / "outputs.sha256", "".join(lines))

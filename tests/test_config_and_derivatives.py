"""Unit tests: option parsers, config files, and the derivative dataset description."""

from __future__ import annotations

import pytest

from bids_eeg2fmri.bidsio.derivatives import (
    container_from_environment,
    derivative_description,
    source_datasets,
)
from bids_eeg2fmri.config import (
    make_config,
    parse_labels,
    parse_memory_gb,
    read_config_file,
    to_toml_dict,
)
from bids_eeg2fmri.errors import UsageError


@pytest.mark.parametrize(
    ("value", "expected"),
    [("8G", 8.0), ("8GB", 8.0), ("8000M", 7.812), ("512MiB", 0.5), ("1T", 1024.0), (16, 16.0)],
)
def test_memory_with_units(value, expected):
    assert parse_memory_gb(value) == expected


@pytest.mark.parametrize("value", ["8", "eight G", "-1G", "0G", 0])
def test_memory_without_a_unit_or_not_positive_is_refused(value):
    with pytest.raises(ValueError, match="memory"):
        parse_memory_gb(value)


def test_labels_strip_prefix_split_dedupe_and_sort():
    assert parse_labels(["sub-02", "01,03", "02 04"], entity="sub") == ("01", "02", "03", "04")
    assert parse_labels("ses-pre", entity="ses") == ("pre",)
    with pytest.raises(ValueError, match="letters and digits"):
        parse_labels(["sub-0-1"], entity="sub")


def test_config_file_sections_are_optional_and_checked(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('nprocs = 3\n[selection]\nparticipant_label = ["sub-01"]\n')
    assert read_config_file(path) == {"nprocs": 3, "participant_label": ["sub-01"]}
    path.write_text("[execution]\nparticipant_label = []\n")  # right key, wrong section
    with pytest.raises(UsageError, match="unknown option execution.participant_label"):
        read_config_file(path)


def test_config_round_trips_through_toml(tmp_path):
    import tomli_w

    options = {
        "bids_dir": tmp_path / "in",
        "output_dir": tmp_path / "out",
        "analysis_level": "participant",
        "participant_label": ["sub-01"],
        "bids_filters": {"eeg": {"session": None, "run": "*"}},
        "mem_gb": "4G",
        "nprocs": "2",
    }
    config = make_config(options, run_uuid="x")
    path = tmp_path / "c.toml"
    path.write_text(tomli_w.dumps(to_toml_dict(config)))
    again = make_config(read_config_file(path), run_uuid="x")
    assert again == config
    assert config.execution.omp_nthreads == 1 and config.execution.mem_gb == 4.0


def test_container_metadata_from_the_environment():
    assert container_from_environment({}) is None
    docker = {"BIDS_EEG2FMRI_CONTAINER_TYPE": "docker", "BIDS_EEG2FMRI_CONTAINER_TAG": "x:1"}
    assert container_from_environment(docker) == {"Type": "docker", "Tag": "x:1"}
    apptainer = {**docker, "APPTAINER_CONTAINER": "/images/x.sif"}
    assert container_from_environment(apptainer) == {
        "Type": "apptainer",
        "URI": "file:///images/x.sif",
        "Tag": "x:1",
    }


def test_source_datasets_from_an_openneuro_doi():
    assert source_datasets({}) == []
    assert source_datasets({"DatasetDOI": "doi:10.18112/openneuro.ds002336.v2.0.2"}) == [
        {"DOI": "doi:10.18112/openneuro.ds002336.v2.0.2", "Version": "2.0.2"}
    ]
    assert source_datasets({"DatasetDOI": "10.5281/zenodo.1"}) == [{"DOI": "doi:10.5281/zenodo.1"}]
    description = derivative_description({"Name": "NODDI", "License": "CC0"}, {})
    assert description["Name"].endswith("for NODDI") and description["License"] == "CC0"
    assert "SourceDatasets" not in description

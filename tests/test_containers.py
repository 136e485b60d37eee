"""The container and CI files: lint (hadolint, actionlint, shellcheck, bash -n, spython) and
the behaviour of the SLURM scripts, with stand-ins for sbatch and apptainer.

Each linter is first shown a file it must reject, so that a linter that checks nothing
cannot pass. The build and runs of the image itself are tools/container_test.sh (.ci/run).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bids_eeg2fmri.bidsio.derivatives import CONTAINER_TAG_VAR, CONTAINER_TYPE_VAR

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
DEFINITION = ROOT / "singularity" / "bids-eeg2fmri.def"
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
SCRIPTS = sorted(
    [
        *(ROOT / "tools").glob("*.sh"),
        *(ROOT / "singularity").glob("*.sh"),
        *(ROOT / "benchmarks" / "original").glob("*.sh"),
        ROOT / ".ci" / "run",
    ]
)
README = (ROOT / "README.md").read_text(encoding="utf-8")


def tool(name: str) -> str:
    """The linter installed with the test extra (beside this Python), else on PATH."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.is_file() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]'")
    return found


def run(*args, cwd=ROOT, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


# --------------------------------------------------------------------------------------
# Dockerfile


def test_hadolint_rejects_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nRUN apt-get install python3\nCMD python3\n")
    result = run(tool("hadolint"), "--no-color", bad)
    assert result.returncode != 0
    assert "DL3006" in result.stdout  # untagged FROM


def test_hadolint_finds_nothing_in_the_dockerfile():
    result = run(tool("hadolint"), "--no-color", DOCKERFILE)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_dockerfile_names_its_image_for_the_outputs():
    """The variables that dataset_description.json's GeneratedBy.Container is made from."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(rf"^\s*{CONTAINER_TYPE_VAR}=docker\b", text, re.M)
    assert re.search(rf"^\s*{CONTAINER_TAG_VAR}=\$\{{IMAGE_TAG\}}", text, re.M)
    assert re.search(r'^ENTRYPOINT \["bids-eeg2fmri"\]$', text, re.M)
    stages = re.findall(r"^FROM \S+ AS (\S+)$", text, re.M)
    assert stages[-1] == "image" and "builder" in stages
    for arg in ("VARIANT", "IMAGE_TAG", "PIP_CERT", "VERSION"):
        assert re.search(rf"^ARG {arg}=", text, re.M), arg


def test_dockerignore_lets_in_what_the_wheel_needs():
    text = (ROOT / ".dockerignore").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert lines[0] == "*"
    for needed in ("!pyproject.toml", "!README.md", "!bids_eeg2fmri/"):
        assert needed in lines


# --------------------------------------------------------------------------------------
# GitHub workflows


def test_actionlint_rejects_a_bad_workflow(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n"
        "      - run: echo ${{ github.nosuchthing }}\n"
    )
    result = run(tool("actionlint"), "-no-color", bad)
    assert result.returncode != 0
    assert "nosuchthing" in result.stdout


def test_actionlint_finds_nothing_in_the_workflows():
    assert {w.name for w in WORKFLOWS} >= {"tests.yml", "container.yml", "publish.yml"}
    result = run(tool("actionlint"), "-no-color", f"-shellcheck={tool('shellcheck')}", *WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_workflows_run_the_readme_commands():
    tests = (ROOT / ".github" / "workflows" / "tests.yml").read_text(encoding="utf-8")
    assert "make test" in README and re.search(r"^\s+run: make test$", tests, re.M)
    assert "diff -u" in tests and "outputs.sha256" in tests
    for name in ("container.yml", "publish.yml"):
        text = (ROOT / ".github" / "workflows" / name).read_text(encoding="utf-8")
        assert "tools/container_test.sh --docker-image" in text, name


# --------------------------------------------------------------------------------------
# Shell scripts


def test_shellcheck_rejects_a_bad_script(tmp_path):
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/usr/bin/env bash\nrm -rf $1/*\n")
    result = run(tool("shellcheck"), bad)
    assert result.returncode != 0
    assert "SC2086" in result.stdout


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_shell_script(script):
    assert os.access(script, os.X_OK), f"{script} is not executable"
    syntax = run("bash", "-n", script)
    assert syntax.returncode == 0, syntax.stderr
    lint = run(tool("shellcheck"), "--color=never", script)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_the_scripts_tested_include_ours():
    names = {str(p.relative_to(ROOT)) for p in SCRIPTS}
    assert {
        ".ci/run",
        "tools/container_test.sh",
        "singularity/slurm_participants.sh",
        "singularity/slurm_group.sh",
        "singularity/slurm_train_gpu.sh",
        "singularity/submit_slurm.sh",
        "benchmarks/original/setup.sh",
    } <= names


def test_ci_runs_the_tests_then_the_container_test():
    text = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert text.index("make test") < text.index("make container-test")
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^container-test:\n\ttools/container_test\.sh$", makefile, re.M)


# --------------------------------------------------------------------------------------
# Apptainer/Singularity definition

#: Sections of an Apptainer definition file (apptainer.org, "Definition Files").
SECTIONS = {
    "arguments", "setup", "files", "environment", "post", "runscript", "startscript",
    "test", "labels", "help",
}  # fmt: skip


def test_singularity_definition_parses():
    from spython.main.parse.parsers import SingularityParser

    recipe = SingularityParser(str(DEFINITION)).recipe["spython-base"]
    assert recipe.fromHeader.startswith("ghcr.io/bids-eeg2fmri/bids-eeg2fmri:")
    assert recipe.cmd.strip() == 'exec bids-eeg2fmri "$@"'
    assert any("bids-eeg2fmri --version" in line for line in recipe.install)  # %test
    text = DEFINITION.read_text(encoding="utf-8")
    assert re.match(
        r"Bootstrap: docker\nFrom: ghcr\.io/bids-eeg2fmri/bids-eeg2fmri:\{\{ TAG \}\}\n", text
    )
    sections = re.findall(r"^%(\S+)", text, re.M)
    assert set(sections) <= SECTIONS, set(sections) - SECTIONS
    assert len(sections) == len(set(sections))
    arguments = text.split("%arguments", 1)[1].split("%", 1)[0]
    assert re.search(r"^\s+TAG=\S+$", arguments, re.M)


def test_spython_sees_a_broken_definition(tmp_path):
    from spython.main.parse.parsers import SingularityParser

    bad = tmp_path / "bad.def"
    bad.write_text("Bootstrap: library\nFrom: alpine\n")
    with pytest.raises(NotImplementedError):
        SingularityParser(str(bad))


# --------------------------------------------------------------------------------------
# SLURM scripts, with sbatch and apptainer replaced by recorders

#: Records its command line; as sbatch, also the variables the job gets, and a job id.
STUB = """#!/usr/bin/env bash
echo "$(basename "$0") $*" >> "$CALLS"
if [[ $(basename "$0") == sbatch ]]; then
    echo "ARRAY=${PARTICIPANTS_FILE:-} MODEL=${MODEL:-} TRAIN=${TRAIN_LABELS:-} SIF=$SIF" \\
        >> "$CALLS"
    echo $(( $(wc -l < "$CALLS") + 1000 ))
fi
"""


@pytest.fixture
def cluster(tmp_path):
    """A BIDS-like folder of 5 participants, and a PATH whose sbatch/apptainer record calls."""
    bids = tmp_path / "ds"
    for label in ("01", "02", "03", "04", "05"):
        (bids / f"sub-{label}").mkdir(parents=True)
    (bids / "derivatives").mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("sbatch", "apptainer"):
        (bin_dir / name).write_text(STUB)
        (bin_dir / name).chmod(0o755)
    calls = tmp_path / "calls.txt"
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "CALLS": str(calls),
        "SIF": str(tmp_path / "cpu.sif"),
        "BIDS_DIR": str(bids),
        "OUTPUT_DIR": str(tmp_path / "out"),
        "WORK_DIR": str(tmp_path / "work"),
        "HOME": str(tmp_path),
    }
    return env, calls


def lines(calls: Path) -> list[str]:
    return calls.read_text().splitlines()


def test_submit_chains_training_array_and_group(cluster, tmp_path):
    env, calls = cluster
    env = {**env, "GPU_SIF": str(tmp_path / "cuda.sif"), "TRAIN_ARGS": "--preset plain"}
    script = ROOT / "singularity" / "submit_slurm.sh"
    result = run(script, "--train", "sub-01", "02", env=env)
    assert result.returncode == 0, result.stderr
    train, train_env, array, array_env, group, _ = lines(calls)
    assert train.endswith("--parsable " + str(ROOT / "singularity" / "slurm_train_gpu.sh"))
    assert f"SIF={tmp_path / 'cuda.sif'}" in train_env and "TRAIN=01 02" in train_env
    assert "--dependency afterok:1002 --array 0-2%50 " in array
    assert array.endswith("slurm_participants.sh")
    participants = Path(re.search(r"ARRAY=(\S+)", array_env).group(1))
    assert participants.read_text().split() == ["03", "04", "05"]
    assert f"MODEL={tmp_path / 'out' / 'models' / 'plain.keras'}" in array_env
    assert f"SIF={tmp_path / 'cpu.sif'}" in array_env
    assert "--dependency afterok:1004 " in group and group.endswith("slurm_group.sh")
    assert "array job 1004 (3 tasks" in result.stdout


def test_submit_refuses_an_unknown_participant(cluster):
    env, calls = cluster
    result = run(ROOT / "singularity" / "submit_slurm.sh", "--train", "09", env=env)
    assert result.returncode == 64 and "no sub-09" in result.stderr
    assert not calls.exists()


def test_array_task_runs_one_participant_with_the_model(cluster, tmp_path):
    env, calls = cluster
    model = tmp_path / "models" / "compact.keras"
    model.parent.mkdir()
    model.write_text("")
    env = {
        **env,
        "MODEL": str(model),
        "SLURM_ARRAY_TASK_ID": "2",
        "SLURM_CPUS_PER_TASK": "4",
        "SLURM_MEM_PER_NODE": "16000",
        "EXTRA_ARGS": "--skip-bids-validation",
    }
    result = run(ROOT / "singularity" / "slurm_participants.sh", env=env)
    assert result.returncode == 0, result.stderr
    (call,) = lines(calls)
    assert call == (
        f"apptainer run --cleanenv -B {env['BIDS_DIR']}:/data:ro -B {env['OUTPUT_DIR']}:/out "
        f"-B {env['WORK_DIR']}:/work -B {model.parent}:/model:ro {env['SIF']} /data /out "
        "participant -w /work --participant-label 03 --model /model/compact.keras "
        "--nprocs 4 --mem 14400M --skip-bids-validation"
    )


def test_array_task_past_the_participants_fails(cluster, tmp_path):
    env, calls = cluster
    model = tmp_path / "m.keras"
    model.write_text("")
    env = {**env, "MODEL": str(model), "SLURM_ARRAY_TASK_ID": "5"}
    result = run(ROOT / "singularity" / "slurm_participants.sh", env=env)
    assert result.returncode == 64 and "only 5 participant(s)" in result.stderr
    assert not calls.exists()


def test_training_job_uses_the_gpu(cluster):
    env, calls = cluster
    env = {**env, "TRAIN_LABELS": "01 02", "TRAIN_ARGS": "--epochs 30"}
    result = run(ROOT / "singularity" / "slurm_train_gpu.sh", env=env)
    assert result.returncode == 0, result.stderr
    (call,) = lines(calls)
    assert call.startswith("apptainer run --nv --cleanenv ")
    assert call.endswith(
        "/data /out participant -w /work --train --participant-label 01 02 --nprocs 1 --epochs 30"
    )
    text = (ROOT / "singularity" / "slurm_train_gpu.sh").read_text(encoding="utf-8")
    assert "#SBATCH --gres=gpu:1" in text


def test_group_job(cluster):
    env, calls = cluster
    result = run(ROOT / "singularity" / "slurm_group.sh", env=env)
    assert result.returncode == 0, result.stderr
    (call,) = lines(calls)
    assert call.endswith(f"{env['SIF']} /data /out group -w /work --nprocs 1")


# --------------------------------------------------------------------------------------
# README


def test_readme_documents_the_containers():
    section = README.split("## Containers and HPC", 1)[1].split("\n## ", 1)[0]
    assert README.index("## Containers and HPC") < README.index("## The simulated dataset")
    for script in (ROOT / "singularity").glob("*.sh"):
        assert f"singularity/{script.name}" in section, script.name
    for needle in (
        "--network none",
        '-u "$(id -u):$(id -g)"',
        "--gpus all",
        "apptainer run --nv",
        "--cleanenv",
        "apptainer build",
        "singularity/bids-eeg2fmri.def",
        "--build-arg VARIANT=cuda",
        "--build-arg PIP_CERT=/run/secrets/ca-bundle",
        "--secret id=ca-bundle",
        "make container-test",
    ):
        assert needle in section, needle
    # the documented read-only flags are those the container test uses
    test_script = (ROOT / "tools" / "container_test.sh").read_text(encoding="utf-8")
    assert "--read-only --tmpfs /tmp --tmpfs /home/bids-eeg2fmri" in section
    assert "--read-only --tmpfs /tmp --tmpfs /home/bids-eeg2fmri" in test_script


def test_singularity_readme():
    text = (ROOT / "singularity" / "README.md").read_text(encoding="utf-8")
    for script in (ROOT / "singularity").glob("*.sh"):
        assert script.name in text, script.name
    for needle in (
        "apptainer build bids-eeg2fmri-0.1.0.sif docker://ghcr.io/bids-eeg2fmri/bids-eeg2fmri:0.1.0",
        "apptainer build --build-arg TAG=0.1.0 bids-eeg2fmri-0.1.0.sif singularity/",
        "apptainer run --nv --cleanenv",
        "-B /path/to/bids:/data:ro",
        "**Offline**",
        "singularity/submit_slurm.sh --train",
        "sbatch --array=",
    ):
        assert needle in text, needle

#!/usr/bin/env bash
# Create a Python 3.10 virtual environment holding the ORIGINAL package
# eeg-to-fmri==0.0.9 (Calhas & Henriques 2022) with the pins that make it import
# (docs: ORIGINAL.md section 7), for benchmarks/original/measure.py.
#
# Usage: benchmarks/original/setup.sh [VENV_DIR]
#   VENV_DIR   default: benchmarks/.original-venv (relative to the repository root)
#   PYTHON310  interpreter to use (default: python3.10, falling back to
#              /root/.pyenv/versions/3.10.13/bin/python)
# Idempotent: does nothing when the stamp file VENV_DIR/.eeg-to-fmri-0.0.9 exists.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv_dir="${1:-${repo_root}/benchmarks/.original-venv}"
stamp="${venv_dir}/.eeg-to-fmri-0.0.9"

if [[ -f "${stamp}" ]]; then
    echo "original package already installed in ${venv_dir} (stamp ${stamp})"
    exit 0
fi

python="${PYTHON310:-python3.10}"
if ! command -v "${python}" >/dev/null 2>&1 || ! "${python}" -c 'import sys' >/dev/null 2>&1; then
    if [[ -x /root/.pyenv/versions/3.10.13/bin/python ]]; then
        python=/root/.pyenv/versions/3.10.13/bin/python
    else
        echo "error: no Python 3.10 interpreter (set PYTHON310)" >&2
        exit 1
    fi
fi
version="$("${python}" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [[ "${version}" != "3.10" ]]; then
    echo "error: ${python} is Python ${version}, the original needs 3.10 (TF 2.9)" >&2
    exit 1
fi

"${python}" -m venv "${venv_dir}"
pip=("${venv_dir}/bin/python" -m pip)
"${pip[@]}" install --upgrade "pip<25" "setuptools<70" wheel

# The original declares the first seven pins; numpy, scipy and nibabel must be pinned
# too or it fails to import. scikit-learn and pandas are left unpinned by the original;
# the upper bounds keep versions that still support numpy 1.23.
"${pip[@]}" install \
    "eeg-to-fmri==0.0.9" \
    "tensorflow==2.9.0" \
    "matplotlib==3.5.3" \
    "mne==0.23.4" \
    "nilearn==0.7.0" \
    "tensorflow-probability==0.12.2" \
    "tensorflow-determinism==0.3.0" \
    "tensorflow-addons==0.19.0" \
    "numpy==1.23.5" \
    "scipy==1.10.1" \
    "nibabel==4.0.2" \
    "scikit-learn<1.4" \
    "pandas<2.1" \
    "protobuf<3.20"

"${venv_dir}/bin/python" -m pip freeze > "${venv_dir}/pip-freeze.txt"
touch "${stamp}"
echo "installed eeg-to-fmri==0.0.9 in ${venv_dir}"

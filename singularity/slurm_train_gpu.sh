#!/usr/bin/env bash
# SLURM job: train the synthesizer on a GPU with the Apptainer/Singularity image (the -cuda
# variant), and synthesize the training participants' runs. The model goes to
# OUTPUT_DIR/models/<preset>.keras (+ .json card), for slurm_participants.sh.
#
#   export SIF=bids-eeg2fmri-0.1.0-cuda.sif BIDS_DIR=... OUTPUT_DIR=... WORK_DIR=...
#   sbatch singularity/slurm_train_gpu.sh            # or through submit_slurm.sh
#
# Environment (exported by sbatch from the submitting shell):
#   SIF, BIDS_DIR, OUTPUT_DIR, WORK_DIR   required; WORK_DIR is shared by all the jobs
#   TRAIN_LABELS   participants to train on, space-separated (default: all of them)
#   TRAIN_ARGS     training options, e.g. "--epochs 30 --preset noddi-tafp"
#   EXTRA_ARGS     more bids-eeg2fmri options (for every level, e.g. "--skip-bids-validation")
#   APPTAINER      the command (default: apptainer, else singularity)
#SBATCH --job-name=bids-eeg2fmri-train
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=64G
#SBATCH --time=12:00:00
#SBATCH --output=bids-eeg2fmri-%x-%j.log
set -euo pipefail

for var in SIF BIDS_DIR OUTPUT_DIR WORK_DIR; do
    [[ -n ${!var:-} ]] || {
        echo "error: set $var (see the header of $0)" >&2
        exit 64
    }
done
apptainer=${APPTAINER:-$(command -v apptainer || command -v singularity || echo apptainer)}
read -r -a train <<<"${TRAIN_ARGS:-}"
read -r -a extra <<<"${EXTRA_ARGS:-}"
read -r -a labels <<<"${TRAIN_LABELS:-}"
selection=()
[[ ${#labels[@]} -eq 0 ]] || selection=(--participant-label "${labels[@]}")
mkdir -p "$OUTPUT_DIR" "$WORK_DIR"
cpus=${SLURM_CPUS_PER_TASK:-1}
memory=()
# 90 % of the job's memory (MB), so that the job is not killed at its limit
[[ -z ${SLURM_MEM_PER_NODE:-} ]] || memory=(--mem "$((SLURM_MEM_PER_NODE * 9 / 10))M")

set -x
exec "$apptainer" run --nv --cleanenv \
    -B "$BIDS_DIR:/data:ro" -B "$OUTPUT_DIR:/out" -B "$WORK_DIR:/work" \
    "$SIF" /data /out participant -w /work --train "${selection[@]}" \
    --nprocs "$cpus" "${memory[@]}" "${train[@]}" "${extra[@]}"

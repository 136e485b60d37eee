#!/usr/bin/env bash
# SLURM array job: one participant per task, with a trained model and the
# Apptainer/Singularity image. All tasks share OUTPUT_DIR and WORK_DIR; then run the group
# level (slurm_group.sh) once every task is done: submit_slurm.sh chains the three.
#
#   export SIF=bids-eeg2fmri-0.1.0.sif BIDS_DIR=... OUTPUT_DIR=... WORK_DIR=...
#   n=$(find "$BIDS_DIR" -mindepth 1 -maxdepth 1 -name 'sub-*' -type d | wc -l)
#   sbatch --array=0-$((n - 1)) singularity/slurm_participants.sh
#
# Environment (exported by sbatch from the submitting shell):
#   SIF, BIDS_DIR, OUTPUT_DIR, WORK_DIR   required
#   MODEL              the trained .keras file, its .json card beside it
#                      (default: OUTPUT_DIR/models/compact.keras)
#   PARTICIPANTS_FILE  the participants, one label per line; task i runs line i + 1
#                      (default: the sub-* folders of BIDS_DIR, sorted)
#   EXTRA_ARGS         more bids-eeg2fmri options
#   APPTAINER          the command (default: apptainer, else singularity)
#SBATCH --job-name=bids-eeg2fmri-participant
#SBATCH --cpus-per-task=4
#SBATCH --mem=16G
#SBATCH --time=02:00:00
#SBATCH --output=bids-eeg2fmri-%x-%A_%a.log
set -euo pipefail

for var in SIF BIDS_DIR OUTPUT_DIR WORK_DIR SLURM_ARRAY_TASK_ID; do
    [[ -n ${!var:-} ]] || {
        echo "error: set $var (see the header of $0; submit with sbatch --array)" >&2
        exit 64
    }
done
apptainer=${APPTAINER:-$(command -v apptainer || command -v singularity || echo apptainer)}
model=${MODEL:-$OUTPUT_DIR/models/compact.keras}
[[ -f $model ]] || {
    echo "error: no model at $model (train one with slurm_train_gpu.sh, or set MODEL)" >&2
    exit 66
}
if [[ -n ${PARTICIPANTS_FILE:-} ]]; then
    mapfile -t participants < <(grep -v '^[[:space:]]*$' "$PARTICIPANTS_FILE")
else
    mapfile -t participants < <(find "$BIDS_DIR" -mindepth 1 -maxdepth 1 -type d -name 'sub-*' \
        -printf '%f\n' | LC_ALL=C sort)
fi
label=${participants[$SLURM_ARRAY_TASK_ID]:-}
[[ -n $label ]] || {
    echo "error: task $SLURM_ARRAY_TASK_ID, but only ${#participants[@]} participant(s)" >&2
    exit 64
}
label=${label#sub-}
read -r -a extra <<<"${EXTRA_ARGS:-}"
mkdir -p "$OUTPUT_DIR" "$WORK_DIR"
cpus=${SLURM_CPUS_PER_TASK:-1}
memory=()
# 90 % of the job's memory (MB), so that the job is not killed at its limit
[[ -z ${SLURM_MEM_PER_NODE:-} ]] || memory=(--mem "$((SLURM_MEM_PER_NODE * 9 / 10))M")

set -x
exec "$apptainer" run --cleanenv \
    -B "$BIDS_DIR:/data:ro" -B "$OUTPUT_DIR:/out" -B "$WORK_DIR:/work" \
    -B "$(dirname "$model"):/model:ro" \
    "$SIF" /data /out participant -w /work --participant-label "$label" \
    --model "/model/$(basename "$model")" --nprocs "$cpus" "${memory[@]}" "${extra[@]}"

#!/usr/bin/env bash
# Submit the whole analysis to SLURM as three dependent jobs:
#   1. slurm_train_gpu.sh     train on the --train participants, on a GPU (skipped without --train)
#   2. slurm_participants.sh  array job, one task per other participant: apply the model
#   3. slurm_group.sh         the group level, once every task succeeded
#
#   export SIF=/path/bids-eeg2fmri-0.1.0.sif BIDS_DIR=/path/ds OUTPUT_DIR=/path/out WORK_DIR=/scratch/work
#   singularity/submit_slurm.sh --train 01 02 03 04 05 06 07 08   # train, then apply to the others
#   MODEL=/path/compact.keras singularity/submit_slurm.sh         # apply a trained model to all
#
# Options:
#   --train LABEL...   participants to train on (the others get the model)
#   --gpu-sif FILE     image for training (default: $GPU_SIF, else $SIF), e.g. the -cuda one
#   --max-parallel N   array tasks running at once (default 50)
# The environment of slurm_*.sh (TRAIN_ARGS, EXTRA_ARGS, MODEL, APPTAINER) goes with the
# jobs; sbatch options in SBATCH_* variables (e.g. SBATCH_PARTITION, SBATCH_ACCOUNT) too.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
usage() {
    sed -n '2,18s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
    exit 64
}
train=()
gpu_sif=${GPU_SIF:-}
max_parallel=50
while [[ $# -gt 0 ]]; do
    case $1 in
        --train)
            shift
            while [[ $# -gt 0 && $1 != --* ]]; do
                train+=("${1#sub-}")
                shift
            done
            [[ ${#train[@]} -gt 0 ]] || usage
            ;;
        --gpu-sif)
            gpu_sif=${2:?--gpu-sif needs a file}
            shift 2
            ;;
        --max-parallel)
            max_parallel=${2:?--max-parallel needs a number}
            shift 2
            ;;
        -h | --help) usage ;;
        *)
            echo "error: unknown option $1" >&2
            usage
            ;;
    esac
done
for var in SIF BIDS_DIR OUTPUT_DIR WORK_DIR; do
    [[ -n ${!var:-} ]] || {
        echo "error: set $var (see the header of $0)" >&2
        exit 64
    }
done
export SIF BIDS_DIR OUTPUT_DIR WORK_DIR
mkdir -p "$OUTPUT_DIR" "$WORK_DIR/slurm"

# Every participant of the dataset, then those the array job applies the model to.
mapfile -t everyone < <(find "$BIDS_DIR" -mindepth 1 -maxdepth 1 -type d -name 'sub-*' \
    -printf '%f\n' | sed 's/^sub-//' | LC_ALL=C sort)
[[ ${#everyone[@]} -gt 0 ]] || {
    echo "error: no sub-* folder in $BIDS_DIR" >&2
    exit 66
}
participants_file=$WORK_DIR/slurm/participants.txt
for label in "${train[@]}"; do
    printf '%s\n' "${everyone[@]}" | grep -qx -- "$label" || {
        echo "error: --train $label: no sub-$label in $BIDS_DIR" >&2
        exit 64
    }
done
printf '%s\n' "${everyone[@]}" | grep -vxF -f <(printf '%s\n' "${train[@]}") \
    >"$participants_file" || true
n=$(wc -l <"$participants_file")
export PARTICIPANTS_FILE=$participants_file

dependency=()
if [[ ${#train[@]} -gt 0 ]]; then
    export TRAIN_LABELS="${train[*]}"
    # the model the training writes: OUTPUT_DIR/models/<preset>.keras
    read -r -a train_args <<<"${TRAIN_ARGS:-}"
    preset=compact
    for i in "${!train_args[@]}"; do
        [[ ${train_args[i]} != --preset ]] || preset=${train_args[i + 1]:-compact}
    done
    export MODEL=${MODEL:-$OUTPUT_DIR/models/$preset.keras}
    train_id=$(SIF=${gpu_sif:-$SIF} sbatch --parsable "$here/slurm_train_gpu.sh")
    train_id=${train_id%%;*}
    echo "training: job $train_id (${#train[@]} participants)"
    dependency=(--dependency "afterok:$train_id")
fi
if [[ $n -gt 0 ]]; then
    array_id=$(sbatch --parsable "${dependency[@]}" --array "0-$((n - 1))%$max_parallel" \
        "$here/slurm_participants.sh")
    array_id=${array_id%%;*}
    echo "participants: array job $array_id ($n tasks, list in $participants_file)"
    dependency=(--dependency "afterok:$array_id")
fi
group_id=$(sbatch --parsable "${dependency[@]}" "$here/slurm_group.sh")
echo "group: job ${group_id%%;*}"

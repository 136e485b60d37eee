#!/usr/bin/env bash
# SLURM job: the group level, once every participant is done (submit it with
# --dependency=afterok:<array job id>, as submit_slurm.sh does).
#
#   export SIF=bids-eeg2fmri-0.1.0.sif BIDS_DIR=... OUTPUT_DIR=... WORK_DIR=...
#   sbatch --dependency=afterok:<array job id> singularity/slurm_group.sh
#
# Environment: SIF, BIDS_DIR, OUTPUT_DIR, WORK_DIR (required), EXTRA_ARGS, APPTAINER.
#SBATCH --job-name=bids-eeg2fmri-group
#SBATCH --cpus-per-task=2
#SBATCH --mem=8G
#SBATCH --time=00:30:00
#SBATCH --output=bids-eeg2fmri-%x-%j.log
set -euo pipefail

for var in SIF BIDS_DIR OUTPUT_DIR WORK_DIR; do
    [[ -n ${!var:-} ]] || {
        echo "error: set $var (see the header of $0)" >&2
        exit 64
    }
done
apptainer=${APPTAINER:-$(command -v apptainer || command -v singularity || echo apptainer)}
read -r -a extra <<<"${EXTRA_ARGS:-}"

set -x
exec "$apptainer" run --cleanenv \
    -B "$BIDS_DIR:/data:ro" -B "$OUTPUT_DIR:/out" -B "$WORK_DIR:/work" \
    "$SIF" /data /out group -w /work --nprocs "${SLURM_CPUS_PER_TASK:-1}" "${extra[@]}"

#!/bin/sh
# Slurm epilog: the job's GPUs are free again; removes its id from their mapping files
# (a file left empty is removed: the GPU has no job).
set -eu
DIR="${IRONSIGHT_JOB_MAP_DIR:-/run/ironsight/job-map}"
GPUS="${SLURM_JOB_GPUS:-${GPU_DEVICE_ORDINAL:-${CUDA_VISIBLE_DEVICES:-}}}"
[ -n "${SLURM_JOB_ID:-}" ] && [ -n "$GPUS" ] || exit 0
for gpu in $(echo "$GPUS" | tr ',' ' '); do
    [ -f "$DIR/$gpu" ] || continue
    grep -vx "$SLURM_JOB_ID" "$DIR/$gpu" > "$DIR/.$gpu.$$" || true
    if [ -s "$DIR/.$gpu.$$" ]; then mv "$DIR/.$gpu.$$" "$DIR/$gpu"; else rm -f "$DIR/.$gpu.$$" "$DIR/$gpu"; fi
done

#!/bin/sh
# Slurm prolog: record which job runs on which GPU for ironsight-agent --jobs.mapping-dir
# (dcgm-exporter's format: a file per GPU index holding job ids, one per line).
# Install as Prolog= (or in prolog.d/) in slurm.conf; the epilog beside it undoes it.
set -eu
DIR="${IRONSIGHT_JOB_MAP_DIR:-/run/ironsight/job-map}"
GPUS="${SLURM_JOB_GPUS:-${GPU_DEVICE_ORDINAL:-${CUDA_VISIBLE_DEVICES:-}}}"
[ -n "${SLURM_JOB_ID:-}" ] && [ -n "$GPUS" ] || exit 0
mkdir -p "$DIR"
for gpu in $(echo "$GPUS" | tr ',' ' '); do
    case "$gpu" in *[!0-9.]*) continue ;; esac  # an index (or index.mig), nothing else
    # Written aside and renamed, so the agent never reads half a file.
    { cat "$DIR/$gpu" 2>/dev/null || true; echo "$SLURM_JOB_ID"; } | sort -u > "$DIR/.$gpu.$$"
    mv "$DIR/.$gpu.$$" "$DIR/$gpu"
done

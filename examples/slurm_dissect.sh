#!/bin/bash
# Dissection on several hosts under SLURM: one process per host, each using every local GPU.
#
#   sbatch examples/slurm_dissect.sh                     # defaults below
#   OUTDIR=/shared/out/church sbatch --nodes=4 examples/slurm_dissect.sh --layers layer4,layer7
#
# OUTDIR must be on a file system every node sees (the cache and the per-process checkpoints
# live there). JAX reads the coordinator, process count and process id from SLURM's
# environment (gdjax.distributed.initialize() with no arguments). Rerunning the same job after
# a failure, a preemption or a cancelled node resumes where each process stopped; the results
# are byte-identical to one process on one device.
#SBATCH --job-name=gdjax-dissect
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=16
#SBATCH --time=01:00:00
#SBATCH --output=gdjax-dissect-%j.log
set -euo pipefail
OUTDIR=${OUTDIR:-out/dissect-slurm}
export GDJAX_PROGRESS=${GDJAX_PROGRESS:-0}  # plain lines in the job log
srun python -m gdjax.launch examples/dissect.py \
    --generator "${GENERATOR:-demo}" --segmenter "${SEGMENTER:-demo}" \
    --samples "${SAMPLES:-10000}" --outdir "$OUTDIR" "$@"

#!/bin/bash
# Fold a large FASTA file (or a directory of FASTA files) as a SLURM job array.
#
#   sbatch --array=1-16 inference/slurm_array.sh targets.fasta out/
#   ... when all tasks are done:
#   simplefold predict targets.fasta -o out/ --merge-manifests
#
# Each array task folds shard I of N (deterministic split by target name), writes its own
# out/manifest.shard-I-of-N.jsonl and skips targets already complete, so a failed or pre-empted
# task can simply be resubmitted (sbatch --array=7 ...). Extra arguments after OUT are passed on
# to `simplefold predict` (e.g. --config inference/ensemble.json).
#SBATCH --job-name=simplefold
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=64G
#SBATCH --time=24:00:00
#SBATCH --output=slurm-%A_%a.out
set -euo pipefail

INPUT=${1:?usage: sbatch --array=1-N slurm_array.sh INPUT OUT [predict options...]}
OUT=${2:?usage: sbatch --array=1-N slurm_array.sh INPUT OUT [predict options...]}
shift 2
I=${SLURM_ARRAY_TASK_ID:?run me with sbatch --array=1-N}
N=${SLURM_ARRAY_TASK_COUNT:-${SLURM_ARRAY_TASK_MAX:?}}

# Weights are downloaded once into the shared cache (SIMPLEFOLD_CACHE) and then used offline by
# every task: run `simplefold weights download simplefold_100M` (and esm2_3B, plddt) beforehand.
simplefold predict "$INPUT" -o "$OUT" --shard "$I/$N" --offline --no-progress "$@"

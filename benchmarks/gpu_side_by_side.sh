#!/usr/bin/env bash
# One prepared side-by-side run on a GPU machine: official PyTorch SimpleFold vs simplefold (JAX).
#
#   bash benchmarks/gpu_side_by_side.sh OUT_DIR [--smoke] [more options of benchmarks/gpu_side_by_side.py]
#
# Writes OUT_DIR/gpu_side_by_side.{json,md,log}; at most about 8 minutes on an H200 (--budget-s 450
# covers the whole run; cases that would not fit are skipped and listed).
#
# On this workplace's H200 (device tool), after `bash benchmarks/gpu_carry.sh` here:
#
#   run(command="bash benchmarks/gpu_side_by_side.sh $OUT", carry=[".official", ".whl"], timeout_s=600)
#
# .official/ holds src/simplefold of the official tree (+ COMMIT); .whl/ the wheels the GPU
# machine lacks (hydra-core, omegaconf, antlr4-python3-runtime, mashumaro, typing_extensions). Both
# are git-ignored.
# Environment: PYTHON (default: .venv/bin/python if present, else python3), SIMPLEFOLD_OFFICIAL_SRC,
# SIMPLEFOLD_OFFICIAL_PYTHON (default: PYTHON).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ]; then
  sed -n '2,17p' "$0"; exit 2
fi
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
# carried wheels: install only what this Python lacks, into a private folder
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1 && ! "$PY" -c 'import hydra, omegaconf, mashumaro' >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/sbs_site .whl/*.whl
  export PYTHONPATH=/tmp/sbs_site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1
exec "$PY" benchmarks/gpu_side_by_side.py "$@"

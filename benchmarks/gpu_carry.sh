#!/usr/bin/env bash
# Prepare, on this machine, what benchmarks/gpu_side_by_side.sh needs to carry to the GPU machine:
#
#   bash benchmarks/gpu_carry.sh [OFFICIAL_TREE]      (default: $SIMPLEFOLD_OFFICIAL_SRC, else
#                                                      ~/.cache/simplefold-official/src)
#
# .official/  src/simplefold of the extracted apple/ml-simplefold tree (~1 MB) + its COMMIT file
# .whl/       wheels for Python 3.12 the GPU image lacks (~0.5 MB in all):
#               hydra-core 1.3.8, omegaconf 2.3.1, mashumaro 3.23 (downloaded, pure Python),
#               typing_extensions 4.16.0 (mashumaro needs >= 4.14; the image's version is unknown)
#               and antlr4-python3-runtime 4.9.3 (sdist only: built here into a py3-none-any wheel).
#             Not carried: ihm, modelcif, rdkit (the official structure writers, ~32 MB; the sampler
#             imports but never calls them: placeholders stand in, see simplefold.devtools.official)
#             and dm-tree (nothing the benchmark imports needs it).
# Both folders are git-ignored (.gitignore), so they travel only when `carry` names them:
#
#   run(command="bash benchmarks/gpu_side_by_side.sh $OUT", carry=[".official", ".whl"], timeout_s=600)
set -euo pipefail
cd "$(dirname "$0")/.."
TREE=${1:-${SIMPLEFOLD_OFFICIAL_SRC:-$HOME/.cache/simplefold-official/src}}
if [ -f "$TREE/src/simplefold/model/torch/architecture.py" ]; then PKG=$TREE/src/simplefold
elif [ -f "$TREE/model/torch/architecture.py" ]; then PKG=$TREE
else echo "not an apple/ml-simplefold tree: $TREE"; exit 1; fi
rm -rf .official && mkdir -p .official/src
cp -r "$PKG" .official/src/simplefold
find .official -name __pycache__ -prune -exec rm -rf {} +
for c in "$TREE/COMMIT" "$PKG/../../COMMIT"; do [ -f "$c" ] && { cp "$c" .official/COMMIT; break; }; done
echo "official tree: $(du -sh .official | cut -f1) in .official ($(cat .official/COMMIT 2>/dev/null || echo 'commit unknown'))"
mkdir -p .whl
PLAT="--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $PLAT -d .whl \
  hydra-core==1.3.8 omegaconf==2.3.1 mashumaro==3.23 typing_extensions==4.16.0
ls .whl/antlr4_python3_runtime-4.9.3-*.whl >/dev/null 2>&1 || python3 -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3
ls -l .whl
echo "wheels: $(du -ch .whl/*.whl | tail -1 | cut -f1) in .whl"

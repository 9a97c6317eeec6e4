#!/usr/bin/env bash
# The prepared GPU check of issue "Performance" (scripts/gpu_check.py says what it measures), in two steps:
#
#   bash scripts/gpu_check.sh --prepare [DATA_DIR]   # here, with PyPI reachable: fill the ignored folder .gpu/ with
#                                                    # the wheels a bare GPU machine lacks and the MNIST IDX files
#   bash scripts/gpu_check.sh OUT_DIR [--parts=1,3]  # there (the repository with .gpu/ beside it): ~8 minutes
#
# The GPU machine this project can borrow has Python 3.12 with jax, flax, optax, chex, orbax, tqdm and pandas but no
# ml-collections (nor mujoco for the RL part), cannot download anything, and receives only the working tree: so the
# package is put on PYTHONPATH (nothing installed), the missing pure-Python and manylinux wheels come from .gpu/wheels
# and the data from .gpu/mnist. With the device tool: run(command='bash scripts/gpu_check.sh $OUT', carry=['.gpu']).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--prepare" ]; then
  data_dir=${2:-../shared/data/mnist}
  rm -rf .gpu && mkdir -p .gpu/wheels .gpu/mnist
  cp "$data_dir"/*-ubyte* .gpu/mnist/
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform any -d .gpu/wheels \
    ml-collections mujoco==4.0.0 mujoco-core==4.0.0 mujoco-studio==4.0.0 mujoco-mjx==3.17.0 glfw pyopengl trimesh
  du -sh .gpu
  exit 0
fi

out=${1:?usage: bash scripts/gpu_check.sh OUT_DIR (or --prepare)}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/gpu_check_site \
  .gpu/wheels/*.whl
export PYTHONPATH="$PWD:/tmp/gpu_check_site" PYTHONUNBUFFERED=1 PLASTICITY_JAX_DATA_DIR="$PWD/.gpu/mnist"
export XLA_PYTHON_CLIENT_PREALLOCATE=false
python3 scripts/gpu_check.py --out "$out" "${@:2}"   # e.g. --parts=1,3

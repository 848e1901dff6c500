#!/usr/bin/env bash
# Where pip works: fetch into .whl/ the wheels bench/gpu_check.sh needs on the GPU host, whose
# image (Python 3.12, CUDA 13, numba-cuda, cupy, pyarrow, typer, rich, absl-py) lacks
# them, and protobuf at the version ortools needs. The versions are the ones this project is
# tested with. About 35 MB (ignored by git); the device call carries .whl.
set -euo pipefail
cd "$(dirname "$0")/.."
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
WHEELS=(pydantic==2.14.4 pydantic-core==2.50.5 annotated-types typing-inspection==0.4.5 tomli-w
        ortools==9.15.6755 immutabledict==4.3.1 highspy==1.16.0 protobuf==6.33.6)
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${PLATFORMS[@]}" -d .whl "${WHEELS[@]}"
ls -la .whl

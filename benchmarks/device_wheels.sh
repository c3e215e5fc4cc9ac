#!/usr/bin/env bash
# Run here (with PyPI) before benchmarks/gpu_check.sh: the GPU machine's image has PyTorch but not jsonschema,
# which diga's config validation needs, and it cannot download. The wheels land in .whl/ (ignored by git);
# the device call carries them: carry=[".whl"].
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==0.30.0
ls .whl

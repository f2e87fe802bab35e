#!/usr/bin/env bash
# The GPU check of issue 20 on a CUDA machine: installs the CUDA builds into .venv-gpu (docs/operations.md
# "Installing against CUDA"), then runs every part of benchmarks/gpu_check.py and writes its JSON + PNG to
# benchmarks/results/. About 8 minutes on one H100 after the install.
#
#   benchmarks/gpu_check.sh                       # install, then check
#   SKIP_INSTALL=1 benchmarks/gpu_check.sh        # the active environment already has the CUDA builds
#   CUDA_TAG=cu126 benchmarks/gpu_check.sh        # another CUDA wheel index (default cu128)
#   benchmarks/gpu_check.sh --parts smoke triton  # arguments go to python -m benchmarks.gpu_check
#
# Exit status: the check's (0 exactly when no part failed), or the failing install step's.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${SKIP_INSTALL:-0}" != 1 ]]; then
  python3 -m venv .venv-gpu
  # shellcheck disable=SC1091
  source .venv-gpu/bin/activate
  pip install --quiet --disable-pip-version-check torch==2.13.0 fbgemm-gpu==1.8.0 \
    --index-url "https://download.pytorch.org/whl/${CUDA_TAG:-cu128}"
  pip install --quiet --disable-pip-version-check -e ".[dev]"
fi
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'torch sees no CUDA device')"
python -m benchmarks.gpu_check --device cuda --out benchmarks/results "$@"

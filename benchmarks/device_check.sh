#!/usr/bin/env bash
# The Triton kernels compiled on a CUDA GPU and checked against the PyTorch references (pytest tests/ops), on a
# machine with PyTorch and Triton but without FBGEMM or TorchRec and without a network to install them (a bare
# PyTorch image). FBGEMM's two jagged matmuls that the references call come from benchmarks/device_shim (plain
# torch, checked against FBGEMM in tests/benchmarks/test_device_shim.py); the two tests that build the sharded
# model need TorchRec and are left out. Where the CUDA stack installs, benchmarks/gpu_check.sh checks the rest.
#
#   benchmarks/device_check.sh                # every op test on the GPU
#   benchmarks/device_check.sh -x -k gsu      # arguments go to pytest
#
# Writes the versions and pytest's JUnit XML under ${OUT:-runs/device_check}. Exit status: pytest's.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'torch sees no CUDA device')"
out="${OUT:-runs/device_check}"
mkdir -p "$out"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())" \
  | tee "$out/versions.txt"
PYTHONPATH="benchmarks/device_shim:.${PYTHONPATH:+:$PYTHONPATH}" TRITON_INTERPRET=0 python3 -m pytest -q -p no:cacheprovider \
  tests/ops \
  --deselect tests/ops/test_triton_parity.py::test_model_forward_and_gradients_match_with_triton_kernels \
  --deselect tests/ops/test_kernel.py::test_everything_imports_and_runs_without_triton \
  --junitxml "$out/ops.xml" "$@"

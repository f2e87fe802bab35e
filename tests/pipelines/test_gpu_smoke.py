"""GPU smoke tests: the CUDA training path end to end (skipped without CUDA; CI has none).

What they cover that the CPU suite cannot: the prefetch train pipeline over ``fused_uvm_caching`` tables
(cache rows prefetched on a side stream), bf16 autocast of the dense part, fp16 table storage, the sequence
lookup (the CUDA default), the op kernel ``model.op_kernel auto`` picks on CUDA (Triton when installed),
and a resumed run on the GPU. Run them on a GPU machine with compiled Triton kernels (``tests/conftest.py``
turns the CPU interpreter on unless told otherwise)::

    TRITON_INTERPRET=0 python -m pytest tests/pipelines/test_gpu_smoke.py tests/ops -v
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from dare_rec.pipelines import evaluate, train
from tests.conftest import TINY_PRESET

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (GPU smoke test)")

GPU_RECIPE = ["--train.pipeline", "prefetch", "--sharding.default.compute_kernel", "fused_uvm_caching",
              "--sharding.default.cache_load_factor", "0.2", "--sharding.default.data_type", "fp16",
              "--train.bf16", "true", "--model.op_kernel", "auto", "--train.dist_timeout_s", "120"]


def events(run_dir: Path):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_prefetch_pipeline_bf16_uvm_caching_trains_evaluates_and_resumes(tiny_data, tmp_path):
    out = tmp_path / "run"
    args = ["--config", str(TINY_PRESET), "--data.path", str(tiny_data), "--train.output_dir", str(out),
            *GPU_RECIPE]
    assert train.main(args + ["--train.max_steps", "6", "--train.checkpoint_every", "3"]) == 0
    start = next(e for e in events(out) if e["event"] == "start")
    assert start["config"]["sharding"]["lookup"] == "sequence"
    assert "fused_uvm_caching" in start["plan"]
    losses = [e["loss"] for e in events(out) if e["event"] == "train"]
    assert losses and all(math.isfinite(x) for x in losses)
    # The same command with a larger budget continues from step 6 instead of starting over.
    assert train.main(args + ["--train.max_steps", "10"]) == 0
    resumed = [e for e in events(out) if e["event"] == "resume"]
    assert resumed and resumed[0]["step"] == 6
    assert evaluate.main(["--checkpoint", str(out), "--split", "test", "--output", str(out / "eval-test.json")]) == 0
    report = json.loads((out / "eval-test.json").read_text())
    assert 0.0 <= report["auc"] <= 1.0 and report["samples"] > 0


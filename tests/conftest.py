"""Shared fixtures: the tiny preset, a tiny synthetic dataset generated once per test session, and a tiny
training run with two checkpoints."""

from __future__ import annotations

import os
from pathlib import Path

# Triton picks compiled or interpreted kernels when triton is first imported (torchrec imports it), so the CPU
# interpreter that runs the Triton parity tests (tests/ops/test_triton_parity.py) must be switched on before any
# test module loads. TRITON_INTERPRET=0 in the environment keeps compiled kernels (the GPU parity run).
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest

from dare_rec.config import Config, load_config
from dare_rec.data.synthetic import generate

REPO = Path(__file__).resolve().parents[1]
TINY_PRESET = REPO / "configs" / "tiny.yaml"


def tiny_config(*overrides: str) -> Config:
    """The tiny preset with ``--section.field value`` overrides."""
    return load_config(TINY_PRESET, list(overrides))


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny preset's synthetic dataset (histories of length 0..40, some empty)."""
    root = tmp_path_factory.mktemp("tiny_data")
    generate(tiny_config().synthetic, root, progress=False)
    return root


# The tiny run: 2 steps, a checkpoint after each (step-00000001, and step-00000002, which is also the best).
TINY_RUN_ARGS = ("--train.max_steps", "2", "--train.checkpoint_every", "1", "--train.dist_timeout_s", "60")


def tiny_run_args(data: Path, out: Path, *extra: str) -> list:
    """``dare-rec train`` arguments of the tiny run on ``data`` into ``out`` (rerun them to resume it)."""
    return ["--config", str(TINY_PRESET), "--data.path", str(data), "--train.output_dir", str(out), *TINY_RUN_ARGS,
            *extra]


@pytest.fixture(scope="session")
def tiny_run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The output folder of the tiny run (copy it before changing it)."""
    from dare_rec.pipelines import train  # imports torchrec: only when a test needs a run

    out = tmp_path_factory.mktemp("tiny_run") / "run"
    assert train.main(tiny_run_args(tiny_data, out)) == 0
    return out

"""Shared fixtures: the tiny preset and a tiny synthetic dataset generated once per test session."""

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

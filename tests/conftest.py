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


# Two target objectives planted in the tiny world (docs/side-info.md §3.4): target_objective 1 or 2 per sample.
OBJECTIVES = ("--synthetic.num_objectives", "2", "--synthetic.objective_decays", "[2, 50]")


@pytest.fixture(scope="session")
def tiny_objective_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny preset's dataset with two target objectives (``OBJECTIVES``): the same world as ``tiny_data``
    plus a ``target_objective`` column, each objective with its own position decay."""
    root = tmp_path_factory.mktemp("tiny_objective_data")
    generate(tiny_config(*OBJECTIVES).synthetic, root, progress=False)
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


@pytest.fixture(scope="session")
def tiny_side_data(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny dataset with side columns added, as prepare writes them for Tmall: hist_btype (4 behavior
    types), hist_seller/hist_brand and target_seller/target_brand; meta.json lists them with their vocabularies
    and the files' new hashes. Its timestamps (synthetic: every behavior before its target) give gaps >= 1."""
    import json
    import shutil

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from dare_rec.data import schema

    root = tmp_path_factory.mktemp("tiny_side_data") / "data"
    shutil.copytree(tiny_data, root)
    meta = json.loads((root / "meta.json").read_text())
    for split in schema.SPLITS:
        for path in schema.split_files(root, split):
            table = pq.read_table(path)
            hist = table["hist_item"].combine_chunks()
            flat, target = pc.list_flatten(hist).to_numpy(), table["target_item"].to_numpy()

            def as_list(values):
                return pa.ListArray.from_arrays(hist.offsets, pa.array(values, pa.int64()))

            for name, values in ((schema.HIST_BTYPE, as_list(flat % 4 + 1)),
                                 (schema.HIST_SELLER, as_list(flat % 7 + 1)), (schema.HIST_BRAND, as_list(flat % 5 + 1)),
                                 (schema.TARGET_SELLER, target % 7 + 1), (schema.TARGET_BRAND, target % 5 + 1)):
                table = table.append_column(pa.field(name, schema.OPTIONAL_COLUMNS[name], nullable=False),
                                            pa.array(values, schema.OPTIONAL_COLUMNS[name]))
            pq.write_table(table, path, row_group_size=256)
            meta["files"][split][str(path.relative_to(root))] = schema.sha256_file(path)
    meta["columns"] += [schema.HIST_BTYPE, schema.HIST_SELLER, schema.HIST_BRAND, schema.TARGET_SELLER,
                        schema.TARGET_BRAND]
    meta["params"].update(behavior_types=["pv", "cart", "fav", "buy"], num_sellers=8, num_brands=6)
    (root / "meta.json").write_text(json.dumps(meta))
    return root

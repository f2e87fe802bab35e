"""``sharding.bounds_check``: FBGEMM's check of the looked-up ids, FATAL when on and NONE when off, in both lookup
forms; with it on, an id past its table fails the step instead of reading memory past the table."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from fbgemm_gpu.split_table_batched_embeddings_ops_common import BoundsCheckMode
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from dare_rec.data import schema
from dare_rec.data.parquet import ParquetBatchReader
from dare_rec.data.schema import DatasetMeta
from dare_rec.modules.model import build_model
from dare_rec.optim import apply_sparse_optimizer
from dare_rec.sharding.planner import shard_model
from tests.conftest import tiny_config
from tests.multiprocess import run_on_ranks

CPU = torch.device("cpu")


def _with_item_id(batch, item_id: int):
    """``batch`` with its first history item replaced by ``item_id``."""
    features = batch.sparse_features
    values = features.values().clone()
    values[features.offset_per_key()[features.keys().index(schema.HIST_ITEM)]] = item_id
    kjt = KeyedJaggedTensor(keys=features.keys(), values=values, lengths=features.lengths(),
                            length_per_key=features.length_per_key())
    return dataclasses.replace(batch, sparse_features=kjt)


def _lookups(rank, world_size, data_root, lookup, bounds_check):
    cfg = tiny_config("--data.path", str(data_root), "--sharding.lookup", lookup,
                      "--sharding.bounds_check", str(bounds_check).lower())
    meta = DatasetMeta.read(data_root)
    model = build_model(cfg, meta.num_items, meta.num_categories, CPU, CPU)
    apply_sparse_optimizer(model, cfg.train, CPU)
    model = shard_model(model, cfg, CPU, world_size=1, local_world_size=1)
    expected = BoundsCheckMode.FATAL if bounds_check else BoundsCheckMode.NONE
    # the FBGEMM kernels behind the sharded collections' lookups (TorchRec keeps them outside the module tree)
    kernels = [emb._emb_module for m in model.modules() for lookup in getattr(m, "_lookups", ())
               for emb in lookup._emb_modules]
    modes = {kernel.bounds_check_mode_int for kernel in kernels}
    assert len(kernels) == 2, kernels  # the attention and the representation collections
    assert modes == {expected.value}, modes
    batch = next(iter(ParquetBatchReader(data_root, "train", 16, cfg.data.max_len)))
    assert batch.sparse_features[schema.HIST_ITEM].values().numel() > 0
    model.eval()
    with torch.no_grad():
        model(_with_item_id(batch, meta.num_items - 1))  # the table's last row
        if bounds_check:
            with pytest.raises(RuntimeError, match="idx < num_rows"):
                model(_with_item_id(batch, meta.num_items))


@pytest.mark.parametrize("lookup", ["singleton_bags", "sequence"])
@pytest.mark.parametrize("bounds_check", [True, False])
def test_bounds_check_sets_fbgemm_mode_and_fails_on_ids_past_the_table(tiny_data, lookup, bounds_check):
    run_on_ranks(_lookups, 1, tiny_data, lookup, bounds_check, timeout=120)

"""2-rank gloo: the sharded model's forward and one training step match the unsharded model.

Each rank feeds its half of a global batch to DistributedModelParallel; the reference is the plain model on
the whole batch. Loss gradients of the reference (mean over 2B samples) equal the ranks' averaged gradients
(mean over B per rank, averaged across ranks for dense and embedding parameters alike), so after one step
the updated weights must agree: embeddings with FBGEMM's fused optimizer (row-wise Adagrad, Adagrad or SGD),
with the row-sparse Adam of dare_rec.cpu_adam (pooled with a different batch stride per rank, and unpooled), or
replicated and trained by the dense Adam (dense_adam); dense parts with Adam (and its coupled weight decay for
train.dense_l2). Every table layout is covered.
"""

from __future__ import annotations

import copy
from functools import partial

import pytest
import torch
from torch.distributed._shard.sharded_tensor import ShardedTensor

from dare_rec.data.parquet import ParquetBatchReader, semantic_vocabulary
from dare_rec.data.schema import DatasetMeta
from dare_rec.modules.model import build_model
from dare_rec.modules.tables import table_names
from dare_rec.optim import apply_sparse_optimizer, build_optimizer, takes_l2
from dare_rec.sharding.planner import plan_rows, shard_model
from tests.conftest import tiny_config
from tests.multiprocess import run_on_ranks

CPU = torch.device("cpu")
LOCAL_BATCH = 48


def local_shards(state):
    """(key, row offset, col offset, tensor) of every parameter block this rank holds."""
    for key, value in state.items():
        if isinstance(value, ShardedTensor):
            for shard in value.local_shards():
                (r, c), t = shard.metadata.shard_offsets, shard.tensor
                yield key, r, c, t
        else:
            yield key, 0, 0, value


def full_block(tensor, r, c, like):
    return tensor[r:r + like.size(0), c:c + like.size(1)] if like.dim() == 2 else tensor


def sparse_step_(optimizer, weight, grad, lr, eps, column_splits):
    """One table step from zero state, per column shard (each column shard is its own table in FBGEMM, with
    its own state). EXACT_ROWWISE_ADAGRAD: state = mean(g^2) over the shard's columns, w -= lr * g /
    (sqrt(state) + eps); EXACT_ADAGRAD: the same per element; EXACT_SGD: w -= lr * g; Adam's first step (the
    row's count is 1, so the bias-corrected moments are g and g^2): w -= lr * g / (|g| + eps). Rows the batch
    did not touch are left alone."""
    start = 0
    for width in column_splits:
        g = grad[:, start:start + width]
        touched = (g != 0).any(dim=1, keepdim=True)
        if optimizer == "sgd":
            update = lr * g
        elif optimizer == "adam":
            update = lr * g / (g.abs() + eps)
        else:
            state = (g * g).mean(dim=1, keepdim=True) if optimizer == "rowwise_adagrad" else g * g
            update = lr * g / (state.sqrt() + eps)
        weight[:, start:start + width] -= torch.where(touched, update, torch.zeros_like(g))
        start += width


def _parity(rank, world_size, data_root, variant, lookup, sharding_type, sparse_optimizer, dense_l2,
            side_fields="[]"):
    torch.set_num_threads(1)
    # min_partition 8 splits the 16-wide representation tables into two column shards
    cfg = tiny_config("--data.path", str(data_root), "--model.variant", variant, "--sharding.lookup", lookup,
                      "--sharding.default.sharding_type", sharding_type or "null",
                      "--sharding.default.min_partition", "8", "--train.sparse_optimizer", sparse_optimizer,
                      "--train.sparse_lr", "0.05", "--train.dense_l2", str(dense_l2),
                      "--model.side_fields", side_fields)
    meta = DatasetMeta.read(data_root)
    reader = partial(ParquetBatchReader, data_root, max_len=cfg.data.max_len, side_fields=cfg.model.read_side_fields)
    local = list(reader("train", LOCAL_BATCH))[rank]
    whole = next(iter(reader("train", LOCAL_BATCH * world_size)))
    vocabulary = semantic_vocabulary(meta, data_root)

    torch.manual_seed(0)
    reference = build_model(cfg, meta.num_items, meta.num_categories, CPU, CPU, side_vocabulary=vocabulary)
    model = build_model(cfg, meta.num_items, meta.num_categories, torch.device("meta"), CPU,
                        side_vocabulary=vocabulary)
    apply_sparse_optimizer(model, cfg.train, CPU)
    dmp = shard_model(model, cfg, CPU, world_size, world_size)
    ref_state = reference.state_dict()
    with torch.no_grad():
        for key, r, c, block in local_shards(dmp.state_dict()):
            block.copy_(full_block(ref_state[key], r, c, block))

    # eval forward (decoupled layouts look up representations of the selected behaviors only, through a
    # KJT built in forward) and training forward: this rank's logits equal the reference's on its samples
    mine = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
    dmp.eval()
    reference.eval()
    with torch.no_grad():
        torch.testing.assert_close(dmp(local)[1][1], reference(whole)[1][1][mine], atol=1e-5, rtol=1e-5)
        # ranks may evaluate batches of different sizes (a last partial batch, a padding batch)
        uneven = next(iter(reader("val", LOCAL_BATCH - 40 * rank)))
        torch.testing.assert_close(dmp(uneven)[1][1], reference(uneven)[1][1], atol=1e-5, rtol=1e-5)
    dmp.train()
    reference.train()
    loss, (_, logits, _) = dmp(local)
    ref_loss, (_, ref_logits, _) = reference(whole)
    torch.testing.assert_close(logits, ref_logits[mine], atol=1e-5, rtol=1e-5)

    # one training step on both; compare the updates (after - before), which are small next to the weights
    before = copy.deepcopy(reference.state_dict())
    optimizer = build_optimizer(dmp, cfg.train)
    loss.backward()
    optimizer.step()
    ref_loss.backward()
    replicated = sparse_optimizer == "dense_adam"
    shards = [] if replicated else plan_rows(dmp.plan, cfg)
    if sharding_type == "column_wise":
        wide = next(s.table for s in shards if s.table.startswith("item_rep") or s.table == "item_shared")
        assert column_splits(shards, wide) == [8, 8], "column-wise plan did not split the table"
    tables = set(table_names(cfg.model))
    dense = {n: p for n, p in reference.named_parameters() if not any(f".{t}." in n for t in tables)}
    decayed = [p for n, p in dense.items() if takes_l2(n)]
    rest = [p for n, p in dense.items() if not takes_l2(n)]
    table_params = [p for n, p in reference.named_parameters() if any(f".{t}." in n for t in tables)]
    # dense_adam: the tables are replicated and stepped by the dense Adam, at sparse_lr and without L2
    groups = [{"params": decayed, "weight_decay": 2 * dense_l2}, {"params": rest}]
    torch.optim.Adam(groups + ([{"params": table_params, "lr": cfg.train.sparse_lr}] if replicated else []),
                     lr=cfg.train.dense_lr).step()
    with torch.no_grad():
        for name, p in reference.named_parameters():
            table = next((t for t in tables if f".{t}." in name), None)
            if table is not None and not replicated:
                sparse_step_(sparse_optimizer, p, p.grad, cfg.train.sparse_lr, 1e-8, column_splits(shards, table))
    updated = reference.state_dict()
    for key, r, c, block in local_shards(dmp.state_dict()):
        expected = full_block(updated[key], r, c, block) - full_block(before[key], r, c, block)
        actual = block - full_block(before[key], r, c, block)
        assert expected.abs().sum() > 0, f"{key}: the reference step changed nothing"
        torch.testing.assert_close(actual, expected, atol=1e-6, rtol=2e-3,
                                   msg=lambda m, key=key: f"{sharding_type} {key} update: {m}")


def column_splits(shards, table):
    """Widths of a table's column shards in column order (one full-width split unless column-wise)."""
    mine = sorted((s for s in shards if s.table == table), key=lambda s: (s.col_offset, s.row_offset))
    widths = {s.col_offset: s.cols for s in mine}
    return [widths[c] for c in sorted(widths)]


@pytest.mark.parametrize("variant,lookup,sharding_type,sparse_optimizer,dense_l2", [
    ("dare", "singleton_bags", "table_wise", "rowwise_adagrad", 0.0),
    ("dare", "sequence", "row_wise", "rowwise_adagrad", 0.0),  # pooled lookups are row-wise on CUDA only
    ("dare", "sequence", "column_wise", "rowwise_adagrad", 0.0),
    ("twin", "singleton_bags", "table_wise", "adagrad", 0.01),  # shared layout; exact Adagrad; dense L2
    ("twin_4e", "singleton_bags", "column_wise", "sgd", 0.0),  # four table sets; SGD
    ("dare", "singleton_bags", "table_wise", "adam", 0.0),  # row-sparse Adam, pooled, per-rank batch strides
    ("twin", "sequence", "row_wise", "adam", 0.0),  # row-sparse Adam, unpooled, two tables per FBGEMM module
    ("dare", "singleton_bags", None, "dense_adam", 0.01),  # the reference's recipe: replicated tables
])
def test_sharded_forward_and_step_match_unsharded(tiny_data, variant, lookup, sharding_type, sparse_optimizer,
                                                  dense_l2):
    run_on_ranks(_parity, 2, tiny_data, variant, lookup, sharding_type, sparse_optimizer, dense_l2, timeout=180)


@pytest.mark.parametrize("variant,lookup,sharding_type", [
    ("dare", "sequence", "table_wise"),  # the collections list their features rank by rank
    ("twin_4e", "singleton_bags", "column_wise"),
])
def test_sharded_seller_and_brand_tables_match_unsharded(tiny_side_data, variant, lookup, sharding_type):
    """side_fields [seller, brand]: their tables are sharded like item's; the forward (the selected behaviors' KJT
    keeps the batch's key order) and one step match the unsharded model."""
    run_on_ranks(_parity, 2, tiny_side_data, variant, lookup, sharding_type, "rowwise_adagrad", 0.0,
                 "[seller, brand]", timeout=180)


"""The attention-path and representation-path gradients add up to the ordinary gradient of every table."""

from __future__ import annotations

import copy

import pytest
import torch

from dare_rec.analysis.role_gradients import RoleGradientProbe, lookup_tables, side_table_name
from dare_rec.data.parquet import ParquetBatchReader
from dare_rec.modules.model import build_model
from tests.conftest import tiny_config

CPU = torch.device("cpu")


def dense_rows(rows, shape):
    out = torch.zeros(shape)
    out[rows.ids] = rows.rows
    return out


def table_weights(model):
    weights = {name: table.weight for c in model.sparse_arch.collections.values()
               for name, table in (c.embedding_bags if model.sparse_arch.bags else c.embeddings).items()}
    weights.update({f"pos_{name}": table.weight for name, table in model.sparse_arch.positions.items()})
    return weights


def probe_step_matches_the_ordinary_step(probed, reference, cfg, batch):
    """Steps ``reference`` (an untouched copy of ``probed``) and the role probe on ``probed`` over ``batch``;
    asserts the same loss and that the probe leaves every parameter with the ordinary gradient (so training is
    unchanged). Returns the probe's per-role gradients."""
    ref_loss, _ = reference(batch)
    ref_loss.backward()
    probe = RoleGradientProbe(probed.model, cfg.model)
    loss, grads = probe.step(batch.sparse_features, batch.labels)
    probe.close()
    torch.testing.assert_close(loss, ref_loss.detach())
    for (name, p), (_, q) in zip(probed.named_parameters(), reference.named_parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=name)
    return grads


@pytest.mark.parametrize("variant,shared,lookup", [("twin", True, "singleton_bags"), ("twin", True, "sequence"),
                                                   ("twin_proj", True, "singleton_bags"),
                                                   ("dare", False, "singleton_bags")])
def test_role_paths_sum_to_the_table_gradient(tiny_data, variant, shared, lookup):
    cfg = tiny_config("--model.variant", variant, "--sharding.lookup", lookup)
    torch.manual_seed(0)
    probed = build_model(cfg, 501, 21, CPU, CPU)
    reference = copy.deepcopy(probed)
    batch = next(iter(ParquetBatchReader(tiny_data, "train", 64, cfg.data.max_len)))

    grads = probe_step_matches_the_ordinary_step(probed, reference, cfg, batch)
    expected_tables = {table for fields in lookup_tables(cfg.model).values() for table, _ in fields} | {f"pos_{n}" for n in probed.model.sparse_arch.positions}
    assert set(grads) == expected_tables
    for table, weight in table_weights(reference.model).items():
        roles = grads[table]
        assert set(roles) == ({"att", "rep"} if shared else {table.rsplit("_", 1)[1]}), table
        total = sum(dense_rows(r, weight.shape) for r in roles.values())
        torch.testing.assert_close(total, weight.grad, msg=table)
    if shared:
        att, rep = (dense_rows(grads["cate_shared"][r], (21, cfg.model.d_rep)) for r in ("att", "rep"))
        assert att.abs().sum() > 0 and rep.abs().sum() > 0 and not torch.allclose(att, rep)


@pytest.mark.parametrize("merge", ["concat", "add"])
@pytest.mark.parametrize("variant,shared", [("dare", False), ("twin_4e", False), ("twin", True)])
def test_role_paths_keep_the_tables_decoupled_with_side_fields(tiny_side_data, variant, shared, merge):
    """DARE's decoupling with the time gap and behavior type, under either temporal merge (add: the attention
    side's position and side rows are inside the keys): an attention table (semantic, position or side field)
    gets gradient from the attention path only and a representation table from the representation path only;
    a shared table from both. The two paths add up to the ordinary gradient, side tables included."""
    cfg = tiny_config("--model.variant", variant, "--model.temporal_merge", merge, "--model.time_gap", "true",
                      "--model.side_fields", "[btype]")
    torch.manual_seed(0)
    probed = build_model(cfg, 501, 21, CPU, CPU, num_behavior_types=4)
    reference = copy.deepcopy(probed)
    batch = next(iter(ParquetBatchReader(tiny_side_data, "train", 64, cfg.data.max_len,
                                         side_fields=cfg.model.dense_side_fields)))
    grads = probe_step_matches_the_ordinary_step(probed, reference, cfg, batch)
    weights = table_weights(reference.model)
    weights.update({side_table_name(field, name): table.weight
                    for field, tables in reference.model.sparse_arch.side_tables.items()
                    for name, table in tables.items()})
    assert set(grads) == set(weights)
    for table, weight in weights.items():
        roles = grads[table]
        own = {"att", "rep"} if shared else {"att" if "_att" in table else "rep"}
        assert set(roles) == own, table
        total = sum(dense_rows(r, weight.shape) for r in roles.values())
        torch.testing.assert_close(total, weight.grad, msg=table)

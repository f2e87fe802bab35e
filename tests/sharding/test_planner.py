"""Plans from config constraints, explanations, and clear errors for plans that cannot be made."""

from __future__ import annotations

import pytest
import torch

from dare_rec.config import ConfigError
from dare_rec.modules.model import build_model
from dare_rec.optim import apply_sparse_optimizer
from dare_rec.sharding import cli
from dare_rec.sharding.planner import build_plan, explain_plan, plan_rows
from tests.conftest import TINY_PRESET, tiny_config

META = torch.device("meta")


def plan_for(*overrides, world_size=2, num_items=501, num_categories=21, device="cpu", side_vocabulary=None):
    cfg = tiny_config(*overrides)
    model = build_model(cfg, num_items, num_categories, META, META, side_vocabulary=side_vocabulary)
    apply_sparse_optimizer(model, cfg.train, torch.device(device))
    return build_plan(model, cfg, world_size, world_size, device), cfg


def sharding_types(plan):
    return {table: ps.sharding_type for module_plan in plan.plan.values() for table, ps in module_plan.items()}


def test_constraints_from_config_are_honoured():
    plan, _ = plan_for("--sharding.default.sharding_type", "table_wise", "--sharding.lookup", "sequence",
                       "--sharding.tables.item_rep.sharding_type", "row_wise",
                       "--sharding.tables.item_att.sharding_type", "column_wise")
    assert sharding_types(plan) == {"item_att": "column_wise", "cate_att": "table_wise",
                                    "item_rep": "row_wise", "cate_rep": "table_wise"}


def test_shards_cover_every_table_exactly():
    plan, cfg = plan_for("--sharding.default.sharding_type", "row_wise", "--sharding.lookup", "sequence",
                         world_size=3)
    rows = plan_rows(plan, cfg)
    for table, (n_rows, dim) in {"item_att": (501, 8), "cate_att": (21, 8), "item_rep": (501, 16),
                                 "cate_rep": (21, 16)}.items():
        shards = [r for r in rows if r.table == table]
        assert sum(r.rows for r in shards) == n_rows and all(r.cols == dim for r in shards)
        assert {r.rank for r in shards} == {0, 1, 2}


def test_explanation_lists_tables_and_per_rank_memory():
    plan, cfg = plan_for("--sharding.tables.item_rep.data_type", "fp16")
    text = explain_plan(plan, cfg, world_size=2, dense_params=1000)
    assert "item_rep" in text and "fp16" in text and "rank 1:" in text
    weights = sum(r.weight_bytes for r in plan_rows(plan, cfg))
    assert weights == 501 * 8 * 4 + 21 * 8 * 4 + 501 * 16 * 2 + 21 * 16 * 4


@pytest.mark.parametrize("variant,tables", [
    ("twin", {"item_shared", "cate_shared"}),
    ("twin_4e", {f"{field}_{role}_{side}" for field in ("item", "cate") for role in ("att", "rep")
                 for side in ("hist", "target")}),
])
def test_plan_follows_the_layout_tables(variant, tables):
    plan, _ = plan_for("--model.variant", variant)
    assert set(sharding_types(plan)) == tables


@pytest.mark.parametrize("optimizer,per_row", [("rowwise_adagrad", 1), ("adagrad", 16), ("sgd", 0),
                                               ("adam", 2 * 16 + 1)])
def test_explanation_counts_the_sparse_optimizer_state(optimizer, per_row):
    plan, cfg = plan_for("--sharding.default.sharding_type", "table_wise", "--train.sparse_optimizer", optimizer)
    item_rep = next(r for r in plan_rows(plan, cfg) if r.table == "item_rep")
    assert item_rep.optimizer_bytes == 501 * per_row * 4


def test_dense_adam_replicates_every_table_with_two_moments(capsys):
    plan, cfg = plan_for("--train.sparse_optimizer", "dense_adam")
    params = [ps for module_plan in plan.plan.values() for ps in module_plan.values()]
    assert len(params) == 4 and all(ps.sharding_type == "data_parallel" and ps.compute_kernel == "dense"
                                    for ps in params)
    with pytest.raises(ValueError, match="table_shapes"):
        plan_rows(plan, cfg)
    rows = plan_rows(plan, cfg, {"item_rep": (501, 16), "cate_rep": (21, 16), "item_att": (501, 8),
                                 "cate_att": (21, 8)})
    item_rep = [r for r in rows if r.table == "item_rep"]
    assert sorted(r.rank for r in item_rep) == [0, 1]  # one full copy per rank
    assert all(r.weight_bytes == 501 * 16 * 4 and r.optimizer_bytes == 501 * 32 * 4 for r in item_rep)
    assert cli.main(["--config", str(TINY_PRESET), "--world-size", "2", "--num-items", "1000", "--num-categories",
                     "50", "--train.sparse_optimizer", "dense_adam"]) == 0
    out = capsys.readouterr().out
    assert "the reference code's recipe" in out and out.count("data_parallel") == 8


def test_partial_rowwise_adam_for_the_tables_is_refused_on_cpu():
    with pytest.raises(ConfigError, match=r"^train.sparse_optimizer: 'rowwise_adam' needs a CUDA device"):
        plan_for("--train.sparse_optimizer", "rowwise_adam")


@pytest.mark.parametrize("overrides,match", [
    (["--sharding.default.sharding_type", "table_wise"], r"^sharding.default: train.sparse_optimizer dense_adam"),
    (["--sharding.lookup", "sequence"], r"^train.sparse_optimizer: dense_adam .*singleton_bags"),
])
def test_dense_adam_refuses_sharded_tables_and_cpu_sequence_lookups(overrides, match):
    with pytest.raises(ConfigError, match=match):
        plan_for("--train.sparse_optimizer", "dense_adam", *overrides)


@pytest.mark.parametrize("overrides,match", [
    (["--sharding.tables.item_foo.sharding_type", "row_wise"], r"^sharding.tables.item_foo: the model \('dare'"),
    (["--sharding.default.compute_kernel", "fused_uvm_caching"], r"^sharding.default.compute_kernel: .*needs a CUDA"),
    (["--sharding.memory_per_rank_mb", "0.001"], r"^sharding: no sharding plan satisfies .*world size 2"),
    (["--sharding.default.sharding_type", "row_wise"], r"^sharding.default.sharding_type: .*row_wise.* CUDA only"),
])
def test_impossible_plans_fail_with_the_field_named(overrides, match):
    with pytest.raises(ConfigError, match=match):
        plan_for(*overrides)


def test_plan_command_prints_plan_without_a_process_group(capsys):
    assert cli.main(["--config", str(TINY_PRESET), "--world-size", "4", "--num-items", "1000",
                     "--num-categories", "50", "--device", "cuda", "--sharding.default.sharding_type",
                     "row_wise"]) == 0
    out = capsys.readouterr().out
    assert "world size 4" in out and "rank 3:" in out and "row_wise" in out


def test_plan_command_shards_the_seller_and_brand_tables(tiny_side_data, capsys):
    """side_fields seller and brand: their tables are planned like item's (rows from the dataset's meta.json) and
    take per-table constraints by name."""
    assert cli.main(["--config", str(TINY_PRESET), "--world-size", "2", "--data.path", str(tiny_side_data),
                     "--model.side_fields", "[seller, brand]", "--sharding.lookup", "sequence",
                     "--sharding.default.sharding_type", "row_wise",
                     "--sharding.tables.brand_att.sharding_type", "table_wise"]) == 0
    out = capsys.readouterr().out
    for table in ("seller_att", "brand_att", "seller_rep", "brand_rep"):
        assert table in out
    plan, cfg = plan_for("--model.side_fields", "[seller, brand]", "--sharding.lookup", "sequence",
                         "--sharding.default.sharding_type", "row_wise",
                         "--sharding.tables.brand_att.sharding_type", "table_wise",
                         side_vocabulary={"seller": 8, "brand": 6})
    assert sharding_types(plan)["brand_att"] == "table_wise" and sharding_types(plan)["seller_rep"] == "row_wise"
    assert sum(r.rows for r in plan_rows(plan, cfg) if r.table == "brand_rep") == 6


def test_plan_command_rejects_bad_world_size(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--config", str(TINY_PRESET), "--world-size", "4", "--local-world-size", "3",
                  "--num-items", "10", "--num-categories", "5"])
    assert exit_info.value.code == 2
    assert "--local-world-size: must divide --world-size" in capsys.readouterr().err


def test_prefetch_pipeline_plans_uvm_caching_tables_with_cache_prefetch():
    plan, _ = plan_for("--sharding.default.compute_kernel", "fused_uvm_caching", "--train.pipeline", "prefetch",
                       "--sharding.default.cache_load_factor", "0.5", device="cuda")
    params = [ps for module_plan in plan.plan.values() for ps in module_plan.values()]
    assert len(params) == 4 and all(ps.compute_kernel == "fused_uvm_caching" for ps in params)
    assert all(ps.cache_params.prefetch_pipeline and ps.cache_params.load_factor == 0.5 for ps in params)


@pytest.mark.parametrize("overrides,device,match", [
    (["--train.pipeline", "prefetch"], "cuda", r"^sharding.default.compute_kernel: train.pipeline 'prefetch'"),
    (["--train.pipeline", "prefetch", "--sharding.default.compute_kernel", "fused_uvm_caching"], "cpu",
     r"^sharding.default.compute_kernel: 'fused_uvm_caching' needs a CUDA device"),
])
def test_prefetch_pipeline_needs_cuda_caching_tables(overrides, device, match):
    with pytest.raises(ConfigError, match=match):
        plan_for(*overrides, device=device)

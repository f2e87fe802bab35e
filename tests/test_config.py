"""Config loading, overrides and validation: every bad value fails with the dotted field name."""

from __future__ import annotations

import re

import pytest

from dare_rec.config import Config, ConfigError, describe_fields, load_config, parse_overrides
from tests.conftest import TINY_PRESET, tiny_config


def test_preset_and_overrides_are_typed():
    cfg = tiny_config("--model.d_att", "32", "--train.bf16=true", "--model.mlp_hidden", "[64, 8]",
                      "--sharding.tables.item_rep.sharding_type", "row_wise", "--train.dense_lr", "1")
    assert cfg.model.d_att == 32 and cfg.train.bf16 is True and cfg.model.mlp_hidden == [64, 8]
    assert cfg.sharding.for_table("item_rep").sharding_type == "row_wise"
    assert cfg.sharding.for_table("item_att").sharding_type is None  # falls back to sharding.default
    assert isinstance(cfg.train.dense_lr, float)
    assert tiny_config("--train.dense_l2", "1e-6").train.dense_l2 == 1e-6  # YAML 1.1 reads this as a string
    assert load_config(TINY_PRESET).data.batch_size == 64  # the preset applies


@pytest.mark.parametrize("overrides,field", [
    (["--model.d_att", "0"], "model.d_att"),
    (["--model.d_rep", "-4"], "model.d_rep"),
    (["--model.top_k", "0"], "model.top_k"),
    (["--model.top_k", "33"], "model.top_k"),  # > data.max_len (32)
    (["--model.variant", "sasrec"], "model.variant"),
    (["--model.layout", "triple"], "model.layout"),
    (["--model.search", "fuzzy"], "model.search"),
    (["--model.target_aware", "sometimes"], "model.target_aware"),
    (["--model.init_std", "0"], "model.init_std"),
    (["--model.d_pos_att", "0"], "model.d_pos_att"),
    (["--train.sparse_optimizer", "lamb"], "train.sparse_optimizer"),
    (["--train.sparse_adam_kernel", "triton"], "train.sparse_adam_kernel"),
    (["--train.dense_l2", "-1"], "train.dense_l2"),
    (["--data.batch_size", "0"], "data.batch_size"),
    (["--train.sparse_lr", "0"], "train.sparse_lr"),
    (["--sharding.default.sharding_type", "diagonal"], "sharding.default.sharding_type"),
    (["--sharding.tables.item_att.data_type", "int8"], "sharding.tables.item_att.data_type"),
    (["--model.d_att", "abc"], "model.d_att"),
    (["--train.bf16", "maybe"], "train.bf16"),
    (["--model.colour", "red"], "model.colour"),
    (["--model.mlp_hidden", "[]"], "model.mlp_hidden"),
    (["--train.checkpoint_every", "-1"], "train.checkpoint_every"),
    (["--train.checkpoint_every_minutes", "-0.5"], "train.checkpoint_every_minutes"),
    (["--train.keep_checkpoints", "0"], "train.keep_checkpoints"),
    (["--train.resume", "always"], "train.resume"),
    (["--train.overwrite", "true"], "train.overwrite"),  # only with train.resume never
    (["--train.val_metric", "accuracy"], "train.val_metric"),
    (["--train.early_stop_patience", "-2"], "train.early_stop_patience"),
    (["--data.verify_hashes", "2"], "data.verify_hashes"),
])
def test_bad_values_name_the_field(overrides, field):
    with pytest.raises(ConfigError, match=f"^{field.replace('.', '[.]')}"):
        tiny_config(*overrides)


def test_override_syntax_errors_are_clear():
    with pytest.raises(ConfigError, match="--section.field VALUE"):
        parse_overrides(["d_att", "3"])
    with pytest.raises(ConfigError, match="model.d_att: missing value"):
        parse_overrides(["--model.d_att"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("no/such/preset.yaml")


def test_every_leaf_field_is_described_for_help():
    names = {name for name, _, _ in describe_fields()}
    assert {"model.d_att", "train.bf16", "data.max_len", "sharding.default.data_type"} <= names
    assert len(names) > 30
    assert Config().validate() is not None  # defaults are valid


def test_every_preset_loads_and_validates():
    presets = sorted((TINY_PRESET.parent).glob("*.yaml"))
    assert {p.stem for p in presets} >= {"synthetic", "tiny", "taobao", "tmall"}
    for preset in presets:
        load_config(preset)


def test_variants_are_presets_of_the_axes_and_axes_override_them():
    from dare_rec.modules.variants import VARIANTS
    assert set(VARIANTS) == {"dare", "twin", "twin_no_tr", "twin_4e", "twin_proj", "twin_hard", "din"}
    for name, spec in VARIANTS.items():
        assert tiny_config("--model.variant", name).model.spec() == spec
    custom = tiny_config("--model.variant", "dare", "--model.score", "din_mlp", "--model.layout", "four").model
    assert (custom.spec().layout, custom.spec().score, custom.spec().search) == ("four", "din_mlp", "soft")


def test_side_fields_are_validated_and_ordered():
    assert tiny_config().model.dense_side_fields == ()
    assert tiny_config("--model.side_fields", "[btype]", "--model.time_gap", "true").model.dense_side_fields == \
        ("gap", "btype")
    # seller and brand are semantic fields: tables like item's, not dense side tables (in SEMANTIC_SIDE_FIELDS order)
    both = tiny_config("--model.side_fields", "[brand, btype, seller]", "--model.time_gap", "true").model
    assert both.dense_side_fields == ("gap", "btype") and both.semantic_side_fields == ("seller", "brand")
    assert both.semantic_fields == ("item", "cate", "seller", "brand")
    assert both.read_side_fields == ("gap", "btype", "seller", "brand")
    assert tiny_config().model.semantic_fields == ("item", "cate")
    for overrides, message in [(("--model.side_fields", "[btype, btype]"), "model.side_fields: must be a list of"),
                               (("--model.side_fields", "[brand, brand]"), "model.side_fields: must be a list of"),
                               (("--model.side_fields", "[gap]"), "model.side_fields: must be a list of"),
                               (("--model.gap_buckets", "1"), "model.gap_buckets: must be in [2, 54], got 1")]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            tiny_config(*overrides)


def test_hard_levels_and_fill_are_validated():
    """Legal: any non-empty ordered list of distinct levels with either fill, for hard search; soft search takes
    the defaults only (a hard-search setting there would be silently ignored)."""
    default = tiny_config().model
    assert (default.hard_levels, default.hard_fill, default.hard_side_fields) == (["cate"], "recent", ())
    hard = tiny_config("--model.variant", "twin_hard", "--model.hard_levels", "[cate, seller, brand]",
                       "--model.hard_fill", "soft").model
    assert hard.hard_side_fields == ("seller", "brand")
    assert tiny_config("--model.search", "hard", "--model.hard_levels", "[brand]").model.hard_side_fields == ("brand",)
    for overrides, message in [
            (("--model.variant", "twin_hard", "--model.hard_levels", "[]"), "model.hard_levels: must be a non-empty"),
            (("--model.variant", "twin_hard", "--model.hard_levels", "[cate, cate]"), "model.hard_levels: must be"),
            (("--model.variant", "twin_hard", "--model.hard_levels", "[btype]"), "model.hard_levels: must be"),
            (("--model.variant", "twin_hard", "--model.hard_fill", "oldest"), "model.hard_fill: unknown fill"),
            (("--model.hard_levels", "[cate, brand]",), "model.hard_levels: applies to hard search only"),
            (("--model.variant", "twin_hard", "--model.search", "soft", "--model.hard_fill", "soft"),
             "model.hard_fill: applies to hard search only")]:
        with pytest.raises(ConfigError, match=re.escape(message)) as e:
            tiny_config(*overrides)
        assert "\n" not in str(e.value)


def test_temporal_merge_is_validated():
    """add sizes the dense side tables to the semantic width and leaves the position tables as they are; it needs a
    dense side table to add."""
    default = tiny_config().model
    assert default.temporal_merge == "concat"
    assert (default.attention_position_dim, default.attention_side_dim, default.representation_side_dim) == \
        (default.d_pos, default.d_pos, default.d_pos)
    gap = ("--model.time_gap", "true")
    add = tiny_config("--model.temporal_merge", "add", "--model.d_att", "4", "--model.d_rep", "12",
                      "--model.d_pos_att", "6", *gap).model
    assert (add.num_semantic_fields, add.attention_position_dim, add.attention_side_dim,
            add.representation_side_dim) == (2, 6, 8, 24)
    brand = tiny_config("--model.temporal_merge", "add", "--model.d_att", "4", "--model.d_rep", "12",
                        "--model.side_fields", "[brand]", *gap).model  # a semantic field: n = 3
    assert (brand.num_semantic_fields, brand.attention_side_dim, brand.representation_side_dim) == (3, 12, 36)
    shared = tiny_config("--model.temporal_merge", "add", "--model.variant", "twin", "--model.d_rep", "12",
                         *gap).model
    assert (shared.attention_position_dim, shared.attention_side_dim, shared.representation_side_dim) == \
        (shared.d_pos, 24, 24)
    assert tiny_config("--model.temporal_merge", "add", "--model.variant", "din", *gap).model
    assert tiny_config("--model.temporal_merge", "add", "--model.positions", "false",
                       "--model.side_fields", "[btype]").model
    for overrides, message in [
            (("--model.temporal_merge", "mul"), "model.temporal_merge: unknown merge 'mul'"),
            # positions are never added: with positions only there is nothing to add
            (("--model.temporal_merge", "add"),
             "model.temporal_merge: add needs a dense side table to add: model.time_gap true or model.side_fields "
             "[btype] (positions stay a term of their own under add)"),
            (("--model.temporal_merge", "add", "--model.variant", "din"),
             "model.temporal_merge: add needs a dense side table to add"),
            (("--model.temporal_merge", "add", "--model.side_fields", "[brand]"),
             "model.temporal_merge: add needs a dense side table to add")]:
        with pytest.raises(ConfigError, match=re.escape(message)) as e:
            tiny_config(*overrides)
        assert "\n" not in str(e.value)


def test_position_objectives_are_validated():
    assert tiny_config().model.position_objectives == 1
    assert tiny_config("--model.position_objectives", "3").model.position_objectives == 3
    for overrides, message in [(("--model.position_objectives", "0"), "model.position_objectives: must be >= 1"),
                               (("--model.variant", "din", "--model.position_objectives", "2"),
                                "model.position_objectives: 2 needs positions, which variant din has off"),
                               # a head's position term is one shared bias, not a per-sample slice
                               (("--model.position_objectives", "2", "--model.attention_heads", "[[item], [pos]]"),
                                "model.position_objectives: 2 needs attention_heads null, got [['item'], ['pos']]")]:
        with pytest.raises(ConfigError, match=re.escape(message)) as e:
            tiny_config(*overrides)
        assert "\n" not in str(e.value)
    # positions keep their own term under temporal_merge add, so they may be split there too
    assert tiny_config("--model.position_objectives", "2", "--model.temporal_merge", "add", "--model.time_gap",
                       "true").model.position_objectives == 2
    # DIN with its positions switched on may split them
    assert tiny_config("--model.variant", "din", "--model.positions", "true", "--model.position_objectives",
                       "2").model.position_objectives == 2

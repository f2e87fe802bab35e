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
    """add sizes the dense tables to the semantic width; it needs at least one dense table to add."""
    default = tiny_config().model
    assert default.temporal_merge == "concat"
    assert (default.attention_position_dim, default.representation_position_dim) == (default.d_pos, default.d_pos)
    add = tiny_config("--model.temporal_merge", "add", "--model.d_att", "4", "--model.d_rep", "12",
                      "--model.d_pos_att", "6").model
    assert (add.num_semantic_fields, add.attention_position_dim, add.representation_position_dim) == (2, 8, 24)
    brand = tiny_config("--model.temporal_merge", "add", "--model.d_att", "4", "--model.d_rep", "12",
                        "--model.side_fields", "[brand]").model  # a semantic field: n = 3
    assert (brand.num_semantic_fields, brand.attention_position_dim, brand.representation_position_dim) == (3, 12, 36)
    shared = tiny_config("--model.temporal_merge", "add", "--model.variant", "twin", "--model.d_rep", "12").model
    assert (shared.attention_position_dim, shared.representation_position_dim) == (24, 24)
    # DIN has no positions: add needs the time gap or the behavior type
    assert tiny_config("--model.temporal_merge", "add", "--model.variant", "din", "--model.time_gap", "true").model
    assert tiny_config("--model.temporal_merge", "add", "--model.positions", "false",
                       "--model.side_fields", "[btype]").model
    for overrides, message in [
            (("--model.temporal_merge", "mul"), "model.temporal_merge: unknown merge 'mul'"),
            (("--model.temporal_merge", "add", "--model.variant", "din"),
             "model.temporal_merge: add needs a dense table to add: model.positions, model.time_gap or "
             "model.side_fields [btype] (none is on with variant din)"),
            (("--model.temporal_merge", "add", "--model.positions", "false"),
             "model.temporal_merge: add needs a dense table to add")]:
        with pytest.raises(ConfigError, match=re.escape(message)) as e:
            tiny_config(*overrides)
        assert "\n" not in str(e.value)


def test_esu_layers_are_validated():
    assert tiny_config().model.esu_layers == 1
    assert tiny_config("--model.esu_layers", "2", "--model.variant", "twin_hard").model.esu_layers == 2
    for overrides, message in [(("--model.esu_layers", "3"), "model.esu_layers: must be one of (1, 2), got 3"),
                               (("--model.esu_layers", "0"), "model.esu_layers: must be one of (1, 2), got 0"),
                               (("--model.esu_layers", "2", "--model.variant", "din"),
                                "model.esu_layers: 2 needs score dot, not din_mlp"),
                               (("--model.esu_layers", "2", "--model.score", "din_mlp"),
                                "model.esu_layers: 2 needs score dot")]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            tiny_config(*overrides)


def test_attention_heads_are_validated():
    """Legal: null, or non-empty heads of distinct fields in use (the semantic fields, then pos with positions,
    gap with time_gap, btype with side_fields [btype]), for soft search with the dot score and one ESU layer."""
    assert tiny_config().model.attention_heads is None
    assert tiny_config().model.head_fields == ("item", "cate", "pos")
    side = ("--model.side_fields", "[btype]", "--model.time_gap", "true")
    assert tiny_config(*side).model.head_fields == ("item", "cate", "pos", "gap", "btype")
    # seller and brand are semantic fields: after item and cate, in that order whatever side_fields' order
    all_side = ("--model.side_fields", "[brand, btype, seller]")
    assert tiny_config(*all_side).model.semantic_fields == ("item", "cate", "seller", "brand")
    assert tiny_config(*all_side).model.head_fields == ("item", "cate", "seller", "brand", "pos", "btype")
    assert tiny_config(*all_side, "--model.attention_heads", "[[item, cate], [brand], [seller, btype]]").model \
        .attention_heads == [["item", "cate"], ["brand"], ["seller", "btype"]]
    heads = tiny_config(*side, "--model.attention_heads", "[[item, cate], [btype, pos, gap]]").model.attention_heads
    assert heads == [["item", "cate"], ["btype", "pos", "gap"]]
    for overrides, message in [
            (("--model.attention_heads", "[]"), "model.attention_heads: must be null or a non-empty list of heads"),
            (("--model.attention_heads", "[[item], []]"), "model.attention_heads: head 2 is empty"),
            (("--model.attention_heads", "[[item, cate, item]]"), "model.attention_heads: head 1 ['item', 'cate', "
                                                                  "'item'] names a field twice"),
            (("--model.attention_heads", "[[item], [seller]]"), "model.attention_heads: head 2: 'seller' is not a "
                                                                "field in use; the fields in use are ['item', 'cate', "
                                                                "'pos']"),
            (("--model.attention_heads", "[[item], [btype]]"), "head 2: 'btype' is not a field in use"),
            (("--model.attention_heads", "[[item], [pos]]", "--model.positions", "false"),
             "head 2: 'pos' is not a field in use"),
            (("--model.attention_heads", "[[item], [cate]]", "--model.variant", "twin_hard"),
             "model.attention_heads: needs search soft, not hard"),
            (("--model.attention_heads", "[[item], [cate]]", "--model.variant", "din"),
             "model.attention_heads: needs score dot, not din_mlp"),
            (("--model.attention_heads", "[[item], [cate]]", "--model.esu_layers", "2"),
             "model.attention_heads: needs esu_layers 1, not 2"),
            (("--model.attention_heads", "[[item], [cate, pos]]", "--model.temporal_merge", "add"),
             "model.attention_heads: needs temporal_merge concat, not add"),
            (("--model.attention_heads", "[item, cate]",), "model.attention_heads[0]: expected a list")]:
        with pytest.raises(ConfigError, match=re.escape(message)) as e:
            tiny_config(*overrides)
        assert "\n" not in str(e.value)


def test_position_objectives_are_validated():
    assert tiny_config().model.position_objectives == 1
    assert tiny_config("--model.position_objectives", "3").model.position_objectives == 3
    for overrides, message in [(("--model.position_objectives", "0"), "model.position_objectives: must be >= 1"),
                               (("--model.variant", "din", "--model.position_objectives", "2"),
                                "model.position_objectives: 2 needs positions, which variant din has off"),
                               # a per-sample slice is built neither for keys with the positions added nor for heads
                               (("--model.position_objectives", "2", "--model.temporal_merge", "add"),
                                "model.position_objectives: 2 needs temporal_merge concat, not add"),
                               (("--model.position_objectives", "2", "--model.attention_heads", "[[item], [pos]]"),
                                "model.position_objectives: 2 needs attention_heads null, got [['item'], ['pos']]")]:
        with pytest.raises(ConfigError, match=re.escape(message)) as e:
            tiny_config(*overrides)
        assert "\n" not in str(e.value)
    # DIN with its positions switched on may split them
    assert tiny_config("--model.variant", "din", "--model.positions", "true", "--model.position_objectives",
                       "2").model.position_objectives == 2

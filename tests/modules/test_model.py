"""DareModel / DareTrain: variants, over-arch input, aux head, short histories, bf16 switch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dare_rec.data.parquet import ParquetBatchReader
from dare_rec.modules.tables import table_names
from dare_rec.modules.model import build_model
from dare_rec.modules.search import StratifiedBehaviorSample
from tests.conftest import tiny_config

CPU = torch.device("cpu")


def first_batch(tiny_data, size=64):
    reader = ParquetBatchReader(tiny_data, "train", size, max_len=tiny_config().data.max_len)
    batch = next(iter(reader))
    lengths = batch.sparse_features["hist_item"].lengths()
    assert (lengths == 0).any() and (lengths < tiny_config().model.top_k).any(), "fixture lost its short histories"
    return batch


def model_for(*overrides):
    cfg = tiny_config(*overrides)
    torch.manual_seed(0)
    return build_model(cfg, 501, 21, CPU, CPU), cfg


def table_configs(train):
    """Table configs of every collection (EmbeddingCollection or EmbeddingBagCollection)."""
    return [t for c in train.model.sparse_arch.collections.values()
            for t in (c.embedding_bag_configs() if train.model.sparse_arch.bags else c.embedding_configs())]


def table_weight(collection, name):
    return (collection.embedding_bags if hasattr(collection, "embedding_bags") else collection.embeddings)[name].weight


def table_dims(train):
    return {t.name: t.embedding_dim for t in table_configs(train)}


def table_features(train):
    inputs = train.model.sparse_arch.table_inputs()
    assert list(inputs) == [t.name for t in table_configs(train)]
    return inputs


def test_dare_has_decoupled_tables_with_independent_dims():
    train, cfg = model_for("--model.d_att", "4", "--model.d_rep", "12", "--model.d_pos_att", "6")
    arch = train.model.sparse_arch
    assert set(arch.collections) == {"att", "rep"}
    assert table_dims(train) == {"item_att": 4, "cate_att": 4, "item_rep": 12, "cate_rep": 12}
    assert table_names(cfg.model) == list(table_dims(train))
    # each table is shared by the history and the target feature
    assert table_features(train)["item_att"] == ["hist_item", "target_item"]
    assert {name: p.weight.size(1) for name, p in arch.positions.items()} == {"att": 6, "rep": cfg.model.d_pos}


def test_twin_uses_one_table_set_for_attention_and_representation(tiny_data):
    # the shared layout has no attention tables: d_att does not apply, the one set has dim d_rep
    train, cfg = model_for("--model.variant", "twin", "--model.d_att", "4", "--model.d_rep", "16")
    arch = train.model.sparse_arch
    assert set(arch.collections) == {"shared"} and set(arch.positions) == {"shared"}
    assert table_dims(train) == {"item_shared": 16, "cate_shared": 16} and cfg.model.attention_dim == 16
    emb = arch(first_batch(tiny_data).sparse_features)
    assert emb.att_hist is emb.rep_hist and emb.att_target is emb.rep_target


def test_twin_4e_has_four_table_sets(tiny_data):
    train, cfg = model_for("--model.variant", "twin_4e", "--model.d_att", "4", "--model.d_rep", "12")
    assert table_features(train) == {
        "item_att_hist": ["hist_item"], "cate_att_hist": ["hist_cate"],
        "item_att_target": ["target_item"], "cate_att_target": ["target_cate"],
        "item_rep_hist": ["hist_item"], "cate_rep_hist": ["hist_cate"],
        "item_rep_target": ["target_item"], "cate_rep_target": ["target_cate"]}
    # the attention tables take the representation's dims, as the reference runs TWIN-4E (d_att does not apply)
    assert table_dims(train)["item_att_target"] == 12 and table_dims(train)["cate_rep_hist"] == 12
    assert cfg.model.attention_dim == 12 and cfg.model.attention_position_dim == cfg.model.d_pos
    # ... unless its attention width is set to d_att
    small, small_cfg = model_for("--model.variant", "twin_4e", "--model.attention_width", "d_att",
                                 "--model.d_att", "4", "--model.d_rep", "12")
    assert table_dims(small)["item_att_hist"] == 4 and small_cfg.model.attention_dim == 4
    assert set(train.model.sparse_arch.positions) == {"att_hist", "att_target", "rep_hist", "rep_target"}
    # the target's attention vector comes from the target-side table, not the history-side one
    features = first_batch(tiny_data).sparse_features
    emb = train.model.sparse_arch(features)
    ec = train.model.sparse_arch.collections["att"]
    target_ids = features["target_item"].values()
    torch.testing.assert_close(emb.att_target[:, :12], table_weight(ec, "item_att_target")[target_ids])
    assert not torch.allclose(emb.att_target[:, :12], table_weight(ec, "item_att_hist")[target_ids])


# The tables each layout adds for side fields seller and brand (d_att 4, d_rep 12): one per semantic field and group
SEMANTIC_TABLES = {
    "dare": {f"{field}_{group}": dim for group, dim in (("att", 4), ("rep", 12))
             for field in ("item", "cate", "seller", "brand")},
    "twin": {f"{field}_shared": 12 for field in ("item", "cate", "seller", "brand")},
    "twin_4e": {f"{field}_{group}": 12 for group in ("att_hist", "att_target", "rep_hist", "rep_target")
                for field in ("item", "cate", "seller", "brand")},
}


@pytest.mark.parametrize("lookup", ["sequence", "singleton_bags"])
@pytest.mark.parametrize("variant", sorted(SEMANTIC_TABLES))
def test_seller_and_brand_have_tables_like_item_in_every_layout(tiny_side_data, variant, lookup):
    """side_fields [seller, brand]: a table per table group and field, sized from the dataset's vocabularies,
    read by the same features as the hard levels; the attention and representation vectors have four blocks
    (brand's block of a behavior is its table row), and the over-arch input widens by two d_rep blocks."""
    cfg = tiny_config("--model.variant", variant, "--model.d_att", "4", "--model.d_rep", "12",
                      "--model.side_fields", "[seller, brand]", "--sharding.lookup", lookup)
    torch.manual_seed(0)
    train = build_model(cfg, 501, 21, CPU, CPU, side_vocabulary={"seller": 8, "brand": 6})
    arch = train.model.sparse_arch
    assert table_dims(train) == SEMANTIC_TABLES[variant]
    assert table_names(cfg.model) == list(table_dims(train))
    assert {t.name: t.num_embeddings for t in table_configs(train)}[next(n for n in SEMANTIC_TABLES[variant]
                                                                        if n.startswith("brand"))] == 6
    seller_features = {tuple(f) for name, f in table_features(train).items() if name.startswith("seller")}
    assert seller_features == ({("hist_seller",), ("target_seller",)} if variant == "twin_4e"
                               else {("hist_seller", "target_seller")})
    batch = next(iter(ParquetBatchReader(tiny_side_data, "train", 64, max_len=cfg.data.max_len,
                                         side_fields=cfg.model.read_side_fields)))
    emb = arch(batch.sparse_features, representation=True)
    rows, dim = batch.sparse_features["hist_item"].values().numel(), cfg.model.attention_dim
    assert emb.att_hist.shape == (rows, 4 * dim) and emb.att_target.shape == (64, 4 * dim)
    assert emb.rep_hist.shape == (rows, 4 * 12) and emb.rep_target.shape == (64, 4 * 12)
    group = "att_hist" if variant == "twin_4e" else "shared" if variant == "twin" else "att"
    brand_table = table_weight(arch.collections["shared" if variant == "twin" else "att"], f"brand_{group}")
    torch.testing.assert_close(emb.att_hist[:, 3 * dim:], brand_table[batch.sparse_features["hist_brand"].values()])
    width = 4 * 12 + cfg.model.d_pos
    assert train.model.over_arch.mlp[0].in_features == 3 * width
    assert train.model.gsu.scale == pytest.approx(1 / (4 * dim) ** 0.5)
    loss, _ = train(batch)
    loss.backward()  # the new tables train with the rest
    assert brand_table.grad is not None and brand_table.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"model.side_fields \['seller', 'brand'\] need the dataset's vocabulary"):
        build_model(cfg, 501, 21, CPU, CPU)


def over_arch_inputs(train, batch):
    model = train.model
    seen = {}
    model.sparse_arch.register_forward_hook(lambda m, i, o: seen.update(emb=o))
    model.esu.register_forward_hook(lambda m, i, o: seen.update(h=o))
    model.over_arch.register_forward_hook(lambda m, i, o: seen.update(features=i[0]))
    model(batch.sparse_features)
    emb = seen["emb"]
    target = torch.cat([emb.rep_target, emb.rep_target_position.expand(emb.rep_target.size(0), -1)], dim=1)
    return target, seen["h"], seen["features"]


def test_over_arch_input_is_target_h_and_their_product(tiny_data):
    train, cfg = model_for()
    target, h, features = over_arch_inputs(train, first_batch(tiny_data))
    assert target.size(1) == 2 * cfg.model.d_rep + cfg.model.d_pos
    torch.testing.assert_close(features, torch.cat([target, h, target * h], dim=1))


def test_twin_no_tr_over_arch_input_is_target_and_h_only(tiny_data):
    train, cfg = model_for("--model.variant", "twin_no_tr")
    target, h, features = over_arch_inputs(train, first_batch(tiny_data))
    width = 2 * cfg.model.d_rep + cfg.model.d_pos
    assert train.model.over_arch.mlp[0].in_features == 2 * width
    torch.testing.assert_close(features, torch.cat([target, h], dim=1))


def test_twin_proj_projections_receive_gradients(tiny_data):
    train, _ = model_for("--model.variant", "twin_proj")
    projections = train.model.sparse_arch.projections
    assert set(projections) == {"att_hist", "att_target", "rep_hist", "rep_target"}
    loss, _ = train(first_batch(tiny_data))
    loss.backward()
    for name, p in projections.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(m.bias is None for m in projections.modules() if isinstance(m, torch.nn.Linear))


def test_din_has_no_positions_and_an_attention_mlp(tiny_data):
    train, _ = model_for("--model.variant", "din")
    assert train.model.sparse_arch.positions is None and train.model.gsu.din is not None
    emb = train.model.sparse_arch(first_batch(tiny_data).sparse_features)
    assert emb.att_positions is None and emb.rep_target_position is None
    assert train.model.over_arch.mlp[0].in_features == 3 * 2 * tiny_config().model.d_rep


def test_axes_override_the_variant():
    cfg = tiny_config("--model.variant", "twin", "--model.search", "hard", "--model.target_aware", "false")
    spec = cfg.model.spec()
    assert (spec.layout, spec.search, spec.target_aware) == ("shared", "hard", False)


def test_init_std_draws_every_weight_from_a_normal():
    train, _ = model_for("--model.init_std", "0.01", "--model.batch_norm", "true")
    for name, p in train.named_parameters():
        if name.endswith("bias"):
            continue
        if p.numel() >= 100:  # tables and position tables, linear weights
            assert 0.007 < p.std().item() < 0.013, name
        else:  # PReLU slopes, BatchNorm scales: N(0, 0.01) too, as in the reference code
            assert p.abs().max().item() < 0.06, name


def test_aux_head_only_in_training(tiny_data):
    train, _ = model_for()
    features = first_batch(tiny_data).sparse_features
    assert train.model(features).aux_logits is not None
    train.eval()
    assert train.model(features).aux_logits is None
    no_aux, _ = model_for("--model.aux_loss", "false")
    assert no_aux.model.aux_over_arch is None and no_aux.model(features).aux_logits is None


def test_loss_is_bce_plus_aux_in_training_and_main_only_in_eval(tiny_data):
    train, _ = model_for()
    batch = first_batch(tiny_data)
    loss, (loss_detached, logits, labels) = train(batch)
    out = train.model(batch.sparse_features)
    expected = F.binary_cross_entropy_with_logits(out.logits, labels) + \
        F.binary_cross_entropy_with_logits(out.aux_logits, labels)
    torch.testing.assert_close(loss, expected)
    assert not loss_detached.requires_grad and not logits.requires_grad
    train.eval()
    eval_loss, (_, eval_logits, _) = train(batch)
    torch.testing.assert_close(eval_loss, F.binary_cross_entropy_with_logits(eval_logits, labels))


def test_short_and_empty_histories_give_finite_outputs_and_gradients(tiny_data):
    train, _ = model_for()
    loss, (_, logits, _) = train(first_batch(tiny_data))
    loss.backward()
    assert torch.isfinite(logits).all()
    for name, p in train.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("variant", ["dare", "twin"])
def test_bf16_autocast_keeps_float32_logits_close_to_fp32(tiny_data, variant):
    batch = first_batch(tiny_data)
    fp32, _ = model_for("--model.variant", variant)
    bf16, _ = model_for("--model.variant", variant, "--train.bf16", "true")
    bf16.load_state_dict(fp32.state_dict())
    a, b = fp32.model(batch.sparse_features).logits, bf16.model(batch.sparse_features).logits
    assert b.dtype == torch.float32
    torch.testing.assert_close(a, b, atol=0.05, rtol=0.05)


@pytest.mark.parametrize("lookup", ["sequence", "singleton_bags"])
@pytest.mark.parametrize("variant", ["dare", "twin_4e"])
def test_selected_only_representation_lookup_matches_the_full_lookup(tiny_data, variant, lookup):
    """Evaluation and aux-free training look representation vectors up for the K selected behaviors only;
    logits, loss and every gradient are those of the full lookup."""
    batch = first_batch(tiny_data)
    features = batch.sparse_features
    for overrides, training in ((("--model.aux_loss", "true"), False), (("--model.aux_loss", "false"), True)):
        train, _ = model_for("--model.variant", variant, "--sharding.lookup", lookup, *overrides)
        model = train.model
        model.train(training)
        assert model.sparse_arch.selects_representation_lookups
        seen = {}
        model.sparse_arch.register_forward_hook(lambda m, i, o: seen.update(emb=o))
        selected_only = model(features).logits
        assert seen["emb"].rep_hist is None  # the forward really took the selected-only path
        grads = {}
        selected_only.sum().backward()
        grads["selected"] = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        model.zero_grad()
        full = model.forward_from_embeddings(model.sparse_arch(features, representation=True), features).logits
        full.sum().backward()
        torch.testing.assert_close(selected_only, full)
        for name, p in model.named_parameters():
            if p.grad is not None:
                torch.testing.assert_close(grads["selected"][name], p.grad, msg=name)
        assert set(grads["selected"]) == {n for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("variant", ["dare", "twin", "twin_4e", "twin_hard", "twin_proj"])
def test_singleton_bag_lookups_give_the_sequence_lookups_outputs_and_gradients(tiny_data, variant):
    """sharding.lookup only changes how the tables are read: with the same weights, EmbeddingBagCollections
    over one-id bags give the EmbeddingCollections' logits and table gradients, in training and evaluation."""
    batch = first_batch(tiny_data)
    sequence, _ = model_for("--model.variant", variant, "--sharding.lookup", "sequence")
    bags, _ = model_for("--model.variant", variant, "--sharding.lookup", "singleton_bags")
    assert bags.model.sparse_arch.bags and not sequence.model.sparse_arch.bags
    with torch.no_grad():
        for name, collection in sequence.model.sparse_arch.collections.items():
            for table in collection.embeddings:
                table_weight(bags.model.sparse_arch.collections[name], table).copy_(
                    table_weight(collection, table))
    dense = {n: p for n, p in sequence.named_parameters() if "collections" not in n}
    bags.load_state_dict({**bags.state_dict(), **{n: p.detach() for n, p in dense.items()}})
    for training in (True, False):
        sequence.train(training)
        bags.train(training)
        loss_seq, (_, logits_seq, _) = sequence(batch)
        loss_bag, (_, logits_bag, _) = bags(batch)
        torch.testing.assert_close(logits_bag, logits_seq)
        if training:
            loss_seq.backward()
            loss_bag.backward()
            for name, collection in sequence.model.sparse_arch.collections.items():
                for table in collection.embeddings:
                    torch.testing.assert_close(
                        table_weight(bags.model.sparse_arch.collections[name], table).grad,
                        table_weight(collection, table).grad, msg=table)


def test_stratified_sample_keeps_short_histories_whole_and_takes_one_slot_per_stratum_of_long_ones():
    sample = StratifiedBehaviorSample(4)
    lengths = torch.tensor([0, 3, 4, 10, 10, 1000])
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
    targets = torch.tensor([5, 6, 7, 8, 9, 10])
    scores = torch.randn(6, 1000)
    out = sample(scores, offsets, targets)
    assert out.scores is scores
    assert out.top_mask.tolist() == [[False] * 4, [True] * 3 + [False], [True] * 4, [True] * 4, [True] * 4,
                                     [True] * 4]
    assert out.top_indices[2].tolist() == [0, 1, 2, 3]
    for row in (3, 4, 5):
        n = lengths[row].item()
        for i, slot in enumerate(out.top_indices[row].tolist()):
            assert i * n // 4 <= slot < -(-(i + 1) * n // 4), (row, i, slot)  # inside stratum i
    # keyed by the target: the same row draws the same slots again, another target other slots
    assert torch.equal(sample(scores, offsets, targets).top_indices, out.top_indices)
    assert not torch.equal(out.top_indices[3], out.top_indices[4])


def bounded_equals_full(full, bounded, features) -> None:
    """Forward and backward (logits and aux logits) of both train wrappers on ``features``; asserts the bounded
    aux head's model gives the full one's logits, aux logits and gradients."""
    outs = {}
    for name, train in (("full", full), ("bounded", bounded)):
        out = train.model(features)
        (out.logits.sum() + out.aux_logits.sum()).backward()
        outs[name] = out
    torch.testing.assert_close(outs["bounded"].aux_logits, outs["full"].aux_logits)
    torch.testing.assert_close(outs["bounded"].logits, outs["full"].logits)
    grads = dict(full.named_parameters())
    for name, p in bounded.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(p.grad, grads[name].grad, msg=name)


@pytest.mark.parametrize("layers", ["1", "2"])
def test_bounded_aux_head_equals_the_full_head_when_every_history_fits(tiny_data, layers):
    """With M at least every history's length, the sampled head reads every behavior: the full head's aux
    logits and gradients, from lookups of the K selected plus the M sampled rows only (with two ESU layers
    (stacked TIN), layer 2 over the sampled behaviors is layer 2 over all of them)."""
    batch = first_batch(tiny_data)
    full, _ = model_for("--data.max_len", "48", "--model.aux_behaviors", "null", "--model.esu_layers", layers)
    bounded, _ = model_for("--data.max_len", "48", "--model.aux_behaviors", "40", "--model.esu_layers", layers)
    bounded.load_state_dict(full.state_dict())
    assert full.model.aux_sample is None and bounded.model.full_sequence_attention is None
    seen = {}
    bounded.model.sparse_arch.register_forward_hook(lambda m, i, o: seen.update(emb=o))
    bounded_equals_full(full, bounded, batch.sparse_features)
    assert seen["emb"].rep_hist is None  # representation rows came from the selected/sampled lookup


@pytest.mark.parametrize("aux_behaviors", ["null", "6"])
def test_stacked_tin_layer_two_query_is_trained_by_the_main_loss_only(tiny_data, aux_behaviors):
    """Stacked TIN's aux head (full and bounded) weights its behaviors by layer 2's search scores as constants:
    the aux logits give W_t and W_c no gradient, the main logits do."""
    batch = first_batch(tiny_data)
    train, _ = model_for("--model.esu_layers", "2", "--model.aux_behaviors", aux_behaviors)
    model = train.model.train()
    query = [model.stacked_query.target.weight, model.stacked_query.context.weight]
    out = model(batch.sparse_features)
    assert out.aux_logits is not None
    aux_grads = torch.autograd.grad(out.aux_logits.sum(), query, allow_unused=True)
    assert all(g is None or torch.count_nonzero(g) == 0 for g in aux_grads)
    main_grads = torch.autograd.grad(out.logits.sum(), query)
    assert all(torch.count_nonzero(g) > 0 for g in main_grads)


def test_bounded_aux_head_is_the_softmax_over_the_sampled_behaviors_by_hand(tiny_data):
    batch = first_batch(tiny_data)
    features = batch.sparse_features
    train, cfg = model_for("--model.aux_behaviors", "6")
    model = train.model
    out = model(features)
    emb = model.sparse_arch(features, representation=True)
    gsu = model.search(emb, features)
    lengths = features["hist_item"].lengths().tolist()
    starts = emb.offsets.tolist()
    targets = features["target_item"].values()
    sampled = model.aux_sample(gsu.scores, emb.offsets, targets)
    rows = []
    for b, n in enumerate(lengths):
        slots = list(range(n)) if n <= 6 else sampled.top_indices[b].tolist()
        assert len(set(slots)) == min(n, 6) and all(0 <= s < n for s in slots)
        if not slots:
            rows.append(torch.zeros(2 * cfg.model.d_rep + cfg.model.d_pos))
            continue
        weights = torch.softmax(gsu.scores[b, slots], dim=0).unsqueeze(1)
        rep = emb.rep_hist[[starts[b] + s for s in slots]]
        pos = emb.rep_positions[[n - s for s in slots]]
        rows.append(torch.cat([(weights * rep).sum(0), (weights * pos).sum(0)]))
    h = torch.stack(rows)
    target = torch.cat([emb.rep_target, emb.rep_target_position.expand(len(lengths), -1)], dim=1)
    expected = model.aux_over_arch(model.interaction(target, h))
    torch.testing.assert_close(out.aux_logits, expected)


ADD_SIDE = ("--model.temporal_merge", "add", "--model.time_gap", "true", "--model.side_fields", "[btype]")
# ADD_SIDE with the semantic side fields seller and brand too (n = 4 semantic blocks)
ADD_ALL_SIDE = (*ADD_SIDE, "--model.side_fields", "[btype, seller, brand]")
SIDE_VOCABULARY = {"seller": 8, "brand": 6}


def side_batch(tiny_side_data, cfg, size=64):
    return next(iter(ParquetBatchReader(tiny_side_data, "train", size, max_len=cfg.data.max_len,
                                        side_fields=cfg.model.read_side_fields)))


@pytest.mark.parametrize("add_side,n", [(ADD_SIDE, 2), (ADD_ALL_SIDE, 4)])
def test_temporal_add_sizes_the_dense_tables_to_the_semantic_vector(tiny_side_data, add_side, n):
    """Under add every dense side table is as wide as its group's [item; cate; ...] vector, n * d with n the
    semantic fields, the keys carry the attention side rows, the position tables keep d_pos / d_pos_att (their
    term and block of their own), and the over-arch input is [v_t; h; v_t * h] of width n * d_rep + d_pos."""
    cfg = tiny_config("--model.d_att", "4", "--model.d_rep", "12", "--model.d_pos", "16", "--model.d_pos_att", "6",
                      *add_side)
    assert cfg.model.num_semantic_fields == n
    torch.manual_seed(0)
    train = build_model(cfg, 501, 21, CPU, CPU, num_behavior_types=4, side_vocabulary=SIDE_VOCABULARY)
    arch = train.model.sparse_arch
    rows = {"gap": cfg.model.gap_buckets + 1, "btype": 5}
    assert {name: tuple(p.weight.shape) for name, p in arch.positions.items()} == \
        {"att": (cfg.data.max_len + 1, 6), "rep": (cfg.data.max_len + 1, 16)}
    assert {(field, name): tuple(t.weight.shape) for field, tables in arch.side_tables.items()
            for name, t in tables.items()} == {(f, g): (rows[f], 4 * n if g == "att" else 12 * n)
                                               for f in ("gap", "btype") for g in ("att", "rep")}
    assert train.model.over_arch.mlp[0].in_features == train.model.aux_over_arch.mlp[0].in_features == \
        3 * (12 * n + 16)
    emb = arch(side_batch(tiny_side_data, cfg).sparse_features, representation=False)
    assert emb.att_hist.size(1) == emb.att_target.size(1) == 4 * n
    assert emb.att_positions.shape == (cfg.data.max_len + 1, 6)
    assert emb.att_side is None and emb.side_ids is not None
    # the shared layout's one set, projections (one square map per part) and DIN's MLP (over ẽ, ṽ) likewise
    twin = build_model(tiny_config("--model.variant", "twin", "--model.d_rep", "12", "--model.d_pos", "16",
                                   *add_side), 501, 21, CPU, CPU, num_behavior_types=4,
                       side_vocabulary=SIDE_VOCABULARY).model
    assert twin.sparse_arch.side_tables["gap"]["shared"].weight.size(1) == 12 * n
    assert twin.sparse_arch.positions["shared"].weight.size(1) == 16
    proj = build_model(tiny_config("--model.variant", "twin_proj", "--model.d_rep", "12", "--model.d_pos", "16",
                                   *add_side), 501, 21, CPU, CPU, num_behavior_types=4,
                       side_vocabulary=SIDE_VOCABULARY).model
    maps = proj.sparse_arch.projections["att_hist"]
    assert maps.side["gap"].weight.shape == (12 * n, 12 * n)
    assert maps.position.weight.shape == (16, 16)
    din = build_model(tiny_config("--model.variant", "din", "--model.d_rep", "12", *add_side), 501, 21, CPU, CPU,
                      num_behavior_types=4, side_vocabulary=SIDE_VOCABULARY).model
    assert din.gsu.din.mlp[0].in_features == 4 * 12 * n  # DIN has no positions: [ṽ, ẽ, ṽ - ẽ, ṽ * ẽ]


@pytest.mark.parametrize("add_side", [ADD_SIDE, ADD_ALL_SIDE])
@pytest.mark.parametrize("layers", ["1", "2"])
def test_temporal_add_selected_and_sampled_lookups_match_the_full_lookup(tiny_side_data, layers, add_side):
    """Under add the ESU adds the selected behaviors' dense representation rows after their own lookup (with
    seller and brand, to blocks zeroed where an id is 0): the logits and gradients of the selected-only lookup
    (evaluation) and of the bounded aux head (every history fits in M) equal those of the full lookup."""
    cfg = tiny_config("--data.max_len", "48", "--model.aux_behaviors", "null", "--model.esu_layers", layers,
                      *add_side)
    torch.manual_seed(0)
    full = build_model(cfg, 501, 21, CPU, CPU, num_behavior_types=4, side_vocabulary=SIDE_VOCABULARY)
    bounded = build_model(tiny_config("--data.max_len", "48", "--model.aux_behaviors", "40",
                                      "--model.esu_layers", layers, *add_side), 501, 21, CPU, CPU,
                          num_behavior_types=4, side_vocabulary=SIDE_VOCABULARY)
    bounded.load_state_dict(full.state_dict())
    features = side_batch(tiny_side_data, cfg).sparse_features
    bounded_equals_full(full, bounded, features)
    model = bounded.model.eval()
    with torch.no_grad():
        selected_only = model(features).logits
        every = model.forward_from_embeddings(model.sparse_arch(features, representation=True), features).logits
    torch.testing.assert_close(selected_only, every)

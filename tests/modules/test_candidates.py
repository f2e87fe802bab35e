"""Candidate scoring (``DareModel.score_candidates``): C candidates against one history, the user side read once,
give the logits of the model's evaluation forward on C samples that each carry the whole history."""

from __future__ import annotations

import pytest
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from dare_rec.data import schema
from dare_rec.modules.model import build_model
from tests.conftest import tiny_config

CPU = torch.device("cpu")
# rows of the seller and brand tables (ids 0, padding, to 7 and 5)
SIDE_VOCABULARY = {"seller": 8, "brand": 6}


def replicated(hist_item, hist_cate, cand_item, cand_cate):
    """The batch of C samples that each carry the whole history."""
    num, length = cand_item.numel(), hist_item.numel()
    lengths = torch.full((num,), length, dtype=torch.int32)
    ones = torch.ones(num, dtype=torch.int32)
    return KeyedJaggedTensor(keys=[schema.HIST_ITEM, schema.HIST_CATE, schema.TARGET_ITEM, schema.TARGET_CATE],
                             values=torch.cat([hist_item.repeat(num), hist_cate.repeat(num), cand_item, cand_cate]),
                             lengths=torch.cat([lengths, lengths, ones, ones]))


@pytest.mark.parametrize("lookup", ["sequence", "singleton_bags"])
@pytest.mark.parametrize("variant", ["dare", "twin", "twin_no_tr", "twin_4e", "twin_proj", "twin_hard"])
@pytest.mark.parametrize("length,chunk", [(32, 1024), (32, 3), (7, 1024), (0, 1024)])  # full, < K, empty
def test_candidate_scoring_equals_the_forward_on_replicated_histories(variant, lookup, length, chunk):
    """Chunks of 3 slots: the top K merged across 11 chunks, as in a 10,000-behavior history."""
    cfg = tiny_config("--model.variant", variant, "--sharding.lookup", lookup)
    torch.manual_seed(0)
    model = build_model(cfg, 501, 21, CPU, CPU).model.eval()
    g = torch.Generator().manual_seed(length)
    hist_item, hist_cate = torch.randint(1, 501, (length,), generator=g), torch.randint(1, 21, (length,), generator=g)
    cand_item, cand_cate = torch.randint(1, 501, (40,), generator=g), torch.randint(1, 21, (40,), generator=g)
    cand_cate[:10] = hist_cate[0] if length else 1  # candidates of a category in the history (hard search)
    expected = model(replicated(hist_item, hist_cate, cand_item, cand_cate)).logits
    logits = model.score_candidates(hist_item, hist_cate, cand_item, cand_cate, chunk=chunk)
    assert logits.shape == (40,)
    torch.testing.assert_close(logits, expected)


def test_candidate_scoring_refuses_the_din_score():
    model = build_model(tiny_config("--model.variant", "din"), 501, 21, CPU, CPU).model.eval()
    with pytest.raises(ValueError, match="dot score"):
        model.score_candidates(torch.tensor([1, 2]), torch.tensor([1, 1]), torch.tensor([3]), torch.tensor([1]))


def test_candidate_scoring_refuses_no_candidates_and_histories_past_max_len():
    model = build_model(tiny_config(), 501, 21, CPU, CPU).model.eval()
    with pytest.raises(ValueError, match="at least one candidate"):
        model.score_candidates(torch.tensor([1]), torch.tensor([1]), torch.tensor([], dtype=torch.long),
                               torch.tensor([], dtype=torch.long))
    too_long = torch.ones(33, dtype=torch.long)  # tiny max_len is 32
    with pytest.raises(ValueError, match="33 behaviors"):
        model.score_candidates(too_long, too_long, torch.tensor([3]), torch.tensor([1]))


@pytest.mark.parametrize("argument", ["hist_item", "cand_item", "hist_cate", "cand_cate"])
@pytest.mark.parametrize("bad_id", [-1, "rows"])
def test_candidate_scoring_refuses_ids_outside_their_table(argument, bad_id):
    """The lookups do not check ids (sharding.bounds_check off), so score_candidates does: an id past its table
    (501 items, 21 categories) or negative is an error naming the argument and the table's rows."""
    model = build_model(tiny_config(), 501, 21, CPU, CPU).model.eval()
    ids = {"hist_item": torch.tensor([1, 500]), "hist_cate": torch.tensor([1, 20]), "cand_item": torch.tensor([3]),
           "cand_cate": torch.tensor([1])}
    model.score_candidates(**ids)  # the last rows are fine
    rows = 501 if argument.endswith("item") else 21
    ids[argument] = ids[argument].clone()
    ids[argument][-1] = rows if bad_id == "rows" else bad_id
    with pytest.raises(ValueError, match=rf"{argument} ids must be rows of its table, 0 to {rows - 1}"):
        model.score_candidates(**ids)


def test_candidate_scoring_refuses_side_ids_outside_their_table():
    """A seller id past the seller table's rows (SIDE_VOCABULARY) is an error naming the argument."""
    cfg = tiny_config("--model.side_fields", "[seller]")
    model, ids, inputs, _ = side_candidates_match_the_forward(cfg, 7, 1024)
    seller = inputs["hist_side"]["seller"].clone()
    seller[0] = model.sparse_arch.vocabulary["seller"]
    with pytest.raises(ValueError, match=r"hist_side\['seller'\] ids must be rows of its table"):
        model.score_candidates(*ids, **{**inputs, "hist_side": {**inputs["hist_side"], "seller": seller}})


def side_candidates_match_the_forward(cfg, length: int, chunk: int, same_category: bool = False):
    """Scores 40 candidates against one history of ``length`` behaviors with the config's side fields (random ids:
    the time gap and behavior type; the history's seller and brand, some 0 (padding), and the candidates'; hard
    levels brand and seller read the same ids), by ``score_candidates`` and by the batch forward on the history
    replicated; asserts they agree. With ``same_category`` the first 10 candidates take the category of the
    history's first behavior (hard search). With O > 1 target objectives (``model.position_objectives``) the
    position tables are drawn far apart and every objective is scored in turn (the forward's samples all carrying
    it as ``target_objective``), and an objective outside 1..O is refused.

    Returns:
        the model, the four id tensors of ``score_candidates``, its side arguments (``hist_side``, ``cand_side``,
        ``hist_levels``, ``cand_levels``) and the ``[40]`` logits of each objective.
    """
    torch.manual_seed(0)
    model = build_model(cfg, 501, 21, CPU, CPU, num_behavior_types=4, side_vocabulary=SIDE_VOCABULARY).model.eval()
    objectives = cfg.model.position_objectives
    if objectives > 1:
        with torch.no_grad():  # slices far apart, so that the objective decides something
            for name, p in model.named_parameters():
                if ".positions." in name:
                    p.normal_()
    g = torch.Generator().manual_seed(length)
    hist_item, hist_cate = torch.randint(1, 501, (length,), generator=g), torch.randint(1, 21, (length,), generator=g)
    rows = {"gap": cfg.model.gap_buckets + 1, "btype": 5, **SIDE_VOCABULARY}
    semantic = cfg.model.semantic_side_fields
    side = {f: torch.randint(0 if f in semantic else 1, rows[f], (length,), generator=g)
            for f in cfg.model.read_side_fields}
    cand_item, cand_cate = torch.randint(1, 501, (40,), generator=g), torch.randint(1, 21, (40,), generator=g)
    cand_side = {f: torch.randint(1, rows[f], (40,), generator=g) for f in semantic}
    if same_category:
        cand_cate[:10] = hist_cate[0] if length else 1
    batch = replicated(hist_item, hist_cate, cand_item, cand_cate)
    lengths, ones = torch.full((40,), length, dtype=torch.int32), torch.ones(40, dtype=torch.int32)
    batch = KeyedJaggedTensor(keys=batch.keys() + [f"hist_{f}" for f in side] + [f"target_{f}" for f in cand_side],
                              values=torch.cat([batch.values(), *(ids.repeat(40) for ids in side.values()),
                                                *cand_side.values()]),
                              lengths=torch.cat([batch.lengths()] + [lengths] * len(side) + [ones] * len(cand_side)))
    levels = cfg.model.hard_side_fields
    inputs = {"hist_side": side, "cand_side": cand_side, "hist_levels": {f: side[f] for f in levels},
              "cand_levels": {f: cand_side[f] for f in levels}}
    ids = (hist_item, hist_cate, cand_item, cand_cate)
    logits = []
    for objective in range(1, objectives + 1):
        if objectives > 1:  # the reader's last target key
            features = KeyedJaggedTensor(keys=batch.keys() + [schema.TARGET_OBJECTIVE],
                                         values=torch.cat([batch.values(), torch.full((40,), objective)]),
                                         lengths=torch.cat([batch.lengths(), ones]))
        else:
            features = batch
        logits.append(model.score_candidates(*ids, chunk=chunk, objective=objective, **inputs))
        torch.testing.assert_close(logits[-1], model(features).logits)
    if objectives > 1:
        with pytest.raises(ValueError, match=rf"objective must be in \[1, {objectives}\]"):
            model.score_candidates(*ids, objective=objectives + 1, **inputs)
    return model, ids, inputs, logits


@pytest.mark.parametrize("lookup", ["sequence", "singleton_bags"])
@pytest.mark.parametrize("variant", ["dare", "twin_4e", "twin_proj", "twin_hard"])
@pytest.mark.parametrize("length,chunk", [(32, 3), (7, 1024), (0, 1024)])
def test_candidate_scoring_with_side_fields_equals_the_forward(variant, lookup, length, chunk):
    """Time gap and behavior type on: the history's side ids (the same for every candidate) enter the score
    column and the representation as in the forward."""
    cfg = tiny_config("--model.variant", variant, "--sharding.lookup", lookup, "--model.side_fields", "[btype]",
                      "--model.time_gap", "true")
    model, ids, _, _ = side_candidates_match_the_forward(cfg, length, chunk)
    with pytest.raises(ValueError, match=r"hist_side must give the side fields \['gap', 'btype'\]"):
        model.score_candidates(*ids)


@pytest.mark.parametrize("fill", ["soft", "recent"])
@pytest.mark.parametrize("lookup", ["sequence", "singleton_bags"])
@pytest.mark.parametrize("length,chunk", [(32, 3), (7, 1024), (0, 1024)])
def test_candidate_scoring_with_hierarchical_hard_search_equals_the_forward(fill, lookup, length, chunk):
    """hard_levels [cate, brand, seller]: the history's and the candidates' brand and seller ids (1 = unknown among
    them) rank the behaviors as in the forward. About a fifth of 32 behaviors match some level, fewer than K = 10,
    so the fill picks the rest (the soft fill from its own running top-K of the unmatched)."""
    cfg = tiny_config("--model.variant", "twin_hard", "--sharding.lookup", lookup, "--model.hard_levels",
                      "[cate, brand, seller]", "--model.hard_fill", fill)
    torch.manual_seed(0)
    model = build_model(cfg, 501, 21, CPU, CPU).model.eval()
    g = torch.Generator().manual_seed(length)
    hist_item, hist_cate = torch.randint(1, 501, (length,), generator=g), torch.randint(1, 21, (length,), generator=g)
    cand_item, cand_cate = torch.randint(1, 501, (40,), generator=g), torch.randint(1, 21, (40,), generator=g)
    hist_levels = {f: torch.randint(1, 12, (length,), generator=g) for f in ("brand", "seller")}
    cand_levels = {f: torch.randint(1, 12, (40,), generator=g) for f in ("brand", "seller")}
    batch = replicated(hist_item, hist_cate, cand_item, cand_cate)
    lengths, ones = torch.full((40,), length, dtype=torch.int32), torch.ones(40, dtype=torch.int32)
    batch = KeyedJaggedTensor(
        keys=batch.keys() + ["hist_brand", "hist_seller", "target_brand", "target_seller"],
        values=torch.cat([batch.values(), hist_levels["brand"].repeat(40), hist_levels["seller"].repeat(40),
                          cand_levels["brand"], cand_levels["seller"]]),
        lengths=torch.cat([batch.lengths(), lengths, lengths, ones, ones]))
    expected = model(batch).logits
    torch.testing.assert_close(model.score_candidates(hist_item, hist_cate, cand_item, cand_cate, chunk=chunk,
                                                      hist_levels=hist_levels, cand_levels=cand_levels), expected)
    with pytest.raises(ValueError, match=r"hist_levels and cand_levels must give the hard levels \[.brand"):
        model.score_candidates(hist_item, hist_cate, cand_item, cand_cate, hist_levels=hist_levels)


@pytest.mark.parametrize("lookup", ["sequence", "singleton_bags"])
@pytest.mark.parametrize("variant", ["dare", "twin_no_tr", "twin_4e", "twin_proj", "twin_hard"])
@pytest.mark.parametrize("length,chunk", [(32, 3), (7, 1024), (0, 1024)])
def test_candidate_scoring_with_two_esu_layers_equals_the_forward(variant, lookup, length, chunk):
    """Stacked TIN: layer 2 reads the attention vectors of the K behaviors each candidate selected from the one
    history's keys (looked up once)."""
    cfg = tiny_config("--model.variant", variant, "--sharding.lookup", lookup, "--model.esu_layers", "2")
    torch.manual_seed(0)
    model = build_model(cfg, 501, 21, CPU, CPU).model.eval()
    g = torch.Generator().manual_seed(length)
    hist_item, hist_cate = torch.randint(1, 501, (length,), generator=g), torch.randint(1, 21, (length,), generator=g)
    cand_item, cand_cate = torch.randint(1, 501, (40,), generator=g), torch.randint(1, 21, (40,), generator=g)
    cand_cate[:10] = hist_cate[0] if length else 1
    expected = model(replicated(hist_item, hist_cate, cand_item, cand_cate)).logits
    torch.testing.assert_close(model.score_candidates(hist_item, hist_cate, cand_item, cand_cate, chunk=chunk),
                               expected)


@pytest.mark.parametrize("lookup", ["sequence", "singleton_bags"])
@pytest.mark.parametrize("side_fields", ["[btype]", "[btype, seller, brand]"])
@pytest.mark.parametrize("variant,extra", [("dare", ()), ("twin", ("--model.esu_layers", "2")), ("twin_4e", ()),
                                           ("twin_proj", ()), ("twin_hard", ("--model.hard_fill", "soft")),
                                           ("dare", ("--model.esu_layers", "2"))])
@pytest.mark.parametrize("length,chunk", [(32, 3), (7, 1024), (0, 1024)])
def test_candidate_scoring_with_temporal_add_equals_the_forward(variant, extra, side_fields, lookup, length, chunk):
    """temporal_merge add with the time gap and behavior type (and seller and brand: dense rows n = 4 blocks wide):
    the one history's keys carry their positions and side rows (added once), every candidate's query the target
    rows (row 0 of each table, the same for all), and the score column has no position or side term."""
    cfg = tiny_config("--model.variant", variant, "--sharding.lookup", lookup, "--model.temporal_merge", "add",
                      "--model.side_fields", side_fields, "--model.time_gap", "true", *extra)
    side_candidates_match_the_forward(cfg, length, chunk, same_category=True)


@pytest.mark.parametrize("lookup", ["sequence", "singleton_bags"])
@pytest.mark.parametrize("side_fields,heads", [
    ("[btype]", "[[item, cate, gap], [btype], [cate, pos]]"),
    ("[btype, seller, brand]", "[[item, brand, gap], [seller], [cate, pos]]")])
@pytest.mark.parametrize("variant", ["dare", "twin_no_tr", "twin_4e", "twin_proj"])
@pytest.mark.parametrize("length,chunk", [(32, 3), (32, 1024), (7, 1024), (0, 1024)])
def test_candidate_scoring_with_attention_heads_equals_the_forward(variant, side_fields, heads, lookup, length,
                                                                    chunk):
    """Three heads (DI-TIN), one of behavior types only (or of sellers only): each candidate is searched once per
    head, and that head's many equal scores (four types, or eight sellers, over 32 behaviors) select the same
    behaviors as the forward's."""
    cfg = tiny_config("--model.variant", variant, "--sharding.lookup", lookup, "--model.side_fields", side_fields,
                      "--model.time_gap", "true", "--model.attention_heads", heads)
    side_candidates_match_the_forward(cfg, length, chunk)


@pytest.mark.parametrize("lookup", ["sequence", "singleton_bags"])
@pytest.mark.parametrize("variant", ["dare", "twin", "twin_4e", "twin_proj", "twin_hard"])
@pytest.mark.parametrize("length,chunk", [(32, 3), (7, 1024), (0, 1024)])
def test_candidate_scoring_with_seller_and_brand_equals_the_forward(variant, lookup, length, chunk):
    """Side fields seller and brand (with btype; twin_hard also ranks by hard level brand; dare stacks two ESU
    layers): the history's ids (some 0, padding) and the candidates' enter the keys, queries and representations
    as in the forward."""
    extra = {"twin_hard": ("--model.hard_levels", "[cate, brand]"), "dare": ("--model.esu_layers", "2")}
    cfg = tiny_config("--model.variant", variant, "--sharding.lookup", lookup, "--model.side_fields",
                      "[btype, seller, brand]", *extra.get(variant, ()))
    model, ids, inputs, _ = side_candidates_match_the_forward(cfg, length, chunk)
    with pytest.raises(ValueError, match=r"cand_side must give the side fields \['seller', 'brand'\]"):
        model.score_candidates(*ids, **{**inputs, "cand_side": None})
    with pytest.raises(ValueError, match=r"hist_side must give the side fields \['btype', 'seller', 'brand'\]"):
        model.score_candidates(*ids, **{**inputs, "hist_side": {"btype": inputs["hist_side"]["btype"]}})


@pytest.mark.parametrize("lookup", ["sequence", "singleton_bags"])
@pytest.mark.parametrize("side_fields", ["[btype]", "[btype, brand]"])
@pytest.mark.parametrize("variant", ["dare", "twin_4e", "twin_proj", "twin_hard"])
@pytest.mark.parametrize("length,chunk", [(32, 3), (7, 1024), (0, 1024)])
def test_candidate_scoring_with_target_objectives_equals_the_forward(variant, side_fields, lookup, length, chunk):
    """position_objectives 2 with the time gap and behavior type (and brand, a semantic field: positions do not
    depend on the semantic fields): every candidate of a call has the call's objective and reads its position
    slice, as the forward does for samples of that objective (the gap, type and brand rows stay shared); the two
    objectives give different logits."""
    cfg = tiny_config("--model.variant", variant, "--sharding.lookup", lookup, "--model.position_objectives", "2",
                      "--model.side_fields", side_fields, "--model.time_gap", "true")
    _, _, _, logits = side_candidates_match_the_forward(cfg, length, chunk, same_category=True)
    assert (logits[0] - logits[1]).abs().max() > 1e-3

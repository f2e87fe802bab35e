"""Every variant's logits on a tiny input against the model math written out here, behavior by behavior.

The expectation reads only the model's parameters (the tables, position tables, projections, DIN's MLP, the
over-arch) and recomputes the forward with the formulas of docs/design.md §4 in plain loops: lookups, the
search score (dot product scaled per part, or DIN's MLP), the selection (top-K by score, or hard search), the
softmax over the K selected, the representation sum with positions, the over-arch input and its MLP. Parameters
are redrawn N(0, 1) so that scores are far apart and the selection is unambiguous. With side fields
(``model.time_gap``, ``model.side_fields [btype]``) every behavior also carries a gap bucket and a behavior type:
their attention vectors add one dot-product term each (scaled like the position term) and their representation
vectors extend the behavior's vector; the target reads row 0 of each side table. With two ESU layers (stacked TIN,
``model.esu_layers 2``) a second soft search scores every behavior as layer 1 does but with the query ``W_t v_t^A +
W_c c``, ``c = sum_k w_k e_k^A`` over layer 1's K, and its own top K, weighted by the softmax of their scores, give
the second sum; the over-arch input gains it and its target product.
Hierarchical hard search (``model.hard_levels [cate, brand]``) also reads every behavior's and target's brand.
The side fields seller and brand (``model.side_fields [seller, brand]``) are semantic fields: their vectors (zero
for id 0, padding) join [item; cate] in every attention and representation vector, of behaviors and targets alike,
and the semantic dot product is scaled by sqrt(n * d_att), n = 4. Under ``model.temporal_merge add`` the side
vectors (as wide as [item; cate; ...]) are added to the behavior's and the target's vectors instead, on both
roles: the dot product ``<ẽ_i^A, ṽ_t^A> / sqrt(D_att)`` plus the position term (DIN: its MLP over ẽ, ṽ), layer 2
over ẽ^A, and ẽ^R, ṽ^R of width n * d_rep, with the position block after them as under concat.
With target-decoupled positions (``model.position_objectives 2``) every position vector, the target's included,
comes from the slice of the sample's objective.
"""

from __future__ import annotations

import math

import pytest
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from dare_rec.data import schema
from dare_rec.data.batch import HARD_KEYS, SIDE_KEYS, SPARSE_KEYS, side_keys
from dare_rec.modules.model import build_model
from dare_rec.modules.variants import VARIANTS
from tests.conftest import tiny_config

D_ATT, D_REP, D_POS, D_POS_ATT, K = 2, 3, 2, 3, 2
# two samples: histories oldest -> newest (ids >= 1), targets
HISTORY_ITEMS = [[3, 5, 7, 2], [4]]
HISTORY_CATES = [[1, 2, 1, 3], [2]]
TARGET_ITEMS, TARGET_CATES = [5, 6], [1, 2]
# side fields of the same behaviors: time-gap buckets (1..GAP_BUCKETS) and behavior types (1..NUM_BTYPES)
HISTORY_SIDE = {"gap": [[6, 4, 4, 1], [3]], "btype": [[1, 3, 2, 4], [2]]}
GAP_BUCKETS, NUM_BTYPES = 7, 4
SIDE_ARGS = ("--model.time_gap", "true", "--model.side_fields", "[btype]", "--model.gap_buckets", str(GAP_BUCKETS))
# brands of the same behaviors and targets (id 1: unknown). With [cate, brand] sample 0's codes are 3 0 2 0: two
# matches, so K = 3 leaves one slot to the fill (slot 1 or 3); sample 1's target brand is unknown: code 2.
HISTORY_BRANDS, TARGET_BRANDS = [[4, 5, 3, 2], [1]], [4, 1]
# sellers of the same behaviors and targets; behavior 1 of sample 0 has seller 0 (padding: a zero vector)
HISTORY_SELLERS, TARGET_SELLERS = [[2, 0, 3, 1], [3]], [3, 2]
SIDE_VOCABULARY = {"seller": 4, "brand": 6}
SEMANTIC_ARGS = ("--model.side_fields", "[seller, brand]")
# every side field: the dense time gap and behavior type next to the semantic seller and brand (n = 4)
ALL_SIDE_ARGS = (*SIDE_ARGS, "--model.side_fields", "[btype, seller, brand]")
# the samples' target objectives (model.position_objectives 2)
TARGET_OBJECTIVES = [2, 1]


def features(side_fields=(), hard_fields=(), semantic=(), brands=HISTORY_BRANDS,
             objectives=False) -> KeyedJaggedTensor:
    """The batch with the dense side fields' keys, and the history and target keys of the hard levels and the
    semantic side fields (one key per field); ``brands``: the behaviors' brands; ``objectives``: the samples'
    target objectives as the last key."""
    id_fields = list(dict.fromkeys(list(hard_fields) + list(semantic)))
    keys = list(SPARSE_KEYS) + list(side_keys(side_fields)) + [HARD_KEYS[f][0] for f in id_fields] \
        + [HARD_KEYS[f][1] for f in id_fields] + ([schema.TARGET_OBJECTIVE] if objectives else [])
    values = {"hist_item": sum(HISTORY_ITEMS, []), "hist_cate": sum(HISTORY_CATES, []),
              "target_item": TARGET_ITEMS, "target_cate": TARGET_CATES,
              "hist_brand": sum(brands, []), "target_brand": TARGET_BRANDS,
              "hist_seller": sum(HISTORY_SELLERS, []), "target_seller": TARGET_SELLERS,
              schema.TARGET_OBJECTIVE: TARGET_OBJECTIVES}
    values.update({SIDE_KEYS[f]: sum(HISTORY_SIDE[f], []) for f in side_fields})
    lengths = {k: [len(h) for h in HISTORY_ITEMS] for k in keys}
    lengths.update(target_item=[1, 1], target_cate=[1, 1], target_brand=[1, 1], target_seller=[1, 1],
                   target_objective=[1, 1])
    return KeyedJaggedTensor(keys=keys, values=torch.tensor(sum((values[k] for k in keys), [])),
                             lengths=torch.tensor(sum((lengths[k] for k in keys), []), dtype=torch.int32))


def build(variant: str, lookup: str, *extra: str):
    cfg = tiny_config("--model.variant", variant, "--model.d_att", str(D_ATT), "--model.d_rep", str(D_REP),
                      "--model.d_pos", str(D_POS), "--model.d_pos_att", str(D_POS_ATT), "--model.top_k", str(K),
                      "--model.mlp_hidden", "[4]", "--model.batch_norm", "false", "--model.aux_loss", "false",
                      "--sharding.lookup", lookup, *extra)
    torch.manual_seed(0)
    model = build_model(cfg, 10, 4, torch.device("cpu"), torch.device("cpu"),
                        num_behavior_types=NUM_BTYPES if "btype" in cfg.model.side_fields else None,
                        side_vocabulary=SIDE_VOCABULARY).model
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    return model.eval(), cfg.model


class ByHand:
    """The forward of one variant, written from the model's parameters."""

    def __init__(self, model, cfg) -> None:
        self.model, self.spec, self.side_fields = model, cfg.spec(), cfg.dense_side_fields
        self.semantic = cfg.semantic_side_fields
        self.layers = cfg.esu_layers
        self.add = cfg.temporal_merge == "add"
        self.k, self.hard_levels, self.hard_fill = cfg.top_k, cfg.hard_levels, cfg.hard_fill
        self.objectives, self.objective = cfg.position_objectives, 0  # the objective of the sample computed
        arch = model.sparse_arch
        self.tables = {}
        for collection in arch.collections.values():
            bags = getattr(collection, "embedding_bags", None) or collection.embeddings
            self.tables.update({name: module.weight.detach() for name, module in bags.items()})
        self.positions = {name: t.weight.detach() for name, t in arch.positions.items()} if arch.positions else {}
        self.projections = arch.projections
        self.side_tables = {field: {name: t.weight.detach() for name, t in by_group.items()}
                            for field, by_group in arch.side_tables.items()} if arch.side_tables else {}

    def group(self, role: str, side: str) -> str:
        layout = self.spec.layout
        return "shared" if layout == "shared" else role if layout == "decoupled" else f"{role}_{side}"

    def project(self, role: str, side: str, part: str, vector: torch.Tensor) -> torch.Tensor:
        if self.projections is None:
            return vector
        maps = self.projections[f"{role}_{side}"]
        linear = maps.position if part == "position" else maps.side[part] if part in self.side_tables \
            else maps.fields[part]
        return linear.weight.detach() @ vector

    def vector(self, role: str, side: str, item: int, cate: int, b: int, j=None) -> torch.Tensor:
        """[item; cate; seller; brand] (the semantic side fields in use) of behavior j of sample b, or of its
        target (j None); a seller or brand id 0 reads a zero vector."""
        g = self.group(role, side)
        ids = {"seller": (HISTORY_SELLERS, TARGET_SELLERS), "brand": (HISTORY_BRANDS, TARGET_BRANDS)}
        parts = [self.project(role, side, "item", self.tables[f"item_{g}"][item]),
                 self.project(role, side, "cate", self.tables[f"cate_{g}"][cate])]
        for f in self.semantic:
            i = ids[f][1][b] if j is None else ids[f][0][b][j]
            row = self.tables[f"{f}_{g}"][i]
            parts.append(self.project(role, side, f, row if i else torch.zeros_like(row)))
        return torch.cat(parts)

    def position(self, role: str, side: str, p: int) -> torch.Tensor:
        table = self.positions[self.group(role, side)]
        if self.objectives > 1:  # [O, P, d]: the sample's objective slice
            table = table[self.objective]
        return self.project(role, side, "position", table[p])

    def side(self, role: str, side: str, sides: dict) -> list:
        """The side fields' vectors (field order: gap, btype) of ids ``sides``; the target reads row 0."""
        return [self.project(role, side, f, self.side_tables[f][self.group(role, side)][sides.get(f, 0)])
                for f in self.side_fields]

    def merged(self, role: str, side: str, vector: torch.Tensor, sides: dict) -> torch.Tensor:
        """temporal_merge add: ``vector`` plus its side vectors (ids ``sides``); positions are not added."""
        return vector + sum(self.side(role, side, sides))

    def score(self, key: torch.Tensor, query: torch.Tensor, p: int, sides: dict, own_query: bool = False) -> float:
        """``own_query``: ``query`` is layer 2's q^(2), already built from ṽ^A under add (not merged again)."""
        if self.add:  # the keys carry the side rows: the dot product (or DIN's MLP) over ẽ, ṽ
            key = self.merged("att", "hist", key, sides)
            query = query if own_query else self.merged("att", "target", query, {})
            sides = None
        side_keys, side_queries = (self.side("att", "hist", sides), self.side("att", "target", {})) \
            if sides is not None else ([], [])
        if self.spec.score == "din_mlp":  # one MLP over the whole vectors: positions (unused by din) and sides
            key, query = torch.cat([key, *side_keys]), torch.cat([query, *side_queries])
            din = self.model.gsu.din.mlp
            first, prelu, second = din[0], din[1], din[2]
            x = torch.cat([query, key, query - key, query * key])
            hidden = first.weight.detach() @ x + first.bias.detach()
            hidden = torch.where(hidden > 0, hidden, prelu.weight.detach() * hidden)
            return float((second.weight.detach() @ hidden + second.bias.detach())[0] / key.numel())
        semantic = float(key @ query) / math.sqrt(key.numel())
        side_terms = sum(float(x_i @ x_0) / math.sqrt(x_i.numel()) for x_i, x_0 in zip(side_keys, side_queries))
        if not self.spec.positions:
            return semantic + side_terms
        p_i, p_0 = self.position("att", "hist", p), self.position("att", "target", 0)
        return semantic + float(p_i @ p_0) / math.sqrt(p_i.numel()) + side_terms

    def logit(self, b: int) -> float:
        self.objective = TARGET_OBJECTIVES[b] - 1
        items, cates = HISTORY_ITEMS[b], HISTORY_CATES[b]
        n = len(items)
        sides = [{f: HISTORY_SIDE[f][b][j] for f in self.side_fields} for j in range(n)]
        query = self.vector("att", "target", TARGET_ITEMS[b], TARGET_CATES[b], b)
        scores = [self.score(self.vector("att", "hist", items[j], cates[j], b, j), query, n - j, sides[j])
                  for j in range(n)]
        if self.spec.search == "hard":  # the best level code first, the most recent first within a code; then the fill
            ids = {"cate": (cates, TARGET_CATES[b]), "brand": (HISTORY_BRANDS[b], TARGET_BRANDS[b])}

            def code(j: int) -> int:
                bits = [int(ids[level][0][j] == ids[level][1] and (level == "cate" or ids[level][1] != 1))
                        for level in self.hard_levels]
                return int("".join(map(str, bits)), 2)

            matched = sorted((j for j in range(n) if code(j)), key=lambda j: (-code(j), -j))
            others = sorted((j for j in range(n) if not code(j)),
                            key=lambda j: -scores[j] if self.hard_fill == "soft" else -j)
            order = matched + others
        else:
            order = sorted(range(n), key=lambda j: -scores[j])
        chosen = order[:self.k]

        def weighted_sum(selection: list, weights: torch.Tensor) -> torch.Tensor:
            rep = [self.vector("rep", "hist", items[j], cates[j], b, j) for j in selection]
            if self.add:
                rep = [self.merged("rep", "hist", r, sides[j]) for r, j in zip(rep, selection)]
            if self.spec.positions:
                rep = [torch.cat([r, self.position("rep", "hist", n - j)]) for r, j in zip(rep, selection)]
            if not self.add:
                rep = [torch.cat([r, *self.side("rep", "hist", sides[j])]) for r, j in zip(rep, selection)]
            return sum(w * r for w, r in zip(weights, rep))

        weights = torch.softmax(torch.tensor([scores[j] for j in chosen]), dim=0)
        hs = [weighted_sum(chosen, weights)]
        if self.layers == 2:  # layer 2: a soft search of every behavior with q = W_t v_t^A + W_c c, c = sum w e^A
            keys = [self.vector("att", "hist", items[j], cates[j], b, j) for j in range(n)]
            target = query
            if self.add:  # ẽ^A and ṽ^A, the semantic vectors layer 1 scored
                keys = [self.merged("att", "hist", k, sides[j]) for j, k in enumerate(keys)]
                target = self.merged("att", "target", query, {})
            context = sum(w * keys[j] for w, j in zip(weights, chosen))
            stacked = self.model.stacked_query
            own = stacked.target.weight.detach() @ target + stacked.context.weight.detach() @ context
            # the keys without side rows: score() adds them (add) or their terms (concat)
            raw = [self.vector("att", "hist", items[j], cates[j], b, j) for j in range(n)]
            second_scores = [self.score(raw[j], own, n - j, sides[j], own_query=True) for j in range(n)]
            second = sorted(range(n), key=lambda j: -second_scores[j])[:self.k]
            hs.append(weighted_sum(second, torch.softmax(torch.tensor([second_scores[j] for j in second]), dim=0)))
        target = self.vector("rep", "target", TARGET_ITEMS[b], TARGET_CATES[b], b)
        if self.add:
            target = self.merged("rep", "target", target, {})
        if self.spec.positions:
            target = torch.cat([target, self.position("rep", "target", 0)])
        if not self.add:
            target = torch.cat([target, *self.side("rep", "target", {})])
        x = torch.cat([target, *hs, *(target * h for h in hs)] if self.spec.target_aware else [target, *hs])
        over = self.model.over_arch
        linear, prelu = over.mlp[0], over.mlp[1]
        hidden = linear.weight.detach() @ x + linear.bias.detach()
        hidden = torch.where(hidden > 0, hidden, prelu.weight.detach() * hidden)
        return float(over.final.weight.detach() @ hidden + over.final.bias.detach())


@pytest.mark.parametrize("lookup", ["sequence", "singleton_bags"])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variant_logits_match_the_math_written_out(variant, lookup):
    model, cfg = build(variant, lookup)
    with torch.no_grad():
        logits = model(features()).logits
    expected = ByHand(model, cfg)
    torch.testing.assert_close(logits, torch.tensor([expected.logit(0), expected.logit(1)]), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("lookup", ["sequence", "singleton_bags"])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_side_field_logits_match_the_math_written_out(variant, lookup):
    """Time gap and behavior type on, every variant (DIN: its MLP reads the side vectors too)."""
    model, cfg = build(variant, lookup, *SIDE_ARGS)
    with torch.no_grad():
        logits = model(features(cfg.dense_side_fields)).logits
    expected = ByHand(model, cfg)
    torch.testing.assert_close(logits, torch.tensor([expected.logit(0), expected.logit(1)]), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("lookup", ["sequence", "singleton_bags"])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_seller_and_brand_logits_match_the_math_written_out(variant, lookup):
    """Side fields seller and brand (and btype, time gap) on, every variant: four semantic blocks in every vector
    (twin_proj: a square map each; DIN: its MLP reads them), sample 0's seller 0 a zero block."""
    model, cfg = build(variant, lookup, *ALL_SIDE_ARGS)
    assert cfg.semantic_fields == ("item", "cate", "seller", "brand")
    with torch.no_grad():
        logits = model(features(cfg.dense_side_fields, semantic=cfg.semantic_side_fields)).logits
    expected = ByHand(model, cfg)
    torch.testing.assert_close(logits, torch.tensor([expected.logit(0), expected.logit(1)]), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("lookup", ["sequence", "singleton_bags"])
def test_two_semantic_fields_score_by_hand(lookup):
    """docs/side-info.md §4 item 4: item and category scores 0, brand vectors a_b = [1] and a_t = [1], seller
    vectors 0, n = 4, d_att = 1: the score is <a_b, a_t> / sqrt(4 * 1) = 0.5; a behavior of brand id 0 (padding)
    scores 0 whatever row 0 of the table holds."""
    model, cfg = build("dare", lookup, *SEMANTIC_ARGS, "--model.d_att", "1", "--model.d_pos_att", "1",
                       "--model.top_k", "4")
    arch = model.sparse_arch
    with torch.no_grad():
        for collection in arch.collections.values():
            for name, module in (getattr(collection, "embedding_bags", None) or collection.embeddings).items():
                module.weight.fill_(1.0 if name == "brand_att" else 0.0)
        arch.positions["att"].weight.zero_()
        table(model, "brand_att")[0] = 5.0  # padding: never read as a vector
        kjt = features(semantic=cfg.semantic_side_fields, brands=[[4, 0, 3, 2], [1]])  # sample 0's behavior 1: none
        scores = model.search(arch(kjt, representation=True), kjt).scores
    # sample 0: four behaviors, the second without a brand; sample 1: one behavior, the rest of its row padding
    torch.testing.assert_close(scores[0, :4], torch.tensor([0.5, 0.0, 0.5, 0.5]))
    assert scores[1, 0] == 0.5


@pytest.mark.parametrize("lookup", ["sequence", "singleton_bags"])
@pytest.mark.parametrize("fill", ["soft", "recent"])
def test_hierarchical_hard_search_logits_match_the_math_written_out(fill, lookup):
    """twin_hard with hard_levels [cate, brand], K = 3: the brand-and-category behavior, then the category one,
    then the fill; the two fills choose different behaviors here."""
    model, cfg = build("twin_hard", lookup, "--model.top_k", "3", "--model.hard_levels", "[cate, brand]",
                       "--model.hard_fill", fill)
    with torch.no_grad():
        logits = model(features(hard_fields=cfg.hard_side_fields)).logits
    expected = ByHand(model, cfg)
    torch.testing.assert_close(logits, torch.tensor([expected.logit(0), expected.logit(1)]), atol=1e-4, rtol=1e-4)


def test_the_two_fills_select_differently_here():
    """Sample 0's one free slot: the soft fill takes slot 1 (the higher score), the recent fill slot 3."""
    soft, cfg = build("twin_hard", "sequence", "--model.top_k", "3", "--model.hard_levels", "[cate, brand]",
                      "--model.hard_fill", "soft")
    recent, _ = build("twin_hard", "sequence", "--model.top_k", "3", "--model.hard_levels", "[cate, brand]")
    with torch.no_grad():
        chosen = [model.search(model.sparse_arch(features(hard_fields=cfg.hard_side_fields), representation=True),
                               features(hard_fields=cfg.hard_side_fields)).top_indices[0].tolist()
                  for model in (soft, recent)]
    assert chosen == [[0, 2, 1], [0, 2, 3]]


# Without side fields: the logits (and parameter counts) of this file's tiny model as the code before side fields
# computed them (commit a753744), per variant and lookup.
BEFORE_SIDE_FIELDS = {
    ('dare', 'sequence'): (3.771103858947754, -1.1479936838150024, 11),
    ('dare', 'singleton_bags'): (3.771103858947754, -1.1479936838150024, 11),
    ('din', 'sequence'): (5.850171089172363, 4.536208629608154, 12),
    ('din', 'singleton_bags'): (5.850171089172363, 4.536208629608154, 12),
    ('twin', 'sequence'): (-9.469481468200684, 5.463949203491211, 8),
    ('twin', 'singleton_bags'): (-9.469481468200684, 5.463949203491211, 8),
    ('twin_4e', 'sequence'): (7.371822357177734, 12.021065711975098, 17),
    ('twin_4e', 'singleton_bags'): (7.371822357177734, 12.021065711975098, 17),
    ('twin_hard', 'sequence'): (-1.5494623184204102, 5.463949203491211, 8),
    ('twin_hard', 'singleton_bags'): (-1.5494623184204102, 5.463949203491211, 8),
    ('twin_no_tr', 'sequence'): (-9.354949951171875, -3.418205976486206, 8),
    ('twin_no_tr', 'singleton_bags'): (-9.354949951171875, -3.418205976486206, 8),
    ('twin_proj', 'sequence'): (9.968735694885254, 8.07308292388916, 20),
    ('twin_proj', 'singleton_bags'): (9.968735694885254, 8.07308292388916, 20),
}


@pytest.mark.parametrize("lookup", ["sequence", "singleton_bags"])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_no_side_fields_is_the_model_before_them(variant, lookup):
    """side_fields [] and time_gap false: the same parameters (no side table, no side projection) drawn in the
    same order, and the same logits as before side fields existed."""
    model, _ = build(variant, lookup, "--model.side_fields", "[]", "--model.time_gap", "false")
    names = [name for name, _ in model.named_parameters()]
    assert not any("side" in name for name in names)
    with torch.no_grad():
        logits = model(features()).logits
    *expected, count = BEFORE_SIDE_FIELDS[(variant, lookup)]
    assert len(names) == count
    torch.testing.assert_close(logits, torch.tensor(expected), rtol=1e-6, atol=1e-6)


# Every variant but DIN (whose MLP score has no dot product to stack: refused by the config)
DOT_VARIANTS = sorted(v for v, spec in VARIANTS.items() if spec.score == "dot")


@pytest.mark.parametrize("side", [False, True])
@pytest.mark.parametrize("lookup", ["sequence", "singleton_bags"])
@pytest.mark.parametrize("variant", DOT_VARIANTS)
def test_stacked_tin_logits_match_the_math_written_out(variant, lookup, side):
    """Two ESU layers, without and with the side fields (their terms score layer 2's search too); sample 1's
    single behavior leaves one of the K slots masked in both layers."""
    model, cfg = build(variant, lookup, "--model.esu_layers", "2", *(SIDE_ARGS if side else ()))
    one_layer, _ = build(variant, lookup, *(SIDE_ARGS if side else ()))
    new = {n for n, _ in model.named_parameters()} - {n for n, _ in one_layer.named_parameters()}
    assert new == {"stacked_query.target.weight", "stacked_query.context.weight"}
    with torch.no_grad():
        logits = model(features(cfg.dense_side_fields)).logits
    expected = ByHand(model, cfg)
    torch.testing.assert_close(logits, torch.tensor([expected.logit(0), expected.logit(1)]), atol=1e-4, rtol=1e-4)


# With side fields and the aux head on (full, and bounded to 2 behaviors): the logits and aux logits in training
# mode (full head, then bounded head), the evaluation logits and the parameter count of this file's tiny model as
# the code before model.esu_layers computed them (commit 97f4c8c), per variant and lookup.
BEFORE_STACKING = {
    ('dare', 'sequence'): (
        -5.904790878295898, -3.360417127609253, -14.63089656829834, -8.547176361083984, -5.904790878295898,
        -3.360417127609253, -14.959661483764648, -8.547176361083984, -5.904790878295898, -3.360417127609253,
        20,
    ),
    ('dare', 'singleton_bags'): (
        -5.904790878295898, -3.360417127609253, -14.63089656829834, -8.547176361083984, -5.904790878295898,
        -3.360417127609253, -14.959661483764648, -8.547176361083984, -5.904790878295898, -3.360417127609253,
        20,
    ),
    ('din', 'sequence'): (
        5.307979106903076, -12.910196304321289, -0.9108081459999084, 6.463587284088135, 5.307979106903076,
        -12.910196304321289, 1.835160493850708, 6.463587284088135, 5.307979106903076, -12.910196304321289,
        19,
    ),
    ('din', 'singleton_bags'): (
        5.307979106903076, -12.910196304321289, -0.9108081459999084, 6.463587284088135, 5.307979106903076,
        -12.910196304321289, 1.835160493850708, 6.463587284088135, 5.307979106903076, -12.910196304321289,
        19,
    ),
    ('twin', 'sequence'): (
        1.3766844272613525, -6.5018815994262695, -2.9765267372131348, -18.665874481201172, 1.3766844272613525,
        -6.5018815994262695, -5.212231159210205, -18.665874481201172, 1.3766844272613525, -6.5018815994262695,
        15,
    ),
    ('twin', 'singleton_bags'): (
        1.3766844272613525, -6.5018815994262695, -2.9765267372131348, -18.665874481201172, 1.3766844272613525,
        -6.5018815994262695, -5.212231159210205, -18.665874481201172, 1.3766844272613525, -6.5018815994262695,
        15,
    ),
    ('twin_4e', 'sequence'): (
        23.33565330505371, 31.357755661010742, 3.572725534439087, -31.872331619262695, 23.33565330505371,
        31.357755661010742, -5.069469451904297, -31.872331619262695, 23.33565330505371, 31.357755661010742,
        30,
    ),
    ('twin_4e', 'singleton_bags'): (
        23.33565330505371, 31.357755661010742, 3.572725534439087, -31.872331619262695, 23.33565330505371,
        31.357755661010742, -5.069469451904297, -31.872331619262695, 23.33565330505371, 31.357755661010742,
        30,
    ),
    ('twin_hard', 'sequence'): (
        -4.127484321594238, -6.5018815994262695, -2.9765267372131348, -18.665874481201172, -4.127484321594238,
        -6.5018815994262695, -5.212231159210205, -18.665874481201172, -4.127484321594238, -6.5018815994262695,
        15,
    ),
    ('twin_hard', 'singleton_bags'): (
        -4.127484321594238, -6.5018815994262695, -2.9765267372131348, -18.665874481201172, -4.127484321594238,
        -6.5018815994262695, -5.212231159210205, -18.665874481201172, -4.127484321594238, -6.5018815994262695,
        15,
    ),
    ('twin_no_tr', 'sequence'): (
        -1.888461947441101, -2.098627805709839, -0.7192768454551697, 11.067023277282715, -1.888461947441101,
        -2.098627805709839, -0.7827305197715759, 11.067023277282715, -1.888461947441101, -2.098627805709839,
        15,
    ),
    ('twin_no_tr', 'singleton_bags'): (
        -1.888461947441101, -2.098627805709839, -0.7192768454551697, 11.067023277282715, -1.888461947441101,
        -2.098627805709839, -0.7827305197715759, 11.067023277282715, -1.888461947441101, -2.098627805709839,
        15,
    ),
    ('twin_proj', 'sequence'): (
        -23.672473907470703, -28.19120979309082, -4.343516826629639, -22.30608558654785, -23.672473907470703,
        -28.19120979309082, -1.344886302947998, -22.30608558654785, -23.672473907470703, -28.19120979309082,
        35,
    ),
    ('twin_proj', 'singleton_bags'): (
        -23.672473907470703, -28.19120979309082, -4.343516826629639, -22.30608558654785, -23.672473907470703,
        -28.19120979309082, -1.344886302947998, -22.30608558654785, -23.672473907470703, -28.19120979309082,
        35,
    ),
}


@pytest.mark.parametrize("layers", [None, "1"])
@pytest.mark.parametrize("lookup", ["sequence", "singleton_bags"])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_one_esu_layer_is_the_model_before_stacking(variant, lookup, layers):
    """esu_layers left at its default or set to 1: the parameters and the main and aux outputs (both aux heads)
    of the model before the axis existed."""
    outputs = []
    for aux in ["null", "2"]:
        args = (*SIDE_ARGS, "--model.aux_loss", "true", "--model.aux_behaviors", aux)
        model, cfg = build(variant, lookup, *args, *(("--model.esu_layers", layers) if layers else ()))
        x = features(cfg.dense_side_fields)
        with torch.no_grad():
            out = model.train()(x)
        outputs += [*out.logits.tolist(), *out.aux_logits.tolist()]
    with torch.no_grad():
        outputs += model.eval()(x).logits.tolist()
    *expected, count = BEFORE_STACKING[(variant, lookup)]
    assert len(list(model.parameters())) == count
    torch.testing.assert_close(torch.tensor(outputs), torch.tensor(expected), rtol=1e-6, atol=1e-6)
@pytest.mark.parametrize("lookup", ["sequence", "singleton_bags"])
def test_default_hard_levels_are_the_hard_search_before_them(lookup):
    """hard_levels [cate] with the recent fill, set explicitly: twin_hard's logits as recorded before hierarchical
    hard search existed, bit for bit, from the same KJT (no brand or seller key)."""
    model, _ = build("twin_hard", lookup, "--model.hard_levels", "[cate]", "--model.hard_fill", "recent")
    with torch.no_grad():
        logits = model(features()).logits
    *expected, _ = BEFORE_SIDE_FIELDS[("twin_hard", lookup)]
    torch.testing.assert_close(logits, torch.tensor(expected), rtol=0, atol=0)


@pytest.mark.parametrize("lookup", ["sequence", "singleton_bags"])
@pytest.mark.parametrize("variant", DOT_VARIANTS)
def test_seller_and_brand_with_stacked_tin_and_hard_levels_match_the_math_written_out(variant, lookup):
    """Two ESU layers (layer 2's keys are the four-block attention vectors, scaled by sqrt(4 * d_att)) and, for
    twin_hard, hard levels [cate, brand] reading the same brand key as the brand side field."""
    hard = ("--model.top_k", "3", "--model.hard_levels", "[cate, brand]") if variant == "twin_hard" else ()
    model, cfg = build(variant, lookup, *SEMANTIC_ARGS, "--model.esu_layers", "2", *hard)
    with torch.no_grad():
        logits = model(features(hard_fields=cfg.hard_side_fields, semantic=cfg.semantic_side_fields)).logits
    expected = ByHand(model, cfg)
    torch.testing.assert_close(logits, torch.tensor([expected.logit(0), expected.logit(1)]), atol=1e-4, rtol=1e-4)


ADD_ARGS = ("--model.temporal_merge", "add")
# (variant, the extra overrides) of the add merge: with the dense side fields, with two ESU layers, and with seller
# and brand too (n = 4: every side row 4 * d wide); DIN's MLP score has no layer 2
ADD_CASES = [(variant, extra) for variant in sorted(VARIANTS)
             for extra in (SIDE_ARGS, (*SIDE_ARGS, "--model.esu_layers", "2"), ALL_SIDE_ARGS,
                           (*ALL_SIDE_ARGS, "--model.esu_layers", "2"))
             if VARIANTS[variant].score == "dot" or extra in (SIDE_ARGS, ALL_SIDE_ARGS)]


@pytest.mark.parametrize("lookup", ["sequence", "singleton_bags"])
@pytest.mark.parametrize("variant,extra", ADD_CASES)
def test_temporal_add_logits_match_the_math_written_out(variant, extra, lookup):
    """temporal_merge add: the side vectors are added to [item; cate; ...] on both roles and the positions keep
    their term and block, every variant (projections: each part through its own map, then the sum; DIN: its MLP
    over ẽ and ṽ; the shared layout: one table set); with seller and brand the rows span their blocks too (sample
    0's seller 0: a zero block plus the side rows)."""
    model, cfg = build(variant, lookup, *ADD_ARGS, *extra)
    with torch.no_grad():
        logits = model(features(cfg.dense_side_fields, semantic=cfg.semantic_side_fields)).logits
    expected = ByHand(model, cfg)
    torch.testing.assert_close(logits, torch.tensor([expected.logit(0), expected.logit(1)]), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("side_args", [SIDE_ARGS, ALL_SIDE_ARGS])
@pytest.mark.parametrize("fill", ["soft", "recent"])
def test_temporal_add_with_hierarchical_hard_search_matches_the_math_written_out(fill, side_args):
    """Hard search ranks by level code as before; the softmax weights and the fill by score read ẽ's scores (with
    side field brand, the level and the semantic field read one brand key)."""
    model, cfg = build("twin_hard", "sequence", "--model.top_k", "3", "--model.hard_levels", "[cate, brand]",
                       "--model.hard_fill", fill, *ADD_ARGS, *side_args)
    with torch.no_grad():
        x = features(cfg.dense_side_fields, cfg.hard_side_fields, cfg.semantic_side_fields)
        logits = model(x).logits
    expected = ByHand(model, cfg)
    torch.testing.assert_close(logits, torch.tensor([expected.logit(0), expected.logit(1)]), atol=1e-4, rtol=1e-4)


def scores_by_hand_tables(merge: str, zero_gap: bool = False, positions: bool = False) -> float:
    """docs/side-info.md §4 item 3: DARE with d_att = 1 and the time gap, one behavior (position 1, gap bucket 3)
    and its target, e_i = [1, 0], v_t = [1, 0], X^A[3] = [1, 0], X^A[0] = [0, 1] (both rows 0 with ``zero_gap``),
    every position row 0, or P^A[1] = P^A[0] = [1, 0] with ``positions``; the behavior's score."""
    cfg = tiny_config("--model.d_att", "1", "--model.d_pos_att", "2", "--model.temporal_merge", merge,
                      "--model.time_gap", "true", "--model.top_k", "1", "--model.aux_loss", "false",
                      "--sharding.lookup", "sequence")
    model = build_model(cfg, 10, 4, torch.device("cpu"), torch.device("cpu")).model.eval()
    x = KeyedJaggedTensor(keys=[*SPARSE_KEYS, SIDE_KEYS["gap"]], values=torch.tensor([3, 1, 5, 2, 3]),
                          lengths=torch.tensor([1, 1, 1, 1, 1], dtype=torch.int32))
    att = model.sparse_arch.collections["att"].embeddings
    with torch.no_grad():
        att["item_att"].weight[3], att["item_att"].weight[5] = 1.0, 1.0  # the item parts of e_i and v_t
        att["cate_att"].weight[1], att["cate_att"].weight[2] = 0.0, 0.0  # their category parts
        gap = model.sparse_arch.side_tables["gap"]["att"].weight
        assert gap.shape[1] == 2  # concat: d_pos_att; add: n * d_att
        gap.zero_()
        if not zero_gap:
            gap[3], gap[0] = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
        position = model.sparse_arch.positions["att"].weight
        assert position.shape == (cfg.data.max_len + 1, 2)  # d_pos_att under both merges
        position.zero_()
        if positions:
            position[1], position[0] = torch.tensor([1.0, 0.0]), torch.tensor([1.0, 0.0])
        return float(model.search(model.sparse_arch(x, representation=True), x).scores[0, 0])


def test_concat_and_add_scores_by_hand():
    """concat: <e_i, v_t>/sqrt(2) + <X[3], X[0]>/sqrt(d_pos_att = 2) = 0.7071 + 0. add: <e_i + X[3], v_t + X[0]>
    /sqrt(n * d_att = 2) = <[2, 0], [1, 1]>/sqrt(2) = 1.4142; the difference, 0.7071, is the cross term
    <X[3], v_t> = 1 at the semantic scale 1/sqrt(2). With the gap rows zero both are the semantic 0.7071. The
    position term <P[1], P[0]>/sqrt(d_pos_att) = 0.7071 is its own under both merges."""
    assert scores_by_hand_tables("concat") == pytest.approx(1 / math.sqrt(2), abs=1e-6)
    assert scores_by_hand_tables("add") == pytest.approx(2 / math.sqrt(2), abs=1e-6)
    assert scores_by_hand_tables("add", zero_gap=True) == scores_by_hand_tables("concat", zero_gap=True) \
        == pytest.approx(1 / math.sqrt(2), abs=1e-6)
    for merge in ("concat", "add"):
        assert scores_by_hand_tables(merge, positions=True) - scores_by_hand_tables(merge) == \
            pytest.approx(1 / math.sqrt(2), abs=1e-6)


def heads_features(items, cates, target_item, target_cate, btypes=None, brands=None,
                   target_brand=None) -> KeyedJaggedTensor:
    """One sample: a history (oldest first) with behavior types or brands, and its target (with its brand)."""
    n = len(items)
    keys, values, lengths = [*SPARSE_KEYS], [*items, *cates, target_item, target_cate], [n, n, 1, 1]
    if btypes is not None:
        keys, values, lengths = keys + [SIDE_KEYS["btype"]], values + list(btypes), lengths + [n]
    if brands is not None:
        keys, values, lengths = keys + list(HARD_KEYS["brand"]), values + [*brands, target_brand], lengths + [n, 1]
    return KeyedJaggedTensor(keys=keys, values=torch.tensor(values), lengths=torch.tensor(lengths, dtype=torch.int32))


def table(model, name: str) -> torch.Tensor:
    """A sharded table's weight, by table name (``item_att``, ``cate_rep``, ...), either lookup."""
    for collection in model.sparse_arch.collections.values():
        bags = getattr(collection, "embedding_bags", None) or collection.embeddings
        if name in bags:
            return bags[name].weight
    raise KeyError(name)


PV, CART = 1, 2  # behavior type ids


@pytest.mark.parametrize("second", ["btype", "brand"])
@pytest.mark.parametrize("lookup", ["sequence", "singleton_bags"])
def test_two_attention_heads_by_hand(lookup, second):
    """docs/side-info.md §4 item 7: heads [[item, cate], [btype]], N = 3, K = 1, d_att = d_pos_att = 1. Head 1's
    scores are the items' attention values 0, 2, 1 (the target's item value sqrt(2) cancels the scale
    1/sqrt(2 * 1), its cate value 0 drops the cate term): slot 1. Head 2's are the type biases <Bt[type], Bt[0]>
    with Bt[0] = 1, Bt[pv] = 0, Bt[cart] = 2 over types [cart, pv, pv]: 2, 0, 0, slot 0. With heads [[item, cate],
    [brand]] (side field brand, a semantic field: n = 3) head 1 keeps its own scale 1/sqrt(2 * 1) and head 2 scores
    brand's column block only, <a_b, a_t> / sqrt(1 * 1) with A[5] = 2, A[3] = 0 and the target's A[4] = 1 over
    brands [5, 3, 3]: 2, 0, 0, slot 0. K = 1 gives each weight 1, so h^(1) = e^R_1 and h^(2) = e^R_0, the full
    fused vectors [item; cate; position; btype] or [item; cate; brand; position], and the over-arch input is
    [v_t; h^(1); h^(2); v_t * h^(1); v_t * h^(2)], (1 + 2 * 2) W_R wide."""
    model, cfg = build("dare", lookup, "--model.d_att", "1", "--model.d_pos_att", "1", "--model.top_k", "1",
                       "--model.side_fields", f"[{second}]", "--model.attention_heads", f"[[item, cate], [{second}]]")
    btype = second == "btype"
    with torch.no_grad():
        item_att, cate_att = table(model, "item_att"), table(model, "cate_att")
        item_att[[1, 2, 3, 4]] = torch.tensor([[0.0], [2.0], [1.0], [math.sqrt(2)]])
        cate_att[2] = 0.0  # the target's category
        if btype:
            model.sparse_arch.side_tables["btype"]["att"].weight[[0, PV, CART]] = torch.tensor([[1.0], [0.0], [2.0]])
        else:
            table(model, "brand_att")[[4, 5, 3]] = torch.tensor([[1.0], [2.0], [0.0]])
    # the behaviors' ids of the second head's field, and the target's (btype: row 0)
    ids, target_id = ([CART, PV, PV], 0) if btype else ([5, 3, 3], 4)
    x = heads_features([1, 2, 3], [1, 3, 1], 4, 2, btypes=ids) if btype else \
        heads_features([1, 2, 3], [1, 3, 1], 4, 2, brands=ids, target_brand=target_id)
    with torch.no_grad():
        assert model.search(model.sparse_arch(x), x).top_indices.tolist() == [[1, 0]]
        over_arch_input = []
        model.over_arch.register_forward_pre_hook(lambda _, args: over_arch_input.append(args[0]))
        model(x)
    item_rep, cate_rep = table(model, "item_rep").detach(), table(model, "cate_rep").detach()
    pos_rep = model.sparse_arch.positions["rep"].weight.detach()
    second_rep = model.sparse_arch.side_tables["btype"]["rep"].weight.detach() if btype else \
        table(model, "brand_rep").detach()

    def fused(item, cate, position, field_id):
        semantic = [item_rep[item], cate_rep[cate]]
        return torch.cat([*semantic, pos_rep[position], second_rep[field_id]] if btype else
                         [*semantic, second_rep[field_id], pos_rep[position]])

    # slot j sits at position 3 - j
    target, h1, h2 = fused(4, 2, 0, target_id), fused(2, 3, 2, ids[1]), fused(1, 1, 3, ids[0])
    width = 2 * D_REP + D_POS + (D_POS if btype else D_REP)
    assert over_arch_input[0].shape == (1, (1 + 2 * 2) * width)
    torch.testing.assert_close(over_arch_input[0][0], torch.cat([target, h1, h2, target * h1, target * h2]))


def test_equal_head_scores_select_the_more_recent_behavior():
    """A head of behavior types only scores four behaviors of one type equally: K = 2 selects the two most recent,
    newest first (the tie rule); with one cart (bias sqrt(3) over pv's 0) among them, the cart and then the most
    recent pv."""
    model, _ = build("dare", "sequence", "--model.side_fields", "[btype]", "--model.attention_heads",
                     "[[btype], [item]]")
    with torch.no_grad():
        model.sparse_arch.side_tables["btype"]["att"].weight[[0, PV, CART]] = torch.tensor([[1.0], [0.0], [1.0]])
        for types, chosen in [([PV, PV, PV, PV], [3, 2]), ([PV, CART, PV, PV], [1, 3])]:
            x = heads_features([1, 2, 3, 5], [1, 2, 1, 3], 6, 2, btypes=types)
            selected = model.search(model.sparse_arch(x), x).top_indices
            assert selected[0, :K].tolist() == chosen


@pytest.mark.parametrize("side_args,head", [(SIDE_ARGS, "[item, cate, pos, gap, btype]"),
                                            (ALL_SIDE_ARGS, "[brand, item, pos, seller, gap, btype, cate]")])
@pytest.mark.parametrize("variant", ["dare", "twin", "twin_no_tr", "twin_4e", "twin_proj"])
def test_one_head_of_every_field_is_the_model_without_heads(variant, side_args, head):
    """attention_heads [[item, cate, pos, gap, btype]] (with seller and brand too, in any order: the head's query
    weights cover all four column blocks at the scale 1/sqrt(4 * d_att)): the same score, selection and output as
    null (up to the order of the float sums), from the same parameters."""
    heads, _ = build(variant, "sequence", *side_args, "--model.attention_heads", f"[{head}]")
    null, cfg = build(variant, "sequence", *side_args)
    with torch.no_grad():
        x = features(cfg.dense_side_fields, semantic=cfg.semantic_side_fields)
        torch.testing.assert_close(heads(x).logits, null(x).logits)


# Every variant with positions (DIN has none: refused by the config)
POSITION_VARIANTS = sorted(v for v, spec in VARIANTS.items() if spec.positions)


@pytest.mark.parametrize("side_args", [(), SIDE_ARGS, ALL_SIDE_ARGS, (*SIDE_ARGS, *ADD_ARGS)],
                         ids=["no_side", "gap_btype", "seller_brand", "gap_btype_add"])
@pytest.mark.parametrize("lookup", ["sequence", "singleton_bags"])
@pytest.mark.parametrize("variant", POSITION_VARIANTS)
def test_target_decoupled_position_logits_match_the_math_written_out(variant, lookup, side_args):
    """position_objectives 2, without and with the side fields (whose tables stay shared; seller and brand, semantic
    fields, leave the positions as they are; under temporal_merge add the positions keep their own term): sample 0
    reads slice 2 of every position table, sample 1 slice 1; slices of shape [2, N + 1, d], no other parameter
    changes."""
    model, cfg = build(variant, lookup, "--model.position_objectives", "2", *side_args)
    one, _ = build(variant, lookup, *side_args)
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    assert shapes == {n: (2, *p.shape) if ".positions." in n else tuple(p.shape) for n, p in one.named_parameters()}
    with torch.no_grad():
        logits = model(features(cfg.dense_side_fields, semantic=cfg.semantic_side_fields, objectives=True)).logits
        # each sample reads its own slice: swapping the objectives changes both logits
        swapped = features(cfg.dense_side_fields, semantic=cfg.semantic_side_fields, objectives=True)
        values = swapped.values().clone()
        values[-2:] = values[-2:].flip(0)
        other = model(KeyedJaggedTensor(keys=swapped.keys(), values=values, lengths=swapped.lengths())).logits
    expected = ByHand(model, cfg)
    torch.testing.assert_close(logits, torch.tensor([expected.logit(0), expected.logit(1)]), atol=1e-4, rtol=1e-4)
    assert (other - logits).abs().min() > 1e-3

"""GSU / ESU / over-arch math on inputs small enough to check by hand."""

from __future__ import annotations

import math

import torch

from dare_rec.modules.embeddings import SequenceEmbeddings
from dare_rec.modules.over_arch import OverArch
from dare_rec.modules.search import (ExactSearchUnit, FullSequenceAttention, GeneralSearchUnit, StackedQuery,
                                     masked_softmax)
from dare_rec.modules.variants import VARIANTS
from dare_rec.ops import GsuOutput, Kernel

CPU = torch.device("cpu")


def embeddings(offsets, att_hist=None, att_target=None, rep_hist=None, positions=None, att_positions=None):
    """SequenceEmbeddings with only the fields a test reads; position vectors given as rows (p = 0, 1, ...)."""
    table = None if positions is None else torch.tensor(positions, dtype=torch.float32)
    att_table = None if att_positions is None else torch.tensor(att_positions, dtype=torch.float32)
    return SequenceEmbeddings(
        att_hist=att_hist, att_target=att_target, rep_hist=rep_hist, rep_target=None,
        offsets=torch.tensor(offsets), att_positions=att_table,
        att_target_position=None if att_table is None else att_table[0],
        rep_positions=table, rep_target_position=None if table is None else table[0])


def gsu(variant="twin", att_width=2, d_pos=1, top_k=1, max_len=2) -> GeneralSearchUnit:
    return GeneralSearchUnit(VARIANTS[variant], att_width, d_pos, top_k, max_len, Kernel.PYTORCH, CPU)


def test_masked_softmax_by_hand():
    w = masked_softmax(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[True, True, False]]))
    e = math.exp(1) + math.exp(2)
    torch.testing.assert_close(w, torch.tensor([[math.exp(1) / e, math.exp(2) / e, 0.0]]))


def test_masked_softmax_all_masked_is_zero_not_nan():
    w = masked_softmax(torch.tensor([[5.0, -1.0]]), torch.tensor([[False, False]]))
    assert torch.equal(w, torch.zeros(1, 2))


def test_gsu_scores_by_hand():
    # one sample, history of 2 behaviors (oldest first), attention width 2, d_pos 1
    att_hist = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    att_target = torch.tensor([[3.0, 1.0]])
    emb = embeddings([0, 2], att_hist, att_target, att_positions=[[2.0], [0.5], [-1.0]])  # p0 = 2, p1 = .5, p2 = -1
    out = gsu()(emb)
    # slot 0 is 2 behaviors before the target (pos 2), slot 1 is the most recent (pos 1)
    s0 = 3.0 / math.sqrt(2) + (-1.0 * 2.0) / 1.0
    s1 = 2.0 / math.sqrt(2) + (0.5 * 2.0) / 1.0
    torch.testing.assert_close(out.scores, torch.tensor([[s0, s1]]))
    assert out.top_indices.tolist() == [[1]] and out.top_mask.tolist() == [[True]]


def test_esu_by_hand():
    # history of 3 behaviors with 1-d representations 10, 20, 30; selected slots 2 and 0 with scores 0 and ln 3
    rep_hist = torch.tensor([[10.0], [20.0], [30.0]])
    scores = torch.tensor([[math.log(3.0), -5.0, 0.0]])
    gsu = GsuOutput(scores, torch.tensor([[2, 0]]), torch.tensor([[True, True]]))
    emb = embeddings([0, 3], rep_hist=rep_hist, positions=[[0.0], [1.0], [2.0], [3.0]])  # position p -> [p]
    h = ExactSearchUnit(Kernel.PYTORCH)(gsu, emb)
    # weights: softmax(0, ln 3) = (1/4, 3/4) on slots 2 (pos 1) and 0 (pos 3)
    torch.testing.assert_close(h, torch.tensor([[0.25 * 30 + 0.75 * 10, 0.25 * 1 + 0.75 * 3]]))


def test_esu_ignores_masked_selection():
    rep_hist = torch.tensor([[10.0]])
    gsu = GsuOutput(torch.tensor([[0.0, 0.0]]), torch.tensor([[0, 1]]), torch.tensor([[True, False]]))
    h = ExactSearchUnit(Kernel.PYTORCH)(gsu, embeddings([0, 1], rep_hist=rep_hist, positions=[[0.0], [1.0], [2.0]]))
    torch.testing.assert_close(h, torch.tensor([[10.0, 1.0]]))


def test_full_sequence_attention_by_hand():
    # two behaviors, equal scores -> weights 1/2 each; padding column ignored
    rep_hist = torch.tensor([[2.0], [4.0]])
    scores = torch.tensor([[1.0, 1.0, 99.0]])
    emb = embeddings([0, 2], rep_hist=rep_hist, positions=[[0.0], [1.0], [2.0], [3.0]])
    h = FullSequenceAttention(Kernel.PYTORCH)(scores, emb)
    torch.testing.assert_close(h, torch.tensor([[3.0, 1.5]]))


def test_full_sequence_attention_weights_each_position_by_its_behavior():
    # ragged rows (3 behaviors, 1 behavior), unequal weights: slot j of a history of n sits at position n - j
    rep_hist = torch.tensor([[1.0], [2.0], [3.0], [5.0]])
    scores = torch.tensor([[0.0, math.log(2.0), math.log(3.0)], [7.0, 99.0, 99.0]])
    positions = [[0.0], [10.0], [20.0], [30.0]]  # position p -> [10 p]
    h = FullSequenceAttention(Kernel.PYTORCH)(scores, embeddings([0, 3, 4], rep_hist=rep_hist, positions=positions))
    w = torch.tensor([1.0, 2.0, 3.0]) / 6  # softmax(0, ln 2, ln 3) over slots 0, 1, 2 at positions 3, 2, 1
    expected_first = [float(w @ torch.tensor([1.0, 2.0, 3.0])), float(w @ torch.tensor([30.0, 20.0, 10.0]))]
    torch.testing.assert_close(h, torch.tensor([expected_first, [5.0, 10.0]]))


def test_empty_history_gives_zero_aggregation():
    gsu = GsuOutput(torch.full((1, 2), torch.finfo(torch.float32).min), torch.tensor([[0, 1]]),
                    torch.tensor([[False, False]]))
    emb = embeddings([0, 0], rep_hist=torch.zeros(0, 1), positions=[[0.0], [1.0], [2.0]])
    h = ExactSearchUnit(Kernel.PYTORCH)(gsu, emb)
    assert torch.equal(h, torch.zeros(1, 2))


def test_stacked_tin_layer_two_query_by_hand():
    """docs/side-info.md §4 item 8: K = 2 selected of three slots, D_att = 2, e^A = [1, 0] and [0, 1] (the third,
    unselected slot's large key changes nothing), v_t^A = [2, 0]; W_t swaps the two columns, W_c = I / 2."""
    stacked = StackedQuery(2, Kernel.PYTORCH, CPU)
    with torch.no_grad():
        stacked.target.weight.copy_(torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
        stacked.context.weight.copy_(torch.eye(2) / 2)
    emb = embeddings([0, 3], torch.tensor([[1.0, 0.0], [0.0, 1.0], [9.0, 9.0]]), torch.tensor([[2.0, 0.0]]))
    first = GsuOutput(torch.tensor([[2.0 / math.sqrt(2), 0.0, 9.0]]), torch.tensor([[0, 1]]),
                      torch.tensor([[True, True]]))
    # w^(1) = softmax([1.4142, 0]) = [0.8044, 0.1956] = c^(1); q = W_t v_t + c / 2 = [0, 2] + [0.4022, 0.0978]
    torch.testing.assert_close(stacked(first, emb), torch.tensor([[0.4022, 2.0978]]), atol=1e-4, rtol=0)
    # a history with nothing selected: c^(1) = 0, q = W_t v_t
    nothing = GsuOutput(first.scores, first.top_indices, torch.tensor([[False, False]]))
    torch.testing.assert_close(stacked(nothing, emb), torch.tensor([[0.0, 2.0]]))


def test_stacked_tin_layer_two_searches_the_whole_history_with_its_query():
    """Layer 2's search (GeneralSearchUnit with ``query``) scores every behavior with q^(2), adds the targets'
    position terms, and may select a behavior layer 1 did not: hard search's levels rank layer 1 only."""
    unit = gsu("twin_hard", top_k=1, max_len=3)
    att_hist = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    emb = embeddings([0, 3], att_hist, torch.tensor([[1.0, 0.0]]), att_positions=[[1.0], [0.5], [0.0], [0.0]])
    first = unit(emb, torch.tensor([[7], [3], [3]]), torch.tensor([[3]]))
    assert first.top_indices.tolist() == [[2]]  # hard search: the most recent behavior of category 3
    second = unit(emb, query=torch.tensor([[0.0, 4.0]]))
    # s_j = <e_j, q> / sqrt(2) + <p_j, p_0> with p = 3 - j: [0 + 0, 2.8284 + 0, -2.8284 + 0.5]
    torch.testing.assert_close(second.scores, torch.tensor([[0.0, 4 / math.sqrt(2), -4 / math.sqrt(2) + 0.5]]))
    assert second.top_indices.tolist() == [[1]]


def test_two_layer_full_sequence_attention_is_the_two_layer_esu_over_every_behavior():
    """The aux head's stacked layers: with every behavior selected by both searches, the ESU's two weighted
    sums, layer 2's weights a softmax of its own search's scores."""
    g = torch.Generator().manual_seed(0)
    att_hist, rep_hist = torch.randn(4, 2, generator=g), torch.randn(4, 3, generator=g)
    emb = embeddings([0, 3, 4], att_hist, torch.randn(2, 2, generator=g), rep_hist,
                     positions=[[0.0], [10.0], [20.0], [30.0]])
    scores, second_scores = torch.randn(2, 3, generator=g), torch.randn(2, 3, generator=g)
    mask = torch.tensor([[True] * 3, [True, False, False]])
    every = GsuOutput(scores, torch.tensor([[2, 0, 1], [0, 1, 2]]), mask)
    every_again = GsuOutput(second_scores, torch.tensor([[1, 2, 0], [0, 1, 2]]), mask)
    h = FullSequenceAttention(Kernel.PYTORCH, layers=2)(scores, emb, second_scores)
    torch.testing.assert_close(h, ExactSearchUnit(Kernel.PYTORCH, layers=2)(every, emb, second=every_again))
    torch.testing.assert_close(h[:, :4], FullSequenceAttention(Kernel.PYTORCH)(scores, emb))  # layer 1 first
    torch.testing.assert_close(h[:, 4:], FullSequenceAttention(Kernel.PYTORCH)(second_scores, emb))
    assert not torch.allclose(h[0, :4], h[0, 4:])


def test_over_arch_by_hand():
    arch = OverArch(in_features=2, hidden=[2], batch_norm=False, device=CPU)
    (first, prelu), last = arch.mlp, arch.final
    with torch.no_grad():
        first.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        first.bias.zero_()
        prelu.weight.fill_(0.25)
        last.weight.copy_(torch.tensor([[1.0, 2.0]]))
        last.bias.fill_(0.5)
    # PReLU keeps 3, scales -4 by 0.25 -> 1 * 3 + 2 * (-1) + 0.5
    torch.testing.assert_close(arch(torch.tensor([[3.0, -4.0]])), torch.tensor([1.5]))


def test_hard_search_selects_most_recent_same_category_then_fills_with_most_recent_others():
    # one sample, 6 behaviors oldest -> newest with categories 7 3 7 5 7 4; target category 7; K = 4
    hist_cate = torch.tensor([[7], [3], [7], [5], [7], [4]])  # [L, H]: one level, cate
    att_hist = torch.randn(6, 2)
    emb = embeddings([0, 6], att_hist, torch.randn(1, 2), att_positions=[[0.1]] * 9)
    out = gsu("twin_hard", top_k=4, max_len=8)(emb, hist_cate, torch.tensor([[7]]))
    assert sorted(out.top_indices[0][out.top_mask[0]].tolist()) == [0, 2, 4, 5]  # 3 of category 7 + newest other
    # with at least K matches only same-category behaviors are kept, the most recent ones
    out = gsu("twin_hard", top_k=2, max_len=8)(emb, hist_cate, torch.tensor([[7]]))
    assert sorted(out.top_indices[0].tolist()) == [2, 4] and out.top_mask.all()
    # the softmax weights still come from the attention scores of the selected behaviors
    soft = gsu("twin", top_k=2, max_len=8)(emb)
    torch.testing.assert_close(out.scores, soft.scores)


def test_hard_search_never_selects_padding():
    emb = embeddings([0, 2, 2], torch.randn(2, 2), torch.randn(2, 2), att_positions=[[0.1]] * 5)
    out = gsu("twin_hard", top_k=3, max_len=4)(emb, torch.tensor([[1], [2]]), torch.tensor([[2], [2]]))
    assert out.top_mask.sum(1).tolist() == [2, 0]


def test_din_scores_through_its_mlp():
    torch.manual_seed(0)
    unit = gsu("din", att_width=2, top_k=2, max_len=3)
    att_hist, att_target = torch.randn(3, 2), torch.randn(1, 2)
    out = unit(embeddings([0, 3], att_hist, att_target), torch.zeros(3), torch.zeros(1))
    q = att_target.expand(3, -1)
    expected = unit.din.mlp(torch.cat([q, att_hist, q - att_hist, q * att_hist], dim=1)).squeeze(-1) / 2
    torch.testing.assert_close(out.scores[0], expected)
    # the MLP is trained by the loss: its weights get gradients through the selected behaviors' scores
    out.scores.gather(1, out.top_indices).sum().backward()
    assert unit.din.mlp[0].weight.grad.abs().sum() > 0


def test_over_arch_batch_norm_uses_running_statistics_in_eval():
    arch = OverArch(in_features=3, hidden=[4], batch_norm=True, device=CPU)
    x = torch.randn(16, 3) * 5 + 2
    arch(x)  # one training step updates the running statistics
    norm = arch.mlp[0]
    assert not torch.equal(norm.running_mean, torch.zeros(3))
    arch.eval()
    single = arch(x[:1])  # a batch of one works in eval mode and does not depend on the rest of the batch
    torch.testing.assert_close(single, arch(x)[:1])


# Hierarchical hard search (docs/side-info.md §4.5): sample 0's target is (cate 7, brand 70); its behaviors, oldest
# first, are (7, 70), (7, 71), (3, 30), (7, 70), (5, 50), (7, 72) with soft scores 0.1 0.9 0.8 0.2 0.5 0.3, so the
# [cate, brand] codes are 3 2 0 3 0 2. Sample 1's target (cate 4, brand 1 = unknown) has behaviors (2, 1), (4, 1),
# (2, 5) scored 0.4 0.05 0.6: codes 0 2 0 (an unknown brand matches nothing). Sample 2 has no behavior.
LEVEL_SCORES = [0.1, 0.9, 0.8, 0.2, 0.5, 0.3, 0.4, 0.05, 0.6]
HIST_LEVELS = torch.tensor([[7, 70], [7, 71], [3, 30], [7, 70], [5, 50], [7, 72], [2, 1], [4, 1], [2, 5]])
TARGET_LEVELS = torch.tensor([[7, 70], [4, 1], [7, 70]])


def hierarchical(levels, fill, top_k=5):
    """The search of the three samples with hard_levels ``levels`` (their columns of HIST_LEVELS) and ``fill``;
    att width 1, target vector 1 and zero position vectors, so the scores are LEVEL_SCORES."""
    emb = embeddings([0, 6, 9, 9], torch.tensor(LEVEL_SCORES).unsqueeze(1), torch.ones(3, 1),
                     att_positions=[[0.0]] * 9)
    unit = GeneralSearchUnit(VARIANTS["twin_hard"], 1, 1, top_k, 8, Kernel.PYTORCH, CPU, hard_levels=levels,
                             hard_fill=fill)
    columns = [["cate", "brand"].index(level) for level in levels]
    return unit, emb, unit(emb, HIST_LEVELS[:, columns], TARGET_LEVELS[:, columns])


def selected(out):
    return [row[mask].tolist() for row, mask in zip(out.top_indices, out.top_mask)]


def test_hierarchical_hard_search_by_hand():
    # [cate, brand], soft fill: code 3 (slots 3, 0: most recent first), code 2 (5, 1), then the best unmatched by
    # score: slot 2 (0.8) before slot 4 (0.5). Sample 1: its one match, then 2 (0.6) before 0 (0.4).
    _, _, out = hierarchical(["cate", "brand"], "soft")
    assert selected(out) == [[3, 0, 5, 1, 2], [1, 2, 0], []]
    torch.testing.assert_close(out.scores[0, :6], torch.tensor(LEVEL_SCORES[:6]))  # the weights' scores: soft
    assert selected(hierarchical(["cate", "brand"], "soft", top_k=2)[2]) == [[3, 0], [1, 2], []]
    # recent fill: the most recent unmatched instead (slot 4, then slot 2)
    assert selected(hierarchical(["cate", "brand"], "recent")[2]) == [[3, 0, 5, 1, 4], [1, 2, 0], []]
    # [cate] with the recent fill is today's hard search: category 7 most recent first, then the newest other
    assert selected(hierarchical(["cate"], "recent")[2]) == [[5, 3, 1, 0, 4], [1, 2, 0], []]
    # the brand level first: the brand-70 behaviors before the other category-7 ones
    assert selected(hierarchical(["brand", "cate"], "recent")[2]) == [[3, 0, 5, 1, 4], [1, 2, 0], []]


def test_hierarchical_hard_search_without_a_match_is_the_soft_search():
    unit, emb, _ = hierarchical(["cate", "brand"], "soft")
    out = unit(emb, HIST_LEVELS, torch.tensor([[9, 90], [9, 1], [9, 90]]))
    soft = gsu("twin", att_width=1, d_pos=1, top_k=5, max_len=8)(emb)
    assert selected(out) == selected(soft) == [[1, 2, 4, 5, 3], [2, 0, 1], []]


def test_hierarchical_hard_search_of_one_history_selects_the_same():
    """Candidate scoring's search (chunks of 2 slots, merged: unordered while at most K were seen) selects what the
    batch search does."""
    for levels, fill in [(["cate", "brand"], "soft"), (["cate", "brand"], "recent"), (["cate"], "recent")]:
        unit, emb, out = hierarchical(levels, fill)
        columns = [["cate", "brand"].index(level) for level in levels]
        for sample, (begin, end) in enumerate([(0, 6), (6, 9)]):
            one = emb._replace(att_hist=emb.att_hist[begin:end], att_target=emb.att_target[sample:sample + 1])
            scores, slots = unit.search_one_history(one, HIST_LEVELS[begin:end, columns],
                                                    TARGET_LEVELS[sample:sample + 1, columns], chunk=2)
            assert sorted(slots[0].tolist()) == sorted(selected(out)[sample])  # the order is the ESU's sum's only
            torch.testing.assert_close(scores[0], torch.tensor(LEVEL_SCORES[begin:end])[slots[0]])


def test_target_decoupled_positions_by_hand():
    """docs/side-info.md §4 item 6: O = 2, N = 2, d_pos_att = 1, semantic scores 0, K = 1; slices P_1 = [1], [1],
    [0] and P_2 = [1], [0], [1] (positions 0, 1, 2). Objective 1 scores the most recent behavior (slot 1,
    position 1) <[1], [1]> = 1 and slot 0 (position 2) 0: it selects slot 1; objective 2 the reverse: slot 0."""
    att_positions = torch.tensor([[[1.0], [1.0], [0.0]], [[1.0], [0.0], [1.0]]])
    emb = SequenceEmbeddings(
        att_hist=torch.zeros(4, 2), att_target=torch.zeros(2, 2), rep_hist=None, rep_target=None,
        offsets=torch.tensor([0, 2, 4]), att_positions=att_positions, att_target_position=att_positions[:, 0],
        rep_positions=None, rep_target_position=None, objectives=torch.tensor([0, 1]))  # objectives 1 and 2
    out = gsu()(emb)
    torch.testing.assert_close(out.scores, torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    assert out.top_indices.tolist() == [[1], [0]]
    torch.testing.assert_close(gsu().position_bias_table(emb), torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 1.0]]))


def test_target_decoupled_representation_positions_by_hand():
    """The ESU, the full-sequence aux aggregation and the target vector read each sample's own slice of the
    representation positions: R_1 = [5], [1], [2] and R_2 = [7], [10], [20] (positions 0, 1, 2)."""
    from dare_rec.modules.search import target_vector

    rep_positions = torch.tensor([[[5.0], [1.0], [2.0]], [[7.0], [10.0], [20.0]]])
    emb = SequenceEmbeddings(
        att_hist=None, att_target=None, rep_hist=torch.tensor([[10.0], [20.0], [30.0], [40.0]]),
        rep_target=torch.tensor([[1.0], [2.0]]), offsets=torch.tensor([0, 2, 4]), att_positions=None,
        att_target_position=None, rep_positions=rep_positions, rep_target_position=rep_positions[:, 0],
        objectives=torch.tensor([0, 1]))
    scores = torch.tensor([[0.0, math.log(3.0)], [math.log(3.0), 0.0]])
    # K = 1: sample 0 (objective 1) selected slot 1 (position 1), sample 1 (objective 2) slot 0 (position 2)
    selected = GsuOutput(scores, torch.tensor([[1], [0]]), torch.tensor([[True], [True]]))
    torch.testing.assert_close(ExactSearchUnit(Kernel.PYTORCH)(selected, emb), torch.tensor([[20.0, 1.0],
                                                                                          [30.0, 20.0]]))
    # every behavior: weights (1/4, 3/4) on slots 0, 1 of sample 0 and (3/4, 1/4) of sample 1
    h_all = FullSequenceAttention(Kernel.PYTORCH)(scores, emb)
    torch.testing.assert_close(h_all, torch.tensor([[0.25 * 10 + 0.75 * 20, 0.25 * 2 + 0.75 * 1],
                                                    [0.75 * 30 + 0.25 * 40, 0.75 * 20 + 0.25 * 10]]))
    torch.testing.assert_close(target_vector(emb), torch.tensor([[1.0, 5.0], [2.0, 7.0]]))

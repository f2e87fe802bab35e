"""GSU / ESU / over-arch math on inputs small enough to check by hand."""

from __future__ import annotations

import math

import torch

from dare_rec.modules.embeddings import PositionTable
from dare_rec.modules.over_arch import OverArch
from dare_rec.modules.search import ExactSearchUnit, FullSequenceAttention, GeneralSearchUnit, masked_softmax
from dare_rec.ops import GsuOutput, Kernel


def position_table(rows) -> PositionTable:
    table = PositionTable(len(rows), len(rows[0]), torch.device("cpu"))
    with torch.no_grad():
        table.weight.copy_(torch.tensor(rows, dtype=torch.float32))
    return table


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
    positions = position_table([[2.0], [0.5], [-1.0]])  # p0 (target) = 2, p1 = 0.5, p2 = -1
    gsu = GeneralSearchUnit(att_width=2, d_pos=1, top_k=1, max_len=2, kernel=Kernel.PYTORCH)
    out = gsu(att_hist, torch.tensor([0, 2]), att_target, positions)
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
    positions = position_table([[0.0], [1.0], [2.0], [3.0]])  # position p -> vector [p]
    h = ExactSearchUnit(Kernel.PYTORCH)(gsu, rep_hist, torch.tensor([0, 3]), positions)
    # weights: softmax(0, ln 3) = (1/4, 3/4) on slots 2 (pos 1) and 0 (pos 3)
    torch.testing.assert_close(h, torch.tensor([[0.25 * 30 + 0.75 * 10, 0.25 * 1 + 0.75 * 3]]))


def test_esu_ignores_masked_selection():
    rep_hist = torch.tensor([[10.0]])
    gsu = GsuOutput(torch.tensor([[0.0, 0.0]]), torch.tensor([[0, 1]]), torch.tensor([[True, False]]))
    positions = position_table([[0.0], [1.0], [2.0]])
    h = ExactSearchUnit(Kernel.PYTORCH)(gsu, rep_hist, torch.tensor([0, 1]), positions)
    torch.testing.assert_close(h, torch.tensor([[10.0, 1.0]]))


def test_full_sequence_attention_by_hand():
    # two behaviors, equal scores -> weights 1/2 each; padding column ignored
    rep_hist = torch.tensor([[2.0], [4.0]])
    scores = torch.tensor([[1.0, 1.0, 99.0]])
    positions = position_table([[0.0], [1.0], [2.0], [3.0]])
    h = FullSequenceAttention(Kernel.PYTORCH)(scores, rep_hist, torch.tensor([0, 2]), positions)
    torch.testing.assert_close(h, torch.tensor([[3.0, 1.5]]))


def test_empty_history_gives_zero_aggregation():
    gsu = GsuOutput(torch.full((1, 2), torch.finfo(torch.float32).min), torch.tensor([[0, 1]]),
                    torch.tensor([[False, False]]))
    positions = position_table([[0.0], [1.0], [2.0]])
    h = ExactSearchUnit(Kernel.PYTORCH)(gsu, torch.zeros(0, 1), torch.tensor([0, 0]), positions)
    assert torch.equal(h, torch.zeros(1, 2))


def test_over_arch_by_hand():
    arch = OverArch(in_features=2, hidden=[2], device=torch.device("cpu"))
    first, prelu, last = arch.mlp
    with torch.no_grad():
        first.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        first.bias.zero_()
        prelu.weight.fill_(0.25)
        last.weight.copy_(torch.tensor([[1.0, 2.0]]))
        last.bias.fill_(0.5)
    # PReLU keeps 3, scales -4 by 0.25 -> 1 * 3 + 2 * (-1) + 0.5
    torch.testing.assert_close(arch(torch.tensor([[3.0, -4.0]])), torch.tensor([1.5]))
